"""An example app's own task code, run by the taskmill sidecar (see ../README.md)."""

"""``python -m taskmill``: the same program as ``taskmill-sidecar``."""

from taskmill.cli import main

main()

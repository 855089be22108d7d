"""The params of every method, one module per family of the contract:
:mod:`.session`, :mod:`.tasks`, :mod:`.control`, :mod:`.events` and
:mod:`.workers` (which also builds what the sidecar sends a worker).

:mod:`taskmill.protocol.methods` maps method names to these parsers and
re-exports them.
"""

__all__: list[str] = []

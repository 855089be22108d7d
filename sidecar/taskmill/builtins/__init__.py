"""Built-in executors: the ``demo`` domain and the root-confined ``fs`` domain."""

from .demo import demo_domain
from .fs import FsRoots, fs_domain

__all__ = ["FsRoots", "demo_domain", "fs_domain"]

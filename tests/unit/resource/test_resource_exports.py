"""The package re-exports every module's public names."""

from __future__ import annotations

import importlib

import taskmill.resource as resource

MODULES = (
    "sampler",
    "pressure",
    "throttle",
    "io_gate",
    "extrapolate",
    "pacer",
    "latency",
    "steering",
    "writeback",
    "ioprio",
)


def test_all_matches_modules() -> None:
    # importlib: the package attributes `io_gate` and `extrapolate` are the
    # re-exported functions, which shadow their modules' names.
    modules = [importlib.import_module(f"taskmill.resource.{name}") for name in MODULES]
    union = {name for module in modules for name in module.__all__}
    assert set(resource.__all__) == union
    for name in resource.__all__:
        assert hasattr(resource, name), name

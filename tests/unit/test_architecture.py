"""The house rules, checked: room sizes, import direction, honest ``__all__``.

Read from the source with :mod:`ast`, so a rule broken anywhere in
``sidecar/taskmill`` fails here with the module and the line named.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import taskmill

ROOT = Path(taskmill.__file__).parent
MAX_LINES = 600

#: The store's modules that hold no SQL: its vocabulary, the Store façade
#: (typed methods, the one door), the single-instance lock.
STORE_DOOR = {
    "taskmill.store",
    "taskmill.store.rows",
    "taskmill.store.store",
    "taskmill.store.lock",
}
STORE_VOCABULARY = {"taskmill.store", "taskmill.store.rows"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a taskmill module)
    line: int
    lazy: bool  # inside a function: runs later, but runs
    typing: bool  # under TYPE_CHECKING: never runs


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = modules()


def _resolve(source: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _known(name: str) -> str | None:
    """The taskmill module ``name`` is, or is inside of."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(source: str) -> Iterator[Import]:
    path = MODULES[source]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, lazy: bool, typing: bool = False) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, True, typing)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(child, lazy, True)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if (known := _known(alias.name)) is not None:
                        yield Import(source, known, child.lineno, lazy, typing)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(source, is_package, child.level, child.module)
                for alias in child.names:
                    # `from . import x` names a module; `from .m import f` a member.
                    target = _known(f"{base}.{alias.name}") or _known(base)
                    if target is not None and target != source:
                        yield Import(source, target, child.lineno, lazy, typing)
            else:
                yield from visit(child, lazy, typing)

    yield from visit(tree, False)


ALL_IMPORTS = [imp for name in MODULES for imp in imports_of(name)]


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(ROOT.parent)}:{imp.line} imports {imp.target}"


def test_no_module_over_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these rooms (over {MAX_LINES} lines): {long}"


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := dfs(node)) is not None:
            return found
    return None


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in ALL_IMPORTS:
        if not imp.typing:
            edges.setdefault(imp.source, set()).add(imp.target)
    # A package's __init__ re-exporting its own modules is not a circle: the
    # modules do not need the package's names, only its path.
    for src in list(edges):
        edges[src] = {t for t in edges[src] if not src.startswith(t + ".")}
    return edges


def test_no_import_circle() -> None:
    # An import inside a function counts: a circle hidden there is still one.
    # Names imported only for annotations (TYPE_CHECKING) never run and do not.
    cycle = _cycle(_edges())
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("room", "allowed", "why"),
    [
        ("taskmill.scheduler.policy", STORE_VOCABULARY, "scheduling decisions are pure"),
        ("taskmill.scheduler.dispatch", STORE_VOCABULARY, "scheduling decisions are pure"),
        ("taskmill.server", STORE_VOCABULARY, "transports never touch SQL"),
        ("taskmill.protocol", STORE_VOCABULARY, "the protocol is sans-I/O"),
        ("taskmill.resource", STORE_VOCABULARY, "samplers know nothing of storage"),
        ("taskmill.scheduler", STORE_DOOR, "the scheduler reaches storage through the Store"),
    ],
)
def test_store_is_reached_through_its_door(room: str, allowed: set[str], why: str) -> None:
    wrong = [
        _where(imp)
        for imp in ALL_IMPORTS
        if (imp.source == room or imp.source.startswith(room + "."))
        and imp.target.startswith("taskmill.store")
        and imp.target not in allowed
    ]
    assert not wrong, f"{why}: " + "; ".join(wrong)


def test_pure_policy_loads_no_database_module() -> None:
    # Checked in a fresh interpreter, where nothing else has loaded sqlite3.
    import subprocess
    import sys

    code = (
        "import sys, taskmill.scheduler.policy, taskmill.scheduler.dispatch;"
        "bad = [m for m in ('sqlite3', 'aiosqlite', 'taskmill.store.engine') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- __all__ tells the truth ---------------------------------------------------------


def _defined_public(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {n for n in names if not n.startswith("_")}


def _has_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign | ast.AugAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


PUBLIC_MODULES = [
    name
    for name in MODULES
    if not any(part.startswith("_") for part in name.split(".")) and name != "taskmill.__main__"
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_module_all_tells_the_truth(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    assert _has_all(tree), f"{name} has no __all__"
    module = importlib.import_module(name)
    declared = list(module.__all__)
    assert len(declared) == len(set(declared)), f"{name}.__all__ repeats a name"
    missing = [n for n in declared if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what is not there: {missing}"
    unlisted = _defined_public(tree) - set(declared)
    assert not unlisted, f"{name} defines public names its __all__ leaves out: {sorted(unlisted)}"


def test_package_all_is_importable_and_complete() -> None:
    for name in taskmill.__all__:
        assert getattr(taskmill, name) is not None, name
    # What `from taskmill import *` promises is exactly __all__.
    namespace: dict[str, object] = {}
    exec("from taskmill import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(taskmill.__all__)


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages(taskmill.__path__, "taskmill."):
        if info.name == "taskmill.__main__":
            continue
        importlib.import_module(info.name)

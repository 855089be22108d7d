#!/usr/bin/env python3
"""Write docs/python-api.md, the Python API reference, from the docstrings.

    python build/python_api.py            # rewrite docs/python-api.md
    python build/python_api.py --check    # exit 1 if it is out of date

Every name in ``taskmill.__all__`` gets a section: its signature, its
docstring (Google style, turned into Markdown), its fields when it is a
dataclass, and its public methods and properties with their first docstring
paragraph. tests/packaging/test_python_api_doc.py checks that the page names
every public name and method.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sidecar"))

import taskmill  # noqa: E402

OUT = ROOT / "docs" / "python-api.md"
PIPE = "\\|"  # a literal | inside a Markdown table cell

GROUPS: list[tuple[str, str, list[str]]] = [
    (
        "The scheduler",
        "Open one per database file (`async with`), submit, query, control.",
        ["Scheduler", "SchedulerConfig", "Retention"],
    ),
    (
        "Declaring task types",
        "A domain groups task types; a type has an executor (or waits for a remote worker).",
        ["Domain", "TaskType", "RetryPolicy", "IoBudget", "Priority", "Recurring"],
    ),
    (
        "Inside an executor",
        "What an executor receives and may raise.",
        ["TaskContext", "TaskIo", "CancelSignal", "Progress", "TaskError", "TaskCancelled"],
    ),
    (
        "Submissions and records",
        "",
        ["Submission", "SubmitResult", "Outcome", "TaskRecord", "Status", "TaskFilter"],
    ),
    ("Events", "", ["Event", "EventFilter", "Subscription"]),
    (
        "Errors",
        "Every error derives from `TaskmillError`; each maps to one JSON-RPC error code.",
        [
            "TaskmillError",
            "InvalidParams",
            "NotFound",
            "UnknownTaskType",
            "InvalidState",
            "PayloadTooLarge",
            "LimitExceeded",
            "ShuttingDown",
            "StorageError",
            "DatabaseInUse",
            "DatabaseGone",
        ],
    ),
]

INTRO = """\
# Python API reference

Generated from the docstrings by `build/python_api.py` (`make api-docs`);
edit the docstrings, not this page. Everything here is importable from the
top-level package and listed in `taskmill.__all__`:

```python
from taskmill import Domain, RetryPolicy, Scheduler, TaskContext, TaskError
```

Python 3.11+, typed (`py.typed`, checked with `mypy --strict`). The README's
quick start shows a whole program; `examples/quickstart.py` a longer one;
`docs/architecture.md` how a task flows through the scheduler;
`docs/protocol.md` the same operations over JSON-RPC. Install the
distribution with `pip install taskmill-<version>-py3-none-any.whl` (or the
sdist, or `pip install /path/to/this/repo`): see the README.

Conventions: times are milliseconds (`*_ms`) or epoch milliseconds (`*_at`);
priorities are 0..255, 0 the most urgent, or the names of `Priority`;
payloads and results are JSON values.
"""


SECTION = r"(Args|Arguments|Attributes|Raises|Returns|Yields|Example|Note):"
LISTS = ("Args", "Arguments", "Attributes")


def md(text: str) -> str:
    """Google/Sphinx docstring text as Markdown."""
    text = re.sub(r":(?:meth|class|func|attr|data|mod|exc):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    section: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.startswith(" "):
            # "Example::" and an indented block: a fenced code block.
            head = line.rstrip()[:-1].rstrip(":")
            if head:
                out.append(head + ":")
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out += ["", "```python", *block, "```", ""]
            continue
        header = re.fullmatch(SECTION, line)
        if header:
            section = header.group(1)
            out += [*([""] if out and out[-1] else []), f"**{section}:**", ""]
            i += 1
            continue
        if section is not None and line.startswith("    "):
            item = line[4:]
            entry = re.match(r"(\*{0,2}\w+)( \([^)]*\))?: (.*)", item)
            if entry and not item.startswith(" ") and section in LISTS:
                out.append(f"- `{entry.group(1)}`{entry.group(2) or ''}: {entry.group(3)}")
            elif item.startswith(" ") and out and out[-1].startswith("- "):
                out[-1] += " " + item.strip()
            elif section == "Raises" and re.match(r"\w+(, \w+)*:", item):
                name, _, why = item.partition(":")
                out.append(f"- `{name}`:{why}")
            else:
                bullet = "- " if not out or not out[-1].startswith("- ") else "  "
                out.append(bullet + item.strip())
            i += 1
            continue
        if line.strip():
            section = None if not line.startswith(" ") else section
        out.append(line)
        i += 1
    return "\n".join(out).strip()


def first_paragraph(doc: str) -> str:
    para = doc.strip().split("\n\n")[0]
    return md(" ".join(para.split()))


def signature(name: str, obj: Any, *, drop_self: bool = True, wrap: bool = False) -> str:
    """``name(params) -> return``, annotations as written (they are strings under
    ``from __future__ import annotations``), defaults as their repr."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params: list[str] = []
    star_done = False
    for i, param in enumerate(sig.parameters.values()):
        if i == 0 and drop_self and param.name in ("self", "cls"):
            continue
        if param.kind is param.KEYWORD_ONLY and not star_done:
            params.append("*")
            star_done = True
        prefix = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
        star_done = star_done or param.kind is param.VAR_POSITIONAL
        text = prefix + param.name
        if param.annotation is not param.empty:
            text += f": {annotation(param.annotation)}"
        if param.default is not param.empty:
            default = param.default
            shown = "<factory>" if repr(default) == "<factory>" else repr(default)
            text += f" = {shown}"
        params.append(text)
    returns = ""
    if sig.return_annotation is not sig.empty and annotation(sig.return_annotation) != "None":
        returns = f" -> {annotation(sig.return_annotation)}"
    one_line = f"{name}({', '.join(params)}){returns}"
    if not wrap or len(one_line) <= 88:
        return one_line
    body = "".join(f"    {p},\n" for p in params)
    return f"{name}(\n{body}){returns}"


def annotation(value: Any) -> str:
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


def members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties of the class, its own and those of its
    private taskmill bases (mixins), not those of builtins, enum or public bases."""
    found: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    for klass in cls.__mro__:
        # A public base (TaskmillError) has its own section: not repeated here.
        public_base = klass is not cls and klass.__name__ in taskmill.__all__
        if not klass.__module__.startswith("taskmill") or public_base:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in fields or name in found:
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                found[name] = value
    return list(found.items())


def class_section(name: str, cls: type) -> list[str]:
    out = [f"### {name}", ""]
    if issubclass(cls, BaseException):
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        out += [f"```python\nclass {name}({bases})\n```", ""]
    elif issubclass(cls, enum.Enum):
        values = ", ".join(f"{m.name} = {m.value!r}" for m in cls)
        out += [f"```python\nclass {name}({cls.__bases__[0].__name__}): {values}\n```", ""]
    elif dataclasses.is_dataclass(cls) or "__init__" in vars(cls):
        target = cls if dataclasses.is_dataclass(cls) else cls.__init__
        out += [f"```python\n{signature(name, target, wrap=True)}\n```", ""]
    else:
        out += [f"```python\nclass {name}\n```", ""]
    doc = inspect.getdoc(cls)
    if doc and not (issubclass(cls, enum.Enum) and doc.startswith("An enumeration")):
        out += [md(doc), ""]
    if name == "Priority":
        consts = [(k, v) for k, v in vars(cls).items() if k.isupper() and isinstance(v, int)]
        out += [", ".join(f"`{k} = {v}`" for k, v in consts), ""]
    rows = members(cls)
    if rows:
        out += ["| member | |", "|---|---|"]
        for member, value in rows:
            if isinstance(value, property):
                label = f"`{member}` (property)"
                doc = inspect.getdoc(value) or ""
            else:
                sig = signature(member, value)
                prefix = "async " if inspect.iscoroutinefunction(value) else ""
                label = f"`{prefix}{sig}`"
                doc = inspect.getdoc(value) or ""
            cell = first_paragraph(doc) if doc else ""
            out.append(f"| {label.replace('|', PIPE)} | {cell.replace('|', PIPE)} |")
        out.append("")
    return out


def render() -> str:
    names = list(taskmill.__all__)
    listed = {n for _, _, group in GROUPS for n in group}
    missing = [n for n in names if n not in listed and n != "__version__"]
    groups = [*GROUPS, *([("Other", "", missing)] if missing else [])]
    out = [INTRO]
    out.append("Contents: " + " · ".join(f"[{title}](#{anchor(title)})" for title, _, _ in groups))
    out.append("")
    for title, blurb, group in groups:
        out += [f"## {title}", ""]
        if blurb:
            out += [blurb, ""]
        for name in group:
            out += class_section(name, getattr(taskmill, name))
    version = f"The distribution's version, a string (`{taskmill.__version__!r}` now)."
    out += ["## `__version__`", "", version, ""]
    return "\n".join(out).rstrip() + "\n"


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/python-api.md is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print("docs/python-api.md is out of date: run  python build/python_api.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

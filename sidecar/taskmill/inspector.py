"""``taskmill-sidecar inspect``: look at a queue from a terminal.

::

    taskmill-sidecar inspect [--db PATH] [--json] status
    taskmill-sidecar inspect list [--status S]... [--type T] [--tag K=V]... [--group G]
    taskmill-sidecar inspect show ID
    taskmill-sidecar inspect history [--status S]... [--type T]
    taskmill-sidecar inspect dead-letters
    taskmill-sidecar inspect retry ID
    taskmill-sidecar inspect cancel ID
    taskmill-sidecar inspect top [--interval S] [--iterations N]

Reads open the database read-only (SQLite's WAL lets them run beside the
sidecar that writes it) and never dispatch, recover or write, so they are safe
on the database of a running app. Writes (``retry``, ``cancel``) go through
the sidecar that holds the database, found with its lock file (its WebSocket
URL and token, readable by the user only); with no sidecar running, or one
that serves no WebSocket, they are refused with the reason. Output is plain
text tables, or JSON with ``--json``. Exit codes: 0, 1 when the command
failed (a task not found, a write refused), 2 for bad arguments or a database
that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .errors import TaskmillError
from .filters import TaskFilter
from .store import queries, schema
from .store.lock import holder_of

__all__ = ["Refused", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Refused(Exception):
    """A command that cannot be carried out; the message says why."""


def build_parser(default_db: Callable[[], str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskmill-sidecar inspect",
        description="Look at a taskmill queue: reads never disturb a running sidecar; "
        "retry and cancel go through it.",
    )
    p.add_argument("--db", metavar="PATH", help="database file (default: per-user data dir)")
    p.add_argument("--json", action="store_true", help="JSON instead of tables")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="counts, and who holds the database")
    ls = sub.add_parser("list", help="active tasks")
    ls.add_argument("--status", action="append", help="repeatable")
    ls.add_argument("--type", dest="task_type")
    ls.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    ls.add_argument("--group")
    ls.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="one task: its active or latest history record")
    show.add_argument("id", type=int)
    hist = sub.add_parser("history", help="finished tasks, newest first")
    hist.add_argument("--status", action="append")
    hist.add_argument("--type", dest="task_type")
    hist.add_argument("--limit", type=int, default=50)
    dead = sub.add_parser("dead-letters", help="tasks that failed for good")
    dead.add_argument("--limit", type=int, default=50)
    for name, what in (("retry", "resubmit a dead letter"), ("cancel", "cancel an active task")):
        w = sub.add_parser(name, help=f"{what} (through the running sidecar)")
        w.add_argument("id", type=int)
    top = sub.add_parser("top", help="a live view, refreshed")
    top.add_argument("--interval", type=float, default=1.0, metavar="S")
    top.add_argument("--iterations", type=int, default=0, help="stop after N (0: Ctrl-C)")
    p.set_defaults(default_db=default_db)
    return p


def main(argv: Sequence[str], default_db: Callable[[], str], out: TextIO = sys.stdout) -> int:
    """Run one inspector command; returns the exit code."""
    args = build_parser(default_db).parse_args(list(argv))
    path: str = args.db or default_db()
    try:
        if args.command in ("retry", "cancel"):
            result = _write(path, args)
        elif args.command == "top":
            return _top(path, args, out)
        else:
            conn = schema.open_readonly(path)
            try:
                result = _read(conn, path, args)
            finally:
                conn.close()
    except Refused as exc:
        print(f"taskmill-sidecar inspect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TaskmillError as exc:
        print(f"taskmill-sidecar inspect: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        print(f"taskmill-sidecar inspect: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(result, args.json, out)
    return EXIT_OK


# -- reads ---------------------------------------------------------------------


def _read(conn: sqlite3.Connection, path: str, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd == "status":
        holder = holder_of(path)
        return {
            "db": path,
            "sidecar": None
            if holder is None
            else {"pid": holder.pid, "ws": holder.ws, "reachable": holder.token is not None},
            "active": queries.status_counts(conn),
            "history": queries.history_counts(conn),
        }
    if cmd == "list":
        tags = dict(_tag(t) for t in args.tag)
        flt = TaskFilter(
            status=args.status,
            task_type=args.task_type,
            group=args.group,
            tags=tags or None,
        )
        recs, total = queries.list_active(conn, flt, args.limit, 0)
        return _Table("active", [r.to_dict() for r in recs], total)
    if cmd == "show":
        rec = queries.get(conn, args.id)
        if rec is None:
            raise Refused(f"no task with id {args.id}")
        return rec.to_dict()
    if cmd in ("history", "dead-letters"):
        status = ["dead_letter"] if cmd == "dead-letters" else args.status
        recs, total = queries.list_history(
            conn,
            status=status,
            task_type=getattr(args, "task_type", None),
            key=None,
            domain=None,
            limit=args.limit,
            offset=0,
        )
        return _Table("history", [r.to_dict() for r in recs], total)
    raise AssertionError(cmd)


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise Refused(f"--tag {text!r}: expected KEY=VALUE")
    return key, value


# -- writes, through the sidecar ---------------------------------------------------


def _write(path: str, args: argparse.Namespace) -> Any:
    holder = holder_of(path)
    if holder is None:
        raise Refused(
            f"no sidecar holds {path}: {args.command} needs the running app (or "
            f"`taskmill-sidecar --ws --db {path}`) to carry it out"
        )
    if holder.ws is None or holder.token is None:
        raise Refused(
            f"the sidecar holding {path} (pid {holder.pid}) serves no WebSocket; "
            "start it with --ws to retry or cancel from here"
        )
    method, params = (
        ("task.retry_dead_letter", {"id": args.id})
        if args.command == "retry"
        else ("task.cancel", {"id": args.id})
    )
    return _call(holder.ws, holder.token, method, params)


def _call(url: str, token: str, method: str, params: dict[str, Any]) -> Any:
    """One JSON-RPC call over the sidecar's WebSocket (JSON text frames)."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    try:
        with connect(url, open_timeout=5, close_timeout=1) as ws:
            for i, (m, p) in enumerate(
                (("session.hello", {"token": token, "protocol": 1, "client": "inspect"}),
                 (method, params)),
                start=1,
            ):  # fmt: skip
                ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
                reply = json.loads(ws.recv(timeout=30))
                if "error" in reply:
                    raise Refused(f"{m}: {reply['error'].get('message')}")
            return reply["result"]
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise Refused(f"the sidecar at {url} cannot be reached: {exc}") from exc


# -- top ---------------------------------------------------------------------------


def _top(path: str, args: argparse.Namespace, out: TextIO) -> int:
    n = 0
    try:
        while True:
            conn = schema.open_readonly(path)
            try:
                counts = queries.status_counts(conn)
                running, _ = queries.list_active(conn, TaskFilter(status=["running"]), 20, 0)
                done = queries.history_counts(conn)
            finally:
                conn.close()
            holder = holder_of(path)
            who = "no sidecar" if holder is None else f"sidecar pid {holder.pid}"
            if not args.json and out.isatty():
                out.write("\x1b[2J\x1b[H")
            if args.json:
                _print(
                    {"active": counts, "history": done, "running": [r.to_dict() for r in running]},
                    True,
                    out,
                )
            else:
                out.write(f"{path}  ({who})  {time.strftime('%H:%M:%S')}\n")
                out.write("active:  " + _counts(counts) + "\n")
                out.write("history: " + _counts(done) + "\n\n")
                _table(out, [r.to_dict() for r in running], title=f"running ({len(running)})")
            out.flush()
            n += 1
            if args.iterations and n >= args.iterations:
                return EXIT_OK
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK


# -- output ----------------------------------------------------------------------


class _Table:
    def __init__(self, kind: str, rows: list[dict[str, Any]], total: int) -> None:
        self.kind = kind
        self.rows = rows
        self.total = total


COLUMNS = ("id", "task_type", "status", "priority", "group", "retry_count", "label", "error")


def _print(result: Any, as_json: bool, out: TextIO) -> None:
    if as_json:
        if isinstance(result, _Table):
            result = {"tasks": result.rows, "total": result.total}
        out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
        return
    if isinstance(result, _Table):
        _table(out, result.rows, title=f"{len(result.rows)} of {result.total} {result.kind}")
    elif "active" in result and "history" in result:
        sidecar = result["sidecar"]
        out.write(f"database: {result['db']}\n")
        if sidecar is None:
            out.write("sidecar:  none running\n")
        else:
            how = sidecar["ws"] or "stdio only (writes from here refused)"
            out.write(f"sidecar:  pid {sidecar['pid']}, {how}\n")
        out.write("active:   " + _counts(result["active"]) + "\n")
        out.write("history:  " + _counts(result["history"]) + "\n")
    elif "id" in result and "status" in result:
        for key in sorted(result):
            if key in ("traceback",):
                continue
            out.write(f"{key:>18}: {json.dumps(result[key])}\n")
        if result.get("traceback"):
            out.write("\n" + result["traceback"] + "\n")
    else:
        out.write(json.dumps(result, sort_keys=True) + "\n")


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _table(out: TextIO, rows: list[dict[str, Any]], *, title: str) -> None:
    out.write(title + "\n")
    if not rows:
        return
    cells = [
        [
            _cell(r.get("last_error") if c == "error" else r.get(c))
            for c in COLUMNS
        ]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    out.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."

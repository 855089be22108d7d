"""Fuzz the sidecar's protocol surface with Hypothesis (issue 10, part 2).

One sidecar (stdio + WebSocket, the demo domain) serves the whole module; a
:class:`~hypothesis.stateful.RuleBasedStateMachine` drives it over stdio with
valid and invalid requests: every method of the contract plus junk names,
params of random types and sizes (deep nesting, strings near 1 MiB, unicode
and lone surrogates, huge and negative integers, floats, nulls, unknown
fields), interleaved with submits, cancels, pauses and occasional restarts
(graceful ``sidecar.shutdown``, then a new process on the same database).

After every step: the process is alive; every request got exactly one answer,
a result or an error with a contract code (``-32603`` internal_error is a bug
and fails the run); ``scheduler.snapshot`` counts equal ``task.list`` totals
per status (read while no event happened in between). Raw junk lines on stdin
and junk WebSocket frames (before and after ``session.hello``) are answered
with contract errors and the sidecar keeps serving.

The runs are derandomized (reproducible); set ``TASKMILL_FUZZ_RANDOM=1`` to
explore new examples, ``TASKMILL_FUZZ_EXAMPLES`` / ``TASKMILL_FUZZ_STEPS`` to
go bigger. The number of messages tried is printed and written to
``test-artifacts/fuzz-count.txt``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from websockets.exceptions import ConnectionClosed

from tests import contract
from tests.e2e.conftest import Spawn
from tests.e2e.harness import SidecarProcess, WsClient, child_env
from tests.reliability.common import LoopThread, write_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RANDOM = os.environ.get("TASKMILL_FUZZ_RANDOM") == "1"
EXAMPLES = int(os.environ.get("TASKMILL_FUZZ_EXAMPLES", "30"))
STEPS = int(os.environ.get("TASKMILL_FUZZ_STEPS", "30"))
CALL_TIMEOUT = 10.0

SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=not RANDOM,
    database=None if not RANDOM else settings().database,  # the profile's own
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

#: Error codes a client may see here (protocol section 2): not -32603 (a bug),
#: -32001 (WebSocket only) nor -32008 (no request here reaches a limit).
CONTRACT = set(contract.ERROR_KINDS) - {-32603, -32001, -32008}

#: Every method of the contract, then (sent as requests) the notifications and
#: sidecar-to-client methods.
METHODS = [*contract.PARAMS, *contract.SIDECAR_TO_CLIENT]
JUNK_METHODS = [
    "task",
    "task.",
    ".submit",
    "TASK.SUBMIT",
    "task.submit ",
    " task.get",
    "task.sub mit",
    "rpc.discover",
    "__init__",
    "api.find",
    "task.submit\u0000",
    "tâsk.get",
    "task.get/../sidecar.shutdown",
    "x" * 5000,
]

ACTIVE = ["pending", "running", "paused", "waiting", "blocked"]
SNAPSHOT_KEY = {s: f"{s}_count" for s in ACTIVE}
MIB = 1 << 20

# -- value strategies --------------------------------------------------------

BIG_INTS = [
    0,
    -1,
    1,
    255,
    256,
    -(2**31),
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
]
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "demo", "demo::echo", "::", "a::b::c", "%", "_", "\\", "'", '"']),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1F6FF), max_size=5),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "\ufeff"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(BIG_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(texts, kids, max_size=5)),
    max_leaves=20,
)


class Raw:
    """Params (or a whole line) given as JSON text, for shapes json.dumps cannot make."""

    def __init__(self, text: str, label: str) -> None:
        self.text = text
        self.label = label

    def __repr__(self) -> str:
        return f"Raw({self.label})"


def _deep(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth, f"list depth {depth}")
    return Raw('{"a":' * depth + "1" + "}" * depth, f"object depth {depth}")


deep_values = st.builds(
    _deep,
    st.sampled_from([100, 254, 255, 256, 257, 1000, 100_000]),
    st.sampled_from(["list", "object"]),
)
big_strings = st.sampled_from(
    [MIB - 64, MIB - 1, MIB, MIB + 1, 2 * MIB, 4 * MIB - 200, 4 * MIB + 10]
).map(lambda n: "é" * (n // 2) if n % 2 else "x" * n)

PRIORITIES = st.one_of(
    st.sampled_from(["realtime", "high", "normal", "background", "idle", "HIGH", "urgent", ""]),
    st.sampled_from([0, 64, 128, 255, 256, -1, 1.5, True]),
)
TASK_TYPES = st.sampled_from(
    [
        "demo::echo",
        "demo::echo",
        "demo::sleep",
        "demo::fail",
        "demo::fanout",
        "nope::x",
        "demo",
        "",
        "demo::Echo",
        5,
    ]
)


@st.composite
def submit_params(draw: st.DrawFn, ids: list[int]) -> dict[str, Any]:
    """task.submit params: mostly plausible, often with one field wrong."""
    task_type = draw(TASK_TYPES)
    if task_type == "demo::sleep":
        payload: Any = {"ms": draw(st.integers(0, 300)), "steps": draw(st.integers(1, 3))}
    elif task_type == "demo::fail":
        payload = {"times": draw(st.integers(-1, 2))}
    elif task_type == "demo::fanout":
        payload = {"children": draw(st.integers(0, 3)), "child_ms": draw(st.integers(0, 50))}
    else:
        payload = draw(json_values)
    p: dict[str, Any] = {"task_type": task_type, "payload": payload}
    optional = {
        "key": st.one_of(texts, st.sampled_from(["k1", "k2", "k" * 1025])),
        "label": texts,
        "priority": PRIORITIES,
        "group": st.one_of(st.none(), st.sampled_from(["g1", "s3://b", ""]), texts),
        "tags": st.one_of(
            st.dictionaries(texts, texts, max_size=4),
            st.dictionaries(
                st.sampled_from(["%", "_a", "a%"]), st.sampled_from(["1", "%"]), max_size=2
            ),
            json_values,
        ),
        "ttl_ms": st.one_of(st.integers(-5, 10**7), st.sampled_from(BIG_INTS)),
        "ttl_from": st.sampled_from(["submission", "first_attempt", "later", None]),
        "run_after_ms": st.one_of(st.integers(-1000, 2000), st.sampled_from(BIG_INTS)),
        "run_at": st.sampled_from(BIG_INTS),
        "depends_on": st.one_of(
            st.lists(st.sampled_from(ids) if ids else st.integers(1, 50), max_size=3),
            json_values,
        ),
        "on_dependency_failure": st.sampled_from(["cancel", "fail", "ignore", "explode"]),
        "expected_io": st.one_of(
            st.fixed_dictionaries({"disk_read": st.integers(-1, 2**40)}), json_values
        ),
        "retry": st.one_of(
            st.fixed_dictionaries(
                {
                    "max_retries": st.integers(-1, 5),
                    "backoff": st.sampled_from(["constant", "exponential", "linear", "random"]),
                    "base_ms": st.integers(-1, 100),
                }
            ),
            json_values,
        ),
        "recurring": st.one_of(
            st.fixed_dictionaries(
                {"interval_ms": st.integers(-1, 5000), "max_occurrences": st.integers(0, 2)}
            ),
            json_values,
        ),
        "on_duplicate": st.sampled_from(["skip", "supersede", "replace"]),
        "parent_id": st.one_of(st.sampled_from(ids) if ids else st.integers(1, 50), json_values),
        "fail_fast": st.one_of(st.booleans(), json_values),
        "priorty": st.just("high"),  # a typo: must be refused naming it
        "unknown_field": json_values,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        p[name] = draw(optional[name])
    return p


@st.composite
def method_params(draw: st.DrawFn, ids: list[int]) -> Any:
    """Params of any shape for any method."""
    some_id = st.sampled_from(ids) if ids else st.integers(1, 100)
    return draw(
        st.one_of(
            st.none(),
            st.just({}),
            json_values,
            st.dictionaries(
                st.sampled_from(
                    [
                        "id",
                        "task_type",
                        "key",
                        "status",
                        "domain",
                        "group",
                        "tags",
                        "tag_prefix",
                        "limit",
                        "offset",
                        "priority",
                        "value",
                        "weight",
                        "duration_ms",
                        "mode",
                        "timeout_ms",
                        "source",
                        "per_second",
                        "burst",
                        "filter",
                        "subscription",
                        "worker",
                        "task_types",
                        "concurrency",
                        "prefix",
                        "token",
                        "protocol",
                        "client",
                        "tasks",
                        "task_id",
                        "percent",
                    ]
                ),
                st.one_of(json_values, some_id, st.sampled_from(ACTIVE)),
                max_size=4,
            ),
            deep_values,
        )
    )


# -- the driver ----------------------------------------------------------------


class Fuzz:
    """One sidecar shared by every example, and the bookkeeping of what was sent."""

    def __init__(self, tmp: Path) -> None:
        self.lt = LoopThread()
        self.tmp = tmp
        self.db = tmp / "fuzz.db"
        self.sc: SidecarProcess | None = None
        self.sent = 0
        self.raw_lines = 0
        self.ws_frames = 0
        self.codes: Counter[int | str] = Counter()
        self.restarts = 0
        self.deaths = 0
        self.big_accepted = 0
        self.checked_upto = 0
        self.answered: Counter[Any] = Counter()
        self.next_id = 0
        self.snapshots_compared = 0
        self.internal_errors: list[str] = []

    # process --------------------------------------------------------------

    def start(self) -> None:
        self.sc = self.lt.run(
            SidecarProcess.start(
                "--stdio",
                "--ws",
                "--demo",
                "--no-resource-monitoring",
                "--drain-timeout-ms",
                "200",
                "--max-concurrency",
                "2",
                "--db",
                str(self.db),
                env=child_env(),
            )
        )
        self.checked_upto = 0
        self.answered = Counter()

    def alive(self) -> bool:
        return self.sc is not None and self.sc.proc.returncode is None and not self.sc.inbox.closed

    def ensure(self) -> None:
        if not self.alive():
            if self.sc is not None:
                self.deaths += 1
                self.lt.run(self.sc.kill())
            self.start()

    def restart_after_shutdown(self) -> None:
        assert self.sc is not None
        code = self.lt.run(self.sc.wait_exit(30))
        assert code == 0, f"exit {code} after sidecar.shutdown: {self.sc.stderr_text()[-2000:]}"
        self._scan_stderr()
        self.lt.run(self.sc.kill())
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.sc is not None:
            self.lt.run(self.sc.kill())
            self._scan_stderr()
        self.lt.close()

    def _scan_stderr(self) -> None:
        assert self.sc is not None
        blocks = self.sc.stderr_text().split("Traceback (most recent call last)")[1:]
        self.internal_errors.extend(block[:4000] for block in blocks)

    # requests --------------------------------------------------------------

    def call(self, method: str, params: Any = None, *, omit: bool = False) -> dict[str, Any]:
        self.sent += 1
        resp: dict[str, Any] = self.lt.run(self._call(method, params, omit))
        self.check(method, params, resp)
        if method == "sidecar.shutdown" and "result" in resp:
            self.restart_after_shutdown()
        return resp

    async def _call(
        self, method: str, params: Any, omit: bool, *, null_ok: bool = True
    ) -> dict[str, Any]:
        sc = self.sc
        assert sc is not None
        self.next_id += 1
        rid = f"fz-{self.next_id}"  # junk lines may carry integer ids of their own
        fut = sc.inbox.expect(rid)
        head = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method})[:-1]
        if omit:
            line = head + "}"
        elif isinstance(params, Raw):
            line = head + ',"params":' + params.text + "}"
        else:
            line = head + ',"params":' + json.dumps(params) + "}"
        before = len(sc.inbox.other)
        await sc.send_raw(line.encode() + b"\n")

        def answered() -> dict[str, Any] | None:
            if fut.done():
                return fut.result()
            if not null_ok:
                return None
            # A line that cannot be decoded (too deep, a lone surrogate) is a
            # parse error answered with id null: its id cannot be read.
            for m in sc.inbox.other[before:]:
                if "error" in m and m.get("id") is None:
                    sc.inbox.pending.pop(rid, None)
                    assert m["error"]["code"] in (-32700, -32600), m
                    return m
            return None

        try:
            resp: dict[str, Any] = await sc.inbox.wait_for(answered, CALL_TIMEOUT, method)
        except AssertionError:
            sc.inbox.pending.pop(rid, None)
            raise AssertionError(
                f"no answer to {method} {params!r:.200} in {CALL_TIMEOUT}s"
            ) from None
        return resp

    def check(self, method: str, params: Any, resp: dict[str, Any]) -> None:
        assert ("result" in resp) != ("error" in resp), resp
        if "error" in resp:
            code = resp["error"].get("code")
            self.codes[code] += 1
            if code == -32603:
                self.internal_errors.append(f"{method} {params!r:.500} -> {resp['error']}")
            assert code in CONTRACT, f"{method} {params!r:.300} -> code {code}: {resp['error']}"
            assert isinstance(resp["error"].get("message"), str)
        else:
            self.codes["ok"] += 1

    def raw(self, line: bytes) -> list[dict[str, Any]]:
        """Send one raw line; return the answers with id null it caused."""
        self.raw_lines += 1
        self.sent += 1
        return list(self.lt.run(self._raw(line)))

    async def _raw(self, line: bytes) -> list[dict[str, Any]]:
        sc = self.sc
        assert sc is not None
        before = len(sc.inbox.other)
        await sc.send_raw(line)
        # Lines are handled in order and a decode failure is answered at once,
        # so once a later request is answered, the line's answer is in.
        await self._call("sidecar.info", {}, False, null_ok=False)
        return [m for m in sc.inbox.other[before:] if "error" in m or "result" in m]

    def accounting(self) -> None:
        """Every answer we got answers one of our requests, once."""
        sc = self.sc
        assert sc is not None
        msgs = sc.inbox.all
        for m in msgs[self.checked_upto :]:
            if "method" not in m and str(m.get("id")).startswith("fz-"):
                self.answered[m["id"]] += 1
                assert self.answered[m["id"]] == 1, f"two answers to request {m['id']}"
        self.checked_upto = len(msgs)
        assert not sc.inbox.pending or all(not f.done() for f in sc.inbox.pending.values())

    def snapshot_matches_lists(self) -> None:
        """Counts of a quiet snapshot equal task.list totals (retry while busy)."""
        mismatch = None
        for _ in range(6):
            s1 = self.call("scheduler.snapshot", {})["result"]
            totals = {
                s: self.call("task.list", {"status": s, "limit": 0})["result"]["total"]
                for s in ACTIVE
            }
            every = self.call("task.list", {"limit": 0})["result"]["total"]
            s2 = self.call("scheduler.snapshot", {})["result"]
            counts = {s: s2[SNAPSHOT_KEY[s]] for s in ACTIVE}
            quiet = s1["seq"] == s2["seq"] and counts == {s: s1[SNAPSHOT_KEY[s]] for s in ACTIVE}
            if not quiet:
                continue
            assert sum(totals.values()) == every, (totals, every)
            if counts == totals:
                self.snapshots_compared += 1
                return
            mismatch = (counts, totals)
        assert mismatch is None, f"snapshot counts {mismatch[0]} != task.list totals {mismatch[1]}"

    def summary(self) -> str:
        return (
            f"fuzz: {self.sent} messages tried ({self.raw_lines} raw stdin lines, "
            f"{self.ws_frames} WebSocket frames), {self.restarts} restarts, "
            f"{self.snapshots_compared} quiet snapshots compared, answers {dict(self.codes)}"
        )


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    f = Fuzz(tmp_path_factory.mktemp("fuzz"))
    f.start()
    try:
        yield f
    finally:
        f.stop()
        line = f.summary()
        print("\n" + line)
        write_artifact("fuzz-count.txt", line + "\n")


# -- the state machine -----------------------------------------------------------


class SidecarMachine(RuleBasedStateMachine):
    driver: Fuzz

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[int] = []

    @property
    def f(self) -> Fuzz:
        return self.driver

    @initialize()
    def alive_at_start(self) -> None:
        self.f.ensure()

    @rule(target=tasks, data=st.data())
    def submit(self, data: st.DataObject) -> Any:
        params = data.draw(submit_params(self.ids))
        resp = self.f.call("task.submit", params)
        if "result" in resp:
            tid = resp["result"]["id"]
            self.ids.append(tid)
            return tid
        return -1  # a refused submission: an id that names nothing

    @rule(data=st.data())
    def submit_batch(self, data: st.DataObject) -> None:
        items = data.draw(st.lists(submit_params(self.ids), max_size=6))
        resp = self.f.call("task.submit_batch", {"tasks": items})
        if "result" in resp:
            self.ids.extend(o["id"] for o in resp["result"]["outcomes"])

    @rule(size=big_strings, where=st.sampled_from(["payload", "key", "label", "tag", "method"]))
    def huge_string(self, size: str, where: str) -> None:
        if where == "method":
            self.f.call(size[:MIB], {})
            return
        p: dict[str, Any] = {"task_type": "demo::echo"}
        if where == "tag":
            p["tags"] = {"t": size}
        else:
            p[where] = size
        if where == "payload" and len(size.encode()) <= MIB - 100:
            # Accepted near the limit: keep it rare, it sits in history.
            if self.f.big_accepted >= 3:
                return
            self.f.big_accepted += 1
            p["run_after_ms"] = 60_000
        resp = self.f.call("task.submit", p)
        if "result" in resp:
            self.f.call("task.cancel", {"id": resp["result"]["id"]})

    @rule(method=st.sampled_from(METHODS), data=st.data())
    def any_method(self, method: str, data: st.DataObject) -> None:
        if method == "sidecar.shutdown":
            params = data.draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {"mode": st.sampled_from(["graceful", "hard", "now"])},
                        optional={"timeout_ms": st.integers(-1, 500)},
                    ),
                    json_values,
                )
            )
        else:
            params = data.draw(method_params(self.ids))
        self.f.call(method, params, omit=params is None and data.draw(st.booleans()))

    @rule(method=st.sampled_from(JUNK_METHODS), params=st.one_of(st.none(), json_values))
    def junk_method(self, method: str, params: Any) -> None:
        resp = self.f.call(method, params)
        code = resp.get("error", {}).get("code")
        if params is None or params == {}:
            assert code == -32601, resp
        else:  # bad params may be refused first (-32700 for a lone surrogate)
            assert code in (-32601, -32602, -32600, -32700), resp

    @rule(
        tid=tasks,
        op=st.sampled_from(
            ["task.cancel", "task.get", "dependencies.get", "task.retry_dead_letter"]
        ),
    )
    def on_task(self, tid: int, op: str) -> None:
        self.f.call(op, {"id": tid})

    @rule(tid=tasks, priority=PRIORITIES)
    def set_priority(self, tid: int, priority: Any) -> None:
        self.f.call("task.set_priority", {"id": tid, "priority": priority})

    @rule(
        call=st.sampled_from(
            [
                ("scheduler.pause", {}),
                ("scheduler.resume", {}),
                ("scheduler.resume", {}),
                ("domain.pause", {"domain": "demo"}),
                ("domain.resume", {"domain": "demo"}),
                ("domain.resume", {"domain": "demo"}),
                ("group.pause", {"group": "g1", "duration_ms": 300}),
                ("group.resume", {"group": "g1"}),
                ("task.cancel_where", {"domain": "demo", "status": "blocked"}),
                ("task.cancel_where", {"tag_prefix": "%"}),
                ("scheduler.set_max_concurrency", {"value": 2}),
                ("scheduler.set_max_concurrency", {"value": 0}),
                ("pressure.set", {"source": "fuzz", "value": 0.9}),
                ("pressure.set", {"source": "fuzz", "value": None}),
                ("events.subscribe", {"filter": {"kinds": ["completed"]}}),
                ("tags.keys", {"prefix": "_"}),
                ("history.list", {"limit": 5}),
            ]
        )
    )
    def control(self, call: tuple[str, dict[str, Any]]) -> None:
        self.f.call(*call)

    @rule(line=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)))
    def raw_junk(self, line: bytes) -> None:
        line = line.replace(b"\n", b" ")
        answers = self.f.raw(line + b"\n")
        text = line.strip(b" \t\r")
        try:
            value = json.loads(text)
        except ValueError:
            value = ...
        for a in answers:
            self.f.check("<raw>", line, a)
        if not text:
            assert answers == [], answers  # blank lines are skipped
        elif value is ... or not isinstance(value, dict):
            assert len(answers) == 1, (line, answers)
            assert answers[0]["error"]["code"] in (-32700, -32600), answers
            assert answers[0]["id"] is None

    @rule(
        envelope=st.dictionaries(
            st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "extra"]),
            st.one_of(st.sampled_from(["2.0", "1.0", "sidecar.info", 2.0]), json_values),
            max_size=5,
        )
    )
    def junk_envelope(self, envelope: dict[str, Any]) -> None:
        answers = self.f.raw(json.dumps(envelope).encode() + b"\n")
        for a in answers:
            self.f.check("<envelope>", envelope, a)
        assert len(answers) <= 1, answers

    @rule(
        depth=st.sampled_from([257, 1000, 100_000]),
        kind=st.sampled_from(["list", "object", "line"]),
    )
    def deep_line(self, depth: int, kind: str) -> None:
        if kind == "line":
            answers = self.f.raw(b"[" * depth + b"]" * depth + b"\n")
            assert [a["error"]["code"] for a in answers] in ([-32700], [-32600]), answers
        else:
            resp = self.f.call("task.submit", Raw(_deep(depth, kind).text, "deep"))
            assert resp["error"]["code"] in (-32700, -32602), resp

    @rule(gate=st.integers(0, 5), mode=st.sampled_from(["graceful", "hard"]))
    def restart(self, gate: int, mode: str) -> None:
        if gate:
            return
        resp = self.f.call("sidecar.shutdown", {"mode": mode, "timeout_ms": 200})
        assert "result" in resp, resp

    @invariant()
    def alive_and_consistent(self) -> None:
        assert self.f.alive(), (
            f"the sidecar died: {self.f.sc.stderr_text()[-3000:] if self.f.sc else ''}"
        )
        self.f.accounting()
        self.f.snapshot_matches_lists()


def test_stateful_fuzz_over_stdio(fuzz: Fuzz) -> None:
    SidecarMachine.driver = fuzz
    run_state_machine_as_test(SidecarMachine, settings=SETTINGS)
    assert fuzz.deaths == 0
    assert not fuzz.internal_errors, "internal errors:\n" + "\n---\n".join(fuzz.internal_errors[:5])


# -- WebSocket frames ------------------------------------------------------------


def _pack(value: Any) -> bytes:
    """MessagePack, or (for what it cannot carry: ints past 64 bits, lone
    surrogates) a never-valid byte, which is junk worth sending too."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, ValueError, TypeError):
        return b"\xc1"
    return packed


frames = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    json_values.map(_pack),
    json_values.map(json.dumps),
    st.builds(
        lambda m, p, i: json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}),
        st.sampled_from([m for m in METHODS if m != "sidecar.shutdown"] + JUNK_METHODS[:3]),
        json_values,
        st.integers(1, 10**6),
    ),
    st.builds(
        lambda m, p, i: _pack({"jsonrpc": "2.0", "id": i, "method": m, "params": p}),
        st.sampled_from([m for m in METHODS if m != "sidecar.shutdown"]),
        json_values,
        st.integers(1, 10**6),
    ),
    st.sampled_from(
        [
            b"\xc1",  # never used in MessagePack
            b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
            b"\xdf\xff\xff\xff\xff",  # a map claiming 4 billion pairs
            b"\xdb\xff\xff\xff\xff" + b"x" * 8,  # a string claiming 4 GiB
            b"\x91" * 100_000 + b"\xc0",  # 100k nested arrays
            "[" * 100_000,
            '{"jsonrpc":"2.0","id":1,"method":"sidecar.info","params":{}}' + "x",
        ]
    ),
)


async def _ws_round(
    url: str, token: str | None, hello: bool, batch: list[bytes | str]
) -> list[Any]:
    ws = await WsClient.connect(url)
    try:
        if hello:
            await ws.hello(token)
        for frame in batch:
            if ws.closed.is_set():
                break
            try:
                await ws.send_frame(frame)
            except Exception:
                break
        # A probe with an id no junk frame uses (their answers carry their ids).
        fut = ws.inbox.expect("probe")
        try:
            await ws.send_frame(
                ws.encode({"jsonrpc": "2.0", "id": "probe", "method": "sidecar.info"})
            )
            async with asyncio.timeout(CALL_TIMEOUT):
                resp: dict[str, Any] | None = await fut
        except (ConnectionError, ConnectionClosed):
            resp = None  # closed by the server meanwhile (before hello only)
        if hello:
            # Still open and serving after the junk.
            assert resp is not None and resp["result"]["protocol"] == 1, resp
        else:
            # Never authenticated by junk: a request is refused and the
            # connection closed with 4401; a frame over the pre-hello limit
            # (64 KiB) closes it at once, without reading the rest (1009, or
            # no close frame when the reset overtakes it).
            assert resp is None or resp["error"]["code"] == -32001, resp
            code = await ws.wait_closed(timeout=10)
            big = any(len(f) > 64 * 1024 for f in batch)
            assert code == 4401 or (big and code in (1009, None)), code
        return [m for m in ws.inbox.all if "error" in m]
    finally:
        await ws.close()


@pytest.mark.parametrize("hello", [True, False], ids=["after-hello", "before-hello"])
def test_junk_websocket_frames(fuzz: Fuzz, hello: bool) -> None:
    @settings(SETTINGS, max_examples=2 * EXAMPLES)
    @given(batch=st.lists(frames, min_size=1, max_size=8))
    def run(batch: list[bytes | str]) -> None:
        fuzz.ensure()
        sc = fuzz.sc
        assert sc is not None
        fuzz.ws_frames += len(batch)
        fuzz.sent += len(batch)
        errors = fuzz.lt.run(_ws_round(sc.ws_url, sc.ws_token, hello, batch))
        allowed = CONTRACT if hello else CONTRACT | {-32001}
        for e in errors:
            code = e["error"]["code"]
            fuzz.codes[f"ws:{code}"] += 1
            assert code in allowed and code != -32603, e
        assert fuzz.alive()

    run()
    assert fuzz.deaths == 0


# -- regression tests for bugs the fuzzer found -----------------------------------

I64 = 2**63 - 1


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("task.submit", {"task_type": "demo::echo", "run_after_ms": I64}),
        ("task.submit", {"task_type": "demo::echo", "ttl_ms": I64}),
        ("task.submit", {"task_type": "demo::echo", "expected_io": {"disk_read": 2**63}}),
        (
            "task.submit",
            {
                "task_type": "demo::echo",
                "recurring": {"interval_ms": 1000, "initial_delay_ms": I64},
            },
        ),
        ("group.pause", {"group": "g", "duration_ms": I64}),
    ],
    ids=["run_after_ms", "ttl_ms", "expected_io", "initial_delay_ms", "group.pause"],
)
async def test_out_of_range_integers_are_invalid_params(
    spawn: Spawn, method: str, params: dict[str, Any]
) -> None:
    """Found by the fuzzer: these reached SQLite and overflowed (-32603)."""
    sc = await spawn()
    resp = await sc.call(method, params)
    assert resp.get("error", {}).get("code") == -32602, resp
    assert (await sc.result("task.list", {"limit": 0}))["total"] == 0


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1], ids=["2**64", "-2**63-1"])
async def test_a_payload_integer_msgpack_cannot_carry_never_breaks_msgpack_clients(
    spawn: Spawn, n: int
) -> None:
    """Found by the WebSocket fuzzer. Either refuse such a payload at submit
    (-32602, naming the payload) or deliver it to MessagePack clients."""
    sc = await spawn("--ws")
    ws = await WsClient.connect(sc.ws_url)  # MessagePack
    try:
        await ws.hello(sc.ws_token)
        await ws.subscribe(kinds=["completed"])
        resp = await sc.call("task.submit", {"task_type": "demo::echo", "payload": {"n": n}})
        if "error" in resp:
            assert resp["error"]["code"] == -32602, resp
            return
        tid = resp["result"]["id"]
        await sc.wait_status(tid, "completed")
        got = await ws.call("task.get", {"id": tid})
        assert "result" in got, got
        listed = await ws.call("history.list", {})
        assert "result" in listed, listed
        await ws.wait_task_event(tid, "completed")
        assert not [m for m in ws.inbox.other if "error" in m], ws.inbox.other
    finally:
        await ws.close()

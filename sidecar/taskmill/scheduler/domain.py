"""Domains, task types and executors.

A :class:`Domain` groups task types under a name (``"files"`` gives
``"files::hash"``) with shared defaults and state. Each type may have an
executor: an ``async def (payload, ctx)`` (a plain ``def`` runs in a worker
thread), or an object with ``execute`` and optional ``finalize`` and
``on_cancel``. A type declared without one waits for a remote worker.

Defaults are layered per call > type > domain > scheduler.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..errors import InvalidParams, UnknownTaskType
from ..model import IoBudget, RetryPolicy, TtlFrom, check_name, parse_priority, split_task_type
from .threads import run_sync

if TYPE_CHECKING:
    from .context import TaskContext

__all__ = ["BoundExecutor", "Domain", "Executor", "TaskType", "TypeRegistry"]


@runtime_checkable
class Executor(Protocol):
    """The class form of an executor. ``finalize`` and ``on_cancel`` are optional."""

    def execute(self, payload: Any, ctx: TaskContext) -> Any: ...


ExecuteFn = Callable[[Any, "TaskContext"], Any]
F = TypeVar("F", bound=Callable[..., Any])


def _is_async(fn: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (such an
    object called on a thread made a coroutine there, left un-awaited when the
    run was cancelled meanwhile)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 (its kind, not whether)
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


async def _call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Await ``fn(*args)`` if it is a coroutine function, else run it in a thread
    (the scheduler's executor threads, see :mod:`taskmill.scheduler.threads`)."""
    if _is_async(fn):
        return await fn(*args)
    result = await run_sync(fn, *args)
    if inspect.isawaitable(result):
        return await result
    return result


@dataclass(slots=True)
class BoundExecutor:
    """An executor normalised to three optional async callables."""

    execute: Callable[[Any, TaskContext], Awaitable[Any]]
    finalize: Callable[[Any, Any, TaskContext], Awaitable[Any]] | None = None
    on_cancel: Callable[[Any, TaskContext], Awaitable[Any]] | None = None
    #: Where it runs: "python" (in this process) or "worker" (remote).
    where: str = "python"
    #: Called once when the run ends, however it ends (frees a worker slot).
    release: Callable[[], None] | None = None

    @classmethod
    def of(cls, target: Any) -> BoundExecutor:
        if isinstance(target, BoundExecutor):
            return target
        if callable(target) and not hasattr(target, "execute"):
            fn = target
            if _is_async(fn):
                return cls(execute=fn)  # called as it is: no wrapper per run

            async def execute(payload: Any, ctx: TaskContext) -> Any:
                return await _call_maybe_async(fn, payload, ctx)

            return cls(execute=execute)
        if hasattr(target, "execute"):
            obj = target
            execute_m: Callable[[Any, TaskContext], Awaitable[Any]]

            if _is_async(obj.execute):
                execute_m = obj.execute
            else:

                async def execute_m(payload: Any, ctx: TaskContext) -> Any:
                    return await _call_maybe_async(obj.execute, payload, ctx)

            fin = None
            if hasattr(obj, "finalize"):

                async def fin_m(payload: Any, memo: Any, ctx: TaskContext) -> Any:
                    return await _call_maybe_async(obj.finalize, payload, memo, ctx)

                fin = fin_m
            canc = None
            if hasattr(obj, "on_cancel"):

                async def canc_m(payload: Any, ctx: TaskContext) -> Any:
                    return await _call_maybe_async(obj.on_cancel, payload, ctx)

                canc = canc_m
            return cls(execute=execute_m, finalize=fin, on_cancel=canc)
        raise TypeError(f"not an executor: {target!r}")


@dataclass(slots=True, kw_only=True)
class TaskType:
    """A declared task type and its defaults (``None`` = inherit from the domain)."""

    domain: str
    name: str
    executor: BoundExecutor | None = None
    priority: int | None = None
    retry: RetryPolicy | None = None
    ttl_ms: int | None = None
    ttl_from: TtlFrom | None = None
    group: str | None = None
    expected_io: IoBudget | None = None
    max_concurrency: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: An attempt running longer ends as a retryable failure (None: no bound).
    timeout_ms: int | None = None
    #: Where the declaration came from: "python", "config" or "worker".
    source: str = "python"

    @property
    def qualified(self) -> str:
        return f"{self.domain}::{self.name}"

    def config_dict(self) -> dict[str, Any]:
        """The declared defaults, as ``sidecar.info`` shows them."""
        out: dict[str, Any] = {}
        if self.priority is not None:
            out["priority"] = self.priority
        if self.retry is not None:
            out["retry"] = self.retry.to_dict()
        if self.ttl_ms is not None:
            out["ttl_ms"] = self.ttl_ms
        if self.ttl_from is not None:
            out["ttl_from"] = self.ttl_from
        if self.group is not None:
            out["group"] = self.group
        if self.expected_io is not None:
            out["expected_io"] = self.expected_io.to_dict()
        if self.max_concurrency is not None:
            out["max_concurrency"] = self.max_concurrency
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.timeout_ms is not None:
            out["timeout_ms"] = self.timeout_ms
        return out


class Domain:
    """A named set of task types with shared defaults and state.

    Example::

        files = Domain("files", default_priority="background")

        @files.task("hash", retry=RetryPolicy(max_retries=5))
        async def hash_file(payload, ctx):
            ...
    """

    def __init__(
        self,
        name: str,
        *,
        default_priority: int | str | None = None,
        default_retry: RetryPolicy | None = None,
        default_ttl_ms: int | None = None,
        default_group: str | None = None,
        default_tags: Mapping[str, str] | None = None,
        max_concurrency: int | None = None,
        state: Mapping[Any, Any] | None = None,
    ) -> None:
        check_name(name, "domain")
        self.name = name
        self.default_priority = (
            None if default_priority is None else parse_priority(default_priority)
        )
        self.default_retry = default_retry
        self.default_ttl_ms = default_ttl_ms
        self.default_group = default_group
        self.default_tags: dict[str, str] = dict(default_tags or {})
        self.max_concurrency = max_concurrency
        #: Domain-scoped shared state, seen by executors before the global state.
        self.state: dict[Any, Any] = dict(state or {})
        self.types: dict[str, TaskType] = {}

    def register(
        self,
        name: str,
        executor: Any = None,
        *,
        priority: int | str | None = None,
        retry: RetryPolicy | None = None,
        ttl_ms: int | None = None,
        ttl_from: TtlFrom | None = None,
        group: str | None = None,
        expected_io: IoBudget | None = None,
        max_concurrency: int | None = None,
        tags: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        source: str = "python",
    ) -> TaskType:
        """Declare a task type, with an executor or (``None``) for remote workers.

        ``timeout_ms`` bounds one attempt: past it the attempt ends as a
        retryable failure (a Python executor is cancelled, a worker gets
        ``worker.cancel``).
        """
        if timeout_ms is not None and timeout_ms <= 0:
            raise InvalidParams("timeout_ms must be > 0", field="timeout_ms")
        check_name(name, "task type")
        tt = TaskType(
            domain=self.name,
            name=name,
            executor=None if executor is None else BoundExecutor.of(executor),
            priority=None if priority is None else parse_priority(priority),
            retry=retry,
            ttl_ms=ttl_ms,
            ttl_from=ttl_from,
            group=group,
            expected_io=expected_io,
            max_concurrency=max_concurrency,
            tags=dict(tags or {}),
            timeout_ms=timeout_ms,
            source=source,
        )
        self.types[name] = tt
        return tt

    def task(
        self,
        name: str,
        *,
        priority: int | str | None = None,
        retry: RetryPolicy | None = None,
        ttl_ms: int | None = None,
        ttl_from: TtlFrom | None = None,
        group: str | None = None,
        expected_io: IoBudget | None = None,
        max_concurrency: int | None = None,
        tags: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        source: str = "python",
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`: declares ``name`` with the
        decorated function (or class instance) as its executor.

        Args:
            name: The type's name in this domain (``"thumbnail"`` gives
                ``"<domain>::thumbnail"``).
            priority: Default priority: 0..255 or ``"realtime"``, ``"high"``,
                ``"normal"``, ``"background"``, ``"idle"``.
            retry: Default retry policy of the type's tasks.
            ttl_ms: Default time to live of a queued task.
            ttl_from: Whether the TTL counts from ``"submission"`` (default) or
                ``"first_attempt"``.
            group: Default group (for group limits, weights, pauses).
            expected_io: Bytes one task is expected to read/write/send/receive.
            max_concurrency: At most this many of the type run at once.
            tags: Tags every task of the type carries (a submission's own win).
            timeout_ms: An attempt running longer is a retryable failure.
            source: Where the declaration comes from (``"python"``).

        Raises:
            InvalidParams: a bad name, priority or ``timeout_ms``.
        """

        def deco(fn: F) -> F:
            self.register(
                name,
                fn,
                priority=priority,
                retry=retry,
                ttl_ms=ttl_ms,
                ttl_from=ttl_from,
                group=group,
                expected_io=expected_io,
                max_concurrency=max_concurrency,
                tags=tags,
                timeout_ms=timeout_ms,
                source=source,
            )
            return fn

        return deco

    def declare(
        self,
        name: str,
        *,
        priority: int | str | None = None,
        retry: RetryPolicy | None = None,
        ttl_ms: int | None = None,
        ttl_from: TtlFrom | None = None,
        group: str | None = None,
        expected_io: IoBudget | None = None,
        max_concurrency: int | None = None,
        tags: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        source: str = "python",
    ) -> TaskType:
        """Declare a type with no executor here (a remote worker runs it).

        The options are those of :meth:`task`.
        """
        return self.register(
            name,
            None,
            priority=priority,
            retry=retry,
            ttl_ms=ttl_ms,
            ttl_from=ttl_from,
            group=group,
            expected_io=expected_io,
            max_concurrency=max_concurrency,
            tags=tags,
            timeout_ms=timeout_ms,
            source=source,
        )


class _TypeCaps(Mapping[str, int]):
    """``task_type -> max_concurrency`` of the types that have one, looked up
    per type (a claim asks only about the types it meets)."""

    def __init__(self, registry: TypeRegistry) -> None:
        self._registry = registry

    def __getitem__(self, task_type: str) -> int:
        cap = self.get(task_type)
        if cap is None:
            raise KeyError(task_type)
        return cap

    def get(self, task_type: str, default: int | None = None) -> int | None:  # type: ignore[override]
        # The gate asks this of every candidate, and most types have no cap:
        # Mapping.get would raise and catch a KeyError each time.
        tt = self._registry.find(task_type)
        if tt is None or tt.max_concurrency is None:
            return default
        return tt.max_concurrency

    def __iter__(self) -> Iterator[str]:
        return (t.qualified for t in self._registry.all_types() if t.max_concurrency is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class TypeRegistry:
    """Every domain and task type the scheduler knows."""

    def __init__(self, domains: list[Domain] | None = None) -> None:
        self.domains: dict[str, Domain] = {}
        #: ``task_type -> max_concurrency``, a live view.
        self.type_caps: Mapping[str, int] = _TypeCaps(self)
        for d in domains or []:
            self.add_domain(d)

    def remove(self, task_type: str) -> None:
        """Forget a type (a worker's inline declaration that nobody serves now)."""
        domain, _, name = task_type.partition("::")
        d = self.domains.get(domain)
        if d is not None:
            d.types.pop(name, None)

    def add_domain(self, domain: Domain) -> None:
        existing = self.domains.get(domain.name)
        if existing is None:
            self.domains[domain.name] = domain
            return
        if existing is domain:
            return
        # Merge: later declarations add types; a type declared twice is replaced.
        for name, tt in domain.types.items():
            existing.types[name] = tt

    def domain(self, name: str, *, create: bool = False) -> Domain:
        d = self.domains.get(name)
        if d is None:
            if not create:
                raise UnknownTaskType(f"unknown domain {name!r}", field="domain")
            d = Domain(name)
            self.domains[name] = d
        return d

    def get(self, task_type: str, field_name: str = "task_type") -> TaskType:
        found = self.find(task_type)  # a declared type's name is valid: no checks
        if found is not None:
            return found
        domain, name = split_task_type(task_type, field_name)
        d = self.domains.get(domain)
        tt = None if d is None else d.types.get(name)
        if tt is None:
            known = sorted(t.qualified for t in self.all_types())
            close = difflib.get_close_matches(task_type, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownTaskType(f"unknown task type {task_type!r}{hint}", field=field_name)
        return tt

    def find(self, task_type: str) -> TaskType | None:
        domain, _, name = task_type.partition("::")
        d = self.domains.get(domain)
        return None if d is None else d.types.get(name)

    def declare(self, task_type: str, *, source: str, **config: Any) -> TaskType:
        """Declare (or re-declare) a type by qualified name, creating its domain."""
        domain, name = split_task_type(task_type)
        d = self.domain(domain, create=True)
        existing = d.types.get(name)
        if existing is not None and existing.executor is not None and source == "worker":
            raise InvalidParams(f"{task_type} already has a Python executor", field="task_types")
        return d.register(name, None, source=source, **config)

    def all_types(self) -> list[TaskType]:
        return [t for d in self.domains.values() for t in d.types.values()]

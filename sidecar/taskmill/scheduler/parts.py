"""What the scheduler's API rooms share: :class:`SchedulerParts`.

:class:`~taskmill.scheduler.core.Scheduler` is a façade: its lifecycle and
submission live in ``core.py``, its control API in ``control.py`` and its
read API in ``queries.py`` (mixins), over collaborators it builds and owns:
:class:`~taskmill.scheduler.executions.Executions`,
:class:`~taskmill.scheduler.runloop.RunLoop` and
:class:`~taskmill.scheduler.reactions.Reactions`. This class declares those
parts, so each room is typed against them and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..clock import Clock
from ..model import Submission, SubmitResult, TaskRecord
from .awareness import Awareness
from .config import SchedulerConfig
from .dispatch import DispatchPolicy
from .domain import TypeRegistry
from .events import EventBus

if TYPE_CHECKING:
    from ..store.store import Store
    from .executions import Executions
    from .reactions import Reactions
    from .runloop import RunLoop
    from .taskio import IoPacing

__all__ = ["SchedulerParts"]


class SchedulerParts:
    """The state and collaborators the scheduler's rooms work on."""

    path: str
    config: SchedulerConfig
    clock: Clock
    registry: TypeRegistry
    events: EventBus
    metrics: Counter[str]
    policy: DispatchPolicy
    awareness: Awareness
    executions: Executions
    reactions: Reactions
    loop: RunLoop
    #: Preempted tasks may be waiting to resume (checked by housekeeping).
    _preempted: bool

    @property
    def store(self) -> Store:
        raise NotImplementedError

    @property
    def io_pacing(self) -> IoPacing:
        """The pacer executors' IO goes through (``ctx.io``), and how."""
        return self.awareness.io

    def wake(self) -> None:
        raise NotImplementedError

    async def submit_many(
        self, subs: Sequence[Submission], *, parent: TaskRecord | None = None
    ) -> list[SubmitResult]:
        raise NotImplementedError

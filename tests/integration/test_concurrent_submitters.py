"""Many concurrent submitters with overlapping keys (seeded random)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from taskmill import Domain, Status, Submission
from tests.helpers import MakeScheduler, until


async def test_overlapping_keys_one_active_per_key_and_history_once(
    make_scheduler: MakeScheduler,
) -> None:
    rng = random.Random(20261125)
    active_by_key: Counter[str] = Counter()
    violations: list[str] = []

    async def work(payload: dict[str, Any], ctx: Any) -> Any:
        key = payload["k"]
        active_by_key[key] += 1
        if active_by_key[key] > 1:
            violations.append(key)
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        active_by_key[key] -= 1
        return key

    d = Domain("c")
    d.register("w", work)
    sched = await make_scheduler(d, max_concurrency=6)
    keys = [f"key-{i}" for i in range(12)]
    inserted: set[int] = set()
    outcomes: Counter[str] = Counter()

    async def submitter(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(40):
            k = r.choice(keys)
            if r.random() < 0.2:
                subs = [
                    Submission(task_type="c::w", payload={"k": kk}, key=kk)
                    for kk in r.sample(keys, 3)
                ]
                results = await sched.submit_batch(subs)
            else:
                results = [await sched.submit("c::w", {"k": k}, key=k)]
            for res in results:
                outcomes[res.outcome] += 1
                if res.outcome == "inserted":
                    inserted.add(res.id)
            if r.random() < 0.3:
                await asyncio.sleep(0)

    await asyncio.gather(*(submitter(rng.randrange(1 << 30)) for _ in range(16)))
    # At most one active task per key at any time, as seen by the store.
    tasks, _ = await sched.list_tasks(limit=1000)
    assert len({t.key for t in tasks}) == len(tasks)
    await until(lambda: not sched.running(), timeout=30)
    await until(lambda: sched.metrics["completed"] >= len(inserted), timeout=30)
    history, total = await sched.history(limit=100_000)
    per_id = Counter(r.id for r in history)
    assert set(per_id) == inserted
    assert all(n == 1 for n in per_id.values())
    assert all(r.status is Status.COMPLETED for r in history)
    assert not violations
    assert outcomes["inserted"] == len(inserted) and outcomes["duplicate"] > 0

"""Executor threads: daemon threads the scheduler owns, with per-run accounting."""

from __future__ import annotations

import asyncio
import threading

from taskmill.scheduler.threads import ExecutorThreads, ThreadSlot, bind, run_sync


async def test_run_sync_counts_the_threads_a_run_holds() -> None:
    threads = ExecutorThreads()
    freed: list[ThreadSlot] = []
    slot = ThreadSlot(freed.append)
    gate = threading.Event()
    seen: list[int] = []

    def work() -> str:
        seen.append(slot.busy)
        gate.wait(5)
        return threading.current_thread().name

    task = asyncio.get_running_loop().create_task(run_sync(work), context=bind(threads, slot))
    while not seen:
        await asyncio.sleep(0.001)
    assert slot.busy == 1 and seen == [1]
    gate.set()
    name = await task
    assert name.startswith("taskmill-exec") and slot.busy == 0 and freed == [slot]
    threads.shutdown()


async def test_a_cancelled_run_keeps_its_count_until_its_thread_returns() -> None:
    threads = ExecutorThreads()
    freed: list[ThreadSlot] = []
    slot = ThreadSlot(freed.append)
    gate = threading.Event()
    task = asyncio.get_running_loop().create_task(
        run_sync(gate.wait, 5), context=bind(threads, slot)
    )
    while slot.busy == 0:
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert slot.busy == 1 and freed == [], "the thread still runs the cancelled code"
    gate.set()
    while not freed:
        await asyncio.sleep(0.001)
    assert slot.busy == 0


async def test_the_pool_grows_to_what_is_asked_and_passes_base_exceptions() -> None:
    threads = ExecutorThreads()
    slot = ThreadSlot()
    barrier = threading.Barrier(6, timeout=5)

    def meet() -> int:
        return barrier.wait()

    ctx = bind(threads, slot)
    loop = asyncio.get_running_loop()
    got = await asyncio.gather(*(loop.create_task(run_sync(meet), context=ctx) for _ in range(6)))
    assert sorted(got) == list(range(6)), "six at once: no one waited for a thread"
    assert threads.size >= 6

    def leave() -> None:
        raise SystemExit(4)

    async def catch() -> object:
        # Awaited directly, as the scheduler awaits an executor: a task of its
        # own raising SystemExit would end the event loop instead.
        try:
            await run_sync(leave)
        except SystemExit as exc:
            return exc.code
        return None

    assert await loop.create_task(catch(), context=ctx) == 4
    threads.shutdown()


async def test_outside_a_scheduler_it_falls_back_to_asyncio() -> None:
    assert await run_sync(lambda: 7) == 7

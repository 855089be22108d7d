"""A probe client in a process of its own (so the abuser cannot slow it):

    python -m tests.reliability.probe_main URL TOKEN TASK_ID

Says hello, prints ``ready``, then asks ``task.get`` every 5 ms until its
stdin closes, and prints one JSON line: the latencies in ms and the errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

from tests.e2e.harness import WsClient

EVERY_S = 0.005


async def main(url: str, token: str, task_id: int) -> None:
    client = await WsClient.connect(url)
    await client.hello(token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_eof, daemon=True).start()
    print("ready", flush=True)
    latencies: list[float] = []
    errors = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        resp = await client.call("task.get", {"id": task_id}, timeout=60)
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += "error" in resp
        try:
            async with asyncio.timeout(EVERY_S):
                await stop.wait()
        except TimeoutError:
            pass
    await client.close()
    print(json.dumps({"latencies_ms": latencies, "errors": errors}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""A flood of silent WebSocket connections, in a process of its own:

    python -m tests.reliability.flood_main URL OPENERS

``OPENERS`` loops each open a connection that completes the upgrade and never
says hello, wait until the sidecar drops it, and open the next one at once.
Prints ``ready`` once the flood runs; on stdin EOF prints how many
connections were opened and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import threading

from websockets.asyncio.client import connect


async def main(url: str, openers: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    opened = failed = 0

    def wait_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    async def opener() -> None:
        nonlocal opened, failed
        while not stop.is_set():
            try:
                async with asyncio.timeout(10):
                    ws = await connect(url, open_timeout=5)
                opened += 1
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await ws.wait_closed()
            except Exception:  # refused, dropped mid-handshake: go again
                failed += 1
                await asyncio.sleep(0.001)

    threading.Thread(target=wait_eof, daemon=True).start()
    tasks = [loop.create_task(opener()) for _ in range(openers)]
    print("ready", flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"{opened} {failed}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

#!/usr/bin/env python3
"""Run the photos domain in a sidecar: make a test image, thumbnail it, hash it.

    python examples/python_app/run.py             # python -m taskmill --app ... --app-path ...
    TASKMILL_SIDECAR=build/out/onedir/photos-sidecar-<triple>/photos-sidecar-<triple> \
        python examples/python_app/run.py --bundled   # the custom frozen binary

With ``--bundled`` neither ``--app`` nor ``--app-path`` is passed: the module
must be inside the binary and loaded by default (build/build.py --app freezes
it in as the binary's app). Exits non-zero if anything is off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "headless"))
from client import SidecarClient, sidecar_command  # noqa: E402


def write_test_image(path: Path, width: int = 640, height: int = 480) -> None:
    """A binary PPM gradient (what a camera import would hand to photos::thumbnail)."""
    rows = bytearray()
    for y in range(height):
        for x in range(width):
            rows += bytes((x * 255 // width, y * 255 // height, 128))
    path.write_bytes(f"P6\n{width} {height}\n255\n".encode() + rows)


def wait_all(sc: SidecarClient, *task_ids: int) -> dict[int, dict]:
    """The results of the given tasks, in whatever order they finish."""
    results: dict[int, dict] = {}
    while len(results) < len(task_ids):
        event = sc.next_event()
        if event.get("task_id") in task_ids:
            if event["kind"] != "completed":
                raise SystemExit(f"task {event['task_id']} {event['kind']}: {event.get('error')}")
            results[event["task_id"]] = event["result"]
    return results


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bundled", action="store_true", help="the app is frozen into the binary")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "IMG_0001.ppm"
        write_test_image(image)
        app = [] if args.bundled else ["--app", "myapp.tasks:domain", "--app-path", str(HERE)]
        cmd = sidecar_command("--stdio", "--db", str(Path(tmp) / "tasks.db"), *app)
        with SidecarClient(cmd) as sc:
            print(f"task types: {', '.join(sc.ready['task_types'])}")
            sc.call(
                "events.subscribe",
                filter={"domains": ["photos"], "kinds": ["completed", "failed", "dead_lettered"]},
            )
            thumb = sc.call(
                "task.submit",
                task_type="photos::thumbnail",
                payload={"path": str(image), "max_side": 128},
                priority="high",
            )
            digest = sc.call("task.submit", task_type="photos::hash", payload={"path": str(image)})
            results = wait_all(sc, thumb["id"], digest["id"])
            result = results[thumb["id"]]
            print(f"thumbnail: {result['width']}x{result['height']} -> {Path(result['path']).name}")
            assert (result["width"], result["height"]) == (128, 96), result
            assert Path(result["path"]).read_bytes().startswith(b"P6\n128 96\n255\n")
            print(f"sha256: {results[digest['id']]['sha256']}")
            stats = sc.call("history.stats", task_type="photos::thumbnail")
            print(
                f"thumbnail stats: read {stats['avg_read_bytes']:.0f} B, "
                f"wrote {stats['avg_write_bytes']:.0f} B"
            )
        return sc.proc.returncode


if __name__ == "__main__":
    sys.exit(main())

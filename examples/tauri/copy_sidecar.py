#!/usr/bin/env python3
"""Build the frozen sidecar and put it where Tauri's externalBin looks for it.

    python examples/tauri/copy_sidecar.py [--onefile | --onedir] [build.py options...]

Copies build/build.py's output to src-tauri/binaries/:
- onedir (default on Windows and macOS): taskmill-sidecar-<triple>[.exe] and its
  _internal/ folder (bundled through bundle.resources / bundle.macOS.files);
- onefile (default on Linux, where deb/rpm/AppImage put externalBin in
  /usr/bin but resources in /usr/lib/<app>/): the single file.
Other options (--triple, --app, --app-path, --hidden-import, --force) are passed
on to build.py. With --app, the app's modules are frozen in as the binary's
default apps, so the Tauri capability's argument list needs no --app.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent.parent / "build" / "build.py"
BINARIES = HERE / "src-tauri" / "binaries"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False,  # --out, --onefile...: pass build.py's options on untouched
        description=__doc__.split("\n\n")[0],
        epilog="build.py options (passed on): [--app MODULE:ATTR --app-path DIR]... "
        "[--hidden-import MODULE]... [--name NAME] [--triple TRIPLE] [--force]; "
        "see `python build/build.py --help`.",
    )
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--onefile", action="store_true", help="default on Linux")
    layout.add_argument("--onedir", action="store_true", help="default on Windows and macOS")
    args, passed_on = p.parse_known_args(argv)
    onefile = args.onefile or (sys.platform.startswith("linux") and not args.onedir)
    build = [sys.executable, str(BUILD), *passed_on, *(["--onefile"] if onefile else [])]
    result = subprocess.run(build, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        return result.returncode  # build.py said why on stderr
    exe = Path(result.stdout.strip())
    BINARIES.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(BINARIES / "_internal", ignore_errors=True)
    shutil.copy2(exe, BINARIES / exe.name)
    if not onefile:
        shutil.copytree(exe.parent / "_internal", BINARIES / "_internal", symlinks=True)
    print(f"copied {exe.name}{'' if onefile else ' and _internal/'} to {BINARIES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

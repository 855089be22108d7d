#!/usr/bin/env python3
"""Build the frozen sidecar and put it where Tauri's externalBin looks for it.

    python examples/tauri/copy_sidecar.py [--onefile | --onedir] [build.py options...]

Copies build/build.py's output to src-tauri/binaries/:
- onedir (default on Windows and macOS): taskmill-sidecar-<triple>[.exe] and its
  _internal/ folder (bundled through bundle.resources / bundle.macOS.files);
- onefile (default on Linux, where deb/rpm/AppImage put externalBin in
  /usr/bin but resources in /usr/lib/<app>/): the single file.
Other options (--triple, --app, --app-path) are passed on to build.py.
"""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent.parent / "build" / "build.py"
BINARIES = HERE / "src-tauri" / "binaries"

args = sys.argv[1:]
onefile = "--onefile" in args or (sys.platform.startswith("linux") and "--onedir" not in args)
args = [a for a in args if a not in ("--onefile", "--onedir")] + (["--onefile"] if onefile else [])
exe = Path(
    subprocess.run(
        [sys.executable, str(BUILD), *args], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
)
BINARIES.mkdir(parents=True, exist_ok=True)
shutil.rmtree(BINARIES / "_internal", ignore_errors=True)
shutil.copy2(exe, BINARIES / exe.name)
if not onefile:
    shutil.copytree(exe.parent / "_internal", BINARIES / "_internal", symlinks=True)
print(f"copied {exe.name}{'' if onefile else ' and _internal/'} to {BINARIES}")

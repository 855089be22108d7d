#!/usr/bin/env python3
"""Freeze the taskmill sidecar with PyInstaller, named for Tauri's externalBin.

Usage (from the project root, with the project's venv)::

    python build/build.py [--onefile] [--app MODULE:ATTR --app-path DIR]...
                          [--hidden-import MODULE]... [--name NAME] [--triple TRIPLE]
                          [--out DIR] [--force]
                          [--codesign-identity ID] [--entitlements PLIST]  (macOS)

Output (NAME defaults to ``taskmill-sidecar``, TRIPLE to the host's)::

    onedir:  OUT/onedir/NAME-TRIPLE/NAME-TRIPLE[.exe]  (+ _internal/ next to it)
    onefile: OUT/onefile/NAME-TRIPLE[.exe]

The path of the executable is the only thing printed on stdout, so scripts can
do ``exe=$(python build/build.py)``; progress goes to stderr. The build is
skipped when a stamp under build/cache/ holds the same hash of everything that
goes into it (sidecar/**/*.py and *.sql, pyproject.toml, the spec, this script,
the app's sources, the Python version and every distribution this Python can
import from, by name, version and RECORD) and the executable exists.
``--force`` rebuilds from scratch (PyInstaller's analysis included).

With ``--app``, the app modules must import in this Python first (their
third-party packages are installed where this Python sees them: the venv that
runs build.py), so a missing package fails the build in a second, naming it.
They are frozen in as the binary's default apps (it loads them on every start
without ``--app``), and the built binary must load them (``--check``) before
the build counts as done: a module PyInstaller did not see fails the build too,
naming it (``--hidden-import`` adds it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build" / "taskmill-sidecar.spec"
CACHE = ROOT / "build" / "cache"
ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "i386": "i686",
    "x86": "i686",
    "win32": "i686",
    "armv7l": "armv7",
}


def log(msg: str) -> None:
    print(f"build.py: {msg}", file=sys.stderr, flush=True)


def python_arch() -> str:
    """The CPU architecture of this interpreter, which is what PyInstaller builds for."""
    arch = sysconfig.get_platform().rsplit("-", 1)[-1].lower()  # linux-x86_64, win-amd64...
    if arch == "universal2":  # a fat macOS Python runs as the machine's own CPU
        arch = platform.machine().lower()
    return ARCH_ALIASES.get(arch, arch)


def rustc_host() -> str | None:
    """The ``host:`` line of ``rustc -Vv`` (what Tauri builds for), if rustc is installed."""
    rustc = shutil.which("rustc")
    if rustc is None:
        return None
    try:
        out = subprocess.run([rustc, "-Vv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("host:"):
            return line.split(":", 1)[1].strip()
    return None


def host_triple() -> str:
    """rustc's host triple when its CPU matches this Python's, else one derived from Python."""
    arch = python_arch()
    host = rustc_host()
    if host is not None:
        if host.split("-", 1)[0] == arch:
            return host
        log(f"rustc host {host} is not this Python's CPU ({arch}); naming for {arch}")
    if sys.platform == "darwin":
        return f"{arch}-apple-darwin"
    if sys.platform == "win32":
        return f"{arch}-pc-windows-msvc"
    if sys.platform.startswith("linux"):
        libc = "gnu" if platform.libc_ver()[0] == "glibc" else "musl"
        return f"{arch}-unknown-linux-{libc}{'eabihf' if arch.startswith('arm') else ''}"
    return f"{arch}-unknown-{sys.platform.rstrip('0123456789')}"


def input_files(app_paths: list[str]) -> list[Path]:
    files = [p for pattern in ("*.py", "*.sql") for p in (ROOT / "sidecar").rglob(pattern)]
    files += [ROOT / "pyproject.toml", SPEC, Path(__file__).resolve(), ROOT / "build" / "entry.py"]
    for folder in app_paths:
        files += Path(folder).resolve().rglob("*.py")
    return sorted({f for f in files if "__pycache__" not in f.parts})


def distributions() -> dict[str, list[str]]:
    """Every distribution this Python can import from: name -> [version, RECORD hash].

    PyInstaller bundles whatever the app imports from wherever this Python
    finds it, so installing, upgrading or reinstalling any of them (an app's
    dependency, PyInstaller, a hook package) must make the next build run.
    The RECORD file lists each installed file's hash, so a reinstall of the
    same version with other contents counts too.
    """
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name or name in found:  # the first on sys.path wins, as for imports
            continue
        record = dist.read_text("RECORD") or ""
        found[name] = [dist.version, hashlib.sha256(record.encode()).hexdigest()[:16]]
    return found


def inputs_hash(args: argparse.Namespace, app_paths: list[str]) -> str:
    """What the build depends on, except onedir/onefile (both share one analysis)."""
    h = hashlib.sha256()
    settings = [
        args.name,
        args.triple,
        args.app,
        args.app_path,
        args.hidden_import,
        sys.version,
        distributions(),
        args.codesign_identity,
        args.entitlements,
    ]
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in input_files(app_paths):
        h.update(f"\0{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def sidecar_env() -> dict[str, str]:
    """The environment for running the built binary: no PYTHONPATH or PYTHONHOME,
    so what it imports comes from inside it."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def missing_module(text: str) -> str | None:
    """The module named by a ``No module named 'X'`` message, if any."""
    match = re.search(r"No module named '([^']+)'", text)
    return match.group(1) if match else None


def check_apps_here(args: argparse.Namespace) -> bool:
    """Import the --app modules in this Python (``python -m taskmill --check``).

    PyInstaller bundles what this Python can import; a module that does not
    import here cannot be in the binary, and PyInstaller would only note it
    in its warn file. One second instead of a build.
    """
    cmd = [sys.executable, "-m", "taskmill", "--check"]
    for spec in args.app:
        cmd += ["--app", spec]
    for folder in args.app_path:
        cmd += ["--app-path", str(Path(folder).resolve())]
    env = dict(os.environ)
    paths = [str(ROOT / "sidecar"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    # From an empty folder: `python -m` puts the working directory on sys.path,
    # and a module found only there would not be bundled.
    with tempfile.TemporaryDirectory() as empty:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=empty)
    if res.returncode == 0:
        return True
    why = res.stderr.strip().removeprefix("taskmill-sidecar: ")
    log(f"the app does not import in this Python ({sys.executable}): {why}")
    module = missing_module(why)
    if module is not None:
        top = module.partition(".")[0]
        log(
            f"install the package that provides '{top}' into this Python, which is the one "
            f"PyInstaller bundles from:  {sys.executable} -m pip install <package>  "
            "(then build again; --force is not needed)"
        )
    return False


def check_built(exe: Path, args: argparse.Namespace, work: Path) -> str | None:
    """Run the built binary's ``--check`` (its frozen-in apps and the demo domain)
    from an empty folder; None if it loads them, else why not."""
    with tempfile.TemporaryDirectory() as empty:
        res = subprocess.run(
            [str(exe), "--check", "--demo"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=empty,
            env=sidecar_env(),
        )
    if res.returncode == 0:
        return None
    why = (res.stderr.strip() or res.stdout.strip())[-2000:]
    module = missing_module(why)
    if module is not None:
        why += (
            f"\n  PyInstaller did not bundle '{module}' although this Python imports it "
            f"(an import by a computed name, or a plugin): pass --hidden-import {module}"
            f" (PyInstaller's own notes: {work / SPEC.stem / f'warn-{SPEC.stem}.txt'})"
        )
    return why


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onefile", action="store_true", help="one self-extracting file (slower start)")
    p.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="bundle an app's task module (repeatable); the binary loads it without --app",
    )
    p.add_argument(
        "--app-path",
        action="append",
        default=[],
        metavar="DIR",
        help="folder the --app modules are imported from (repeatable)",
    )
    p.add_argument(
        "--hidden-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="bundle a module PyInstaller cannot see (imported by a computed name; repeatable)",
    )
    p.add_argument("--codesign-identity", help="macOS: sign the binaries with this identity")
    p.add_argument("--entitlements", help="macOS: entitlements plist used when signing")
    p.add_argument("--name", default="taskmill-sidecar", help="base name (default %(default)s)")
    p.add_argument("--triple", help="target triple suffix (default: rustc host, else derived)")
    p.add_argument("--out", default=str(ROOT / "build" / "out"), help="output folder")
    p.add_argument("--force", action="store_true", help="rebuild from scratch, even if up to date")
    p.add_argument("--print-triple", action="store_true", help="print the triple and exit")
    args = p.parse_args(argv)
    args.triple = args.triple or host_triple()
    if args.print_triple:
        print(args.triple)
        return 0
    for spec in args.app:
        if ":" not in spec:
            p.error(f"--app {spec!r}: expected MODULE:ATTR")
    if args.app and not args.app_path:
        p.error("--app needs --app-path DIR (the folder to import it from)")

    full = args.full = f"{args.name}-{args.triple}"
    exe_name = full + (".exe" if sys.platform == "win32" else "")
    mode = "onefile" if args.onefile else "onedir"
    out = Path(args.out).resolve() / mode
    exe = out / exe_name if args.onefile else out / full / exe_name
    stamp = CACHE / "stamps" / f"{mode}-{full}.json"
    sources = inputs_hash(args, args.app_path)
    digest = hashlib.sha256(f"{sources} {mode}".encode()).hexdigest()
    try:
        previous = json.loads(stamp.read_text())
    except (OSError, ValueError):
        previous = {}
    if not args.force and previous == {"hash": digest, "exe": str(exe)} and exe.is_file():
        log(f"{mode} build is up to date")
        print(exe)
        return 0

    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        log("PyInstaller is missing: run  .venv/bin/pip install -e '.[build]'")
        return 2
    started = time.monotonic()
    if args.app and not check_apps_here(args):
        return 1
    log(f"building {mode} {full} (PyInstaller, this takes a while)...")
    stamp.unlink(missing_ok=True)
    # One work folder per name, so a onefile build after the onedir one reuses its
    # analysis. PyInstaller re-analyses only when the entry script changes, so a
    # change anywhere else (a new import, a newly installed package) must start
    # from an empty folder; so does --force.
    work = CACHE / "work" / full
    marker = work / "inputs.sha256"
    if args.force or not marker.is_file() or marker.read_text() != sources:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    bundled = work / "bundled_apps.json"
    bundled.write_text(json.dumps({"apps": args.app}))
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        *(["--clean"] if args.force else []),
        "--log-level=WARN",
        "--distpath",
        str(out),
        "--workpath",
        str(work),
        "--",
        "--name",
        full,
    ]
    cmd += ["--onefile"] if args.onefile else []
    for spec in args.app:
        cmd += ["--app", spec]
    for folder in args.app_path:
        cmd += ["--app-path", str(Path(folder).resolve())]
    if args.app:
        cmd += ["--bundled-apps", str(bundled)]
    for module in args.hidden_import:
        cmd += ["--hidden-import", module]
    if args.codesign_identity:
        cmd += ["--codesign-identity", args.codesign_identity]
    if args.entitlements:
        cmd += ["--entitlements", str(Path(args.entitlements).resolve())]
    # PyInstaller logs to stderr; keep our stdout for the path alone.
    if subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode != 0 or not exe.is_file():
        log("PyInstaller failed")
        return 1
    marker.write_text(sources)
    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, timeout=60, env=sidecar_env()
    )
    if version.returncode != 0:
        log(f"the built executable does not run: {version.stderr.strip()[-2000:]}")
        return 1
    problem = check_built(exe, args, work)
    if problem is not None:
        log(f"the built executable cannot load its apps: {problem}")
        return 1
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hash": digest, "exe": str(exe)}))
    os.replace(tmp, stamp)
    apps = f", apps {', '.join(args.app)}" if args.app else ""
    took = time.monotonic() - started
    log(f"built {exe} in {took:.1f} s ({version.stdout.strip()}{apps})")
    print(exe)
    return 0


if __name__ == "__main__":
    sys.exit(main())

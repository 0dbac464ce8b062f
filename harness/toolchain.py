"""Find or build the three interpreter configurations (standard library only).

    python3 -m harness.toolchain [--json] [--build]

Configurations:
  cp313       default CPython 3.13 build
  cp313t      free-threaded build, run with PYTHON_GIL=0
  cp313t-gil  the same free-threaded binary, run with PYTHON_GIL=1

Where they come from, first hit wins:
  1. FT_HARNESS_CP313 and FT_HARNESS_CP313T (explicit executables, both required);
  2. the project's cache, $FT_HARNESS_CACHE or ~/.cache/ft-harness (finished builds only);
  3. a matched pair `python3.13` + `python3.13t` on PATH (same version, same configure flags
     apart from --disable-gil and --prefix, checked through sysconfig, never by name);
  4. with --build: `uv python install`, else build both from one source tarball with one set of
     flags, fetched from python.org or, failing that, from Debian's `python3.13` source package.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ENV_DEFAULT = "FT_HARNESS_CP313"
ENV_FREE = "FT_HARNESS_CP313T"
ENV_CACHE = "FT_HARNESS_CACHE"
CONFIG_NAMES = ("cp313", "cp313t", "cp313t-gil")
PYTHON_ORG_VERSION = "3.13.5"
PYTHON_ORG_URL = f"https://www.python.org/ftp/python/{PYTHON_ORG_VERSION}/Python-{PYTHON_ORG_VERSION}.tar.xz"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_SUITE = "trixie"
COMPLETE_MARKER = ".ft-harness-complete"
IGNORED_FLAGS = ("--disable-gil", "--prefix=")

PROBE = r"""
import json, sys, sysconfig
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version.split()[0],
    "implementation": sys.implementation.name,
    "py_gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
    "config_args": sysconfig.get_config_var("CONFIG_ARGS") or "",
}))
"""


class ToolchainError(Exception):
    """Nothing usable could be found or built; the message lists every route tried."""


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """One runnable configuration: an executable plus the environment it must run with."""

    name: str
    executable: str
    version: str
    py_gil_disabled: bool
    gil_enabled: bool
    config_args: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pair:
    """A default and a free-threaded executable that differ only in the GIL."""

    default: str
    free_threaded: str
    source: str


# ---------------------------------------------------------------- probing


def probe(executable: str, env: dict[str, str] | None = None) -> dict | None:
    """Ask an interpreter about itself; None if it does not run or is not CPython.

    No -I/-E here: PYTHON_GIL in `env` must take effect.
    """
    try:
        out = subprocess.run(
            [executable, "-s", "-c", PROBE], capture_output=True, text=True, timeout=60,
            env={**clean_environ(), **(env or {})}, check=True,
        ).stdout
        info = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return info if info.get("implementation") == "cpython" else None


def clean_environ() -> dict[str, str]:
    """os.environ without PYTHON_GIL: a default build refuses to start when it says 0."""
    return {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}


def comparable_flags(config_args: str) -> list[str]:
    """Configure flags minus the ones a matched pair may differ in."""
    return sorted(a for a in shlex.split(config_args) if not a.startswith(IGNORED_FLAGS))


def pair_mismatch(default: dict, free: dict) -> str | None:
    """Why two probed interpreters are not a matched pair, or None if they are."""
    if default["py_gil_disabled"] or not free["py_gil_disabled"]:
        return "one must be a default build and the other free-threaded (Py_GIL_DISABLED)"
    if default["version"] != free["version"]:
        return f"versions differ: {default['version']} vs {free['version']}"
    if comparable_flags(default["config_args"]) != comparable_flags(free["config_args"]):
        return f"configure flags differ: {default['config_args']!r} vs {free['config_args']!r}"
    return None


def checked_pair(default_exe: str, free_exe: str, source: str) -> Pair:
    default, free = probe(default_exe), probe(free_exe)
    if default is None or free is None:
        bad = default_exe if default is None else free_exe
        raise ToolchainError(f"{bad} does not run as CPython")
    reason = pair_mismatch(default, free)
    if reason:
        raise ToolchainError(f"{default_exe} + {free_exe} are not a matched pair: {reason}")
    return Pair(default["executable"], free["executable"], source)


def configurations(pair: Pair) -> list[Interpreter]:
    """The three named configurations of a matched pair, each probed with its own env."""
    plan = [("cp313", pair.default, {}), ("cp313t", pair.free_threaded, {"PYTHON_GIL": "0"}),
            ("cp313t-gil", pair.free_threaded, {"PYTHON_GIL": "1"})]
    result = []
    for name, exe, env in plan:
        info = probe(exe, env)
        if info is None:
            raise ToolchainError(f"{name}: {exe} stopped running")
        if env and info["gil_enabled"] != (env["PYTHON_GIL"] == "1"):
            raise ToolchainError(f"{name}: {exe} with PYTHON_GIL={env['PYTHON_GIL']} reports "
                                 f"gil_enabled={info['gil_enabled']}")
        result.append(Interpreter(
            name=name, executable=exe, version=info["version"], env=env,
            py_gil_disabled=info["py_gil_disabled"], gil_enabled=info["gil_enabled"],
            config_args=info["config_args"]))
    return result


# ---------------------------------------------------------------- finding


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "ft-harness")


def from_env() -> Pair:
    default, free = os.environ.get(ENV_DEFAULT), os.environ.get(ENV_FREE)
    if not default or not free:
        raise ToolchainError(f"{ENV_DEFAULT} and {ENV_FREE} are not both set")
    return checked_pair(default, free, f"environment ({ENV_DEFAULT}, {ENV_FREE})")


def from_cache() -> Pair:
    root = cache_dir()
    for build in sorted(root.glob("cpython-*"), reverse=True):
        default = build / "default" / "bin" / "python3.13"
        free = build / "freethreaded" / "bin" / "python3.13t"
        done = all((p.parents[1] / COMPLETE_MARKER).exists() for p in (default, free))
        if done:
            return checked_pair(str(default), str(free), f"cache ({build})")
    raise ToolchainError(f"no finished build in {root}")


def from_path() -> Pair:
    default, free = shutil.which("python3.13"), shutil.which("python3.13t")
    if not default or not free:
        raise ToolchainError("python3.13 and python3.13t are not both on PATH")
    return checked_pair(default, free, "PATH")


# ---------------------------------------------------------------- building


def log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


def run_logged(cmd: list[str], logfile: Path, cwd: Path | None = None, timeout: int = 1800) -> None:
    """Run a build step, its output to a log file; fail with the log's tail."""
    with logfile.open("a") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n")
        out.flush()
        try:
            code = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolchainError(f"{cmd[0]} failed: {exc}") from exc
    if code != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-1:]
        raise ToolchainError(f"`{shlex.join(cmd[:3])}` exited {code} ({tail}); log: {logfile}")


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per cache, so parallel nox sessions never race on a prefix."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def debian_mirror() -> str:
    """The Debian mirror this machine's own apt sources already use."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for word in text.split():
            if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                return word.rstrip("/")
    return "http://deb.debian.org/debian"


def tarball_from_python_org(root: Path) -> Path:
    target = root / "downloads" / Path(PYTHON_ORG_URL).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        try:
            with urllib.request.urlopen(PYTHON_ORG_URL, timeout=15) as resp, partial.open("wb") as f:
                shutil.copyfileobj(resp, f)
        except OSError as exc:
            raise ToolchainError(f"python.org unreachable: {exc}") from exc
        partial.rename(target)
    return target


def tarball_from_debian(root: Path) -> Path:
    """Fetch Debian trixie's python3.13 source through a private apt configuration."""
    if not shutil.which("apt-get") or not Path(DEBIAN_KEYRING).exists():
        raise ToolchainError("apt-get or the Debian archive keyring is missing")
    apt = root / "apt"
    for sub in ("lists/partial", "parts", "src"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb-src [signed-by={DEBIAN_KEYRING}] {debian_mirror()} {DEBIAN_SUITE} main\n")
    opts = ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}",
            "-o", f"Dir::Etc::sourceparts={apt / 'parts'}", "-o", f"Dir::State::Lists={apt / 'lists'}"]
    logfile = root / "logs" / "apt.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    found = sorted((apt / "src").glob("python3.13_*.orig.tar.xz"))
    if not found:
        run_logged(["apt-get", *opts, "update"], logfile, timeout=600)
        run_logged(["apt-get", *opts, "source", "--download-only", "python3.13"], logfile,
                   cwd=apt / "src", timeout=900)
        found = sorted((apt / "src").glob("python3.13_*.orig.tar.xz"))
    if not found:
        raise ToolchainError(f"apt-get source gave no python3.13 orig tarball in {apt / 'src'}")
    return found[-1]


def extract(tarball: Path, root: Path) -> Path:
    """Unpack a CPython source tarball once; returns its top-level folder."""
    with tarfile.open(tarball) as tar:
        top = tar.getnames()[0].split("/")[0]
        source = root / "src" / top
        if not (source / "configure").exists():
            shutil.rmtree(source, ignore_errors=True)
            tar.extractall(root / "src", filter="data")
    if not (source / "configure").exists():
        raise ToolchainError(f"{tarball} holds no CPython source tree")
    return source


def build_one(source: Path, prefix: Path, free_threaded: bool, logfile: Path) -> None:
    """configure + make + make install, out of tree; the marker is written only on success."""
    if (prefix / COMPLETE_MARKER).exists():
        return
    shutil.rmtree(prefix, ignore_errors=True)  # a half-finished build is never reused
    work = prefix.parent / f"build-{prefix.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    flags = [f"--prefix={prefix}"] + (["--disable-gil"] if free_threaded else [])
    log(f"building {'free-threaded' if free_threaded else 'default'} CPython into {prefix} "
        f"(a few minutes; log: {logfile})")
    run_logged([str(source / "configure"), *flags], logfile, cwd=work)
    run_logged(["make", f"-j{os.cpu_count() or 1}"], logfile, cwd=work)
    run_logged(["make", "install"], logfile, cwd=work)
    shutil.rmtree(work, ignore_errors=True)
    (prefix / COMPLETE_MARKER).write_text(json.dumps({"source": str(source), "flags": flags}))


def build_from(fetch: Callable[[Path], Path], route: str) -> Pair:
    root = cache_dir()
    with build_lock(root):
        source = extract(fetch(root), root)
        build = root / f"cpython-{source.name.removeprefix('Python-')}"
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        build_one(source, build / "default", False, logs / f"{build.name}-default.log")
        build_one(source, build / "freethreaded", True, logs / f"{build.name}-freethreaded.log")
    return from_cache_with_source(route)


def from_cache_with_source(route: str) -> Pair:
    pair = from_cache()
    return Pair(pair.default, pair.free_threaded, f"{route}, built into {pair.source}")


def from_uv() -> Pair:
    uv = shutil.which("uv")
    if not uv:
        raise ToolchainError("uv is not installed")
    try:
        subprocess.run([uv, "python", "install", "3.13", "3.13t"], capture_output=True,
                       timeout=300, check=True)
        found = [subprocess.run([uv, "python", "find", v], capture_output=True, text=True,
                                timeout=60, check=True).stdout.strip() for v in ("3.13", "3.13t")]
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"uv python install failed: {exc}") from exc
    return checked_pair(found[0], found[1], "uv python install")


FIND_ROUTES: list[tuple[str, Callable[[], Pair]]] = [
    ("environment variables", from_env), ("cache", from_cache), ("PATH", from_path)]
BUILD_ROUTES: list[tuple[str, Callable[[], Pair]]] = [
    ("uv", from_uv),
    ("python.org source", lambda: build_from(tarball_from_python_org, "python.org source")),
    ("Debian source package", lambda: build_from(tarball_from_debian, f"Debian {DEBIAN_SUITE} source")),
]


def find_pair(build: bool = False) -> Pair:
    """The first route that yields a matched pair; ToolchainError lists every failure."""
    failures = []
    for label, route in FIND_ROUTES + (BUILD_ROUTES if build else []):
        try:
            return route()
        except ToolchainError as exc:
            failures.append(f"  {label}: {exc}")
    if not build:
        failures.append("  build: not attempted (pass --build to build the pair)")
    raise ToolchainError("no matched CPython 3.13 / 3.13t pair:\n" + "\n".join(failures))


def interpreters(build: bool = False) -> list[Interpreter]:
    """The three configurations, building them first if allowed and needed."""
    return configurations(find_pair(build))


def other_pythons(exclude: list[Interpreter], minimum: tuple[int, int] = (3, 11)) -> list[Interpreter]:
    """Other CPythons on PATH (python3.N), named `path-X.Y.Z`, for extra test coverage."""
    seen = {os.path.realpath(i.executable) for i in exclude}
    found = []
    for minor in range(minimum[1], 20):
        exe = shutil.which(f"python3.{minor}")
        info = probe(exe) if exe else None
        if info is None or info["py_gil_disabled"] or os.path.realpath(info["executable"]) in seen:
            continue
        seen.add(os.path.realpath(info["executable"]))
        found.append(Interpreter(name=f"path-{info['version']}", executable=info["executable"],
                                 version=info["version"], py_gil_disabled=False,
                                 gil_enabled=info["gil_enabled"], config_args=info["config_args"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m harness.toolchain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the configurations as JSON")
    parser.add_argument("--build", action="store_true", help="build the pair if none is found")
    args = parser.parse_args(argv)
    try:
        pair = find_pair(args.build)
        found = configurations(pair)
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(i) for i in found], indent=2))
        return 0
    print(f"source: {pair.source}")
    for i in found:
        env = " ".join(f"{k}={v}" for k, v in i.env.items())
        print(f"{i.name:<11} {i.version:<8} gil_enabled={i.gil_enabled!s:<5} {env:<12} {i.executable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

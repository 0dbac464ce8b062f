"""Find or build the interpreter configurations of one or more CPython versions (stdlib only).

    python3 -m harness.toolchain [--python 3.13,3.14] [--json] [--build]

Each version 3.N (--python, else $FT_HARNESS_PYTHON, else 3.13) gives three configurations:
  cp3N        default CPython 3.N build
  cp3Nt       free-threaded build, run with PYTHON_GIL=0
  cp3Nt-gil   the same free-threaded binary, run with PYTHON_GIL=1

Where a version's pair comes from, first hit wins:
  1. FT_HARNESS_DEFAULT and FT_HARNESS_FREETHREADED (explicit executables, both required, used for
     the version they are), or FT_HARNESS_CP3N and FT_HARNESS_CP3NT for version 3.N;
  2. the project's cache, $FT_HARNESS_CACHE or ~/.cache/ft-harness (finished builds only);
  3. a matched pair `python3.N` + `python3.Nt` on PATH;
  4. with --build: `uv python install`, else build both from one source tarball with one set of
     flags, from python.org (SHA-256 pinned per release) or Debian's `python3.N` source package.
Every pair is checked through sysconfig, never by name: the version asked for, one default and
one free-threaded build, same version, same configure flags apart from --disable-gil and --prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import cpython_build as cpython
from harness.confignames import ENV_PYTHON, Series, parse_versions, versions_from_env
from harness.cpython_build import COMPLETE_MARKER, ToolchainError

ENV_DEFAULT = "FT_HARNESS_DEFAULT"
ENV_FREE = "FT_HARNESS_FREETHREADED"
ENV_CACHE = "FT_HARNESS_CACHE"
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


class NoPair(ToolchainError):
    """No route gave a version's pair; `failures` holds (version, route, reason) for each."""

    def __init__(self, failures: list[tuple[str, str, str]]) -> None:
        self.failures = failures
        lines = []
        for version in dict.fromkeys(v for v, _, _ in failures):
            lines.append(f"no matched CPython {version} / {version}t pair:")
            lines += [f"  {route}: {why}" for v, route, why in failures if v == version]
        super().__init__("\n".join(lines))


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
    source: str = ""  # the route that found it: environment, cache (folder), PATH, a build


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
            [executable, "-s", "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            env={**clean_environ(), **(env or {})},
            check=True,
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


def checked_pair(series: Series, default_exe: str, free_exe: str, source: str) -> Pair:
    """A Pair of the asked-for version, or ToolchainError saying why not."""
    default, free = probe(default_exe), probe(free_exe)
    if default is None or free is None:
        bad = default_exe if default is None else free_exe
        raise ToolchainError(f"{bad} does not run as CPython")
    if not series.owns(default["version"]):
        raise ToolchainError(f"{default_exe} is CPython {default['version']}, not {series}")
    reason = pair_mismatch(default, free)
    if reason:
        raise ToolchainError(f"{default_exe} + {free_exe} are not a matched pair: {reason}")
    return Pair(default["executable"], free["executable"], source)


def configurations(series: Series, pair: Pair) -> list[Interpreter]:
    """The three named configurations of a matched pair, each probed with its own env."""
    default, free, free_gil = series.names
    plan = [
        (default, pair.default, {}),
        (free, pair.free_threaded, {"PYTHON_GIL": "0"}),
        (free_gil, pair.free_threaded, {"PYTHON_GIL": "1"}),
    ]
    result = []
    for name, exe, env in plan:
        info = probe(exe, env)
        if info is None:
            raise ToolchainError(f"{name}: {exe} stopped running")
        if env and info["gil_enabled"] != (env["PYTHON_GIL"] == "1"):
            raise ToolchainError(
                f"{name}: {exe} with PYTHON_GIL={env['PYTHON_GIL']} reports "
                f"gil_enabled={info['gil_enabled']}"
            )
        result.append(
            Interpreter(
                name=name,
                executable=exe,
                version=info["version"],
                env=env,
                py_gil_disabled=info["py_gil_disabled"],
                gil_enabled=info["gil_enabled"],
                config_args=info["config_args"],
                source=pair.source,
            )
        )
    return result


# ---------------------------------------------------------------- finding


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "ft-harness")


def version_env(series: Series) -> tuple[str, str]:
    """FT_HARNESS_CP313 / FT_HARNESS_CP313T: the per-version names (3.13's are the old ones)."""
    tag = series.tag.upper()
    return f"FT_HARNESS_{tag}", f"FT_HARNESS_{tag}T"


def from_env(series: Series) -> Pair:
    """The explicit pair: FT_HARNESS_DEFAULT + _FREETHREADED, else the per-version names."""
    for names in ((ENV_DEFAULT, ENV_FREE), version_env(series)):
        default, free = (os.environ.get(n) for n in names)
        if default or free:
            if not (default and free):
                raise ToolchainError(f"{names[0]} and {names[1]} must be set together")
            return checked_pair(series, default, free, f"environment ({', '.join(names)})")
    listed = " + ".join(version_env(series))
    raise ToolchainError(f"neither {ENV_DEFAULT} + {ENV_FREE} nor {listed} are set")


def release_key(build: Path) -> tuple[int, ...]:
    """cpython-3.13.10 sorts after cpython-3.13.9."""
    tail = build.name.removeprefix("cpython-")
    return tuple(int(p) for p in tail.split(".")) if cpython.RELEASE.fullmatch(tail) else ()


def cached_build(series: Series, build: Path) -> tuple[Path, Path] | None:
    """A finished build's executables (both markers written), or None."""
    default_name, free_name = series.executables
    default = build / "default" / "bin" / default_name
    free = build / "freethreaded" / "bin" / free_name
    done = all((p.parents[1] / COMPLETE_MARKER).exists() for p in (default, free))
    return (default, free) if done else None


def from_cache(series: Series) -> Pair:
    """The newest finished build of the series in the cache (root/cpython-3.N.P/...)."""
    root = cache_dir()
    builds = sorted(root.glob(f"cpython-{series}.*"), key=release_key, reverse=True)
    for build in builds:
        found = cached_build(series, build)
        if found:
            return checked_pair(series, str(found[0]), str(found[1]), f"cache ({build})")
    raise ToolchainError(f"no finished {series} build in {root}")


def from_path(series: Series) -> Pair:
    default_name, free_name = series.executables
    default, free = shutil.which(default_name), shutil.which(free_name)
    if not default or not free:
        raise ToolchainError(f"{default_name} and {free_name} are not both on PATH")
    return checked_pair(series, default, free, "PATH")


def from_uv(series: Series) -> Pair:
    uv = shutil.which("uv")
    if not uv:
        raise ToolchainError("uv is not installed")
    wanted = (str(series), f"{series}t")
    try:
        subprocess.run(
            [uv, "python", "install", *wanted], capture_output=True, timeout=300, check=True
        )
        found = [
            subprocess.run(
                [uv, "python", "find", v], capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()
            for v in wanted
        ]
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"uv python install failed: {exc}") from exc
    return checked_pair(series, found[0], found[1], "uv python install")


def from_source(
    fetch: Callable[[Path, Series], tuple[Path, str]], route: str, series: Series
) -> Pair:
    """Fetch and verify a tarball, build both of its builds, and check them as a pair."""
    root = cache_dir()
    with cpython.build_lock(root):
        tarball, release = fetch(root, series)
        build = cpython.build_pair(root, tarball, release)
    found = cached_build(series, build)
    if found is None:
        raise ToolchainError(f"{build} is not a finished {series} build")
    return checked_pair(series, str(found[0]), str(found[1]), f"{route}, built into {build}")


Route = Callable[[Series], Pair]
FIND_ROUTES: list[tuple[str, Route]] = [
    ("environment variables", from_env),
    ("cache", from_cache),
    ("PATH", from_path),
]
BUILD_ROUTES: list[tuple[str, Route]] = [
    ("uv", from_uv),
    (
        "python.org source",
        lambda s: from_source(cpython.tarball_from_python_org, "python.org source", s),
    ),
    (
        "Debian source package",
        lambda s: from_source(
            cpython.tarball_from_debian, f"Debian {cpython.debian_suite(s)} source", s
        ),
    ),
]


def find_pair(series: Series, build: bool = False) -> Pair:
    """The first route that yields a matched pair; NoPair lists every route and why it failed."""
    failures = []
    for label, route in FIND_ROUTES + (BUILD_ROUTES if build else []):
        try:
            return route(series)
        except ToolchainError as exc:
            failures.append((str(series), label, str(exc)))
    if not build:
        failures.append((str(series), "build", "not attempted (pass --build to build the pair)"))
    raise NoPair(failures)


def interpreters(versions: list[Series] | None = None, build: bool = False) -> list[Interpreter]:
    """Three configurations per version (default: $FT_HARNESS_PYTHON or 3.13), building them if
    allowed and needed; NoPair lists every version no route could provide."""
    found, failures = [], []
    for series in versions or versions_from_env():
        try:
            found += configurations(series, find_pair(series, build))
        except NoPair as exc:
            failures += exc.failures
    if failures:
        raise NoPair(failures)
    return found


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m harness.toolchain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--python",
        default=os.environ.get(ENV_PYTHON) or None,
        help=f"versions, comma-separated (default: ${ENV_PYTHON}, else 3.13)",
    )
    parser.add_argument("--json", action="store_true", help="print the configurations as JSON")
    parser.add_argument("--build", action="store_true", help="build a pair if none is found")
    args = parser.parse_args(argv)
    try:
        args.versions = parse_versions(args.python) if args.python else versions_from_env()
    except ValueError as exc:
        print(f"error: --python: {exc}", file=sys.stderr)
        sys.exit(2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        found = interpreters(args.versions, args.build)
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json and isinstance(exc, NoPair):
            tried = [{"version": v, "route": r, "reason": why} for v, r, why in exc.failures]
            print(json.dumps({"configurations": [], "failed": tried}, indent=2))
        return 1
    if args.json:
        print(json.dumps([asdict(i) for i in found], indent=2))
        return 0
    for source in dict.fromkeys(i.source for i in found):
        print(f"source: {source}")
    for i in found:
        env = " ".join(f"{k}={v}" for k, v in i.env.items())
        print(
            f"{i.name:<11} {i.version:<8} gil_enabled={i.gil_enabled!s:<5} {env:<12} {i.executable}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fetch, verify, unpack and build one CPython source tarball (standard library only).

Both builds of a pair come from ONE tarball with ONE set of flags, so they differ only in the
GIL. The tarball comes from python.org (checked against the SHA-256 pinned below before every
use, cached or fresh) or from Debian's source package (fetched by apt-get, which checks it against
Debian's signed archive index; also checked against the pin when one exists for its release).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from harness.confignames import Series


class ToolchainError(Exception):
    """Nothing usable could be found or built; the message says why."""


# The python.org release built for each series, and the published SHA-256 of its .tar.xz.
# 3.13.5: the figure the official Docker images pin (docker-library/python, PYTHON_SHA256), and
#   the SHA-256 of Debian trixie's python3.13_3.13.5.orig.tar.xz, which is therefore the same file.
# 3.14.0: the figure the official Docker images pin for Python-3.14.0.tar.xz.
# A series without an entry has no python.org route: a tarball that cannot be checked is not built.
PYTHON_ORG_RELEASES = {Series(3, 13): "3.13.5", Series(3, 14): "3.14.0"}
TARBALL_SHA256 = {
    "3.13.5": "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640",
    "3.14.0": "2299dae542d395ce3883aca00d3c910307cd68e0b2f7336098c8e7b7eee9f3e9",
}
# Debian suite publishing each series' source package; others are tried in sid. Only trixie's
# files are served to this project's machines (INTERPRETERS.md).
DEBIAN_SUITES = {Series(3, 13): "trixie"}
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
COMPLETE_MARKER = ".ft-harness-complete"
RELEASE = re.compile(r"3\.\d{1,2}\.\d{1,3}")  # a release folder name never holds a path


def python_org_url(release: str) -> str:
    return f"https://www.python.org/ftp/python/{release}/Python-{release}.tar.xz"


def debian_suite(series: Series) -> str:
    return DEBIAN_SUITES.get(series, "sid")


def log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- verifying


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(tarball: Path, release: str) -> None:
    """Refuse a tarball whose SHA-256 is not the one pinned for its release; a bad file is moved
    aside (to *.rejected) so that the next attempt fetches it again."""
    pinned = TARBALL_SHA256.get(release)
    if pinned is None:
        raise ToolchainError(f"no SHA-256 pinned for CPython {release} (harness/cpython_build.py)")
    found = sha256_of(tarball)
    if found != pinned:
        rejected = tarball.with_name(tarball.name + ".rejected")
        os.replace(tarball, rejected)
        raise ToolchainError(
            f"{tarball}: SHA-256 {found} is not the published {pinned} of "
            f"CPython {release}; moved aside to {rejected.name}"
        )


# ---------------------------------------------------------------- fetching


def tarball_from_python_org(root: Path, series: Series) -> tuple[Path, str]:
    """The pinned release's tarball, downloaded once, verified before every use."""
    release = PYTHON_ORG_RELEASES.get(series)
    if release is None:
        raise ToolchainError(
            f"no python.org release of {series} with a pinned SHA-256 "
            "(harness/cpython_build.py: PYTHON_ORG_RELEASES)"
        )
    url = python_org_url(release)
    target = root / "downloads" / Path(url).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            with urllib.request.urlopen(url, timeout=15) as resp, partial.open("wb") as f:
                shutil.copyfileobj(resp, f)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ToolchainError(f"python.org unreachable: {exc}") from exc
        verify(partial, release)  # before it takes the name a later run would trust
        os.replace(partial, target)
    verify(target, release)
    return target, release


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


def debian_release(tarball: Path, package: str) -> str:
    """'python3.13_3.13.5.orig.tar.xz' -> '3.13.5'."""
    release = tarball.name.removeprefix(f"{package}_").removesuffix(".orig.tar.xz")
    if not RELEASE.fullmatch(release):
        raise ToolchainError(f"{tarball.name}: not a CPython release tarball name")
    return release


def tarball_from_debian(root: Path, series: Series) -> tuple[Path, str]:
    """Debian's python3.N source through a private apt configuration (the system's lists stay
    untouched). apt-get checks what it fetches against the signed index; a cached tarball is
    reused only where a pinned SHA-256 can check it again."""
    package = f"python{series}"
    apt = root / "apt"
    cached = sorted((apt / "src").glob(f"{package}_*.orig.tar.xz"))
    if cached and debian_release(cached[-1], package) in TARBALL_SHA256:
        release = debian_release(cached[-1], package)
        verify(cached[-1], release)
        return cached[-1], release
    if not shutil.which("apt-get") or not Path(DEBIAN_KEYRING).exists():
        raise ToolchainError("apt-get or the Debian archive keyring is missing")
    for sub in ("lists/partial", "parts", "src"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb-src [signed-by={DEBIAN_KEYRING}] {debian_mirror()} {debian_suite(series)} main\n"
    )
    opts = [
        "-o",
        f"Dir::Etc::sourcelist={apt / 'sources.list'}",
        "-o",
        f"Dir::Etc::sourceparts={apt / 'parts'}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
    ]
    logfile = root / "logs" / "apt.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    run_logged(["apt-get", *opts, "update"], logfile, timeout=600)
    run_logged(
        ["apt-get", *opts, "source", "--download-only", package],
        logfile,
        cwd=apt / "src",
        timeout=900,
    )
    found = sorted((apt / "src").glob(f"{package}_*.orig.tar.xz"))
    if not found:
        raise ToolchainError(f"apt-get source gave no {package} orig tarball in {apt / 'src'}")
    release = debian_release(found[-1], package)
    if release in TARBALL_SHA256:
        verify(found[-1], release)
    return found[-1], release


# ---------------------------------------------------------------- unpacking


def extract(tarball: Path, root: Path, release: str) -> Path:
    """Unpack into a fresh temporary folder (tarfile's `data` filter: no path outside it, no
    device, no link out), check it holds Python-<release>/configure, then move that into place.
    The destination is named from the release, never from an entry of the archive."""
    if not RELEASE.fullmatch(release):
        raise ToolchainError(f"{release!r} is not a CPython release number")
    source = root / "src" / f"Python-{release}"
    if (source / "configure").exists():  # a finished unpack: only a rename puts it there
        return source
    source.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=source.parent, prefix=".unpack-") as temp:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(temp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ToolchainError(f"{tarball}: cannot unpack ({type(exc).__name__}: {exc})") from exc
        unpacked = Path(temp) / source.name
        if [p.name for p in Path(temp).iterdir()] != [source.name] or not (
            unpacked / "configure"
        ).is_file():
            raise ToolchainError(f"{tarball} holds no CPython source tree {source.name}/configure")
        shutil.rmtree(source, ignore_errors=True)  # an old unpack without configure
        os.rename(unpacked, source)
    return source


# ---------------------------------------------------------------- building


def run_logged(cmd: list[str], logfile: Path, cwd: Path | None = None, timeout: int = 1800) -> None:
    """Run a build step, its output to a log file; fail with the log's tail."""
    with logfile.open("a") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n")
        out.flush()
        try:
            code = subprocess.run(
                cmd,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            ).returncode
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


def build_one(source: Path, prefix: Path, free_threaded: bool, logfile: Path) -> None:
    """configure + make + make install, out of tree; the marker is written only on success."""
    if (prefix / COMPLETE_MARKER).exists():
        return
    shutil.rmtree(prefix, ignore_errors=True)  # a half-finished build is never reused
    work = prefix.parent / f"build-{prefix.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    flags = [f"--prefix={prefix}"] + (["--disable-gil"] if free_threaded else [])
    log(
        f"building {'free-threaded' if free_threaded else 'default'} CPython into {prefix} "
        f"(a few minutes; log: {logfile})"
    )
    run_logged([str(source / "configure"), *flags], logfile, cwd=work)
    run_logged(["make", f"-j{os.cpu_count() or 1}"], logfile, cwd=work)
    run_logged(["make", "install"], logfile, cwd=work)
    shutil.rmtree(work, ignore_errors=True)
    (prefix / COMPLETE_MARKER).write_text(json.dumps({"source": str(source), "flags": flags}))


def build_pair(root: Path, tarball: Path, release: str) -> Path:
    """Both builds of one release into root/cpython-<release>/{default,freethreaded}."""
    source = extract(tarball, root, release)
    build = root / f"cpython-{release}"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    build_one(source, build / "default", False, logs / f"{build.name}-default.log")
    build_one(source, build / "freethreaded", True, logs / f"{build.name}-freethreaded.log")
    return build

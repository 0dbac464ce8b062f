"""harness.toolchain: names and routes per CPython version, pair matching through sysconfig, the
cache's completeness rule, the CLI; harness.cpython_build: pinned checksums and safe unpacking.

No test downloads anything: 3.14/3.15 sources are not reachable from the project's machines, so
every version-dependent decision is checked on local files and real interpreters."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import cpython_build, toolchain
from harness.confignames import Series, baseline, parse_name, parse_versions, rank
from harness.cpython_build import ToolchainError
from harness.toolchain import comparable_flags, pair_mismatch

ROOT = Path(__file__).resolve().parents[1]
S313, S314, S315 = Series(3, 13), Series(3, 14), Series(3, 15)
ENV_NAMES = (
    "FT_HARNESS_DEFAULT",
    "FT_HARNESS_FREETHREADED",
    "FT_HARNESS_CP313",
    "FT_HARNESS_CP313T",
    "FT_HARNESS_CP314",
    "FT_HARNESS_CP314T",
    "FT_HARNESS_PYTHON",
)


@pytest.fixture(autouse=True)
def no_explicit_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's own settings must not pick the route a test is about."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def probe_dict(version: str = "3.13.5", disabled: bool = False, args: str = "") -> dict:
    return {"version": version, "py_gil_disabled": disabled, "config_args": args}


def existing_pair() -> toolchain.Pair:
    """The 3.13 pair the project already found or built; skipped where none exists yet."""
    try:
        return toolchain.find_pair(S313, build=False)
    except ToolchainError as exc:
        pytest.skip(f"interpreters not built here ({exc}); `python3 -m harness.toolchain --build`")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, "PATH": str(tmp_path), toolchain.ENV_CACHE: str(tmp_path), **extra}


def toolchain_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.toolchain", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- names


def test_names_come_from_the_version() -> None:
    assert S313.names == ("cp313", "cp313t", "cp313t-gil")
    assert S314.names == ("cp314", "cp314t", "cp314t-gil")
    assert S315.names == ("cp315", "cp315t", "cp315t-gil")
    assert S315.executables == ("python3.15", "python3.15t")
    assert toolchain.version_env(S313) == ("FT_HARNESS_CP313", "FT_HARNESS_CP313T")  # old names
    assert toolchain.version_env(S314) == ("FT_HARNESS_CP314", "FT_HARNESS_CP314T")


def test_versions_setting_parses_lists_and_refuses_the_rest() -> None:
    assert parse_versions("3.13, 3.14,3.13") == [S313, S314]
    assert parse_versions("3.15") == [S315]
    for bad in ("3", "3.12", "2.7", "3.14t", "", "3.13.5", "3.x", "3.13;rm"):
        with pytest.raises(ValueError, match="not accepted"):
            parse_versions(bad)


def test_series_owns_only_its_own_releases() -> None:
    assert S314.owns("3.14.0") and S314.owns("3.14.10")
    assert not S314.owns("3.1.4") and not S314.owns("3.140.1") and not S313.owns("3.14.0")


def test_report_order_is_by_version_then_kind() -> None:
    expected = [
        "cp313",
        "cp313t",
        "cp313t-gil",
        "cp314",
        "cp314t",
        "cp314t-gil",
        "cp315",
        "path-3.11.2",
        "zzz",
    ]
    shuffled = expected[:]
    random.Random(1).shuffle(shuffled)
    assert sorted(shuffled, key=rank) == expected
    assert parse_name("cp314t-gil") == (S314, "free-threaded-gil")
    assert parse_name("cp314-gil") is None and parse_name("path-3.12") is None
    assert baseline(["cp314t", "cp315", "cp314"]) == "cp314"  # the oldest default build
    assert baseline(["cp314t", "x"]) == "cp314t"  # none: the first


# ---------------------------------------------------------------- pair matching


def test_flags_ignore_prefix_and_disable_gil() -> None:
    a = "'--prefix=/a' '--enable-shared' '--disable-gil'"
    assert comparable_flags(a) == comparable_flags("'--enable-shared' '--prefix=/b'")


def test_pair_mismatch_reasons() -> None:
    default, free = probe_dict(), probe_dict(disabled=True)
    assert pair_mismatch(default, free) is None
    assert "versions differ" in pair_mismatch(probe_dict("3.13.0"), free)
    assert "configure flags differ" in pair_mismatch(
        probe_dict(args="--enable-optimizations"), free
    )
    assert "free-threaded" in pair_mismatch(free, default)


# ---------------------------------------------------------------- routes


def fake_build(cache: Path, release: str, target: str, finished: bool = True) -> None:
    """A cache folder laid out as the build leaves it, its executables linked to `target`."""
    series = ".".join(release.split(".")[:2])
    for kind, exe in (("default", f"python{series}"), ("freethreaded", f"python{series}t")):
        bin_dir = cache / f"cpython-{release}" / kind / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / exe).symlink_to(target)
        if finished:
            (bin_dir.parent / cpython_build.COMPLETE_MARKER).write_text("{}")


def test_unfinished_build_in_cache_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_build(tmp_path, "3.13.5", sys.executable, finished=False)  # runs, but never finished
    monkeypatch.setenv(toolchain.ENV_CACHE, str(tmp_path))
    with pytest.raises(ToolchainError, match="no finished 3.13 build"):
        toolchain.from_cache(S313)


def test_cache_route_checks_the_version_it_was_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished 3.14 folder whose binaries are another version is refused, by probing."""
    fake_build(tmp_path, "3.14.0", sys.executable)
    monkeypatch.setenv(toolchain.ENV_CACHE, str(tmp_path))
    with pytest.raises(ToolchainError, match=rf"is CPython {sys.version.split()[0]}, not 3.14"):
        toolchain.from_cache(S314)
    with pytest.raises(ToolchainError, match="no finished 3.13 build"):
        toolchain.from_cache(S313)  # a 3.14 folder is never a 3.13 build


def test_cache_route_takes_the_newest_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3.13.10 is newer than 3.13.5, though it sorts before it as text."""
    pair = existing_pair()
    for release in ("3.13.5", "3.13.10"):
        for kind, target in (("default", pair.default), ("freethreaded", pair.free_threaded)):
            exe = f"python3.13{'t' if kind == 'freethreaded' else ''}"
            bin_dir = tmp_path / f"cpython-{release}" / kind / "bin"
            bin_dir.mkdir(parents=True)
            (bin_dir / exe).symlink_to(target)
            (bin_dir.parent / cpython_build.COMPLETE_MARKER).write_text("{}")
    monkeypatch.setenv(toolchain.ENV_CACHE, str(tmp_path))
    assert toolchain.from_cache(S313).source == f"cache ({tmp_path / 'cpython-3.13.10'})"


def test_env_route_rejects_a_pair_that_is_not_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FT_HARNESS_DEFAULT", sys.executable)
    monkeypatch.setenv("FT_HARNESS_FREETHREADED", sys.executable)
    series = Series(*sys.version_info[:2])
    with pytest.raises(ToolchainError, match="not a matched pair"):
        toolchain.from_env(series)


def test_env_route_needs_both_and_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FT_HARNESS_CP314", sys.executable)
    with pytest.raises(ToolchainError, match="FT_HARNESS_CP314 and FT_HARNESS_CP314T"):
        toolchain.from_env(S314)
    with pytest.raises(ToolchainError, match="neither FT_HARNESS_DEFAULT"):
        toolchain.from_env(S313)  # 3.14's variables say nothing about 3.13


def test_env_routes_new_and_old_names(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = existing_pair()
    monkeypatch.setenv("FT_HARNESS_CP313", pair.default)
    monkeypatch.setenv("FT_HARNESS_CP313T", pair.free_threaded)
    assert "FT_HARNESS_CP313" in toolchain.from_env(S313).source
    monkeypatch.setenv("FT_HARNESS_DEFAULT", pair.default)
    monkeypatch.setenv("FT_HARNESS_FREETHREADED", pair.free_threaded)
    assert "FT_HARNESS_DEFAULT" in toolchain.from_env(S313).source  # the generic names first
    with pytest.raises(ToolchainError, match=r"is CPython 3\.13\.\d+, not 3\.14"):
        toolchain.from_env(S314)


def test_path_route_checks_builds_not_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = existing_pair()
    (tmp_path / "python3.13").symlink_to(pair.default)
    (tmp_path / "python3.13t").symlink_to(pair.free_threaded)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolchain.from_path(S313).source == "PATH"
    with pytest.raises(ToolchainError, match="python3.14 and python3.14t are not both on PATH"):
        toolchain.from_path(S314)
    (tmp_path / "python3.14").symlink_to(pair.default)  # right name, wrong version
    (tmp_path / "python3.14t").symlink_to(pair.free_threaded)
    with pytest.raises(ToolchainError, match="not 3.14"):
        toolchain.from_path(S314)
    (tmp_path / "python3.13").unlink()
    (tmp_path / "python3.13").symlink_to(pair.free_threaded)  # right name, wrong build
    with pytest.raises(ToolchainError, match="not a matched pair"):
        toolchain.from_path(S313)


def test_one_missing_version_is_reported_with_every_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two versions side by side: the one found gives no failure, the other one per route."""
    pair = existing_pair()
    monkeypatch.setenv("FT_HARNESS_DEFAULT", pair.default)
    monkeypatch.setenv("FT_HARNESS_FREETHREADED", pair.free_threaded)
    monkeypatch.setenv(toolchain.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert [i.name for i in toolchain.interpreters([S313])] == ["cp313", "cp313t", "cp313t-gil"]
    with pytest.raises(toolchain.NoPair) as caught:
        toolchain.interpreters([S313, S314])
    assert [(v, r) for v, r, _ in caught.value.failures] == [
        ("3.14", "environment variables"),
        ("3.14", "cache"),
        ("3.14", "PATH"),
        ("3.14", "build"),
    ]


# ---------------------------------------------------------------- command line


def test_json_lists_the_three_configurations() -> None:
    existing_pair()
    out = subprocess.run(
        [sys.executable, "-m", "harness.toolchain", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {c["name"]: c for c in json.loads(out)}
    assert list(found) == ["cp313", "cp313t", "cp313t-gil"]
    assert not found["cp313"]["py_gil_disabled"] and found["cp313"]["gil_enabled"]
    assert found["cp313t"]["py_gil_disabled"] and not found["cp313t"]["gil_enabled"]
    assert found["cp313t-gil"]["gil_enabled"] and found["cp313t-gil"]["env"] == {"PYTHON_GIL": "1"}
    assert found["cp313t"]["executable"] == found["cp313t-gil"]["executable"]
    assert found["cp313"]["version"] == found["cp313t"]["version"]


def test_nothing_found_lists_every_route(tmp_path: Path) -> None:
    proc = toolchain_cli(env=clean_env(tmp_path))
    assert proc.returncode == 1
    for route in ("environment variables:", "cache:", "PATH:", "build: not attempted"):
        assert route in proc.stderr


@pytest.mark.parametrize("how", ["option", "environment"])
def test_unavailable_version_json_lists_routes(tmp_path: Path, how: str) -> None:
    """`--python 3.14 --json` (or FT_HARNESS_PYTHON=3.14): every route and why, exit 1."""
    args, extra = (
        (["--python", "3.14"], {}) if how == "option" else ([], {"FT_HARNESS_PYTHON": "3.14"})
    )
    proc = toolchain_cli(*args, "--json", env=clean_env(tmp_path, **extra))
    assert proc.returncode == 1
    failed = json.loads(proc.stdout)["failed"]
    assert [(f["version"], f["route"]) for f in failed] == [
        ("3.14", "environment variables"),
        ("3.14", "cache"),
        ("3.14", "PATH"),
        ("3.14", "build"),
    ]
    assert "python3.14 and python3.14t are not both on PATH" in proc.stderr
    assert "no finished 3.14 build" in proc.stderr


def test_bad_version_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = toolchain_cli("--python", "3.12", "--json", env=clean_env(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --python:")
    assert "'3.12'" in proc.stderr and "3.13 or later" in proc.stderr


# ---------------------------------------------------------------- sources: checksums


def test_release_urls_and_pins_per_version() -> None:
    assert cpython_build.python_org_url("3.14.0") == (
        "https://www.python.org/ftp/python/3.14.0/Python-3.14.0.tar.xz"
    )
    for series, release in cpython_build.PYTHON_ORG_RELEASES.items():
        assert series.owns(release)
        assert len(cpython_build.TARBALL_SHA256[release]) == 64
    assert cpython_build.debian_suite(S313) == "trixie"
    assert cpython_build.debian_suite(S315) == "sid"


def test_no_pinned_release_no_download(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match="no python.org release of 3.15 with a pinned SHA-256"):
        cpython_build.tarball_from_python_org(tmp_path, S315)
    assert list(tmp_path.iterdir()) == []


def test_cached_tarball_is_verified_before_use(tmp_path: Path) -> None:
    """A cached file that is not the release (tampered, truncated) is refused and moved aside,
    without a download (the route would otherwise reuse it forever)."""
    cached = tmp_path / "downloads" / "Python-3.13.5.tar.xz"
    cached.parent.mkdir()
    cached.write_bytes(b"not the release")
    with pytest.raises(ToolchainError, match="is not the published 93e583f2"):
        cpython_build.tarball_from_python_org(tmp_path, S313)
    assert not cached.exists() and (cached.parent / "Python-3.13.5.tar.xz.rejected").exists()


DEBIAN_ORIG = (
    Path.home() / ".cache" / "ft-harness" / "apt" / "src" / "python3.13_3.13.5.orig.tar.xz"
)


def real_tarball() -> Path:
    if not DEBIAN_ORIG.exists():
        pytest.skip(f"no CPython 3.13.5 source tarball here ({DEBIAN_ORIG})")
    return DEBIAN_ORIG


def test_debian_orig_tarball_is_the_python_org_release(tmp_path: Path) -> None:
    """Debian trixie's orig tarball has the published SHA-256 of Python-3.13.5.tar.xz (as pinned
    by the official Docker images), so the python.org route accepts it as its cached download."""
    tarball = real_tarball()
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert digest == "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
    cached = tmp_path / "downloads" / "Python-3.13.5.tar.xz"
    cached.parent.mkdir()
    shutil.copy(tarball, cached)
    assert cpython_build.tarball_from_python_org(tmp_path, S313) == (cached, "3.13.5")


def test_debian_route_reuses_a_verified_cached_tarball(tmp_path: Path) -> None:
    (tmp_path / "apt" / "src").mkdir(parents=True)
    copy = tmp_path / "apt" / "src" / DEBIAN_ORIG.name
    shutil.copy(real_tarball(), copy)
    assert cpython_build.tarball_from_debian(tmp_path, S313) == (copy, "3.13.5")
    copy.write_bytes(copy.read_bytes()[:-1])  # one byte short
    with pytest.raises(ToolchainError, match="is not the published"):
        cpython_build.tarball_from_debian(tmp_path, S313)


# ---------------------------------------------------------------- sources: unpacking


def make_tarball(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_crafted_first_entry_wipes_nothing(tmp_path: Path) -> None:
    """Issue 12, item 11: a first entry `../x/configure` made the old code remove root/src/..,
    i.e. the whole cache. Now the archive is refused and everything is still there."""
    root = tmp_path / "cache"
    keep = [
        root / "x" / "keep",
        root / "cpython-3.13.5" / "default" / "keep",
        root / "src" / "keep",
    ]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    crafted = make_tarball(
        tmp_path / "crafted.tar.gz",
        [("../x/configure", b"#!/bin/sh\necho owned\n"), ("Python-3.13.5/configure", b"")],
    )
    with pytest.raises(ToolchainError, match="cannot unpack"):
        cpython_build.extract(crafted, root, "3.13.5")
    assert all(p.read_text() == "mine" for p in keep)
    assert sorted(p.name for p in (root / "src").iterdir()) == ["keep"]  # no temporary left
    assert sorted(p.name for p in (root / "x").iterdir()) == ["keep"]


def test_archive_of_another_tree_is_refused(tmp_path: Path) -> None:
    """The destination is named from the release; an archive that is not that tree is refused."""
    other = make_tarball(tmp_path / "other.tar.gz", [("Python-3.13.4/configure", b"")])
    with pytest.raises(ToolchainError, match="no CPython source tree Python-3.13.5/configure"):
        cpython_build.extract(other, tmp_path / "cache", "3.13.5")
    assert list((tmp_path / "cache" / "src").iterdir()) == []
    with pytest.raises(ToolchainError, match="not a CPython release"):
        cpython_build.extract(other, tmp_path / "cache", "../3.13.5")


def test_unpack_moves_a_complete_tree_into_place(tmp_path: Path) -> None:
    good = make_tarball(
        tmp_path / "good.tar.gz",
        [("Python-3.13.5/configure", b"#!/bin/sh\n"), ("Python-3.13.5/Lib/os.py", b"")],
    )
    root = tmp_path / "cache"
    (root / "src" / "Python-3.13.5").mkdir(parents=True)  # an earlier unpack that was cut short
    source = cpython_build.extract(good, root, "3.13.5")
    assert source == root / "src" / "Python-3.13.5"
    assert (source / "configure").read_bytes() == b"#!/bin/sh\n" and (source / "Lib/os.py").exists()
    assert [p.name for p in (root / "src").iterdir()] == ["Python-3.13.5"]


def test_real_source_tarball_unpacks(tmp_path: Path) -> None:
    """The 3.13 route end to end up to ./configure: the real tarball through the data filter."""
    source = cpython_build.extract(real_tarball(), tmp_path, "3.13.5")
    assert (source / "configure").is_file() and (source / "Include" / "Python.h").is_file()
    assert [p.name for p in (tmp_path / "src").iterdir()] == ["Python-3.13.5"]

"""harness.toolchain: pair matching through sysconfig, the cache's completeness rule, routes, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import toolchain
from harness.toolchain import ToolchainError, comparable_flags, pair_mismatch

ROOT = Path(__file__).resolve().parents[1]


def probe_dict(version: str = "3.13.5", disabled: bool = False, args: str = "") -> dict:
    return {"version": version, "py_gil_disabled": disabled, "config_args": args}


def existing_pair() -> toolchain.Pair:
    """The pair the project already found or built; skipped where none exists yet."""
    try:
        return toolchain.find_pair(build=False)
    except ToolchainError as exc:
        pytest.skip(f"interpreters not built here ({exc}); `python3 -m harness.toolchain --build`")


def test_flags_ignore_prefix_and_disable_gil() -> None:
    a = "'--prefix=/a' '--enable-shared' '--disable-gil'"
    assert comparable_flags(a) == comparable_flags("'--enable-shared' '--prefix=/b'")


def test_pair_mismatch_reasons() -> None:
    default, free = probe_dict(), probe_dict(disabled=True)
    assert pair_mismatch(default, free) is None
    assert "versions differ" in pair_mismatch(probe_dict("3.13.0"), free)
    assert "configure flags differ" in pair_mismatch(probe_dict(args="--enable-optimizations"), free)
    assert "free-threaded" in pair_mismatch(free, default)


def test_unfinished_build_in_cache_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, exe in (("default", "python3.13"), ("freethreaded", "python3.13t")):
        bin_dir = tmp_path / "cpython-3.13.5" / kind / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / exe).symlink_to(sys.executable)  # runs, but the build never finished
    monkeypatch.setenv(toolchain.ENV_CACHE, str(tmp_path))
    with pytest.raises(ToolchainError, match="no finished build"):
        toolchain.from_cache()


def test_env_route_rejects_a_pair_that_is_not_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(toolchain.ENV_DEFAULT, sys.executable)
    monkeypatch.setenv(toolchain.ENV_FREE, sys.executable)
    with pytest.raises(ToolchainError, match="not a matched pair"):
        toolchain.from_env()


def test_path_route_checks_builds_not_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = existing_pair()
    (tmp_path / "python3.13").symlink_to(pair.default)
    (tmp_path / "python3.13t").symlink_to(pair.free_threaded)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolchain.from_path().source == "PATH"
    (tmp_path / "python3.13").unlink()
    (tmp_path / "python3.13").symlink_to(pair.free_threaded)  # right name, wrong build
    with pytest.raises(ToolchainError, match="not a matched pair"):
        toolchain.from_path()


def test_json_lists_the_three_configurations() -> None:
    existing_pair()
    out = subprocess.run([sys.executable, "-m", "harness.toolchain", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    found = {c["name"]: c for c in json.loads(out)}
    assert list(found) == ["cp313", "cp313t", "cp313t-gil"]
    assert not found["cp313"]["py_gil_disabled"] and found["cp313"]["gil_enabled"]
    assert found["cp313t"]["py_gil_disabled"] and not found["cp313t"]["gil_enabled"]
    assert found["cp313t-gil"]["gil_enabled"] and found["cp313t-gil"]["env"] == {"PYTHON_GIL": "1"}
    assert found["cp313t"]["executable"] == found["cp313t-gil"]["executable"]
    assert found["cp313"]["version"] == found["cp313t"]["version"]


def test_nothing_found_lists_every_route(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), toolchain.ENV_CACHE: str(tmp_path)}
    env.pop(toolchain.ENV_DEFAULT, None)
    proc = subprocess.run([sys.executable, "-m", "harness.toolchain"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    for route in ("environment variables:", "cache:", "PATH:", "build: not attempted"):
        assert route in proc.stderr

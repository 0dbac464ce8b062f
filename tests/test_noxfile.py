"""The noxfile resolves nothing on import: listing sessions with an empty interpreter cache
builds, downloads and probes nothing, and the session names follow the version setting."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def nox_command() -> list[str]:
    """nox as the tests session runs it, else on PATH, else this interpreter's."""
    if os.environ.get("FT_HARNESS_NOX_PYTHON"):
        return [os.environ["FT_HARNESS_NOX_PYTHON"], "-m", "nox"]
    if shutil.which("nox"):
        return [shutil.which("nox")]
    if importlib.util.find_spec("nox"):
        return [sys.executable, "-m", "nox"]
    pytest.skip("nox is not installed here (CI runs the tests from nox, which it is)")


def nox_list(tmp_path: Path, versions: str) -> subprocess.CompletedProcess[str]:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    # no uv, no python3.N but this interpreter's folder: a route that ran would fail or build
    env = {**os.environ, "FT_HARNESS_CACHE": str(cache), "FT_HARNESS_PYTHON": versions}
    return subprocess.run(
        [*nox_command(), "-l", "-f", str(ROOT / "noxfile.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_listing_builds_nothing(tmp_path: Path) -> None:
    proc = nox_list(tmp_path, "3.13,3.14")
    assert proc.returncode == 0, proc.stderr
    for name in ("cp313", "cp313t", "cp313t-gil", "cp314", "cp314t", "cp314t-gil"):
        assert f"tests({name})" in proc.stdout
    for session in ("compare", "bench", "report", "lint"):
        assert f"- {session} ->" in proc.stdout
    assert list((tmp_path / "cache").iterdir()) == []  # no lock, no download, no build
    assert not (tmp_path / ".nox").exists()


def test_listing_with_a_bad_version_says_so(tmp_path: Path) -> None:
    proc = nox_list(tmp_path, "3.12")
    assert proc.returncode != 0
    assert "error: FT_HARNESS_PYTHON: python version '3.12' not accepted" in proc.stderr

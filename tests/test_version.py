"""`python -m harness --version`, and the harness version in every `run` result, both equal to
the version the package is built with (pyproject.toml, read here without the harness)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_version_option() -> None:
    proc = harness("--version")
    assert proc.returncode == 0 and proc.stdout == f"ft-harness {PACKAGED}\n"


def test_every_run_result_carries_the_version() -> None:
    proc = harness(
        "run",
        "--model",
        "tiny",
        "--steps",
        "2",
        "--train-samples",
        "256",
        "--test-samples",
        "64",
        "--batch",
        "64",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["harness_version"] == PACKAGED

"""The command line as a user meets it: real subprocesses, JSON output, one-line errors, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {
    "workload",
    "strategy",
    "workers",
    "interpreter",
    "blas",
    "steps",
    "samples",
    "wall_s",
    "samples_per_s",
    "final_loss",
    "accuracy",
    "params_sha256",
}


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_json_has_the_documented_fields() -> None:
    proc = harness(
        "run",
        "--workload",
        "data-parallel",
        "--strategy",
        "threads",
        "--workers",
        "2",
        "--model",
        "tiny",
        "--steps",
        "60",
        "--seed",
        "1",
        "--microbatches",
        "16",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert RESULT_KEYS <= result.keys()
    assert result["interpreter"]["py_gil_disabled"] in (True, False)
    assert {"version", "gil_enabled", "name"} <= result["interpreter"].keys()
    assert result["blas"]["threads"] == 1 and result["blas"]["library"]
    assert result["samples"] == 60 * 1024
    assert result["final_loss"] < result["initial_loss"]
    assert result["accuracy"] > 0.3  # 10 classes: chance is about 0.1


def test_run_without_json_prints_a_summary() -> None:
    proc = harness("run", "--steps", "2")
    assert proc.returncode == 0 and "samples/s" in proc.stdout and "params" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--strategy", "gpu"],
            "unknown strategy 'gpu'; known: asyncio, blas, mpi, processes, serial, spmd, threads",
        ),
        (["--workload", "rl"], "unknown workload 'rl'; known:"),
        (["--workers", "0"], "workers=0 must be an integer >= 1"),
        (["--steps", "0"], "steps=0 must be an integer >= 1"),
        (["--microbatches", "7"], "microbatches=7 must divide batch=1024"),
        (["--model", "huge"], "model='huge' is not a model any plug-in accepts"),
        (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (
            ["--strategy", "processes", "--start-method", "vfork"],
            "start_method='vfork' is not one of",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    proc = harness("run", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


def test_list_shows_workloads_and_strategies() -> None:
    proc = harness("list", "--json")
    listing = json.loads(proc.stdout)
    assert "data-parallel" in {w["name"] for w in listing["workloads"]}
    names = {s["name"]: s for s in listing["strategies"]}
    assert {"serial", "threads", "processes", "asyncio", "blas"} <= names.keys()
    assert all(s["available"] or s["reason"] for s in names.values())


def test_env_json_describes_interpreter_blas_and_cpu() -> None:
    env = json.loads(harness("env", "--json").stdout)
    assert env["interpreter"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["numpy"]["blas"]["library"]
    assert env["cpu"]["logical"] >= 1 and env["cpu"]["model"]

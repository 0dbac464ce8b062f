"""The plain loop is the yardstick for harness overhead: it must do the same work, so its final
parameters are bitwise the harness's (each is the other's independent oracle)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import RunConfig
from harness.plainloop import parse, train
from harness.runner import execute

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("model", "workers", "steps"),
    [("64-32-10", 1, 12), ("64-32-10", 2, 12), ("64-24-16-10", 3, 10)],
)
def test_plain_loop_ends_bitwise_where_the_harness_ends(
    model: str, workers: int, steps: int
) -> None:
    """Catches either side drifting (an operation reordered, a reduction out of order, a step
    rule changed, the shuffle cached for the wrong epoch: 12 steps cross one epoch boundary)."""
    common = {"steps": steps, "batch": 512, "train_samples": 3072, "test_samples": 128}
    plain = train(
        parse(
            [
                "--model",
                model,
                "--workers",
                str(workers),
                *[f"--{k.replace('_', '-')}={v}" for k, v in common.items()],
            ]
        )
    )
    harness = execute(RunConfig(model=model, strategy="threads", workers=workers, **common))
    assert plain["params_sha256"] == harness["params_sha256"]


@pytest.mark.parametrize(
    "bad",
    [
        ["--workers", "0"],
        ["--microbatches", "5"],
        ["--model", "64-x"],
        ["--workers", "17"],
        ["--steps", "two"],
    ],
)
def test_bad_input_is_one_error_line_and_status_2(bad: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.plainloop", *bad],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_compare_alternates_fresh_runs_and_reports_their_medians() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.plainloop",
            "compare",
            "3",
            "--steps",
            "2",
            "--batch",
            "256",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(proc.stdout)
    assert [len(out["walls_s"][k]) for k in ("harness", "plain")] == [3, 3]
    medians = {k: statistics.median(v) for k, v in out["walls_s"].items()}
    assert out["median_wall_s"] == medians
    assert out["harness_over_plain"] == medians["harness"] / medians["plain"]
    assert set(out["loop_cpu_s"]) == {"harness", "plain"}  # CPU of 2 steps minus 1: noise here

"""The async-sgd workload: its command line, its results, its determinism where there is one, and
its shared memory. That locked policies lose nothing for any shape is in properties/."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from harness.__main__ import main
from harness.config import RunConfig
from harness.model import MLP
from harness.params import MAX_LOCKS, probe_deltas, probe_worker
from harness.runner import execute
from harness.workloads.async_sgd import partition, shared_store
from harness.workloads.common import to_shared
from strategies import create
from tests.conftest import our_segments

ROOT = Path(__file__).resolve().parents[1]
COMMON_KEYS = {
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
ASYNC_KEYS = {"policy", "updates", "updates_per_s", "parameters", "stripes", "locks"}
PROBE_KEYS = {"expected_sum", "observed_sum", "lost_updates", "lost_fraction", "exact"}
QUICK = {"batch": 64, "train_samples": 1024, "test_samples": 256}  # keeps each run well under 1 s


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--workload", "async-sgd", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run(**options: object) -> dict:
    return execute(RunConfig(workload="async-sgd", **{**QUICK, **options}))


def test_cli_training_reports_speed_and_held_out_quality() -> None:
    proc = harness(
        "--policy",
        "striped",
        "--strategy",
        "threads",
        "--workers",
        "2",
        "--updates",
        "60",
        "--batch",
        "64",
        "--seed",
        "3",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert COMMON_KEYS | ASYNC_KEYS <= result.keys() and not PROBE_KEYS & result.keys()
    assert (result["policy"], result["updates"], result["steps"]) == ("striped", 60, 120)
    assert result["samples"] == 120 * 64 and result["updates_per_s"] > 0
    assert result["stripes"] == result["locks"] == 2  # the tiny model's two layers
    assert result["final_loss"] < result["initial_loss"]
    assert result["accuracy"] > 0.2  # 10 classes: chance is about 0.1


def test_cli_probe_reports_what_was_lost() -> None:
    proc = harness(
        "--probe",
        "--policy",
        "lock",
        "--strategy",
        "processes",
        "--workers",
        "2",
        "--updates",
        "50",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert COMMON_KEYS | ASYNC_KEYS | PROBE_KEYS <= result.keys()
    assert result["lost_updates"] == 0 and result["exact"] is True
    assert result["observed_sum"] == result["expected_sum"] > 0
    assert result["final_loss"] is None and result["accuracy"] is None  # no training happened
    assert result["samples"] is None and result["samples_per_s"] is None  # nor samples read
    summary = harness(
        "--probe", "--policy", "lock", "--strategy", "threads", "--workers", "2", "--updates", "50"
    )
    assert "updates/s" in summary.stdout and "samples/s" not in summary.stdout, summary.stdout


def test_cli_without_json_prints_a_summary() -> None:
    proc = harness("--strategy", "threads", "--workers", "2", "--updates", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("async-sgd / threads x2") and "accuracy" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--policy", "optimistic"], "policy='optimistic' is not one of: lock, striped, hogwild"),
        (["--stripes", "0"], "stripes=0 must be an integer >= 1"),
        (
            ["--policy", "striped", "--stripes", "2411"],
            "stripes=2411 is more than the 2410 parameters",
        ),
        (["--updates", "0"], "updates=0 must be an integer >= 1"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    assert main(["run", "--workload", "async-sgd", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("name", ["threads", "asyncio", "processes"])
def test_one_worker_is_bitwise_serial(name: str) -> None:
    """With one writer nothing races: every strategy must land on serial's exact parameters."""
    options = {"workers": 1, "updates": 20, "policy": "striped", "seed": 5}
    assert (
        run(strategy=name, **options)["params_sha256"]
        == run(strategy="serial", **options)["params_sha256"]
    )


@pytest.mark.parametrize("policy", ["lock", "striped", "hogwild"])
def test_every_policy_learns_reproducibly_when_serial(policy: str) -> None:
    first, again = (run(strategy="serial", workers=2, updates=40, policy=policy) for _ in range(2))
    assert first["params_sha256"] == again["params_sha256"]
    assert first["final_loss"] < first["initial_loss"]


def test_partitions_are_disjoint_and_cover_the_training_set() -> None:
    parts = [partition(seed=1, slot=s, workers=3, n_train=100) for s in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))


@pytest.mark.parametrize("name", ["threads", "processes"])
def test_more_stripes_than_locks_share_locks_and_lose_nothing(name: str) -> None:
    result = run(
        strategy=name, workers=2, updates=100, policy="striped", stripes=MAX_LOCKS + 9, probe=True
    )
    assert (result["stripes"], result["locks"]) == (MAX_LOCKS + 9, MAX_LOCKS)
    assert result["lost_updates"] == 0


def test_hogwild_losses_are_reported_not_asserted() -> None:
    result = run(
        strategy="threads", workers=2, updates=100, policy="hogwild", probe=True, model="small"
    )
    assert result["locks"] == 0 and isinstance(result["lost_updates"], int)
    assert 0 <= result["lost_updates"] <= result["expected_sum"]  # what races cost: measured only
    alone = run(
        strategy="threads", workers=1, updates=100, policy="hogwild", probe=True, model="small"
    )
    assert alone["lost_updates"] == 0  # no second writer, nothing to race with


def test_processes_leave_no_segment_after_a_run() -> None:
    run(strategy="processes", workers=2, updates=10, policy="striped")
    assert not our_segments()


def test_processes_leave_no_segment_when_a_worker_raises() -> None:
    config = RunConfig(workload="async-sgd", strategy="processes", workers=2, probe=True)
    model = MLP(config.widths)
    with pytest.raises(IndexError):
        with create("processes", 2) as strategy:
            store = shared_store(config, strategy, model, np.zeros(model.size))
            deltas = to_shared(strategy, probe_deltas(0, 1, model.size))  # one row: slot 1 raises
            assert our_segments()
            strategy.map(partial(probe_worker, store=store, deltas=deltas, updates=5), range(2))
    assert not our_segments()

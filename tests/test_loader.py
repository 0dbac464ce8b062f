"""The pipeline's mechanics (ordering, backpressure, errors, early exit), its sources, and the
`loader` and `data-parallel --data` workloads."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from harness import HarnessError
from harness.config import RunConfig
from harness.data.pipeline import (
    IDX_NAMES,
    LoadBatch,
    PipelineStats,
    batches_digest,
    epoch_tasks,
    open_source,
    stream,
)
from harness.data.shards import make_shards
from harness.data.synthetic import write_idx
from harness.runner import execute
from strategies import create
from strategies.base import Strategy

ROOT = Path(__file__).resolve().parents[1]
IN_PROCESS = ["serial", "threads", "asyncio", "blas"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loader") / "set"
    make_shards(root, samples=90, shape=(8, 8), classes=10, seed=5, shard_size=16)
    return root


def slow_first(x: int) -> int:
    if x == 0:
        time.sleep(0.3)
    return x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} refused")
    return x


def die_on_two(x: int) -> int:
    if x == 2:
        os._exit(3)  # a worker that vanishes without raising
    return x


class Counted:
    """A task function that records how many calls started and finished (in-process strategies)."""

    def __init__(self) -> None:
        self.started = self.finished = 0
        self._lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self._lock:
            self.started += 1
        time.sleep(0.002)
        with self._lock:
            self.finished += 1
        return x


class HeldZero:
    """Task 0 waits until `release` is set; the others run at once. No timing involved."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, x: int) -> int:
        if x == 0:
            assert self.release.wait(30), "task 0 was never released"
        return x


def test_unordered_delivers_the_first_ready_first() -> None:
    with create("threads", 2) as strategy:
        held = HeldZero()
        threading.Timer(0.2, held.release.set).start()  # 0 finishes after the others...
        assert list(stream(strategy, held, range(4), bound=4, ordered=True)) == [
            0,
            1,
            2,
            3,
        ]  # ...yet first
        unordered, held = [], HeldZero()
        for result in stream(strategy, held, range(4), bound=4, ordered=False):
            unordered.append(result)
            if len(unordered) == 3:  # 1, 2 and 3 arrived while 0 was held: now let it finish
                held.release.set()
    assert unordered[-1] == 0 and sorted(unordered) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_slow_consumer_holds_workers_back(name: str) -> None:
    """Backpressure: a task starts only when fewer than `bound` undelivered ones exist."""
    counted, stats, delivered = Counted(), PipelineStats(bound=3), 0
    with create(name, 2) as strategy:
        for _ in stream(strategy, counted, range(20), bound=3, stats=stats):
            time.sleep(0.005)
            delivered += 1
            assert counted.started - delivered <= 3
    assert stats.peak_in_flight == 3 and stats.delivered == stats.submitted == 20


@pytest.mark.parametrize("name", IN_PROCESS)
def test_early_exit_cancels_and_waits(name: str) -> None:
    counted = Counted()
    with create(name, 2) as strategy:
        with closing(stream(strategy, counted, range(1000), bound=4)) as results:
            assert next(results) == 0
        assert (
            counted.started == counted.finished <= 5
        )  # nothing still running, nothing more started


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", IN_PROCESS + ["processes"])
@pytest.mark.parametrize("ordered", [True, False])
def test_task_error_reaches_the_consumer(name: str, ordered: bool) -> None:
    with create(name, 2) as strategy:
        with pytest.raises(ValueError, match="task 3 refused"):
            list(stream(strategy, fail_on_three, range(50), bound=4, ordered=ordered))


@pytest.mark.timeout(60)
def test_a_dead_process_worker_fails_instead_of_hanging() -> None:
    with create("processes", 2) as strategy:
        with pytest.raises(BrokenProcessPool):
            list(stream(strategy, die_on_two, range(10), bound=4))


@pytest.mark.parametrize("name", IN_PROCESS + ["processes"])
def test_submit_returns_a_future_and_refuses_after_close(name: str) -> None:
    strategy = create(name, 2)
    with strategy:
        assert strategy.submit(slow_first, 5).result(timeout=30) == 5
        with pytest.raises(ValueError, match="task 3 refused"):
            strategy.submit(fail_on_three, 3).result(timeout=30)
    with pytest.raises(HarnessError, match="is closed"):
        strategy.submit(slow_first, 1)


def test_bound_must_be_positive() -> None:
    with create("serial", 1) as strategy, pytest.raises(HarnessError, match="bound=0 must be >= 1"):
        next(stream(strategy, fail_on_three, range(3), bound=0))


def test_epoch_tasks_cover_each_sample_once_per_epoch() -> None:
    tasks = list(epoch_tasks(10, 4, seed=1, epochs=2))
    assert [(t.epoch, t.index, len(t.samples)) for t in tasks] == [
        (0, 0, 4),
        (0, 1, 4),
        (0, 2, 2),
        (1, 0, 4),
        (1, 1, 4),
        (1, 2, 2),
    ]
    for epoch in (0, 1):
        assert sorted(np.concatenate([t.samples for t in tasks if t.epoch == epoch])) == list(
            range(10)
        )
    assert not np.array_equal(tasks[0].samples, tasks[3].samples)  # reshuffled per epoch
    assert [len(t.samples) for t in epoch_tasks(10, 4, seed=1, epochs=1, drop_last=True)] == [4, 4]


def load_all(source_spec: str, strategy: Strategy, augment: str = "numpy") -> str:
    source = open_source(source_spec)
    tasks = epoch_tasks(source.samples, 16, seed=2, epochs=1)
    digests = [b.digest() for b in stream(strategy, LoadBatch(source, augment, 2), tasks, bound=2)]
    return batches_digest(digests, ordered=True)


@pytest.mark.parametrize("layout", ["folder", "folder-gz", "images-file"])
def test_idx_files_load_like_the_same_samples_in_shards(
    data_dir: Path, tmp_path: Path, layout: str
) -> None:
    images, labels = open_source(str(data_dir)).read(np.arange(90))
    paths = [tmp_path / name for name in IDX_NAMES]
    for path, array in zip(paths, (images, labels.astype(np.uint8))):
        write_idx(path, array)
        if layout == "folder-gz":
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    spec = f"idx:{paths[0]}" if layout == "images-file" else f"idx:{tmp_path}"
    with create("serial", 1) as strategy:
        assert load_all(spec, strategy) == load_all(str(data_dir), strategy)


def test_idx_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="need an images file and its labels file"):
        open_source(f"idx:{tmp_path}")
    write_idx(tmp_path / IDX_NAMES[0], np.zeros((3, 4), dtype=np.uint8))
    write_idx(tmp_path / IDX_NAMES[1], np.zeros(3, dtype=np.uint8))
    with pytest.raises(HarnessError, match=r"need uint8 images of shape \(n, H, W\)"):
        open_source(f"idx:{tmp_path}")
    with pytest.raises(HarnessError, match="this workload needs --data"):
        open_source(None)


def loader_result(data_dir: Path, **options: object) -> dict:
    config = RunConfig(workload="loader", data=str(data_dir), batch=16, **options)
    return execute(config)


def test_loader_workload_reports_its_numbers(data_dir: Path) -> None:
    result = loader_result(data_dir, strategy="threads", workers=2, epochs=2, augment="python")
    assert result["samples"] == 180 and result["batches"] == 12
    assert result["peak_in_flight"] == result["in_flight_bound"] == 4
    assert result["samples_per_s"] > 0 and 0 < result["time_to_first_batch_s"] <= result["wall_s"]
    assert result["peak_rss_mb"] > 10 and len(result["batches_sha256"]) == 64


def test_loader_digest_is_order_independent_only_when_unordered(data_dir: Path) -> None:
    ordered = loader_result(data_dir, order="ordered")["batches_sha256"]
    unordered = [
        loader_result(data_dir, strategy="threads", workers=w, order="unordered")["batches_sha256"]
        for w in (1, 3)
    ]
    assert unordered[0] == unordered[1] != ordered


def train_from(data_dir: Path, strategy: str, workers: int) -> dict:
    return execute(
        RunConfig(
            data=str(data_dir),
            strategy=strategy,
            workers=workers,
            steps=12,
            batch=16,
            microbatches=4,
            augment="python",
            test_samples=10,
        )
    )


def test_data_parallel_from_disk_is_bitwise_equal_across_strategies(data_dir: Path) -> None:
    results = [
        train_from(data_dir, name, workers)
        for name, workers in [("serial", 1), ("threads", 2), ("processes", 2)]
    ]
    assert len({r["params_sha256"] for r in results}) == 1
    assert all(0 <= r["stall_fraction"] <= 1 for r in results)
    assert results[0]["final_loss"] < results[0]["initial_loss"]
    assert "stall_fraction" not in execute(RunConfig(steps=2))


def test_data_parallel_from_disk_checks_the_model_fits(data_dir: Path) -> None:
    with pytest.raises(
        HarnessError, match=r"does not fit .* \(8x8 = 64 pixels.*use e.g. --model 64-64-10"
    ):
        execute(RunConfig(data=str(data_dir), model="small", steps=2, batch=16, microbatches=4))


def test_cli_loader_json_and_one_line_errors(data_dir: Path, tmp_path: Path) -> None:
    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "run",
                "--workload",
                "loader",
                "--batch",
                "16",
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = harness("--data", str(data_dir), "--strategy", "processes", "--workers", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    assert {
        "samples_per_s",
        "time_to_first_batch_s",
        "peak_rss_mb",
        "batches_sha256",
    } <= json.loads(ok.stdout).keys()
    missing = harness("--data", str(tmp_path / "nothing"), "--json")
    assert (
        missing.returncode == 2
        and missing.stderr.startswith("error: data folder")
        and missing.stdout == ""
    )

"""The mpi strategy with real `mpiexec` on this host: 2 ranks, and 3 (16 microbatches split 5/5/6).

Everything MPI runs in subprocesses, as users run it: MPI is never started inside pytest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.config import RunConfig
from harness.envinfo import gil_enabled
from harness.runner import execute
from strategies.mpi import Mpi, mpiexec_path
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
MPI_OK, MPI_MISSING = Mpi.available()
needs_mpi = pytest.mark.skipif(not MPI_OK, reason=MPI_MISSING)
pytestmark = pytest.mark.timeout(60)
SEED = 3
FAIL_FAST_S = 20  # a failing job must end well within this (most take about a second)
# An aborted job of a test running beside this one (xdist) leaves a segment that no process
# maps until its launcher removes it: it goes within this; one of this test's own job would stay.
ORPHAN_WAIT_S = 15


def harness_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, **(env or {})},
    )


def mpi_result(*args: str) -> dict[str, Any]:
    proc = harness_run("--strategy", "mpi", "--seed", str(SEED), *args, "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@cache
def serial(workload: str = "data-parallel", **options: Any) -> dict[str, Any]:
    """The reference, in this process: serial, same interpreter, same seed."""
    return execute(RunConfig(workload=workload, seed=SEED, **options))


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds `marker` (a seed no other test uses)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(
            proc.info["cmdline"] or []
        ):
            found.append(proc)
    return found


def orphaned_segments(since: float) -> list[str]:
    """MPICH segments in /dev/shm created since `since` that no process maps (psutil's view)."""
    fresh = [p for p in Path("/dev/shm").glob("mpich_shm_*") if p.stat().st_mtime >= since - 1]
    mapped = set()
    for process in psutil.process_iter():
        try:
            mapped.update(m.path for m in process.memory_maps(grouped=False))
        except (psutil.Error, OSError):
            continue
    return [p.name for p in fresh if str(p) not in mapped]


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_data_parallel_equals_serial_bit_for_bit(ranks: int, tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text(f"localhost:{ranks}\n")
    result = mpi_result("--workers", str(ranks), "--steps", "4", "--hostfile", str(hostfile))
    assert result["params_sha256"] == serial(steps=4)["params_sha256"]
    info = result["strategy_info"]
    assert (info["ranks"], info["threads_per_rank"], info["reduce"], info["bitwise"]) == (
        ranks,
        1,
        "ordered",
        True,
    )
    assert info["thread_level_requested"] == "funneled"
    assert info["thread_level_provided"] in ("funneled", "serialized", "multiple")
    assert info["mpi_library"] and info["mpi_library_version"].startswith(
        info["mpi_library"].split()[0]
    )


@needs_mpi
def test_fewer_microbatches_than_ranks_still_equals_serial() -> None:
    result = mpi_result("--workers", "3", "--microbatches", "2", "--steps", "3")
    assert result["params_sha256"] == serial(steps=3, microbatches=2)["params_sha256"]


@needs_mpi
def test_large_model_equals_serial_bit_for_bit() -> None:
    options = {"model": "large", "steps": 2, "train_samples": 1024, "test_samples": 64}
    result = mpi_result(
        "--workers",
        "2",
        "--model",
        "large",
        "--steps",
        "2",
        "--train-samples",
        "1024",
        "--test-samples",
        "64",
    )
    assert result["params_sha256"] == serial(**options)["params_sha256"]


@needs_mpi
def test_allreduce_is_close_and_reported_as_not_bitwise() -> None:
    result = mpi_result("--workers", "3", "--steps", "6", "--reduce", "allreduce")
    reference = serial(steps=6)
    assert result["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-9)
    assert result["accuracy"] == pytest.approx(reference["accuracy"], abs=2 / 1024)
    assert (result["strategy_info"]["reduce"], result["strategy_info"]["bitwise"]) == (
        "allreduce",
        False,
    )


@needs_mpi
def test_hybrid_two_threads_per_rank_equals_serial() -> None:
    result = mpi_result(
        "--workers",
        "2",
        "--threads-per-rank",
        "2",
        "--steps",
        "4",
        "--hosts",
        "localhost,localhost",
    )
    assert result["params_sha256"] == serial(steps=4)["params_sha256"]
    info = result["strategy_info"]
    assert (info["ranks"], info["threads_per_rank"], info["total_threads"]) == (2, 2, 4)
    assert result["interpreter"]["gil_enabled"] == gil_enabled()  # mpi4py keeps 3.13t's GIL off


@needs_mpi
@pytest.mark.parametrize(("policy", "ranks"), [("lock", 2), ("striped", 3), ("hogwild", 2)])
def test_async_probe_loses_no_update(policy: str, ranks: int) -> None:
    """Locked policies must lose nothing. Under MPI even Hogwild! does not: its updates are
    MPI_Accumulate, atomic per element (the store's docstring says why)."""
    result = mpi_result(
        "--workload",
        "async-sgd",
        "--policy",
        policy,
        "--probe",
        "--workers",
        str(ranks),
        "--updates",
        "100",
    )
    assert (result["lost_updates"], result["exact"]) == (0, True)
    assert result["locks"] == {"lock": 1, "striped": min(2, ranks), "hogwild": 0}[policy]


@needs_mpi
def test_async_training_on_one_rank_equals_serial() -> None:
    """One writer is deterministic: the RMA store must then change nothing, bit for bit."""
    result = mpi_result("--workload", "async-sgd", "--workers", "1", "--updates", "30")
    assert result["params_sha256"] == serial("async-sgd", updates=30)["params_sha256"]


@needs_mpi
def test_users_own_mpiexec_takes_the_ranks_as_workers() -> None:
    proc = subprocess.run(
        [
            str(mpiexec_path()),
            "-n",
            "2",
            sys.executable,
            "-m",
            "harness",
            "run",
            "--strategy",
            "mpi",
            "--seed",
            str(SEED),
            "--steps",
            "2",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # rank 0 alone prints
    assert result["workers"] == 2 and result["params_sha256"] == serial(steps=2)["params_sha256"]


CONTRACT = """
import numpy as np
from strategies import create
def square(x): return x * x
def write_row(args):
    shared, row = args
    shared[row] = row + 1.0
    return row
with create("mpi", 3, threads_per_rank=2) as s:
    assert s.map(square, range(7)) == [x * x for x in range(7)]
    assert s.map(square, [5, 6]) == [25, 36]  # fewer tasks than ranks
    assert s.map(square, []) == []
    rows = s.shared_array((7, 2))
    s.map(write_row, [(rows, r) for r in range(7)])
    assert s.sum_rows(rows).tolist() == [28.0, 28.0]  # rows written on every rank, added in order
    few = s.shared_array((2, 3))  # fewer rows than ranks: rank 2 holds none, the chain skips it
    s.map(write_row, [(few, r) for r in range(2)])
    assert s.sum_rows(few).tolist() == [3.0] * 3
    big = s.shared_array((5, (1 << 16) * 2 + 3))  # rows of several chain chunks, the last one ragged
    s.map(write_row, [(big, r) for r in range(5)])
    assert (s.sum_rows(big) == 15.0).all()
    assert s.submit(square, 9).result() == 81
s.close()
try:
    s.map(square, [1])
except Exception as exc:
    assert "is closed" in str(exc)
else:
    raise AssertionError("map after close")
print(f"ok-rank{s.rank}")
"""


@needs_mpi
def test_strategy_contract_across_three_ranks() -> None:
    proc = subprocess.run(
        [str(mpiexec_path()), "-n", "3", sys.executable, "-c", CONTRACT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert all(f"ok-rank{rank}" in proc.stdout for rank in range(3)), (
        proc.stdout
    )  # lines may interleave


INJECT = """
import os
if os.environ.get("PMI_RANK") == "1":  # rank 1 of the job fails in its first microbatch
    from harness.model import MLPWorkspace
    def broken(self, *args, **kwargs):
        raise RuntimeError("injected failure on rank 1")
    MLPWorkspace.loss_and_grad = broken  # the hot path: one workspace per worker
"""


@needs_mpi
def test_a_rank_that_raises_fails_the_job_fast_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(INJECT)
    marker = f"--seed {7_000_000 + os.getpid()}"
    start, start_wall = time.monotonic(), time.time()
    proc = harness_run(
        "--strategy",
        "mpi",
        "--workers",
        "3",
        "--steps",
        "500",
        *marker.split(),
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert time.monotonic() - start < FAIL_FAST_S
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        "error: rank 1 of 3 on " in proc.stderr
        and "RuntimeError: injected failure on rank 1" in proc.stderr
    )
    assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)
    # MPI_Abort skips MPICH's unlink of its shared memory; the launcher removes it (a segment of
    # a job running beside this test is mapped by its ranks, so it does not count)
    assert not orphaned_segments(since=start_wall), orphaned_segments(since=start_wall)


@needs_mpi
def test_a_failing_rank_under_the_users_own_mpiexec_leaves_no_shared_memory(tmp_path: Path) -> None:
    """No launcher to clean up here: the failing rank unlinks the job's segment before aborting."""
    (tmp_path / "sitecustomize.py").write_text(INJECT)
    start_wall = time.time()
    proc = subprocess.run(
        [
            str(mpiexec_path()),
            "-n",
            "2",
            sys.executable,
            "-m",
            "harness",
            "run",
            "--strategy",
            "mpi",
            "--steps",
            "500",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode != 0 and "injected failure on rank 1" in proc.stderr
    assert wait_until(lambda: not orphaned_segments(since=start_wall), ORPHAN_WAIT_S), (
        orphaned_segments(since=start_wall)
    )


@needs_mpi
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_launcher_leaves_no_ranks(sig: signal.Signals) -> None:
    marker = f"--seed {8_000_000 + os.getpid() * 2 + (sig == signal.SIGKILL)}"
    start_wall = time.time()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--strategy",
            "mpi",
            "--workers",
            "2",
            "--steps",
            "1000000",
            *marker.split(),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # launcher + mpiexec + 2 ranks
        assert wait_until(lambda: len(processes_with(marker)) >= 4, 30), processes_with(marker)
        launcher.send_signal(sig)
        _, stderr = launcher.communicate(timeout=FAIL_FAST_S)
        assert wait_until(lambda: not processes_with(marker), FAIL_FAST_S), processes_with(marker)
        assert wait_until(lambda: not orphaned_segments(since=start_wall), ORPHAN_WAIT_S), (
            orphaned_segments(since=start_wall)
        )
    finally:
        launcher.kill()
    if sig == signal.SIGTERM:
        assert launcher.returncode == 130 and stderr.strip() == "error: interrupted"


def test_without_mpi4py_says_how_to_install() -> None:
    hide = (
        "import sys; sys.modules['mpi4py'] = None; from harness.__main__ import main; "
        "sys.exit(main(['run', '--strategy', 'mpi', '--workers', '2']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide], cwd=ROOT, capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: strategy 'mpi' is not available here: mpi4py is not installed; pip install "
        "'ft-harness[mpi]' (mpi4py and the MPICH runtime with its mpiexec)"
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--strategy", "threads", "--threads-per-rank", "2"],
            "threads_per_rank=2 applies to strategy 'mpi' only",
        ),
        (["--reduce", "allreduce"], "reduce='allreduce' applies to strategy 'mpi' only"),
        (
            ["--strategy", "mpi", "--reduce", "sum"],
            "reduce='sum' is not one of: ordered, allreduce",
        ),
        (
            ["--strategy", "mpi", "--threads-per-rank", "0"],
            "threads_per_rank=0 must be an integer >= 1",
        ),
        (["--strategy", "mpi", "--hosts", "a", "--hostfile", "b"], "give one of them, not both"),
    ],
)
def test_bad_mpi_options_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    proc = harness_run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr.count("\n") == 1
        and proc.stderr.startswith("error: ")
        and fragment in proc.stderr
    )

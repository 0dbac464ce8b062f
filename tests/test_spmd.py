"""The spmd strategy with real worker processes: every rank runs the workload, the results equal
serial's bit for bit, and a worker that raises or dies (a real SIGKILL) ends the job at once, in
one line that names it, leaving no process and no shared memory behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from harness import HarnessError
from harness.bench.matrix import get_preset
from harness.config import RunConfig
from harness.params import probe_deltas, probe_expected
from harness.runner import execute
from harness.workloads.async_sgd import run_async_sgd
from harness.workloads.data_parallel import run_data_parallel
from strategies import open_strategy
from strategies.spmd import Spmd
from strategies.spmd_comm import Aborted
from tests.conftest import alive, ctrl_c_as_usual, our_segments, wait_until

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"steps": 5, "batch": 64, "microbatches": 16, "train_samples": 256, "test_samples": 32}
FAIL_FAST_S = 5.0  # the bound on how long a failed job may take to end


def digest(**fields: Any) -> str:
    return str(execute(RunConfig(**fields))["params_sha256"])


# ---- same results as serial ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_two_workers_give_the_serial_parameters_under_every_start_method(method: str) -> None:
    serial = digest(**SMALL)
    result = execute(RunConfig(**SMALL, strategy="spmd", workers=2, start_method=method))
    assert result["params_sha256"] == serial
    assert result["strategy_info"]["start_method"] == method
    assert not our_segments()


@pytest.mark.parametrize(("workers", "microbatches"), [(1, 4), (3, 16), (3, 2), (4, 4)])
def test_uneven_and_empty_shares_still_sum_in_serial_order(workers: int, microbatches: int) -> None:
    """3 ranks of 16 rows cut 5/5/6; 3 ranks of 2 rows leave one rank without a row."""
    fields = {**SMALL, "microbatches": microbatches}
    assert digest(**fields, strategy="spmd", workers=workers) == digest(**fields)


def test_async_sgd_workers_update_one_shared_vector_and_lose_nothing_under_a_lock() -> None:
    config = RunConfig(
        workload="async-sgd", strategy="spmd", workers=2, probe=True, updates=300, policy="lock"
    )
    result = execute(config)
    # the oracle: every worker's integer deltas, counted without any strategy
    expected = probe_expected(probe_deltas(config.seed, 2, config.parameters), config.updates)
    assert result["expected_sum"] == float(expected.sum())
    assert result["lost_updates"] == 0 and result["exact"]  # a private copy per rank loses half


def test_one_async_worker_is_serial_bit_for_bit() -> None:
    fields = {"workload": "async-sgd", "updates": 20, "batch": 32}
    assert digest(**fields, strategy="spmd", workers=1) == digest(**fields)


def test_a_bench_like_reuse_runs_each_workload_on_the_same_workers() -> None:
    """Workers start once: run after run, data-parallel then async-sgd, on one strategy."""
    config = RunConfig(**SMALL, strategy="spmd", workers=2)
    probe = RunConfig(workload="async-sgd", strategy="spmd", workers=2, probe=True, updates=50)
    with open_strategy(config) as strategy:
        pids = strategy.worker_pids  # type: ignore[attr-defined]
        digests = {
            strategy.run_workload(run_data_parallel, config)["params_sha256"] for _ in range(3)
        }
        assert strategy.run_workload(run_async_sgd, probe)["exact"]
        assert strategy.worker_pids == pids  # type: ignore[attr-defined]
        assert all(map(psutil.pid_exists, pids))
    assert digests == {digest(**SMALL)}
    assert not our_segments()


# ---- what does not run, and says so ------------------------------------------------------------


def test_loader_is_refused_in_one_line() -> None:
    proc = run_cli(
        "--workload", "loader", "--strategy", "spmd", "--workers", "2", "--data", "/nope"
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert re.fullmatch(
        r"error: the loader workload does not run on strategy 'spmd': .*\n", proc.stderr
    )
    listing = run_cli_command("list").stdout
    assert re.search(r"^  spmd .*no loader", listing, re.MULTILINE)


def test_a_map_outside_run_workload_is_refused_instead_of_waiting_forever() -> None:
    with Spmd(2) as strategy, pytest.raises(HarnessError, match="maps only inside run_workload"):
        strategy.map(abs, [1, 2])
    assert not our_segments()


# ---- failing fast -------------------------------------------------------------------------------


def refuse_on_rank_1(config: int, strategy: Any) -> None:
    """Two collectives, then rank 1 raises while rank 0 waits for it in the next one."""
    for _ in range(2):
        strategy.map(abs, range(4))
        strategy.sum_rows(np.ones((4, 3)))
    if strategy.rank == 1:
        raise ValueError("rank 1 refuses")
    strategy.map(abs, range(4))


@pytest.mark.timeout(60)
def test_a_raising_worker_aborts_the_job_naming_it() -> None:
    strategy = Spmd(2)
    [pid] = strategy.worker_pids
    with pytest.raises(Aborted) as info:
        strategy.run_workload(refuse_on_rank_1, 0)
    strategy.close()
    assert str(info.value) == f"spmd worker 1 of 2 (pid {pid}) failed: ValueError: rank 1 refuses"
    assert "refuse_on_rank_1" in str(info.value.__cause__)  # the worker's traceback, attached
    assert not psutil.pid_exists(pid) and not our_segments()


def die_holding_the_lock(config: int, strategy: Any) -> None:
    lock = strategy.lock()
    if strategy.rank == 1:
        lock.__enter__()
    strategy.shared_array(1)  # a barrier: rank 1 holds the lock from here on
    if strategy.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    with lock:  # rank 0 waits for a lock whose holder is dead
        pass


@pytest.mark.timeout(60)
def test_a_worker_killed_holding_a_lock_does_not_leave_rank_0_waiting() -> None:
    with Spmd(2) as strategy:
        [pid] = strategy.worker_pids
        killed = rf"^spmd worker 1 of 2 \(pid {pid}\) was killed by SIGKILL$"
        with pytest.raises(Aborted, match=killed):
            strategy.run_workload(die_holding_the_lock, 0)
    assert not our_segments()


LONG = ["--strategy", "spmd", "--workers", "3", "--steps", "10000000"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli_command("run", *args)


def run_cli_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def started(*extra: str) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    """A long spmd run in a session of its own, once its 2 other workers are in the loop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *LONG, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_usual,
    )
    assert wait_until(lambda: len(workers_of(proc.pid)) == 2 and segments_of(proc.pid), 60)
    time.sleep(1.0)  # into the training loop
    return proc, workers_of(proc.pid)


def workers_of(pid: int) -> list[psutil.Process]:
    """Its descendants but multiprocessing's helpers (resource tracker, fork server)."""
    try:
        me = psutil.Process(pid)
        helpers = {
            c.pid
            for c in me.children()
            if "from multiprocessing." in " ".join(c.cmdline())
            and "spawn_main" not in " ".join(c.cmdline())
        }
        return [p for p in me.children(recursive=True) if p.pid not in helpers]
    except psutil.Error:
        return []


def segments_of(pid: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"fth_{pid}_*"))


def gone(processes: list[psutil.Process]) -> bool:
    return not any(alive(p) for p in processes)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_a_worker_killed_by_sigkill_ends_the_run_in_one_line(method: str) -> None:
    proc, workers = started("--start-method", method)
    os.kill(workers[0].pid, signal.SIGKILL)
    killed = time.monotonic()
    code = proc.wait(timeout=60)
    assert time.monotonic() - killed < FAIL_FAST_S
    assert code == 2 and proc.stdout.read() == ""
    assert re.fullmatch(
        rf"error: spmd worker \d of 3 \(pid {workers[0].pid}\) was killed by "
        r"SIGKILL\n",
        proc.stderr.read(),
    )
    assert gone(workers) and not segments_of(proc.pid)


@pytest.mark.timeout(120)
def test_ctrl_c_to_the_process_group_stops_every_worker_and_frees_the_memory() -> None:
    proc, workers = started()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert proc.wait(timeout=60) == 130 and proc.stderr.read() == "error: interrupted\n"
    assert wait_until(lambda: gone(workers), FAIL_FAST_S) and not segments_of(proc.pid)


@pytest.mark.timeout(120)
def test_workers_of_a_killed_rank_0_end_and_remove_the_shared_memory() -> None:
    proc, workers = started()
    assert segments_of(proc.pid)
    proc.kill()
    proc.wait(timeout=60)
    assert wait_until(lambda: gone(workers), FAIL_FAST_S), "workers outlived rank 0"
    assert wait_until(lambda: not segments_of(proc.pid), FAIL_FAST_S)


def test_the_bench_measures_spmd_beside_the_pool() -> None:
    quick = {c.name for c in get_preset("quick").cells}
    full = {c.name for c in get_preset("full").cells}
    assert {"data-parallel/spmd/w2/tiny", "data-parallel/processes/w2/tiny"} <= quick
    for workers in (1, 2, 4):
        assert f"data-parallel/spmd/w{workers}/tiny" in full
        policies = ("lock", "striped", "hogwild")
        assert {f"async-sgd/spmd/w{workers}/{p}/tiny" for p in policies} <= full

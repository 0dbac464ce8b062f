"""Contracts of strategies, the pipeline and the parameter store that a lucky schedule would hide.

Each test forces the interleaving that matters instead of hoping for it: a task still running
when a sibling fails, a slow earlier batch ahead of a failed one, several batches ready at once,
a writer switched out in the middle of a stripe, two workers inside one critical section.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.config import RunConfig
from harness.data.pipeline import stream
from harness.model import MLP
from harness.params import ParamStore, equal_stripes, probe_worker, stripes_for
from harness.workloads.async_sgd import run_async_sgd
from strategies import REGISTRY, create
from strategies.base import Strategy
from strategies.threads import Threads

# Strategies whose workers each run the workload (mpi, spmd) map only inside it: tests/test_mpi.py,
# tests/test_spmd.py and the contract kit (through run_workload) check them.
ALL = sorted(name for name, cls in REGISTRY.items() if not cls.spmd)
LOCKING = ["threads", "asyncio", "processes"]


# ---- map waits for every task it started ---------------------------------------------------------


def flagged(task: tuple[str, int], *, fail: int | None, slow: int) -> int:
    """Marks the task started, fails or sleeps as told, then marks it finished. The marks are
    files, so they outlive the strategy (its shared memory goes with close())."""
    folder, i = Path(task[0]), task[1]
    (folder / f"started-{i}").touch()
    if i == fail:
        raise ValueError(f"task {i} refused")
    if i == slow:
        time.sleep(0.3)  # long enough that a map that does not wait returns first
    (folder / f"finished-{i}").touch()
    return i


def marks(folder: Path) -> tuple[set[int], set[int]]:
    names = [p.name.split("-") for p in folder.iterdir()]
    return (
        {int(i) for kind, i in names if kind == "started"},
        {int(i) for kind, i in names if kind == "finished"},
    )


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fail", [0, None])
def test_map_never_returns_or_raises_while_a_task_runs(
    name: str, fail: int | None, tmp_path: Path
) -> None:
    """Task 0 (the caller's own slice under threads) fails or not; the last task, in another
    slice, is slow. When map is done, whether by result or by error, every task that started
    has finished, and none starts later: nothing is left writing the caller's buffers."""
    tasks = [(str(tmp_path), i) for i in range(4)]
    with create(name, 2) as strategy:
        task = partial(flagged, fail=fail, slow=3)
        if fail is None:
            assert strategy.map(task, tasks) == [0, 1, 2, 3]
        else:
            with pytest.raises(ValueError, match="task 0 refused"):
                strategy.map(task, tasks)
        started, finished = marks(tmp_path)
    assert marks(tmp_path) == (started, finished)  # close() waited for anything left: none was
    assert finished == started - {fail}  # the failed task ended by raising


# ---- the pipeline: errors first, oldest ready first ----------------------------------------------


class HeldFirst:
    """Batch 0 waits until released (a timer: the pipeline waits for running tasks before it
    raises, so nobody else could release it); batch 2 fails at once."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, x: int) -> int:
        if x == 0:
            assert self.release.wait(30), "batch 0 was never released"
        if x == 2:
            raise ValueError("batch 2 failed")
        return x


@pytest.mark.timeout(60)
def test_ordered_loading_raises_a_later_failure_before_a_slow_earlier_batch() -> None:
    held = HeldFirst()
    timer = threading.Timer(0.3, held.release.set)
    with create("threads", 2) as strategy:
        timer.start()
        batches = stream(strategy, held, range(6), bound=4, ordered=True)
        try:
            with pytest.raises(ValueError, match="batch 2 failed"):
                first = next(batches)  # not batch 0: it was still running when batch 2 failed
                pytest.fail(f"batch {first} was delivered before the failure")
        finally:
            batches.close()  # before the pool goes: a generator left open ends at exit
            timer.cancel()


class RecordingThreads(Threads):
    """The threads strategy, keeping the Future of every task it streams."""

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self.futures: list[Future[Any]] = []

    def _submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        future = super()._submit(fn, task)
        self.futures.append(future)
        return future


def test_unordered_delivers_the_oldest_ready_batch_first_on_serial() -> None:
    """Serial runs each task as it is submitted: every pending batch is ready at every pull."""
    with create("serial", 1) as strategy:
        assert list(stream(strategy, abs, range(9), bound=4, ordered=False)) == list(range(9))


def test_unordered_delivers_the_oldest_ready_batch_first_on_threads() -> None:
    held = HeldFirst()
    with RecordingThreads(6) as strategy:
        batches = stream(
            strategy, lambda x: held(x) if x == 0 else x, range(6), bound=6, ordered=False
        )
        delivered = [next(batches)]
        wait(strategy.futures[1:])  # every batch but 0 is ready now
        delivered += [next(batches) for _ in range(4)]
        held.release.set()
        delivered += list(batches)
    assert delivered == [*sorted(delivered[:5]), 0] and sorted(delivered) == list(range(6))


# ---- striped reads -------------------------------------------------------------------------------


def slow_add(dst: np.ndarray, src: np.ndarray) -> None:
    """dst += src one element at a time, sleeping between elements: a writer switched out in
    the middle of its stripe, every time, where a plain `+=` would almost never be."""
    for k in range(len(dst)):
        dst[k] += src[k]
        time.sleep(1e-5)


@dataclass(frozen=True, eq=False)
class SlowStore(ParamStore):
    """The real store (stripes, guards, reads) whose writes are slow inside the critical section."""

    def add(self, delta: np.ndarray) -> None:
        self._each_stripe(slow_add, self.params, delta)


def torn_reads(task: str, *, store: ParamStore, gate: threading.Barrier, updates: int) -> int:
    """A writer adds ones `updates` times; the reader reads until both writers are done and
    counts the reads where some stripe is not uniform (part of a write seen, part not)."""
    gate.wait()  # all three start together, so reads overlap writes
    if task == "write":
        for _ in range(updates):
            store.add(np.ones(store.params.size))
        gate.wait()
        return 0
    torn, out = 0, np.empty(store.params.size)
    while gate.n_waiting < gate.parties - 1:  # until both writers wait at the gate
        store.read(out)
        torn += any(len(set(out[s].tolist())) > 1 for s in store.stripes)
    gate.wait()
    return torn


@pytest.mark.timeout(60)
def test_striped_readers_never_see_a_torn_stripe() -> None:
    stripes = equal_stripes(24, 4)
    with create("threads", 3) as strategy:
        store = SlowStore.build(np.zeros(24), stripes, [strategy.lock() for _ in stripes])
        gate = threading.Barrier(3, timeout=30)
        torn = strategy.map(
            partial(torn_reads, store=store, gate=gate, updates=15), ["read", "write", "write"]
        )
    assert torn[0] == 0
    np.testing.assert_array_equal(store.params, np.full(24, 30.0))  # and no write was lost


# ---- the async-sgd probe, end to end -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RacyStore(ParamStore):
    """A store known to lose updates: both workers read, wait at a barrier (the forced switch),
    then each writes what it read plus its delta, so one of the two writes of a round is lost.
    It records every delta it was asked to add: the expected total, known without the probe."""

    barrier: threading.Barrier | None = None
    asked: list[float] | None = None

    def add(self, delta: np.ndarray) -> None:
        assert self.barrier is not None and self.asked is not None
        self.asked.append(float(delta.sum()))
        before = self.params.copy()
        self.barrier.wait()
        self.params[...] = before + delta
        self.barrier.wait()  # nobody starts the next round before this one is written


class RacyThreads(Threads):
    """Threads whose parameter store is the racy one (the hook MPI uses for its own store)."""

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self.store: RacyStore | None = None

    def param_store(self, initial: np.ndarray, stripes: list[slice], locks: int) -> RacyStore:
        plain = ParamStore.build(initial.copy(), stripes, [])
        self.store = RacyStore(
            plain.params,
            plain.stripes,
            plain.guards,
            threading.Barrier(self.workers, timeout=20),
            [],
        )
        return self.store


@pytest.mark.timeout(60)
def test_probe_reports_the_updates_a_racy_store_lost() -> None:
    config = RunConfig(
        workload="async-sgd",
        strategy="threads",
        workers=2,
        updates=25,
        probe=True,
        policy="hogwild",
        seed=3,
    )
    with RacyThreads(2) as strategy:
        result = run_async_sgd(config, strategy)
        store = strategy.store
    assert store is not None and len(store.asked) == 2 * 25
    expected, observed = sum(store.asked), float(store.params.sum())
    assert expected - observed > 0  # the double did lose updates ...
    assert result["lost_updates"] == round(expected - observed)  # ... and the probe says how many
    assert (result["expected_sum"], result["observed_sum"]) == (expected, observed)
    assert result["exact"] is False


# ---- locked policies: a forced switch inside every critical section ------------------------------


def racy_iadd(dst: np.ndarray, src: np.ndarray) -> None:
    """Read, sleep, write: any second writer let into the critical section loses an update."""
    before = dst.copy()
    time.sleep(5e-4)
    dst[...] = before + src


@dataclass(frozen=True, eq=False)
class SwitchingStore(ParamStore):
    """The real store whose stripe updates are read-sleep-write; picklable for processes."""

    def add(self, delta: np.ndarray) -> None:
        self._each_stripe(racy_iadd, self.params, delta)


@pytest.fixture(scope="module")
def locking() -> Iterator[dict[str, Strategy]]:
    opened: dict[str, Strategy] = {}
    yield opened
    for strategy in opened.values():
        strategy.close()


def locked_probe(strategies: dict[str, Strategy], name: str, policy: str, seed: int) -> None:
    workers, updates, model = 4, 8, MLP((5, 4, 3))
    strategy = strategies.setdefault(name, create(name, workers))
    stripes = stripes_for(policy, model)
    params = strategy.shared_array(model.size)
    store = SwitchingStore.build(params, stripes, [strategy.lock() for _ in stripes])
    deltas = np.random.default_rng(seed).integers(0, 3, (workers, model.size)).astype(np.float64)
    shared = strategy.shared_array(deltas.shape)
    shared[...] = deltas
    strategy.map(partial(probe_worker, store=store, deltas=shared, updates=updates), range(workers))
    np.testing.assert_array_equal(params, updates * deltas.sum(axis=0))  # nothing lost


@pytest.mark.timeout(120)
@pytest.mark.parametrize("policy", ["lock", "striped"])
@pytest.mark.parametrize("name", LOCKING)
def test_locked_policies_lose_nothing_with_a_switch_inside_the_lock(
    locking: dict[str, Strategy], name: str, policy: str
) -> None:
    locked_probe(locking, name, policy, seed=0)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", range(1, 6))
@pytest.mark.parametrize("name", LOCKING)
def test_locked_policies_lose_nothing_repeated(
    locking: dict[str, Strategy], name: str, seed: int
) -> None:
    locked_probe(locking, name, "striped", seed)

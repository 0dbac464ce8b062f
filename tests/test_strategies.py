"""The Strategy contract, checked on every registered strategy with real pools and processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness import HarnessError
from strategies import REGISTRY, create, get_strategy, register
from strategies.asyncio_offload import ctrl_c_cancels
from strategies.base import Strategy, WorkerDied, blas_summary, ctrl_c_deferred, split_evenly
from strategies.processes import LOCK_BANK_SIZE
from tests.conftest import alive, our_segments

# SPMD strategies map only where every worker runs the workload: tests/test_mpi.py, test_spmd.py
ALL = sorted(name for name, cls in REGISTRY.items() if not cls.spmd)


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} refused")
    return x


def write_row(args: tuple[np.ndarray, int]) -> int:
    shared, row = args
    shared[row] = row + 1.0
    return os.getpid()


def die(_: int) -> int:
    os._exit(3)  # a worker that vanishes without raising


def blas_threads_in_worker(_: int) -> int | None:
    return blas_summary()["threads"]


class OwnPerThread:
    """A task function that hands each calling thread a callable of its own (the contract's
    optional `for_this_thread`) and reports which callable ran each task, and where."""

    def for_this_thread(self) -> Callable[[int], tuple[int, int | None, int]]:
        owner = threading.get_ident()
        return lambda x: (x * x, owner, threading.get_ident())

    def __call__(self, x: int) -> tuple[int, int | None, int]:
        return x * x, None, threading.get_ident()  # the shared object, called directly


@pytest.fixture(params=ALL)
def strategy(request: pytest.FixtureRequest) -> Iterator[Strategy]:
    with create(request.param, 2) as s:
        yield s


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(
        HarnessError, match="unknown strategy 'gpu'; known: asyncio, blas, mpi, processes"
    ):
        get_strategy("gpu")


def test_map_keeps_task_order(strategy: Strategy) -> None:
    assert strategy.map(square, range(11)) == [x * x for x in range(11)]
    assert strategy.map(square, []) == []


def test_workers_call_their_own_callable_where_the_task_function_offers_one(
    strategy: Strategy,
) -> None:
    """Each task ran through the callable its own thread asked for (with a process pool, in
    that process), never through another thread's nor through the shared object."""
    results = strategy.map(OwnPerThread(), range(12))
    assert [square for square, _, _ in results] == [x * x for x in range(12)]
    assert all(owner == ran_in for _, owner, ran_in in results)


def test_worker_exception_reaches_caller_with_traceback(strategy: Strategy) -> None:
    with pytest.raises(ValueError, match="task 3 refused") as info:
        strategy.map(fail_on_three, range(6))
    chain = "".join(str(e) for e in (info.value, info.value.__cause__) if e is not None)
    frames = [f.name for f in info.traceback]
    assert "fail_on_three" in frames or "fail_on_three" in chain
    assert strategy.map(square, [4]) == [16]  # still usable after a task failed


def test_shared_array_is_written_by_workers(strategy: Strategy) -> None:
    shared = strategy.shared_array((4, 3))
    strategy.map(write_row, [(shared, r) for r in range(4)])
    assert shared[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.thread_unsafe  # BLAS limits are process-wide
def test_blas_pinned_to_one_thread_except_for_blas() -> None:
    for name in ALL:
        with create(name, 2) as s:
            expected = 2 if name == "blas" else 1
            assert set(s.map(blas_threads_in_worker, range(4))) == {expected}


@pytest.mark.parametrize("name", ALL)
def test_close_is_idempotent_and_map_after_close_raises(name: str) -> None:
    s = create(name, 1)
    s.close()
    s.close()
    with pytest.raises(HarnessError, match="is closed"):
        s.map(square, [1])


@pytest.mark.thread_unsafe  # lists the process's segments
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_processes_honour_start_method_and_leave_no_segments(method: str) -> None:
    with create("processes", 2, start_method=method) as s:
        shared = s.shared_array(8)
        s.map(write_row, [(shared, r) for r in range(8)])
        assert s.info()["start_method"] == method
        assert our_segments()
    del shared
    assert not our_segments()


def named_semaphores() -> set[str]:
    """The named semaphores (/dev/shm/sem.*) that this process has mapped and that have not been
    unlinked: matched by inode, as the mapping shows glibc's temporary name of the file."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    inodes = {int(line.split()[4]) for line in maps if "/dev/shm/sem." in line}
    named = set()
    for path in Path("/dev/shm").glob("sem.*"):
        with contextlib.suppress(FileNotFoundError):  # another test's, unlinked meanwhile
            if path.stat().st_ino in inodes:
                named.add(path.name)
    return named


@pytest.mark.thread_unsafe  # lists the process's semaphores
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_processes_close_releases_their_semaphores(method: str) -> None:
    """Before: the lock bank's and the board's semaphores lived on after close() until the
    strategy object went, and their finalizers ran wherever that happened, without Ctrl-C held:
    one landing between a semaphore's unlink and its unregister made the resource tracker warn
    of a leak at exit (CI, processes-spawn)."""
    before = named_semaphores()
    with create("processes", 2, start_method=method) as s:
        s.map(square, [1, 2])
        assert len(named_semaphores() - before) > 2  # the locks the workers share, by name
    left = named_semaphores() - before
    assert not left, left  # at once: close() itself let them go (not the watch thread, later)
    assert s.closed  # still referenced here


@pytest.mark.thread_unsafe  # lists the process's segments
def test_processes_release_segments_when_a_worker_raises() -> None:
    with pytest.raises(ValueError):
        with create("processes", 2) as s:
            s.shared_array(16)
            s.map(fail_on_three, range(5))
    assert not our_segments()


@pytest.mark.thread_unsafe  # lists the process's segments
@pytest.mark.timeout(60)
def test_crashed_worker_fails_fast_instead_of_hanging() -> None:
    start = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        with create("processes", 2) as s:
            s.shared_array(4)
            s.map(die, range(4))
    assert time.monotonic() - start < 30
    assert not our_segments()


@pytest.mark.parametrize(("n", "parts"), [(0, 3), (1, 4), (7, 2), (16, 3), (5, 5)])
def test_split_evenly_keeps_order_and_balance(n: int, parts: int) -> None:
    slices = split_evenly(list(range(n)), parts)
    assert [x for s in slices for x in s] == list(range(n))
    assert all(slices) or n == 0
    assert max(map(len, slices), default=0) - min(map(len, slices), default=0) <= 1


class StrategyLifecycle(RuleBasedStateMachine):
    """Random sequences of map / shared_array / close against a trivial model of the contract."""

    name = st.sampled_from(["serial", "threads", "asyncio", "blas"])

    def __init__(self) -> None:
        super().__init__()
        self.strategy: Strategy | None = None
        self.closed = False

    @precondition(lambda self: self.strategy is None)
    @rule(name=name, workers=st.integers(1, 4))
    def open(self, name: str, workers: int) -> None:
        self.strategy = create(name, workers)

    @precondition(lambda self: self.strategy is not None)
    @rule(tasks=st.lists(st.integers(-100, 100), max_size=12))
    def map(self, tasks: list[int]) -> None:
        assert self.strategy is not None
        if self.closed:
            with pytest.raises(HarnessError):
                self.strategy.map(square, tasks)
        else:
            assert self.strategy.map(square, tasks) == [t * t for t in tasks]

    @precondition(lambda self: self.strategy is not None)
    @rule()
    def close(self) -> None:
        assert self.strategy is not None
        self.strategy.close()
        self.closed = True

    @invariant()
    def closed_flag_matches(self) -> None:
        if self.strategy is not None:
            assert self.strategy.closed == self.closed

    def teardown(self) -> None:
        if self.strategy is not None:
            self.strategy.close()


StrategyLifecycle.TestCase.settings = settings(
    max_examples=30, stateful_step_count=12, deadline=None
)
test_strategy_lifecycle = StrategyLifecycle.TestCase


@pytest.mark.thread_unsafe  # the registry is process-wide: 4 threads would register one name
def test_register_adds_a_class_once_and_refuses_its_name_twice() -> None:
    class Extra(get_strategy("serial")):  # type: ignore[misc, valid-type]
        name = "extra-for-test"

    try:
        assert register(Extra) is Extra and REGISTRY["extra-for-test"] is Extra
        assert get_strategy("extra-for-test") is Extra
        with pytest.raises(HarnessError, match="strategy 'extra-for-test' is registered twice"):
            register(Extra)
    finally:
        REGISTRY.pop("extra-for-test", None)


# ---- faults: a dead worker, a stuck worker, Ctrl-C ---------------------------------------------


def note_pid_then_sleep(args: tuple[np.ndarray, int]) -> int:
    shared, row = args
    shared[row] = os.getpid()
    time.sleep(120)
    return row


def stuck(_: int) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends this worker
    time.sleep(3600)
    return 0


def sigint_disposition(_: int) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def kill_first_noted(shared: np.ndarray) -> int:
    """SIGKILL the first worker that noted its pid in `shared`; its pid."""
    deadline = time.monotonic() + 60
    while not shared.any() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int(shared[shared != 0][0])
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.thread_unsafe  # lists the process's segments
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["map", "submit"])
def test_killed_worker_raises_worker_died_naming_it(how: str) -> None:
    """Before: BrokenProcessPool, "A process in the process pool was terminated abruptly"."""
    with create("processes", 2) as s:
        shared = s.shared_array(2)
        with ThreadPoolExecutor(1) as killer:
            victim = killer.submit(kill_first_noted, shared)
            with pytest.raises(WorkerDied) as info:
                if how == "map":
                    s.map(note_pid_then_sleep, [(shared, 0), (shared, 1)])
                else:
                    s.submit(note_pid_then_sleep, (shared, 0)).result()
        task = "task [01] of 2" if how == "map" else r"\(.*, 0\)"
        assert re.fullmatch(
            rf"worker process {victim.result()} died \(signal 9, SIGKILL\) while "
            rf"running note_pid_then_sleep on ({task})",
            str(info.value),
        )
    assert not our_segments()


@pytest.mark.thread_unsafe  # lists the process's segments
@pytest.mark.timeout(120)
def test_close_stops_a_stuck_worker() -> None:
    """A worker that never finishes its task (and ignores SIGTERM) cannot hold close() forever.
    Before: shutdown(wait=True) waited for the task."""
    s = create("processes", 1)
    s.submit(stuck, 0)
    workers = [psutil.Process(pid) for pid in s._pids]  # type: ignore[attr-defined]
    s.shared_array(4)
    s.close()
    assert not any(alive(w) for w in workers)
    assert not our_segments()


# fork in a process whose other threads run (pytest-run-parallel) can deadlock the child
@pytest.mark.parametrize(
    "method", [pytest.param("fork", marks=pytest.mark.thread_unsafe), "forkserver", "spawn"]
)
def test_process_workers_ignore_ctrl_c(method: str) -> None:
    """The parent owns Ctrl-C. Before: a forkserver or spawn worker raised KeyboardInterrupt
    (and could die inside the pool's queue lock); a fork worker inherited the parent's handler."""
    with create("processes", 2, start_method=method) as s:
        assert s.map(sigint_disposition, range(4)) == [True] * 4


@pytest.mark.thread_unsafe  # signals are delivered to the main thread only
@pytest.mark.usefixtures("usual_ctrl_c")
def test_asyncio_ctrl_c_before_its_task_exists_cancels_the_task_unstarted() -> None:
    """Before: a Ctrl-C between creating the map's task and running it left the task pending
    for good ("Task was destroyed but it is pending!", "coroutine ... was never awaited")."""
    loop = asyncio.new_event_loop()
    ran: list[int] = []

    async def body() -> None:
        ran.append(1)

    try:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_cancels() as cancels:
                signal.raise_signal(signal.SIGINT)  # lands before the task exists
                task = cancels(loop.create_task(body()))
                loop.run_until_complete(task)
        assert task.cancelled() and ran == []
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        loop.close()


@pytest.mark.thread_unsafe  # signals are delivered to the main thread only
@pytest.mark.usefixtures("usual_ctrl_c")
def test_ctrl_c_deferred_raises_at_the_end_of_the_block() -> None:
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred() as interrupted:
            assert not interrupted()
            signal.raise_signal(signal.SIGINT)
            assert interrupted()
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.thread_unsafe  # signals are delivered to the main thread only
@pytest.mark.usefixtures("usual_ctrl_c")
def test_ctrl_c_during_asyncio_map_cancels_it_and_the_loop_closes() -> None:
    """Before: KeyboardInterrupt raised inside the loop could leave it marked running, and
    close() said "Cannot close a running event loop"."""
    with create("asyncio", 2) as s:
        timer = threading.Timer(0.2, signal.raise_signal, (signal.SIGINT,))
        timer.start()
        with pytest.raises(KeyboardInterrupt):  # once the running slices are done
            s.map(time.sleep, [0.6, 0.6])
        timer.join()
        assert s.map(square, [3]) == [9]  # the loop was not left marked running
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- the thread-safety contract: several threads calling one strategy -------------------------

THREADS = 4


def in_threads(call: Callable[[int], object], rounds: int = 1) -> list[object]:
    """[call(i) for i in range(THREADS * rounds)], made by THREADS threads released together."""
    barrier = threading.Barrier(THREADS)

    def worker(first: int) -> list[tuple[int, object]]:
        barrier.wait()
        return [(i, call(i)) for i in range(first, THREADS * rounds, THREADS)]

    with ThreadPoolExecutor(THREADS) as pool:
        return [
            x for _, x in sorted(pair for part in pool.map(worker, range(THREADS)) for pair in part)
        ]


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """With the GIL, switch threads as often as possible, so a race shows up as on 3.13t (where
    threads overlap anyway: nothing to change, and nothing process-wide for parallel runs)."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("name", ALL)
def test_map_from_several_threads_at_once(name: str, frequent_switches: None) -> None:
    """Before: asyncio raised "This event loop is already running"."""
    with create(name, 2) as s:
        results = in_threads(lambda i: s.map(square, range(i, i + 9)), rounds=5)
    assert results == [[x * x for x in range(i, i + 9)] for i in range(THREADS * 5)]


def test_lock_hands_out_each_index_once_to_concurrent_threads(frequent_switches: None) -> None:
    """Before: an unguarded counter gave 16-74 duplicate indices to 4 threads on 3.13t."""

    def take(_: int) -> object:
        try:
            return s.lock().index
        except HarnessError as exc:
            return str(exc)

    with create("processes", 1) as s:
        got = in_threads(take, rounds=LOCK_BANK_SIZE // THREADS + 4)
    indices = [x for x in got if isinstance(x, int)]
    assert sorted(indices) == list(range(LOCK_BANK_SIZE))
    assert all("has only 64 locks" in x for x in got if not isinstance(x, int))


def test_shared_arrays_from_several_threads_get_their_own_segments(frequent_switches: None) -> None:
    with create("processes", 1) as s:
        arrays = in_threads(lambda i: s.shared_array(3), rounds=5)
        assert len({a.segment for a in arrays}) == len(arrays)  # type: ignore[attr-defined]

"""A gang of threads for `map`: woken through a lock of their own, they claim the map's tasks one
at a time beside the caller.

The leanest hand-off that plain `threading` offers: the caller releases thread i's `go` lock (the
thread sleeps in the kernel on it) and later acquires its `done` lock. A ThreadPoolExecutor does
more per slice (a work item, a Future with its Condition, `wait`'s waiter on every future).
Measured on cp313t (2-core VM, quiet), tiny model, batch 1024, 2 workers, 9 interleaved rounds
of 1500-step runs: 3 % less time with the gang than with the executor (median of the per-round
ratios; faster in 7 of 9).

Tasks are claimed, not dealt out in fixed slices: a thread that wakes late (50-150 µs on a small
VM, as much as a tiny model's microbatch) or runs slow takes fewer tasks, and the others take
more, instead of everybody waiting at the end for the slowest slice. Results land in task order
whoever computed them, so the answer does not depend on who claimed what.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic

from strategies.base import R, T, gil_enabled, own_callable, usable_cpus

# How long a thread polls a lock before it sleeps on it, where the GIL is off. A wake-up from the
# kernel costs 50-150 µs on a small VM; the serial part between two maps of a tiny model is about
# 30 µs, so a gang thread polling that long is already running when the next map starts, and the
# caller, polling for the last task, sees it end at once (OpenMP's "active" wait does the same).
# With the GIL on, a polling thread would hold the GIL the other thread needs, and with more
# threads than CPUs it would hold a CPU a working thread needs (at 4 workers on the 2-core VM,
# cp313t's threads fell from 1.16x to 0.66x of cp313 serial): no polling there.
SPIN_NS = 200_000


def polling_ns(threads: int) -> int:
    """How long `threads` threads sharing maps poll before sleeping: SPIN_NS where the GIL is off
    and each has a CPU of its own, else 0."""
    return SPIN_NS if not gil_enabled() and threads <= usable_cpus() else 0


def acquire_soon(lock: threading.Lock, spin_ns: int) -> None:
    """Acquire `lock`, polling it for up to `spin_ns` before sleeping in the kernel."""
    try_acquire, clock = lock.acquire, time.perf_counter_ns
    deadline = clock() + spin_ns
    while not try_acquire(False):
        if clock() > deadline:
            lock.acquire()
            return


class SharedTasks(Generic[T, R]):
    """One map's tasks, claimed in task order by every thread that calls `work`."""

    def __init__(self, fn: Callable[[T], R], tasks: Sequence[T]) -> None:
        self._fn, self._tasks = fn, tasks
        # popped from the end, so claims go 0, 1, 2, ...; list.pop is atomic on every build
        self._unclaimed = list(range(len(tasks) - 1, -1, -1))
        self._results: list[Any] = [None] * len(tasks)
        self._errors: dict[int, BaseException] = {}

    def work(self) -> None:
        """Claim and run tasks until none is left; after a task's error nobody claims another."""
        claim, tasks, results = self._unclaimed.pop, self._tasks, self._results
        fn = own_callable(self._fn)
        while True:
            try:
                i = claim()
            except IndexError:
                return
            try:
                results[i] = fn(tasks[i])
            except BaseException as exc:  # noqa: B036  (re-raised by `results`, as a pool would)
                self._errors[i] = exc
                self._unclaimed.clear()
                return

    def results(self) -> list[R]:
        """The results in task order, or the error of the first task (in task order) that failed:
        claims go in task order and every claimed task ends, so that is the first failing task."""
        if self._errors:
            raise self._errors[min(self._errors)]
        return self._results


class Gang:
    """`size` daemon threads, each joining the caller's `SharedTasks` per `start`/`finish` pair."""

    def __init__(self, size: int, name: str) -> None:
        self._go = [threading.Lock() for _ in range(size)]
        self._done = [threading.Lock() for _ in range(size)]
        for lock in (*self._go, *self._done):
            lock.acquire()  # held: a thread waits on its `go`, the caller on its `done`
        self._job: SharedTasks[Any, Any] | None = None
        self._helpers = 0  # threads the last start woke
        self._spin_ns = polling_ns(size + 1)  # the caller is one more thread
        self._threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"{name}_{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self, i: int) -> None:
        go, done, spin_ns = self._go[i], self._done[i], self._spin_ns
        while True:
            acquire_soon(go, spin_ns)
            job = self._job
            if job is None:
                return  # closed
            job.work()
            done.release()

    def start(self, job: SharedTasks[Any, Any], helpers: int) -> None:
        """Wake `helpers` threads (at most `size`) to work on `job`, which the caller works on too."""
        self._job, self._helpers = job, helpers
        for go in self._go[:helpers]:
            go.release()

    def finish(self) -> None:
        """Wait until every woken thread has left the job: no task of it still runs."""
        for done in self._done[: self._helpers]:
            acquire_soon(done, self._spin_ns)
        self._helpers = 0

    def close(self) -> None:
        """End the threads (they are idle: `finish` has returned)."""
        self._job = None
        for go in self._go:
            go.release()
        for thread in self._threads:
            thread.join()

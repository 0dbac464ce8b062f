"""Threads: a gang of threads for `map`, a ThreadPoolExecutor for `submit`. GIL-bound on default
builds, parallel on free-threaded ones.

The same code runs on every interpreter configuration; whether threads overlap in Python code is
the interpreter's business, and each result records which configuration it ran on.

The calling thread works too ("caller runs"): it claims tasks beside `workers - 1` gang threads
(strategies.gang), so `workers` threads compute and the caller never sits idle waiting. Tasks are
claimed one at a time rather than dealt out in fixed slices, so a thread that wakes late or runs a
slow task takes fewer; where the GIL is off, the gang's threads and the caller poll their locks
briefly before sleeping, as a wake-up from the kernel (50-150 µs on small VMs) costs as much as a
tiny model's microbatch. A map called while another thread's map holds the gang hands fixed slices
to the executor instead, so maps from several threads still run side by side. `submit`
(streaming, for pipelines) hands every task to the executor, as the caller is then the pipeline's
consumer: it holds `workers` threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from strategies.base import (
    R,
    Strategy,
    T,
    concatenated,
    ctrl_c_deferred,
    register,
    run_slice,
    split_evenly,
)
from strategies.gang import Gang, SharedTasks


@register
class Threads(Strategy):
    name = "threads"
    description = "threads + the calling thread; parallel only where the GIL is off"

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        # The executor's threads start only when submit (or a concurrent map) needs them.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-harness")
        self._gang = Gang(workers - 1, "ft-harness-gang")
        self._gang_free = threading.Lock()  # held by the map using the gang

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        if not tasks:
            return []
        if self.workers == 1 or len(tasks) == 1:
            return run_slice(fn, tasks)  # no pool involved: Ctrl-C interrupts the task at once
        if not self._gang_free.acquire(blocking=False):
            return self._map_by_executor(fn, tasks)  # another thread's map has the gang
        job = SharedTasks(fn, tasks)
        try:
            # Ctrl-C waits for the end of the map: threads cannot be stopped, and the map must
            # not return while they still run our tasks; the caller's share is no longer.
            with ctrl_c_deferred():
                self._gang.start(job, helpers=len(tasks) - 1)
                try:
                    job.work()
                finally:
                    self._gang.finish()
        finally:
            self._gang_free.release()
        return job.results()

    def _map_by_executor(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        first, *rest = split_evenly(tasks, self.workers)
        with ctrl_c_deferred():  # as in _map
            futures = [self._pool.submit(run_slice, fn, part) for part in rest]
            try:
                mine = run_slice(fn, first)
            finally:
                wait(futures)
        return concatenated([mine, *(f.result() for f in futures)])

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "caller_runs": True}

    def _close(self) -> None:
        with self._gang_free:  # a map still running finishes first
            self._gang.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

"""Threads: a ThreadPoolExecutor. GIL-bound on default builds, parallel on free-threaded ones.

The same code runs on every interpreter configuration; whether threads overlap in Python code is
the interpreter's business, and each result records which configuration it ran on.

The calling thread works too ("caller runs"): it takes the first slice of tasks itself while
`workers - 1` pool threads take the others, so `workers` threads compute and the caller never sits
idle waiting. On small VMs a thread wake-up costs 50-150 µs, as much as a tiny model's microbatch,
and handing every slice to the pool paid that twice per call. `submit` (streaming, for pipelines)
hands every task to the pool, as the caller is then the pipeline's consumer: the pool holds
`workers` threads, of which `map` uses `workers - 1`.
"""

from __future__ import annotations

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


@register
class Threads(Strategy):
    name = "threads"
    description = "ThreadPoolExecutor + the calling thread; parallel only where the GIL is off"

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        # A pool thread starts only when a task finds none idle, so map still starts workers - 1.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-harness")

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        if not tasks:
            return []
        first, *rest = split_evenly(tasks, self.workers)
        if not rest:
            return run_slice(fn, first)  # no pool involved: Ctrl-C interrupts the task at once
        # Ctrl-C waits for the end of the map: the pool's threads cannot be stopped, and the map
        # must not return while they still run our tasks; the caller's slice is no longer.
        with ctrl_c_deferred():
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
        self._pool.shutdown(wait=True, cancel_futures=True)

"""Threads: a ThreadPoolExecutor. GIL-bound on default builds, parallel on free-threaded ones.

The same code runs on every interpreter configuration; whether threads overlap in Python code is
the interpreter's business, and each result records which configuration it ran on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

from strategies.base import Strategy, concatenated, register, run_slice, split_evenly

T = TypeVar("T")
R = TypeVar("R")


@register
class Threads(Strategy):
    name = "threads"
    description = "ThreadPoolExecutor; true parallelism only where the GIL is off"

    def __init__(self, workers: int = 1, **kwargs: object) -> None:
        super().__init__(workers, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-harness")

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        slices = split_evenly(tasks, self.workers)
        return concatenated(self._pool.map(run_slice, [fn] * len(slices), slices))

    def _close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

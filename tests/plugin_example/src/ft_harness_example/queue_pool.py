"""Strategy `queue`: threads that take tasks from a shared queue, one at a time.

The built-in `threads` strategy cuts the task list into one slice per thread up front; here every
thread (the caller included) takes the next `chunk` tasks from a queue whenever it is free, so a
thread that drew short tasks takes more of them (dynamic scheduling). Each result goes to its
task's slot, so `map` returns them in task order; each task computes exactly what it computes
serially, and data-parallel adds the gradient rows in row order whatever ran them, so results
are bitwise equal to serial.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from harness.options import Option
from strategies.base import R, Strategy, T, register


@register
class QueuePool(Strategy):
    name = "queue"
    description = "threads taking tasks from a shared queue, --chunk at a time (example plug-in)"
    options = (
        Option(
            name="chunk",
            kind=int,
            default=1,
            minimum=1,
            help="tasks a thread takes from the queue at a time (default 1)",
        ),
    )
    bench_variants = {"chunk4": {"chunk": 4}}  # bench cells like data-parallel/queue/w2/chunk4

    def __init__(self, workers: int = 1, *, chunk: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self.chunk = chunk
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-example-queue")

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        starts: queue.SimpleQueue[int] = queue.SimpleQueue()
        for start in range(0, len(tasks), self.chunk):
            starts.put(start)
        results: list[Any] = [None] * len(tasks)
        failed = threading.Event()  # a task failed: the others stop taking work

        def drain() -> None:
            try:
                while not failed.is_set():
                    try:
                        start = starts.get_nowait()
                    except queue.Empty:
                        return
                    for i in range(start, min(start + self.chunk, len(tasks))):
                        results[i] = fn(tasks[i])
            except BaseException:
                failed.set()
                raise

        helpers = [self._pool.submit(drain) for _ in range(min(self.workers, len(tasks)) - 1)]
        try:
            drain()  # the caller takes tasks too
        finally:
            wait(helpers)  # never return while a helper still runs one of our tasks
        for helper in helpers:
            helper.result()  # a helper's task error, re-raised here
        return results

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "chunk": self.chunk}

    def _close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

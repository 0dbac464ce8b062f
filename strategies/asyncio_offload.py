"""asyncio offload: an event loop that hands each task to a thread pool (run_in_executor).

This is how an asyncio service would run CPU work without blocking its loop; it costs the
loop's scheduling on top of the threads strategy. A streamed task (`submit`) goes straight to the
same executor, which is what run_in_executor does underneath: nothing awaits it, so no loop turn.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from strategies.base import R, T, Strategy, concatenated, register, run_slice, split_evenly


@register
class AsyncioOffload(Strategy):
    name = "asyncio"
    description = "event loop offloading tasks with run_in_executor to a thread pool"

    def __init__(self, workers: int = 1, **kwargs: object) -> None:
        super().__init__(workers, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-harness-aio")
        self._loop = asyncio.new_event_loop()

    async def _gather(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        futures = [self._loop.run_in_executor(self._pool, run_slice, fn, part)
                   for part in split_evenly(tasks, self.workers)]
        try:
            # return_exceptions: a failed slice must not end the map while others still run
            results = await asyncio.gather(*futures, return_exceptions=True)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return concatenated(results)

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return self._loop.run_until_complete(self._gather(fn, tasks))

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def _close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._loop.close()

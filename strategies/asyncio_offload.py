"""asyncio offload: an event loop that hands each task to a thread pool (run_in_executor).

This is how an asyncio service would run CPU work without blocking its loop; it costs the
loop's scheduling on top of the threads strategy. A streamed task (`submit`) goes straight to the
same executor, which is what run_in_executor does underneath: nothing awaits it, so no loop turn.

An event loop runs in one thread at a time, so each thread that calls `map` gets a loop of its
own (all of them hand work to the one pool): `map` from several threads at once is safe, as the
Strategy contract promises. Ctrl-C while a loop runs cancels its map, and KeyboardInterrupt is
raised once the loop has stopped: raised inside the loop's own bookkeeping it could leave the
loop marked running ("Cannot close a running event loop" at close).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from strategies.base import R, Strategy, T, concatenated, register, run_slice, split_evenly


@register
class AsyncioOffload(Strategy):
    name = "asyncio"
    description = "event loop offloading tasks with run_in_executor to a thread pool"

    def __init__(self, workers: int = 1, **kwargs: object) -> None:
        super().__init__(workers, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-harness-aio")
        self._local = threading.local()  # this thread's loop
        self._loops: list[asyncio.AbstractEventLoop] = []  # every thread's, for close()
        self._loops_guard = threading.Lock()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
            with self._loops_guard:
                self._loops.append(loop)
        return loop

    async def _gather(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(self._pool, run_slice, fn, part)
            for part in split_evenly(tasks, self.workers)
        ]
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
        loop = self._loop()
        # Ctrl-C routed before the task exists: one landing between creating it and running it
        # left it pending for good ("Task was destroyed but it is pending!" at exit, cp313 CI)
        with ctrl_c_cancels() as cancels:
            task = cancels(loop.create_task(self._gather(fn, tasks)))
            return loop.run_until_complete(task)

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def _close(self) -> None:
        # The pool first: a task that finishes posts its result to its loop, which must be open.
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._loops_guard:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()


@contextlib.contextmanager
def ctrl_c_cancels() -> Iterator[Callable[[asyncio.Task[Any]], asyncio.Task[Any]]]:
    """In the main thread, while the loop runs the task handed to `as cancels`: Ctrl-C cancels
    that task (the loop then stops at once, as the task was all it ran; a Ctrl-C before the task
    is handed over cancels it then, before it starts) and is handed, on the way out, to the SIGINT
    handler that was in place (Python's default raises KeyboardInterrupt, in place of the
    CancelledError). SIGTERM does the same where it is routed to the SIGINT handler (the CLI
    does so). Elsewhere signals are not ours to handle: a plain run."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda task: task
        return
    interrupted: list[int] = []
    running: list[asyncio.Task[Any]] = []

    def cancel_now(task: asyncio.Task[Any]) -> None:
        task.cancel()  # a no-op once the task is done
        task.get_loop().call_soon_threadsafe(lambda: None)  # wake a loop waiting in select()

    def cancel(signum: int, frame: object) -> None:
        interrupted.append(signum)
        for task in running:
            cancel_now(task)

    def hand_over(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        running.append(task)
        if interrupted:
            cancel_now(task)
        return task

    signal.signal(signal.SIGINT, cancel)
    try:
        yield hand_over
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupted:
            previous(signal.SIGINT, None)

"""Keeping a ProcessPoolExecutor from hanging, or failing obscurely, when something goes wrong.

Workers are born with the stop signals blocked (`signals_blocked`), waits for them give way to
Ctrl-C (`wait_unless`), the pool is stopped within a bounded time (`stop_pool`), a pool thread
stuck on a dead worker's half-sent result is freed (`feed_stuck_reader`), and a dead worker's
job is put in words (`exit_cause`, `slice_label`, `task_label`) for `WorkerDied`. `Relay` is
the Future `submit` returns, with that error in place of BrokenProcessPool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for_futures
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
GRACE_S = 2.0  # stop_pool: how long workers get to exit after each step (ask, SIGTERM, SIGKILL)
POLL_S = 0.1  # how often a wait for workers looks for a Ctrl-C it holds back


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP in this thread: a worker started meanwhile is born with
    them blocked (fork, exec and the fork server keep the mask) until its initializer has made
    it ignore Ctrl-C. Without this, Ctrl-C during a worker's start-up printed its traceback."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Relay(Future):  # type: ignore[type-arg]
    """What `submit` returns: the pool future's outcome, with a broken pool's error replaced by
    the one naming the dead worker; cancelling it cancels the pool's job."""

    def __init__(
        self, source: Future[Any], explain: Callable[[BaseException], BaseException]
    ) -> None:
        super().__init__()
        self._source, self._explain = source, explain
        source.add_done_callback(self._copy)

    def cancel(self) -> bool:
        return self._source.cancel()  # our own state follows in _copy

    def _copy(self, source: Future[Any]) -> None:
        if source.cancelled():
            super().cancel()
            self.set_running_or_notify_cancel()
        elif (exc := source.exception()) is not None:
            self.set_exception(self._explain(exc))
        else:
            self.set_result(source.result())


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down without ever waiting forever: ask the workers to exit, then SIGTERM the
    ones left after GRACE_S, then SIGKILL. A worker stuck on a lock or in a long task cannot hold
    the run (or the interpreter's exit, which joins the pool's thread) hostage."""
    processes = list((pool._processes or {}).values())  # type: ignore[attr-defined]
    manager = pool._executor_manager_thread  # type: ignore[attr-defined]
    pool.shutdown(wait=False, cancel_futures=True)  # forgets both: read them first
    for stop in (None, BaseProcess.terminate, BaseProcess.kill):
        alive = [p for p in processes if p.exitcode is None]
        for process in alive if stop else []:
            stop(process)
        if not _wait_for_exit(alive, GRACE_S):
            break
    if manager is not None:
        manager.join(GRACE_S)  # it exits once its workers have: joining it then cannot block


def wait_unless(futures: list[Future[Any]], interrupted: Callable[[], bool]) -> None:
    """Until every future is done, the pool broke (a worker died: every future fails), or
    `interrupted()` (looked at every POLL_S). A task's own error does not end the wait: map
    must not return while another task still writes the caller's buffers."""
    pending = set(futures)
    while pending and not interrupted():
        done, pending = wait_for_futures(pending, POLL_S, FIRST_EXCEPTION)
        if any(isinstance(f.exception(), BrokenProcessPool) for f in done if not f.cancelled()):
            return


def feed_stuck_reader(pool: ProcessPoolExecutor, manager: threading.Thread | None) -> None:
    """A worker killed while writing its result leaves half a message in the result pipe, and the
    pool's thread waits for the rest in recv() forever: it never looks at the dead worker, the
    futures never end, and the interpreter's exit (which joins that thread) hangs too. We hold
    the pipe's write end as well (the pool made it here), so we complete the message with zeros,
    without blocking; the thread then fails to unpickle it and breaks the pool as it should."""
    writer = pool._result_queue._writer.fileno()  # type: ignore[attr-defined]
    os.set_blocking(writer, False)
    deadline = time.monotonic() + 10 * GRACE_S
    while (
        manager is not None
        and manager.is_alive()
        and not pool._broken  # type: ignore
        and time.monotonic() < deadline
    ):
        try:
            os.write(writer, bytes(65536))
        except BlockingIOError:
            time.sleep(POLL_S)  # full: the thread is reading, or has stopped reading for good


def _wait_for_exit(processes: list[BaseProcess], timeout: float) -> bool:
    """Wait up to `timeout` for the processes to exit; whether some are still alive."""
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        wait([p.sentinel for p in alive], deadline - time.monotonic())
        alive = [p for p in alive if p.exitcode is None]
    return bool(alive)


def exit_cause(exitcode: int) -> str:
    """How a process ended, from multiprocessing's exitcode (-N: killed by signal N)."""
    if exitcode < 0:
        try:
            return f"signal {-exitcode}, {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


def task_name(fn: Callable[..., Any]) -> str:
    """A readable name for the function a job runs: partials unwrapped, objects by class."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def slice_label(fn: Callable[..., Any], start: int, count: int, total: int) -> str:
    """`fn on task 3 of 8` or `fn on tasks 2-3 of 8` (a slice of one map call)."""
    span = f"task {start}" if count == 1 else f"tasks {start}-{start + count - 1}"
    return f"{task_name(fn)} on {span} of {total}"


def task_label(fn: Callable[..., Any], task: object) -> str:
    """`fn on TASK`: a dataclass task by its scalar fields, another by a short repr."""
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        fields = [
            f"{f.name}={getattr(task, f.name)!r}"
            for f in dataclasses.fields(task)
            if isinstance(getattr(task, f.name), (int, float, str))
        ]
        return f"{task_name(fn)} on {type(task).__name__}({', '.join(fields)})"
    text = repr(task)
    return f"{task_name(fn)} on {text if len(text) <= 40 else 'a ' + type(task).__name__}"

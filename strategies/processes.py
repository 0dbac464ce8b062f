"""Processes: a ProcessPoolExecutor whose workers share parameters and inputs through shared memory.

Arrays from `shared_array` live in POSIX shared-memory segments and pickle as the segment's *name*,
so a task carries a few bytes however large the model; a worker attaches each segment once and
keeps it. Locks come from a bank of multiprocessing locks handed to workers when they start
(the only way such locks may reach them), and pickle as an index into that bank.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_all
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from harness import HarnessError
from strategies.base import START_METHOD, R, T, Strategy, concatenated, register, run_slice, split_evenly

SEGMENT_PREFIX = "fth_"  # every segment we create starts with this, so tests can look for leaks
LOCK_BANK_SIZE = 64
_ATTACHED: dict[str, tuple[SharedMemory, np.ndarray]] = {}  # per process: segment name -> array
_LOCK_BANKS: dict[str, list[Any]] = {}  # per process: strategy token -> its locks
_NAMES = itertools.count()


class SharedNDArray(np.ndarray):
    """An ndarray over a shared-memory segment that pickles by segment name, not by value."""

    segment: str | None = None

    def __array_finalize__(self, obj: object) -> None:
        self.segment = None  # views and copies pickle by value: only the whole array is named

    def __reduce__(self) -> Any:
        if self.segment is None:
            return np.asarray(self).__reduce__()
        return attach, (self.segment, self.shape, self.dtype.str)


def attach(name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """In a worker: the array over segment `name`, attached on first use and then reused."""
    if name not in _ATTACHED:
        shm = _open_untracked(name)
        _ATTACHED[name] = (shm, np.ndarray(shape, dtype=dtype, buffer=shm.buf))
    return _ATTACHED[name][1]


def _open_untracked(name: str) -> SharedMemory:
    """Attach without unlinking at exit: the creator alone unlinks.

    Before 3.13 there is no `track=False`, and a worker's own resource tracker would unlink the
    segment (with warnings) when the worker exits, so registration is skipped for the attach.
    """
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None  # workers are single-threaded
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


class ProcessLock:
    """A lock from the strategy's bank; pickles as (token, index)."""

    def __init__(self, token: str, index: int) -> None:
        self.token, self.index = token, index

    def _lock(self) -> Any:
        return _LOCK_BANKS[self.token][self.index]

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock().acquire(blocking, None if timeout < 0 else timeout)

    def release(self) -> None:
        self._lock().release()

    def __enter__(self) -> "ProcessLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _exit_with_parent() -> None:
    """A worker must not outlive the run that started it, even one killed with SIGKILL.

    `parent_process()` is the process that asked for this worker (also under forkserver, where
    the OS parent is the fork server); its sentinel becomes ready when that process dies.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        threading.Thread(target=_exit_when_ready, args=(parent.sentinel,), daemon=True).start()


def _exit_when_ready(sentinel: int) -> None:
    wait([sentinel])
    os._exit(1)


def _init_worker(token: str, locks: list[Any]) -> None:
    _exit_with_parent()
    _LOCK_BANKS[token] = locks
    threadpool_limits(limits=1, user_api="blas")  # same pinning as the parent


def _noop(_: object) -> int:
    return os.getpid()


@register
class Processes(Strategy):
    name = "processes"
    description = "ProcessPoolExecutor; parameters and inputs in shared memory"
    uses_processes = True
    options = (START_METHOD,)

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        if self.start_method not in multiprocessing.get_all_start_methods():
            raise HarnessError(f"start_method={self.start_method!r} is not available here; "
                               f"available: {', '.join(multiprocessing.get_all_start_methods())}")
        context = multiprocessing.get_context(self.start_method)
        self._token = uuid.uuid4().hex
        self._locks = [context.Lock() for _ in range(LOCK_BANK_SIZE)]
        _LOCK_BANKS[self._token] = self._locks
        self._next_lock = 0
        self._segments: list[SharedMemory] = []
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                         initializer=_init_worker, initargs=(self._token, self._locks))
        self._pids = set(self._pool.map(_noop, range(workers)))  # start workers outside timed code

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        futures = [self._pool.submit(run_slice, fn, part) for part in split_evenly(tasks, self.workers)]
        wait_all(futures)  # never return (or raise) while a worker still runs one of our slices
        return concatenated(f.result() for f in futures)

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def shared_array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{next(_NAMES)}_{self._token[:8]}"
        shm = SharedMemory(name=name, create=True, size=nbytes)
        self._segments.append(shm)
        array = np.ndarray(shape, dtype=dtype, buffer=shm.buf).view(SharedNDArray)
        array[...] = 0
        array.segment = name
        return array

    def lock(self) -> ProcessLock:
        if self._next_lock >= LOCK_BANK_SIZE:
            raise HarnessError(f"processes strategy has only {LOCK_BANK_SIZE} locks; "
                               "share locks between stripes (stripe i -> lock i % n)")
        self._next_lock += 1
        return ProcessLock(self._token, self._next_lock - 1)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "start_method": self.start_method}

    def _close(self) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _LOCK_BANKS.pop(self._token, None)
            for shm in self._segments:
                _release(shm)
            self._segments.clear()


def _release(shm: SharedMemory) -> None:
    """Unlink a segment we created; arrays may still view it, so closing can fail harmlessly."""
    try:
        shm.unlink()
    except FileNotFoundError:
        pass
    try:
        shm.close()
    except BufferError:
        pass  # a live ndarray still maps it; the mapping goes when that array does

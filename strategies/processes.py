"""Processes: a ProcessPoolExecutor whose workers share parameters and inputs through shared memory.

Arrays from `shared_array` live in POSIX shared-memory segments and pickle as the segment's *name*,
so a task carries a few bytes however large the model; a worker attaches each segment once and
keeps it. Locks come from a bank of multiprocessing locks handed to workers when they start
(the only way such locks may reach them), and pickle as an index into that bank.

Faults. The parent owns Ctrl-C: workers are born with SIGINT blocked and then ignore it, so a
terminal's SIGINT (sent to the whole process group) reaches only the parent, which stops the
workers itself. A worker interrupted inside the pool's queue lock used to hang its survivors and
the shutdown with them. `close()` never waits forever: the workers get a grace period to exit,
then SIGTERM, then SIGKILL. Each worker notes on a shared board which job it is running, so a
worker that dies (SIGKILL, the OOM killer, os._exit) is reported in one line naming its pid, its
exit signal or status and its task (`WorkerDied`) instead of a BrokenProcessPool traceback.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from harness import HarnessError
from strategies.base import (
    START_METHOD,
    R,
    Strategy,
    T,
    WorkerDied,
    concatenated,
    ctrl_c_deferred,
    process_context,
    register,
    run_slice,
    split_evenly,
)
from strategies.pool_faults import (
    GRACE_S,
    POLL_S,
    STOP_SIGNALS,
    Relay,
    exit_cause,
    feed_stuck_reader,
    signals_blocked,
    slice_label,
    stop_pool,
    task_label,
    wait_unless,
)

SEGMENT_PREFIX = "fth_"  # every segment we create starts with this, so tests can look for leaks
LOCK_BANK_SIZE = 64
_ATTACHED: dict[str, tuple[SharedMemory, np.ndarray]] = {}  # per process: segment name -> array
_LOCK_BANKS: dict[str, list[Any]] = {}  # per process: strategy token -> its locks
_NAMES = itertools.count()
_NAMES_GUARD = threading.Lock()  # itertools.count is not atomic on free-threaded builds
_BOARD: tuple[Any, int] | None = None  # in a worker: its pool's board and its row on it
Label = Callable[[], str]  # what a job runs, in words; made only when its worker has died


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

    def __enter__(self) -> ProcessLock:
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


def _init_worker(token: str, locks: list[Any], board: Any) -> None:
    # The parent owns Ctrl-C and stops the workers itself. fork copies the parent's handlers:
    # SIGTERM (the pool's terminate) must end a worker, not raise KeyboardInterrupt in it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _exit_with_parent()
    _LOCK_BANKS[token] = locks
    _take_board_row(board)
    threadpool_limits(limits=1, user_api="blas")  # same pinning as the parent


def _take_board_row(board: Any) -> None:
    """A free row of the board (pid, job) for this worker; rows are never given back, as the
    pool never replaces a worker."""
    global _BOARD
    with board.get_lock():
        raw = board.get_obj()
        free = next((row for row in range(0, len(raw), 2) if raw[row] == 0), None)
        if free is not None:
            raw[free] = os.getpid()
            _BOARD = (raw, free)


def _run_job(job: int, fn: Callable[..., R], *args: Any) -> R:
    """Executed by a worker: fn(*args), with `job` on the board. It stays there until the next
    job: a worker killed while sending the result has not finished it either (the parent knows
    which jobs have finished, and reports a death after the last one as between tasks)."""
    if _BOARD is not None:
        raw, row = _BOARD
        raw[row + 1] = job
    return fn(*args)


def _noop(_: object) -> int:
    return os.getpid()


# A semaphore finalized by a garbage collection that runs inside the resource tracker's own lock
# (the pool's queues, collected while we unregister a segment) makes multiprocessing warn
# "ResourceTracker called reentrantly ... might leak" on stderr (2 of 40 group Ctrl-Cs on 3.13t,
# once per queue semaphore). Nothing leaks: SemLock._cleanup unlinks the semaphore before it
# unregisters it, and the unregister message is still sent after the warning.
warnings.filterwarnings(
    "ignore",
    message="ResourceTracker called reentrantly",
    category=UserWarning,
    module="multiprocessing.resource_tracker",
)


@register
class Processes(Strategy):
    name = "processes"
    description = "ProcessPoolExecutor; parameters and inputs in shared memory"
    uses_processes = True
    options = (START_METHOD,)

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        context = process_context(self.start_method)
        self._token = uuid.uuid4().hex
        self._guard = threading.Lock()  # lock(), job ids and the death note, from any thread
        self._next_lock = 0
        self._jobs: dict[int, Label] = {}  # job id -> what it runs, while it is in flight
        self._job_ids = itertools.count(1)
        self._death: str | None = None  # the first dead worker, in WorkerDied's words
        self._segments: list[SharedMemory] = []
        self._pool: ProcessPoolExecutor | None = None
        self._watcher: threading.Thread | None = None
        try:  # start the workers outside timed code; a failed or interrupted start leaves nothing
            # Ctrl-C held for the whole start: another thread (BLAS's) may take the signal while
            # this one blocks it, and a KeyboardInterrupt inside the pool's submit could leave a
            # worker started but untracked, which then outlives us and fails on our unlinked locks
            with ctrl_c_deferred() as interrupted:
                started = self._start_pool(context)
                wait_unless(started, interrupted)
            self._pids = {f.result() for f in started}
        except BaseException as exc:
            self.close()
            raise self._worker_died(exc) from exc
        workers = list(self._pool._processes.values())  # type: ignore[attr-defined]
        self._watcher = threading.Thread(
            target=self._watch, args=(workers,), name="ft-harness-watch", daemon=True
        )
        self._watcher.start()

    def _start_pool(self, context: Any) -> list[Future[int]]:
        """The locks, the board and the pool, with every worker asked to start."""
        with signals_blocked():  # the resource tracker, fork server and workers all start here
            resource_tracker.ensure_running()
            self._locks = [context.Lock() for _ in range(LOCK_BANK_SIZE)]
            _LOCK_BANKS[self._token] = self._locks
            self._board = context.Array("q", 2 * self.workers)  # per worker: pid, running job id
            self._rows = self._board.get_obj()  # read without its lock, also once it has gone
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self._token, self._locks, self._board),
            )
            return [self._start(lambda: "its start-up", _noop, i) for i in range(self.workers)]

    def _watch(self, workers: list[BaseProcess]) -> None:
        """Once a worker has ended: if the strategy is still open and the pool has not noticed
        (it breaks within milliseconds when it can), unstick the pool's thread (see
        `feed_stuck_reader`); its futures then fail and name the dead worker."""
        pool, manager = self._pool, self._pool._executor_manager_thread  # type: ignore[attr-defined]
        wait([w.sentinel for w in workers])
        deadline = time.monotonic() + GRACE_S
        while not (self._closed or pool._broken) and time.monotonic() < deadline:  # type: ignore
            time.sleep(POLL_S)
        if not (self._closed or pool._broken):  # type: ignore[attr-defined]
            feed_stuck_reader(pool, manager)

    def _start(self, what: Label, fn: Callable[..., R], *args: Any) -> Future[R]:
        """Submit fn(*args) as a numbered job that the board can name if its worker dies."""
        with self._guard:
            job = next(self._job_ids)
            self._jobs[job] = what
        # submit starts workers on demand (all of them with fork): born with the signals blocked
        starts = len(self._pool._processes or ()) < self.workers  # type: ignore[attr-defined]
        try:
            with signals_blocked() if starts else contextlib.nullcontext():
                future = self._pool.submit(_run_job, job, fn, *args)
        except BrokenProcessPool as exc:  # a worker died between jobs
            raise self._worker_died(exc) from exc
        future.add_done_callback(functools.partial(self._finished, job))
        return future

    def _finished(self, job: int, future: Future[Any]) -> None:
        """Runs when a job ends; in the pool's thread when the pool broke, before the pool stops
        the other workers: the dead worker is then the only one that has exited."""
        if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
            with self._guard:
                self._death = self._death or self._dead_worker()
        with self._guard:
            self._jobs.pop(job, None)

    def _dead_worker(self) -> str | None:
        """`worker process PID died (HOW) while running TASK`, from exit statuses and the board."""
        if self._pool is None:  # closed: the pool forgot its processes at shutdown anyway
            return None
        processes = list((self._pool._processes or {}).values())  # type: ignore[attr-defined]
        # Killed by the pool's own SIGTERM after the break: only if none died otherwise.
        dead = sorted(
            (p for p in processes if p.exitcode is not None),
            key=lambda p: p.exitcode == -signal.SIGTERM,
        )
        if not dead:
            return None
        board = self._rows
        jobs = {board[row]: board[row + 1] for row in range(0, len(board), 2)}
        label = self._jobs.get(jobs.get(dead[0].pid, 0))
        when = f"while running {label()}" if label else "between tasks"
        return f"worker process {dead[0].pid} died ({exit_cause(dead[0].exitcode)}) {when}"

    def _worker_died(self, exc: BaseException) -> BaseException:
        """The error a caller sees for a broken pool: WorkerDied naming the worker when known."""
        if not isinstance(exc, BrokenProcessPool) or isinstance(exc, WorkerDied):
            return exc
        with self._guard:
            self._death = self._death or self._dead_worker()
            death = self._death
        return WorkerDied(death or f"a worker process died ({exc})")

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        slices = split_evenly(tasks, self.workers)
        starts = list(itertools.accumulate(map(len, slices), initial=0))
        with ctrl_c_deferred() as interrupted:  # Ctrl-C ends the wait; close() stops the workers
            futures = [
                self._start(
                    functools.partial(slice_label, fn, starts[i], len(part), len(tasks)),
                    run_slice,
                    fn,
                    part,
                )
                for i, part in enumerate(slices)
            ]
            wait_unless(futures, interrupted)
        try:
            return concatenated(f.result() for f in futures)
        except BrokenProcessPool as exc:
            raise self._worker_died(exc) from exc

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        with ctrl_c_deferred():
            future = self._start(functools.partial(task_label, fn, task), fn, task)
        return Relay(future, self._worker_died)

    def shared_array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        with _NAMES_GUARD:
            number = next(_NAMES)
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{number}_{self._token[:8]}"
        with ctrl_c_deferred():  # interrupted between creating and noting it, it would leak
            shm = SharedMemory(name=name, create=True, size=nbytes)
            self._segments.append(shm)
        array = np.ndarray(shape, dtype=dtype, buffer=shm.buf).view(SharedNDArray)
        array[...] = 0
        array.segment = name
        return array

    def lock(self) -> ProcessLock:
        with self._guard:  # each index handed out once, also to threads calling at once
            index = self._next_lock
            if index >= LOCK_BANK_SIZE:
                raise HarnessError(
                    f"processes strategy has only {LOCK_BANK_SIZE} locks; "
                    "share locks between stripes (stripe i -> lock i % n)"
                )
            self._next_lock += 1
        return ProcessLock(self._token, index)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "start_method": self.start_method}

    def _close(self) -> None:
        with ctrl_c_deferred():  # bounded, and a second Ctrl-C must not cut the clean-up short
            try:
                if self._pool is not None:
                    stop_pool(self._pool)
                if self._watcher is not None:  # it ends once the workers have: then it lets go
                    self._watcher.join(GRACE_S)  # of the pool, whose initargs hold the locks
            finally:
                self._drop_semaphores()
                for shm in self._segments:
                    _release(shm)
                self._segments.clear()

    def _drop_semaphores(self) -> None:
        """Let go of the lock bank, the board's lock and the pool (its queues' locks) here, with
        Ctrl-C held: each semaphore's finalizer unlinks it and then tells the resource tracker,
        and a Ctrl-C between the two makes the tracker warn of a leak at exit. Left to the
        strategy object's end, they ran wherever that came (after the run, as main returned, or
        in the watch thread, a daemon that the interpreter's exit can stop between the two)."""
        _LOCK_BANKS.pop(self._token, None)
        self._locks = []
        self._board = None
        self._pool = None


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

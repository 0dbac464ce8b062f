"""The Strategy contract and its registry.

A strategy owns *how* tasks run in parallel and nothing else: `map(fn, tasks)` returns results in
task order, `shared_array` gives memory every worker sees, `lock()` a lock every worker honours.
`sum_rows` adds the rows tasks wrote, in row order. Everything else (what a task computes, how
its results are used) belongs to the workload.

Threads. `map`, `submit`, `shared_array`, `lock`, `sum_rows` and `info` may be called from
several threads at once (on free-threaded builds too): each call is whole on its own, and every
`lock()` is a distinct lock. `map` must not be called from inside a task (a task running on a
worker of the same strategy), and `close` only once every other call has returned; the harness
itself calls everything from one thread. Plug-ins must keep this promise; the unit tests run
under pytest-run-parallel on a free-threaded build to check it (`nox -s threadsafety`). The one
exception is a strategy whose `map` is collective across processes (`mpi`: every rank calls it,
in the same order): its `map` and `sum_rows` belong to one thread per rank.

Task functions. A task function may offer `for_this_thread()`, returning a callable that does
the same for the calling thread alone (data_parallel.MicrobatchGrad: the thread's workspace). A
worker thread asks for it once per map (`own_callable`) and calls that for its tasks, so on a
free-threaded build no object in the inner loop is called by two threads at once (each call of a
shared object moves its reference count's cache line between CPUs: 2.7 % of threads x2's time on
the 2-core VM). Optional on both sides: `fn(task)` must work as well.

Faults. A task's exception is re-raised by `map` (or the Future's `result`). A worker that dies
raises `WorkerDied` naming it. Ctrl-C belongs to the calling process: workers do not act on it,
and `close()` stops them within a bounded time, whatever state they are in.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ClassVar, TypeVar

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from harness import HarnessError, trace
from harness.options import Option

T = TypeVar("T")
R = TypeVar("R")

REGISTRY: dict[str, type[Strategy]] = {}


class WorkerDied(HarnessError, BrokenProcessPool):
    """A worker process died (killed, or exited) while the strategy needed it; the message names
    it: `worker process PID died (signal 9, SIGKILL) while running TASK`. A BrokenProcessPool
    too, so code that expects the executor's error still catches it. The CLI exits with 1."""

    exit_status = 1


def sum_in_order(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + ... strictly left to right: the reduction order never varies."""
    total = rows[0].copy()
    for row in rows[1:]:
        total += row
    return total


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator adding a strategy to the registry; duplicate names are refused."""
    if cls.name in REGISTRY:
        raise HarnessError(f"strategy {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_strategy(name: str) -> type[Strategy]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise HarnessError(
            f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None


START_METHOD = Option(
    name="start_method",
    default="forkserver",
    choices=("fork", "forkserver", "spawn"),
    help="how worker processes start (default forkserver)",
)


class Strategy(ABC):
    """Base class: pins BLAS, tracks closing, provides the context-manager protocol.

    Everything the harness knows about a strategy is declared on its class: the options its
    constructor takes (`options`; each reaches `__init__` as a keyword), its own bench variants
    (`bench_variants`: name -> settings), the cells it adds to the bench's presets (`bench_cells`:
    preset -> workload -> variant ("" = the workload's own) -> worker counts), the `info()` keys
    the bench records (`info_facts`), whether a bench run must be a whole `run` job in a
    subprocess (`bench_as_job`), and, for a strategy whose workers are not started by the calling
    process, a `launch` that runs the command itself (mpi's mpiexec).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    uses_processes: ClassVar[bool] = False
    shares_memory: ClassVar[bool] = True  # workers see writes to shared_array without copying
    bitwise_deterministic: ClassVar[bool] = True  # equal to serial bit for bit
    options: ClassVar[tuple[Option, ...]] = ()
    bench_variants: ClassVar[dict[str, dict[str, Any]]] = {}
    bench_cells: ClassVar[dict[str, dict[str, dict[str, tuple[int, ...]]]]] = {}
    info_facts: ClassVar[tuple[str, ...]] = ()
    bench_as_job: ClassVar[bool] = False
    # The execution model. False: the caller runs the workload's loop and hands each map's tasks
    # to the workers (a pool). True (SPMD: mpi, spmd): every worker runs the whole loop itself,
    # `map` runs the worker's own share of the tasks and `sum_rows` is a collective.
    spmd: ClassVar[bool] = False

    def __init__(self, workers: int = 1, *, start_method: str = "forkserver") -> None:
        if not isinstance(workers, int) or workers < 1:
            raise HarnessError(f"workers={workers!r} must be an integer >= 1")
        self.workers = workers
        self.start_method = start_method
        self._closed = False
        # BLAS threads are process-wide: pin them so workers do not oversubscribe the cores.
        self._blas_limit = threadpool_limits(limits=self.blas_threads, user_api="blas")

    def run_workload(self, workload: Callable[[Any, Strategy], R], config: Any) -> R:
        """Run `workload(config, self)` and return its result. An SPMD strategy runs it on every
        worker, each with its own rank's strategy, and returns the caller's (rank 0's) result:
        mpi's ranks were each started by mpiexec and call this, spmd starts its workers itself."""
        return workload(config, self)

    @property
    def blas_threads(self) -> int:
        return 1

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    @classmethod
    def supports(cls, workload: str) -> tuple[bool, str]:
        """Whether this strategy can run that workload here (False with the reason)."""
        return True, ""

    @classmethod
    def check_config(cls, config: Any) -> None:
        """A rule across this strategy's options (HarnessError if broken); none by default."""

    @classmethod
    def from_config(cls, config: Any) -> Strategy:
        """The strategy a run configuration asks for: its worker count and its own options."""
        return cls(config.workers, **{o.name: getattr(config, o.name) for o in cls.options})

    @classmethod
    def launch(
        cls, config: Any, given: dict[str, Any], show: Callable[[dict[str, Any]], None]
    ) -> int | None:
        """For a strategy whose workers the calling process cannot start itself (mpi: mpiexec
        starts the ranks): run the whole `run` command, show the result, return the exit status.
        None (the default): run in this process as usual. `given` holds the settings the user
        gave, to start the same command elsewhere."""
        return None

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> list[R]:
        """fn over tasks, results in task order; a task's exception is re-raised here."""
        self._require_open()
        if trace.RECORDER is not None:  # run --trace: time every task (off: this lookup only)
            return trace.RECORDER.map(self._map, fn, list(tasks))
        return self._map(fn, list(tasks))

    @abstractmethod
    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]: ...

    def submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        """Start fn(task) on a worker and return its Future at once (the streaming primitive).

        `map` waits for a whole list; a pipeline that keeps a bounded number of tasks ahead of its
        consumer, or delivers the first one ready, needs one task at a time. The default runs the
        task now, in the caller, and returns a finished Future, so a strategy without a pool
        (serial, blas) streams too; pools override `_submit`. The result's `exception()` holds a
        task's exception, re-raised by `result()`.
        """
        self._require_open()
        return self._submit(fn, task)

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(self._map(fn, [task])[0])
        except Exception as exc:  # a task's error belongs to its Future, as in a pool
            future.set_exception(exc)
        return future

    def _require_open(self) -> None:
        if self._closed:
            raise HarnessError(f"strategy {self.name!r} is closed; create a new one")

    def shared_array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """A zeroed array that every worker reads and writes in place."""
        return np.zeros(shape, dtype=dtype)

    def sum_rows(self, array: np.ndarray) -> np.ndarray:
        """After `map(fn, tasks)` where the task at position i wrote row i of `array` (made by
        `shared_array`): the rows' sum, added left to right as `sum_in_order` does, so bitwise the
        same for every strategy that is `bitwise_deterministic`. Here the rows are in the caller's
        memory (threads, shared-memory processes); MPI ranks each hold only their own rows."""
        return sum_in_order(array)

    def lock(self) -> Any:
        """A lock honoured by every worker of this strategy."""
        return threading.Lock()

    def info(self) -> dict[str, Any]:
        """What a result records about how it was run."""
        return {"name": self.name, "workers": self.workers, "blas_threads": self.blas_threads}

    def close(self) -> None:
        """Release workers and memory; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        finally:
            self._blas_limit.restore_original_limits()

    def _close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Strategy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ctrl_c_deferred:  # noqa: N801  (a context manager, used like a function)
    """Ctrl-C held back until the block ends, then handed to the SIGINT handler that was in place
    (Python's default raises KeyboardInterrupt); `as interrupted` gives a check for blocks that
    can stop early. For a strategy's own bookkeeping around its pool (submitting, waiting):
    KeyboardInterrupt raised inside concurrent.futures' code can leave a future's lock held (`wait`
    takes them one by one), and the pool's shutdown then hangs. A plain block outside the main
    thread (signals are handled there only) or where SIGINT has no Python handler (ignored).
    A class, not a generator: it runs on every map, and this costs half as much."""

    __slots__ = ("_previous", "_caught")

    def __enter__(self) -> Callable[[], bool]:
        self._previous = previous = signal.getsignal(signal.SIGINT)
        self._caught: list[int] = []
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            self._previous = None
            return lambda: False
        signal.signal(signal.SIGINT, lambda signum, frame: self._caught.append(signum))
        return lambda: bool(self._caught)

    def __exit__(self, *exc: object) -> None:
        previous = self._previous
        if previous is None:
            return
        signal.signal(signal.SIGINT, previous)
        if self._caught:
            previous(signal.SIGINT, None)  # in place of whatever the block was doing


def process_context(start_method: str) -> Any:
    """multiprocessing's context for `start_method`; HarnessError naming what this OS offers."""
    import multiprocessing

    if start_method not in multiprocessing.get_all_start_methods():
        raise HarnessError(
            f"start_method={start_method!r} is not available here; "
            f"available: {', '.join(multiprocessing.get_all_start_methods())}"
        )
    return multiprocessing.get_context(start_method)


def split_evenly(tasks: Sequence[T], parts: int) -> list[Sequence[T]]:
    """Contiguous, near-equal slices of `tasks` (at most `parts`, none empty), in order.

    Pools hand each worker ONE slice per map instead of one future per task: a wake-up costs
    tens of microseconds, as much as a tiny model's whole microbatch.
    """
    parts = max(1, min(parts, len(tasks)))
    size, extra = divmod(len(tasks), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [tasks[bounds[i] : bounds[i + 1]] for i in range(parts)]


def own_callable(fn: Callable[[T], R]) -> Callable[[T], R]:
    """`fn`, or the callable it hands the calling thread for itself (`fn.for_this_thread()`)."""
    for_this_thread = getattr(fn, "for_this_thread", None)
    return for_this_thread() if for_this_thread is not None else fn


def run_slice(fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
    """Executed by a worker: one slice of tasks, in order."""
    fn = own_callable(fn)
    return [fn(task) for task in tasks]


def concatenated(slices: Iterable[list[R]]) -> list[R]:
    return [result for chunk in slices for result in chunk]


def gil_enabled() -> bool:
    """Checked now, after imports: an extension without free-threading support re-enables it."""
    return sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def blas_summary() -> dict[str, Any]:
    """The BLAS library NumPy uses right now and its current thread count."""
    blas = [m for m in threadpool_info() if m.get("user_api") == "blas"]
    if not blas:
        return {"library": None, "threads": None, "version": None, "architecture": None}
    first = blas[0]
    return {
        "library": first.get("internal_api"),
        "threads": first.get("num_threads"),
        "version": first.get("version"),
        "architecture": first.get("architecture"),
    }

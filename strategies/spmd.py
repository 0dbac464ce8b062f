"""SPMD worker processes: the shape of PyTorch's DistributedDataParallel, without MPI.

`processes` is a pool the caller hands each step's tasks to (the DataLoader shape). Here W
processes are started once and every one of them runs the whole workload, as `mpi`'s ranks do:
rank 0 is the calling process, and `run_workload` hands the workload and its configuration to the
other W-1, each of which runs it with its own rank's strategy (their results are dropped; rank
0's is the run's). Each rank builds the seeded data itself and holds its own copy of every
`shared_array`; `map` runs the rank's contiguous share of the tasks and gathers every rank's
results; `sum_rows` is a collective: each rank copies the rows it computed into shared memory,
and after one barrier every rank adds all of them in row order, as serial does, so every rank
takes the same, bitwise-serial step. The collectives are in `strategies.spmd_comm`.

async-sgd's parameters live in one shared segment (`param_store`), behind locks from a bank
every rank holds: the workers are the updaters, as in Hogwild!.

Failing fast: a rank that raises records `spmd worker R of W (pid P) failed: ...` and aborts the
job; rank 0's watchdog records a rank that dies (`... was killed by SIGKILL`) and aborts it; every
wait looks at the abort flag, so the other ranks stop within a poll and rank 0 raises that one
line. Workers ignore Ctrl-C (rank 0 stops them) and end themselves, removing the job's shared
memory, when rank 0 dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from harness import HarnessError
from strategies.base import (
    START_METHOD,
    R,
    Strategy,
    T,
    concatenated,
    process_context,
    register,
    run_slice,
    sum_in_order,
)
from strategies.mpi import rank_bounds
from strategies.spmd_comm import POLL_S, Aborted, Comm, Handles, death_text, new_handles

LOCK_BANK_SIZE = 64
STOP_S = 3.0  # how long a worker may take to leave after it is told to, before SIGKILL
NOT_SPMD = {
    "loader": "it is a data pipeline with no training loop for every worker to run "
    "(each would load every batch); run it on processes or threads"
}


@register
class Spmd(Strategy):
    name = "spmd"
    description = (
        "worker processes started once, each running the loop on its share; "
        "collectives over shared memory (DDP-like; no loader)"
    )
    uses_processes = True
    shares_memory = False  # each rank has its own arrays; only the collectives share memory
    spmd = True
    options = (START_METHOD,)
    # quick: beside processes and mpi at 2; full: the scaling points for both training workloads
    bench_cells = {
        "quick": {"data-parallel": {"": (2,)}},
        "full": {"data-parallel": {"": (1, 2, 4)}, "async-sgd": {"": (1, 2, 4)}},
        "scaling": {"data-parallel": {"": (2, 4, 8, 16)}},
    }

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        context = process_context(self.start_method)
        handles = new_handles(workers, context, LOCK_BANK_SIZE)
        self._join(Comm(handles, 0))
        self._peers: list[Peer] = []
        try:
            self._peers = [
                Peer(context, handles, rank, self.start_method) for rank in range(1, workers)
            ]
            self._watchdog = Watchdog(self._comm, self._peers)
            for peer in self._peers:
                peer.reply(self._comm)
        except BaseException:
            self.close()
            raise

    def _join(self, comm: Comm) -> None:
        """What every rank's strategy holds."""
        self._comm = comm
        self._running = comm.rank > 0  # other ranks only ever map inside a workload
        self._bounds: list[int] | None = None  # the cut of the last map
        self._rows: dict[tuple[Any, ...], np.ndarray] = {}  # sum_rows' buffers, by shape
        self._run_segments: list[SharedMemory] = []
        self._locks_given = 0

    @classmethod
    def for_rank(cls, comm: Comm, start_method: str) -> Spmd:
        """Rank r's strategy, in its own process."""
        self = cls.__new__(cls)
        Strategy.__init__(self, comm.size, start_method=start_method)  # pins BLAS here too
        self._join(comm)
        self._peers = []
        return self

    @classmethod
    def supports(cls, workload: str) -> tuple[bool, str]:
        return (False, NOT_SPMD[workload]) if workload in NOT_SPMD else (True, "")

    @property
    def rank(self) -> int:
        return self._comm.rank

    @property
    def worker_pids(self) -> list[int]:
        """The processes of ranks 1..W-1 (seen from rank 0; empty elsewhere)."""
        return [peer.process.pid for peer in self._peers]

    # ---- running a workload on every rank -------------------------------------------------

    def run_workload(self, workload: Callable[[Any, Strategy], R], config: Any) -> R:
        self._require_open()
        self._comm.check()
        for peer in self._peers:
            peer.send((workload, config))
        self._running = True
        try:
            result = workload(config, self)
            for peer in self._peers:
                peer.reply(self._comm)
            return result
        except Aborted:
            raise
        except BaseException as exc:  # the others must not wait for rank 0 in a collective
            self._comm.abort(0, failure_line(self._comm, os.getpid(), exc))
            raise
        finally:
            self._running = False
            self.end_run()

    def end_run(self) -> None:
        """Release the segments of the run that ended (on rank 0, once every rank is done)."""
        for shm in self._run_segments:
            self._comm.release(shm)
        self._run_segments.clear()

    # ---- the Strategy contract, per rank --------------------------------------------------

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        if not self._running:
            raise HarnessError(
                f"strategy {self.name!r} maps only inside run_workload, where "
                "every worker runs the workload; a map here would wait for "
                "workers that are not mapping"
            )
        self._bounds = rank_bounds(len(tasks), self.workers)
        mine = run_slice(fn, tasks[self._bounds[self.rank] : self._bounds[self.rank + 1]])
        return concatenated(self._comm.allgather(mine))

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        # A streamed task (a data pipeline's batch) runs on every rank: each rank needs its result.
        future: Future[R] = Future()
        try:
            future.set_result(fn(task))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shared_array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """The rank's own zeroed array. Also a barrier: every rank asks for the same arrays in
        the same order before its loop, so the ranks start their timed loops together."""
        self._comm.barrier()
        return np.zeros(shape, dtype=dtype)

    def sum_rows(self, array: np.ndarray) -> np.ndarray:
        """All ranks' rows, added in row order on every rank (bitwise what serial computes)."""
        if self._bounds is None:
            raise HarnessError("sum_rows follows a map: only then is it known who wrote which row")
        rows = array.reshape(len(array), -1)
        if self._bounds[-1] != len(rows):
            raise HarnessError(
                f"sum_rows got {len(rows)} rows after a map of {self._bounds[-1]} tasks"
            )
        if self.workers == 1:
            return sum_in_order(array)
        buffers = self._rows_buffers(rows.shape, rows.dtype)
        parity = self._comm.generation % 2
        mine = slice(self._bounds[self.rank], self._bounds[self.rank + 1])
        buffers[parity, mine] = rows[mine]
        self._comm.barrier()  # every rank's rows are in; the other parity is free to write next
        return sum_in_order(buffers[parity]).reshape(array.shape[1:])

    def _rows_buffers(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        key = (shape, np.dtype(dtype).str)
        if key not in self._rows:  # collective: every rank meets its first sum of a shape together
            self._rows[key] = self._comm.segment((2, *shape), dtype)[1]
        return self._rows[key]

    def param_store(self, initial: np.ndarray, stripes: Sequence[slice], locks: int) -> Any:
        """async-sgd's parameters (harness.params.open_store asks for them here, as the ranks'
        arrays are their own): one segment every rank updates, behind locks from the bank."""
        from harness.params import ParamStore

        shm, params = self._comm.segment(initial.shape, np.float64, fill=initial)
        self._run_segments.append(shm)
        return ParamStore.build(params, stripes, [self.lock() for _ in range(locks)])

    def lock(self) -> SpmdLock:
        """Lock i of the bank, the same lock on every rank (every rank asks in the same order)."""
        if self._locks_given >= LOCK_BANK_SIZE:
            raise HarnessError(
                f"spmd strategy has only {LOCK_BANK_SIZE} locks; "
                "share locks between stripes (stripe i -> lock i % n)"
            )
        self._locks_given += 1
        return SpmdLock(self._comm, self._comm.handles.locks[self._locks_given - 1])

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "start_method": self.start_method,
            "ranks": self.workers,
            "execution": "spmd: every worker runs the loop; collectives in shared memory",
        }

    def _close(self) -> None:
        try:
            if self._peers:
                self._watchdog.stop()
                stop_peers(self._peers)
        finally:
            self.end_run()
            self._comm.close()


class SpmdLock:
    """A lock of the bank whose waiters give up when the job is aborted (its holder may be dead)."""

    def __init__(self, comm: Comm, lock: Any) -> None:
        self._comm, self._lock = comm, lock

    def __enter__(self) -> SpmdLock:
        self._comm.wait_on(lambda timeout: self._lock.acquire(True, timeout))
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def failure_line(comm: Comm, pid: int, exc: BaseException) -> str:
    what = (
        "was interrupted"
        if isinstance(exc, KeyboardInterrupt)
        else (
            f"failed: {type(exc).__name__}: {exc}" if str(exc) else f"failed: {type(exc).__name__}"
        )
    )
    return f"spmd worker {comm.rank} of {comm.size} (pid {pid}) {what}"


# ---- rank 0's side: the other ranks' processes ----------------------------------------------


class Peer:
    """Rank r's process, seen from rank 0, and the pipe that hands it workloads."""

    def __init__(self, context: Any, handles: Handles, rank: int, start_method: str) -> None:
        self.rank = rank
        self._reporting = threading.Lock()
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=serve,
            args=(handles, rank, theirs, start_method),
            name=f"ft-harness-spmd-{rank}",
            daemon=True,
        )
        self.process.start()
        theirs.close()

    def send(self, command: Any) -> None:
        try:
            self.conn.send(command)
        except OSError:
            pass  # it died: the watchdog has aborted the job, or will; the next wait says so

    def reply(self, comm: Comm) -> Any:
        """Its next message ("ready" once started, "done" after each workload); Aborted if the
        job is aborted meanwhile."""
        while not self.conn.poll(POLL_S):
            comm.check()
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.report_death(comm)  # the watchdog may not have yet
            comm.check()

    def report_death(self, comm: Comm) -> None:
        """Abort the job, naming this rank and how its process ended (the watchdog and rank 0's
        main thread may both ask: one at a time, as both would read the exit status)."""
        with self._reporting:
            self.process.join(STOP_S)  # the sentinel can be ready a moment before the status
        comm.abort(
            self.rank,
            f"spmd worker {self.rank} of {comm.size} (pid {self.process.pid}) "
            f"{death_text(self.process.exitcode)}",
        )


class Watchdog:
    """A thread of rank 0 that aborts the job the moment another rank's process ends unasked."""

    def __init__(self, comm: Comm, peers: list[Peer]) -> None:
        self._comm, self._peers = comm, peers
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="ft-harness-spmd-watchdog", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        pending = {peer.process.sentinel: peer for peer in self._peers}
        while pending and not self._stopping.is_set():
            for sentinel in wait(list(pending), timeout=POLL_S):
                peer = pending.pop(sentinel)  # type: ignore[call-overload]
                if not self._stopping.is_set():
                    peer.report_death(self._comm)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def stop_peers(peers: list[Peer]) -> None:
    """Ask every rank to leave; those that do not within STOP_S are killed."""
    for peer in peers:
        peer.send(None)
    for peer in peers:
        peer.process.join(STOP_S)
        if peer.process.is_alive():
            peer.process.kill()
            peer.process.join()
        peer.conn.close()


# ---- the other ranks' side --------------------------------------------------------------------


def serve(handles: Handles, rank: int, conn: Connection, start_method: str) -> None:
    """A worker process: join the job, then run each workload rank 0 hands over until told to
    stop (None), the job is aborted, or the workload fails (which aborts the job)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: rank 0 decides
    comm = Comm(handles, rank)
    end_with_rank0(comm)
    strategy = Spmd.for_rank(comm, start_method)
    conn.send("ready")
    try:
        while (command := conn.recv()) is not None:
            workload, config = command
            try:
                workload(config, strategy)
            finally:
                strategy.end_run()
            conn.send("done")
    except Aborted:
        pass  # another rank failed: rank 0 reports it
    except BaseException as exc:  # noqa: B036  (whatever it is, the job must hear of it)
        comm.abort(rank, failure_line(comm, os.getpid(), exc), traceback.format_exc())
    finally:
        strategy.close()


def end_with_rank0(comm: Comm) -> None:
    """Rank 0 killed (SIGKILL) can stop nothing: this rank then removes the job's shared memory
    and ends itself. `parent_process()` is rank 0 under every start method."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch(sentinel: int) -> None:
        wait([sentinel])
        comm.unlink_all()
        os._exit(1)

    threading.Thread(target=watch, args=(parent.sentinel,), daemon=True).start()

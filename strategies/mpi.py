"""MPI: one process per rank, started by `mpiexec`, possibly on several hosts (mpi4py).

Ranks share no memory, so the strategy is SPMD: every rank runs the whole workload, builds the
seeded data itself and holds its own copy of every `shared_array`. `map` gives each rank a
contiguous slice of the tasks (the same cut on every rank, as the task list is the same) and
allgathers the results, so every rank returns all of them in task order. The rows that tasks
wrote stay where they were written; `sum_rows` adds them across the ranks and gives every rank
the total:

- `reduce="ordered"` adds in row (microbatch) order, as the serial run does, so it is bitwise
  equal to serial: a chain through the ranks, each adding its own rows to the running sum of the
  ranks before it, streamed in chunks so that neighbours overlap, then one Bcast of the total:
  about two rows of traffic per rank (gathering every row to every rank moved all of them, and
  every rank then added all of them);
- `reduce="allreduce"` adds each rank's rows locally and lets MPI's Allreduce add the partial
  sums: no chain, but a different summation order, so close to serial and NOT bitwise.

Hybrid: `threads_per_rank=T` runs each rank's slice on a caller-runs thread pool of T threads
(parallel on free-threaded Python). Only the rank's main thread calls MPI — collectives after the
threads have finished, and the parameter store's one-sided calls from the task that the caller
itself runs — so MPI is initialised with MPI_THREAD_FUNNELED, the cheapest level that allows
threads at all, and the level the library actually provides is recorded.

async-sgd gets its shared parameters from `param_store`: a one-sided (RMA) parameter server,
see `WindowStore`.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from harness import HarnessError
from harness.options import Option
from strategies.base import R, Strategy, T, concatenated, register
from strategies.threads import Threads

INSTALL_HINT = "pip install 'ft-harness[mpi]' (mpi4py and the MPICH runtime with its mpiexec)"
THREAD_LEVEL = "funneled"  # only a rank's main thread calls MPI (see the module docstring)
CHAIN_CHUNK = (
    1 << 16
)  # elements per message of the ordered chain (512 KiB): ranks overlap on big rows


def init_mpi() -> ModuleType:
    """mpi4py's MPI module; importing it starts MPI, at our thread level if it is the first import."""
    import mpi4py

    mpi4py.rc.thread_level = THREAD_LEVEL  # read once, by the first import of mpi4py.MPI
    from mpi4py import MPI

    return MPI


def mpiexec_path() -> str | None:
    """The mpiexec of this interpreter's environment (the mpich wheel puts it next to python),
    else the first on PATH: the launcher must start ranks with the MPI that mpi4py loads."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def thread_level_name(mpi: ModuleType, level: int) -> str:
    names = {
        mpi.THREAD_SINGLE: "single",
        mpi.THREAD_FUNNELED: "funneled",
        mpi.THREAD_SERIALIZED: "serialized",
        mpi.THREAD_MULTIPLE: "multiple",
    }
    return names.get(level, str(level))


def rank_bounds(tasks: int, ranks: int) -> list[int]:
    """Rank r takes tasks bounds[r]:bounds[r + 1]; contiguous, sizes differing by at most one.
    Unlike split_evenly, every rank gets a (possibly empty) slice: all ranks join each collective."""
    return [r * tasks // ranks for r in range(ranks + 1)]


@register
class Mpi(Strategy):
    name = "mpi"
    description = "MPI ranks via mpiexec (mpi4py); rows summed in order along the ranks, or --reduce allreduce"
    uses_processes = True
    shares_memory = False
    options = (
        Option(name="hosts", help="hosts for the ranks, comma-separated, as mpiexec -hosts"),
        Option(name="hostfile", help="an MPI hostfile, as mpiexec -f"),
        Option(
            name="threads_per_rank",
            kind=int,
            default=1,
            minimum=1,
            help="threads inside each rank (a hybrid: ranks x threads)",
        ),
        Option(
            name="reduce",
            default="ordered",
            choices=("ordered", "allreduce"),
            help="data-parallel's gradient sum: in order along the ranks (bitwise = serial) "
            "or MPI's Allreduce",
        ),
    )
    # mpi's own knobs in the bench: Allreduce where there is something to reduce between ranks,
    # and N ranks x 2 threads, to set against 2N processes or threads
    bench_variants = {"allreduce": {"reduce": "allreduce"}, "t2": {"threads_per_rank": 2}}
    # each of its bench runs is a whole mpiexec job (about 1.5 s here): few cells in quick
    bench_cells = {
        "quick": {"data-parallel": {"": (2,)}},
        "full": {
            "data-parallel": {"": (1, 2, 4), "allreduce": (2, 4), "t2": (1, 2)},
            "async-sgd": {"": (1, 2, 4)},
        },
        "scaling": {"data-parallel": {"": (2, 8, 16)}},
    }
    # ranks x threads per rank, the reduction, the library and the thread level it gave
    info_facts = (
        "ranks",
        "threads_per_rank",
        "total_threads",
        "reduce",
        "mpi_library",
        "thread_level_provided",
    )
    bench_as_job = True  # a pyperf worker cannot host MPI ranks: each run is a whole job
    spmd = True  # mpiexec starts every rank; each runs the workload (harness.mpi.launch)

    def __init__(
        self,
        workers: int = 1,
        *,
        threads_per_rank: int = 1,
        reduce: str = "ordered",
        hosts: str | None = None,
        hostfile: str | None = None,
        **kwargs: Any,
    ) -> None:
        # hosts and hostfile placed this rank (the launcher gave them to mpiexec): nothing to do
        reducers = {"ordered": self._chain_rows, "allreduce": self._allreduce_rows}
        if reduce not in reducers:
            raise HarnessError(f"reduce={reduce!r} is not one of: {', '.join(reducers)}")
        self._mpi = init_mpi()
        self._comm = self._mpi.COMM_WORLD
        if self._comm.Get_size() != workers:
            raise HarnessError(
                f"workers={workers} but this job has {self._comm.Get_size()} MPI "
                f"rank(s): start it with `mpiexec -n {workers}`, or let "
                "`python -m harness run --strategy mpi` do so"
            )
        super().__init__(workers, **kwargs)
        self.reduce = reduce
        self._reduce = reducers[reduce]
        self._threads = Threads(threads_per_rank)
        self._bounds: list[int] | None = None  # the cut of the last map: who computed which row
        self._stores: list[WindowStore] = []
        self._abandoned = False
        self._hosts = sorted(set(self._comm.allgather(self._mpi.Get_processor_name())))

    @classmethod
    def check_config(cls, config: Any) -> None:
        if config.hosts and config.hostfile:
            raise HarnessError("hosts and hostfile: give one of them, not both")

    @classmethod
    def launch(
        cls, config: Any, given: dict[str, Any], show: Callable[[dict[str, Any]], None]
    ) -> int:
        """Ranks are processes of their own: start the job under mpiexec, or be one rank of it."""
        from harness.mpi.launch import run_mpi

        return run_mpi(config, given, show)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import mpi4py  # noqa: F401  (the package only: importing mpi4py.MPI would start MPI)
        except ImportError:
            return False, f"mpi4py is not installed; {INSTALL_HINT}"
        if mpiexec_path() is None:
            return False, f"no mpiexec next to {sys.executable} nor on PATH; {INSTALL_HINT}"
        return True, ""

    @property
    def rank(self) -> int:
        return int(self._comm.Get_rank())

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        self._bounds = rank_bounds(len(tasks), self._comm.Get_size())
        mine = self._threads.map(fn, tasks[self._bounds[self.rank] : self._bounds[self.rank + 1]])
        # Every rank has finished its slice once this returns, so remote updates are all in place.
        results = concatenated(self._comm.allgather(mine))
        for store in self._stores:
            store.pull()
        return results

    def _submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        # A streamed task (a data pipeline's batch) runs on every rank: each rank needs its result.
        return self._threads.submit(fn, task)

    def sum_rows(self, array: np.ndarray) -> np.ndarray:
        """The sum of all ranks' rows on every rank (ordered: in row order, bit for bit;
        allreduce: in MPI's order)."""
        if self._bounds is None:
            raise HarnessError("sum_rows follows a map: only then is it known who wrote which row")
        rows = array.reshape(len(array), -1)
        if self._bounds[-1] != len(rows):
            raise HarnessError(
                f"sum_rows got {len(rows)} rows after a map of {self._bounds[-1]} tasks"
            )
        return self._reduce(rows, self._bounds).reshape(array.shape[1:])

    def _chain_rows(self, rows: np.ndarray, bounds: list[int]) -> np.ndarray:
        """Left to right along the ranks that hold rows: each receives the running sum of the rows
        before its own, chunk by chunk, adds its rows in order and sends it on; the last one has
        the serial sum and broadcasts it."""
        chain = [r for r in range(len(bounds) - 1) if bounds[r + 1] > bounds[r]]
        total = np.empty(rows.shape[1], dtype=rows.dtype)
        if self.rank in chain:
            place = chain.index(self.rank)
            before = chain[place - 1] if place else None
            after = chain[place + 1] if place + 1 < len(chain) else None
            self._fold_chunks(rows[bounds[self.rank] : bounds[self.rank + 1]], total, before, after)
        self._comm.Bcast(total, root=chain[-1])
        return total

    def _fold_chunks(
        self, mine: np.ndarray, total: np.ndarray, before: int | None, after: int | None
    ) -> None:
        sends = []
        for start in range(0, len(total), CHAIN_CHUNK):
            part, cut = total[start : start + CHAIN_CHUNK], slice(start, start + CHAIN_CHUNK)
            if before is None:  # the first rows of all: the sum starts as row 0, like sum_in_order
                part[...] = mine[0, cut]
                rest = mine[1:]
            else:
                self._comm.Recv(part, source=before)
                rest = mine
            for row in rest:
                part += row[cut]
            if after is not None:  # this chunk travels on while the next one is added here
                sends.append(self._comm.Isend(part, dest=after))
        self._mpi.Request.Waitall(sends)

    def _allreduce_rows(self, rows: np.ndarray, bounds: list[int]) -> np.ndarray:
        partial = rows[bounds[self.rank] : bounds[self.rank + 1]].sum(axis=0)
        total = np.empty_like(partial)
        self._comm.Allreduce(partial, total, op=self._mpi.SUM)
        return total

    def param_store(self, initial: np.ndarray, stripes: Sequence[slice], locks: int) -> WindowStore:
        """The shared parameters of async-sgd (harness.params.open_store asks for them here, as
        ranks have no shared memory): an RMA window over all ranks; collective."""
        store = WindowStore(self._mpi, self._comm, initial, stripes, locks)
        self._stores.append(store)
        return store

    def info(self) -> dict[str, Any]:
        library = self._mpi.Get_library_version().strip()
        ranks, threads = self._comm.Get_size(), self._threads.workers
        return {
            **super().info(),
            "ranks": ranks,
            "threads_per_rank": threads,
            "total_threads": ranks * threads,
            "reduce": self.reduce,
            "bitwise": self.reduce == "ordered",
            "thread_level_requested": THREAD_LEVEL,
            "thread_level_provided": thread_level_name(self._mpi, self._mpi.Query_thread()),
            "mpi_library": " ".join(library.splitlines()[0].split()),
            "mpi_library_version": library,
            "mpi_standard": "{}.{}".format(*self._mpi.Get_version()),
            "mpi4py": sys.modules["mpi4py"].__version__,
            "hosts": self._hosts,
        }

    def __exit__(self, *exc: object) -> None:
        # Leaving on an error, this rank is about to abort the job: a collective (freeing a
        # window) would wait forever for ranks that are still inside the workload.
        self._abandoned = exc[0] is not None
        self.close()

    def _close(self) -> None:
        self._threads.close()
        if not self._abandoned:
            for store in self._stores:
                store.close()


class WindowStore:
    """async-sgd's parameters in an MPI RMA window: a one-sided, sharded parameter server.

    Same interface as harness.params.ParamStore (`params`, `stripes`, `read`, `add`,
    `lock_count`). Stripe i lives on rank (i % locks) % ranks, so a stripe's lock is a
    passive-target MPI_Win_lock on the rank that holds it: `lock` puts the one stripe on rank 0
    behind an exclusive lock; `striped` spreads stripes over the ranks (writers of stripes on
    different ranks never wait for each other; stripes on one rank share its lock, as stripes
    share locks in ParamStore); `hogwild` (no locks) takes shared locks, so nobody ever waits.

    Updates are MPI_Accumulate(SUM) and reads MPI_Get_accumulate(NO_OP): MPI makes both atomic
    per element, so unlike `+=` on shared memory even Hogwild! loses no update here; its reads
    may still mix old and new elements, as Hogwild! reads do.
    """

    def __init__(
        self, mpi: ModuleType, comm: Any, initial: np.ndarray, stripes: Sequence[slice], locks: int
    ) -> None:
        self._mpi = mpi
        self.stripes = tuple(stripes)
        self.params = np.array(initial, dtype=np.float64)  # this rank's copy, refreshed by pull()
        ranks = comm.Get_size()
        self._hosts = [(i % locks) % ranks if locks else 0 for i in range(len(self.stripes))]
        self._offsets, hosted = self._layout()
        self._lock_type = mpi.LOCK_EXCLUSIVE if locks else mpi.LOCK_SHARED
        self._window = mpi.Win.Allocate(
            hosted[comm.Get_rank()] * self.params.itemsize, self.params.itemsize, comm=comm
        )
        self._fill_local(comm.Get_rank(), hosted[comm.Get_rank()])
        comm.Barrier()  # nobody reads a stripe before its host has written it

    def _layout(self) -> tuple[list[int], Counter[int]]:
        """Each stripe's offset in its host's window, and how many elements each rank hosts."""
        offsets, hosted = [], Counter[int]()
        for stripe, host in zip(self.stripes, self._hosts):
            offsets.append(hosted[host])
            hosted[host] += stripe.stop - stripe.start
        return offsets, hosted

    def _fill_local(self, rank: int, size: int) -> None:
        if size == 0:
            return
        with self._epoch(rank, self._mpi.LOCK_EXCLUSIVE):  # local stores need an epoch too
            memory = np.frombuffer(self._window.tomemory(), dtype=np.float64)
            for stripe, host, offset in zip(self.stripes, self._hosts, self._offsets):
                if host == rank:
                    memory[offset : offset + stripe.stop - stripe.start] = self.params[stripe]

    @property
    def lock_count(self) -> int:
        """Distinct locks: one per rank holding stripes, none under Hogwild!."""
        return len(set(self._hosts)) if self._lock_type == self._mpi.LOCK_EXCLUSIVE else 0

    @contextmanager
    def _epoch(self, host: int, lock_type: int) -> Iterator[None]:
        if not self._mpi.Is_thread_main():
            raise HarnessError(
                f"MPI runs at thread level {THREAD_LEVEL!r}: only a rank's main "
                "thread may use the parameter store"
            )
        self._window.Lock(host, lock_type)
        try:
            yield
        finally:
            self._window.Unlock(host)  # returns once the operations are complete at the host

    def _each_stripe(self) -> Iterator[tuple[slice, int, tuple[int, int, Any]]]:
        for stripe, host, offset in zip(self.stripes, self._hosts, self._offsets):
            yield stripe, host, (offset, stripe.stop - stripe.start, self._mpi.DOUBLE)

    def read(self, out: np.ndarray) -> np.ndarray:
        """Copy the parameters into `out` (C-contiguous float64), stripe by stripe under its lock."""
        for stripe, host, target in self._each_stripe():
            view = out[stripe]
            with self._epoch(host, self._lock_type):
                # NO_OP ignores the origin buffer; the view stands in for it.
                self._window.Get_accumulate(view, view, host, target, self._mpi.NO_OP)
        return out

    def add(self, delta: np.ndarray) -> None:
        """params += delta at the hosts, stripe by stripe under its lock."""
        delta = np.ascontiguousarray(delta, dtype=np.float64)
        for stripe, host, target in self._each_stripe():
            with self._epoch(host, self._lock_type):
                self._window.Accumulate(delta[stripe], host, target, self._mpi.SUM)

    def pull(self) -> None:
        """Refresh this rank's `params` from the window (after a map, when no one writes)."""
        self.read(self.params)

    def close(self) -> None:
        self._window.Free()  # collective: every rank closes its strategy at the same point

"""The collectives of the `spmd` strategy: what W worker processes share, over POSIX shared memory.

Rank 0 creates everything before it starts the other ranks, which receive the handles once, at
start (multiprocessing semaphores can reach a process no other way), and attach by name:

- a barrier of W semaphores, one per rank: arriving posts once to every other rank's, passing
  takes W-1 posts from one's own. A rank can be at most one barrier ahead of another (it passes
  only once everyone has arrived), so counting is enough: no generation numbers, no spinning;
  a wait sleeps in the kernel and wakes on the post (about 10 us a round trip, where Python's
  multiprocessing.Barrier takes about 40);
- a control segment: an abort flag and the first failure. A rank that fails, or rank 0's
  watchdog seeing a rank die, records who and why, sets the flag and posts to every semaphore;
  every wait (barriers, locks) polls the flag, so no survivor is left waiting;
- a results segment for `allgather`: a slot per rank, written before a barrier and read after it.
  Slots alternate by the barrier's parity: a rank writes a slot again only two barriers later,
  when every rank has read it (reading comes before arriving at the next barrier);
- further segments on demand (`segment`), created by rank 0 and attached by the others after a
  barrier, all named `<prefix><n>` in the same order on every rank (SPMD: every rank asks for
  the same segments in the same order).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from harness import HarnessError
from strategies.processes import SEGMENT_PREFIX, _open_untracked, _release

POLL_S = 0.05  # how often a waiting rank looks at the abort flag
SLOT_BYTES = 1 << 20  # the most one rank's results of one map may pickle to
TEXT_BYTES = 1 << 14  # the failure's one line plus its traceback, truncated
HEADER = struct.Struct("qqqq")  # aborted, failed rank, length of the line, length of the traceback
LEN = struct.Struct("q")


class Aborted(HarnessError):
    """The job was aborted: a rank failed or died. The message names it, in one line."""


class WorkerTraceback(Exception):
    """The traceback of a failed worker, attached as the cause of the Aborted it led to."""


@dataclass(frozen=True)
class Handles:
    """What a rank needs to join the job; pickled once, into each worker as it starts."""

    size: int
    prefix: str  # every segment of this job is named prefix + something
    arrivals: tuple[Any, ...]  # rank r's barrier semaphore
    locks: tuple[Any, ...]  # the bank behind strategy.lock()
    record_lock: Any  # the first failure is recorded under it


def new_handles(size: int, context: Any, locks: int) -> Handles:
    prefix = f"{SEGMENT_PREFIX}{os.getpid()}_spmd{os.urandom(4).hex()}_"
    return Handles(
        size,
        prefix,
        tuple(context.Semaphore(0) for _ in range(size)),
        tuple(context.Lock() for _ in range(locks)),
        context.Lock(),
    )


class Comm:
    """One rank's end of the job's collectives. Rank 0 creates the segments; others attach."""

    def __init__(self, handles: Handles, rank: int) -> None:
        self.handles, self.rank, self.size = handles, rank, handles.size
        self.generation = 0  # barriers passed: the same on every rank between barriers
        self._segments: list[SharedMemory] = []
        self._made = 0
        self._control = self._map_named("control", HEADER.size + 2 * TEXT_BYTES)
        self._results = self._map_named("results", 2 * self.size * (LEN.size + SLOT_BYTES))

    def _map_named(self, name: str, nbytes: int) -> SharedMemory:
        if self.rank == 0:
            shm = SharedMemory(name=self.handles.prefix + name, create=True, size=nbytes)
        else:
            shm = _open_untracked(self.handles.prefix + name)
        self._segments.append(shm)
        return shm

    # ---- failure --------------------------------------------------------------------------

    @property
    def aborted(self) -> bool:
        return bool(HEADER.unpack_from(self._control.buf)[0])

    def check(self) -> None:
        """Raise Aborted, naming the failed rank, once the job is aborted."""
        if self.aborted:
            line, detail = self.failure()
            raise Aborted(line) from (WorkerTraceback(detail) if detail else None)

    def failure(self) -> tuple[str, str]:
        _, _, length, detail = HEADER.unpack_from(self._control.buf)
        start = HEADER.size
        return (
            bytes(self._control.buf[start : start + length]).decode(errors="replace"),
            bytes(self._control.buf[start + TEXT_BYTES : start + TEXT_BYTES + detail]).decode(
                errors="replace"
            ),
        )

    def abort(self, rank: int, line: str, detail: str = "") -> None:
        """Record the failure (the first one wins), set the flag, wake every waiting rank."""
        lock = self.handles.record_lock
        locked = lock.acquire(timeout=1.0)  # its holder may have died holding it: go on anyway
        try:
            if not self.aborted:
                texts = [text.encode()[:TEXT_BYTES] for text in (line, detail)]
                self._control.buf[HEADER.size : HEADER.size + len(texts[0])] = texts[0]
                start = HEADER.size + TEXT_BYTES
                self._control.buf[start : start + len(texts[1])] = texts[1]
                HEADER.pack_into(self._control.buf, 0, 1, rank, len(texts[0]), len(texts[1]))
        finally:
            if locked:
                lock.release()
        for semaphore in self.handles.arrivals:
            for _ in range(self.size):
                semaphore.release()

    def wait_on(self, acquire: Callable[[float], bool]) -> None:
        """Block until acquire(timeout) succeeds, looking at the abort flag between tries."""
        while not acquire(POLL_S):
            self.check()
        self.check()

    # ---- collectives ----------------------------------------------------------------------

    def barrier(self) -> None:
        if self.size > 1:
            for rank, semaphore in enumerate(self.handles.arrivals):
                if rank != self.rank:
                    semaphore.release()
            mine = self.handles.arrivals[self.rank]
            for _ in range(self.size - 1):
                self.wait_on(lambda timeout: mine.acquire(True, timeout))
        self.generation += 1

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if self.size == 1:
            self.generation += 1
            return [value]
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > SLOT_BYTES:
            raise HarnessError(
                f"spmd: rank {self.rank}'s results of one map pickle to {len(data)} "
                f"bytes; a rank may return at most {SLOT_BYTES}"
            )
        parity = self.generation % 2
        self._slot(parity, self.rank, data)
        self.barrier()
        return [
            value if rank == self.rank else self._slot(parity, rank) for rank in range(self.size)
        ]

    def _slot(self, parity: int, rank: int, data: bytes | None = None) -> Any:
        offset = (parity * self.size + rank) * (LEN.size + SLOT_BYTES)
        buf = self._results.buf
        if data is not None:
            LEN.pack_into(buf, offset, len(data))
            buf[offset + LEN.size : offset + LEN.size + len(data)] = data
            return None
        (length,) = LEN.unpack_from(buf, offset)
        return pickle.loads(buf[offset + LEN.size : offset + LEN.size + length])

    def segment(
        self, shape: Sequence[int], dtype: Any, fill: np.ndarray | None = None
    ) -> tuple[SharedMemory, np.ndarray]:
        """Collective: a new segment every rank maps, as an array (rank 0 writes `fill` into
        it first). It stays until `release` or `close`: the array is only valid while the
        SharedMemory lives (its finaliser unmaps it)."""
        name = f"{self.handles.prefix}{self._made}"
        self._made += 1
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        shm = SharedMemory(name=name, create=True, size=nbytes) if self.rank == 0 else None
        if shm is not None and fill is not None:
            np.ndarray(shape, dtype, buffer=shm.buf)[...] = fill
        self.barrier()  # created (and filled) before anyone attaches
        shm = shm or _open_untracked(name)
        self._segments.append(shm)
        return shm, np.ndarray(shape, dtype, buffer=shm.buf)

    def release(self, shm: SharedMemory) -> None:
        """Rank 0 unlinks a segment from `segment`; every rank unmaps it where it can."""
        if shm in self._segments:
            self._segments.remove(shm)
        if self.rank == 0:
            _release(shm)
        else:
            try:
                shm.close()
            except BufferError:
                pass  # an array still views it: the mapping goes with that array

    def close(self) -> None:
        while self._segments:
            self.release(self._segments[-1])

    def unlink_all(self) -> None:
        """Remove every segment of this job from /dev/shm: a rank whose rank 0 died calls this,
        as nobody else is left to (other ranks' mappings stay valid; only the names go)."""
        for path in Path("/dev/shm").glob(self.handles.prefix + "*"):
            path.unlink(missing_ok=True)


def death_text(exitcode: int | None) -> str:
    """How a process ended, for the failure line."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode} in the middle of the job"

"""The data-loading pipeline: read → decode → augment → collate, one batch per task, prefetched.

`stream(strategy, fn, tasks, bound=..., ordered=...)` runs tasks through `strategy.submit` and keeps
at most `bound` (= prefetch × workers) of them submitted but not yet handed to the consumer: the
consumer's pull is what submits the next task, so a slow consumer stops the workers
(backpressure) and memory stays bounded for any dataset size. No thread of its own: nothing to
stop or join; on an error or an early exit it cancels the tasks not started and waits for those
running, so no worker is left touching the caller's memory.

Delivery is `ordered` (exactly the serial sequence) or unordered (the first batch ready, oldest
first among those ready). A failed task is delivered first in both modes: its error is raised
as soon as it is known, never held back behind slower batches.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from harness import HarnessError
from harness.config import RunConfig
from harness.data.augment import augment_batch, decode
from harness.data.shards import open_shards
from harness.data.synthetic import read_idx
from harness.options import Option
from harness.seeding import Domain, rng_for
from strategies.base import Strategy, ctrl_c_deferred
from strategies.pool_faults import POLL_S, wait_unless

# The pipeline's settings, declared once and shared by the workloads that read through it
# (loader, and data-parallel with --data).
DATA = Option(name="data", help="a `data make` folder, or idx:PATH (MNIST/Fashion-MNIST IDX files)")
AUGMENT = Option(
    name="augment",
    default="numpy",
    choices=("numpy", "python"),
    help="vectorised NumPy augmentation, or per-pixel Python loops",
)
ORDER = Option(
    name="order",
    default="ordered",
    choices=("ordered", "unordered"),
    help="deliver batches in the serial order, or the first one ready",
)
PREFETCH = Option(
    name="prefetch", kind=int, default=2, minimum=1, help="batches in flight per worker"
)
PIPELINE_OPTIONS = (DATA, AUGMENT, ORDER, PREFETCH)

T = TypeVar("T")
R = TypeVar("R")
SHUFFLE_DOMAIN = Domain.LOADER_SHUFFLE
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")  # MNIST / Fashion-MNIST


# ---- sources: where samples come from ----------------------------------------------------------


class Source(Protocol):
    """A set of uint8 images (H, W) with int labels, read by sample index (in any process)."""

    @property
    def samples(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def classes(self) -> int: ...
    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class IdxSource:
    """MNIST-style IDX files (optionally .gz); each process loads them once (read_idx checks them)."""

    images: str
    labels: str
    samples: int
    shape: tuple[int, int]
    classes: int

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images, labels = idx_arrays(self.images, self.labels)
        return images[indices], labels[indices]


@lru_cache(maxsize=4)
def idx_arrays(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise HarnessError(
            f"{images}: need uint8 images of shape (n, H, W), found {x.dtype} {x.shape}"
        )
    if y.shape != (x.shape[0],) or y.min(initial=0) < 0:
        raise HarnessError(
            f"{labels}: need {x.shape[0]} non-negative labels, found shape {y.shape}"
        )
    return x, y


def open_idx(path: str) -> IdxSource:
    """`idx:DIR` (holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]) or
    `idx:IMAGES` (its labels named alike, `images-idx3` → `labels-idx1`)."""
    images, labels = _idx_pair(Path(path))
    x, y = idx_arrays(str(images), str(labels))
    return IdxSource(str(images), str(labels), len(y), (x.shape[1], x.shape[2]), int(y.max()) + 1)


def _idx_pair(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        pair = [_existing(path / name) for name in IDX_NAMES]
    else:
        pair = [path, path.with_name(path.name.replace("images-idx3", "labels-idx1"))]
    if pair[0] == pair[1] or not all(p.is_file() for p in pair):
        raise HarnessError(
            f"idx:{path}: need an images file and its labels file "
            f"(a folder with {IDX_NAMES[0]}[.gz] and {IDX_NAMES[1]}[.gz], or the images "
            f"file named *images-idx3*); found {', '.join(map(str, pair))}"
        )
    return pair[0], pair[1]


def _existing(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    return gz if not path.exists() and gz.exists() else path


def open_source(spec: str | None) -> Source:
    """`--data`: a `data make` folder, or idx:PATH for MNIST-style files."""
    if not spec:
        raise HarnessError(
            "this workload needs --data: a folder from `python -m harness data make`, "
            "or idx:PATH for MNIST-style IDX files"
        )
    return open_idx(spec[4:]) if spec.startswith("idx:") else open_shards(spec)


# ---- one batch: the task a worker runs ---------------------------------------------------------


@dataclass(frozen=True)
class BatchTask:
    epoch: int
    index: int  # position of the batch in its epoch
    samples: np.ndarray  # sample indices, in batch order


@dataclass(frozen=True)
class Batch:
    epoch: int
    index: int
    samples: np.ndarray
    x: np.ndarray  # (n, H*W) float64, decoded and augmented
    y: np.ndarray  # (n,) int64

    def digest(self) -> bytes:
        """sha256 of what a consumer sees: the inputs' and labels' bytes."""
        return hashlib.sha256(self.x.tobytes() + self.y.tobytes()).digest()


@dataclass(frozen=True)
class LoadBatch:
    """The per-batch work; a small picklable object, so process workers read the files themselves."""

    source: Source
    augment: str
    seed: int

    def __call__(self, task: BatchTask) -> Batch:
        images, labels = self.source.read(task.samples)  # read
        x = decode(images)  # decode
        x = augment_batch(x, self.augment, seed=self.seed, epoch=task.epoch, samples=task.samples)
        return Batch(task.epoch, task.index, task.samples, x.reshape(len(x), -1), labels)  # collate


def epoch_tasks(
    samples: int, batch: int, seed: int, epochs: int, drop_last: bool = False
) -> Iterator[BatchTask]:
    """Each epoch's shuffle, keyed by (seed, epoch), cut into batches; made lazily, one epoch at a time."""
    for epoch in range(epochs):
        order = rng_for(seed, SHUFFLE_DOMAIN, epoch).permutation(samples)
        stop = samples - samples % batch if drop_last else samples
        for index, begin in enumerate(range(0, stop, batch)):
            yield BatchTask(epoch, index, order[begin : begin + batch])


# ---- the pipeline --------------------------------------------------------------------------------


@dataclass
class PipelineStats:
    """Instrumentation: `peak_in_flight` is the most tasks ever submitted and not yet delivered."""

    bound: int
    submitted: int = 0
    delivered: int = 0
    peak_in_flight: int = 0


def stream(
    strategy: Strategy,
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    bound: int,
    ordered: bool = True,
    stats: PipelineStats | None = None,
) -> Iterator[R]:
    """fn over tasks with at most `bound` results ahead of the consumer. Close it (or exhaust it)
    to release the workers: use `contextlib.closing` where the consumer may stop early."""
    if bound < 1:
        raise HarnessError(f"{bound=} must be >= 1")
    stats = stats if stats is not None else PipelineStats(bound)
    pending: dict[Future[R], None] = {}  # insertion order = submission order
    source = iter(
        tasks
    )  # consumed by this generator alone: a shared iterator is unsafe without the GIL
    try:
        _top_up(strategy, fn, source, pending, stats)
        while pending:
            future = _next_ready(pending, ordered)
            del pending[future]
            result = future.result()  # a task's exception is raised here, with its traceback
            _top_up(strategy, fn, source, pending, stats)  # before yielding: workers keep busy
            stats.delivered += 1
            yield result
    finally:
        _drain(pending)


def _top_up(
    strategy: Strategy,
    fn: Callable[[T], R],
    source: Iterator[T],
    pending: dict[Future[R], None],
    stats: PipelineStats,
) -> None:
    for task in islice(source, stats.bound - len(pending)):
        pending[strategy.submit(fn, task)] = None
        stats.submitted += 1
        stats.peak_in_flight = max(stats.peak_in_flight, len(pending))


def _next_ready(pending: dict[Future[R], None], ordered: bool) -> Future[R]:
    """The oldest future (ordered) or the oldest finished one (unordered); a failed one first."""
    while True:
        done = [f for f in pending if f.done()]
        failed = [f for f in done if f.exception() is not None]
        if failed:
            return failed[0]
        if ordered and next(iter(pending)).done():
            return next(iter(pending))
        if not ordered and done:
            return done[0]
        _wait_any([f for f in pending if not f.done()])


def _wait_any(futures: list[Future[R]]) -> None:
    """Until one of `futures` is done, looking for a held-back Ctrl-C every POLL_S: raised inside
    concurrent.futures' wait, KeyboardInterrupt can leave a future's lock held (wait takes them
    one by one), and the pool's shutdown then hangs. Ctrl-C is raised once the wait has ended."""
    with ctrl_c_deferred() as interrupted:  # none left to wait for: one ended meanwhile
        while futures and not interrupted() and not wait(futures, POLL_S, FIRST_COMPLETED).done:
            pass


def _drain(pending: dict[Future[R], None]) -> None:
    """Cancel what has not started; wait for what has (bounded: at most `bound` tasks)."""
    for future in pending:
        future.cancel()
    with ctrl_c_deferred() as interrupted:  # as in _wait_any
        wait_unless(list(pending), interrupted)


def batches_digest(digests: list[bytes], ordered: bool) -> str:
    """One sha256 over per-batch digests: in delivery order, or sorted when order is not promised."""
    return hashlib.sha256(b"".join(digests if ordered else sorted(digests))).hexdigest()


# ---- training: full batches, prefetched, with a held-out test set ------------------------------


@dataclass
class TrainingFeed:
    """Full training batches from `--data` and the un-augmented held-out tail of the set."""

    batches: Iterator[Batch]
    x_test: np.ndarray
    y_test: np.ndarray
    stall_s: float = field(default=0.0)

    def next(self) -> Batch:
        """The next batch; the time spent waiting for it is the training loop's stall."""
        start = time.perf_counter()
        batch = next(self.batches)
        self.stall_s += time.perf_counter() - start
        return batch

    def close(self) -> None:
        self.batches.close()  # type: ignore[attr-defined]  (a generator)


def training_feed(config: RunConfig, strategy: Strategy, widths: tuple[int, ...]) -> TrainingFeed:
    """`config.steps` full batches from config.data; the last samples (at most test_samples, a
    fifth of the set) are held out for evaluation."""
    source = open_source(config.data)
    n_test = min(config.test_samples, source.samples // 5)
    n_train = source.samples - n_test
    _check_fits(config, source, widths, n_train, n_test)
    images, y_test = source.read(np.arange(n_train, source.samples))
    epochs = math.ceil(config.steps / (n_train // config.batch))
    tasks = islice(
        epoch_tasks(n_train, config.batch, config.seed, epochs, drop_last=True), config.steps
    )
    batches = stream(
        strategy,
        LoadBatch(source, config.augment, config.seed),
        tasks,
        bound=config.prefetch * config.workers,
        ordered=config.order == "ordered",
    )
    return TrainingFeed(batches, decode(images).reshape(n_test, -1), y_test)


def _check_fits(
    config: RunConfig, source: Source, widths: tuple[int, ...], n_train: int, n_test: int
) -> None:
    pixels = source.shape[0] * source.shape[1]
    if widths[0] != pixels or widths[-1] < source.classes:
        raise HarnessError(
            f"model={config.model!r} ({widths[0]} inputs, {widths[-1]} classes) does not fit "
            f"{config.data} ({source.shape[0]}x{source.shape[1]} = {pixels} pixels, {source.classes} "
            f"classes); use e.g. --model {pixels}-64-{source.classes}"
        )
    if n_test < 1 or n_train < config.batch:
        raise HarnessError(
            f"{config.data} has {source.samples} samples: too few for batch={config.batch} "
            f"plus a held-out fifth"
        )

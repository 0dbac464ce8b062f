"""Data-parallel SGD: each step's batch is cut into a FIXED number of microbatches.

Workers compute per-microbatch (summed) loss and gradient into their own row of a shared gradient
buffer; the harness adds the rows in microbatch order and takes one SGD step. The microbatches
do not depend on the worker count and the sum order is fixed, so the final parameters are
bitwise identical for every strategy and every worker count on one interpreter.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from harness import HarnessError
from harness.bench.matrix import (
    DATA,
    DATA_SHAPE,
    PLAIN_LOOP,
    PresetPart,
    WorkloadSpec,
    grid,
    runs,
)
from harness.config import RunConfig
from harness.data.pipeline import PIPELINE_OPTIONS, TrainingFeed, training_feed
from harness.model import params_digest
from harness.models import Model, workspace_for
from harness.options import Option
from harness.report import overhead
from harness.seeding import Domain, rng_for
from harness.workloads import ReportSection, workload
from harness.workloads.common import load_dataset, to_shared
from strategies.base import Strategy

SHUFFLE_DOMAIN = Domain.SHUFFLE


@dataclass(frozen=True)
class Microbatch:
    """One task: which rows of the training set, and which row of the gradient buffer."""

    index: int
    rows: np.ndarray


class MicrobatchGrad:
    """The task function: write a microbatch's summed gradient into grads[index], return its loss.

    Each worker thread builds its own workspace on first use (private views of the parameters
    and of every gradient row, private scratch) and keeps it for the whole run; a process worker
    gets a fresh copy of this object with each map, so it builds one per step.
    """

    def __init__(
        self,
        model: Model,
        params: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        grads: np.ndarray,
        rows: int,
    ) -> None:
        self.model, self.params, self.grads, self.rows = model, params, grads, rows
        self.x, self.y = x, y
        self._local = threading.local()

    def __call__(self, task: Microbatch) -> float:
        return self.for_this_thread()(task)

    def for_this_thread(self) -> ThreadMicrobatchGrad:
        """This thread's own task function (made on its first call, kept for the run): a map
        that asks for it (strategies.base.own_callable) calls no object another thread calls
        too."""
        try:
            return self._local.fn  # type: ignore[no-any-return]
        except AttributeError:
            self._local.fn = ThreadMicrobatchGrad(self)
            return self._local.fn  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}  # workspaces stay home

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


class ThreadMicrobatchGrad:
    """One thread's MicrobatchGrad: its workspace, gradient-row outputs and views of the
    inputs, all objects of its own, so in the inner loop only the microbatch list is a Python
    object that another thread also touches."""

    __slots__ = ("_work", "_outs", "_x", "_y")

    def __init__(self, shared: MicrobatchGrad) -> None:
        self._work = workspace_for(shared.model, shared.params, shared.rows)
        self._outs = [self._work.bind(row) for row in shared.grads]
        self._x, self._y = shared.x.view(), shared.y.view()

    def __call__(self, task: Microbatch) -> float:
        self._work.load(self._x, self._y, task.rows)
        return self._work.loss_and_grad(self._outs[task.index])


@lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, n_train: int) -> np.ndarray:
    """The shuffle of one epoch, keyed by (seed, epoch); cached, as every step of it reuses it."""
    order = rng_for(seed, SHUFFLE_DOMAIN, epoch).permutation(n_train)
    order.flags.writeable = False
    return order


def step_rows(config: RunConfig, step: int, n_train: int) -> np.ndarray:
    """The training rows of one step: a consecutive slice of the epoch's shuffle."""
    epoch, position = divmod(step, n_train // config.batch)
    return epoch_order(config.seed, epoch, n_train)[
        position * config.batch : (position + 1) * config.batch
    ]


def shuffled_steps(config: RunConfig, n_train: int) -> Iterator[list[Microbatch]]:
    """Every step's microbatches: the same task objects each step, their rows one buffer that
    each step refills with its slice of the shuffle (one copy, not 16 new objects in the
    serial part of every step); map() has returned before the next step refills it."""
    rows = np.empty((config.microbatches, config.microbatch_size), np.int64)
    microbatches = [Microbatch(m, rows[m]) for m in range(config.microbatches)]
    batch = rows.reshape(-1)  # a view of the same buffer, made once
    for step in itertools.count():
        batch[...] = step_rows(config, step, n_train)
        yield microbatches


@dataclass
class StepSource:
    """Where each step's microbatches come from: rows of x and y (shared arrays), one list of
    microbatches per step, and the held-out data; `feed` is set when batches come from --data."""

    x: np.ndarray
    y: np.ndarray
    steps: Iterator[list[Microbatch]]
    x_test: np.ndarray
    y_test: np.ndarray
    feed: TrainingFeed | None = None


def in_memory(config: RunConfig, strategy: Strategy, model: Model) -> StepSource:
    """The synthetic set, all of it in shared memory; a step names rows of it."""
    data = load_dataset(config, model)
    return StepSource(
        to_shared(strategy, data.x_train),
        to_shared(strategy, data.y_train),
        shuffled_steps(config, len(data.y_train)),
        data.x_test,
        data.y_test,
    )


def from_loader(config: RunConfig, strategy: Strategy, model: Model) -> StepSource:
    """Batches from the data pipeline (prefetched on the same strategy), each copied into one
    shared batch buffer; the microbatches are fixed slices of that buffer."""
    feed = training_feed(config, strategy, (model.n_inputs, model.n_classes))
    x = strategy.shared_array((config.batch, model.n_inputs))
    y = strategy.shared_array(config.batch, np.int64)
    size = config.microbatch_size
    rows = [Microbatch(m, np.arange(m * size, (m + 1) * size)) for m in range(config.microbatches)]
    return StepSource(x, y, _fill_each_step(feed, x, y, rows), feed.x_test, feed.y_test, feed)


def _fill_each_step(
    feed: TrainingFeed, x: np.ndarray, y: np.ndarray, rows: list[Microbatch]
) -> Iterator[list[Microbatch]]:
    while True:  # map() has returned before the next step overwrites the buffer
        batch = feed.next()
        x[...], y[...] = batch.x, batch.y
        yield rows


OPTIONS = (
    Option(name="steps", kind=int, default=50, minimum=1, help="SGD steps"),
    Option(
        name="microbatches",
        kind=int,
        default=16,
        minimum=1,
        help="tasks per step, fixed whatever the worker count (must divide --batch)",
    ),
    Option(
        name="momentum",
        kind=float,
        default=0.9,
        help="SGD momentum in [0, 1)",
        check=lambda m: "" if 0 <= m < 1 else "must be in [0, 1)",
    ),
    *PIPELINE_OPTIONS,
)


def check(config: RunConfig) -> None:
    """The microbatches cut the batch into equal parts."""
    if config.batch % config.microbatches:
        raise HarnessError(divide_message(config.batch, config.microbatches))


def divide_message(batch: int, microbatches: int) -> str:
    """The nearest valid values, in O(log) of the sizes: never a list of every divisor (a batch
    of 10**12 would take hours to factor that way)."""
    below = batch - batch % microbatches
    batches = " or ".join(str(b) for b in (below, below + microbatches) if b >= 1)
    return (
        f"microbatches={microbatches} must divide batch={batch}: e.g. --batch {batches}, "
        f"or --microbatches {math.gcd(batch, microbatches)}"
    )


def misfit(config: RunConfig) -> str:
    """Why a model cannot read the bench's on-disk images ('' if it can)."""
    if not config.data:
        return ""
    pixels = DATA_SHAPE[0] * DATA_SHAPE[1]
    inputs = config.build_model().n_inputs
    if inputs != pixels:
        return f"model {config.model} has {inputs} inputs; the on-disk set has {pixels} pixels"
    return ""


DISK = {f"disk-{a}": {"data": DATA, "augment": a} for a in ("python", "numpy")}
# the hand-written loop at serial's and threads x2's work, measured in the same rounds: the
# report's harness overhead (serial) and harness against the plain loop (threads)
PLAIN_LOOP_CELLS = grid("data-parallel", [(PLAIN_LOOP, 1), (PLAIN_LOOP, 2)], models=["tiny"])
BENCH = WorkloadSpec(
    unit="sample",
    units=lambda c: c.steps * c.batch,
    units_key="samples",
    digest_key="params_sha256",
    variants={"": {}, **DISK},
    misfit=misfit,
    presets={
        "quick": PresetPart(
            grids=(
                grid(
                    "data-parallel",
                    runs(["threads"], [1, 2, 4]) + [("processes", 2), ("asyncio", 2), ("blas", 2)],
                    models=["tiny"],
                ),
                PLAIN_LOOP_CELLS,
                grid("data-parallel", runs(["threads"], [2]), ["disk-python"], ["784-32-10"]),
            ),
            settings={"": {"steps": 60}, "disk-python": {"steps": 2, "batch": 256}},
        ),
        "full": PresetPart(
            grids=(
                grid(
                    "data-parallel",
                    runs(["threads", "processes", "asyncio", "blas"], [1, 2, 4]),
                    models=["tiny", "large"],
                ),
                PLAIN_LOOP_CELLS,
                grid(
                    "data-parallel",
                    runs(["threads", "processes"], [1, 2, 4]),
                    ["disk-python", "disk-numpy"],
                    ["784-64-10"],
                ),
            ),
            settings={
                "": {"steps": 200},
                "disk-python": {"steps": 16, "batch": 256},
                "disk-numpy": {"steps": 16, "batch": 256},
            },
        ),
        "scaling": PresetPart(
            grids=(
                grid(
                    "data-parallel",
                    runs(["threads"], [1, 2, 4, 8, 16])
                    + [("processes", w) for w in (2, 4, 8, 16)]
                    + [("asyncio", 16)],
                    models=["tiny"],
                ),
                # a model where NumPy's kernels, not Python, take most of the time
                grid(
                    "data-parallel",
                    runs(["threads", "blas"], [4, 16]) + [("processes", 16)],
                    models=["small"],
                ),
            ),
            # batch 4096 = 64 x 64 rows: the same microbatch size as the default 1024 = 16 x 64
            settings={"": {"steps": 20, "batch": 4096, "microbatches": 64}},
        ),
        "smoke": PresetPart(
            grids=(grid("data-parallel", runs(["threads"], [1, 2, 3]), models=["tiny"]),),
            settings={"": {"steps": 4, "batch": 256}},
        ),
    },
)


@workload(
    "data-parallel",
    "SGD with a fixed set of microbatches per step, reduced in order",
    options=OPTIONS,
    bench=BENCH,
    check=check,
    facts=("final_loss", "accuracy", "stall_fraction"),
    report=ReportSection(key=overhead.KEY, rows=overhead.rows, markdown=overhead.markdown),
)
def run_data_parallel(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    model = config.build_model()
    source = (from_loader if config.data else in_memory)(config, strategy, model)
    params = to_shared(strategy, model.init(config.seed))
    grads = strategy.shared_array((config.microbatches, model.size))
    task = MicrobatchGrad(model, params, source.x, source.y, grads, config.microbatch_size)
    velocity, step = np.zeros(model.size), np.empty(model.size)
    losses: list[float] = []

    start = time.perf_counter()
    try:
        for _, microbatches in zip(range(config.steps), source.steps):
            batch_losses = strategy.map(task, microbatches)
            losses.append(sum(batch_losses) / config.batch)  # Python floats, summed in task order
            # velocity = momentum * velocity + sum / batch; params -= lr * velocity (in place)
            mean_grad = np.divide(strategy.sum_rows(grads), config.batch, out=step)
            np.multiply(velocity, config.momentum, out=velocity)
            np.add(velocity, mean_grad, out=velocity)
            params -= np.multiply(velocity, config.lr, out=step)
    finally:
        if source.feed is not None:
            source.feed.close()  # stop the prefetch, also when a step fails
    wall = time.perf_counter() - start

    samples = config.steps * config.batch
    return {
        "steps": config.steps,
        "samples": samples,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "batch": config.batch,
        "microbatches": config.microbatches,
        **model.describe(),
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "test_loss": model.mean_loss(params, source.x_test, source.y_test),
        "accuracy": model.accuracy(params, source.x_test, source.y_test),
        "params_sha256": params_digest(params),
        **({"stall_fraction": source.feed.stall_s / wall} if source.feed is not None else {}),
    }

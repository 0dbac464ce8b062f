"""Data-parallel SGD: each step's batch is cut into a FIXED number of microbatches.

Workers compute per-microbatch (summed) loss and gradient into their own row of a shared gradient
buffer; the harness adds the rows in microbatch order and takes one SGD step. The microbatches
do not depend on the worker count and the sum order is fixed, so the final parameters are
bitwise identical for every strategy and every worker count on one interpreter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np

from harness.config import RunConfig
from harness.data import Dataset, synthetic
from harness.model import MLP, params_digest
from harness.seeding import rng_for
from harness.workloads import workload
from strategies.base import Strategy

SHUFFLE_DOMAIN = 4


@dataclass(frozen=True)
class Microbatch:
    """One task: which rows of the training set, and which row of the gradient buffer."""

    index: int
    rows: np.ndarray


def microbatch_grad(task: Microbatch, *, model: MLP, params: np.ndarray, x: np.ndarray,
                    y: np.ndarray, grads: np.ndarray) -> float:
    """Runs in a worker: write this microbatch's summed gradient into grads[index]."""
    loss, _ = model.loss_and_grad(params, x[task.rows], y[task.rows], out=grads[task.index])
    return loss


@lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, n_train: int) -> np.ndarray:
    """The shuffle of one epoch, keyed by (seed, epoch); cached, as every step of it reuses it."""
    order = rng_for(seed, SHUFFLE_DOMAIN, epoch).permutation(n_train)
    order.flags.writeable = False
    return order


def step_microbatches(config: RunConfig, step: int, n_train: int) -> list[Microbatch]:
    """The microbatches of one step: consecutive slices of the epoch's shuffle."""
    epoch, position = divmod(step, n_train // config.batch)
    batch = epoch_order(config.seed, epoch, n_train)[position * config.batch:(position + 1) * config.batch]
    size = config.microbatch_size
    return [Microbatch(m, batch[m * size:(m + 1) * size]) for m in range(config.microbatches)]


def sum_in_order(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + ... strictly left to right: the reduction order never varies."""
    total = rows[0].copy()
    for row in rows[1:]:
        total += row
    return total


def to_shared(strategy: Strategy, array: np.ndarray) -> np.ndarray:
    shared = strategy.shared_array(array.shape, array.dtype)
    shared[...] = array
    return shared


def load_dataset(config: RunConfig, model: MLP) -> Dataset:
    return synthetic(model.widths[0], model.widths[-1], config.train_samples,
                     config.test_samples, config.seed)


@workload("data-parallel", "SGD with a fixed set of microbatches per step, reduced in order")
def run_data_parallel(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    model = MLP(config.widths)
    data = load_dataset(config, model)
    params = to_shared(strategy, model.init(config.seed))
    grads = strategy.shared_array((config.microbatches, model.size))
    task = partial(microbatch_grad, model=model, params=params, grads=grads,
                   x=to_shared(strategy, data.x_train), y=to_shared(strategy, data.y_train))
    velocity = np.zeros(model.size)
    losses: list[float] = []

    start = time.perf_counter()
    for step in range(config.steps):
        batch_losses = strategy.map(task, step_microbatches(config, step, len(data.y_train)))
        strategy.publish_rows(grads)  # a no-op where workers share memory with us
        losses.append(sum(batch_losses) / config.batch)  # Python floats, summed in task order
        velocity = config.momentum * velocity + sum_in_order(grads) / config.batch
        params -= config.lr * velocity
    wall = time.perf_counter() - start

    samples = config.steps * config.batch
    return {
        "steps": config.steps, "samples": samples, "wall_s": wall, "samples_per_s": samples / wall,
        "batch": config.batch, "microbatches": config.microbatches, "model": list(model.widths),
        "parameters": model.size, "initial_loss": losses[0], "final_loss": losses[-1],
        "test_loss": model.mean_loss(params, data.x_test, data.y_test),
        "accuracy": model.accuracy(params, data.x_test, data.y_test),
        "params_sha256": params_digest(params),
    }

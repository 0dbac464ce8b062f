"""Asynchronous SGD: W workers update ONE shared parameter vector at the same time.

Each worker owns a partition of the training set and does U updates: read the shared parameters,
compute a minibatch gradient, apply `params -= lr * grad` under the update policy (one lock,
striped locks, or none: Hogwild!). Plain SGD, as in the Hogwild! paper: per-worker momentum would
mix staleness into the comparison of policies.

Which worker's write lands first depends on timing, so only W = 1 (or the serial strategy) is
reproducible bit for bit. `--probe` replaces the gradient by exact integer deltas and counts the
updates that races lost (see harness.params).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable

import numpy as np

from harness.config import RunConfig
from harness.data.synthetic import Dataset
from harness.model import MLP, params_digest
from harness.params import (ParamStore, open_store, probe_deltas, probe_expected, probe_report,
                            probe_worker, stripes_for)
from harness.seeding import rng_for
from harness.workloads import workload
from harness.workloads.common import load_dataset, to_shared
from strategies.base import Strategy

PARTITION_DOMAIN = 32  # SeedSequence keys: which rows each worker owns ...
MINIBATCH_DOMAIN = 33  # ... and which of them each of its updates samples


def partition(seed: int, slot: int, workers: int, n_train: int) -> np.ndarray:
    """Worker `slot`'s rows: its share of one seeded shuffle, disjoint from every other worker's."""
    return np.array_split(rng_for(seed, PARTITION_DOMAIN).permutation(n_train), workers)[slot]


def train_worker(slot: int, *, config: RunConfig, model: MLP, store: ParamStore, x: np.ndarray,
                 y: np.ndarray) -> float:
    """Runs in a worker: U updates from its own partition; returns its last minibatch's mean loss."""
    rows = partition(config.seed, slot, config.workers, len(y))
    rng = rng_for(config.seed, MINIBATCH_DOMAIN, slot)
    snapshot, grad = np.empty(model.size), np.empty(model.size)
    work = model.workspace(snapshot, config.batch)  # views of the snapshot and scratch, once
    out = work.bind(grad)
    step = -config.lr / config.batch  # the summed gradient becomes the SGD step
    loss = 0.0
    for _ in range(config.updates):
        store.read(snapshot)  # a private copy: the gradient sees one state, not a moving one
        work.load(x, y, rng.choice(rows, size=config.batch))
        loss = work.loss_and_grad(out)
        grad *= step
        store.add(grad)
    return loss / config.batch


def timed_map(strategy: Strategy, task: Callable[[int], Any], workers: int) -> tuple[list[Any], float]:
    """One task per worker slot, all at once; the results and the wall time."""
    start = time.perf_counter()
    results = strategy.map(task, range(workers))
    return results, time.perf_counter() - start


def update_rates(config: RunConfig, wall: float, samples_per_update: int | None) -> dict[str, Any]:
    """The counters every async-sgd result carries, training or probe (None: a probe reads no
    samples, so it has no sample rate to show)."""
    total = config.workers * config.updates
    samples = None if samples_per_update is None else total * samples_per_update
    return {"policy": config.policy, "updates": config.updates, "steps": total, "wall_s": wall,
            "updates_per_s": total / wall, "samples": samples,
            "samples_per_s": None if samples is None else samples / wall}


def shared_store(config: RunConfig, strategy: Strategy, model: MLP, initial: np.ndarray) -> ParamStore:
    """The parameters in shared memory, cut and locked as the configured policy says."""
    return open_store(strategy, initial, stripes_for(config.policy, model, config.stripes), config.policy)


def layout(store: ParamStore, model: MLP) -> dict[str, Any]:
    """How the store was cut: what a reader needs to compare policies."""
    return {"model": list(model.widths), "parameters": model.size, "stripes": len(store.stripes),
            "locks": store.lock_count}


def train(config: RunConfig, strategy: Strategy, model: MLP, data: Dataset) -> dict[str, Any]:
    """Training mode: W * U asynchronous updates, then the held-out loss and accuracy."""
    initial = model.init(config.seed)
    store = shared_store(config, strategy, model, initial)
    task = partial(train_worker, config=config, model=model, store=store,
                   x=to_shared(strategy, data.x_train), y=to_shared(strategy, data.y_train))
    worker_losses, wall = timed_map(strategy, task, config.workers)

    params = store.params
    return {**update_rates(config, wall, config.batch), **layout(store, model),
            "initial_loss": model.mean_loss(initial, data.x_test, data.y_test),
            "final_loss": model.mean_loss(params, data.x_test, data.y_test),
            "accuracy": model.accuracy(params, data.x_test, data.y_test),
            "worker_losses": worker_losses, "params_sha256": params_digest(params)}


def probe(config: RunConfig, strategy: Strategy, model: MLP) -> dict[str, Any]:
    """Probe mode: the same updates with exact integer deltas, and what races lost of them."""
    store = shared_store(config, strategy, model, np.zeros(model.size))
    deltas = to_shared(strategy, probe_deltas(config.seed, config.workers, model.size))
    task = partial(probe_worker, store=store, deltas=deltas, updates=config.updates)
    _, wall = timed_map(strategy, task, config.workers)

    # No training happened: there is no loss or accuracy to report.
    return {**update_rates(config, wall, None), **layout(store, model),
            **probe_report(probe_expected(deltas, config.updates), store.params),
            "final_loss": None, "accuracy": None, "params_sha256": params_digest(store.params)}


@workload("async-sgd", "W workers updating shared weights at once: one lock, striped locks or Hogwild!")
def run_async_sgd(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    model = MLP(config.widths)
    if config.probe:
        return probe(config, strategy, model)
    return train(config, strategy, model, load_dataset(config, model))

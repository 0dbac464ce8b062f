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
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from harness import HarnessError
from harness.bench.matrix import PresetPart, WorkloadSpec, grid, runs
from harness.config import RunConfig
from harness.data.synthetic import Dataset
from harness.model import params_digest
from harness.models import Model, workspace_for
from harness.options import Option
from harness.params import (
    ParamStore,
    open_store,
    probe_deltas,
    probe_expected,
    probe_report,
    probe_worker,
    stripes_for,
)
from harness.seeding import Domain, rng_for
from harness.workloads import ReportSection, workload
from harness.workloads.common import load_dataset, to_shared
from strategies.base import Strategy

PARTITION_DOMAIN = Domain.PARTITION
MINIBATCH_DOMAIN = Domain.MINIBATCH


def partition(seed: int, slot: int, workers: int, n_train: int) -> np.ndarray:
    """Worker `slot`'s rows: its share of one seeded shuffle, disjoint from every other worker's."""
    return np.array_split(rng_for(seed, PARTITION_DOMAIN).permutation(n_train), workers)[slot]


def train_worker(
    slot: int, *, config: RunConfig, model: Model, store: ParamStore, x: np.ndarray, y: np.ndarray
) -> float:
    """Runs in a worker: U updates from its own partition; returns its last minibatch's mean loss."""
    rows = partition(config.seed, slot, config.workers, len(y))
    rng = rng_for(config.seed, MINIBATCH_DOMAIN, slot)
    snapshot, grad = np.empty(model.size), np.empty(model.size)
    work = workspace_for(model, snapshot, config.batch)  # views of the snapshot and scratch, once
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


def timed_map(
    strategy: Strategy, task: Callable[[int], Any], workers: int
) -> tuple[list[Any], float]:
    """One task per worker slot, all at once; the results and the wall time."""
    start = time.perf_counter()
    results = strategy.map(task, range(workers))
    return results, time.perf_counter() - start


def update_rates(config: RunConfig, wall: float, samples_per_update: int | None) -> dict[str, Any]:
    """The counters every async-sgd result carries, training or probe (None: a probe reads no
    samples, so it has no sample rate to show)."""
    total = config.workers * config.updates
    samples = None if samples_per_update is None else total * samples_per_update
    return {
        "policy": config.policy,
        "updates": config.updates,
        "steps": total,
        "wall_s": wall,
        "updates_per_s": total / wall,
        "samples": samples,
        "samples_per_s": None if samples is None else samples / wall,
    }


def shared_store(
    config: RunConfig, strategy: Strategy, model: Model, initial: np.ndarray
) -> ParamStore:
    """The parameters in shared memory, cut and locked as the configured policy says."""
    return open_store(
        strategy, initial, stripes_for(config.policy, model, config.stripes), config.policy
    )


def layout(store: ParamStore, model: Model) -> dict[str, Any]:
    """How the store was cut: what a reader needs to compare policies."""
    return {**model.describe(), "stripes": len(store.stripes), "locks": store.lock_count}


def train(config: RunConfig, strategy: Strategy, model: Model, data: Dataset) -> dict[str, Any]:
    """Training mode: W * U asynchronous updates, then the held-out loss and accuracy."""
    initial = model.init(config.seed)
    store = shared_store(config, strategy, model, initial)
    task = partial(
        train_worker,
        config=config,
        model=model,
        store=store,
        x=to_shared(strategy, data.x_train),
        y=to_shared(strategy, data.y_train),
    )
    worker_losses, wall = timed_map(strategy, task, config.workers)

    params = store.params
    return {
        **update_rates(config, wall, config.batch),
        **layout(store, model),
        "initial_loss": model.mean_loss(initial, data.x_test, data.y_test),
        "final_loss": model.mean_loss(params, data.x_test, data.y_test),
        "accuracy": model.accuracy(params, data.x_test, data.y_test),
        "worker_losses": worker_losses,
        "params_sha256": params_digest(params),
    }


def probe(config: RunConfig, strategy: Strategy, model: Model) -> dict[str, Any]:
    """Probe mode: the same updates with exact integer deltas, and what races lost of them."""
    store = shared_store(config, strategy, model, np.zeros(model.size))
    deltas = to_shared(strategy, probe_deltas(config.seed, config.workers, model.size))
    task = partial(probe_worker, store=store, deltas=deltas, updates=config.updates)
    _, wall = timed_map(strategy, task, config.workers)

    # No training happened: there is no loss or accuracy to report.
    return {
        **update_rates(config, wall, None),
        **layout(store, model),
        **probe_report(probe_expected(deltas, config.updates), store.params),
        "final_loss": None,
        "accuracy": None,
        "params_sha256": params_digest(store.params),
    }


POLICIES = ("lock", "striped", "hogwild")
OPTIONS = (
    Option(
        name="policy",
        default="lock",
        choices=POLICIES,
        help="what guards a write: one lock, striped locks, or nothing (Hogwild!)",
    ),
    Option(name="updates", kind=int, default=100, minimum=1, help="updates per worker"),
    Option(
        name="stripes",
        kind=int,
        minimum=1,
        help="equal slices for --policy striped (default: one per part of the model)",
    ),
    Option(
        name="probe",
        kind=bool,
        default=False,
        help="count lost updates exactly (integer deltas instead of gradients)",
    ),
)


def check(config: RunConfig) -> None:
    if config.stripes is not None and config.stripes > config.parameters:
        raise HarnessError(
            f"stripes={config.stripes} is more than the {config.parameters} "
            f"parameters of model={config.model!r}"
        )


BENCH = WorkloadSpec(
    unit="update",
    units=lambda c: c.workers * c.updates,
    units_key="steps",
    digest_key="params_sha256",
    variants={p: {"policy": p} for p in POLICIES},
    probe={"probe": True},  # the exact lost-update count comes from the probe mode
    presets={
        "quick": PresetPart(
            grids=(grid("async-sgd", runs(["threads"], [2]), POLICIES, ["tiny"]),),
            settings={"": {"updates": 400, "batch": 64}},
        ),
        "full": PresetPart(
            grids=(
                grid(
                    "async-sgd",
                    runs(["threads", "processes"], [1, 2, 4]),
                    POLICIES,
                    ["tiny", "large"],
                ),
            ),
            settings={"": {"updates": 2000, "batch": 64}},
        ),
        "scaling": PresetPart(
            grids=(grid("async-sgd", runs(["threads"], [4, 16]), ["lock", "hogwild"], ["tiny"]),),
            settings={"": {"updates": 400, "batch": 64}},
        ),
        "smoke": PresetPart(
            grids=(grid("async-sgd", runs(["threads"], [2]), ["hogwild"], ["tiny"]),),
            settings={"": {"updates": 30, "batch": 32}},
        ),
    },
)


def report_rows(index: Any) -> list[dict[str, Any]]:
    """Update rates, and the lost updates the probe counted (once per pyperf process)."""
    from harness.report.summary import vs_serial

    rows = []
    for m in index.of("async-sgd"):
        lost = m.run_facts("ft_lost_updates")
        rows.append(
            {
                "configuration": m.config,
                "name": m.cell.name,
                "policy": m.cell.variant,
                "strategy": m.cell.strategy,
                "workers": m.cell.workers,
                "updates_per_s": m.rate,
                "vs_serial": vs_serial(index, m),
                "lost_updates_mean": m.mean_fact("ft_lost_updates"),
                "lost_updates_max": max(lost) if lost else None,
                "lost_fraction_mean": m.mean_fact("ft_lost_fraction"),
                "probes": len(lost),
            }
        )
    return rows


def report_markdown(s: dict[str, Any]) -> str:
    from harness.report.markdown import optional, rate, table
    from harness.report.rawdata import speedup_label

    if not s["async_sgd"]:
        return ""
    rows = [
        [
            r["configuration"],
            f"`{r['name']}`",
            r["policy"],
            rate(r["updates_per_s"]),
            speedup_label(r["vs_serial"]) if r["vs_serial"] else "baseline",
            optional(r["lost_updates_mean"], ".1f"),
            optional(r["lost_updates_max"], "d"),
            optional(r["lost_fraction_mean"], ".2e"),
            str(r["probes"]),
        ]
        for r in s["async_sgd"]
    ]
    return (
        "## async-sgd: update throughput and lost updates\n\nLost updates come from the exact probe "
        "(integer deltas instead of gradients, run once per pyperf process before timing): updates a "
        "race overwrote, mean and worst over the probes.\n\n"
        + table(
            [
                "config",
                "benchmark",
                "policy",
                "updates/s",
                "vs serial",
                "lost (mean)",
                "lost (max)",
                "lost fraction",
                "probes",
            ],
            rows,
        )
    )


@workload(
    "async-sgd",
    "W workers updating shared weights at once: one lock, striped locks or Hogwild!",
    options=OPTIONS,
    bench=BENCH,
    check=check,
    facts=("final_loss", "accuracy", "lost_updates", "lost_fraction", "stripes", "locks"),
    report=ReportSection(key="async_sgd", rows=report_rows, markdown=report_markdown),
)
def run_async_sgd(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    model = config.build_model()
    if config.probe:
        return probe(config, strategy, model)
    return train(config, strategy, model, load_dataset(config, model))

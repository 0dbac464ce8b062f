"""Workload `predict`: inference throughput. The model, initialised from the seed, predicts every
row of the synthetic set `--passes` times; each task is `--batch` consecutive rows.

The predictions are hashed (`predictions_sha256`): the same for every strategy and worker count,
which the bench checks cell by cell as it does data-parallel's parameters.
"""

from __future__ import annotations

import hashlib
import time
from functools import partial
from typing import Any

import numpy as np

from harness.bench.matrix import PresetPart, WorkloadSpec, grid, runs
from harness.config import RunConfig
from harness.models import Model
from harness.options import Option
from harness.workloads import workload
from harness.workloads.common import load_dataset, to_shared
from strategies.base import Strategy

OPTIONS = (
    Option(
        name="passes",
        kind=int,
        default=5,
        minimum=1,
        help="passes over the set (predict; default 5)",
    ),
)


def predict_rows(rows: slice, *, model: Model, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Runs in a worker: the labels predicted for one block of rows."""
    return np.asarray(model.predict(params, x[rows]), dtype=np.int64)


BENCH = WorkloadSpec(
    unit="sample",
    units=lambda c: c.passes * c.train_samples,
    units_key="samples",
    digest_key="predictions_sha256",
    variants={"": {}},
    presets={
        # built-in strategies only in quick: a user's quick bench gains a few short cells
        "quick": PresetPart(
            grids=(grid("predict", runs(["threads"], [2]), models=["softmax"]),),
            settings={"": {"passes": 10}},
        ),
        "smoke": PresetPart(
            grids=(grid("predict", runs(["queue"], [2]), models=["softmax"]),),
            settings={"": {"passes": 2, "train_samples": 1024, "batch": 256}},
        ),
    },
)


@workload(
    "predict",
    "inference throughput: every row predicted, --batch rows per task (example plug-in)",
    options=OPTIONS,
    bench=BENCH,
    facts=("accuracy",),
)
def run_predict(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    model = config.build_model()
    data = load_dataset(config, model)
    x, params = to_shared(strategy, data.x_train), to_shared(strategy, model.init(config.seed))
    n = len(x)
    blocks = [slice(start, min(start + config.batch, n)) for start in range(0, n, config.batch)]
    task = partial(predict_rows, model=model, params=params, x=x)

    start = time.perf_counter()
    for _ in range(config.passes):
        predicted = strategy.map(task, blocks)
    wall = time.perf_counter() - start

    labels = np.concatenate(predicted)
    samples = config.passes * n
    return {
        "samples": samples,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "passes": config.passes,
        "batch": config.batch,
        "tasks": len(blocks),
        **model.describe(),
        "accuracy": float((labels == data.y_train).mean()),
        "predictions_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
    }

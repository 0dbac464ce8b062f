"""Oracles that do not share the code under test.

The determinism properties compare each strategy with serial, but both run the same workload code
and the same reduction, so a bug there (a wrong divisor, a dropped row, metrics on the wrong
split, a reversed sum) passes them. Here the expected values come from math written out in this
file: the MLP's forward and backward pass and the SGD + momentum update, in plain NumPy.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import pytest

from harness.config import RunConfig
from harness.data.synthetic import synthetic
from harness.model import MLP, params_digest
from harness.workloads.async_sgd import run_async_sgd
from harness.workloads.data_parallel import run_data_parallel, shuffled_steps
from strategies import REGISTRY, create
from strategies.base import sum_in_order
from strategies.serial import Serial

WIDTHS = (12, 9, 7, 5)  # two hidden layers: the backward pass goes through a ReLU twice
RTOL = 1e-10  # summation order differs from the harness's: rounding only, far below any bug


class RecordingSerial(Serial):
    """The serial strategy, keeping every array it hands out, so the test can read the final
    parameters the workload trained in place (a run reports only their digest)."""

    name = "serial"

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self.arrays: list[np.ndarray] = []

    def shared_array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        array = super().shared_array(shape, dtype)
        self.arrays.append(array)
        return array


def parameters_of(strategy: RecordingSerial, size: int, digest: str) -> np.ndarray:
    """The one float64 vector of the model's size among the arrays handed out, checked by digest."""
    found = [a for a in strategy.arrays if a.shape == (size,) and a.dtype == np.float64]
    assert len(found) == 1 and params_digest(found[0]) == digest
    return found[0]


# ---- the test's own MLP: layout, forward, backward -----------------------------------------------


def unpack(flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layer by layer: W (n_in x n_out, row-major) then its bias, packed one after another."""
    layers, at = [], 0
    for n_in, n_out in itertools.pairwise(WIDTHS):
        w = flat[at : at + n_in * n_out].reshape(n_in, n_out)
        at += n_in * n_out
        layers.append((w, flat[at : at + n_out]))
        at += n_out
    assert at == flat.size
    return layers


def mean_loss_and_grad(flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over all rows and its gradient, by the chain rule."""
    layers = unpack(flat)
    inputs, h = [], x
    for i, (w, b) in enumerate(layers):
        inputs.append(h)
        z = h @ w + b
        h = z if i == len(layers) - 1 else np.maximum(z, 0.0)
    p = np.exp(h - h.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y]).mean())
    d = p.copy()
    d[np.arange(len(y)), y] -= 1.0
    d /= len(y)
    grads = []
    for (w, _), a in zip(reversed(layers), reversed(inputs)):
        grads.append((a.T @ d, d.sum(axis=0)))
        d = (d @ w.T) * (a > 0)  # a > 0 is where the ReLU that produced a was active
    return loss, np.concatenate([part.ravel() for gw, gb in reversed(grads) for part in (gw, gb)])


def accuracy(flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    h = x
    for i, (w, b) in enumerate(unpack(flat)):
        h = h @ w + b if i == len(WIDTHS) - 2 else np.maximum(h @ w + b, 0.0)
    return float(np.mean(h.argmax(axis=1) == y))


def full_batch_sgd(
    config: RunConfig, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """`config.steps` steps of SGD with momentum on the whole (x, y): v = mu v + g, p = p - lr v."""
    params, velocity, losses = MLP(WIDTHS).init(config.seed), np.zeros(MLP(WIDTHS).size), []
    for _ in range(config.steps):
        loss, grad = mean_loss_and_grad(params, x, y)
        losses.append(loss)
        velocity = config.momentum * velocity + grad
        params = params - config.lr * velocity
    return params, losses


# ---- data-parallel: one run against the oracle ---------------------------------------------------


def dp_config(**options: Any) -> RunConfig:
    # train_samples == batch: every step's batch is the whole training set (in a shuffled order,
    # which a sum over rows does not see), so the oracle needs no knowledge of the shuffle.
    base = {
        "workload": "data-parallel",
        "model": "-".join(map(str, WIDTHS)),
        "batch": 24,
        "microbatches": 4,
        "train_samples": 24,
        "test_samples": 40,
        "steps": 3,
        "lr": 0.3,
        "momentum": 0.9,
        "seed": 11,
    }
    return RunConfig(**{**base, **options})


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_data_parallel_steps_equal_full_batch_sgd_with_momentum(momentum: float) -> None:
    """Catches: dividing by the microbatch size (or not at all), dropping rows of a microbatch,
    skipping or misapplying momentum, a wrong learning-rate factor, a wrong loss average."""
    config = dp_config(momentum=momentum)
    data = synthetic(WIDTHS[0], WIDTHS[-1], config.train_samples, config.test_samples, config.seed)
    with RecordingSerial() as strategy:
        result = run_data_parallel(config, strategy)
        params = parameters_of(strategy, MLP(WIDTHS).size, result["params_sha256"])
    expected, losses = full_batch_sgd(config, data.x_train, data.y_train)
    assert not np.allclose(expected, MLP(WIDTHS).init(config.seed))  # the steps did move
    np.testing.assert_allclose(params, expected, rtol=RTOL, atol=1e-13)
    assert result["initial_loss"] == pytest.approx(losses[0], rel=RTOL)
    assert result["final_loss"] == pytest.approx(losses[-1], rel=RTOL)


def test_data_parallel_held_out_metrics_are_on_the_held_out_split() -> None:
    """test_loss and accuracy are the trained model's, on the test rows, computed here."""
    config = dp_config()
    data = synthetic(WIDTHS[0], WIDTHS[-1], config.train_samples, config.test_samples, config.seed)
    with RecordingSerial() as strategy:
        result = run_data_parallel(config, strategy)
        params = parameters_of(strategy, MLP(WIDTHS).size, result["params_sha256"]).copy()
    test_loss = mean_loss_and_grad(params, data.x_test, data.y_test)[0]
    assert result["test_loss"] == pytest.approx(test_loss, rel=RTOL)
    assert result["accuracy"] == accuracy(params, data.x_test, data.y_test)
    # Sanity of the oracle: on the training rows the numbers are different ones.
    train_loss = mean_loss_and_grad(params, data.x_train, data.y_train)[0]
    assert train_loss != pytest.approx(test_loss)


def test_async_sgd_held_out_metrics_are_on_the_held_out_split() -> None:
    config = RunConfig(
        workload="async-sgd",
        model="-".join(map(str, WIDTHS)),
        batch=8,
        updates=30,
        train_samples=64,
        test_samples=40,
        seed=4,
        lr=0.2,
    )
    data = synthetic(WIDTHS[0], WIDTHS[-1], config.train_samples, config.test_samples, config.seed)
    with RecordingSerial() as strategy:
        result = run_async_sgd(config, strategy)
        params = parameters_of(strategy, MLP(WIDTHS).size, result["params_sha256"]).copy()
    initial = MLP(WIDTHS).init(config.seed)
    before = mean_loss_and_grad(initial, data.x_test, data.y_test)[0]
    after = mean_loss_and_grad(params, data.x_test, data.y_test)[0]
    assert result["initial_loss"] == pytest.approx(before, rel=RTOL)
    assert result["final_loss"] == pytest.approx(after, rel=RTOL)
    assert result["accuracy"] == accuracy(params, data.x_test, data.y_test)


# ---- the microbatches of a step ------------------------------------------------------------------


def steps_rows(config: RunConfig, steps: int, n_train: int) -> list[list[list[int]]]:
    """Each step's microbatches' rows, read while the step is current (the buffer is reused)."""
    return [
        [mb.rows.tolist() for mb in microbatches]
        for microbatches in itertools.islice(shuffled_steps(config, n_train), steps)
    ]


@pytest.mark.parametrize("n_train", [36, 40])  # 40: four rows left out of each epoch
def test_microbatches_cover_each_row_once_per_epoch_and_reshuffle(n_train: int) -> None:
    config = dp_config(batch=12, microbatches=3, train_samples=n_train)
    for microbatches in itertools.islice(shuffled_steps(config, n_train), 6):
        assert [mb.index for mb in microbatches] == [0, 1, 2]  # one gradient row each
        assert [len(mb.rows) for mb in microbatches] == [4, 4, 4]
    per_epoch = n_train // config.batch  # 3 steps
    steps = steps_rows(config, 2 * per_epoch, n_train)
    epochs = [
        [rows for step in steps[e * per_epoch : (e + 1) * per_epoch] for rows in step]
        for e in range(2)
    ]
    for rows in epochs:
        flat = [r for microbatch in rows for r in microbatch]
        assert len(flat) == len(set(flat)) == 36 and set(flat) <= set(range(n_train))
    assert epochs[0] != epochs[1]  # a new shuffle each epoch
    assert [sorted(mb) for mb in epochs[0]] != [sorted(mb) for mb in epochs[1]]


# ---- the in-order sum ----------------------------------------------------------------------------


def order_sensitive_rows(rows: int = 7, columns: int = 48) -> np.ndarray:
    """Values of very different magnitudes and signs, so float addition order shows."""
    rng = np.random.default_rng(2024)
    values = rng.choice([-1.0, 1.0], (rows, columns)) * 10.0 ** rng.uniform(-3, 17, (rows, columns))
    values[:3, 0] = [1.0, 1e16, -1e16]  # left to right: 0.0; right to left: 1.0
    values[3:, 0] = 0.0
    return values


def left_to_right(rows: np.ndarray) -> np.ndarray:
    """Each column folded with Python floats: ((r0 + r1) + r2) + ..."""
    return np.array([functools.reduce(lambda s, v: s + v, map(float, col)) for col in rows.T])


def test_order_matters_for_these_values() -> None:
    rows = order_sensitive_rows()
    assert not np.array_equal(left_to_right(rows), left_to_right(rows[::-1]))
    assert left_to_right(rows)[0] == 0.0


def test_sum_in_order_adds_left_to_right() -> None:
    rows = order_sensitive_rows()
    np.testing.assert_array_equal(sum_in_order(rows), left_to_right(rows))


def write_row(task: tuple[np.ndarray, np.ndarray, int]) -> None:
    shared, rows, i = task
    shared[i] = rows[i]


# mpi and spmd map only inside run_workload: tests/test_mpi.py, tests/test_spmd.py
@pytest.mark.parametrize("name", sorted(n for n, cls in REGISTRY.items() if not cls.spmd))
def test_strategy_sum_rows_adds_left_to_right(name: str) -> None:
    rows = order_sensitive_rows()
    with create(name, 2) as strategy:
        shared, source = strategy.shared_array(rows.shape), strategy.shared_array(rows.shape)
        source[...] = rows
        strategy.map(write_row, [(shared, source, i) for i in range(len(rows))])
        np.testing.assert_array_equal(strategy.sum_rows(shared), left_to_right(rows))

"""The MLP: flat-buffer layout, deterministic init, and the backward pass against finite differences."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import MLP, params_digest
from harness.seeding import rng_for

widths_strategy = st.lists(st.integers(2, 6), min_size=2, max_size=4).map(tuple)


def numeric_gradient(model: MLP, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Central differences of the summed loss, one coordinate at a time."""
    eps, grad = 1e-6, np.empty_like(flat)
    for i in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (model.loss_and_grad(plus, x, y)[0] - model.loss_and_grad(minus, x, y)[0]) / (2 * eps)
    return grad


@settings(max_examples=20)
@given(widths=widths_strategy, seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5))
def test_backward_matches_finite_differences(widths: tuple[int, ...], seed: int, rows: int) -> None:
    model = MLP(widths)
    rng = rng_for(seed, 99)
    flat = model.init(seed) + 0.1 * rng.standard_normal(model.size)  # nonzero biases too
    x = rng.standard_normal((rows, widths[0]))
    y = rng.integers(0, widths[-1], rows)
    _, analytic = model.loss_and_grad(flat, x, y)
    np.testing.assert_allclose(analytic, numeric_gradient(model, flat, x, y), rtol=1e-5, atol=1e-6)


def test_views_write_through_to_the_flat_buffer() -> None:
    model = MLP((4, 3, 2))
    flat = np.zeros(model.size)
    (w0, b0), (w1, b1) = model.views(flat)
    w0[...], b1[...] = 1.0, 2.0
    assert model.size == 4 * 3 + 3 + 3 * 2 + 2
    assert flat[:12].tolist() == [1.0] * 12 and flat[-2:].tolist() == [2.0, 2.0]
    assert np.shares_memory(w1, flat) and np.shares_memory(b0, flat)


def test_init_depends_only_on_seed() -> None:
    model = MLP((8, 5, 3))
    assert params_digest(model.init(7)) == params_digest(model.init(7))
    assert params_digest(model.init(7)) != params_digest(model.init(8))


def test_summed_loss_splits_over_rows() -> None:
    """Microbatch results add up to the batch result: the basis of data-parallel reduction."""
    model = MLP((6, 5, 3))
    flat, rng = model.init(1), rng_for(1, 98)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    loss, grad = model.loss_and_grad(flat, x, y)
    parts = [model.loss_and_grad(flat, x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)]
    assert np.isclose(loss, sum(p[0] for p in parts))
    np.testing.assert_allclose(grad, sum(p[1] for p in parts), rtol=1e-12, atol=1e-12)

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
        grad[i] = (model.loss_and_grad(plus, x, y)[0] - model.loss_and_grad(minus, x, y)[0]) / (
            2 * eps
        )
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
    parts = [model.loss_and_grad(flat, x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]
    assert np.isclose(loss, sum(p[0] for p in parts))
    np.testing.assert_allclose(grad, sum(p[1] for p in parts), rtol=1e-12, atol=1e-12)


def textbook_loss_and_grad(
    model: MLP, flat: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """The expressions the workspace computes in place, evaluated afresh (the pre-issue-11 code):
    the oracle for 'bitwise the same', independent of the workspace's buffers."""
    grad = np.empty(model.size)
    acts, views = [x], model.views(flat)
    for w, b in views[:-1]:
        acts.append(np.maximum(acts[-1] @ w + b, 0.0))
    logits = acts[-1] @ views[-1][0] + views[-1][1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = float(-(shifted[rows, y] - log_norm[:, 0]).sum())
    delta = np.exp(shifted - log_norm)
    delta[rows, y] -= 1.0
    for (w, _), (gw, gb), act in zip(reversed(views), reversed(model.views(grad)), reversed(acts)):
        np.matmul(act.T, delta, out=gw)
        gb[...] = delta.sum(axis=0)
        if act is not x:
            delta = (delta @ w.T) * (act > 0)
    return loss, grad


@settings(max_examples=15)
@given(widths=widths_strategy, seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 9))
def test_a_reused_workspace_is_bitwise_the_textbook_expressions(
    widths: tuple[int, ...], seed: int, rows: int
) -> None:
    """Catches scratch state leaking from one call into the next (a buffer not fully rewritten)
    and any reordering of the arithmetic: each of three different microbatches, through ONE
    workspace, must equal the freshly evaluated expressions bit for bit."""
    model = MLP(widths)
    rng = rng_for(seed, 97)
    flat = model.init(seed) + 0.1 * rng.standard_normal(model.size)
    x = rng.standard_normal((3 * rows, widths[0]))
    y = rng.integers(0, widths[-1], 3 * rows)
    work, grad = model.workspace(flat, rows), np.empty(model.size)
    out = work.bind(grad)
    for part in range(3):
        picked = np.arange(part * rows, (part + 1) * rows)[::-1]  # fancy-indexed, not a slice
        work.load(x, y, picked)
        loss = work.loss_and_grad(out)
        want_loss, want_grad = textbook_loss_and_grad(model, flat, x[picked], y[picked])
        assert loss == want_loss
        assert params_digest(grad) == params_digest(want_grad)


def test_a_workspace_sees_parameter_updates_and_writes_only_its_bound_row() -> None:
    """Its views are of the live buffer (an SGD step between calls must be seen) and the gradient
    goes through the bound views into that row of a shared gradient buffer, nowhere else."""
    model = MLP((5, 4, 3))
    flat, rng = model.init(3), rng_for(3, 96)
    x, y = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    grads = np.zeros((2, model.size))
    work = model.workspace(flat, 4)
    work.load(x, y, np.arange(4))
    work.loss_and_grad(work.bind(grads[1]))
    assert not grads[0].any() and params_digest(grads[1]) == params_digest(
        textbook_loss_and_grad(model, flat, x, y)[1]
    )
    flat -= 0.5 * grads[1]  # in place, as the training loop updates the shared parameters
    loss = work.loss_and_grad(work.bind(grads[0]))
    assert loss == textbook_loss_and_grad(model, flat, x, y)[0]

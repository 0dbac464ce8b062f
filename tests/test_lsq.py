"""The bounded least-squares solver and its profile intervals, on problems solved by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.lsq import Problem, interval


def linear(
    x: np.ndarray, y: np.ndarray, s: np.ndarray, lower: float = -np.inf, upper: float = np.inf
) -> Problem:
    """y = a·x with standard errors s: the weighted fit of one slope."""
    return Problem(
        lambda a: (y - a[0] * x) / s,
        lambda a: (-x / s)[:, None],
        np.array([lower]),
        np.array([upper]),
        (np.array([0.0]),),
    )


def test_a_target_outside_the_box_ends_on_its_bounds() -> None:
    target = np.array([3.0, -2.0, 0.5])
    box = Problem(
        lambda v: v - target,
        lambda v: np.eye(3),
        np.zeros(3),
        np.ones(3),
        (np.array([0.5, 0.5, 0.5]),),
    )
    x, cost = box.solve()
    assert x.tolist() == [1.0, 0.0, pytest.approx(0.5, abs=1e-12)]
    assert cost == pytest.approx(2.0**2 + 2.0**2)


def rosenbrock(upper: float) -> Problem:
    """(1 − a)² + 100(b − a²)²; its minimum is (1, 1), or (u, u²) with a held at u < 1."""
    return Problem(
        lambda v: np.array([1 - v[0], 10 * (v[1] - v[0] ** 2)]),
        lambda v: np.array([[-1.0, 0.0], [-20 * v[0], 10.0]]),
        np.array([-2.0, -2.0]),
        np.array([upper, 2.0]),
        (np.array([-1.2, 1.0]), np.array([0.0, 0.0])),
    )


def test_a_curved_valley_is_followed_to_its_minimum_inside_and_on_a_bound() -> None:
    assert rosenbrock(2.0).solve()[0] == pytest.approx([1.0, 1.0], abs=1e-8)
    held = rosenbrock(0.5).solve()[0]
    assert held == pytest.approx([0.5, 0.25], abs=1e-8)


def test_a_pinned_parameter_stays_where_it_is_put() -> None:
    x, _ = rosenbrock(2.0).pinned(0, 0.3).solve()
    assert x[0] == 0.3 and x[1] == pytest.approx(0.09, abs=1e-8)


SLOPE_X = np.array([1.0, 2.0, 3.0, 5.0])
SLOPE_Y = np.array([2.2, 3.8, 6.3, 9.7])
SLOPE_S = np.array([0.1, 0.2, 0.2, 0.4])


def test_the_profile_interval_of_a_slope_is_estimate_plus_minus_z_standard_errors() -> None:
    # for a linear model the profile interval is exact: â ± √rise / √(Σ x²/s²)
    information = float(np.sum(SLOPE_X**2 / SLOPE_S**2))
    estimate = float(np.sum(SLOPE_X * SLOPE_Y / SLOPE_S**2)) / information
    problem = linear(SLOPE_X, SLOPE_Y, SLOPE_S)
    best, _ = problem.solve()
    assert best[0] == pytest.approx(estimate, rel=1e-10)
    low, high = interval(problem, best, 0, 3.84)
    half = math.sqrt(3.84 / information)
    assert (low, high) == (
        pytest.approx(estimate - half, rel=1e-6),
        pytest.approx(estimate + half, rel=1e-6),
    )


def test_an_interval_reaching_past_a_bound_is_cut_there() -> None:
    problem = linear(SLOPE_X, SLOPE_Y, SLOPE_S, lower=2.0)  # between the end 1.959 and â 2.040
    best, _ = problem.solve()
    low, high = interval(problem, best, 0, 3.84)
    assert low == 2.0 and high is not None and high > best[0]


def test_a_cost_that_never_rises_far_enough_gives_an_open_upper_end() -> None:
    # cost (x/(1+x) − 0.5)²: 0 at x = 1, never above 0.25 for x ≥ 0: a rise of 1 is never reached
    flat = Problem(
        lambda v: np.array([v[0] / (1 + v[0]) - 0.5]),
        lambda v: np.array([[1 / (1 + v[0]) ** 2]]),
        np.array([0.0]),
        np.array([np.inf]),
        (np.array([3.0]),),
    )
    best, cost = flat.solve()
    assert best[0] == pytest.approx(1.0, abs=1e-7) and cost < 1e-15
    assert interval(flat, best, 0, 1.0) == (0.0, None)
    low, high = interval(flat, best, 0, 0.01)  # x/(1+x) = 0.5 ± 0.1: x = 2/3 and 3/2
    assert low == pytest.approx(2 / 3, rel=1e-6) and high == pytest.approx(1.5, rel=1e-6)

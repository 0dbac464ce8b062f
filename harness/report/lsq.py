"""Bounded nonlinear least squares for small problems, and profile intervals, in NumPy alone.

A few parameters and a few points (a scaling curve has 2 and 3–8): a projected Levenberg–
Marquardt iteration (Marquardt's diagonal scaling, so parameters of very different sizes such as
σ ~ 0.1 and κ ~ 0.001 step alike) started from several points, keeping the best. A parameter
sitting on a bound whose gradient points out of the box is held there for the step (an active
set), so a fit whose optimum lies on a bound converges onto it instead of stalling beside it.

Profile intervals: for one parameter, the values at which the cost, minimised over the others,
rises by a given amount above its minimum (the likelihood-ratio interval of a least-squares fit).
SciPy's least_squares would do the fitting, but the report keeps to NumPy (see issue 16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

Vector = np.ndarray
MAX_STEPS = 500
DAMPING_LIMIT = 1e14  # a step this damped moves nothing: no descent left, the minimum is reached
RELATIVE_GAIN = 1e-15  # stop once a step lowers the cost by less than this share of it
BISECTIONS = 60  # at most this many halvings of a profile bracket
PRECISION = 1e-7  # relative width at which a profile crossing is found: below printed precision
EXPANSIONS = 40  # doublings in search of an unbounded parameter's limit before calling it open


@dataclass(frozen=True)
class Problem:
    """Minimise ‖residual(x)‖² over lower ≤ x ≤ upper (an upper of inf: no bound)."""

    residual: Callable[[Vector], Vector]
    jacobian: Callable[[Vector], Vector]  # d residual / d x, one row per residual
    lower: Vector
    upper: Vector
    starts: tuple[Vector, ...]

    def cost(self, x: Vector) -> float:
        r = self.residual(x)
        return float(r @ r)

    def solve(self) -> tuple[Vector, float]:
        """The best of the local minima reached from every start: (x, cost)."""
        starts = np.clip(np.array(self.starts, dtype=float), self.lower, self.upper)
        found = [descend(self, x) for x in np.unique(starts, axis=0)]  # pinning merges starts
        return min(found, key=lambda pair: pair[1])

    def pinned(self, index: int, value: float) -> Problem:
        """The same problem with parameter `index` held at `value`."""
        lower, upper = self.lower.copy(), self.upper.copy()
        lower[index] = upper[index] = value
        return replace(self, lower=lower, upper=upper)


def descend(problem: Problem, x: Vector) -> tuple[Vector, float]:
    """One Levenberg–Marquardt descent from x, projected onto the bounds."""
    r = problem.residual(x)
    cost, damping = float(r @ r), 1e-3
    for _ in range(MAX_STEPS):
        jac = problem.jacobian(x)
        gradient = jac.T @ r
        free = free_parameters(problem, x, gradient)
        if not free.any():
            break
        trial, trial_r, damping = damped_step(
            problem, x, jac[:, free], gradient[free], free, cost, damping
        )
        if trial is None:
            break
        trial_cost = float(trial_r @ trial_r)
        gain = cost - trial_cost
        x, r, cost = trial, trial_r, trial_cost
        if gain <= RELATIVE_GAIN * cost:
            break
    return x, cost


def free_parameters(problem: Problem, x: Vector, gradient: Vector) -> Vector:
    """Parameters that may move: not pinned, and not on a bound the descent would cross."""
    pinned = problem.lower == problem.upper
    held_low = (x <= problem.lower) & (gradient > 0)
    held_high = (x >= problem.upper) & (gradient < 0)
    return ~(pinned | held_low | held_high)


def damped_step(
    problem: Problem,
    x: Vector,
    jac: Vector,
    gradient: Vector,
    free: Vector,
    cost: float,
    damping: float,
) -> tuple[Vector | None, Vector, float]:
    """Raise the damping until a step lowers the cost: (new x, its residual, next damping), or
    (None, ..., damping) when no damping does (x is a minimum)."""
    normal = jac.T @ jac
    scale = np.diag(normal) + 1e-30 * max(1.0, float(np.max(np.diag(normal))))
    while damping < DAMPING_LIMIT:
        try:
            move = np.linalg.solve(normal + damping * np.diag(scale), -gradient)
        except np.linalg.LinAlgError:
            damping *= 10
            continue
        step = np.zeros_like(x)
        step[free] = move
        trial = np.clip(x + step, problem.lower, problem.upper)
        trial_r = problem.residual(trial)
        if float(trial_r @ trial_r) < cost:
            return trial, trial_r, max(damping / 10, 1e-12)
        damping *= 10
    return None, np.empty(0), damping


def interval(
    problem: Problem, best: Vector, index: int, rise: float
) -> tuple[float | None, float | None]:
    """Parameter `index`'s profile interval: the values at which the cost, minimised over the
    other parameters, stays within `rise` of its minimum at `best`. Clipped to the bounds; an end
    of None where the cost never rises that far on that side (an unbounded, open interval)."""

    def excess(value: float) -> float:
        return problem.pinned(index, value).solve()[1] - floor - rise

    floor = problem.cost(best)
    problem = replace(problem, starts=(best, *problem.starts))  # the optimum: a start nearby
    centre = float(best[index])
    return (
        end(excess, centre, float(problem.lower[index]), -1.0),
        end(excess, centre, float(problem.upper[index]), 1.0),
    )


def end(
    excess: Callable[[float], float], centre: float, bound: float, direction: float
) -> float | None:
    """One end of a profile interval: the bound where the profile stays within reach up to it,
    else where it crosses (found by doubling the distance where the bound is infinite)."""
    if np.isfinite(bound):
        return bound if excess(bound) <= 0 else crossing(excess, bound, centre)
    inside, reach = centre, max(abs(centre), 1e-6)
    for _ in range(EXPANSIONS):
        outside = centre + direction * reach
        if excess(outside) > 0:
            return crossing(excess, outside, inside)
        inside, reach = outside, reach * 2
    return None


def crossing(excess: Callable[[float], float], outside: float, inside: float) -> float:
    """Bisection between a point where excess > 0 and one where excess <= 0; the inside end, so
    that the interval errs on the wide side."""
    for _ in range(BISECTIONS):
        if abs(outside - inside) <= PRECISION * max(abs(outside), abs(inside)):
            break
        middle = (outside + inside) / 2
        if excess(middle) > 0:
            outside = middle
        else:
            inside = middle
    return inside

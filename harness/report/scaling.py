"""Scalability laws fitted to measured capacity C(N) = throughput(N) / throughput(1).

Gunther's Universal Scalability Law: C(N) = N / (1 + σ(N−1) + κN(N−1)); σ is contention (the
serial share), κ coherency (the cost of workers keeping each other up to date: with κ > 0 the
curve peaks at N* = √((1−σ)/κ) and then falls). κ = 0 is Amdahl's law, C(N) = N / (1 + σ(N−1)).

Rewritten as N/C(N) − 1 = σ(N−1) + κN(N−1), the law is linear in (σ, κ) with no intercept
(C(1) = 1 by definition), so an ordinary least-squares solve fits it: no scipy needed. Where the
best κ is negative or negligible (no sign of coherency cost) the model is refitted as Amdahl's law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

MIN_POINTS = 3  # distinct worker counts, N = 1 included: fewer cannot say anything about a curve
KAPPA_FLOOR = 1e-9  # below this κ is rounding noise (exact Amdahl data gives ~1e-17): Amdahl's law


@dataclass(frozen=True)
class Fit:
    law: str  # "USL" or "Amdahl"
    sigma: float
    kappa: float
    r2: float  # on C(N) itself, not on the linearised form
    points: int

    def capacity(self, n: float) -> float:
        return usl(n, self.sigma, self.kappa)

    @property
    def peak(self) -> float | None:
        """N* where capacity peaks, or None where it has no peak past one worker (κ = 0: it
        levels off; N* < 1: it falls from the first added worker on)."""
        if self.kappa <= 0 or self.sigma >= 1:
            return None
        peak = math.sqrt((1 - self.sigma) / self.kappa)
        return peak if peak >= 1 else None

    @property
    def parameters(self) -> int:
        return 2 if self.law == "USL" else 1

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {"law": self.law, "sigma": self.sigma, "kappa": self.kappa, "r2": self.r2,
                "points": self.points, "parameters": self.parameters, "peak_workers": self.peak}


def fit(workers: Sequence[int], capacity: Sequence[float]) -> Fit | None:
    """USL (or Amdahl where κ < 0) through the points; None with fewer than MIN_POINTS counts."""
    n, c = np.asarray(workers, dtype=float), np.asarray(capacity, dtype=float)
    if len(set(workers)) < MIN_POINTS or len(n) != len(c) or np.any(c <= 0):
        return None
    y = n / c - 1
    design = np.column_stack([n - 1, n * (n - 1)])
    (sigma, kappa), *_ = np.linalg.lstsq(design, y, rcond=None)
    law = "USL"
    if kappa < KAPPA_FLOOR:
        law, kappa = "Amdahl", 0.0
        sigma = float(np.dot(n - 1, y) / np.dot(n - 1, n - 1))
    fitted = [usl(x, float(sigma), float(kappa)) for x in n]
    return Fit(law, float(sigma), float(kappa), r_squared(c, fitted), len(n))


def usl(n: float, sigma: float, kappa: float) -> float:
    return n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def r_squared(measured: ArrayLike, fitted: ArrayLike) -> float:
    m, f = np.asarray(measured, dtype=float), np.asarray(fitted, dtype=float)
    total = float(np.sum((m - m.mean()) ** 2))
    residual = float(np.sum((m - f) ** 2))
    return 1.0 - residual / total if total > 0 else 1.0

"""Scalability laws fitted to measured capacity C(N) = throughput(N) / throughput(1).

Gunther's Universal Scalability Law: C(N) = N / (1 + σ(N−1) + κN(N−1)); σ is contention (the
serial share), κ coherency (the cost of workers keeping each other up to date: with κ > 0 the
curve peaks at N* = √((1−σ)/κ) and then falls). κ = 0 is Amdahl's law, C(N) = N / (1 + σ(N−1)).

The fit is on C(N) itself (harness.report.lsq), with σ in [0, 1] and κ ≥ 0, the only values with
a physical reading. Each point is weighted by 1/s², s its standard error from pyperf's spread
(where every point has one; equal weights otherwise). Points at N = 1 are no data: C(1) = 1 by
definition and under both laws.

Which law: Amdahl's is USL with κ = 0, so the two are nested and an F-test at 5 % decides. USL
where κ lowers the weighted residual sum χ² by more than F(1, df) times the noise scale; Amdahl
otherwise, so the extra parameter must earn its place. The noise is pyperf's measured spread (1
in weighted units, taken as known) unless the USL fit misses the points by more than that spread
explains (a χ² test at 5 %), or no spread was measured: then it is the fit's own scatter χ²/df,
with df its residual degrees of freedom. Intervals: 95 % profile intervals on the same scale.

Where the data leave the law's domain, the fit says so in words: capacity that never rises above
one worker puts σ on its bound 1 (a retrograde curve: contention, not a serial fraction), capacity
above N (superlinear) is beyond any σ ≥ 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from harness.report import lsq

MIN_POINTS = 3  # distinct worker counts, N = 1 included: fewer cannot say anything about a curve
LEVEL = "95 % profile"
EDGE = 1e-9  # a parameter this close to its bound is on it
Interval = tuple[float | None, float | None]  # None: no end within reach (the data allow any)


@dataclass(frozen=True)
class Fit:
    law: str  # "USL" or "Amdahl"
    sigma: float
    kappa: float
    r2: float  # on C(N) itself, every point (N = 1 too) weighed alike
    points: int
    sigma_interval: Interval | None = None  # None: too few points for any interval
    kappa_interval: Interval | None = None  # None also under Amdahl's law, where κ = 0 by the law
    residual: float = 0.0  # Σ (C − fitted)², unweighted
    weighted: bool = False  # by pyperf's spread; False: every point alike
    choice: str = ""  # why this law, in words
    domain: str | None = None  # where the data leave the law's domain, in words

    def capacity(self, n: float) -> float:
        return float(usl(n, self.sigma, self.kappa))

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

    @property
    def sigma_has_reading(self) -> bool:
        """False where σ sits on its bound 1: no gain from any worker, no serial fraction."""
        return self.sigma < 1 - EDGE

    def as_dict(self) -> dict[str, object]:
        return {
            "law": self.law,
            "sigma": self.sigma,
            "kappa": self.kappa,
            "r2": self.r2,
            "points": self.points,
            "parameters": self.parameters,
            "peak_workers": self.peak,
            "sigma_interval": listed(self.sigma_interval),
            "kappa_interval": listed(self.kappa_interval),
            "interval_level": LEVEL,
            "residual_sum_squares": self.residual,
            "weighted": self.weighted,
            "law_choice": self.choice,
            "domain": self.domain,
            "sigma_has_reading": self.sigma_has_reading,
        }


def listed(found: Interval | None) -> list[float | None] | None:
    return list(found) if found is not None else None


@dataclass(frozen=True)
class Noise:
    """How large a weighted residual is by chance: χ² / scale is on the scale of measured noise;
    df None where the scale is pyperf's measured spread (known), else the fit's residual df."""

    scale: float
    df: int | None
    measured: bool  # whether pyperf gave a spread (then outgrown by the scatter where df is set)

    @property
    def critical(self) -> float:
        """F(1, df) at 5 %, the square of Student's two-tailed t (pyperf's own table)."""
        from pyperf._utils import tdist95conf_level

        return tdist95conf_level(self.df if self.df is not None else 10**6) ** 2

    def test(self, ratio: float) -> str:
        """The test in words: the statistic, its critical value and where the noise came from."""
        sign = ">" if ratio > self.critical else "≤"
        if self.df is None:
            return (
                f"Δχ² = {ratio:.3g} {sign} {self.critical:.3g}, χ²(1) at 5 %; "
                "noise: pyperf's spread"
            )
        why = "larger than pyperf's spread explains" if self.measured else "no spread measured"
        return (
            f"F = {ratio:.3g} {sign} {self.critical:.3g}, F(1, {self.df}) at 5 %; noise: the "
            f"USL fit's own scatter ({why})"
        )


def noise(chi2: float, df: int, measured: bool) -> Noise | None:
    """pyperf's spread where it explains the fit's misses (χ² test at 5 %); the misses' own
    scatter χ²/df where it does not or where no spread was measured; None: neither is known."""
    if measured and (df == 0 or chi2_survival(chi2, df) >= 0.05):
        return Noise(1.0, None, True)
    return Noise(chi2 / df, df, measured) if df > 0 else None


def chi2_survival(x: float, df: int) -> float:
    """P(χ² with df degrees of freedom > x), by the closed forms for whole df (a sum of Poisson
    terms for even df; erfc plus such terms for odd)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term = total = math.exp(-half)
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return total
    total, term = math.erfc(math.sqrt(half)), math.sqrt(2 * x / math.pi) * math.exp(-half)
    for i in range(1, (df - 1) // 2 + 1):
        total += term
        term *= x / (2 * i + 1)
    return total


@dataclass(frozen=True)
class Curve:
    """The points beyond N = 1 with their standard errors (all 1 where unweighted)."""

    workers: np.ndarray
    capacity: np.ndarray
    error: np.ndarray
    weighted: bool

    def problem(self, amdahl: bool) -> lsq.Problem:
        kappa_top = 0.0 if amdahl else np.inf
        starts = tuple(np.array([s, k]) for s in (0.05, 0.5, 0.95) for k in (0.0, 1e-3, 0.1))
        return lsq.Problem(
            self.residual, self.jacobian, np.array([0.0, 0.0]), np.array([1.0, kappa_top]), starts
        )

    def residual(self, x: np.ndarray) -> np.ndarray:
        return (self.capacity - usl(self.workers, x[0], x[1])) / self.error

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        n = self.workers
        slope = n * (n - 1) / (1 + x[0] * (n - 1) + x[1] * n * (n - 1)) ** 2 / self.error
        return np.column_stack([slope, slope * n])


def fit(
    workers: Sequence[int], capacity: Sequence[float], errors: Sequence[float] | None = None
) -> Fit | None:
    """The law C(N) follows, chosen and fitted as above; None with fewer than MIN_POINTS counts.
    `errors`: each point's standard error (those at N = 1 are not used); None: unweighted."""
    n, c = np.asarray(workers, dtype=float), np.asarray(capacity, dtype=float)
    if len(set(workers)) < MIN_POINTS or len(n) != len(c) or not np.all(c > 0):
        return None
    curve = beyond_one(n, c, errors)
    fits = {law: curve.problem(law == "Amdahl").solve() for law in ("Amdahl", "USL")}
    law, choice = choose(curve, fits)
    x, chi2 = fits[law]
    spread = noise(chi2, len(curve.workers) - (2 if law == "USL" else 1), curve.weighted)
    sigma_iv, kappa_iv = intervals(curve.problem(law == "Amdahl"), x, spread, law)
    fitted = usl(n, x[0], x[1])
    return Fit(
        law,
        float(x[0]),
        float(x[1]),
        r_squared(c, fitted),
        len(n),
        sigma_iv,
        kappa_iv,
        float(np.sum((c - fitted) ** 2)),
        curve.weighted,
        choice,
        domain_words(curve, float(x[0])),
    )


def beyond_one(n: np.ndarray, c: np.ndarray, errors: Sequence[float] | None) -> Curve:
    keep = n > 1
    e = np.asarray(errors, dtype=float)[keep] if errors is not None else np.ones(int(keep.sum()))
    weighted = errors is not None and bool(np.all(np.isfinite(e) & (e > 0)))
    return Curve(n[keep], c[keep], e if weighted else np.ones_like(e), weighted)


def choose(curve: Curve, fits: dict[str, tuple[np.ndarray, float]]) -> tuple[str, str]:
    """USL or Amdahl by the F-test, with the reason in words."""
    (_, amdahl), (usl_x, usl_chi2) = fits["Amdahl"], fits["USL"]
    spread = noise(usl_chi2, len(curve.workers) - 2, curve.weighted)
    if spread is None:
        return "Amdahl", (
            f"Amdahl: {len(curve.workers) + 1} worker counts and no measured spread "
            "leave no freedom to test κ"
        )
    # χ² differences below `resolution` are rounding (exact data fit both laws to ~1e-30)
    resolution = 1e-20 * float(np.sum((curve.capacity / curve.error) ** 2))
    gain = amdahl - usl_chi2 if usl_x[1] > 0 and amdahl - usl_chi2 > resolution else 0.0
    ratio = gain / max(spread.scale, resolution)
    if ratio > spread.critical:
        return "USL", f"USL: κ lowers the residual beyond chance ({spread.test(ratio)})"
    if usl_x[1] <= 0:
        return "Amdahl", "Amdahl: the best κ is 0"
    return "Amdahl", f"Amdahl: κ's gain is within chance ({spread.test(ratio)})"


def intervals(
    problem: lsq.Problem, x: np.ndarray, spread: Noise | None, law: str
) -> tuple[Interval | None, Interval | None]:
    if spread is None:
        return None, None
    rise = spread.critical * spread.scale
    sigma = lsq.interval(problem, x, 0, rise)
    return sigma, lsq.interval(problem, x, 1, rise) if law == "USL" else None


def domain_words(curve: Curve, sigma: float) -> str | None:
    """Where the data leave the law's domain, in words; None where they do not."""
    notes = []
    if sigma >= 1 - EDGE:
        first = float(curve.workers.min())
        start = float(np.mean(curve.capacity[curve.workers == first]))
        notes.append(
            f"retrograde from N = {first:g}: contention, no serial-fraction reading"
            if start < 1
            else "no gain past one worker (σ on its bound 1): no serial-fraction reading"
        )
    above = sorted({f"{n:g}" for n, c in zip(curve.workers, curve.capacity) if c > n})
    if above:
        notes.append(
            f"superlinear at N = {', '.join(above)} (capacity above N): beyond the law"
            + (", σ held at its bound 0" if sigma <= EDGE else "")
        )
    return "; ".join(notes) or None


def usl(n: ArrayLike, sigma: float, kappa: float) -> np.ndarray | float:
    n = np.asarray(n, dtype=float)
    return n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def r_squared(measured: ArrayLike, fitted: ArrayLike) -> float:
    m, f = np.asarray(measured, dtype=float), np.asarray(fitted, dtype=float)
    total = float(np.sum((m - m.mean()) ** 2))
    residual = float(np.sum((m - f) ** 2))
    return 1.0 - residual / total if total > 0 else 1.0

"""Fieller intervals for speed-ups (harness.report.intervals), against pyperf's own t-test, the
quadratic solved by numpy, and coverage on simulated data with a known true ratio."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from harness.report.intervals import half_width, ratio_interval, too_wide, widest
from harness.report.rawdata import significance


def sample(rng: random.Random, mean: float, cv: float, n: int) -> list[float]:
    return [rng.gauss(mean, mean * cv) for _ in range(n)]


def test_the_interval_leaves_out_one_exactly_when_pyperfs_test_says_significant() -> None:
    """Equal counts (pyperf's Student test) and unequal ones (Welch's): 400 seeded pairs whose
    true ratios sit near 1, so both verdicts occur; t-scores on the critical value are skipped."""
    rng = random.Random(15)
    seen = {True: 0, False: 0}
    for i in range(400):
        n_base, n_other = (12, 12) if i % 2 else (12, 7)
        base = sample(rng, 1.0, 0.05, n_base)
        other = sample(rng, rng.uniform(0.93, 1.07), 0.05, n_other)
        significant, t_score = significance(base, other)
        ci = ratio_interval(base, other)
        assert ci is not None and significant is not None and t_score is not None
        if abs(abs(t_score) - critical(base, other)) < 1e-6:
            continue
        assert (not ci[0] <= 1.0 <= ci[1]) == significant, (base, other, ci)
        seen[significant] += 1
    assert min(seen.values()) > 50


def critical(base: list[float], other: list[float]) -> float:
    from pyperf._utils import tdist95conf_level

    if len(base) == len(other):
        return tdist95conf_level(len(base) + len(other) - 2)
    va, vb = (statistics.variance(x) / len(x) for x in (base, other))
    df = (va + vb) ** 2 / (va**2 / (len(base) - 1) + vb**2 / (len(other) - 1))
    return tdist95conf_level(math.floor(df))


def test_the_ends_are_the_roots_of_fiellers_quadratic() -> None:
    base, other = [2.0, 2.2, 1.9, 2.1, 2.05], [1.0, 1.1, 0.95, 1.05, 0.98]
    a, b = statistics.fmean(base), statistics.fmean(other)
    va, vb = statistics.variance(base) / 5, statistics.variance(other) / 5
    t = 2.306  # Student's t, 8 degrees of freedom, 97.5 % quantile (tables)
    roots = sorted(np.roots([b * b - t * t * vb, -2 * a * b, a * a - t * t * va]).real)
    ci = ratio_interval(base, other)
    assert ci == pytest.approx(roots, rel=1e-3)
    assert ci[0] < a / b < ci[1]


def test_coverage_on_simulated_benchmarks_is_near_95_percent() -> None:
    """1000 simulated pairs (12 values a side, 5 % and 8 % spread, true speed-up 1.3): a
    correct 95 % interval holds the true ratio about 950 times (binomial sd about 7)."""
    rng = random.Random(2026)
    held = 0
    for _ in range(1000):
        base, other = sample(rng, 1.3, 0.05, 12), sample(rng, 1.0, 0.08, 12)
        ci = ratio_interval(base, other)
        assert ci is not None
        held += ci[0] <= 1.3 <= ci[1]
    assert 925 <= held <= 975


def test_no_interval_without_two_values_or_spread_or_where_it_is_unbounded() -> None:
    assert ratio_interval([1.0], [1.0, 2.0]) is None
    assert ratio_interval([1.0, 1.0], [2.0, 2.0]) is None
    assert ratio_interval([1.0, 1.1, 0.9], [0.01, 2.0, -1.9]) is None  # mean(other) ~ 0


def test_same_values_same_interval_in_any_order() -> None:
    base, other = [1.0, 1.2, 0.9, 1.1], [0.5, 0.55, 0.52, 0.49]
    assert ratio_interval(base, other) == ratio_interval(base[::-1], sorted(other))


def headline_entry(speedup: float, ci: list[float] | None, cell: str = "threads/w2") -> dict:
    """One configuration's entry of a headline row, as summary.json has it."""
    return {
        "name": f"data-parallel/{cell}/tiny",
        "rate_per_s": 1.0,
        "is_default_baseline": False,
        "vs_serial_default": {"speedup": speedup, "ci95": ci, "significant": True},
    }


def test_half_width_and_the_widest_headline_interval() -> None:
    assert half_width({"speedup": 2.0, "ci95": [1.8, 2.3]}) == pytest.approx(0.15)
    assert half_width({"speedup": 2.0, "ci95": None}) == math.inf
    summary = {
        "headline": {
            "rows": {
                "serial/w1": {
                    "cp313": {
                        "rate_per_s": 1.0,
                        "is_default_baseline": True,
                        "vs_serial_default": None,
                    },
                    "cp313t": headline_entry(0.9, [0.88, 0.93]),
                },
                "threads/w2": {
                    "cp313": headline_entry(0.5, [0.45, 0.52]),
                    "cp313t": headline_entry(1.4, [1.3, 1.45]),
                },
            }
        }
    }
    assert widest(summary) == {"cell": "threads/w2 on cp313", "half_width": pytest.approx(0.1)}
    summary["headline"]["rows"]["serial/w1"]["cp313t"] = headline_entry(0.9, None)
    assert widest(summary) == {"cell": "serial/w1 on cp313t", "half_width": None}


def test_only_the_cells_wider_than_the_goal_and_the_baseline_are_measured_again() -> None:
    base = {
        "name": "data-parallel/serial/w1/tiny",
        "is_default_baseline": True,
        "vs_serial_default": None,
    }
    rows = {
        "serial/w1": {"cp313": base, "cp313t": headline_entry(0.9, [0.88, 0.92], "serial/w1")},
        "threads/w2": {
            "cp313": headline_entry(0.8, [0.78, 0.82], "threads/w2"),
            "cp313t": headline_entry(1.5, [1.2, 1.9], "threads/w2"),
        },
        "threads/w4": {
            "cp313": headline_entry(0.5, [0.49, 0.51], "threads/w4"),
            "cp313t": headline_entry(1.1, None, "threads/w4"),
        },
        "asyncio/w2": {
            "cp313": headline_entry(0.7, [0.69, 0.71], "asyncio/w2"),
            "cp313t": headline_entry(1.1, [1.0, 1.2], "asyncio/w2"),
        },
    }
    summary = {"default_configuration": "cp313", "headline": {"rows": rows}}
    # ±3 %: threads/w2 (±27 %), threads/w4 (unbounded), asyncio/w2 (±9 %) on cp313t are too wide;
    # serial/w1 on cp313t (±2.2 %) and every cp313 cell are not; cp313's serial is the baseline
    assert too_wide(summary, 0.03) == {
        "cp313": ["--cells", "data-parallel/serial/w1/tiny"],
        "cp313t": [
            "--cells",
            "data-parallel/threads/w2/tiny,data-parallel/threads/w4/tiny,data-parallel/asyncio/w2/tiny",
        ],
    }
    assert too_wide(summary, 0.5) == {
        "cp313": ["--cells", "data-parallel/serial/w1/tiny"],
        "cp313t": ["--cells", "data-parallel/threads/w4/tiny"],
    }
    rows["threads/w4"]["cp313t"] = headline_entry(1.1, [1.09, 1.11], "threads/w4")
    rows["threads/w2"]["cp313t"] = headline_entry(1.5, [1.45, 1.55], "threads/w2")
    rows["asyncio/w2"]["cp313t"] = headline_entry(1.1, [1.08, 1.12], "asyncio/w2")
    assert too_wide(summary, 0.05) == {}
    rows["serial/w1"]["cp313t"] = headline_entry(
        0.9, [0.7, 1.1], "serial/w1"
    )  # only cp313t's serial
    assert too_wide(summary, 0.05) == {
        "cp313": ["--cells", "data-parallel/serial/w1/tiny"],
        "cp313t": ["--cells", "data-parallel/serial/w1/tiny"],
    }

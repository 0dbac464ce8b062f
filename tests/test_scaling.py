"""The Universal Scalability Law / Amdahl fit: on curves whose parameters are known (exact and
with noise), on data outside the law's domain, and on the committed 16-core raw files."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.report import rawdata
from harness.report.markdown import scaling_section
from harness.report.scaling import chi2_survival, fit, r_squared
from harness.report.summary import Index, scaling_fits

WORKERS = [1, 2, 3, 4, 6, 8]
CURVE = [1, 2, 4, 8, 16]
RAW = Path(__file__).resolve().parent.parent / "reports" / "scaling-16core-raw"


def gunther(n: float, sigma: float, kappa: float) -> float:
    """The law written out again here, so that no test trusts the module's own formula."""
    return n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def noisy(sigma: float, kappa: float, seed: int, spread: float = 0.05) -> tuple[list, list]:
    """C(N) on CURVE with Gaussian noise of `spread` × C; the standard errors given as known."""
    rng = np.random.default_rng(seed)
    exact = np.array([gunther(n, sigma, kappa) for n in CURVE])
    errors = spread * exact
    measured = exact + rng.normal(size=len(CURVE)) * errors
    measured[0], errors[0] = 1.0, 0.0  # C(1) = 1 by definition
    return measured.tolist(), errors.tolist()


def covers(found: tuple[float | None, float | None] | None, value: float) -> bool:
    if found is None:
        return False
    low, high = found
    return (low is None or low <= value) and (high is None or value <= high)


# ---- exact curves --------------------------------------------------------------------------------


def test_exact_usl_data_gives_back_its_parameters_and_peak() -> None:
    found = fit(WORKERS, [gunther(n, 0.05, 0.01) for n in WORKERS])
    assert found is not None and found.law == "USL" and found.points == len(WORKERS)
    assert found.sigma == pytest.approx(0.05, abs=1e-9)
    assert found.kappa == pytest.approx(0.01, abs=1e-9)
    assert found.peak == pytest.approx(math.sqrt(0.95 / 0.01)) and found.r2 == pytest.approx(1.0)
    assert found.residual < 1e-15 and found.domain is None


def test_exact_amdahl_data_is_fitted_with_no_coherency_term() -> None:
    found = fit(WORKERS, [gunther(n, 0.2, 0.0) for n in WORKERS])
    assert found is not None and found.law == "Amdahl" and found.parameters == 1
    assert found.sigma == pytest.approx(0.2, abs=1e-9) and found.kappa == 0.0 and found.peak is None
    assert found.kappa_interval is None  # κ is 0 by the law, not estimated


# ---- noisy curves: the parameters lie within their intervals ----------------------------------


def amdahl_standard_error(sigma: float, errors: list[float]) -> float:
    """1/√(Fisher information) of σ, by central differences of the law: the width an interval
    of known noise must have (to first order)."""
    h = 1e-6
    slopes = [(gunther(n, sigma + h, 0) - gunther(n, sigma - h, 0)) / (2 * h) for n in CURVE[1:]]
    return 1 / math.sqrt(sum((d / e) ** 2 for d, e in zip(slopes, errors[1:])))


def test_noisy_amdahl_curves_keep_amdahl_and_cover_sigma_at_the_stated_level() -> None:
    truth, seeds = 0.2, range(100)
    fits = [fit(CURVE, *noisy(truth, 0.0, seed)) for seed in seeds]
    assert all(f is not None for f in fits)
    # the F-test at 5 % may pick USL by chance in at most ~5 % of noisy Amdahl curves; choosing by
    # κ's sign (the old rule) picks it in about half
    assert sum(f.law == "Amdahl" for f in fits) >= 90
    # 95 % intervals: at least 88 of 100 (3 binomial standard deviations below 95)
    assert sum(covers(f.sigma_interval, truth) for f in fits) >= 88
    # and no wider than the noise asks for: the median width within 25 % of 2 × 1.96 standard errors
    widths = [f.sigma_interval[1] - f.sigma_interval[0] for f in fits if f.law == "Amdahl"]
    expected = 2 * 1.96 * amdahl_standard_error(truth, noisy(truth, 0.0, 0)[1])
    assert statistics.median(widths) == pytest.approx(expected, rel=0.25)


def test_noisy_usl_curves_are_found_to_be_usl_and_cover_both_parameters() -> None:
    sigma, kappa, seeds = 0.05, 0.015, range(40)  # a peak at N* = 8, a clear fall by 16
    fits = [fit(CURVE, *noisy(sigma, kappa, seed)) for seed in seeds]
    chosen = [f for f in fits if f is not None and f.law == "USL"]
    assert len(chosen) >= 32  # the test's power here is about 90 %
    assert sum(covers(f.sigma_interval, sigma) for f in chosen) >= 0.85 * len(chosen)
    assert sum(covers(f.kappa_interval, kappa) for f in chosen) >= 0.85 * len(chosen)
    assert all(0 <= f.sigma <= 1 and f.kappa >= 0 for f in chosen)


def test_a_point_with_a_large_spread_barely_pulls_the_fit() -> None:
    capacity = [gunther(n, 0.2, 0.0) for n in CURVE]
    capacity[3] *= 1.5  # N = 8 far off ...
    errors = [0.0, 0.01, 0.01, 10.0, 0.01]  # ... but measured a thousand times less precisely
    weighted, unweighted = fit(CURVE, capacity, errors), fit(CURVE, capacity)
    assert weighted is not None and unweighted is not None and weighted.weighted
    assert weighted.sigma == pytest.approx(0.2, abs=1e-3)
    assert abs(unweighted.sigma - 0.2) > 0.02 and not unweighted.weighted


# ---- the law's domain and the choice in words ---------------------------------------------------


def test_a_slowdown_from_the_first_worker_is_said_in_words_not_as_a_serial_share() -> None:
    capacity, errors = [1.0, 0.9, 0.8, 0.7], [0.0, 0.01, 0.01, 0.01]
    found = fit([1, 2, 4, 8], capacity, errors)
    assert found is not None and found.sigma == 1.0 and found.kappa >= 0  # σ on its bound, not 1.1
    assert not found.sigma_has_reading and found.peak is None
    assert found.domain == "retrograde from N = 2: contention, no serial-fraction reading"
    row = scaling_section(
        {
            "scaling": [
                {
                    "configuration": "c",
                    "workload": "w",
                    "series": "s",
                    "model": "",
                    **found.as_dict(),
                    "curve": [{"workers": 8, "capacity": 0.7, "fitted": 0.7}],
                }
            ],
            "environment": {"machine": {"cpu_usable": None}},
        }
    ).splitlines()[-1]
    assert "retrograde from N = 2" in row and "1.000" not in row


def test_capacity_above_linear_holds_sigma_at_zero_and_says_so() -> None:
    found = fit([1, 2, 4, 8], [1.0, 2.2, 4.4, 7.9], [0.0, 0.05, 0.1, 0.2])
    assert found is not None and found.sigma == 0.0 and found.sigma_has_reading
    assert found.domain == (
        "superlinear at N = 2, 4 (capacity above N): beyond the law, σ held at its bound 0"
    )


def test_the_law_choice_is_stated_with_its_test() -> None:
    usl_fit = fit(CURVE, *noisy(0.05, 0.015, 1))
    assert usl_fit is not None and usl_fit.law == "USL"
    assert usl_fit.choice.startswith("USL: κ lowers the residual beyond chance (")
    amdahl_fit = fit(CURVE, *noisy(0.2, 0.0, 1))
    assert amdahl_fit is not None and amdahl_fit.choice.startswith("Amdahl: ")


def test_three_counts_without_a_spread_cannot_test_kappa() -> None:
    found = fit([1, 2, 4], [1.0, 1.6, 2.0])
    assert found is not None and found.law == "Amdahl" and "no freedom to test κ" in found.choice
    assert found.sigma_interval is not None  # Amdahl keeps one point to spare for its interval


def test_the_chi_squared_tail_matches_published_critical_values() -> None:
    table = {
        (1, 3.841): 0.05,
        (2, 5.991): 0.05,
        (3, 7.815): 0.05,
        (4, 9.488): 0.05,
        (5, 11.070): 0.05,
        (10, 18.307): 0.05,
        (1, 6.635): 0.01,
        (3, 11.345): 0.01,
    }
    for (df, x), tail in table.items():
        assert chi2_survival(x, df) == pytest.approx(tail, abs=2e-4)


@pytest.mark.parametrize(
    ("workers", "capacity"),
    [
        ([1, 2], [1.0, 1.8]),  # two counts: nothing to fit
        ([1, 2, 2, 2], [1.0, 1.8, 1.7, 1.9]),  # repeats are not new counts
        ([1, 2, 4], [1.0, 0.0, 1.5]),  # a zero capacity is not a measurement
    ],
)
def test_too_little_to_fit_gives_none(workers: list[int], capacity: list[float]) -> None:
    assert fit(workers, capacity) is None


# ---- the committed 16-core sample (issue 16's five series) -------------------------------------

ISSUE_SERIES = [
    ("cp313", "data-parallel", "threads", "tiny"),
    ("cp313", "data-parallel", "processes", "tiny"),
    ("cp313t", "data-parallel", "processes", "tiny"),
    ("cp313", "loader", "threads/python", ""),
    ("cp313", "loader", "processes/python", ""),
]


@pytest.fixture(scope="module")
def sixteen_core() -> dict[tuple[str, str, str, str], dict[str, Any]]:
    paths = [str(RAW / "cp313.json"), str(RAW / "cp313t.json")]
    fits = scaling_fits(Index(rawdata.load(paths)))
    return {(f["configuration"], f["workload"], f["series"], f["model"]): f for f in fits}


def raw_values(config: str) -> dict[str, list[list[float]]]:
    """name -> the values of each pyperf process (the report's unit is one process's mean)."""
    data = json.loads((RAW / f"{config}.json").read_text())
    return {
        b["metadata"]["name"]: [r["values"] for r in b["runs"] if r.get("values")]
        for b in data["benchmarks"]
    }


def linearised(workers: list[int], capacity: list[float]) -> tuple[float, float]:
    """The old fit: ordinary least squares on N/C − 1 = σ(N−1) + κN(N−1); Amdahl where κ < 0."""
    n, c = np.array(workers, dtype=float), np.array(capacity)
    y = n / c - 1
    (sigma, kappa), *_ = np.linalg.lstsq(np.column_stack([n - 1, n * (n - 1)]), y, rcond=None)
    if kappa < 1e-9:
        return float(np.dot(n - 1, y) / np.dot(n - 1, n - 1)), 0.0
    return float(sigma), float(kappa)


def r2(capacity: list[float], sigma: float, kappa: float, workers: list[int]) -> float:
    c = np.array(capacity)
    fitted = np.array([gunther(n, sigma, kappa) for n in workers])
    return 1 - float(np.sum((c - fitted) ** 2) / np.sum((c - c.mean()) ** 2))


@pytest.mark.parametrize("key", ISSUE_SERIES, ids="-".join)
def test_a_committed_series_is_read_from_its_raw_values(sixteen_core: dict, key: tuple) -> None:
    found, values = sixteen_core[key], raw_values(key[0])
    _, workload, series, model = key
    strategy, *variant = series.split("/")
    one = values[found["one_worker"]]
    for point in found["curve"][1:]:
        name = "/".join([workload, strategy, f"w{point['workers']}", *variant, model])
        mine = values[name.rstrip("/")]
        capacity = statistics.fmean(sum(one, [])) / statistics.fmean(sum(mine, []))
        relative = math.hypot(
            *(
                statistics.stdev(means := [statistics.fmean(r) for r in runs])
                / statistics.fmean(sum(runs, []))
                / math.sqrt(len(means))
                for runs in (mine, one)
            )
        )
        assert point["capacity"] == pytest.approx(capacity, rel=1e-12)
        assert point["error"] == pytest.approx(capacity * relative, rel=1e-12)


@pytest.mark.parametrize("key", ISSUE_SERIES, ids="-".join)
def test_a_committed_series_is_fitted_inside_the_domain_at_its_best(
    sixteen_core: dict, key: tuple
) -> None:
    found = sixteen_core[key]
    workers = [p["workers"] for p in found["curve"]]
    capacity = [p["capacity"] for p in found["curve"]]
    assert 0 <= found["sigma"] <= 1 and found["kappa"] >= 0 and found["weighted"]
    assert covers(found["sigma_interval"], found["sigma"]) and found["law_choice"]
    # no point of a fine grid over the chosen law's domain fits the weighted points better
    n, c = np.array(workers[1:], dtype=float), np.array(capacity[1:])
    e = np.array([p["error"] for p in found["curve"][1:]])
    sigmas = np.linspace(0, 1, 2001)[:, None, None]
    kappas = (
        np.concatenate([[0.0], np.geomspace(1e-6, 10, 2000)])
        if found["law"] == "USL"
        else np.zeros(1)
    )[None, :, None]
    grid = np.sum(((c - n / (1 + sigmas * (n - 1) + kappas * n * (n - 1))) / e) ** 2, axis=-1)
    at_fit = np.array([gunther(x, found["sigma"], found["kappa"]) for x in n])
    reported = float(np.sum(((c - at_fit) / e) ** 2))
    assert reported <= grid.min() * (1 + 1e-9) + 1e-12
    # R² on C(N) at least the old linearised fit's where that one stayed in the domain; where it
    # left it (σ > 1 or < 0) at least its parameters' once put back in the domain
    old_sigma, old_kappa = linearised(workers, capacity)
    inside = (min(max(old_sigma, 0.0), 1.0), old_kappa)
    assert found["r2"] >= r2(capacity, *inside, workers) - 1e-12
    assert found["r2"] == pytest.approx(r2(capacity, found["sigma"], found["kappa"], workers))


def test_the_committed_series_outside_the_domain_are_said_in_words(sixteen_core: dict) -> None:
    threads = sixteen_core[("cp313", "data-parallel", "threads", "tiny")]
    assert threads["domain"] == "retrograde from N = 2: contention, no serial-fraction reading"
    assert not threads["sigma_has_reading"] and threads["law"] == "USL"
    loader = sixteen_core[("cp313", "loader", "processes/python", "")]
    assert loader["domain"].startswith("superlinear at N = 2, 4 ")


def test_r_squared_is_one_minus_residual_over_total_variation() -> None:
    """Worked by hand on noisy points (total variation under 1, so its size matters too)."""
    measured, fitted = [1.0, 1.6, 1.9, 2.1], [1.0, 1.5, 2.0, 2.2]
    mean = sum(measured) / 4
    total = sum((m - mean) ** 2 for m in measured)  # 0.695
    residual = sum((m - f) ** 2 for m, f in zip(measured, fitted))  # 0.03
    assert 0 < total < 1
    assert r_squared(measured, fitted) == pytest.approx(1 - residual / total, rel=1e-12)
    assert r_squared([1.5, 1.5, 1.5], [1.4, 1.5, 1.6]) == 1.0  # nothing to explain: no error


def test_fit_of_noisy_points_reports_their_r_squared() -> None:
    workers, capacity = [1, 2, 4, 8], [1.0, 1.8, 3.1, 4.2]
    found = fit(workers, capacity)
    assert found is not None
    curve = [n / (1 + found.sigma * (n - 1) + found.kappa * n * (n - 1)) for n in workers]
    mean = sum(capacity) / len(capacity)
    expected = 1 - (
        sum((c - f) ** 2 for c, f in zip(capacity, curve)) / sum((c - mean) ** 2 for c in capacity)
    )
    assert found.r2 == pytest.approx(expected, rel=1e-12) and found.r2 < 1

"""The Universal Scalability Law / Amdahl fit on curves whose parameters are known."""

from __future__ import annotations

import math

import pytest

from harness.report.scaling import fit, r_squared, usl

WORKERS = [1, 2, 3, 4, 6, 8]


def test_exact_usl_data_gives_back_its_parameters_and_peak() -> None:
    found = fit(WORKERS, [usl(n, 0.05, 0.01) for n in WORKERS])
    assert found is not None and found.law == "USL" and found.points == len(WORKERS)
    assert found.sigma == pytest.approx(0.05, abs=1e-12) and found.kappa == pytest.approx(0.01, abs=1e-12)
    assert found.peak == pytest.approx(math.sqrt(0.95 / 0.01)) and found.r2 == pytest.approx(1.0)


def test_amdahl_data_is_fitted_with_no_coherency_term() -> None:
    found = fit(WORKERS, [n / (1 + 0.2 * (n - 1)) for n in WORKERS])
    assert found is not None and found.sigma == pytest.approx(0.2, abs=1e-9)
    assert found.kappa == pytest.approx(0.0, abs=1e-9) and found.peak is None


def test_a_negative_coherency_term_falls_back_to_amdahl() -> None:
    capacity = [1.0, 1.9, 2.9, 4.0]  # better than Amdahl at 4: least squares wants κ < 0
    found = fit([1, 2, 3, 4], capacity)
    assert found is not None and (found.law, found.kappa, found.parameters) == ("Amdahl", 0.0, 1)
    x = [n - 1 for n in (1, 2, 3, 4)]
    y = [n / c - 1 for n, c in zip((1, 2, 3, 4), capacity)]
    assert found.sigma == pytest.approx(sum(a * b for a, b in zip(x, y)) / sum(a * a for a in x))


def test_a_slowdown_gives_a_serial_share_above_one() -> None:
    found = fit([1, 2, 4], [1.0, 0.9, 0.85])
    assert found is not None and found.sigma > 1 and found.capacity(2) < 1


def test_a_curve_falling_from_the_start_has_no_peak() -> None:
    found = fit([1, 2, 4], [usl(n, 0.5, 1.0) for n in (1, 2, 4)])  # N* = 0.7 < 1
    assert found is not None and found.law == "USL" and found.peak is None


@pytest.mark.parametrize(("workers", "capacity"), [
    ([1, 2], [1.0, 1.8]),  # two counts: nothing to fit
    ([1, 2, 2, 2], [1.0, 1.8, 1.7, 1.9]),  # repeats are not new counts
    ([1, 2, 4], [1.0, 0.0, 1.5]),  # a zero capacity is not a measurement
])
def test_too_little_to_fit_gives_none(workers: list[int], capacity: list[float]) -> None:
    assert fit(workers, capacity) is None


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
    expected = 1 - (sum((c - f) ** 2 for c, f in zip(capacity, curve))
                    / sum((c - mean) ** 2 for c in capacity))
    assert found.r2 == pytest.approx(expected, rel=1e-12) and found.r2 < 1

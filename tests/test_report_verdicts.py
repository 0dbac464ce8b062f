"""The report's verdicts where a wrong one would look plausible: a digest that differs from
serial's, a Welch test whose degrees of freedom decide, the efficiency of a hybrid mpi cell.
Measurements are built in memory with pyperf, so each case is exactly the one that matters."""

from __future__ import annotations

import json
import math
import statistics

import pyperf
import pytest

from harness.bench.matrix import Cell
from harness.report import rawdata
from harness.report.markdown import digest_cell
from harness.report.rawdata import Measurement, RawFile
from harness.report.summary import Index, row
from tests.test_report import student_t_critical

SERIAL = Cell("data-parallel", "serial", 1, "", "tiny")


def measurement(cell: Cell, values: list[float], digest: str, **run_config: int) -> Measurement:
    """One benchmark, one value per process run, every run recording the same digest."""
    meta = {"name": cell.name, "unit": "second", "ft_unit": "sample", "ft_digest": digest,
            "ft_bitwise": True, "ft_run_config": json.dumps({"threads_per_rank": 1, **run_config})}
    runs = [pyperf.Run([v], metadata=meta, collect_metadata=False) for v in values]
    return Measurement("cp313", cell, pyperf.Benchmark(runs), "cp313.json")


def rows(*found: Measurement) -> dict[str, dict]:
    index = Index([RawFile("cp313.json", "0" * 64, "cp313", list(found))])
    return {m.cell.name: row(index, m) for m in found}


# ---- the determinism verdict ---------------------------------------------------------------------

def test_a_digest_unlike_serials_reads_differs() -> None:
    base = measurement(SERIAL, [2.0, 2.1, 1.9], "a" * 64)
    same = measurement(Cell("data-parallel", "threads", 2, "", "tiny"), [1.0, 1.1, 0.9], "a" * 64)
    other = measurement(Cell("data-parallel", "processes", 2, "", "tiny"), [1.0, 1.1, 0.9],
                        "b" * 64)
    found = rows(base, same, other)
    assert found[other.cell.name]["digest_matches_serial"] is False
    assert digest_cell(found[other.cell.name]) == f"`{'b' * 12}` differs"
    assert found[same.cell.name]["digest_matches_serial"] is True
    assert digest_cell(found[same.cell.name]) == f"`{'a' * 12}` = serial"


# ---- Welch's test where the degrees of freedom decide --------------------------------------------

WIDE = [9.0, 9.5, 10.0, 10.5, 11.0] * 2 + [8.5, 11.5]  # 12 values, tight around 10


def welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float]:
    """t and the Welch-Satterthwaite degrees of freedom, from the textbook formulas."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    return t, (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))


@pytest.mark.parametrize(("a", "significant"), [
    ([11.4, 12.4, 13.4], False),  # t ~ 3.77: under the critical value at 2 df, over it at 3 and 13
    ([12.0, 13.0, 14.0], True),  # t ~ 4.71: over it even at 2 df
])
def test_welch_uses_its_own_degrees_of_freedom_rounded_down(a: list[float],
                                                           significant: bool) -> None:
    t, freedom = welch_by_hand(a, WIDE)
    assert 2 < freedom < 3  # rounded down: 2 (critical 4.30); up: 3 (3.18); pooled: 13 (2.16)
    critical_down, critical_up = student_t_critical(2), student_t_critical(3)
    pooled = student_t_critical(len(a) + len(WIDE) - 2)
    assert abs(t) > critical_up > pooled  # the wrong degrees of freedom would call it significant
    assert (abs(t) > critical_down) is significant
    assert rawdata.significance(a, WIDE) == (significant, pytest.approx(t, rel=1e-12))
    assert rawdata.significance(WIDE, a) == (significant, pytest.approx(-t, rel=1e-12))


# ---- efficiency counts every thread --------------------------------------------------------------

def test_efficiency_of_a_hybrid_mpi_cell_divides_by_ranks_times_threads() -> None:
    base_values, hybrid_values = [4.0, 4.2, 3.8, 4.0], [1.25, 1.3, 1.2, 1.25]
    base = measurement(SERIAL, base_values, "a" * 64)
    hybrid = measurement(Cell("data-parallel", "mpi", 2, "t2", "tiny"), hybrid_values, "a" * 64,
                         threads_per_rank=2)
    plain = measurement(Cell("data-parallel", "mpi", 2, "", "tiny"), hybrid_values, "a" * 64)
    found = rows(base, hybrid, plain)
    speedup = statistics.fmean(base_values) / statistics.fmean(hybrid_values)  # 3.2
    assert found[hybrid.cell.name]["threads"] == 4
    assert found[hybrid.cell.name]["efficiency"] == pytest.approx(speedup / 4, rel=1e-12)
    assert found[plain.cell.name]["efficiency"] == pytest.approx(speedup / 2, rel=1e-12)

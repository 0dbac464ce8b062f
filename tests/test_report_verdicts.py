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
    meta = {
        "name": cell.name,
        "unit": "second",
        "ft_unit": "sample",
        "ft_digest": digest,
        "ft_bitwise": True,
        "ft_run_config": json.dumps({"threads_per_rank": 1, **run_config}),
    }
    runs = [pyperf.Run([v], metadata=meta, collect_metadata=False) for v in values]
    return Measurement("cp313", cell, pyperf.Benchmark(runs), "cp313.json")


def rows(*found: Measurement) -> dict[str, dict]:
    index = Index([RawFile("cp313.json", "0" * 64, "cp313", list(found))])
    return {m.cell.name: row(index, m) for m in found}


# ---- the determinism verdict ---------------------------------------------------------------------


def test_a_digest_unlike_serials_reads_differs() -> None:
    base = measurement(SERIAL, [2.0, 2.1, 1.9], "a" * 64)
    same = measurement(Cell("data-parallel", "threads", 2, "", "tiny"), [1.0, 1.1, 0.9], "a" * 64)
    other = measurement(
        Cell("data-parallel", "processes", 2, "", "tiny"), [1.0, 1.1, 0.9], "b" * 64
    )
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
    return t, (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


@pytest.mark.parametrize(
    ("a", "significant"),
    [
        (
            [11.4, 12.4, 13.4],
            False,
        ),  # t ~ 3.77: under the critical value at 2 df, over it at 3 and 13
        ([12.0, 13.0, 14.0], True),  # t ~ 4.71: over it even at 2 df
    ],
)
def test_welch_uses_its_own_degrees_of_freedom_rounded_down(
    a: list[float], significant: bool
) -> None:
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
    hybrid = measurement(
        Cell("data-parallel", "mpi", 2, "t2", "tiny"), hybrid_values, "a" * 64, threads_per_rank=2
    )
    plain = measurement(Cell("data-parallel", "mpi", 2, "", "tiny"), hybrid_values, "a" * 64)
    found = rows(base, hybrid, plain)
    speedup = statistics.fmean(base_values) / statistics.fmean(hybrid_values)  # 3.2
    assert found[hybrid.cell.name]["threads"] == 4
    assert found[hybrid.cell.name]["efficiency"] == pytest.approx(speedup / 4, rel=1e-12)
    assert found[plain.cell.name]["efficiency"] == pytest.approx(speedup / 2, rel=1e-12)


def test_welch_with_under_two_degrees_of_freedom_uses_one() -> None:
    a = [17.0, 21.0]  # two wide values against twelve tight ones: df = 1.04, rounded down to 1
    t, freedom = welch_by_hand(a, WIDE)
    assert 1 < freedom < 2 and student_t_critical(2) < abs(t) < student_t_critical(1)
    assert rawdata.significance(a, WIDE)[0] is False


def test_equal_sizes_get_students_test_with_its_pooled_degrees_of_freedom() -> None:
    """pyperf's own test where both sides have as many values: t = 3.46 passes at its 4 df
    (critical 2.78), where Welch's 2 df (4.30) would not."""
    a, b = [12.0, 14.0, 16.0], [10.0, 10.1, 9.9]
    t, freedom = welch_by_hand(a, b)
    assert student_t_critical(4) < abs(t) < student_t_critical(math.floor(freedom))
    assert rawdata.significance(a, b) == (True, pytest.approx(t, rel=1e-9))


def test_two_values_a_side_are_enough_for_a_test() -> None:
    significant, t_score = rawdata.significance([1.0, 1.02], [2.0, 2.02, 2.01])  # t = -86.6
    assert significant is True and t_score is not None
    assert rawdata.significance([1.0], [2.0, 2.2, 2.1]) == (None, None)
    assert rawdata.speedup_label(None) == "—"  # no comparison at all: a dash, not a number


def test_compare_names_its_baseline_and_the_test() -> None:
    base = measurement(SERIAL, [2.0, 2.1, 1.9], "a" * 64)
    other = measurement(Cell("data-parallel", "threads", 2, "", "tiny"), [1.0, 1.1, 0.9], "a" * 64)
    found = rawdata.compare(base, other)
    t, _ = welch_by_hand([2.0, 2.1, 1.9], [1.0, 1.1, 0.9])
    assert found == {
        "baseline": "cp313 data-parallel/serial/w1/tiny",
        "speedup": pytest.approx(2.0),
        "significant": True,
        "t_score": pytest.approx(t, rel=1e-9),
    }


def test_configurations_sort_default_build_first_then_by_name() -> None:
    names = ["zz", "cp313t-gil", "cp314", "cp313t", "cp313"]
    assert sorted(names, key=rawdata.config_rank) == [
        "cp313",
        "cp313t",
        "cp313t-gil",
        "cp314",
        "zz",
    ]
    # by version first, then default / free-threaded / free-threaded with the GIL
    assert (
        rawdata.config_rank("cp313")
        < rawdata.config_rank("cp313t")
        < rawdata.config_rank("cp313t-gil")
    )
    assert (
        rawdata.config_rank("cp313t-gil") < rawdata.config_rank("cp314") < rawdata.config_rank("zz")
    )

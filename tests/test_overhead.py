"""The harness-overhead benchmark: plainloop cells (the hand-written loop of harness.plainloop)
benched beside the harness's serial and threads cells, and the report's ratios of the two.

The ratios and intervals are checked against numbers computed here by hand (pooled t-test, the
roots of Fieller's quadratic with an exact t quantile), not by the code under test."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pyperf
import pytest

from harness import HarnessError, plainloop
from harness.bench import rounds
from harness.bench.main import add_bench_arguments, selection_of
from harness.bench.matrix import PLAIN_LOOP, Cell, Selection, get_preset, plan, select
from harness.config import RunConfig
from harness.plainloop import parse, train
from harness.report import overhead
from harness.report.rawdata import Measurement, RawFile
from harness.report.summary import Index, report_command
from tests.smoke_bench import ROOT, bench_command, bench_env
from tests.test_report import raw_benchmarks, student_t_critical, t_test

TINY = "tiny"
PLAIN_W1, PLAIN_W2 = (Cell("data-parallel", PLAIN_LOOP, w, "", TINY) for w in (1, 2))
SERIAL = Cell("data-parallel", "serial", 1, "", TINY)
THREADS_W2 = Cell("data-parallel", "threads", 2, "", TINY)


# ---- the cells: where they are, what they run --------------------------------------------------


def round_cells(args: list[str], tmp_path: Path) -> list[list[str]]:
    """The cells each round of `nox -s report` (harness.bench.rounds, these bench arguments)
    measures on one configuration: every round's bench command parsed as a bench would."""
    commands: list[list[str]] = []

    def run(command: list[str], env: dict[str, str]) -> None:
        commands.append(command)
        Path(command[command.index("--append") + 1]).touch()

    target = rounds.Target("cp313", "python", {}, tmp_path / "cp313.json")
    plan_ = rounds.take_options(args)[0]
    rounds.run_rounds([target], args, plan_, run, log=lambda _: None)
    parser = argparse.ArgumentParser()  # the bench's own options; pyperf's are not read here
    add_bench_arguments(parser)
    found = []
    for command in commands:
        parsed = parser.parse_known_args(command[command.index("bench") + 1 :])[0]
        found.append([c.name for c in select(get_preset(parsed.preset), selection_of(parsed))])
    return found


@pytest.mark.parametrize("args", [[], ["--preset", "full", "--rounds", "2"]])
def test_every_round_measures_the_plain_cells_beside_their_harness_twins(
    args: list[str], tmp_path: Path
) -> None:
    """`nox -s report` (no arguments: the bench's default preset) and the full preset. Fails if
    the plain cells leave the preset the report runs, run in a pass of their own, or lose the
    serial or threads cell they are compared with."""
    found = round_cells(args, tmp_path)
    assert len(found) >= 2
    for names in found:
        for plain, twin in ((PLAIN_W1, SERIAL), (PLAIN_W2, THREADS_W2)):
            assert plain.name in names and twin.name in names, names


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_a_plain_cell_does_its_twins_work_with_the_same_settings(preset: str) -> None:
    """Fails if a plain cell gets other steps, batch or model than the cell it is compared with
    (an unfair comparison), or its twin is not serial at one worker and threads at two."""
    chosen = get_preset(preset)
    assert PLAIN_W1.twin == SERIAL and PLAIN_W2.twin == THREADS_W2
    for plain in (PLAIN_W1, PLAIN_W2):
        assert plain in chosen.cells
        assert chosen.config(plain, "/unused") == chosen.config(plain.twin, "/unused")


def test_the_plain_loop_is_no_strategy_a_user_can_choose() -> None:
    """Fails if the plain loop is registered as a strategy (it would show in `list`, `run`,
    `advise`): it is a bench yardstick only."""
    from strategies import REGISTRY

    assert PLAIN_LOOP not in REGISTRY
    with pytest.raises(HarnessError, match=f"unknown strategy '{PLAIN_LOOP}'"):
        RunConfig(strategy=PLAIN_LOOP)


def test_work_the_plain_loop_does_not_do_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """Fails if a plain cell were run on batches from disk (the plain loop would silently train
    on the synthetic set instead, and the ratio would compare different work)."""
    todo = plan(
        get_preset("quick"),
        Selection(
            strategies=("serial", PLAIN_LOOP), variants=("disk-python",), models=("784-32-10",)
        ),
        str(tmp_path),
    )
    assert [c.strategy for c in todo.cells] == ["serial"]  # the harness reads the disk set
    assert todo.skipped and all(
        c.strategy == PLAIN_LOOP and "has no augment, data" in reason for c, reason in todo.skipped
    )


def test_the_plain_loops_pool_threads_run_before_its_clock_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the executor's threads were left to start on the first tasks, inside the timed
    loop, where the harness's pool is started before its loop."""
    before, started = set(threading.enumerate()), []
    clock = time.perf_counter

    def noting() -> float:
        started.append([t for t in threading.enumerate() if t not in before and t.is_alive()])
        return clock()

    monkeypatch.setattr(plainloop.time, "perf_counter", noting)
    train(parse(["--steps", "2", "--batch", "256", "--workers", "3"]))
    assert len(started[0]) == 2  # both pool threads run when the clock starts


def test_the_plain_loop_trains_with_one_blas_thread_as_serial_and_threads_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the loop ran with the BLAS threads it found (here two where the machine has two
    cores) while the harness's serial and threads pin one: other kernels, other timings."""
    from threadpoolctl import threadpool_limits

    from strategies.base import blas_summary

    seen: list[int] = []
    step = plainloop.sgd_step

    def noting(*args: Any) -> float:
        seen.append(blas_summary()["threads"])
        return step(*args)

    monkeypatch.setattr(plainloop, "sgd_step", noting)
    with threadpool_limits(limits=2, user_api="blas"):
        train(parse(["--steps", "2", "--batch", "256", "--workers", "2"]))
    assert seen == [1, 1]


# ---- a real bench, read by the report -----------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_real_bench_of_the_plain_cells_gives_the_reports_overhead_rows(tmp_path: Path) -> None:
    """pyperf runs the plain cells and their twins (smoke sizes, one process each); the raw file
    says the same work was done (same units, settings, digest, one BLAS thread) and the report
    shows both ratios, computed from the raw values, in no other table."""
    out = tmp_path / "cp313.json"
    command = bench_command(
        out,
        *("--workloads", "data-parallel", "--strategies", f"serial,threads,{PLAIN_LOOP}"),
        *("--workers", "1,2", "--variants", "plain", "--models", TINY, "-p", "1"),
    )
    # BLAS left at its default (one thread a core): the bench itself must pin it, as for serial
    env = bench_env("cp313", tmp_path / "cache")
    del env["OPENBLAS_NUM_THREADS"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = raw_benchmarks(out)
    for plain, twin in ((PLAIN_W1, SERIAL), (PLAIN_W2, THREADS_W2)):
        mine, theirs = raw[plain.name], raw[twin.name]
        assert mine["meta"]["ft_strategy"] == PLAIN_LOOP
        for key in ("ft_units", "ft_run_config", "inner_loops"):
            assert mine["meta"][key] == theirs["meta"][key], key
        assert {r["ft_digest"] for r in mine["runs"]} == {r["ft_digest"] for r in theirs["runs"]}
        assert {r["ft_blas_threads"] for r in mine["runs"] + theirs["runs"]} == {1}

    folder = tmp_path / "report"
    report_command([str(out)], str(folder))
    summary = json.loads((folder / "summary.json").read_text())
    found = {r["plain"]: r for r in summary["harness_overhead"]}
    assert list(found) == [PLAIN_W1.name, PLAIN_W2.name]
    for plain, twin in ((PLAIN_W1, SERIAL), (PLAIN_W2, THREADS_W2)):
        r = found[plain.name]
        mine, theirs = raw[plain.name]["values"], raw[twin.name]["values"]
        assert r["harness"] == twin.name and r["same_digest"] is True
        assert r["time_ratio"] == pytest.approx(statistics.fmean(theirs) / statistics.fmean(mine))
    assert [r["measure"] for r in found.values()] == ["harness overhead", "vs plain loop"]
    rows = summary["workloads"]["data-parallel"]
    assert PLAIN_LOOP not in {r["strategy"] for r in rows}
    assert not any(PLAIN_LOOP in name for name in summary["headline"]["rows"])
    markdown = (folder / "REPORT.md").read_text()
    assert "## Harness overhead: against a hand-written loop" in markdown
    assert f"| cp313 | vs plain loop | `{THREADS_W2.name}` |" in markdown


# ---- the ratios against numbers computed here ---------------------------------------------------


def measurement(cell: Cell, values: list[float], digest: str = "d" * 64) -> Measurement:
    meta = {"name": cell.name, "unit": "second", "ft_unit": "sample", "ft_digest": digest}
    runs = [pyperf.Run([v], metadata=meta, collect_metadata=False) for v in values]
    return Measurement("cp313", cell, pyperf.Benchmark(runs), "cp313.json")


def fieller_by_hand(harness: list[float], plain: list[float]) -> tuple[float, float]:
    """The two R with (a - R b)^2 = t^2 (va + R^2 vb), a and b the means of harness and plain,
    va and vb the variances of those means, t Student's 97.5 % quantile at n_a + n_b - 2."""
    a, b = statistics.fmean(harness), statistics.fmean(plain)
    va, vb = (statistics.variance(x) / len(x) for x in (harness, plain))
    t2 = student_t_critical(len(harness) + len(plain) - 2) ** 2
    qa, qb, qc = b * b - t2 * vb, -2 * a * b, a * a - t2 * va
    root = math.sqrt(qb * qb - 4 * qa * qc)
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


SERIAL_VALUES = [0.80, 0.82, 0.79, 0.81, 0.80, 0.83]  # harness serial: clearly faster
PLAIN_W1_VALUES = [1.00, 1.03, 0.98, 1.01, 0.99, 1.02]
THREADS_W2_VALUES = [0.60, 0.66, 0.55, 0.63, 0.58, 0.61]  # within the noise of plain w2
PLAIN_W2_VALUES = [0.61, 0.57, 0.65, 0.59, 0.64, 0.60]
DECOYS = {  # cells a wrong pairing would pick: their ratios would differ from the right ones
    Cell("data-parallel", "threads", 1, "", TINY): [0.70, 0.71, 0.69, 0.70, 0.72, 0.70],
    Cell("data-parallel", "threads", 4, "", TINY): [0.40, 0.41, 0.39, 0.42, 0.40, 0.41],
    Cell("data-parallel", "processes", 2, "", TINY): [1.50, 1.52, 1.49, 1.51, 1.50, 1.53],
}


def overhead_rows(*extra: Measurement) -> dict[str, dict[str, Any]]:
    found = [
        measurement(SERIAL, SERIAL_VALUES),
        measurement(THREADS_W2, THREADS_W2_VALUES),
        measurement(PLAIN_W1, PLAIN_W1_VALUES),
        measurement(PLAIN_W2, PLAIN_W2_VALUES),
        *(measurement(cell, values) for cell, values in DECOYS.items()),
        *extra,
    ]
    index = Index([RawFile("cp313.json", "0" * 64, "cp313", found)])
    return {r["plain"]: r for r in overhead.rows(index)}


@pytest.mark.parametrize(
    ("plain", "harness_values", "plain_values", "verdict"),
    [
        (PLAIN_W1, SERIAL_VALUES, PLAIN_W1_VALUES, "harness faster"),
        (PLAIN_W2, THREADS_W2_VALUES, PLAIN_W2_VALUES, "not significant"),
    ],
)
def test_ratio_interval_and_verdict_match_a_hand_computation(
    plain: Cell, harness_values: list[float], plain_values: list[float], verdict: str
) -> None:
    """Fails if the ratio is inverted (plain ÷ harness), paired with the wrong harness cell
    (threads w1 or w4, processes), its interval is not Fieller's, or the verdict disagrees with
    the t-test."""
    r = overhead_rows()[plain.name]
    ratio = statistics.fmean(harness_values) / statistics.fmean(plain_values)
    t, critical = t_test(harness_values, plain_values)
    assert (abs(t) >= critical) == (verdict != "not significant")  # the cases are what they say
    assert r["time_ratio"] == pytest.approx(ratio, rel=1e-12)
    # pyperf's t table is rounded to 3 decimals: the ends agree to about 1e-3
    assert r["ci95"] == pytest.approx(fieller_by_hand(harness_values, plain_values), rel=2e-3)
    assert r["verdict"] == verdict and r["significant"] == (verdict != "not significant")
    assert r["same_digest"] is True


def test_a_slower_harness_is_called_slower() -> None:
    """Fails if the verdict's direction is read the wrong way round."""
    slow = [1.20, 1.22, 1.19, 1.21, 1.20, 1.23]
    found = [measurement(SERIAL, slow), measurement(PLAIN_W1, PLAIN_W1_VALUES)]
    (r,) = overhead.rows(Index([RawFile("cp313.json", "0" * 64, "cp313", found)]))
    assert r["verdict"] == "harness slower"
    assert r["time_ratio"] == pytest.approx(
        statistics.fmean(slow) / statistics.fmean(PLAIN_W1_VALUES)
    )


def test_a_missing_twin_or_a_different_digest_is_said_not_hidden() -> None:
    index = Index(
        [
            RawFile(
                "cp313.json",
                "0" * 64,
                "cp313",
                [
                    measurement(SERIAL, SERIAL_VALUES, digest="a" * 64),
                    measurement(PLAIN_W1, PLAIN_W1_VALUES, digest="b" * 64),
                    measurement(PLAIN_W2, PLAIN_W2_VALUES),
                ],
            )
        ]
    )
    w1, w2 = overhead.rows(index)
    assert w1["same_digest"] is False
    assert w2["verdict"] == "no harness cell" and w2["time_ratio"] is None


def test_markdown_prints_a_ratio_only_where_it_is_significant() -> None:
    """Fails if a non-significant ratio is printed as a number (the report's rule for every
    ratio) or the interval is not the summary's."""
    rows = overhead_rows()
    text = overhead.markdown({overhead.KEY: list(rows.values())})
    serial, threads = (
        next(line for line in text.splitlines() if line.startswith(f"| cp313 | {m} |"))
        for m in ("harness overhead", "vs plain loop")
    )
    w1, w2 = rows[PLAIN_W1.name], rows[PLAIN_W2.name]
    assert f"| {w1['time_ratio']:.2f} | [{w1['ci95'][0]:.2f}–{w1['ci95'][1]:.2f}] |" in serial
    assert "| harness faster |" in serial
    assert threads.split("|")[6].strip() == "not significant"  # the ratio column
    assert f"| not significant | [{w2['ci95'][0]:.2f}–{w2['ci95'][1]:.2f}] |" in threads
    assert overhead.markdown({overhead.KEY: []}) == ""

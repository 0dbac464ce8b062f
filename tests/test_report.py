"""The report, checked against numbers computed here from the raw JSON of a real smoke bench,
without pyperf: means, speed-ups, the t-test and its labels, efficiency, the scalability fit."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyperf
import pytest

from harness.bench.matrix import Cell
from harness.report import rawdata
from harness.report.rawdata import Measurement, compare, speedup_label
from harness.report.summary import report_command
from tests.smoke_bench import CONFIGS, ROOT, smoke_bench

CLOSE = 1e-9
AMBIGUOUS_T = 0.01  # pyperf's critical values are a rounded table: skip a t this close to one


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_bench(tmp_path_factory)


@pytest.fixture(scope="module")
def rendered(smoke: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "latest"
    report_command([str(smoke / f"{c}.json") for c in CONFIGS], str(out))
    return out


@pytest.fixture(scope="module")
def summary(rendered: Path) -> dict[str, Any]:
    return json.loads((rendered / "summary.json").read_text())


# ---- independent computations -----------------------------------------------------------------------


def raw_benchmarks(path: Path) -> dict[str, dict[str, Any]]:
    """name -> values (seconds per unit), metadata and per-run metadata, read as plain JSON."""
    data = json.loads(path.read_text())
    found = {}
    for bench in data["benchmarks"]:
        meta = {**data.get("metadata", {}), **bench.get("metadata", {})}
        runs = [r for r in bench["runs"] if r.get("values")]
        found[meta["name"]] = {
            "values": [v for r in runs for v in r["values"]],
            # the unit of the report's tests and intervals: one mean per pyperf process
            "samples": [statistics.fmean(r["values"]) for r in runs],
            "meta": meta,
            "runs": [{**meta, **r.get("metadata", {})} for r in runs],
        }
    return found


def student_t_critical(df: int) -> float:
    """c with P(|T| <= c) = 0.95 for Student's t with df degrees of freedom: Simpson + bisection."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def half_mass(c: float, steps: int = 2000) -> float:
        h = c / steps
        f = [
            math.exp(log_norm - (df + 1) / 2 * math.log1p((i * h) ** 2 / df))
            for i in range(steps + 1)
        ]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    low, high = 0.0, 50.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if half_mass(mid) < 0.475 else (low, mid)
    return (low + high) / 2


def t_test(a: list[float], b: list[float]) -> tuple[float, float]:
    """Two-sample Student t with pooled variance: (t, critical value at 95 %, two-tailed)."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    pooled = (sum((x - ma) ** 2 for x in a) + sum((x - mb) ** 2 for x in b)) / (len(a) + len(b) - 2)
    return (ma - mb) / math.sqrt(pooled * (1 / len(a) + 1 / len(b))), student_t_critical(
        len(a) + len(b) - 2
    )


def expected_label(base: list[float], other: list[float]) -> str | None:
    """What the report must print, or None where the t-score sits on the critical value."""
    t, critical = t_test(base, other)
    if abs(abs(t) - critical) < AMBIGUOUS_T:
        return None
    return (
        f"{statistics.fmean(base) / statistics.fmean(other):.2f}x"
        if abs(t) >= critical
        else "not significant"
    )


def serial_name(name: str) -> str:
    parts = name.split("/")
    return "/".join([parts[0], "serial", "w1", *parts[3:]])


def report_row(markdown: str, config: str, name: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {config} | `{name}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=CLOSE, abs_tol=CLOSE)


# ---- tables, speed-ups, significance ---------------------------------------------------------------


def test_means_throughputs_and_speedups_match(smoke: Path, summary: dict[str, Any]) -> None:
    raw = {c: raw_benchmarks(smoke / f"{c}.json") for c in CONFIGS}
    rows = [r for rows in summary["workloads"].values() for r in rows]
    assert len(rows) == sum(len(v) for v in raw.values())
    for r in rows:
        mine = raw[r["configuration"]][r["name"]]["values"]
        assert close(r["mean_s"], statistics.fmean(mine)) and close(
            r["stdev_s"], statistics.stdev(mine)
        )
        assert close(r["rate_per_s"], 1 / statistics.fmean(mine))
        base = raw[r["configuration"]][serial_name(r["name"])]["values"]
        per_process = [
            raw[r["configuration"]][n]["samples"] for n in (serial_name(r["name"]), r["name"])
        ]
        if r["is_baseline"]:
            assert r["vs_serial"] is None and r["efficiency"] == 1.0
            continue
        speedup = statistics.fmean(base) / statistics.fmean(mine)
        assert close(r["vs_serial"]["speedup"], speedup)
        assert close(r["efficiency"], speedup / r["workers"])
        assert close(r["vs_serial"]["t_score"], t_test(*per_process)[0])


def test_significance_labels_in_the_markdown_match_an_independent_t_test(
    smoke: Path, rendered: Path
) -> None:
    raw = {c: raw_benchmarks(smoke / f"{c}.json") for c in CONFIGS}
    markdown = (rendered / "REPORT.md").read_text()
    checked = 0
    for config in CONFIGS:
        for name, bench in raw[config].items():
            base = raw[config][serial_name(name)]["samples"]
            default = raw["cp313"][serial_name(name)]["samples"]
            row = report_row(markdown, config, name)
            same, versus_default = row[4], row[5]
            if name != serial_name(name) and (want := expected_label(base, bench["samples"])):
                assert same == want, (config, name)
                checked += 1
            if (config, name) != ("cp313", serial_name(name)) and (
                want := expected_label(default, bench["samples"])
            ):
                assert versus_default == want, (config, name)
    assert checked >= 8


def test_not_significant_is_never_shown_as_a_number() -> None:
    def measurement(values: list[float]) -> Measurement:  # one pyperf process per value
        runs = [
            pyperf.Run([v], metadata={"name": "b", "unit": "second"}, collect_metadata=False)
            for v in values
        ]
        return Measurement("cp313", Cell("data-parallel", "serial", 1), pyperf.Benchmark(runs), "x")

    same = compare(measurement([1.0, 1.01, 0.99, 1.0]), measurement([1.0, 0.99, 1.01, 1.0]))
    assert same["significant"] is False and speedup_label(same) == "not significant"
    double = compare(measurement([2.0, 2.01, 1.99, 2.0]), measurement([1.0, 1.01, 0.99, 1.0]))
    assert double["significant"] is True and speedup_label(double) == "2.00x"
    lonely = compare(measurement([1.0, 1.1, 0.9, 1.0]), measurement([1.0]))
    assert lonely["significant"] is None and speedup_label(lonely) == "not tested"


def test_unequal_numbers_of_values_get_welchs_test() -> None:
    """E.g. one configuration re-run with `-p 2`: worked by hand, a = 1,2,3,4 (mean 2.5, s² 5/3),
    b = 10,11,12 (mean 11, s² 1): t = -8.5 / sqrt(5/12 + 1/3) = -9.815, Welch df = 4.96 -> 4,
    critical 2.776: significant; and two samples from the same spread are not."""
    apart, t_score = rawdata.significance([1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0])
    assert apart is True and t_score == pytest.approx(-8.5 / math.sqrt(0.75))
    assert rawdata.significance([1.0, 1.1, 0.9, 1.0], [1.0, 1.1, 0.9])[0] is False
    assert rawdata.significance([1.0, 1.0, 1.0], [2.0, 2.0])[0] is None  # no spread: no test


def test_single_thread_cost_is_the_extra_time_of_serial_in_percent(
    smoke: Path, summary: dict[str, Any]
) -> None:
    raw = {c: raw_benchmarks(smoke / f"{c}.json") for c in CONFIGS}
    costs = {c["name"]: c for c in summary["single_thread_cost"]}
    serials = [n for n in raw["cp313"] if n == serial_name(n)]
    assert sorted(costs) == sorted(serials)
    for name in serials:
        default, free = raw["cp313"][name]["values"], raw["cp313t"][name]["values"]
        assert close(
            costs[name]["cost_percent"],
            (statistics.fmean(free) / statistics.fmean(default) - 1) * 100,
        )
        per_process = raw["cp313t"][name]["samples"], raw["cp313"][name]["samples"]
        assert close(costs[name]["t_score"], t_test(*per_process)[0])


# ---- the scalability fit ----------------------------------------------------------------------------


def weighted_misfit(
    workers: list[float], capacity: list[float], errors: list[float], sigma: Any, kappa: Any
) -> Any:
    """Σ ((C − USL(N)) / s)² over N > 1, for scalars or broadcast grids of (σ, κ)."""
    total = 0.0
    for n, c, e in zip(workers[1:], capacity[1:], errors[1:]):
        total = total + ((c - n / (1 + sigma * (n - 1) + kappa * n * (n - 1))) / e) ** 2
    return total


def test_fit_of_the_threads_curve_is_the_best_of_its_domain(
    smoke: Path, summary: dict[str, Any]
) -> None:
    """Capacity and its standard error recomputed from the raw values; no (σ, κ) on a fine grid
    over the chosen law's domain (σ in [0, 1], κ ≥ 0, κ = 0 for Amdahl) fits them better."""
    fits = {(f["configuration"], f["series"]): f for f in summary["scaling"]}
    for config in CONFIGS:
        raw = raw_benchmarks(smoke / f"{config}.json")
        workers = [1, 2, 3]  # the smoke preset's threads
        values = [raw[f"data-parallel/threads/w{n}/tiny"]["values"] for n in workers]
        means = [statistics.fmean(v) for v in values]
        per_process = [raw[f"data-parallel/threads/w{n}/tiny"]["samples"] for n in workers]
        spread = [statistics.stdev(p) / m / math.sqrt(len(p)) for p, m in zip(per_process, means)]
        capacity = [means[0] / m for m in means]
        errors = [c * math.hypot(r, spread[0]) for c, r in zip(capacity, spread)]
        found = fits[(config, "threads")]
        assert found["points"] == 3 and found["weighted"] and found["law"] in ("USL", "Amdahl")
        assert [p["capacity"] for p in found["curve"]] == pytest.approx(capacity, rel=1e-12)
        assert [p["error"] for p in found["curve"]][1:] == pytest.approx(errors[1:], rel=1e-12)
        assert 0 <= found["sigma"] <= 1 and found["kappa"] >= 0
        usl = found["law"] == "USL"
        kappas = np.concatenate([[0.0], np.geomspace(1e-6, 10, 2000)]) if usl else [0.0]
        grid = weighted_misfit(
            workers, capacity, errors, np.linspace(0, 1, 2001)[:, None], np.asarray(kappas)[None, :]
        )
        reported = weighted_misfit(workers, capacity, errors, found["sigma"], found["kappa"])
        assert reported <= float(np.min(grid)) * (1 + 1e-9) + 1e-12


# ---- sections, plots, determinism ---------------------------------------------------------------------


def test_async_sgd_lost_updates_and_loader_rows(smoke: Path, summary: dict[str, Any]) -> None:
    raw = {c: raw_benchmarks(smoke / f"{c}.json") for c in CONFIGS}
    for r in summary["async_sgd"]:
        lost = [run["ft_lost_updates"] for run in raw[r["configuration"]][r["name"]]["runs"]]
        assert r["probes"] == len(lost) == 3 and close(
            r["lost_updates_mean"], statistics.fmean(lost)
        )
        assert r["lost_updates_max"] == max(lost) and r["policy"] == "hogwild"
    loading = summary["loader"]["loader"]
    assert {r["name"] for r in loading} == {"loader/serial/w1/numpy", "loader/threads/w2/numpy"}
    for r in loading:
        assert close(
            r["samples_per_s"], 1 / statistics.fmean(raw[r["configuration"]][r["name"]]["values"])
        )


def test_markdown_has_every_section_and_the_reproduce_command(rendered: Path) -> None:
    markdown = (rendered / "REPORT.md").read_text()
    for heading in (
        "## Headline",
        "## Single-thread cost",
        "## Per workload",
        "## Scaling fits",
        "## async-sgd",
        "## Data loading",
        "## Environment",
        "## How to reproduce",
    ):
        assert heading in markdown
    assert "nox -s report -- --preset smoke" in markdown and "host `" in markdown


def test_plots_are_pngs_linked_from_the_report(rendered: Path, summary: dict[str, Any]) -> None:
    markdown = (rendered / "REPORT.md").read_text()
    assert (
        "speedup-data-parallel-tiny.png" in summary["plots"]
        and "best-data-parallel-tiny.png" in summary["plots"]
    )
    for name in summary["plots"]:
        assert (rendered / name).read_bytes()[
            :8
        ] == b"\x89PNG\r\n\x1a\n" and f"({name})" in markdown


def test_same_raw_files_give_the_same_report(smoke: Path, rendered: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    report_command([str(smoke / f"{c}.json") for c in CONFIGS], str(again))
    names = sorted(p.name for p in rendered.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (rendered / name).read_bytes() == (again / name).read_bytes(), name


# ---- provenance and refusals --------------------------------------------------------------------------


def report_cli(tmp_path: Path, *raw: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "report", *map(str, raw), "-o", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def edited(smoke: Path, tmp_path: Path, config: str, **metadata: str) -> Path:
    """A copy of a raw file with suite-level metadata changed (as another machine/preset would)."""
    data = json.loads((smoke / f"{config}.json").read_text())
    data["metadata"].update(metadata)
    path = tmp_path / f"{config}.json"
    path.write_text(json.dumps(data))
    return path


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_mixing_presets_is_refused_with_a_clear_error(smoke: Path, tmp_path: Path) -> None:
    other = edited(smoke, tmp_path, "cp313t", ft_preset="quick")
    message = one_line_error(report_cli(tmp_path, smoke / "cp313.json", other))
    assert (
        "cannot be compared: different preset" in message
        and "smoke" in message
        and "quick" in message
    )


def test_one_configuration_twice_or_a_foreign_file_is_refused(smoke: Path, tmp_path: Path) -> None:
    twice = Path(shutil.copy(smoke / "cp313.json", tmp_path / "copy.json"))
    assert "configuration cp313 appears twice" in one_line_error(
        report_cli(tmp_path, smoke / "cp313.json", twice)
    )
    foreign = tmp_path / "foreign.json"
    run = pyperf.Run([1.0, 1.1], metadata={"name": "x", "unit": "second"}, collect_metadata=False)
    pyperf.BenchmarkSuite([pyperf.Benchmark([run])]).dump(str(foreign))
    assert "not made by `python -m harness bench`" in one_line_error(report_cli(tmp_path, foreign))


def test_a_folder_holding_anything_but_a_report_is_never_replaced(
    smoke: Path, tmp_path: Path
) -> None:
    """The report swaps in a whole new folder: one holding the raw files themselves (or anything
    else) would lose them, so it is refused and left as it was; an earlier report is replaced."""
    out = tmp_path / "out"
    (out / "raw").mkdir(parents=True)
    kept = Path(shutil.copy(smoke / "cp313.json", out / "raw" / "cp313.json"))
    message = one_line_error(report_cli(tmp_path, kept))
    assert f"-o {out} holds raw/, which no report wrote" in message
    assert sorted(p.name for p in out.rglob("*")) == ["cp313.json", "raw"]
    shutil.rmtree(out / "raw")
    assert report_cli(tmp_path, smoke / "cp313.json").returncode == 0  # into an empty folder
    assert report_cli(tmp_path, smoke / "cp313.json").returncode == 0  # over its own report


def test_files_from_another_machine_are_accepted_and_named(smoke: Path, tmp_path: Path) -> None:
    raw = [edited(smoke, tmp_path, c, hostname="elsewhere") for c in CONFIGS]
    proc = report_cli(tmp_path, *raw)
    assert proc.returncode == 0, proc.stderr
    assert "host `elsewhere`" in (tmp_path / "out" / "REPORT.md").read_text()


def test_a_configuration_rerun_with_fewer_processes_is_still_compared(
    smoke: Path, tmp_path: Path
) -> None:
    """As when one configuration is re-run with `-p` lowered to fit a time limit: the intro says
    each file's pyperf shape, and speed-ups across files get Welch's test, not "not tested"."""
    suite = pyperf.BenchmarkSuite.load(str(smoke / "cp313t.json"))
    fewer = [
        pyperf.Benchmark([r for r in b.get_runs() if r.values][:-1]) for b in suite.get_benchmarks()
    ]
    pyperf.BenchmarkSuite(fewer).dump(str(tmp_path / "cp313t.json"))
    out = tmp_path / "latest"
    report_command([str(smoke / "cp313.json"), str(tmp_path / "cp313t.json")], str(out))
    markdown = (out / "REPORT.md").read_text()
    shapes = re.search(
        r"Each benchmark: cp313: (\d) pyperf worker processes.*; cp313t: (\d) pyperf", markdown
    )
    assert shapes and int(shapes[1]) == int(shapes[2]) + 1
    versus_default = [
        report_row(markdown, "cp313t", n)[5] for n in raw_benchmarks(smoke / "cp313.json")
    ]
    assert versus_default and "not tested" not in versus_default


def test_headline_follows_the_model_with_the_most_cells() -> None:
    """The scaling preset has 15 tiny cells and 7 small ones: the headline is tiny's curve,
    whichever model the raw file lists first; on a tie, the first listed."""
    from types import SimpleNamespace

    from harness.report.summary import headline

    def row(model: str, series: str, workers: int) -> dict[str, Any]:
        return {
            "name": f"data-parallel/{series}/w{workers}/{model}",
            "model": model,
            "workload_variant": "",
            "series": series,
            "workers": workers,
            "configuration": "cp313",
            "rate_per_s": 1.0,
            "vs_serial_default": None,
            "is_baseline": series == "serial",
            "unit": "sample",
        }

    index = SimpleNamespace(configs=["cp313"], default="cp313")
    small = [row("small", "serial", 1), row("small", "threads", 16)]
    tiny = [row("tiny", "serial", 1), row("tiny", "threads", 2), row("tiny", "threads", 16)]
    chosen = headline(
        {"workloads": {"data-parallel": small + tiny}, "single_thread_cost": []}, index
    )
    assert (
        chosen is not None
        and chosen["model"] == "tiny"
        and set(chosen["rows"]) == {"serial/w1", "threads/w2", "threads/w16"}
    )
    tie = headline(
        {"workloads": {"data-parallel": small + tiny[:2]}, "single_thread_cost": []}, index
    )
    assert tie is not None and tie["model"] == "small"


def test_benchmarks_measured_again_give_the_range_of_processes(smoke: Path, tmp_path: Path) -> None:
    """After adaptive rounds the cells measured again have more processes than the others: the
    intro gives the fewest and the most, not the first benchmark's count as everyone's."""
    suite = pyperf.BenchmarkSuite.load(str(smoke / "cp313t.json"))
    benches = suite.get_benchmarks()
    runs = [[r for r in b.get_runs() if r.values] for b in benches]
    fewer = [pyperf.Benchmark(runs[0])] + [pyperf.Benchmark(r[:2]) for r in runs[1:]]
    pyperf.BenchmarkSuite(fewer).dump(str(tmp_path / "cp313t.json"))
    out = tmp_path / "latest"
    report_command([str(smoke / "cp313.json"), str(tmp_path / "cp313t.json")], str(out))
    markdown = (out / "REPORT.md").read_text()
    most = len(runs[0])
    assert f"cp313t: 2–{most} pyperf worker processes" in markdown, markdown[:800]
    assert "more for the cells measured again" in markdown

"""The report's "Where the time goes": real `run --trace` files of real small runs fed to
`report` beside the committed sample raw files, and the limits paragraph checked on hand-made
traces whose shares are worked out here by hand."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from harness.report import where_time_goes
from harness.report.summary import report_command
from tests.test_trace import event

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_RAW = sorted(str(p) for p in (ROOT / "reports" / "samples-raw").glob("*.json"))
STEPS = 5
RUNS = [("threads", 2, 1024), ("threads", 2, 256), ("serial", 1, 1024)]


def harness(*args: str, config: str = "cp313t") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env={**os.environ, "FT_HARNESS_CONFIG": config},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNS traced by `run --trace`, labelled cp313t (a configuration the sample raw files have)."""
    folder = tmp_path_factory.mktemp("traces")
    for strategy, workers, batch in RUNS:
        name = f"cp313t.{strategy}-w{workers}-b{batch}.trace.jsonl"
        proc = harness(
            *("run", "--strategy", strategy, "--workers", str(workers), "--batch", str(batch)),
            *("--steps", str(STEPS), "--trace", str(folder / name)),
        )
        assert proc.returncode == 0, proc.stderr
    return folder


@pytest.fixture(scope="module")
def rendered(traces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "latest"
    report_command(SAMPLES_RAW, str(out), traces=[str(traces)])
    return out


def by_hand(path: Path) -> dict[str, float]:
    """Serial fraction and compute seconds read straight from the events, not via the harness."""
    spans: dict[str, float] = {"map": 0, "outside map": 0, "task": 0}
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if e["ph"] == "X" and e["name"] in spans:
            spans[e["name"]] += e["args"]["end_ns"] - e["args"]["start_ns"]
    serial, in_maps = spans["outside map"], spans["map"]
    return {"serial_fraction": serial / (serial + in_maps), "compute_s": spans["task"] / 1e9}


def test_the_section_has_a_row_per_trace(rendered: Path) -> None:
    """Catches a trace left out, or its settings misread (batch, workers, steps from elsewhere)."""
    text = (rendered / "REPORT.md").read_text()
    section = text.split("## Where the time goes", 1)[1].split("\n## ", 1)[0]
    for strategy, workers, batch in RUNS:
        row = f"| cp313t | data-parallel tiny | {strategy} | {workers} | {batch} | {STEPS} |"
        assert row in section, row
    assert "**What limits the parallel runs at batch 256**" in section
    assert "cp313t threads ×2:" in section


def test_the_timeline_is_a_png_of_threads_at_the_smallest_batch(rendered: Path) -> None:
    """Catches a plot not written, not linked, not kept among the report's plots, or drawn
    from another trace than threads ×2 at batch 256."""
    summary = json.loads((rendered / "summary.json").read_text())
    (link,) = re.findall(r"!\[timeline\]\(([^)]+)\)", (rendered / "REPORT.md").read_text())
    assert link in summary["plots"]
    assert (rendered / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["where_time_goes"]["timeline"]["trace"].endswith("threads-w2-b256.trace.jsonl")


def test_summary_figures_match_the_events(traces: Path, rendered: Path) -> None:
    """Catches figures that drift from the trace between summary.json and the file: the serial
    fraction and compute seconds, and shares that do not add up to one."""
    summary = json.loads((rendered / "summary.json").read_text())
    found = {Path(e["path"]).name: e for e in summary["where_time_goes"]["traces"]}
    assert sorted(found) == sorted(p.name for p in traces.iterdir())
    for name, entry in found.items():
        expected = by_hand(traces / name)
        assert entry["totals"]["serial_fraction"] == pytest.approx(expected["serial_fraction"])
        assert entry["compute_s"] == pytest.approx(expected["compute_s"])
        assert sum(entry["shares"].values()) == pytest.approx(1.0)


def test_the_measured_serial_fraction_stands_beside_the_fit(traces: Path, rendered: Path) -> None:
    """Catches a trace of another batch matched to the fit (the bench ran batch 1024), a fit of
    another configuration given cp313t's traces, and the figure missing from the σ cell."""
    summary = json.loads((rendered / "summary.json").read_text())
    fits = {(f["configuration"], f["series"], f["model"]): f for f in summary["scaling"]}
    measured = fits[("cp313t", "threads", "tiny")]["measured_serial_fraction"]
    assert sorted((m["strategy"], m["workers"]) for m in measured) == [
        ("serial", 1),
        ("threads", 2),
    ]
    assert fits[("cp313", "threads", "tiny")]["measured_serial_fraction"] == []
    serial = by_hand(traces / "cp313t.serial-w1-b1024.trace.jsonl")["serial_fraction"]
    threads = by_hand(traces / "cp313t.threads-w2-b1024.trace.jsonl")["serial_fraction"]
    text = (rendered / "REPORT.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| cp313t | `data-parallel`"))
    assert f"trace {serial:.3f} (serial), {threads:.3f} (×2)" in row


def test_traces_beside_the_raw_files_are_found_without_the_option(
    traces: Path, tmp_path: Path
) -> None:
    """Catches the default (the *.trace.jsonl beside the raw files) not being looked for, and a
    section drawn where there is no trace."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for raw in SAMPLES_RAW:
        shutil.copy(raw, plain)
    report_command(sorted(map(str, plain.glob("*.json"))), str(tmp_path / "none"))
    assert "Where the time goes" not in (tmp_path / "none" / "REPORT.md").read_text()
    assert "where_time_goes" not in json.loads((tmp_path / "none" / "summary.json").read_text())
    for trace in traces.iterdir():
        shutil.copy(trace, plain)
    report_command(sorted(map(str, plain.glob("*.json"))), str(tmp_path / "found"))
    summary = json.loads((tmp_path / "found" / "summary.json").read_text())
    assert len(summary["where_time_goes"]["traces"]) == len(RUNS)


def test_the_command_line_takes_a_trace_file(traces: Path, tmp_path: Path) -> None:
    """Catches `--traces` not reaching the report (parsed but dropped)."""
    one = traces / "cp313t.threads-w2-b256.trace.jsonl"
    proc = harness("report", *SAMPLES_RAW, "-o", str(tmp_path / "out"), "--traces", str(one))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["path"] for e in summary["where_time_goes"]["traces"]] == [str(one)]


def noxfile_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """noxfile.py imported as a module; where nox is not installed (the test venvs), a stand-in
    for the few names it uses at import (sessions are plain functions then)."""
    if importlib.util.find_spec("nox") is None:
        stub = types.SimpleNamespace(
            options=types.SimpleNamespace(),
            param=lambda *a, **k: a,
            parametrize=lambda *a, **k: lambda f: f,
            session=lambda *a, **k: a[0] if a else lambda f: f,
            Session=object,
        )
        monkeypatch.setitem(sys.modules, "nox", stub)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nox_report_records_traces_the_report_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Catches `nox -s report`'s trace commands going stale (an option renamed, a run refused)
    or writing files the report cannot place; otherwise seen only at the end of a whole
    `nox -s report`. This interpreter stands in for the configuration's venv."""
    noxfile = noxfile_module(monkeypatch)
    monkeypatch.setattr(noxfile, "venv_python", lambda session, interp: sys.executable)
    monkeypatch.setattr(noxfile, "RAW", tmp_path)
    monkeypatch.setattr(noxfile, "TRACE_STEPS", 3)

    class Session:
        def run(self, *command: str, env: dict[str, str], **_: object) -> None:
            subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=True, timeout=120)

    paths = noxfile.record_traces(Session(), [types.SimpleNamespace(name="cp313t", env={})])
    assert len(paths) == len(noxfile.TRACE_RUNS)
    report_command(SAMPLES_RAW, str(tmp_path / "out"), traces=paths)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    found = {
        (e["strategy"], e["workers"], e["batch"]) for e in summary["where_time_goes"]["traces"]
    }
    assert found == set(noxfile.TRACE_RUNS)
    assert summary["where_time_goes"]["limits"][0]["configuration"] == "cp313t"


@pytest.mark.parametrize("kind", ["missing", "unnamed", "empty folder"])
def test_a_bad_trace_is_one_error_line(kind: str, tmp_path: Path) -> None:
    """Catches a traceback (or a silently skipped file) for a trace that is not there, one that
    does not say which run made it (the format before runs named themselves), or a folder given
    with no trace in it."""
    path = tmp_path / "t.trace.jsonl"
    if kind == "empty folder":
        path = tmp_path / "none"
        path.mkdir()
    if kind == "unnamed":
        path.write_text(json.dumps(event("run", 0, 10, tid=1)) + "\n")
    proc = harness("report", *SAMPLES_RAW, "-o", str(tmp_path / "out"), "--traces", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()


# ---- the limits paragraph, on hand-made traces ------------------------------------------------


def hand_trace(
    path: Path,
    config: str,
    batch: int,
    maps: list[tuple[int, int]],
    tasks: dict[int, list[tuple[int, int]]],
) -> str:
    """A threads ×2 trace: run 0..100k ns, start-up to the first map, gaps between maps, each
    tid's tasks (one per map, in map order)."""
    settings = {"workload": "data-parallel", "model": "tiny", "strategy": "threads"}
    settings |= {"workers": 2, "batch": batch, "microbatches": 16, "steps": len(maps)}
    run = event("run", 0, 100_000, 1, configuration=config, settings=settings)
    events = [run, event("start-up", 0, maps[0][0], 1)]
    events += [event("map", s, e, 1, step=n, tasks=2) for n, (s, e) in enumerate(maps)]
    events += [
        event("outside map", a[1], b[0], 1, step=n) for n, (a, b) in enumerate(zip(maps, maps[1:]))
    ]
    for tid, spans in tasks.items():
        events += [event("task", s, e, tid, step=n, index=tid) for n, (s, e) in enumerate(spans)]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def test_the_limits_paragraph_names_the_largest_loss(tmp_path: Path) -> None:
    """Shares over 2 workers x (time in maps + serial part), worked out by hand:

    cp313t, batch 256: maps 10-30k, 40-60k (40k), gap 30-40k (10k); budget 2 x 50k = 100k.
    The caller computes 18k + 18k, the other 10k + 10k: compute 56k = 56 %; waiting
    (40k - 36k) + (40k - 20k) = 24k = 24 %; serial 2 x 10k = 20 %. Waiting limits: 24/20 = 1.2x.
    cp313t, batch 1024: maps 10-50k, 55-95k (80k), gap 5k; budget 170k. Compute 80k + 72k,
    waiting 8k = 4.7 %, serial 10k = 5.9 %.
    cp313, batch 256: maps 10-20k, 40-50k (20k), gap 20k; budget 80k. Compute 4 x 9k = 36k
    = 45 %, waiting 4k = 5 %, serial 40k = 50 %. The serial part limits: 50/5 = 10x.

    Catches shares over another budget (time in maps alone, the run), waiting and serial
    swapped, the smaller loss named, the larger batch not found, the default build first."""
    paths = [
        hand_trace(
            tmp_path / "a.trace.jsonl",
            "cp313t",
            256,
            [(10_000, 30_000), (40_000, 60_000)],
            {1: [(10_000, 28_000), (40_000, 58_000)], 2: [(20_000, 30_000), (50_000, 60_000)]},
        ),
        hand_trace(
            tmp_path / "b.trace.jsonl",
            "cp313t",
            1024,
            [(10_000, 50_000), (55_000, 95_000)],
            {1: [(10_000, 50_000), (55_000, 95_000)], 2: [(10_000, 46_000), (55_000, 91_000)]},
        ),
        hand_trace(
            tmp_path / "c.trace.jsonl",
            "cp313",
            256,
            [(10_000, 20_000), (40_000, 50_000)],
            {1: [(10_000, 19_000), (40_000, 49_000)], 2: [(11_000, 20_000), (41_000, 50_000)]},
        ),
    ]
    section = where_time_goes.summarise(paths)
    assert section is not None
    text = where_time_goes.section({"where_time_goes": section, "plots": []})
    paragraph = text.split("**What limits the parallel runs at batch 256**", 1)[1]
    free = (
        "cp313t threads ×2: 56.0 % computing, 24.0 % waiting inside maps, 20.0 % in the serial "
        "part, so **waiting inside maps** limits it, 1.2× the serial part (at batch 1024: "
        "4.7 % waiting, 5.9 % serial part)"
    )
    default = (
        "cp313 threads ×2: 45.0 % computing, 5.0 % waiting inside maps, 50.0 % in the serial "
        "part, so **the serial part** limits it, 10.0× waiting inside maps"
    )
    assert free in paragraph and default in paragraph
    assert paragraph.index(free) < paragraph.index(default)  # the free-threaded build first
    limits = {(f["configuration"], f["batch"]): f for f in section["limits"]}
    assert sorted(limits) == [("cp313", 256), ("cp313t", 256)]
    assert limits[("cp313t", 256)]["waiting_share"] == pytest.approx(0.24)
    assert limits[("cp313", 256)]["serial_share"] == pytest.approx(0.50)
    # the timeline: threads ×2 on the free-threaded build at the smallest batch, not the first row
    assert section["timeline"]["trace"] == paths[0]

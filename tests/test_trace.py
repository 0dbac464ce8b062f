"""`run --trace` and `python -m harness trace`: real runs on real strategies, read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import HarnessError, trace
from harness.config import RunConfig
from harness.report.timeline import breakdown, timeline_of, totals, trace_command
from harness.runner import execute

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"steps": 5, "batch": 256, "microbatches": 8, "train_samples": 1024, "test_samples": 64}


def traced(path: Path, **settings: object) -> tuple[dict, list[dict]]:
    with trace.recording(str(path)):
        result = execute(RunConfig(**{**SMALL, **settings}))
    return result, trace.read_events(str(path))


@pytest.mark.parametrize(
    ("strategy", "workers"), [("threads", 2), ("processes", 2), ("asyncio", 2), ("serial", 1)]
)
def test_every_task_is_recorded_once_inside_its_map(
    tmp_path: Path, strategy: str, workers: int
) -> None:
    """Catches lost or duplicated task records, timestamps from another clock (a process
    worker's task outside the caller's map span), and results changed by tracing."""
    result, events = traced(tmp_path / "t.jsonl", strategy=strategy, workers=workers)
    maps = [e for e in events if e["name"] == "map"]
    tasks = [e for e in events if e["name"] == "task"]
    assert len(maps) == SMALL["steps"]
    assert sorted((t["args"]["step"], t["args"]["index"]) for t in tasks) == [
        (s, i) for s in range(SMALL["steps"]) for i in range(SMALL["microbatches"])
    ]
    for t in tasks:
        m = maps[t["args"]["step"]]["args"]
        assert m["start_ns"] <= t["args"]["start_ns"] <= t["args"]["end_ns"] <= m["end_ns"]
    run = next(e for e in events if e["name"] == "run")
    others = {(t["pid"], t["tid"]) for t in tasks} - {(run["pid"], run["tid"])}
    if strategy == "processes":  # the tasks ran in the worker processes, not in the caller
        assert {pid for pid, _ in others} and run["pid"] not in {t["pid"] for t in tasks}
    elif strategy == "threads":  # the caller and one gang thread claim the tasks: the gang
        # thread may find none left (with the GIL on it can wake after the caller took them all)
        assert {pid for pid, _ in others} <= {run["pid"]} and len(others) <= 1
    untraced = execute(RunConfig(**{**SMALL, "strategy": strategy, "workers": workers}))
    assert result["params_sha256"] == untraced["params_sha256"]
    assert trace.RECORDER is None


def test_a_failing_run_writes_no_trace_and_uninstalls_the_recorder(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.raises(RuntimeError), trace.recording(str(path)):
        raise RuntimeError("the run failed")
    assert trace.RECORDER is None and list(tmp_path.iterdir()) == []


def event(name: str, start: int, end: int, tid: int = 1, **args: Any) -> dict[str, Any]:
    return {
        "ph": "X",
        "name": name,
        "pid": 7,
        "tid": tid,
        "ts": start / 1000,
        "dur": (end - start) / 1000,
        "args": {"start_ns": start, "end_ns": end, **args},
    }


def test_breakdown_of_a_hand_made_trace() -> None:
    """Figures computed by hand: run 0..40, start-up 0..5, maps 5..15 and 20..30, the gap
    15..20; the caller computes 5..15 and 20..25, worker 2 computes 5..9."""
    events = [
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 1, "args": {"name": "Main"}},
        event("run", 0, 40),
        event("start-up", 0, 5),
        event("map", 5, 15, step=0),
        event("outside map", 15, 20, step=0),
        event("map", 20, 30, step=1),
        event("task", 5, 15, step=0, index=0),
        event("task", 20, 25, step=1, index=0),
        event("task", 5, 9, tid=2, step=0, index=1),
    ]
    t = timeline_of(events)
    rows = {r["worker"]: r for r in breakdown(t)}
    caller, other = rows["caller (pid 7, Main)"], rows["pid 7, ?"]
    assert (caller["compute_s"], caller["waiting_s"], caller["serial_s"], caller["startup_s"]) == (
        15e-9,
        5e-9,
        5e-9,
        5e-9,
    )
    assert (other["compute_s"], other["waiting_s"], other["tasks"]) == (4e-9, 16e-9, 1)
    total = totals(t)
    assert total["serial_fraction"] == 5 / 25 and total["efficiency_in_maps"] == 19 / 40


def test_trace_command_writes_table_plot_and_viewer_file(tmp_path: Path) -> None:
    traced(tmp_path / "t.jsonl", strategy="threads", workers=2)
    text = trace_command(str(tmp_path / "t.jsonl"), str(tmp_path / "out"))
    assert "measured serial fraction" in text
    assert (tmp_path / "out" / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    viewer = json.loads((tmp_path / "out" / "trace.json").read_text())
    assert len([e for e in viewer["traceEvents"] if e["name"] == "task"]) == 5 * 8


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--steps", "2", "--trace", "/nonexistent/dir/t.jsonl"),
        ("run", "--strategy", "mpi", "--trace", "t.jsonl"),
        ("trace", "/nonexistent.jsonl", "-o", "/tmp/x"),
    ],
)
def test_bad_trace_input_is_one_error_line(args: tuple[str, ...]) -> None:
    proc = harness(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_file_that_is_not_a_trace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"ph": "X", "name": "task"}\n')
    with pytest.raises(HarnessError, match="no 'run' span"):
        trace.read_events(str(tmp_path / "x.jsonl"))

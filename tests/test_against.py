"""`report --against OLD`: which headline verdicts and rankings changed (harness.report.against),
on constructed summaries, and through the real CLI on the committed sample raw files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import HarnessError
from harness.report.against import changes, changes_text, headline_rows, load_old_summary, ranks

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "reports" / "samples-raw").glob("*.json"))


def cell(
    rate: float,
    speedup: float | None = None,
    significant: bool | None = True,
    baseline: bool = False,
    half: float = 0.04,
) -> dict[str, Any]:
    """A headline entry; its 95 % interval is speed-up ± `half`."""
    vs = (
        None
        if speedup is None
        else {
            "speedup": speedup,
            "significant": significant,
            "ci95": [speedup - half, speedup + half],
        }
    )
    return {"rate_per_s": rate, "vs_serial_default": vs, "is_default_baseline": baseline}


def summary(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"headline": {"model": "tiny", "rows": rows}}


OLD = summary(
    {
        "serial/w1": {"cp313": cell(100, baseline=True), "cp313t": cell(90, 0.9)},
        "threads/w2": {"cp313": cell(50, 0.5), "cp313t": cell(140, 1.4)},
        "mpi/w2": {"cp313": cell(150, 1.5), "cp313t": cell(130, 1.3)},
        "gone/w2": {"cp313": cell(500, 5.0)},
    }
)


def test_unchanged_reports_list_nothing() -> None:
    found = changes(OLD, OLD)
    assert found["verdicts"] == [] and found["rankings"] == [] and found["compared"] == 7


def test_a_verdict_change_and_a_swap_in_the_ranking_are_listed_and_nothing_else() -> None:
    new = json.loads(json.dumps(OLD))
    rows = new["headline"]["rows"]
    rows["threads/w2"]["cp313t"] = cell(125, 1.02, significant=False)  # faster -> n.s., rank 1 -> 2
    rows["mpi/w2"]["cp313t"] = cell(131, 1.31)  # still faster: only its rank moves (2 -> 1)
    rows["serial/w1"]["cp313t"] = cell(89, 0.89)  # a new number, the same verdict and rank
    del rows["gone/w2"]  # only in OLD: not compared, and the others' ranks do not move for it
    found = changes(OLD, new)
    assert [(v["cell"], v["configuration"], v["old"], v["new"]) for v in found["verdicts"]] == [
        ("threads/w2", "cp313t", "faster", "not significant")
    ]
    assert sorted((r["cell"], r["old"], r["new"]) for r in found["rankings"]) == [
        ("mpi/w2", 2, 1),
        ("threads/w2", 1, 2),
    ]
    assert all(r["configuration"] == "cp313t" for r in found["rankings"])


def test_cells_the_intervals_cannot_tell_apart_share_a_place() -> None:
    """mpi and threads on cp313t overlap once widened: they swap point estimates, yet no place
    changes; a cell whose interval is wholly above another's still ranks before it."""
    old, new = json.loads(json.dumps(OLD)), json.loads(json.dumps(OLD))
    for rows, (t, m) in (
        (old["headline"]["rows"], (1.40, 1.30)),
        (new["headline"]["rows"], (1.30, 1.40)),
    ):
        rows["threads/w2"]["cp313t"] = cell(140, t, half=0.08)
        rows["mpi/w2"]["cp313t"] = cell(130, m, half=0.08)
    found = changes(old, new)
    assert found["rankings"] == [] and found["verdicts"] == []
    places = {c: r for c, r in zip(("serial/w1", "threads/w2", "mpi/w2"), (3, 1, 1))}
    assert ranks(headline_rows(new), "cp313t", set(places)) == places
    # no interval at all (not tested): it ties with everything
    new["headline"]["rows"]["serial/w1"]["cp313t"] = cell(90, 0.9, significant=None)
    new["headline"]["rows"]["serial/w1"]["cp313t"]["vs_serial_default"]["ci95"] = None
    assert ranks(headline_rows(new), "cp313t", set(places))["serial/w1"] == 1


def test_slower_and_faster_are_told_apart() -> None:
    new = json.loads(json.dumps(OLD))
    new["headline"]["rows"]["mpi/w2"]["cp313"] = cell(150, 0.8)  # same rate, speed-up now < 1
    (change,) = changes(OLD, new)["verdicts"]
    assert (change["old"], change["new"]) == ("faster", "slower")


def report(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "report", *map(str, SAMPLES), "-o", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_against_itself_and_against_a_folder_without_a_report(tmp_path: Path) -> None:
    missing = report(tmp_path / "b", "--against", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().startswith("error: --against")
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()
    first = report(tmp_path / "a")
    assert first.returncode == 0, first.stderr
    again = report(tmp_path / "b", "--against", str(tmp_path / "a"))
    assert again.returncode == 0, again.stderr
    assert "no verdict or ranking changed" in again.stdout
    written = json.loads((tmp_path / "b" / "summary.json").read_text())["against"]
    assert written["verdicts"] == [] and written["compared"] > 10
    assert "## Against an earlier report" in (tmp_path / "b" / "REPORT.md").read_text()


def test_an_old_report_that_is_not_one_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    (tmp_path / "list").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "list" / "summary.json").write_text("[1, 2]")
    for name, words in (
        ("file", "not a folder"),
        ("broken", "not readable JSON"),
        ("list", "not a report's summary"),
        ("nowhere", "no such folder"),
        ("empty", "no summary.json"),
    ):
        with pytest.raises(HarnessError, match=words) as caught:
            load_old_summary(str(tmp_path / name))
        assert str(tmp_path / name) in str(caught.value) and "\n" not in str(caught.value)


def test_a_change_says_whether_the_reports_contradict_each_other() -> None:
    """faster [1.36-1.44] -> not significant [0.95-1.09]: intervals apart, a contradiction;
    faster [1.26-1.34] -> not significant [0.98-1.26]: they share 1.26, so both reports are
    consistent with it (borderline). threads clearly above mpi, then mpi clearly above threads:
    a reversed order; serial only loses its clear place under the others: a tie, no reversal."""
    new = json.loads(json.dumps(OLD))
    rows = new["headline"]["rows"]
    rows["threads/w2"]["cp313t"] = cell(102, 1.02, significant=False, half=0.07)
    rows["mpi/w2"]["cp313t"] = cell(112, 1.12, significant=False, half=0.14)
    found = changes(OLD, new)
    verdicts = {v["cell"]: v["contradicts"] for v in found["verdicts"]}
    assert verdicts == {"threads/w2": True, "mpi/w2": False}
    rankings = {r["cell"]: (r["old"], r["new"], r["contradicts"]) for r in found["rankings"]}
    # then threads 1, mpi 2, serial 3; now mpi [0.98-1.26] ties threads [0.95-1.09], and both
    # are still clearly above serial [0.86-0.94]: only mpi moves, from a clear 2nd to a shared 1st
    assert rankings == {"mpi/w2": (2, 1, False)}
    text = changes_text({"folder": "old", **found})
    assert "1 of them contradicting" in text and "intervals apart: the reports disagree" in text
    rows["mpi/w2"]["cp313t"] = cell(150, 1.50)  # now clearly above threads [0.95-1.09]
    assert {r["cell"]: r["contradicts"] for r in changes(OLD, new)["rankings"]}["mpi/w2"]

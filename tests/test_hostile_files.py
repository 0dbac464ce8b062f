"""Damaged raw bench files, output paths and leftovers (issue 12, items 6, 7 and 8): one line and
exit 2 before any work, writes that are atomic, and nothing left behind on any exit."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyperf
import pytest

from harness import HarnessError
from harness.data import shards
from harness.data.shards import MANIFEST, make_shards
from harness.report.summary import report_command

ROOT = Path(__file__).resolve().parents[1]


def raw_file(path: Path, config: str = "cp313", **overrides: Any) -> Path:
    """A small raw file as `bench` writes one (data-parallel, serial and threads at 1/2/4),
    made here with pyperf's API so each test can damage exactly one field."""
    benches = []
    for strategy, workers in (("serial", 1), ("threads", 1), ("threads", 2), ("threads", 4)):
        meta = {
            "name": f"data-parallel/{strategy}/w{workers}/tiny",
            "unit": "second",
            "ft_config": config,
            "ft_workload": "data-parallel",
            "ft_strategy": strategy,
            "ft_workers": workers,
            "ft_model": "tiny",
            "ft_unit": "sample",
            "hostname": "h",
            "ft_run_config": json.dumps({"threads_per_rank": 1, "seed": 0}),
            "ft_preset": "smoke",
        }
        meta.update(overrides)
        values = [1e-6 / workers * (1 + i / 100) for i in range(3)]
        runs = [pyperf.Run(values, metadata=meta, collect_metadata=False) for _ in range(2)]
        benches.append(pyperf.Benchmark(runs))
    pyperf.BenchmarkSuite(benches).dump(str(path), replace=True)
    return path


def harness(
    *args: str, limits: dict[int, int] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    def apply() -> None:
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))

    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=apply,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


# ---- raw bench files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "null",
        '"x"',
        "{}",
        '{"version": "1.0", "benchmarks": 3}',
        '{"version": "1.0", "benchmarks": [{"runs": 1}]}',
        "",
    ],
)
def test_a_raw_file_that_is_no_pyperf_suite_is_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(HarnessError, match=r"bad\.json: not a .*pyperf JSON file"):
        report_command([str(tmp_path / "bad.json")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("ft_workers", -3, "ft_workers = -3 must be an integer >= 1"),  # accepted before
        ("ft_workers", "2", "ft_workers = '2' must be an integer >= 1"),
        ("ft_workload", "../../escape", "ft_workload = '../../escape' must be a name"),
        ("ft_strategy", "a/b", "ft_strategy = 'a/b' must be a name"),
        ("ft_model", 7, "ft_model = 7 must be a name"),
        ("ft_run_config", "{", "ft_run_config = '{' must be a JSON object"),
        ("ft_run_config", '{"threads_per_rank": 0}', "ft_run_config.threads_per_rank = 0 must be"),
        ("ft_selection", "[1]", "ft_selection = '[1]' must be a JSON object of lists"),
        ("ft_digest", 5, "ft_digest = 5 must be str"),
        ("ft_lost_updates", -1, "ft_lost_updates = -1 must be int"),
        ("ft_gil_enabled", "yes", "ft_gil_enabled = 'yes' must be bool"),
    ],
)
def test_every_field_the_report_reads_is_checked(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    path = raw_file(tmp_path / "raw.json", **{field: value})
    with pytest.raises(HarnessError) as info:
        report_command([str(path)], str(tmp_path / "out"))
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_metadata_is_one_line(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "raw.json")
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        for run in bench["runs"]:
            run.get("metadata", {}).pop("ft_run_config", None)
        bench.get("metadata", {}).pop("ft_run_config", None)
    data["metadata"].pop("ft_run_config", None)
    path.write_text(json.dumps(data))
    message = one_line_error(harness("report", str(path), "-o", str(tmp_path / "out")))
    assert "ft_run_config = None must be a JSON object" in message


# ---- report: output checked first, written atomically, nothing lost or left ----------------------


def test_report_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    raw = raw_file(tmp_path / "raw.json")
    (tmp_path / "file").write_text("x")
    assert "is a file, so nothing can be created under it" in one_line_error(
        harness("report", str(raw), "-o", str(tmp_path / "file" / "out"))
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = harness("report", str(raw), "-o", ".", cwd=empty)  # was a ValueError traceback
    assert proc.returncode == 0, proc.stderr
    assert (empty / "REPORT.md").exists() and hidden(empty) == []


def test_files_added_while_rendering_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old swap renamed a whole new folder over the old one: a file written into the folder
    meanwhile (say, by another program) was deleted with it."""
    raw, out = raw_file(tmp_path / "raw.json"), tmp_path / "out"
    report_command([str(raw)], str(out))
    (out / "mine.png").write_bytes(b"not the report's")  # put there by someone else, before
    from harness.report import plots

    real = plots.render_plots

    def render_and_meanwhile(summary: dict[str, Any], folder: Path) -> Any:
        (out / "notes.txt").write_text("written while the report rendered")
        return real(summary, folder)

    monkeypatch.setattr(plots, "render_plots", render_and_meanwhile)
    report_command([str(raw)], str(out))
    assert (out / "notes.txt").read_text() == "written while the report rendered"
    assert (out / "mine.png").read_bytes() == b"not the report's"
    assert (out / "REPORT.md").exists() and hidden(tmp_path) == []


def test_an_interrupted_report_leaves_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = raw_file(tmp_path / "raw.json"), tmp_path / "out"
    report_command([str(raw)], str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from harness.report import markdown

    def interrupted(summary: dict[str, Any]) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(markdown, "render_markdown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report_command([str(raw)], str(out))
    assert hidden(tmp_path) == []  # `.out.<pid>.tmp` stayed before
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier report, whole
    with pytest.raises(KeyboardInterrupt):
        report_command([str(raw)], str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_a_report_through_a_symlink_leaves_nothing_beside_it(tmp_path: Path) -> None:
    raw, real = raw_file(tmp_path / "raw.json"), tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    for _ in range(2):
        report_command([str(raw)], str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and (real / "REPORT.md").exists()
    assert hidden(tmp_path) == []  # `.link.<pid>.old` stayed before


def test_a_killed_reports_temporary_folder_is_reaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, out = raw_file(tmp_path / "raw.json"), tmp_path / "out"
    report_command([str(raw)], str(out))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (out / f".report.{dead}.tmp").mkdir()
    (out / f".report.{dead}.tmp" / "REPORT.md").write_text("half")
    report_command([str(raw)], str(out))
    assert hidden(out) == [] and f"removed {out / f'.report.{dead}.tmp'}" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_leaves_the_earlier_report(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk does with ENOSPC."""
    raw, out = raw_file(tmp_path / "raw.json"), tmp_path / "out"
    report_command([str(raw)], str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    message = one_line_error(
        harness("report", str(raw), "-o", str(out), limits={resource.RLIMIT_FSIZE: 4096})
    )
    assert f"cannot write the report into {out}" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and hidden(tmp_path) == []
    one_line_error(
        harness(
            "report", str(raw), "-o", str(tmp_path / "new"), limits={resource.RLIMIT_FSIZE: 4096}
        )
    )
    assert not (tmp_path / "new").exists()


# ---- data make -------------------------------------------------------------------------------


def make(root: Path, samples: int = 20) -> dict[str, Any]:
    return make_shards(root, samples=samples, shape=(8, 8), classes=4, seed=1, shard_size=8)


@pytest.mark.parametrize("where", ["", "."])
def test_data_make_into_the_current_folder_is_refused_first(tmp_path: Path, where: str) -> None:
    message = one_line_error(
        harness("data", "make", "--dir", where, "--samples", "10", "--seed", "1", cwd=tmp_path)
    )
    assert "is the current folder" in message and list(tmp_path.iterdir()) == []


def test_data_make_under_a_file_is_refused_first(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    message = one_line_error(
        harness(
            "data",
            "make",
            "--dir",
            str(tmp_path / "file" / "set"),
            "--samples",
            "10",
            "--seed",
            "1",
        )
    )
    assert "is a file" in message


def test_a_set_made_meanwhile_by_another_make_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `data make` on one folder: the one that finishes second failed with an OSError
    traceback; now it says what happened and the first one's set stays whole."""
    root = tmp_path / "set"
    real, calls = shards._write_shards, []

    def racing(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            make(root)  # the other `data make`, finishing first
        return real(*args)

    monkeypatch.setattr(shards, "_write_shards", racing)
    with pytest.raises(HarnessError, match="was filled while this set was being made"):
        make(root)
    monkeypatch.undo()
    assert shards.check_all(root).samples == 20 and hidden(tmp_path) == []


def test_a_full_disk_during_data_make_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    message = one_line_error(
        harness(
            "data",
            "make",
            "--dir",
            str(tmp_path / "set"),
            "--samples",
            "2000",
            "--seed",
            "1",
            limits={resource.RLIMIT_FSIZE: 65536},
        )
    )
    assert "cannot write the set in" in message and list(tmp_path.iterdir()) == []


def test_stale_partial_folders_are_reaped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a SIGKILLed `data make` leaves: reaped once a day old, if it holds only shards."""
    old, fresh, foreign = (
        tmp_path / f".set.partial-{tag}" for tag in ("0123abcd", "4567abcd", "89abcdef")
    )
    for folder in (old, fresh, foreign):
        folder.mkdir()
        (folder / "shard-00000.images.u8").write_bytes(b"\0" * 64)
    (foreign / "thesis.tex").write_text("not ours")
    two_days_ago = time.time() - 2 * 24 * 3600
    for folder in (old, foreign):
        os.utime(folder, (two_days_ago, two_days_ago))
    make(tmp_path / "other")
    assert not old.exists() and fresh.exists() and (foreign / "thesis.tex").exists()
    assert f"note: removed {old}" in capsys.readouterr().err
    assert (tmp_path / "other" / MANIFEST).exists()


# ---- bench --out -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "under a file"])
def test_bench_out_is_checked_before_the_matrix_runs(tmp_path: Path, kind: str) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path if kind == "folder" else tmp_path / "file" / "raw.json"
    proc = harness(
        "bench", "--preset", "smoke", "--out", str(out), "--data-dir", str(tmp_path / "d")
    )
    message = one_line_error(proc)
    assert f"--out {out}" in message and "[1/" not in proc.stdout  # no cell was measured

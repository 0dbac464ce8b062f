"""mpi cells in `python -m harness bench` and the report: real tiny benches whose mpi cells run
`mpiexec -n 2` jobs, and the same bench where mpi4py cannot be imported (cells skipped, named)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyperf
import pytest

from harness.envinfo import gil_enabled
from harness.report.summary import report_command
from strategies.mpi import INSTALL_HINT, Mpi
from tests.smoke_bench import ROOT, run_bench

MPI_OK, MPI_MISSING = Mpi.available()
needs_mpi = pytest.mark.skipif(not MPI_OK, reason=MPI_MISSING)
pytestmark = pytest.mark.timeout(180)
# the smoke preset's data-parallel cells, one pyperf process each: seconds, not minutes
SMALL = ("--workloads", "data-parallel", "--workers", "2", "-p", "1", "-w", "0")
PLAIN, ALLREDUCE = "data-parallel/mpi/w2/tiny", "data-parallel/mpi/w2/allreduce/tiny"
SERIAL = "data-parallel/serial/w1/tiny"


def bench(out: Path, *args: str) -> Path:
    proc = run_bench(out, "cp313", out.parent / "cache", *SMALL, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ordered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench(
        tmp_path_factory.mktemp("mpi") / "cp313.json", "--strategies", "serial,mpi", "-n", "2"
    )


@pytest.fixture(scope="module")
def allreduce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench(
        tmp_path_factory.mktemp("allreduce") / "cp313.json",
        "--strategies",
        "mpi",
        "--variants",
        "allreduce",
        "-n",
        "1",
    )


def run_meta(path: Path, name: str) -> list[dict[str, Any]]:
    suite = pyperf.BenchmarkSuite.load(str(path))
    return [run.get_metadata() for run in suite.get_benchmark(name).get_runs() if run.values]


def summary_of(raw: Path, out: Path) -> dict[str, Any]:
    report_command([str(raw)], str(out))
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


@needs_mpi
def test_an_mpi_cell_measures_two_ranks_and_gives_the_serial_digest(ordered: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(ordered))
    assert suite.get_benchmark_names() == [SERIAL, PLAIN]
    mpi = suite.get_benchmark(PLAIN)
    values = mpi.get_values()
    # seconds per sample of the ranks' training loop: positive, and below what the ~1 s of
    # starting an mpiexec job would give over its 1024 samples (1e-3: the value must not be the
    # job's time). Not a speed check: 1e-4 failed once under CI load (1.01e-4), so half of 1e-3
    assert len(values) == 2 and all(0 < v < 5e-4 for v in values), values
    assert mpi.get_metadata()["inner_loops"] == mpi.get_metadata()["ft_units"] == 1024
    serial_digest = run_meta(ordered, SERIAL)[0]["ft_digest"]
    for meta in run_meta(ordered, PLAIN):
        assert meta["ft_digest"] == serial_digest
        assert (
            meta["ft_ranks"],
            meta["ft_threads_per_rank"],
            meta["ft_reduce"],
            meta["ft_bitwise"],
        ) == (2, 1, "ordered", True)
        assert (
            meta["ft_mpi_library"].startswith("MPICH") and meta["ft_gil_enabled"] == gil_enabled()
        )


@needs_mpi
def test_the_report_shows_the_mpi_row_beside_serial(ordered: Path, tmp_path: Path) -> None:
    summary = summary_of(ordered, tmp_path / "report")
    row = next(r for r in summary["workloads"]["data-parallel"] if r["name"] == PLAIN)
    assert row["digest_matches_serial"] is True and row["bitwise"] is True
    assert row["efficiency"] == pytest.approx(row["vs_serial"]["speedup"] / 2)
    assert set(summary["headline"]["rows"]) == {"serial/w1", "mpi/w2"}
    markdown = (tmp_path / "report" / "REPORT.md").read_text()
    assert f"| cp313 | `{PLAIN}` |" in markdown and "= serial |" in markdown
    assert "mpi/w2" in markdown.split("## Per workload")[0]  # the headline table


@needs_mpi
def test_an_allreduce_cell_is_recorded_and_reported_as_not_bitwise(
    allreduce: Path, tmp_path: Path
) -> None:
    for meta in run_meta(allreduce, ALLREDUCE):
        assert (meta["ft_ranks"], meta["ft_reduce"], meta["ft_bitwise"]) == (2, "allreduce", False)
    summary = summary_of(allreduce, tmp_path / "report")
    row = summary["workloads"]["data-parallel"][0]
    assert (row["name"], row["series"], row["bitwise"]) == (ALLREDUCE, "mpi/allreduce", False)
    assert (
        "mpi/allreduce/w2" in summary["headline"]["rows"]
    )  # training from memory: headline material
    assert "(not bitwise by design)" in (tmp_path / "report" / "REPORT.md").read_text()


# ---- without mpi4py -----------------------------------------------------------------------------------


@pytest.fixture
def no_mpi4py(tmp_path: Path) -> dict[str, str]:
    """An environment whose `import mpi4py` fails, as where it is not installed: a package of that
    name first on PYTHONPATH (which pyperf passes on to its workers) that raises ImportError."""
    blocker = tmp_path / "blocker" / "mpi4py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("mpi4py blocked by the test")\n')
    path = os.pathsep.join(p for p in (str(blocker.parent), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "FT_HARNESS_CACHE": str(tmp_path / "cache")}


def bench_without_mpi4py(
    env: dict[str, str], out: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "harness",
        "bench",
        "--preset",
        "smoke",
        "--out",
        str(out),
        *SMALL,
        "-n",
        "1",
        *args,
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_without_mpi4py_mpi_cells_are_skipped_with_the_reason(
    no_mpi4py: dict[str, str], tmp_path: Path
) -> None:
    proc = bench_without_mpi4py(no_mpi4py, tmp_path / "out.json", "--strategies", "serial,mpi")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipped {PLAIN}: mpi4py is not installed; {INSTALL_HINT}" in proc.stdout.splitlines()
    assert pyperf.BenchmarkSuite.load(str(tmp_path / "out.json")).get_benchmark_names() == [SERIAL]


def test_without_mpi4py_a_bench_of_mpi_cells_only_says_so(
    no_mpi4py: dict[str, str], tmp_path: Path
) -> None:
    proc = bench_without_mpi4py(no_mpi4py, tmp_path / "out.json", "--strategies", "mpi")
    assert proc.returncode == 2 and not (tmp_path / "out.json").exists()
    assert proc.stdout.splitlines() == [f"skipped {PLAIN}: mpi4py is not installed; {INSTALL_HINT}"]
    assert proc.stderr.strip() == "error: nothing to measure: every cell was skipped"

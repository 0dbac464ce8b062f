"""`python -m harness bench`: the matrix, its names, its metadata, progress and atomic output."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pyperf
import pytest

from harness import HarnessError
from harness.bench.main import selection_of
from harness.bench.matrix import (
    PRESETS,
    Cell,
    Selection,
    get_preset,
    parse_name,
    plan,
    select,
    specs,
)
from harness.bench.measure import inherit_environ
from strategies.mpi import Mpi
from tests.smoke_bench import ROOT, bench_command, bench_env, run_bench, smoke_bench

NAME = re.compile(r"^[a-z-]+/[a-z]+/w\d+(/[a-z0-9-]+)?(/[a-z0-9-]+)?$")
RUN_FACTS = ("ft_digest", "ft_gil_enabled", "ft_blas_threads")
BENCH_FACTS = (
    "ft_config",
    "ft_python_version",
    "ft_py_gil_disabled",
    "ft_numpy",
    "ft_blas_library",
    "ft_blas_version",
    "ft_cpu_model",
    "ft_cpu_logical",
    "ft_cpu_physical",
    "ft_preset",
    "ft_harness_version",
    "ft_workload",
    "ft_strategy",
    "ft_workers",
    "ft_unit",
    "ft_units",
    "ft_run_config",
    "ft_thread_env",
    "ft_settings_sha",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_bench(tmp_path_factory)


# ---- the matrix -------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_name_is_stable_and_parses_back(preset: str) -> None:
    for cell in get_preset(preset).cells:
        assert NAME.match(cell.name), cell.name
        assert parse_name(cell.name) == cell


def test_names_say_workload_strategy_workers_variant_model() -> None:
    assert (
        Cell("async-sgd", "threads", 2, "hogwild", "tiny").name
        == "async-sgd/threads/w2/hogwild/tiny"
    )
    assert Cell("data-parallel", "serial", 1, "", "tiny").name == "data-parallel/serial/w1/tiny"
    assert Cell("loader", "processes", 4, "python").name == "loader/processes/w4/python"
    with pytest.raises(HarnessError, match="workload/strategy/wN"):
        parse_name("data-parallel/threads/two")


BUILT_IN = {"data-parallel", "async-sgd", "loader"}  # plug-ins installed here may add more


def test_every_built_in_workload_declares_a_bench_spec() -> None:
    from harness.workloads import BUILTIN, WORKLOADS, load_workloads

    load_workloads()
    built_in = {w.name for w in WORKLOADS.values() if w.module.rsplit(".", 1)[-1] in BUILTIN}
    assert built_in == {"data-parallel", "async-sgd", "loader"}
    assert built_in <= set(specs()), f"add a WorkloadSpec for {built_in - set(specs())}"


def test_quick_preset_covers_every_workload_and_strategy_and_runs_here(tmp_path: Path) -> None:
    quick = get_preset("quick")
    todo = plan(quick, Selection(), str(tmp_path))
    mpi_ok, why_not = (
        Mpi.available()
    )  # the one optional strategy: skipped, with its reason, without mpi4py
    assert [(c.name, reason) for c, reason in todo.skipped] == (
        [] if mpi_ok else [("data-parallel/mpi/w2/tiny", why_not)]
    )
    assert len(todo.cells) + len(todo.skipped) == len(quick.cells)
    assert {c.workload for c in quick.cells} >= BUILT_IN
    assert {c.strategy for c in quick.cells} >= {
        "serial",
        "threads",
        "processes",
        "spmd",
        "asyncio",
        "blas",
        "mpi",
    }
    threads = {
        c.workers for c in quick.cells if c.workload == "data-parallel" and c.series == "threads"
    }
    assert len(threads) >= 3  # a scaling fit needs three worker counts


def test_explicit_lists_replace_their_side_of_the_presets_pairs() -> None:
    cells = select(
        get_preset("quick"),
        Selection(
            workloads=("data-parallel",),
            strategies=("serial", "threads"),
            workers=(1, 2),
            variants=("",),
        ),
    )
    assert [c.name for c in cells] == [
        "data-parallel/serial/w1/tiny",
        "data-parallel/threads/w1/tiny",
        "data-parallel/threads/w2/tiny",
    ]
    models = select(
        get_preset("quick"), Selection(workloads=("loader", "async-sgd"), models=("large",))
    )
    assert {c.model for c in models if c.workload == "async-sgd"} == {"large"}
    assert {c.model for c in models if c.workload == "loader"} == {""}  # no model there


def test_cells_by_name_keep_only_those_of_the_matrix_and_an_unknown_one_is_named() -> None:
    wanted = ("data-parallel/threads/w4/tiny", "data-parallel/serial/w1/tiny")
    cells = select(get_preset("quick"), Selection(cells=wanted))
    assert [c.name for c in cells] == [
        "data-parallel/serial/w1/tiny",
        "data-parallel/threads/w4/tiny",
    ]
    alone = select(get_preset("quick"), Selection(strategies=("threads",), cells=wanted[:1]))
    assert [c.name for c in alone] == [wanted[0]]
    with pytest.raises(HarnessError, match="--cells data-parallel/mpi/w4/tiny: not a cell"):
        select(get_preset("quick"), Selection(cells=("data-parallel/mpi/w4/tiny",)))  # not quick's


def test_serial_given_other_worker_counts_is_still_its_one_w1_baseline() -> None:
    cells = select(
        get_preset("quick"),
        Selection(
            workloads=("data-parallel",), strategies=("serial", "mpi"), workers=(2,), variants=("",)
        ),
    )
    assert [c.name for c in cells] == ["data-parallel/serial/w1/tiny", "data-parallel/mpi/w2/tiny"]


def test_mpis_own_variants_go_with_mpi_only_and_their_baseline_is_the_plain_serial_cell() -> None:
    cells = select(
        get_preset("full"),
        Selection(
            workloads=("data-parallel",),
            strategies=("threads", "mpi"),
            workers=(2,),
            variants=("allreduce", "t2"),
            models=("tiny",),
        ),
    )
    assert [c.name for c in cells] == [
        "data-parallel/mpi/w2/allreduce/tiny",
        "data-parallel/mpi/w2/t2/tiny",
    ]
    assert {c.baseline.name for c in cells} == {"data-parallel/serial/w1/tiny"}
    assert parse_name("data-parallel/mpi/w2/t2/tiny") == cells[1]
    fields = get_preset("full").fields
    assert (fields(cells[0])["reduce"], fields(cells[1])["threads_per_rank"]) == ("allreduce", 2)
    with pytest.raises(HarnessError, match="under threads has no variant 'allreduce'"):
        fields(Cell("data-parallel", "threads", 2, "allreduce", "tiny"))
    # a workload whose variant slot holds its own knob has no room for mpi's
    assert parse_name("async-sgd/mpi/w2/lock/tiny").variant == "lock"
    with pytest.raises(HarnessError, match="has extra parts"):
        parse_name("async-sgd/mpi/w2/allreduce/tiny")


def test_plain_in_variants_asks_for_the_cells_without_one_beside_mpis_own() -> None:
    """The hybrid study in one bench: N ranks x 2 threads beside N ranks, 2N threads and serial."""
    from harness.bench.main import forward_arguments, make_runner

    argv = [
        "--preset",
        "full",
        "--workloads",
        "data-parallel",
        "--strategies",
        "serial,threads,mpi",
        "--workers",
        "2,4",
        "--variants",
        "plain,t2",
        "--models",
        "tiny",
    ]
    args = make_runner(argv).parse_args(argv)
    assert args.variants == ("", "t2")
    names = [c.name for c in select(get_preset("full"), selection_of(args))]
    assert names == [
        "data-parallel/serial/w1/tiny",
        "data-parallel/threads/w2/tiny",
        "data-parallel/threads/w4/tiny",
        "data-parallel/mpi/w2/tiny",
        "data-parallel/mpi/w4/tiny",
        "data-parallel/mpi/w2/t2/tiny",
        "data-parallel/mpi/w4/t2/tiny",
    ]
    args.data_dir, forwarded = "/d", []
    forward_arguments(forwarded, args)  # what pyperf's workers are told: the same matrix
    assert forwarded[forwarded.index("--variants") + 1] == "plain,t2"


def test_full_preset_has_mpi_beside_the_other_strategies() -> None:
    names = {c.name for c in get_preset("full").cells}
    for workers in (1, 2, 4):
        assert {f"data-parallel/mpi/w{workers}/{m}" for m in ("tiny", "large")} <= names
        assert {
            f"async-sgd/mpi/w{workers}/{p}/tiny" for p in ("lock", "striped", "hogwild")
        } <= names
    assert {"data-parallel/mpi/w2/allreduce/large", "data-parallel/mpi/w2/t2/large"} <= names


def test_scaling_preset_reaches_16_workers_with_whole_microbatches_for_each() -> None:
    scaling = get_preset("scaling")
    cells = [c for c in scaling.cells if c.workload == "data-parallel"]
    for series in ("threads", "processes", "mpi"):
        assert max(c.workers for c in cells if c.series == series) == 16
    assert (
        len({c.workers for c in cells if c.series == "threads" and c.model == "tiny"}) >= 3
    )  # a fit
    assert {c.workload for c in scaling.cells} >= BUILT_IN
    for cell in cells:  # 16 workers still get several microbatches of the default 64 rows each
        config = scaling.config(cell, "unused")
        assert config.batch // config.microbatches == 64 and config.microbatches >= 4 * cell.workers


def test_an_mpi_cell_runs_its_config_through_the_run_command_unchanged() -> None:
    from harness.__main__ import build_parser, config_from_args
    from harness.bench.main import changed_options

    preset = get_preset("full")
    for cell in (
        Cell("data-parallel", "mpi", 2, "t2", "large"),
        Cell("async-sgd", "mpi", 4, "striped", "tiny"),
    ):
        config = preset.config(cell, "/unused")
        assert (
            config_from_args(build_parser().parse_args(["run", *changed_options(config)])) == config
        )
    probe = preset.config(Cell("async-sgd", "mpi", 2, "hogwild", "tiny"), "/unused")
    probe = type(probe)(**{**probe.as_dict(), "probe": True, "lr": 0.1 / 3})
    assert config_from_args(build_parser().parse_args(["run", *changed_options(probe)])) == probe


def test_a_model_that_cannot_read_the_images_is_skipped_with_its_reason(tmp_path: Path) -> None:
    todo = plan(
        get_preset("quick"),
        Selection(workloads=("data-parallel",), variants=("disk-python",), models=("tiny",)),
        str(tmp_path),
    )
    assert todo.cells == [] and "64 inputs" in todo.skipped[0][1]


def test_thread_variables_and_ours_are_passed_to_pyperf_workers() -> None:
    environ = {
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "2",
        "FT_HARNESS_CONFIG": "cp313t",
        "HOME": "/root",
        "MKL_NUM_THREADS": "1",
    }
    assert inherit_environ(environ, ["FOO"]) == [
        "FOO",
        "FT_HARNESS_CONFIG",
        "MKL_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--workloads", "rl"], "unknown workload 'rl'; known: data-parallel"),
        (["--strategies", "gpu"], "unknown strategy 'gpu'"),
        (["--preset", "huge"], f"unknown preset 'huge'; known: {', '.join(PRESETS)}"),
        (["--workers", "two"], "'two' is not a comma-separated list"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    proc = run_bench(tmp_path / "out.json", "cp313", tmp_path, *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert fragment in lines[0]


# ---- a real bench -----------------------------------------------------------------------------------


def test_raw_file_is_pyperf_json_with_one_benchmark_per_cell(smoke: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(smoke / "cp313.json"))
    assert suite.get_benchmark_names() == [c.name for c in get_preset("smoke").cells]
    for bench in suite.get_benchmarks():
        runs = [r for r in bench.get_runs() if r.values]
        assert len(runs) == 3 and all(len(r.values) == 2 for r in runs)  # the smoke preset's pyperf
        meta = bench.get_metadata()
        assert meta["inner_loops"] == meta["ft_units"]  # a value is seconds per unit of work


def test_every_benchmark_carries_the_metadata(smoke: Path) -> None:
    for bench in pyperf.BenchmarkSuite.load(str(smoke / "cp313t.json")).get_benchmarks():
        meta = bench.get_metadata()
        assert set(BENCH_FACTS) <= meta.keys(), set(BENCH_FACTS) - meta.keys()
        assert meta["ft_config"] == "cp313t" and meta["ft_preset"] == "smoke"
        # computed inside the pyperf worker: proof that the variable reached it
        assert json.loads(meta["ft_thread_env"])["OPENBLAS_NUM_THREADS"] == "1"
        for run in (r for r in bench.get_runs() if r.values):
            assert set(RUN_FACTS) <= run.get_metadata().keys()


def test_data_parallel_digest_is_the_same_for_every_strategy_and_worker_count(smoke: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(smoke / "cp313.json"))
    digests = {
        run.get_metadata()["ft_digest"]
        for bench in suite.get_benchmarks()
        if bench.get_name().startswith("data-parallel/")
        for run in bench.get_runs()
        if run.values
    }
    assert len(digests) == 1


def test_async_sgd_records_the_probe_and_loader_its_first_batch(smoke: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(smoke / "cp313.json"))
    hogwild = suite.get_benchmark("async-sgd/threads/w2/hogwild/tiny")
    assert all("ft_lost_updates" in r.get_metadata() for r in hogwild.get_runs() if r.values)
    loader = suite.get_benchmark("loader/threads/w2/numpy")
    assert all(
        r.get_metadata()["ft_time_to_first_batch_s"] > 0 for r in loader.get_runs() if r.values
    )


def test_progress_names_each_benchmark_with_k_of_n_and_time_left(smoke: Path) -> None:
    lines = [
        line for line in (smoke / "cp313.stdout").read_text().splitlines() if line.startswith("[")
    ]
    total = len(get_preset("smoke").cells)
    assert [line.split()[0] for line in lines] == [f"[{k}/{total}]" for k in range(1, total + 1)]
    assert lines[0].split()[1] == get_preset("smoke").cells[0].name
    assert "estimating" in lines[0] and all(
        "elapsed" in line and " left" in line for line in lines[1:]
    )


@pytest.mark.timeout(120)
def test_an_interrupted_bench_leaves_the_previous_results(tmp_path: Path) -> None:
    out = tmp_path / "raw" / "cp313.json"
    out.parent.mkdir()
    out.write_text("previous results")
    proc = subprocess.Popen(
        bench_command(out),
        cwd=ROOT,
        env=bench_env("cp313", tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # interrupt in the middle of the matrix
        if line.startswith("[2/"):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert out.read_text() == "previous results"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cp313.json"]  # no temporary left

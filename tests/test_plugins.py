"""Plug-ins from outside the project, through the real command line, as users run them:

- the example distribution (tests/plugin_example), INSTALLED with pip as a user installs it, but
  into a folder of its own that only these tests' processes have on their path (`pip install
  --target`): the harness finds its entry points as it finds any installed distribution's, and
  the rest of the suite keeps seeing the built-ins alone (an install into the venv itself would
  change every registry: `unknown strategy ...; known: ...`, every preset's workloads). Through
  run, list --json, bench (its cells in the raw pyperf file) and report, on whichever
  interpreter runs the tests;
- the uninstalled module tests/plugin_local/ft_local_plugin.py, by `--plugin FILE` and by
  FT_HARNESS_PLUGINS: run, list and bench (pyperf's workers must load it too);
- plug-ins that fail to import or take a name that is taken: one line naming them, exit 2, from
  `--plugin`, FT_HARNESS_PLUGINS and an installed distribution's entry point alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pyperf
import pytest

from strategies import REGISTRY
from strategies.mpi import Mpi

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "tests" / "plugin_local"
LOCAL_FILE = LOCAL / "ft_local_plugin.py"
EXAMPLE = "ft-harness-example"
TIMEOUT = 180


def example_site(factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_example installed with this interpreter's pip into a folder (built from a
    copy: the source tree stays clean and xdist workers do not share a build folder)."""
    folder = factory.mktemp("example")
    source = shutil.copytree(ROOT / "tests" / "plugin_example", folder / "source")
    site = folder / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(source)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, f"pip could not install the example: {proc.stderr[-3000:]}"
    return site


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process that has the example distribution installed."""
    return environment(str(example_site(tmp_path_factory)))


def harness(
    *args: str, env: dict[str, str] | None = None, timeout: int = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` in a fresh process, with the project on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def environment(*paths: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "FT_HARNESS_PLUGINS"}
    old = [p for p in extra.pop("PYTHONPATH", base.get("PYTHONPATH", "")).split(os.pathsep) if p]
    return {**base, **extra, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT), *old])}


def result_of(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = harness("run", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def bench(out: Path, *args: str, env: dict[str, str] | None = None) -> pyperf.BenchmarkSuite:
    """The smoke preset narrowed by ARGS, one pyperf process of one value per cell."""
    settings = {"FT_HARNESS_CONFIG": "cp313", "FT_HARNESS_CACHE": str(out.parent / "cache")}
    proc = harness(
        "bench", "--preset", "smoke", *args, "-p", "1", "-n", "1", "-w", "0", "--out", str(out),
        env={**settings, **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pyperf.BenchmarkSuite.load(str(out))


def digests(suite: pyperf.BenchmarkSuite) -> dict[str, set[str]]:
    return {
        b.get_name(): {r.get_metadata()["ft_digest"] for r in b.get_runs() if r.values}
        for b in suite.get_benchmarks()
    }


# ---- the installed example distribution ----------------------------------------------------------


def test_list_json_shows_the_examples_plugins_their_options_and_the_distribution(
    example: dict[str, str],
) -> None:
    proc = harness("list", "--json", env=example)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    queue = next(s for s in listed["strategies"] if s["name"] == "queue")
    assert queue["module"] == "ft_harness_example.queue_pool" and queue["bitwise_deterministic"]
    assert [(o["flag"], o["type"], o["default"]) for o in queue["options"]] == [
        ("--chunk", "int", 1)
    ]
    assert queue["bench_variants"] == ["chunk4"]
    predict = next(w for w in listed["workloads"] if w["name"] == "predict")
    assert predict["benchable"] and [o["name"] for o in predict["options"]] == ["passes"]
    assert any(m["name"] == "softmax" for m in listed["models"])
    sources = {(p["name"], p["origin"], p["distribution"], p["version"]) for p in listed["plugins"]}
    version = tomllib.loads((ROOT / "tests/plugin_example/pyproject.toml").read_text())["project"][
        "version"
    ]
    assert {
        ("queue", "entry point ft_harness.strategies", EXAMPLE, version),
        ("predict", "entry point ft_harness.workloads", EXAMPLE, version),
        ("softmax", "entry point ft_harness.models", EXAMPLE, version),
    } <= sources


def test_run_the_examples_workload_strategy_and_model_as_serial_does(
    example: dict[str, str],
) -> None:
    """Its strategy gives serial's predictions and serial's trained parameters, bit for bit."""
    predict = ["--workload", "predict", "--model", "softmax", "--passes", "2"]
    serial = result_of(*predict, env=example)
    queued = result_of(
        *predict, "--strategy", "queue", "--workers", "3", "--chunk", "2", env=example
    )
    assert queued["predictions_sha256"] == serial["predictions_sha256"]
    assert queued["samples"] == 2 * serial["config"]["train_samples"]
    assert queued["strategy_info"]["chunk"] == 2
    train = ["--model", "softmax", "--steps", "6"]
    assert (
        result_of(*train, "--strategy", "queue", "--workers", "2", env=example)["params_sha256"]
        == result_of(*train, env=example)["params_sha256"]
    )
    assert {p["distribution"] for p in serial["plugins"]} == {EXAMPLE}


def test_a_plugins_option_is_refused_where_it_does_not_apply(example: dict[str, str]) -> None:
    proc = harness("run", "--strategy", "threads", "--chunk", "2", env=example)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: chunk=2 applies to strategy 'queue' only"


@pytest.fixture(scope="module")
def example_bench(tmp_path_factory: pytest.TempPathFactory, example: dict[str, str]) -> Path:
    out = tmp_path_factory.mktemp("example-bench") / "cp313.json"
    bench(
        out,
        "--workloads",
        "predict,data-parallel",
        "--strategies",
        "serial,queue",
        "--workers",
        "2",
        "--variants",
        "plain,chunk4",
        "--models",
        "softmax",
        env=example,
    )
    return out


def test_bench_measures_the_examples_cells_with_serials_digest(example_bench: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(example_bench))
    found = digests(suite)
    assert list(found) == [
        f"{workload}/{cell}/softmax"
        for workload in ("predict", "data-parallel")
        for cell in ("serial/w1", "queue/w2", "queue/w2/chunk4")
    ]
    for workload in ("predict", "data-parallel"):
        assert len(set().union(*(d for n, d in found.items() if n.startswith(workload)))) == 1
    meta = suite.get_benchmark("predict/queue/w2/softmax").get_metadata()
    assert meta["ft_digest_kind"] == "predictions_sha256" and meta["ft_units"] == 2 * 1024
    assert {p["distribution"] for p in json.loads(meta["ft_plugins"])} == {EXAMPLE}


def test_report_renders_the_examples_workload(
    example_bench: Path, tmp_path: Path, example: dict[str, str]
) -> None:
    proc = harness("report", str(example_bench), "-o", str(tmp_path / "report"), env=example)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["workloads"]) == {"predict", "data-parallel"}
    names = {row["name"] for row in summary["workloads"]["predict"]}
    assert "predict/queue/w2/chunk4/softmax" in names
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "### predict" in text and "`predict/queue/w2/softmax`" in text


def test_the_examples_strategy_and_model_pass_the_contract_kit(example: dict[str, str]) -> None:
    """In a process of its own: importing the plug-ins registers them."""
    script = (
        "from harness import testing\n"
        "from ft_harness_example.queue_pool import QueuePool\n"
        "from ft_harness_example.softmax import Softmax\n"
        "testing.check_strategy(QueuePool, 3)\n"
        "testing.check_strategy(QueuePool, 2, chunk=3)\n"
        "testing.check_model(Softmax(7, 3)); testing.check_model('softmax')\n"
        "print('example passed')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=example,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0 and "example passed" in proc.stdout, proc.stderr[-3000:]


def test_without_the_example_its_names_are_unknown_to_the_project() -> None:
    """The oracle for the tests above: the names come from the distribution alone, and the
    project's own processes (this test run included) do not see it."""
    proc = harness("run", "--workload", "predict")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown workload 'predict'")
    assert "queue" not in REGISTRY


# ---- an uninstalled plug-in: --plugin and FT_HARNESS_PLUGINS -------------------------------------


def test_run_with_a_plugin_file_trains_its_model_under_its_strategy_as_serial() -> None:
    plugin = ["--plugin", str(LOCAL_FILE), "--model", "tanh", "--steps", "5"]
    strided = result_of(*plugin, "--strategy", "strided", "--workers", "3")
    serial = result_of(*plugin)
    assert strided["params_sha256"] == serial["params_sha256"]
    assert strided["model"] == "tanh-64-16-10"
    local = [p for p in strided["plugins"] if p["module"] == "ft_local_plugin"]
    assert local == [
        {"name": "ft_local_plugin", "module": "ft_local_plugin", "origin": "--plugin",
         "distribution": None, "version": "0.0.1"}
    ]  # fmt: skip


@pytest.mark.skipif(not Mpi.available()[0], reason=Mpi.available()[1])
def test_mpi_ranks_load_a_plugin_given_to_the_launcher() -> None:
    """The model exists only in the plug-in: each rank that mpiexec starts must load it."""
    plugin = ["--plugin", str(LOCAL_FILE), "--model", "tanh", "--steps", "3"]
    ranks = result_of(*plugin, "--strategy", "mpi", "--workers", "2")
    assert ranks["strategy_info"]["ranks"] == 2
    assert ranks["params_sha256"] == result_of(*plugin)["params_sha256"]


def test_the_environment_variable_loads_a_plugin_module_by_name() -> None:
    env = environment(str(LOCAL), FT_HARNESS_PLUGINS="ft_local_plugin")
    found = result_of("--strategy", "strided", "--workers", "2", "--model", "tanh", "--steps", "3",
                      env=env)  # fmt: skip
    assert [p["origin"] for p in found["plugins"] if p["module"] == "ft_local_plugin"] == [
        "FT_HARNESS_PLUGINS"
    ]


def test_list_shows_a_plugin_given_on_the_command_line() -> None:
    proc = harness("list", "--json", "--plugin", str(LOCAL_FILE))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert "strided" in {s["name"] for s in listed["strategies"]}
    assert "tanh" in {m["name"] for m in listed["models"]}


def test_without_the_plugin_its_names_are_unknown() -> None:
    """The oracle for the two tests above: the names come from the plug-in, not the project."""
    proc = harness("run", "--strategy", "strided")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown strategy 'strided'")


def test_bench_with_a_plugin_file_loads_it_in_pyperfs_workers(tmp_path: Path) -> None:
    out = tmp_path / "cp313.json"
    plugin = ["--plugin", str(LOCAL_FILE)]
    suite = bench(out, *plugin, "--workloads", "data-parallel", "--strategies", "serial,strided",
                  "--workers", "2", "--models", "tanh")  # fmt: skip
    found = digests(suite)
    assert list(found) == ["data-parallel/serial/w1/tanh", "data-parallel/strided/w2/tanh"]
    assert len(set().union(*found.values())) == 1  # strided's parameters are serial's
    plugins = json.loads(
        suite.get_benchmark("data-parallel/strided/w2/tanh").get_metadata()["ft_plugins"]
    )
    assert "ft_local_plugin" in {p["module"] for p in plugins}


# ---- plug-ins that fail --------------------------------------------------------------------------


def fake_distribution(folder: Path, group: str, module: str) -> Path:
    """An installed distribution as importlib.metadata finds one on sys.path: a dist-info folder
    whose entry point names MODULE."""
    info = folder / "ft_bad_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ft-bad-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\nbad = {module}\n")
    return folder


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "", proc.stdout[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", [["run"], ["list"], ["bench", "--preset", "smoke"]])
@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("broken_plugin", "failed to load: RuntimeError: this plug-in is broken on purpose"),
        ("clashing_plugin", "strategy 'threads' is registered twice"),
    ],
)
def test_a_bad_plugin_file_is_one_line_naming_it_and_exit_2(
    command: list[str], module: str, says: str
) -> None:
    path = LOCAL / f"{module}.py"
    one_line_error(harness(*command, "--plugin", str(path)), f"plugin '{path}'", says)


@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("broken_plugin", "failed to load: RuntimeError"),
        ("clashing_plugin", "strategy 'threads' is registered twice"),
        ("no_such_plugin_module", "failed to load: ModuleNotFoundError"),
    ],
)
def test_a_bad_plugin_in_the_environment_variable_is_one_line_and_exit_2(
    module: str, says: str
) -> None:
    env = environment(str(LOCAL), FT_HARNESS_PLUGINS=module)
    one_line_error(harness("list", env=env), f"plugin '{module}'", says)


@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("broken_plugin", "failed to load: RuntimeError"),
        ("clashing_plugin", "strategy 'threads' is registered twice"),
    ],
)
def test_a_bad_entry_point_of_an_installed_distribution_is_one_line_and_exit_2(
    tmp_path: Path, module: str, says: str
) -> None:
    site = fake_distribution(tmp_path, "ft_harness.strategies", module)
    env = environment(str(site), str(LOCAL))
    one_line_error(
        harness("run", env=env), f"plugin 'bad' (ft_harness.strategies = {module})", says
    )


def test_a_plugin_path_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    one_line_error(harness("list", "--plugin", str(missing)), str(missing), "no such file")

"""nox sessions. Interpreters come from harness.toolchain, which builds them when missing.

    nox -s tests      the test suite on every configuration (cp313, cp313t, cp313t-gil, others on PATH)
    nox -s compare    a small data-parallel comparison across strategies and configurations
    nox -s bench      pyperf benchmarks (preset quick) on cp313, cp313t, cp313t-gil -> reports/raw/
    nox -s report     bench, then reports/latest/ (REPORT.md, PNG plots, summary.json): the main job

Each configuration gets its own virtual environment under .nox/, reused while pyproject.toml
and the interpreter are unchanged. nox's own venv handling is not used because cp313t and
cp313t-gil are ONE executable run with different PYTHON_GIL values.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from harness import toolchain  # noqa: E402  (standard library only)
from harness.report.table import render_comparison  # noqa: E402  (standard library only)

nox.options.sessions = ["tests"]
COMPARE_CELLS = [("serial", 1)] + [(s, w) for s in ("threads", "processes", "asyncio", "blas") for w in (1, 2)]


def _configurations() -> list[toolchain.Interpreter]:
    try:
        found = toolchain.interpreters(build=True)
    except toolchain.ToolchainError as exc:
        sys.exit(f"error: {exc}")
    return found + toolchain.other_pythons(found)


CONFIGS = {interp.name: interp for interp in _configurations()}
MAIN_CONFIGS = [name for name in CONFIGS if name in toolchain.CONFIG_NAMES]


def venv_python(session: nox.Session, interp: toolchain.Interpreter, extras: str = "test,mpi") -> str:
    """The configuration's venv python, created (or recreated when stale) with the project in it."""
    venv = ROOT / ".nox" / f"venv-{interp.name}"
    stamp = venv / ".ft-harness-stamp"
    wanted = hashlib.sha256(
        f"{interp.executable}|{extras}|{(ROOT / 'pyproject.toml').read_text()}".encode()).hexdigest()
    python = str(venv / "bin" / "python")
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    session.run(interp.executable, "-m", "venv", str(venv), external=True, env=config_env(interp))
    # --prefer-binary: a dependency's newest release may lack a cp313t wheel (matplotlib's
    # contourpy, kiwisolver, pillow); an older release with one beats building from source.
    session.run(python, "-m", "pip", "install", "--quiet", "--prefer-binary", "--only-binary", "numpy",
                "-e", f"{ROOT}[{extras}]", external=True, env=config_env(interp))
    stamp.write_text(wanted)
    return python


def config_env(interp: toolchain.Interpreter) -> dict[str, str]:
    """The configuration's variables; an empty PYTHON_GIL cancels one inherited from the shell
    (CPython ignores empty values, and a default build refuses to start on PYTHON_GIL=0)."""
    return {"PYTHON_GIL": "", **interp.env, "FT_HARNESS_CONFIG": interp.name}


@nox.session(python=False)
@nox.parametrize("config", [nox.param(name, id=name) for name in CONFIGS])
def tests(session: nox.Session, config: str) -> None:
    """pytest (with xdist) on one interpreter configuration."""
    interp = CONFIGS[config]
    python = venv_python(session, interp)
    session.run(python, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", *session.posargs,
                external=True, env=config_env(interp))


@nox.session(python=False)
def compare(session: nox.Session) -> None:
    """Data-parallel training, every strategy at 1 and 2 workers, on each configuration."""
    results = []
    for name in MAIN_CONFIGS:
        interp = CONFIGS[name]
        python = venv_python(session, interp)
        for strategy, workers in COMPARE_CELLS:
            out = session.run(python, "-m", "harness", "run", "--strategy", strategy,
                              "--workers", str(workers), "--model", "tiny", "--steps", "300",
                              "--json", *session.posargs, external=True, silent=True,
                              env=config_env(interp))
            results.append(json.loads(out))
    print(render_comparison(results))


# Relative to ROOT, where nox runs: the report names its raw files as given, and a relative path
# says nothing about the machine that made them.
RAW = Path("reports") / "raw"
LATEST = Path("reports") / "latest"


def run_benches(session: nox.Session) -> list[str]:
    """The bench once per main configuration, each into reports/raw/<config>.json (atomically:
    an interrupted bench leaves the previous file). Options after `--` go to every bench."""
    written = []
    for name in MAIN_CONFIGS:
        interp = CONFIGS[name]
        python = venv_python(session, interp)
        out = str(RAW / f"{name}.json")
        start = time.monotonic()
        session.run(python, "-m", "harness", "bench", "--quiet", *session.posargs, "--out", out,
                    external=True, env=config_env(interp))
        session.log(f"{name}: bench took {time.monotonic() - start:.0f} s")
        written.append(out)
    return written


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """pyperf benchmarks of the quick preset (or `-- --preset full`, `-- --workers 1,2,4` ...)."""
    run_benches(session)


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """The main job: bench every configuration, then render reports/latest/ from the raw files."""
    start = time.monotonic()
    raw = run_benches(session)
    interp = CONFIGS[MAIN_CONFIGS[0]]  # any venv has matplotlib (the test extra)
    session.run(venv_python(session, interp), "-m", "harness", "report", *raw, "-o", str(LATEST),
                external=True, env=config_env(interp))
    session.log(f"bench + report took {time.monotonic() - start:.0f} s")


# The fast unit tests: no CLI subprocesses, bench or MPI jobs. Each test runs in 4 threads at once,
# 3 times: the harness's own code and the strategies' thread-safety contract on a build where
# threads really overlap. Tests single-threaded by nature (signals, process-wide settings, listing
# the process's segments) are marked thread_unsafe and left to `nox -s tests`.
THREADSAFETY_TESTS = ["tests/test_strategies.py", "tests/test_model.py", "tests/test_params.py",
                      "tests/test_config.py", "tests/test_augment.py", "tests/test_scaling.py",
                      "tests/test_data.py"]


@nox.session(python=False)
def threadsafety(session: nox.Session) -> None:
    """The fast unit tests under pytest-run-parallel (--parallel-threads) on cp313t."""
    interp = CONFIGS["cp313t"]
    python = venv_python(session, interp)
    session.run(python, "-m", "pytest", "-p", "no:cacheprovider", "--parallel-threads=4",
                "--iterations=3", "--skip-thread-unsafe=True", *THREADSAFETY_TESTS, *session.posargs, external=True,
                env=config_env(interp))

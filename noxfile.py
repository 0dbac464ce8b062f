"""nox sessions. Interpreters come from harness.toolchain, which builds them when missing.

    nox -s tests      the test suite on every configuration (cp313, cp313t, cp313t-gil, others on PATH)
    nox -s compare    a small data-parallel comparison across strategies and configurations
    nox -s bench      pyperf benchmarks (preset quick) on every configuration -> reports/raw/,
                      in interleaved rounds (-- --rounds N, or -- --until 5% --budget 8m)
    nox -s report     bench (adaptive rounds: -- --until 5% --budget 7m unless told otherwise) and
                      a few traced runs, then reports/latest/ (REPORT.md, PNG plots, summary.json):
                      the main job
    nox -s lint       ruff check + ruff format --check (settings in pyproject.toml)

CPython versions: FT_HARNESS_PYTHON=3.14 (or 3.13,3.14) for every session, or `-- --python 3.14`
after compare, bench and report; 3.13 by default. Each version 3.N gives cp3N, cp3Nt, cp3Nt-gil.

Nothing is built or downloaded when this file is imported (`nox -l`, `nox --help`): session names
come from the version setting alone, and a session resolves (or builds) its interpreters when it
runs. Each configuration gets its own virtual environment under .nox/, reused while
pyproject.toml and the interpreter are unchanged. nox's own venv handling is not used because
cp3Nt and cp3Nt-gil are ONE executable run with different PYTHON_GIL values.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

# Standard library only, and nothing is resolved on import.
from harness import toolchain
from harness.bench import rounds
from harness.confignames import ENV_PYTHON, Series, parse_name, parse_versions, versions_from_env
from harness.report.table import render_comparison

nox.options.sessions = ["tests"]
RUFF = "ruff==0.17.6"  # pinned: a new ruff release may add rules the tree has not met yet
COMPARE_CELLS = [("serial", 1)] + [
    (s, w) for s in ("threads", "processes", "asyncio", "blas") for w in (1, 2)
]


def _versions() -> list[Series]:
    try:
        return versions_from_env()
    except ValueError as exc:
        sys.exit(f"error: {ENV_PYTHON}: {exc}")


VERSIONS = _versions()


def path_names(versions: list[Series]) -> list[str]:
    """Other CPythons on PATH (python3.11 ...), named path-3.N, for extra test coverage; found by
    name only here, probed when their session runs."""
    return [
        f"path-3.{minor}"
        for minor in range(11, 20)
        if Series(3, minor) not in versions and shutil.which(f"python3.{minor}")
    ]


TEST_CONFIGS = [name for series in VERSIONS for name in series.names] + path_names(VERSIONS)


@functools.cache
def resolved(series: Series) -> dict[str, toolchain.Interpreter]:
    """The three configurations of a version, found or built (once per nox process)."""
    return {i.name: i for i in toolchain.interpreters([series], build=True)}


def interpreter(session: nox.Session, name: str) -> toolchain.Interpreter:
    """A configuration by name, resolved now; the session fails with every route's reason."""
    parsed = parse_name(name)
    try:
        if parsed is not None:
            return resolved(parsed[0])[name]
    except toolchain.ToolchainError as exc:
        session.error(str(exc))
    exe = shutil.which(f"python{name.removeprefix('path-')}")
    info = toolchain.probe(exe) if exe else None
    if info is None or info["py_gil_disabled"]:
        session.skip(f"{name}: no default-build CPython of that version on PATH any more")
    return toolchain.Interpreter(
        name=name,
        executable=info["executable"],
        version=info["version"],
        py_gil_disabled=False,
        gil_enabled=info["gil_enabled"],
        config_args=info["config_args"],
        source="PATH",
    )


def versions_and_args(session: nox.Session) -> tuple[list[Series], list[str]]:
    """`--python 3.14` (or `--python=3.13,3.14`) taken out of the session's arguments."""
    args, versions = list(session.posargs), VERSIONS
    for i, arg in enumerate(args):
        if arg == "--python" or arg.startswith("--python="):
            value = arg.partition("=")[2] if "=" in arg else (args[i + 1 : i + 2] or [""])[0]
            del args[i : i + (1 if "=" in arg else 2)]
            try:
                versions = parse_versions(value)
            except ValueError as exc:
                session.error(f"--python: {exc}")
            break
    return versions, args


def main_configs(session: nox.Session) -> tuple[list[toolchain.Interpreter], list[str]]:
    """Every configuration of the versions asked for, resolved; and the remaining arguments."""
    versions, args = versions_and_args(session)
    return [interpreter(session, name) for series in versions for name in series.names], args


def venv_python(
    session: nox.Session, interp: toolchain.Interpreter, extras: str = "test,mpi"
) -> str:
    """The configuration's venv python, created (or recreated when stale) with the project in it."""
    venv = ROOT / ".nox" / f"venv-{interp.name}"
    stamp = venv / ".ft-harness-stamp"
    wanted = hashlib.sha256(
        f"{interp.executable}|{extras}|{(ROOT / 'pyproject.toml').read_text()}".encode()
    ).hexdigest()
    python = str(venv / "bin" / "python")
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    session.run(interp.executable, "-m", "venv", str(venv), external=True, env=config_env(interp))
    # --prefer-binary: a dependency's newest release may lack a cp313t wheel (matplotlib's
    # contourpy, kiwisolver, pillow); an older release with one beats building from source.
    session.run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--prefer-binary",
        "--only-binary",
        "numpy",
        "-e",
        f"{ROOT}[{extras}]",
        external=True,
        env=config_env(interp),
    )
    stamp.write_text(wanted)
    return python


def config_env(interp: toolchain.Interpreter) -> dict[str, str]:
    """The configuration's variables; an empty PYTHON_GIL cancels one inherited from the shell
    (CPython ignores empty values, and a default build refuses to start on PYTHON_GIL=0)."""
    return {"PYTHON_GIL": "", **interp.env, "FT_HARNESS_CONFIG": interp.name}


@nox.session(python=False)
@nox.parametrize("config", [nox.param(name, id=name) for name in TEST_CONFIGS])
def tests(session: nox.Session, config: str) -> None:
    """pytest (with xdist) on one interpreter configuration."""
    interp = interpreter(session, config)
    python = venv_python(session, interp)
    # FT_HARNESS_NOX_PYTHON: nox's own interpreter, for the test that lists sessions
    env = {**config_env(interp), "FT_HARNESS_NOX_PYTHON": sys.executable}
    session.run(
        python,
        "-m",
        "pytest",
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        external=True,
        env=env,
    )


@nox.session(python=False)
def compare(session: nox.Session) -> None:
    """Data-parallel training, every strategy at 1 and 2 workers, on each configuration."""
    configs, args = main_configs(session)
    results = []
    for interp in configs:
        python = venv_python(session, interp)
        for strategy, workers in COMPARE_CELLS:
            out = session.run(
                python,
                "-m",
                "harness",
                "run",
                "--strategy",
                strategy,
                "--workers",
                str(workers),
                "--model",
                "tiny",
                "--steps",
                "300",
                "--json",
                *args,
                external=True,
                silent=True,
                env=config_env(interp),
            )
            results.append(json.loads(out))
    print(render_comparison(results))


@nox.session(python=False)
def advise(session: nox.Session) -> None:
    """`python -m harness advise` on each configuration (arguments after `--` go to advise, e.g.
    `-- --workload loader --data DIR --augment python`); each writes reports/advise/<config>/."""
    configs, args = main_configs(session)
    for interp in configs:
        python = venv_python(session, interp)
        out = str(Path("reports") / "advise" / interp.name)
        session.run(
            python,
            "-m",
            "harness",
            "advise",
            *args,
            "-o",
            out,
            external=True,
            env=config_env(interp),
        )


# Relative to ROOT, where nox runs: the report names its raw files as given, and a relative path
# says nothing about the machine that made them.
RAW = Path("reports") / "raw"
LATEST = Path("reports") / "latest"


# The main job's rounds unless told otherwise: the quick preset's 5 whole rounds, then rounds of
# the headline cells still wider than ±5 %. Two consecutive reports this way agreed on all 27
# headline verdicts (one place moved between a tie and a clear order); with the 5 rounds alone
# they differed on 2 verdicts and 6 places (README, "Did the conclusions change?").
REPORT_ROUNDS = ["--until", "5%", "--budget", "7m"]


def run_benches(
    session: nox.Session, default_rounds: Sequence[str] = ()
) -> tuple[list[toolchain.Interpreter], list[str]]:
    """The bench of every configuration in interleaved rounds (harness.bench.rounds), merged into
    reports/raw/<config>.json at the end (an interrupted bench leaves the previous files).
    `--rounds N`, `--until 5%`, `--budget 8m` after `--` steer the rounds (`default_rounds` where
    neither --rounds nor --until is given); other options go to every bench."""
    configs, args = main_configs(session)
    if not any(a.split("=")[0] in ("--rounds", "--until") for a in args):
        args = [*default_rounds, *args]  # a --budget of the user's comes later: it wins
    try:
        plan, args = rounds.take_options(args)
    except ValueError as exc:
        session.error(str(exc))
    targets = [
        rounds.Target(i.name, venv_python(session, i), config_env(i), RAW / f"{i.name}.json")
        for i in configs
    ]

    def run(command: list[str], env: dict[str, str]) -> None:
        session.run(*command, external=True, env=env)

    def widest(paths: list[Path]) -> dict | None:
        goal = ["--goal", str(plan.until)] if plan.until is not None else []
        cmd = [targets[0].python, "-m", "harness.report.intervals", *goal, *map(str, paths)]
        out = session.run(*cmd, external=True, silent=True, env=targets[0].env)
        return json.loads(out.strip().splitlines()[-1])  # the last line: the JSON

    rounds.run_rounds(targets, args, plan, run, widest, log=session.log)
    return configs, [str(t.out) for t in targets]


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """pyperf benchmarks of the quick preset (or `-- --preset full`, `-- --python 3.14` ...)."""
    run_benches(session)


# `run --trace` of data-parallel tiny for the report's "Where the time goes", on every configuration
# benched (the GIL builds' traces are the contrast: there the threads wait inside maps): serial
# and threads x2 at the bench's batch 1024 and at 256, where the per-step overheads weigh 4x more.
# 60 steps: about a second a run, mostly the interpreter's start-up.
TRACE_RUNS = [(s, w, b) for b in (1024, 256) for s, w in (("serial", 1), ("threads", 2))]
TRACE_STEPS = 60


def record_traces(session: nox.Session, configs: list[toolchain.Interpreter]) -> list[str]:
    """The TRACE_RUNS of each configuration, written beside its raw file; their paths."""
    paths = []
    for interp in configs:
        for strategy, workers, batch in TRACE_RUNS:
            path = RAW / f"{interp.name}.{strategy}-w{workers}-b{batch}.trace.jsonl"
            session.run(
                venv_python(session, interp),
                "-m",
                "harness",
                "run",
                *("--strategy", strategy, "--workers", str(workers), "--batch", str(batch)),
                *("--model", "tiny", "--steps", str(TRACE_STEPS), "--trace", str(path)),
                external=True,
                silent=True,
                env=config_env(interp),
            )
            paths.append(str(path))
    return paths


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """The main job: bench every configuration, trace a few runs, then render reports/latest/."""
    start = time.monotonic()
    configs, raw = run_benches(session, REPORT_ROUNDS)
    traces = record_traces(session, configs)
    interp = configs[0]  # any venv has matplotlib (the test extra)
    # the previous report, if any, is read before it is replaced: did the conclusions change?
    against = ["--against", str(LATEST)] if (LATEST / "summary.json").exists() else []
    session.run(
        venv_python(session, interp),
        "-m",
        "harness",
        "report",
        *raw,
        "-o",
        str(LATEST),
        *against,
        "--traces",
        *traces,
        external=True,
        env=config_env(interp),
    )
    session.log(f"bench + report took {time.monotonic() - start:.0f} s")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the tree (or the paths after `--`)."""
    session.install(RUFF)
    paths = session.posargs or ["."]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=False)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the core modules against the fast tests (mutmut; the modules and tests
    are in pyproject.toml's [tool.mutmut]). Slow, so not in CI. `-- "harness.model.*"` runs only
    the mutants whose names match.

    Self-contained: a venv of the interpreter running nox with the project's dependencies but NOT
    the project itself, so the mutated copy in mutants/ is the only `harness` on the path."""
    import tomllib

    venv = ROOT / ".nox" / "venv-mutants"
    python = str(venv / "bin" / "python")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"], "mutmut==3.8.1"]
    stamp = venv / ".ft-harness-stamp"
    if not stamp.exists() or stamp.read_text() != "\n".join(wanted):
        shutil.rmtree(venv, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        session.run(
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--only-binary",
            "numpy",
            *wanted,
            external=True,
        )
        stamp.write_text("\n".join(wanted))
    # The run ends with its "Mutant results": every mutant no test killed (🙁 survived,
    # 🫥 no test reaches it, ⏰ timed out). `mutmut show NAME` prints one's diff.
    session.run(
        python, "-m", "mutmut", "run", "--max-children", "2", *session.posargs, external=True
    )


# The fast unit tests: no CLI subprocesses, bench or MPI jobs. Each test runs in 4 threads at once,
# 3 times: the harness's own code and the strategies' thread-safety contract on a build where
# threads really overlap. Tests single-threaded by nature (signals, process-wide settings, listing
# the process's segments) are marked thread_unsafe and left to `nox -s tests`.
THREADSAFETY_TESTS = [
    "tests/test_strategies.py",
    "tests/test_model.py",
    "tests/test_params.py",
    "tests/test_config.py",
    "tests/test_augment.py",
    "tests/test_scaling.py",
    "tests/test_data.py",
]


@nox.session(python=False)
def threadsafety(session: nox.Session) -> None:
    """The fast unit tests under pytest-run-parallel (--parallel-threads) on the free-threaded
    build of each version asked for (cp313t by default)."""
    for series in VERSIONS:
        threadsafety_on(session, interpreter(session, series.names[1]))


def threadsafety_on(session: nox.Session, interp: toolchain.Interpreter) -> None:
    python = venv_python(session, interp)
    session.run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--parallel-threads=4",
        "--iterations=3",
        "--skip-thread-unsafe=True",
        *THREADSAFETY_TESTS,
        *session.posargs,
        external=True,
        env=config_env(interp),
    )

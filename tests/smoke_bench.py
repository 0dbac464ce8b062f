"""A real bench, run once per test session (also under pytest-xdist) and shared by the bench and
report tests: the `smoke` preset as two configurations, from real subprocesses and real pyperf."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("cp313", "cp313t")  # labels only: both runs use the interpreter running the tests
TIMEOUT = 240


def bench_env(config: str, cache: Path) -> dict[str, str]:
    """The test's environment plus a thread variable the pyperf workers must see (pass-through)."""
    return {
        **os.environ,
        "FT_HARNESS_CONFIG": config,
        "FT_HARNESS_CACHE": str(cache),
        "OPENBLAS_NUM_THREADS": "1",
    }


def bench_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness",
        "bench",
        "--preset",
        "smoke",
        "--out",
        str(out),
        *extra,
    ]


def run_bench(out: Path, config: str, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bench_command(out, *extra),
        cwd=ROOT,
        env=bench_env(config, cache),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def shared_dir(factory: pytest.TempPathFactory) -> Path:
    """One folder for this test run: xdist workers share their basetemp's parent and a run id."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = factory.getbasetemp()
    return base / "smoke-bench" if run is None else base.parent / f"smoke-bench-{run}"


def smoke_bench(factory: pytest.TempPathFactory) -> Path:
    """Raw files of the smoke bench for CONFIGS, made by the first worker to ask (under a file
    lock), both configurations at once: each bench is mostly one process at a time."""
    folder = shared_dir(factory)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            running = {
                c: subprocess.Popen(
                    bench_command(folder / f"{c}.json"),
                    cwd=ROOT,
                    env=bench_env(c, folder / f"cache-{c}"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for c in CONFIGS
            }
            for config, proc in running.items():
                out, err = proc.communicate(timeout=TIMEOUT)
                (folder / f"{config}.stdout").write_text(out)
                assert proc.returncode == 0, err[-3000:]
            (folder / "done").write_text("ok")
    return folder

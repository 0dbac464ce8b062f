"""An interrupted or killed run leaves no worker processes and no shared-memory segments behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
LONG_RUN = [sys.executable, "-m", "harness", "run", "--strategy", "processes", "--workers", "2",
            "--steps", "10000000"]


def segments_of(pid: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"fth_{pid}_*"))


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def started_run() -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A long processes run, returned once its segments exist and its workers are up."""
    proc = subprocess.Popen(LONG_RUN, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    assert wait_until(lambda: len(segments_of(proc.pid)) >= 3 and len(parent.children(recursive=True)) >= 3, 60)
    return proc, parent.children(recursive=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_leaves_nothing_behind(sig: signal.Signals) -> None:
    proc, children = started_run()
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    if sig != signal.SIGKILL:
        assert code == 130 and proc.stderr.read().strip().endswith("error: interrupted")
    assert wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                                      for c in children), 15), "worker processes outlived the run"
    assert wait_until(lambda: not segments_of(proc.pid), 15), "shared memory outlived the run"

"""`bench` called in-process leaves the caller's Ctrl-C handling as it found it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# In a process of its own: pyperf allows one Runner per process.
SCRIPT = """
import signal, sys
from harness.bench.main import main
state = lambda: (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set()))
before = state()
code = main(["--preset", "smoke", "--workloads", "data-parallel", "--strategies", "serial",
             "-p", "1", "-n", "1", "-w", "0", "--quiet", "--out", sys.argv[1]])
print(code, state() == before)
"""


def test_an_in_process_bench_restores_the_sigint_handler_and_mask(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    # before the fix: "0 False" (Stop.on_signal left installed, SIGINT possibly held)
    assert proc.stdout.split()[-2:] == ["0", "True"] and raw.exists()

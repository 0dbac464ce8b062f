"""`bench` called in-process leaves the caller's Ctrl-C handling as it found it."""

from __future__ import annotations

import signal
from pathlib import Path

from harness.bench.main import main


def test_an_in_process_bench_restores_the_sigint_handler_and_mask(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set())
    code = main(
        [
            "--preset",
            "smoke",
            "--workloads",
            "data-parallel",
            "--strategies",
            "serial",
            "-p",
            "1",
            "-n",
            "1",
            "-w",
            "0",
            "--quiet",
            "--out",
            str(tmp_path / "raw.json"),
        ]
    )
    after = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert code == 0 and (tmp_path / "raw.json").exists()
    assert after == before  # before the fix: Stop.on_signal installed, SIGINT possibly held

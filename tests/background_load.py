"""A synthetic background load for the noise tests: a process that burns one CPU.

`detached()` starts it OUTSIDE the caller's process tree (a double fork: the burner's parent
exits at once, so the burner is re-parented away from us; it holds none of our pipes), as another user's work would be;
`child()` starts it as our own child, as a benchmark's worker pool would be. Either is ended by
its pid when the block exits, and never outlives the test (it also stops itself after LIFETIME).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

LIFETIME = 120  # seconds: a burner left behind by a killed test run still goes away
BURN = f"import time\nend = time.monotonic() + {LIFETIME}\nwhile time.monotonic() < end: pass\n"
DETACH = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.executable, '-c', sys.argv[1]], start_new_session=True,\n"
    "                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,\n"
    "                     stderr=subprocess.DEVNULL)\n"
    "print(p.pid, flush=True)\n"
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc/<pid>/stat (fields 14 and 15, counted from 1;
    the name in brackets may hold spaces, so count from its closing bracket)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 1 :].split()  # fields[0] is field 3 (the state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def detached() -> Iterator[int]:
    """A burner that is not our descendant; yields its pid."""
    out = subprocess.run(
        [sys.executable, "-c", DETACH, BURN], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    pid = int(out.split()[0])
    try:
        yield pid
    finally:
        stop(pid)


@contextlib.contextmanager
def child() -> Iterator[int]:
    """A burner that is our child; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()

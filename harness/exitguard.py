"""After Ctrl-C, the process ends within a bound, whatever the interpreter's exit waits for.

Once an interrupted command has cleaned up (pools stopped, shared memory unlinked) and printed
its line, the interpreter's exit still joins threads (concurrent.futures joins its pools'
threads) and runs multiprocessing's finalizers. One of them waiting on something the interrupt
left behind would keep the shell's prompt away for good: a group Ctrl-C of a processes run on
cp313t under CI load once did not end within 30 s (cause not found; no hang in 250 tries here).
`end_within` starts a daemon thread: if the process is still alive after the grace period, it
writes every thread's stack to a file (the evidence), says so in one line, and ends the process
with the interrupt's exit status, 130. FT_HARNESS_EXIT_GRACE_S sets the period (tests).
"""

from __future__ import annotations

import faulthandler
import os
import tempfile
import threading
import time

GRACE_ENV = "FT_HARNESS_EXIT_GRACE_S"
EXIT_GRACE_S = 15.0  # pools get 2 s a stage to stop (pool_faults.GRACE_S): this is well past it


def end_within(seconds: float | None = None) -> None:
    """End this process with status 130 if it is still running `seconds` from now."""
    if seconds is None:
        seconds = float(os.environ.get(GRACE_ENV) or EXIT_GRACE_S)
    threading.Thread(
        target=_end_after, args=(seconds,), name="ft-harness-exit-guard", daemon=True
    ).start()


def _end_after(seconds: float) -> None:
    time.sleep(seconds)
    path = os.path.join(tempfile.gettempdir(), f"ft-harness-exit-{os.getpid()}.txt")
    try:
        with open(path, "w") as stacks:
            faulthandler.dump_traceback(stacks, all_threads=True)
        where = f"thread stacks in {path}"
    except OSError as exc:
        where = f"thread stacks not written: {exc.strerror}"
    os.write(
        2, f"error: exiting hung {seconds:g} s after the interrupt; ended ({where})\n".encode()
    )
    os._exit(130)

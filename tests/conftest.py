"""Shared test set-up: the Hypothesis profile for threaded code and a shared-memory leak probe."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, settings

# Worker pools make timings noisy: no deadlines; fixtures shared across examples are deliberate.
settings.register_profile(
    "threading",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "threading"))


def ctrl_c_as_usual() -> None:
    """Popen's preexec_fn for a child that a test sends Ctrl-C: a script that starts the tests
    in the background (`nox ... &`) hands every process SIGINT *ignored*, and an ignored signal
    stays ignored across exec (as a blocked one stays blocked), so the child would never see it.
    A terminal's foreground job,
    which these tests stand for, has SIGINT's usual meaning."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie; a process that ends between psutil's two looks is gone, not an
    error (CI saw `NoSuchProcess` from status() right after is_running() said yes)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition: Callable[[], object], timeout: float) -> bool:
    """Whether `condition()` came true within `timeout` s (looked at every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def our_segments() -> set[str]:
    """Shared-memory segments created by this process's strategies (name prefix fth_<pid>_)."""
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob(f"fth_{os.getpid()}_*")} if shm.exists() else set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow run only when a -m expression names them (`-m slow`)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture
def usual_ctrl_c() -> object:
    """For a test that raises SIGINT in this process: the interpreter's own handler, SIGINT not
    held, whatever the test runner or an earlier test left; restored afterwards."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
    signal.signal(signal.SIGINT, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)

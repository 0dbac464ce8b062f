"""The pair probe (harness.bench.pairprobe): two threads' slowdown of each other, measured with
kernels whose answer is known: one that cannot overlap (a shared lock) and one that can (sleep)."""

from __future__ import annotations

import threading
import time

from harness.bench import measure, pairprobe
from strategies.base import gil_enabled

KERNEL_S = 0.02


def test_a_kernel_that_cannot_overlap_reads_about_twice() -> None:
    """Each thread's time includes waiting for the other's turn: two at once take twice as long."""
    lock = threading.Lock()

    def serialised() -> float:
        start = time.perf_counter()
        with lock:
            time.sleep(KERNEL_S)
        return time.perf_counter() - start

    slowdown = pairprobe.pair_slowdown(serialised)
    if gil_enabled():
        assert slowdown is None  # threads take turns there anyway: nothing to measure
    else:
        assert slowdown is not None and 1.7 < slowdown < 2.6


def test_a_kernel_that_overlaps_reads_about_one() -> None:
    def sleeper() -> float:
        start = time.perf_counter()
        time.sleep(KERNEL_S)
        return time.perf_counter() - start

    slowdown = pairprobe.pair_slowdown(sleeper)
    assert slowdown is None if gil_enabled() else slowdown is not None and slowdown < 1.4


def test_the_numpy_kernel_does_its_work_in_measurable_time() -> None:
    assert 0 < pairprobe.numpy_kernel(passes=50) < pairprobe.numpy_kernel(passes=2000)


def test_the_manager_records_a_fresh_reading_or_drops_an_inherited_one() -> None:
    environ = {pairprobe.ENV: "9.9999"}  # left over in the environment, not measured here
    measure.probe_pair_slowdown(environ)
    if gil_enabled():
        assert pairprobe.ENV not in environ
    else:
        assert 0.5 < float(environ[pairprobe.ENV]) < 5 and environ[pairprobe.ENV] != "9.9999"
    assert pairprobe.ENV in measure.inherit_environ({pairprobe.ENV: "1.0"}, None)

"""The threads strategy's map: tasks claimed one at a time by the caller and its gang of threads."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from strategies import create
from strategies.base import usable_cpus
from strategies.gang import SPIN_NS, polling_ns

TASKS = 16
WAIT_S = 10.0  # a bound for tests that would otherwise hang on the bug they look for


def test_a_slow_task_does_not_hold_back_the_tasks_behind_it() -> None:
    """Task 0 ends only once every other task has: the other thread must take them all. With
    fixed slices (before) the thread running task 0 also owned tasks 1-7, and task 0 waited out
    its bound."""
    others_done, lock, done = threading.Event(), threading.Lock(), []

    def task(i: int) -> tuple[int, bool]:
        if i == 0:
            return threading.get_ident(), others_done.wait(WAIT_S)
        with lock:
            done.append(i)
            if len(done) == TASKS - 1:
                others_done.set()
        return threading.get_ident(), True

    with create("threads", 2) as s:
        results = s.map(task, range(TASKS))
    ran_zero, saw_others_done = results[0]
    assert saw_others_done
    assert all(ident != ran_zero for ident, _ in results[1:])
    assert sorted(done) == list(range(1, TASKS))


def test_the_first_failing_task_in_task_order_is_raised() -> None:
    """Task 9 fails first in time, task 3 first in task order: the map raises task 3's error,
    as it would where tasks run one after another."""

    def task(i: int) -> int:
        if i == 3:
            time.sleep(0.05)  # meanwhile the other thread reaches task 9
            raise ValueError("task 3 refused")
        if i == 9:
            raise ValueError("task 9 refused")
        return i

    with create("threads", 2) as s, pytest.raises(ValueError, match="task 3 refused"):
        s.map(task, range(TASKS))


def test_a_failed_map_starts_no_further_task() -> None:
    """Task 1 fails at once while tasks take 50 ms each: only the tasks claimed by then run
    (0, 1 and the other thread's one or two), not the other thread's whole slice as before."""
    started: list[int] = []

    def task(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("task 1 refused")
        time.sleep(0.05)
        return i

    with create("threads", 2) as s, pytest.raises(ValueError, match="task 1 refused"):
        s.map(task, range(TASKS))
    assert len(started) <= 4, started


@pytest.mark.thread_unsafe  # reads the whole process's CPU time
def test_an_idle_gang_sleeps() -> None:
    """Between maps the gang's threads poll their lock only briefly (where the GIL is off), then
    sleep in the kernel: a strategy left open between maps burns no CPU."""
    with create("threads", 2) as s:
        s.map(abs, range(TASKS))
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.1
        assert s.map(abs, range(-3, 0)) == [3, 2, 1]  # and wakes for the next map


def test_threads_poll_only_with_the_gil_off_and_a_cpu_each() -> None:
    """Polling with the GIL on holds the GIL the other thread needs; with more threads than CPUs
    it holds a CPU a working thread needs (cp313t threads x4 on 2 CPUs fell to 0.66x of cp313
    serial): both sleep at once instead."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert polling_ns(usable_cpus() + 1) == 0
    assert polling_ns(2 * usable_cpus()) == 0
    assert polling_ns(1) == (0 if gil else SPIN_NS)
    assert polling_ns(min(2, usable_cpus())) == (0 if gil else SPIN_NS)

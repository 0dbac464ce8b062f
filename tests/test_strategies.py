"""The Strategy contract, checked on every registered strategy with real pools and processes."""

from __future__ import annotations

import os
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness import HarnessError
from strategies import REGISTRY, create, get_strategy, register
from strategies.base import Strategy, blas_summary, split_evenly
from tests.conftest import our_segments

# SPMD strategies map only where every worker runs the workload: tests/test_mpi.py, test_spmd.py
ALL = sorted(name for name, cls in REGISTRY.items() if not cls.spmd)


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} refused")
    return x


def write_row(args: tuple[np.ndarray, int]) -> int:
    shared, row = args
    shared[row] = row + 1.0
    return os.getpid()


def die(_: int) -> int:
    os._exit(3)  # a worker that vanishes without raising


def blas_threads_in_worker(_: int) -> int | None:
    return blas_summary()["threads"]


@pytest.fixture(params=ALL)
def strategy(request: pytest.FixtureRequest) -> Iterator[Strategy]:
    with create(request.param, 2) as s:
        yield s


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(HarnessError, match="unknown strategy 'gpu'; known: asyncio, blas, mpi, processes"):
        get_strategy("gpu")


def test_map_keeps_task_order(strategy: Strategy) -> None:
    assert strategy.map(square, range(11)) == [x * x for x in range(11)]
    assert strategy.map(square, []) == []


def test_worker_exception_reaches_caller_with_traceback(strategy: Strategy) -> None:
    with pytest.raises(ValueError, match="task 3 refused") as info:
        strategy.map(fail_on_three, range(6))
    chain = "".join(str(e) for e in (info.value, info.value.__cause__) if e is not None)
    frames = [f.name for f in info.traceback]
    assert "fail_on_three" in frames or "fail_on_three" in chain
    assert strategy.map(square, [4]) == [16]  # still usable after a task failed


def test_shared_array_is_written_by_workers(strategy: Strategy) -> None:
    shared = strategy.shared_array((4, 3))
    strategy.map(write_row, [(shared, r) for r in range(4)])
    assert shared[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_blas_pinned_to_one_thread_except_for_blas() -> None:
    for name in ALL:
        with create(name, 2) as s:
            expected = 2 if name == "blas" else 1
            assert set(s.map(blas_threads_in_worker, range(4))) == {expected}


@pytest.mark.parametrize("name", ALL)
def test_close_is_idempotent_and_map_after_close_raises(name: str) -> None:
    s = create(name, 1)
    s.close()
    s.close()
    with pytest.raises(HarnessError, match="is closed"):
        s.map(square, [1])


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_processes_honour_start_method_and_leave_no_segments(method: str) -> None:
    with create("processes", 2, start_method=method) as s:
        shared = s.shared_array(8)
        s.map(write_row, [(shared, r) for r in range(8)])
        assert s.info()["start_method"] == method
        assert our_segments()
    del shared
    assert not our_segments()


def test_processes_release_segments_when_a_worker_raises() -> None:
    with pytest.raises(ValueError):
        with create("processes", 2) as s:
            s.shared_array(16)
            s.map(fail_on_three, range(5))
    assert not our_segments()


@pytest.mark.timeout(60)
def test_crashed_worker_fails_fast_instead_of_hanging() -> None:
    start = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        with create("processes", 2) as s:
            s.shared_array(4)
            s.map(die, range(4))
    assert time.monotonic() - start < 30
    assert not our_segments()


@pytest.mark.parametrize(("n", "parts"), [(0, 3), (1, 4), (7, 2), (16, 3), (5, 5)])
def test_split_evenly_keeps_order_and_balance(n: int, parts: int) -> None:
    slices = split_evenly(list(range(n)), parts)
    assert [x for s in slices for x in s] == list(range(n))
    assert all(slices) or n == 0
    assert max(map(len, slices), default=0) - min(map(len, slices), default=0) <= 1


class StrategyLifecycle(RuleBasedStateMachine):
    """Random sequences of map / shared_array / close against a trivial model of the contract."""

    name = st.sampled_from(["serial", "threads", "asyncio", "blas"])

    def __init__(self) -> None:
        super().__init__()
        self.strategy: Strategy | None = None
        self.closed = False

    @precondition(lambda self: self.strategy is None)
    @rule(name=name, workers=st.integers(1, 4))
    def open(self, name: str, workers: int) -> None:
        self.strategy = create(name, workers)

    @precondition(lambda self: self.strategy is not None)
    @rule(tasks=st.lists(st.integers(-100, 100), max_size=12))
    def map(self, tasks: list[int]) -> None:
        assert self.strategy is not None
        if self.closed:
            with pytest.raises(HarnessError):
                self.strategy.map(square, tasks)
        else:
            assert self.strategy.map(square, tasks) == [t * t for t in tasks]

    @precondition(lambda self: self.strategy is not None)
    @rule()
    def close(self) -> None:
        assert self.strategy is not None
        self.strategy.close()
        self.closed = True

    @invariant()
    def closed_flag_matches(self) -> None:
        if self.strategy is not None:
            assert self.strategy.closed == self.closed

    def teardown(self) -> None:
        if self.strategy is not None:
            self.strategy.close()


StrategyLifecycle.TestCase.settings = settings(max_examples=30, stateful_step_count=12, deadline=None)
test_strategy_lifecycle = StrategyLifecycle.TestCase


def test_register_adds_a_class_once_and_refuses_its_name_twice() -> None:
    class Extra(get_strategy("serial")):  # type: ignore[misc, valid-type]
        name = "extra-for-test"

    try:
        assert register(Extra) is Extra and REGISTRY["extra-for-test"] is Extra
        assert get_strategy("extra-for-test") is Extra
        with pytest.raises(HarnessError, match="strategy 'extra-for-test' is registered twice"):
            register(Extra)
    finally:
        REGISTRY.pop("extra-for-test", None)

"""Locked updates lose nothing: for any W in 1-8 workers, U in 1-200 updates, any model and any
stripe count, the `lock` and `striped` policies end exactly on the probe's expected vector, on
threads, asyncio and processes. A deadlock fails the test through the timeout instead of hanging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import MLP
from harness.params import (
    MAX_LOCKS,
    ParamStore,
    locks_needed,
    probe_deltas,
    probe_expected,
    probe_worker,
    stripes_for,
)
from harness.workloads.common import to_shared
from strategies import create
from strategies.base import Strategy
from tests.conftest import our_segments

MAX_WORKERS = 8
# Examples per strategy: processes pay IPC per example, and the whole file must stay well under
# the timeout on 2 cores.
EXAMPLES = {"threads": 40, "asyncio": 25, "processes": 15}


@dataclass(frozen=True)
class Pool:
    """A strategy with MAX_WORKERS workers and its locks, taken once: the processes strategy's
    lock bank is finite, and starting worker processes per example would be too slow."""

    strategy: Strategy
    locks: list[Any]


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[str, Pool]]:
    opened: dict[str, Pool] = {}
    yield opened
    for pool in opened.values():
        pool.strategy.close()
    assert not our_segments()  # every example's shared memory went with its strategy


def get_pool(pools: dict[str, Pool], name: str) -> Pool:
    if name not in pools:
        strategy = create(name, MAX_WORKERS)
        pools[name] = Pool(strategy, [strategy.lock() for _ in range(MAX_LOCKS)])
    return pools[name]


@dataclass(frozen=True)
class Case:
    policy: str
    widths: tuple[int, ...]
    stripes: int | None
    workers: int
    updates: int
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    widths = tuple(draw(st.lists(st.integers(1, 40), min_size=2, max_size=4)))
    policy = draw(st.sampled_from(["lock", "striped"]))
    stripes = draw(st.none() | st.integers(1, MLP(widths).size))  # None: one stripe per layer
    return Case(
        policy,
        widths,
        stripes,
        draw(st.integers(1, MAX_WORKERS)),
        draw(st.integers(1, 200)),
        draw(st.integers(0, 2**32 - 1)),
    )


def run_probe(pool: Pool, case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Every worker slot at once, each doing its U probe updates; (expected, observed)."""
    model = MLP(case.widths)
    stripes = stripes_for(case.policy, model, case.stripes)
    params = pool.strategy.shared_array(model.size)
    store = ParamStore.build(params, stripes, pool.locks[: locks_needed(case.policy, len(stripes))])
    deltas = to_shared(pool.strategy, probe_deltas(case.seed, case.workers, model.size))
    pool.strategy.map(
        partial(probe_worker, store=store, deltas=deltas, updates=case.updates), range(case.workers)
    )
    return probe_expected(deltas, case.updates), np.array(params)


@pytest.mark.timeout(60, method="thread")  # a deadlock dumps every stack and fails the run
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_locked_policies_lose_no_update(pools: dict[str, Pool], name: str) -> None:
    pool = get_pool(pools, name)

    @settings(max_examples=EXAMPLES[name], deadline=None)
    @given(case=cases())
    def check(case: Case) -> None:
        expected, observed = run_probe(pool, case)
        np.testing.assert_array_equal(observed, expected)  # exact: sums of small integers

    check()

"""The parameter store: stripes, locks, a stateful model of its reads and writes, and the probe."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from harness import HarnessError
from harness.model import MLP
from harness.params import (
    MAX_LOCKS,
    ParamStore,
    equal_stripes,
    layer_stripes,
    locks_needed,
    probe_deltas,
    probe_expected,
    probe_report,
    probe_worker,
    stripes_for,
)
from strategies import create

widths_st = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


def assert_partition(stripes: list[slice], size: int) -> None:
    """Contiguous, non-empty, in order, covering range(size) exactly once."""
    assert stripes[0].start == 0 and stripes[-1].stop == size
    assert all(s.start < s.stop for s in stripes)
    assert all(a.stop == b.start for a, b in zip(stripes, stripes[1:]))


@given(size=st.integers(1, 5000), data=st.data())
def test_equal_stripes_partition_the_vector_evenly(size: int, data: st.DataObject) -> None:
    count = data.draw(st.integers(1, size))
    stripes = equal_stripes(size, count)
    assert len(stripes) == count
    assert_partition(stripes, size)
    lengths = {s.stop - s.start for s in stripes}
    assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("count", [0, -1, 11])
def test_equal_stripes_refuse_empty_stripes(count: int) -> None:
    with pytest.raises(HarnessError, match=f"stripes={count} must be between 1 and the 10"):
        equal_stripes(10, count)


@given(widths=widths_st)
def test_layer_stripes_are_the_layers(widths: tuple[int, ...]) -> None:
    model = MLP(widths)
    stripes = layer_stripes(model)
    assert_partition(stripes, model.size)
    assert [s.stop - s.start for s in stripes] == [a * b + b for a, b in zip(widths, widths[1:])]


def test_only_striped_cuts_the_vector() -> None:
    model = MLP((4, 3, 2))
    assert stripes_for("lock", model, 5) == stripes_for("hogwild", model) == [slice(0, model.size)]
    assert stripes_for("striped", model) == layer_stripes(model)
    assert len(stripes_for("striped", model, 5)) == 5


@pytest.mark.parametrize(
    ("policy", "stripes", "locks"),
    [("lock", 1, 1), ("hogwild", 1, 0), ("striped", 3, 3), ("striped", MAX_LOCKS + 5, MAX_LOCKS)],
)
def test_locks_needed(policy: str, stripes: int, locks: int) -> None:
    assert locks_needed(policy, stripes) == locks


def test_stripes_share_locks_round_robin() -> None:
    locks = [threading.Lock() for _ in range(3)]
    store = ParamStore.build(np.zeros(7), equal_stripes(7, 7), locks)
    assert [locks.index(g) for g in store.guards] == [0, 1, 2, 0, 1, 2, 0]
    assert store.lock_count == 3
    assert ParamStore.build(np.zeros(7), equal_stripes(7, 2), []).lock_count == 0


class StoreMachine(RuleBasedStateMachine):
    """Reads and writes through lock, layer-striped, equal-striped and Hogwild! stores over ONE
    buffer, in random order, against a sequential model: the expected vector."""

    @initialize(widths=widths_st, data=st.data())
    def setup(self, widths: tuple[int, ...], data: st.DataObject) -> None:
        model = MLP(widths)
        self.size = model.size
        self.locks = [threading.Lock() for _ in range(MAX_LOCKS)]
        self.expected = np.zeros(self.size)
        params = np.zeros(self.size)
        count = data.draw(st.integers(1, self.size), label="stripes")
        layouts = {
            "lock": stripes_for("lock", model),
            "striped": layer_stripes(model),
            "striped-k": equal_stripes(self.size, count),
            "hogwild": stripes_for("hogwild", model),
        }
        self.stores = {
            name: ParamStore.build(
                params, stripes, self.locks[: locks_needed(name.removesuffix("-k"), len(stripes))]
            )
            for name, stripes in layouts.items()
        }

    @rule(name=st.sampled_from(["lock", "striped", "striped-k", "hogwild"]), data=st.data())
    def write(self, name: str, data: st.DataObject) -> None:
        delta = np.array(
            data.draw(st.lists(st.integers(-3, 3), min_size=self.size, max_size=self.size)),
            dtype=np.float64,
        )
        self.stores[name].add(delta)
        self.expected += delta

    @rule(name=st.sampled_from(["lock", "striped", "striped-k", "hogwild"]))
    def read(self, name: str) -> None:
        out = self.stores[name].read(np.full(self.size, np.nan))
        np.testing.assert_array_equal(out, self.expected)

    @invariant()
    def every_lock_is_free(self) -> None:
        # A lock left held would deadlock the next writer of its stripes.
        for lock in getattr(self, "locks", []):
            assert not lock.locked()


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)


def test_probe_report_counts_missing_units() -> None:
    report = probe_report(np.array([3.0, 2.0, 0.0]), np.array([2.0, 2.0, 0.0]))
    assert report == {
        "expected_sum": 5.0,
        "observed_sum": 4.0,
        "lost_updates": 1,
        "lost_fraction": 0.2,
        "exact": False,
    }


def test_probe_deltas_are_unit_increments_fixed_by_the_seed() -> None:
    deltas = probe_deltas(7, 3, 100)
    assert deltas.shape == (3, 100) and set(np.unique(deltas)) <= {0.0, 1.0}
    np.testing.assert_array_equal(deltas, probe_deltas(7, 3, 100))
    assert not np.array_equal(deltas[0], deltas[1])  # each worker chooses its own coordinates


@dataclass(frozen=True)
class RacyStore(ParamStore):
    """A deliberately unsafe read-modify-write: every worker reads, then all wait at a barrier, so
    the switch between read and write is certain, then each writes what it read plus its delta."""

    barrier: threading.Barrier | None = None

    def add(self, delta: np.ndarray) -> None:
        before = self.params.copy()
        self.barrier.wait()  # every worker has read the same vector
        self.params[...] = before + delta  # ... so all but the last write are overwritten
        self.barrier.wait()  # nobody reads the next round before this one is written


@pytest.mark.timeout(60, method="thread")
def test_probe_sees_updates_lost_to_an_unsafe_read_modify_write() -> None:
    workers, updates, size = 2, 20, 50
    deltas = probe_deltas(0, workers, size)
    plain = ParamStore.build(np.zeros(size), [slice(0, size)], [])
    store = RacyStore(
        plain.params, plain.stripes, plain.guards, threading.Barrier(workers, timeout=20)
    )
    with create("threads", workers) as strategy:
        strategy.map(
            partial(probe_worker, store=store, deltas=deltas, updates=updates), range(workers)
        )
    report = probe_report(probe_expected(deltas, updates), store.params)
    # Each round keeps one worker's delta and loses the other's: the probe must say so.
    assert report["lost_updates"] >= updates * deltas.sum(axis=1).min() > 0
    assert not report["exact"]

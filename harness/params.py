"""The shared parameter store that concurrent workers write to, its update policies, and the probe.

Parameters are ONE flat float64 buffer (from `strategy.shared_array`, so threads, asyncio and
processes all see the same bytes) cut into *stripes*: contiguous slices, each guarded by a lock.

- `lock`: one stripe, the whole vector, one lock;
- `striped`: one stripe per layer (or K equal slices), so writers of different stripes never wait
  for each other. Stripe i takes lock i % n, with n = min(stripes, MAX_LOCKS): a worker never holds
  two locks at once, so sharing a lock between stripes costs waiting, never a deadlock;
- `hogwild`: one stripe and no lock at all (Niu, Recht, Ré, Wright, NIPS 2011).

The probe makes lost updates countable: every update adds 1 to chosen coordinates of a vector that
starts at zero. Sums of small integers are exact in float64 in any order, so the final vector is
known in advance and every unit missing from it was lost to a race.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import HarnessError
from harness.models import Model
from harness.seeding import Domain, rng_for
from strategies.base import Strategy

MAX_LOCKS = 16  # a striped store takes at most this many locks (the processes bank has 64)
PROBE_DOMAIN = Domain.PROBE


def equal_stripes(size: int, count: int) -> list[slice]:
    """`count` contiguous, non-empty slices covering range(size), lengths differing by at most 1."""
    if not 1 <= count <= size:
        raise HarnessError(f"stripes={count} must be between 1 and the {size} parameters")
    bounds = [i * size // count for i in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def layer_stripes(model: Model) -> list[slice]:
    """One stripe per part of the model as it names them (the MLP: per layer, weights and bias)."""
    return list(model.segments())


def stripes_for(policy: str, model: Model, stripes: int | None = None) -> list[slice]:
    """The write granularity of a policy; only `striped` cuts the vector."""
    if policy != "striped":
        return [slice(0, model.size)]
    return layer_stripes(model) if stripes is None else equal_stripes(model.size, stripes)


def locks_needed(policy: str, stripes: int) -> int:
    """How many distinct locks a store with `stripes` stripes takes under `policy`."""
    return {"lock": 1, "striped": min(stripes, MAX_LOCKS), "hogwild": 0}[policy]


@dataclass(frozen=True, eq=False)  # eq would compare arrays element-wise
class ParamStore:
    """A shared flat vector and one guard per stripe (a lock, or a no-op under Hogwild!).

    Picklable when its parts are: a processes strategy's arrays pickle as segment names and its
    locks as indices, so a task carrying the store carries a few bytes.
    """

    params: np.ndarray
    stripes: tuple[slice, ...]
    guards: tuple[AbstractContextManager, ...]

    @classmethod
    def build(
        cls, params: np.ndarray, stripes: Sequence[slice], locks: Sequence[Any]
    ) -> ParamStore:
        """Stripe i is guarded by locks[i % len(locks)]; no locks at all means no guarding."""
        guards = [locks[i % len(locks)] if locks else nullcontext() for i in range(len(stripes))]
        return cls(params, tuple(stripes), tuple(guards))

    @property
    def lock_count(self) -> int:
        """Distinct locks guarding the stripes (0 under Hogwild!)."""
        return len({id(guard) for guard in self.guards if not isinstance(guard, nullcontext)})

    def read(self, out: np.ndarray) -> np.ndarray:
        """Copy the parameters into `out`, each stripe under its guard (consistent per stripe)."""
        self._each_stripe(np.copyto, out, self.params)
        return out

    def add(self, delta: np.ndarray) -> None:
        """params += delta, each stripe under its guard (SGD passes delta = -lr * grad)."""
        self._each_stripe(operator.iadd, self.params, delta)

    def _each_stripe(
        self, op: Callable[[np.ndarray, np.ndarray], Any], dst: np.ndarray, src: np.ndarray
    ) -> None:
        # One guard held at a time: no lock ordering exists, so no deadlock can.
        for stripe, guard in zip(self.stripes, self.guards):
            with guard:
                op(dst[stripe], src[stripe])


def open_store(
    strategy: Strategy, initial: np.ndarray, stripes: Sequence[slice], policy: str
) -> ParamStore:
    """A store over a copy of `initial` in the strategy's shared memory, with its locks."""
    own_store = getattr(strategy, "param_store", None)
    if own_store is not None:  # workers without shared memory (MPI ranks): the strategy's own
        return own_store(initial, stripes, locks_needed(policy, len(stripes)))
    params = strategy.shared_array(initial.shape, initial.dtype)
    params[...] = initial
    locks = [strategy.lock() for _ in range(locks_needed(policy, len(stripes)))]
    return ParamStore.build(params, stripes, locks)


def probe_deltas(seed: int, workers: int, size: int) -> np.ndarray:
    """Row w: what each update of worker w adds — 1 on the coordinates it chose, 0 elsewhere.

    Drawn before any worker starts, keyed by worker slot, so the expected total is known.
    """
    return np.stack(
        [
            rng_for(seed, PROBE_DOMAIN, slot).integers(0, 2, size).astype(np.float64)
            for slot in range(workers)
        ]
    )


def probe_worker(slot: int, *, store: ParamStore, deltas: np.ndarray, updates: int) -> None:
    """Runs in a worker: a training loop with the gradient replaced by an exact integer delta."""
    snapshot = np.empty_like(store.params)
    for _ in range(updates):
        store.read(snapshot)  # read as training does, so reads contend with writes too
        store.add(deltas[slot])


def probe_expected(deltas: np.ndarray, updates: int) -> np.ndarray:
    """The final vector if no update is lost: every worker's delta, `updates` times, from zero."""
    return updates * deltas.sum(axis=0)


def probe_report(expected: np.ndarray, observed: np.ndarray) -> dict[str, Any]:
    """Totals and the loss. A racing write stores (an older sum + its delta), so observed <= expected."""
    expected_sum, observed_sum = float(expected.sum()), float(observed.sum())
    lost = int(round(expected_sum - observed_sum))
    return {
        "expected_sum": expected_sum,
        "observed_sum": observed_sum,
        "lost_updates": lost,
        "lost_fraction": lost / expected_sum if expected_sum else 0.0,
        "exact": bool(np.array_equal(expected, observed)),
    }

"""harness.testing, the contract kit: every built-in strategy and the MLP pass it, and it FAILS,
each check with its own message, for strategies and models broken in the ways it promises to
catch (results out of order, swallowed errors, a lock that does not exclude, ...).

The broken classes below are deliberately wrong and never registered.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import testing
from harness.model import MLP
from strategies import REGISTRY
from strategies.base import R, T, concatenated, run_slice, split_evenly, sum_in_order
from strategies.mpi import Mpi, mpiexec_path
from strategies.threads import Threads

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PLUGIN = ROOT / "tests" / "plugin_local"
IN_PROCESS = [name for name in REGISTRY if name != "mpi"]  # mpi runs only under mpiexec


# ---- the project's own plug-ins pass -------------------------------------------------------------


@pytest.mark.parametrize("check", testing.STRATEGY_CHECKS.values(), ids=testing.STRATEGY_CHECKS)
@pytest.mark.parametrize("name", IN_PROCESS)
def test_every_built_in_strategy_keeps_the_contract(name: str, check: Callable[..., None]) -> None:
    if REGISTRY[name].spmd and check is testing.check_exception_propagates:
        pytest.skip(
            "a task that raises on one worker of an SPMD job ends the whole job with one "
            "line naming the worker (tests/test_spmd.py), not with the task's exception"
        )
    check(REGISTRY[name], 3)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Mpi.available()[0], reason=Mpi.available()[1])
def test_mpi_keeps_the_contract_inside_a_real_two_rank_job() -> None:
    """The kit on each rank of `mpiexec -n 2`, also hybrid (2 threads per rank). Not the
    exception check: a task that raises on one rank leaves the other rank waiting in the
    collective, which the harness answers by ending the whole job (tests/test_mpi.py)."""
    script = (
        "from harness import testing\n"
        "from strategies.mpi import Mpi\n"
        "skip = ('exception_propagates',)\n"
        "testing.check_strategy(Mpi, 2, skip=skip)\n"
        "testing.check_strategy(Mpi, 2, skip=skip, threads_per_rank=2)\n"
        "import sys; sys.stdout.write(f'kit passed on rank {Mpi(2).rank}\\n'); sys.stdout.flush()\n"
    )
    proc = subprocess.run(
        [str(mpiexec_path()), "-n", "2", sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(f"kit passed on rank {r}" in proc.stdout for r in (0, 1)), proc.stdout


@pytest.mark.parametrize("check", testing.MODEL_CHECKS.values(), ids=testing.MODEL_CHECKS)
@pytest.mark.parametrize("model", ["tiny", "7-5-4-3"])
def test_the_mlp_keeps_the_model_contract(model: str, check: Callable[[Any], None]) -> None:
    check(model)  # by its --model text, through the registry, as an author may do


def test_the_local_plugins_strategy_and_model_keep_the_contract() -> None:
    """The uninstalled plug-in of tests/plugin_local, in a subprocess: importing it registers its
    names, which this test process must not see."""
    script = (
        "from harness import testing\n"
        "import ft_local_plugin as p\n"
        "testing.check_strategy(p.Strided, 3)\n"
        "testing.check_model(p.TanhNet(9, 6, 4)); testing.check_model('tanh')\n"
        "print('local plug-in passed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(str(LOCAL_PLUGIN)),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0 and "local plug-in passed" in proc.stdout, proc.stderr[-3000:]


def _env(*paths: str) -> dict[str, str]:
    old = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT), *old])}


# ---- broken strategies fail ----------------------------------------------------------------------


class SlicesBackwards(Threads):
    """Concatenates the workers' slices last first: results out of task order."""

    name = "broken-order"

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        parts = split_evenly(tasks, self.workers)
        futures = [self._pool.submit(run_slice, fn, part) for part in parts]
        return concatenated(reversed([f.result() for f in futures]))


class SwallowsPoolErrors(Threads):
    """Waits for the pool's slices but keeps only the results of those that succeeded."""

    name = "broken-errors"

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        first, *rest = split_evenly(tasks, self.workers)
        futures = [self._pool.submit(run_slice, fn, part) for part in rest]
        mine = run_slice(fn, first)
        wait(futures)
        return concatenated([mine, *(f.result() for f in futures if f.exception() is None)])


class NoExclusion:
    """A "lock" that lets everyone in."""

    def __enter__(self) -> NoExclusion:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LockLetsEveryoneIn(Threads):
    name = "broken-lock"

    def lock(self) -> Any:
        return NoExclusion()


class CopiesItsTasks(Threads):
    """Hands each worker a copy of its task, as pickling to a process without shared memory
    would: writes into shared_array never reach the caller."""

    name = "broken-sharing"

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return super()._map(fn, [copy.deepcopy(task) for task in tasks])


class RunsAfterClose(Threads):
    """Forgets that it was closed: map keeps working."""

    name = "broken-close"

    def map(self, fn: Callable[[T], R], tasks: Any) -> list[R]:
        return [fn(task) for task in tasks]


class SumsBackwards(Threads):
    """Claims bitwise equality with serial but adds the gradient rows last first."""

    name = "broken-bitwise"

    def sum_rows(self, array: np.ndarray) -> np.ndarray:
        return sum_in_order(array[::-1])


@pytest.mark.parametrize(
    ("broken", "check", "says"),
    [
        (SlicesBackwards, testing.check_map_order, "task order"),
        (SwallowsPoolErrors, testing.check_exception_propagates, "swallowed"),
        (LockLetsEveryoneIn, testing.check_lock_excludes, "does not exclude"),
        (CopiesItsTasks, testing.check_shared_array, "must be shared"),
        (RunsAfterClose, testing.check_close, "ran instead of raising HarnessError"),
        (SumsBackwards, testing.check_bitwise_with_serial, "claims bitwise_deterministic"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_the_kit_fails_a_broken_strategy_with_the_reason(
    broken: type, check: Callable[..., None], says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        check(broken, 3)
    with pytest.raises(AssertionError, match=says):
        testing.check_strategy(broken, 3)  # the whole kit stops at the same breach


def test_a_skip_that_names_no_check_is_refused() -> None:
    with pytest.raises(ValueError, match="map_ordre"):
        testing.check_strategy(Threads, 2, skip=("map_ordre",))


# ---- broken models fail --------------------------------------------------------------------------

SMALL = (6, 5, 4)


class LosesLastBiasGradient(MLP):
    """Backpropagation that forgets the output layer's bias."""

    def loss_and_grad(self, flat, x, y, out=None):  # type: ignore[no-untyped-def]
        loss, grad = super().loss_and_grad(flat, x, y, out)
        grad[self.layers[-1].bias_slice] = 0.0
        return loss, grad


class AveragesInsteadOfSumming(MLP):
    def loss_and_grad(self, flat, x, y, out=None):  # type: ignore[no-untyped-def]
        loss, grad = super().loss_and_grad(flat, x, y, out)
        grad /= len(y)
        return loss / len(y), grad


class IgnoresOut(MLP):
    """Returns a fresh gradient and leaves the caller's buffer alone."""

    def loss_and_grad(self, flat, x, y, out=None):  # type: ignore[no-untyped-def]
        return super().loss_and_grad(flat, x, y, None)


class UnseededInit(MLP):
    def init(self, seed: int) -> np.ndarray:
        return np.random.default_rng().standard_normal(self.size)


class OverlappingSegments(MLP):
    def segments(self) -> list[slice]:
        return [slice(0, self.size // 2 + 1), slice(self.size // 2, self.size)]


class MeanLossIsTheSum(MLP):
    def mean_loss(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return self.loss_and_grad(flat, x, y)[0]


@pytest.mark.parametrize(
    ("broken", "check", "says"),
    [
        (LosesLastBiasGradient, testing.check_gradient, "central differences"),
        (AveragesInsteadOfSumming, testing.check_sums, "SUM over the rows"),
        (IgnoresOut, testing.check_sums, "did not write its gradient"),
        (UnseededInit, testing.check_init, "differs between two calls"),
        (OverlappingSegments, testing.check_segments, "contiguous"),
        (MeanLossIsTheSum, testing.check_predictions, "summed loss / rows"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_the_kit_fails_a_broken_model_with_the_reason(
    broken: type, check: Callable[[Any], None], says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        check(broken(SMALL))
    with pytest.raises(AssertionError):
        testing.check_model(broken(SMALL))


def test_something_that_is_not_a_model_is_told_so() -> None:
    with pytest.raises(AssertionError, match="Model protocol"):
        testing.check_init(object())

"""Contract checks for plug-in authors: does my strategy or my model keep the harness's promises?

Every check is a plain function that returns None when the contract holds and raises
AssertionError saying what broke, so it runs under pytest, unittest or a bare script alike (no
pytest import here). The project's own strategies and models pass through these same checks
(tests/test_contract_kit.py).

A strategy author (the class need not be registered; the checks build their own instances)::

    import pytest
    from harness import testing
    from my_package.pool import MyPool

    @pytest.mark.parametrize("check", testing.STRATEGY_CHECKS.values(), ids=testing.STRATEGY_CHECKS)
    def test_my_pool_keeps_the_strategy_contract(check):
        check(MyPool, workers=3)            # keyword options reach MyPool(workers, **options)

    # or all at once: testing.check_strategy(MyPool, workers=3)

A model author::

    @pytest.mark.parametrize("check", testing.MODEL_CHECKS.values(), ids=testing.MODEL_CHECKS)
    def test_my_model_keeps_the_model_contract(check):
        check(MyModel(n_inputs=12, n_classes=4))

    # or: testing.check_model(MyModel(...)); or by its --model text: testing.check_model("tiny")

What is checked. A strategy: `map` returns results in task order (tasks of uneven duration, so a
pool that collects results as they finish reorders them), also for no tasks and for fewer tasks
than workers; a task's exception reaches the caller with its type; `close()` may be called twice
and `map`/`submit` after it raise HarnessError; rows written into `shared_array` by workers are
seen by the caller (where the class says `shares_memory`) and added in order by `sum_rows`;
`lock()` excludes (a read-sleep-write counter under the lock loses no increment); and a real
data-parallel run is bitwise equal to serial (`params_sha256`) where the class claims
`bitwise_deterministic`, close to it otherwise. A model: the gradient matches central finite
differences of the loss on a small random problem; `loss_and_grad` returns SUMS (two halves of
the rows add up to the whole), writes its gradient into `out` and changes neither the parameters
nor the data; `init` depends on the seed alone; `segments()` cut the flat buffer into contiguous
pieces that cover it; `predict`, `accuracy` and `mean_loss` agree with each other.

Task functions live at module level here, so that process pools can pickle them by name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness import HarnessError

StrategyCheck = Callable[..., None]
ORDER_TASKS = 7  # uneven: not a multiple of 2, 3 or 4 workers
STEP_S = 0.004  # task i sleeps (ORDER_TASKS - i) steps: the first tasks finish last
LOCK_TASKS, LOCK_ROUNDS = 6, 4  # increments under the lock: 24, each with a sleep in the middle
FAILING_TASK = ORDER_TASKS - 1  # the last task: in a pool's slice, not the caller's


class ContractTaskError(ValueError):
    """The error a task raises on purpose (a module-level class: it pickles back from a pool)."""


# ---- tasks (module level: process pools pickle them by name) ------------------------------------


def slow_first(task: tuple[int, int]) -> int:
    """Sleeps longer the earlier it comes, then returns a value that identifies it."""
    index, total = task
    time.sleep(STEP_S * (total - index))
    return index * index + 1


def fail_at(task: tuple[int, int]) -> int:
    index, failing = task
    if index == failing:
        raise ContractTaskError(f"task {index} fails on purpose")
    return index


def write_row(task: tuple[np.ndarray, int]) -> int:
    rows, index = task
    rows[index] = index + 1.0
    return index


def locked_increments(task: tuple[np.ndarray, Any, int]) -> int:
    """Read, yield the CPU, write back: without exclusion, concurrent tasks lose increments."""
    counter, lock, rounds = task
    for _ in range(rounds):
        with lock:
            seen = int(counter[0])
            time.sleep(0.001)
            counter[0] = seen + 1
    return os.getpid()


# ---- strategy checks -----------------------------------------------------------------------------


class _Body:
    """A check's body as a workload, so that it runs where the strategy's `map` works: in the
    caller, or (an SPMD strategy, whose workers each run the workload) on every worker. A
    module-level class, so an SPMD strategy can send it to its workers."""

    def __init__(self, body: Callable[..., Any], *args: Any) -> None:
        self.body, self.args = body, args

    def __call__(self, config: Any, strategy: Any) -> Any:
        return self.body(strategy, *self.args)


def _inside(strategy: Any, body: Callable[..., Any], *args: Any) -> Any:
    return strategy.run_workload(_Body(body, *args), None)


def check_map_order(cls: type, workers: int = 2, **options: Any) -> None:
    with cls(workers, **options) as strategy:
        _inside(strategy, _map_order, cls, workers)


def _map_order(strategy: Any, cls: type, workers: int) -> None:
    for count in (ORDER_TASKS, 1, 0, max(1, workers - 1)):
        tasks = [(i, count) for i in range(count)]
        got = strategy.map(slow_first, tasks)
        want = [i * i + 1 for i in range(count)]
        assert got == want, (
            f"{_name(cls)}.map over {count} task(s) returned {got}, "
            f"expected {want} (results must come back in task order)"
        )
    assert strategy.submit(slow_first, (3, 4)).result() == 10, (
        f"{_name(cls)}.submit(fn, task).result() is not fn(task)"
    )


def check_exception_propagates(cls: type, workers: int = 2, **options: Any) -> None:
    with cls(workers, **options) as strategy:
        tasks = [(i, FAILING_TASK) for i in range(ORDER_TASKS)]
        try:
            _inside(strategy, _map_all, tasks)
        except ContractTaskError:
            pass
        except Exception as exc:  # noqa: BLE001  (the wrong type is the finding)
            raise AssertionError(
                f"{_name(cls)}.map: a task raised ContractTaskError but the "
                f"caller got {type(exc).__name__}: {exc}"
            ) from exc
        else:
            raise AssertionError(
                f"{_name(cls)}.map swallowed the ContractTaskError of task "
                f"{FAILING_TASK} (a task's exception must reach the caller)"
            )


def _map_all(strategy: Any, tasks: list[Any]) -> list[Any]:
    return strategy.map(fail_at, tasks)


def check_close(cls: type, workers: int = 2, **options: Any) -> None:
    strategy = cls(workers, **options)
    _inside(strategy, _one_task)
    strategy.close()
    strategy.close()  # a second close is a no-op, not an error
    assert strategy.closed, f"{_name(cls)}.closed is false after close()"
    for what, call in (
        ("map", lambda: strategy.map(slow_first, [(0, 1)])),
        ("submit", lambda: strategy.submit(slow_first, (0, 1))),
    ):
        try:
            call()
        except HarnessError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(
                f"{_name(cls)}.{what} after close raised {type(exc).__name__}, "
                "expected HarnessError"
            ) from exc
        raise AssertionError(
            f"{_name(cls)}.{what} after close() ran instead of raising HarnessError"
        )


def _one_task(strategy: Any) -> None:
    strategy.map(slow_first, [(0, 1)])


def check_shared_array(cls: type, workers: int = 2, **options: Any) -> None:
    with cls(workers, **options) as strategy:
        _inside(strategy, _shared_array, cls)


def _shared_array(strategy: Any, cls: type) -> None:
    rows = strategy.shared_array((ORDER_TASKS, 3))
    assert rows.shape == (ORDER_TASKS, 3) and not rows.any(), (
        f"{_name(cls)}.shared_array((7, 3)) is not a zeroed array of that shape"
    )
    strategy.map(write_row, [(rows, i) for i in range(ORDER_TASKS)])
    if cls.shares_memory:
        seen = rows[:, 0].tolist()
        want = [i + 1.0 for i in range(ORDER_TASKS)]
        assert seen == want, (
            f"{_name(cls)}: rows written by workers read {seen} in the "
            f"caller, expected {want} (shared_array must be shared)"
        )
    total = strategy.sum_rows(rows)
    want_total = float(sum(i + 1 for i in range(ORDER_TASKS)))
    assert total.tolist() == [want_total] * 3, (
        f"{_name(cls)}.sum_rows gave {total.tolist()}, expected {[want_total] * 3}"
    )


def check_lock_excludes(cls: type, workers: int = 2, **options: Any) -> None:
    with cls(workers, **options) as strategy:
        _inside(strategy, _lock_excludes, cls)


def _lock_excludes(strategy: Any, cls: type) -> None:
    counter = strategy.shared_array(1, np.int64)
    lock = strategy.lock()
    pids = strategy.map(locked_increments, [(counter, lock, LOCK_ROUNDS)] * LOCK_TASKS)
    # Ranks without shared memory (mpi) each count only the tasks that ran in their process.
    mine = LOCK_TASKS if cls.shares_memory else sum(pid == os.getpid() for pid in pids)
    want = mine * LOCK_ROUNDS
    assert int(counter[0]) == want, (
        f"{_name(cls)}.lock() does not exclude: {want} increments under the lock left the "
        f"counter at {int(counter[0])}"
    )


def check_bitwise_with_serial(
    cls: type, workers: int = 2, *, model: str = "tiny", **options: Any
) -> None:
    """A short real data-parallel run against serial: the same params_sha256 if the class claims
    `bitwise_deterministic`; else the same final loss to 1e-9 (relative)."""
    from harness.config import RunConfig
    from harness.workloads import get_workload
    from strategies.serial import Serial

    config = RunConfig(
        workload="data-parallel",
        model=model,
        steps=3,
        batch=64,
        microbatches=8,
        train_samples=256,
        test_samples=64,
        seed=11,
    )
    train = get_workload("data-parallel")
    with Serial(1) as serial:
        reference = serial.run_workload(train, config)
    with cls(workers, **options) as strategy:
        result = strategy.run_workload(train, config)
    if cls.bitwise_deterministic:
        assert result["params_sha256"] == reference["params_sha256"], (
            f"{_name(cls)} claims bitwise_deterministic but its data-parallel parameters differ "
            f"from serial's (final loss {result['final_loss']!r} vs {reference['final_loss']!r})"
        )
    else:
        assert np.isclose(result["final_loss"], reference["final_loss"], rtol=1e-9, atol=0), (
            f"{_name(cls)}: final loss {result['final_loss']!r} is not serial's "
            f"{reference['final_loss']!r}"
        )


STRATEGY_CHECKS: dict[str, StrategyCheck] = {
    "map_order": check_map_order,
    "exception_propagates": check_exception_propagates,
    "close": check_close,
    "shared_array": check_shared_array,
    "lock_excludes": check_lock_excludes,
    "bitwise_with_serial": check_bitwise_with_serial,
}


def check_strategy(
    cls: type, workers: int = 2, *, skip: tuple[str, ...] = (), **options: Any
) -> None:
    """Every strategy check but those named in `skip` (keys of STRATEGY_CHECKS)."""
    unknown = set(skip) - set(STRATEGY_CHECKS)
    if unknown:
        raise ValueError(f"skip={sorted(unknown)}: not checks; known: {', '.join(STRATEGY_CHECKS)}")
    for name, check in STRATEGY_CHECKS.items():
        if name not in skip:
            check(cls, workers, **options)


def _name(cls: type) -> str:
    return f"strategy {getattr(cls, 'name', cls.__name__)!r}"


# ---- model checks --------------------------------------------------------------------------------

ROWS = 6  # a small random problem: the finite differences stay cheap
MAX_COORDINATES = 80  # coordinates compared with finite differences (all of them if fewer)
STEP = 1e-6


def problem(model: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters (the seeded init, jittered so no parameter sits on a special value), inputs and
    labels of a small random problem."""
    rng = np.random.default_rng([seed, 0xC0DE])
    params = model.init(seed) + rng.standard_normal(model.size) * 0.05
    x = rng.standard_normal((ROWS, model.n_inputs))
    y = rng.integers(0, model.n_classes, ROWS)
    y[:2] = (0, model.n_classes - 1)  # both ends of the label range
    return params, x, y


def check_gradient(model: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """The summed gradient against central differences of the summed loss, coordinate by
    coordinate (a sample of coordinates, every segment represented, for big models)."""
    model = _model(model)
    params, x, y = problem(model)
    _, grad = model.loss_and_grad(params, x, y)
    grad = np.array(grad, dtype=np.float64)
    for i in _coordinates(model):
        bumped = params.copy()
        bumped[i] = params[i] + STEP
        up = model.loss_and_grad(bumped, x, y)[0]
        bumped[i] = params[i] - STEP
        down = model.loss_and_grad(bumped, x, y)[0]
        numeric = (up - down) / (2 * STEP)
        assert abs(numeric - grad[i]) <= atol + rtol * abs(numeric), (
            f"{_label(model)}: gradient[{i}] is {grad[i]!r} but central differences of the loss "
            f"give {numeric!r} (loss_and_grad must return the gradient of the SUMMED loss)"
        )


def _coordinates(model: Any) -> list[int]:
    if model.size <= MAX_COORDINATES:
        return list(range(model.size))
    rng = np.random.default_rng([model.size, 7])
    picked = {int(rng.integers(s.start, s.stop)) for s in model.segments() if s.stop > s.start}
    picked |= {0, model.size - 1}
    picked |= set(rng.choice(model.size, MAX_COORDINATES - len(picked), replace=False).tolist())
    return sorted(picked)


def check_sums(model: Any) -> None:
    """Loss and gradient of two halves of the rows add up to those of all the rows; the gradient
    goes into `out`; parameters and data are left as they were."""
    model = _model(model)
    params, x, y = problem(model, seed=1)
    before = (params.copy(), x.copy(), y.copy())
    out = np.full(model.size, np.nan)
    loss, grad = model.loss_and_grad(params, x, y, out=out)
    assert np.array_equal(out, grad), (
        f"{_label(model)}: loss_and_grad(..., out=buffer) did not "
        "write its gradient into the buffer"
    )
    for what, now, then in zip(("parameters", "inputs", "labels"), (params, x, y), before):
        assert np.array_equal(now, then), f"{_label(model)}: loss_and_grad changed its {what}"
    half = ROWS // 2
    loss_a, grad_a = model.loss_and_grad(params, x[:half], y[:half])
    grad_a = grad_a.copy()  # the model may reuse a buffer between calls
    loss_b, grad_b = model.loss_and_grad(params, x[half:], y[half:])
    assert np.isclose(loss_a + loss_b, loss, rtol=1e-10), (
        f"{_label(model)}: the losses of two halves add up to {loss_a + loss_b!r}, not the "
        f"whole's {loss!r} (loss_and_grad must return the SUM over the rows, not the mean)"
    )
    assert np.allclose(grad_a + grad_b, out, rtol=1e-10, atol=1e-12), (
        f"{_label(model)}: the gradients of two halves do not add up to the whole's "
        "(the gradient must be summed over the rows, not averaged)"
    )


def check_init(model: Any) -> None:
    model = _model(model)
    first, again, other = model.init(5), model.init(5), model.init(6)
    assert (
        isinstance(first, np.ndarray)
        and first.shape == (model.size,)
        and (first.dtype == np.float64)
    ), (
        f"{_label(model)}: init(seed) must be a flat float64 array "
        f"of size {model.size}, got {getattr(first, 'shape', first)}"
    )
    assert np.array_equal(first, again), f"{_label(model)}: init(5) differs between two calls"
    assert not np.array_equal(first, other), f"{_label(model)}: init(5) == init(6)"


def check_segments(model: Any) -> None:
    model = _model(model)
    segments = list(model.segments())
    assert segments, f"{_label(model)}: segments() is empty"
    end = 0
    for segment in segments:
        assert segment.step in (None, 1) and segment.start == end and segment.stop > end, (
            f"{_label(model)}: segments() {segments} must be contiguous, non-empty slices from 0 "
            "in order"
        )
        end = segment.stop
    assert end == model.size, (
        f"{_label(model)}: segments() end at {end}, the buffer has {model.size} parameters"
    )


def check_predictions(model: Any) -> None:
    model = _model(model)
    params, x, y = problem(model, seed=2)
    predicted = np.asarray(model.predict(params, x))
    assert (
        predicted.shape == (ROWS,) and ((predicted >= 0) & (predicted < model.n_classes)).all()
    ), (
        f"{_label(model)}: predict gave {predicted!r}, expected {ROWS} labels in "
        f"[0, {model.n_classes})"
    )
    accuracy = model.accuracy(params, x, y)
    assert np.isclose(accuracy, (predicted == y).mean()), (
        f"{_label(model)}: accuracy {accuracy!r} is not the share of predict() == y"
    )
    loss = model.loss_and_grad(params, x, y)[0]
    assert np.isclose(model.mean_loss(params, x, y), loss / ROWS, rtol=1e-12), (
        f"{_label(model)}: mean_loss is not the summed loss / rows"
    )
    json.dumps(model.describe())  # a result records it: it must be JSON


MODEL_CHECKS: dict[str, Callable[[Any], None]] = {
    "gradient": check_gradient,
    "sums": check_sums,
    "init": check_init,
    "segments": check_segments,
    "predictions": check_predictions,
}


def check_model(model: Any) -> None:
    """Every model check, on a model object or a `--model` text (e.g. "tiny")."""
    for check in MODEL_CHECKS.values():
        check(model)


def _model(model: Any) -> Any:
    """A model object: one given, or the one a registered plug-in builds from `--model` text."""
    from harness.models import Model, make_model

    model = make_model(model) if isinstance(model, str) else model
    assert isinstance(model, Model), (
        f"{model!r} lacks part of the Model protocol (harness.models.Model)"
    )
    return model


def _label(model: Any) -> str:
    return f"model {type(model).__name__}"

"""RunConfig validation: every bad value is refused with a message naming it and what is accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import HarnessError
from harness.config import RunConfig
from harness.model import MODEL_PRESETS, parse_widths


def test_defaults_are_valid() -> None:
    config = RunConfig()
    assert config.microbatch_size * config.microbatches == config.batch
    assert config.widths == MODEL_PRESETS["tiny"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"workers": 0}, "workers=0 must be an integer >= 1"),
        ({"steps": 0}, "steps=0 must be an integer >= 1"),
        ({"batch": 100, "microbatches": 7}, "microbatches=7 must divide batch=100"),
        ({"seed": -1}, "seed=-1 must be an integer >= 0"),
        ({"lr": float("inf")}, "lr=inf must be a finite number"),
        ({"lr": float("nan")}, "lr=nan must be a finite number"),
        ({"lr": 0.0}, "lr=0.0 must be > 0"),
        ({"momentum": 1.0}, "momentum=1.0 must be in [0, 1)"),
        (
            {"strategy": "processes", "start_method": "vfork"},
            "start_method='vfork' is not one of: fork, forkserver, spawn",
        ),
        (
            {"workload": "async-sgd", "policy": "optimistic"},
            "policy='optimistic' is not one of: lock, striped, hogwild",
        ),
        ({"model": "huge"}, "model='huge' is not a model any plug-in accepts; known: tiny, small"),
        ({"model": "64-0-10"}, "model='64-0-10' is not a model any plug-in accepts"),
        ({"workload": "nope"}, "unknown workload 'nope'; known: data-parallel, async-sgd, loader"),
        ({"strategy": "nope"}, "unknown strategy 'nope'; known: "),
        # an option of another plug-in, set away from its default, is refused (left alone, ignored)
        ({"stripes": 3}, "stripes=3 applies to workload 'async-sgd' only"),
        (
            {"start_method": "spawn"},
            "start_method='spawn' applies to strategy 'processes' or strategy 'spmd' only",
        ),
        ({"threads_per_rank": 2}, "threads_per_rank=2 applies to strategy 'mpi' only"),
        ({"no_such_option": 1}, "no_such_option=1 is not an option of any plug-in; known: "),
        (
            {"train_samples": 8, "batch": 16, "microbatches": 2},
            "train_samples=8 must be >= batch=16",
        ),
        ({"workload": "async-sgd", "stripes": 0}, "stripes=0 must be an integer >= 1"),
        ({"workload": "async-sgd", "stripes": 10**9}, "stripes=1000000000 is more than the 2410"),
    ],
)
def test_bad_values_are_named(kwargs: dict, fragment: str) -> None:
    with pytest.raises(HarnessError) as info:
        RunConfig(**kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@given(batch=st.integers(1, 512), microbatches=st.integers(1, 64))
def test_microbatches_must_divide_batch(batch: int, microbatches: int) -> None:
    if batch % microbatches == 0:
        assert RunConfig(batch=batch, microbatches=microbatches, train_samples=max(batch, 1))
    else:
        with pytest.raises(HarnessError, match="must divide"):
            RunConfig(batch=batch, microbatches=microbatches, train_samples=max(batch, 1))


@pytest.mark.parametrize("workload", ["async-sgd", "loader"])
def test_workloads_without_microbatches_take_any_batch(workload: str) -> None:
    assert RunConfig(workload=workload, batch=100).batch == 100
    with pytest.raises(HarnessError, match="microbatches=16 must divide batch=100"):
        RunConfig(workload="data-parallel", batch=100)


@given(st.lists(st.integers(1, 50), min_size=2, max_size=5))
def test_explicit_widths_round_trip(widths: list[int]) -> None:
    text = "-".join(map(str, widths))
    if widths[-1] < 2:
        with pytest.raises(HarnessError):
            parse_widths(text)
    else:
        assert parse_widths(text) == tuple(widths)


def test_config_is_frozen() -> None:
    config = RunConfig()
    with pytest.raises(AttributeError):
        config.workers = 3  # type: ignore[misc]


def test_a_huge_batch_is_refused_at_once() -> None:
    """The "must divide" message is built in O(1): a divisor search over 10**12 never ends."""
    with pytest.raises(
        HarnessError,
        match=r"microbatches=16 must divide batch=1000000000001: "
        r"e\.g\. --batch 1000000000000 or 1000000000016",
    ):
        RunConfig(batch=10**12 + 1, train_samples=10**13)


def test_plugin_options_read_like_fields_and_default_where_not_given() -> None:
    config = RunConfig(workload="async-sgd", policy="striped")
    assert (config.policy, config.updates, config.probe) == ("striped", 100, False)
    assert config.as_dict()["policy"] == "striped"
    assert config.changed() == {"workload": "async-sgd", "policy": "striped"}
    with pytest.raises(AttributeError, match="'steps' is not an option of workload 'async-sgd'"):
        _ = config.steps
    assert RunConfig(**config.as_dict()) == config  # as_dict round-trips
    # left at its default, another plug-in's option is accepted and dropped (a preset may carry it)
    assert not hasattr(RunConfig(stripes=None), "stripes")

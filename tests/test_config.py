"""RunConfig validation: every bad value is refused with a message naming it and what is accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import HarnessError
from harness.config import MODEL_PRESETS, RunConfig, parse_widths


def test_defaults_are_valid() -> None:
    config = RunConfig()
    assert config.microbatch_size * config.microbatches == config.batch
    assert config.widths == MODEL_PRESETS["tiny"]


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"workers": 0}, "workers=0 must be an integer >= 1"),
    ({"steps": 0}, "steps=0 must be an integer >= 1"),
    ({"batch": 100, "microbatches": 7}, "microbatches=7 must divide batch=100"),
    ({"seed": -1}, "seed=-1 must be >= 0"),
    ({"lr": 0.0}, "lr=0.0 must be > 0"),
    ({"momentum": 1.0}, "momentum=1.0 must be in [0, 1)"),
    ({"start_method": "vfork"}, "start_method='vfork' is not one of: fork, forkserver, spawn"),
    ({"policy": "optimistic"}, "policy='optimistic' is not one of: lock, striped, hogwild"),
    ({"model": "huge"}, "model='huge' is not a preset"),
    ({"model": "64-0-10"}, "model='64-0-10' is not a preset"),
    ({"train_samples": 8, "batch": 16, "microbatches": 2}, "train_samples=8 must be >= batch=16"),
    ({"stripes": 0}, "stripes=0 must be >= 1"),
])
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

"""Properties of the data pipeline on every strategy and worker count: ordered delivery is exactly
the serial sequence (with either augment), unordered delivery is a permutation of it, each sample
appears once per epoch, the in-flight bound holds, and a damaged shard fails fast with its name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import HarnessError
from harness.data.pipeline import LoadBatch, PipelineStats, Source, epoch_tasks, open_source, stream
from harness.data.shards import make_shards
from strategies import create
from strategies.base import Strategy

# Every strategy, and several worker counts, each started once for the whole module.
CELLS = [
    ("serial", 1),
    ("threads", 1),
    ("threads", 2),
    ("threads", 3),
    ("asyncio", 2),
    ("blas", 2),
    ("processes", 1),
    ("processes", 2),
]
SETS = {
    "8x5": dict(samples=50, shape=(8, 5), shard_size=16),
    "4x4": dict(samples=29, shape=(4, 4), shard_size=4),
}
Delivered = list[
    tuple[int, int, bytes, tuple[int, ...]]
]  # (epoch, index, digest, samples) per batch


@pytest.fixture(scope="module")
def opened() -> Iterator[dict[tuple[str, int], Strategy]]:
    cells = {cell: create(*cell) for cell in CELLS}
    yield cells
    for strategy in cells.values():
        strategy.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("sets")
    for name, options in SETS.items():
        make_shards(root / name, classes=3, seed=1, **options)
    return {name: open_source(str(root / name)) for name in SETS}


def deliver(
    strategy: Strategy,
    source: Source,
    *,
    batch: int,
    epochs: int,
    bound: int,
    augment: str,
    seed: int,
    ordered: bool = True,
) -> tuple[Delivered, PipelineStats]:
    stats = PipelineStats(bound)
    tasks = epoch_tasks(source.samples, batch, seed, epochs)
    with closing(
        stream(
            strategy,
            LoadBatch(source, augment, seed),
            tasks,
            bound=bound,
            ordered=ordered,
            stats=stats,
        )
    ) as batches:
        delivered = [(b.epoch, b.index, b.digest(), tuple(b.samples.tolist())) for b in batches]
    return delivered, stats


RUNS = dict(
    set_name=st.sampled_from(sorted(SETS)),
    batch=st.integers(3, 12),
    epochs=st.integers(1, 2),
    prefetch=st.integers(1, 3),
    augment=st.sampled_from(["numpy", "python"]),
    seed=st.integers(0, 2**31),
)


@given(**RUNS)
def test_ordered_is_serial_and_unordered_a_permutation_on_every_strategy(
    opened: dict[tuple[str, int], Strategy],
    sources: dict[str, Source],
    set_name: str,
    batch: int,
    epochs: int,
    prefetch: int,
    augment: str,
    seed: int,
) -> None:
    source = sources[set_name]
    # The reference: serial, vectorised augment. Every cell runs the drawn augment against it.
    reference, _ = deliver(
        opened["serial", 1], source, batch=batch, epochs=epochs, bound=1, augment="numpy", seed=seed
    )
    assert_each_sample_once_per_epoch(reference, source.samples, epochs)
    for (name, workers), strategy in opened.items():
        bound = prefetch * workers
        ordered, stats = deliver(
            strategy, source, batch=batch, epochs=epochs, bound=bound, augment=augment, seed=seed
        )
        assert ordered == reference, (name, workers)
        assert stats.peak_in_flight == min(bound, len(reference)), (name, workers)
        unordered, stats = deliver(
            strategy,
            source,
            batch=batch,
            epochs=epochs,
            bound=bound,
            augment=augment,
            seed=seed,
            ordered=False,
        )
        assert sorted(unordered) == sorted(reference), (name, workers)
        assert stats.peak_in_flight <= bound


def assert_each_sample_once_per_epoch(delivered: Delivered, samples: int, epochs: int) -> None:
    for epoch in range(epochs):
        seen = [s for e, _, _, batch in delivered if e == epoch for s in batch]
        assert sorted(seen) == list(range(samples))


def damage(path: Path, how: str) -> None:
    if how == "corrupted":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size - 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["corrupted", "truncated after opening"])
@pytest.mark.parametrize("ordered", [True, False])
def test_damaged_shard_fails_fast_with_its_name_on_every_strategy(
    opened: dict[tuple[str, int], Strategy], tmp_path: Path, how: str, ordered: bool
) -> None:
    make_shards(tmp_path / "set", samples=40, shape=(4, 4), classes=3, seed=2, shard_size=8)
    source = open_source(str(tmp_path / "set"))  # sizes are checked here; damage comes after
    damage(tmp_path / "set" / "shard-00002.images.u8", how)
    bad = set(range(16, 24))  # the samples of shard 2
    for cell, strategy in opened.items():
        got: list[tuple[int, ...]] = []
        with pytest.raises(
            HarnessError, match=r"shard .*shard-00002\.images\.u8 is (corrupted|truncated)"
        ):
            tasks = epoch_tasks(40, 5, 0, 1)
            for batch in stream(
                strategy, LoadBatch(source, "numpy", 0), tasks, bound=2, ordered=ordered
            ):
                got.append(tuple(batch.samples.tolist()))
        assert not bad & {s for b in got for s in b}, (
            cell
        )  # no batch holding a damaged sample got out
        assert all(len(b) == 5 for b in got), cell  # and none came out short

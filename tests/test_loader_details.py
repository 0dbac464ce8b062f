"""Details of the data sources, the batch digest, the peak-memory sampler and the workload
registry that the pipeline tests pass through without looking at (mutation-testing survivors)."""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness import HarnessError
from harness.data.pipeline import IDX_NAMES, batches_digest, open_source
from harness.data.synthetic import write_idx
from harness.workloads import DESCRIPTIONS, WORKLOADS, workload
from harness.workloads.loader import PeakRss
from strategies import create

MB = 2**20


def test_idx_source_reports_image_shape_and_classes(tmp_path: Path) -> None:
    images = np.arange(5 * 3 * 7, dtype=np.uint8).reshape(5, 3, 7)  # not square: H and W differ
    write_idx(tmp_path / IDX_NAMES[0], images)
    write_idx(tmp_path / IDX_NAMES[1], np.array([0, 6, 2, 1, 3], dtype=np.uint8))
    source = open_source(f"idx:{tmp_path}")
    assert (source.samples, source.shape, source.classes) == (5, (3, 7), 7)


def test_an_uncompressed_idx_file_wins_over_its_gz_twin(tmp_path: Path) -> None:
    write_idx(tmp_path / IDX_NAMES[0], np.zeros((4, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / IDX_NAMES[1], np.zeros(4, dtype=np.uint8))
    other = tmp_path / "other"
    other.mkdir()
    write_idx(other / IDX_NAMES[0], np.ones((9, 2, 2), dtype=np.uint8))
    gz = gzip.compress((other / IDX_NAMES[0]).read_bytes())  # 9 samples: must not be read
    (tmp_path / f"{IDX_NAMES[0]}.gz").write_bytes(gz)
    assert open_source(f"idx:{tmp_path}").samples == 4


def test_a_missing_idx_pair_names_both_expected_files(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as info:
        open_source(f"idx:{tmp_path}")
    message = str(info.value)
    assert f"a folder with {IDX_NAMES[0]}[.gz] and {IDX_NAMES[1]}[.gz]" in message
    assert message.endswith(f"found {tmp_path / IDX_NAMES[0]}, {tmp_path / IDX_NAMES[1]}")


def test_batches_digest_is_the_sha256_of_the_joined_digests() -> None:
    parts = [hashlib.sha256(bytes([i])).digest() for i in (3, 1, 2)]
    assert batches_digest(parts, ordered=True) == hashlib.sha256(b"".join(parts)).hexdigest()
    unordered = hashlib.sha256(b"".join(sorted(parts))).hexdigest()
    assert batches_digest(parts, ordered=False) == unordered


# ---- peak memory ---------------------------------------------------------------------------------


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


def test_peak_rss_counts_this_process_and_every_worker_process() -> None:
    """Process workers (under forkserver, grandchildren) each hold tens of MB: all are counted."""
    with create("processes", 2, start_method="forkserver") as strategy:
        strategy.map(abs, range(8))  # the workers are up
        me = psutil.Process()
        every = me.children(recursive=True)
        nested_mb = sum(rss_mb(p) for p in set(every) - set(me.children()))
        expected = rss_mb(me) + sum(rss_mb(p) for p in every)
        with PeakRss() as rss:
            pass
    assert nested_mb > 10  # the workers, below the fork server
    assert expected - nested_mb / 2 < rss.peak_mb < 2 * expected


@pytest.mark.timeout(60)
def test_peak_rss_samples_while_the_block_runs() -> None:
    """Memory held only in the middle of the block is seen by the sampling thread (polled: no
    timing assumed; a sampler that never samples fails through the timeout below)."""
    with PeakRss() as rss:
        before = rss.peak_mb
        held = np.ones(64 * MB // 8)  # 64 MB, touched
        deadline = time.monotonic() + 20
        while rss.peak_mb < before + 48 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = rss.peak_mb
        del held
    assert seen >= before + 48


# ---- the workload registry -----------------------------------------------------------------------


def test_workload_decorator_registers_once_and_refuses_a_second_name() -> None:
    def extra(config: object, strategy: object) -> dict:
        return {}

    try:
        assert workload("extra-for-test", "a test workload")(extra) is extra
        assert WORKLOADS["extra-for-test"].run is extra
        assert DESCRIPTIONS["extra-for-test"] == "a test workload"
        with pytest.raises(HarnessError, match="workload 'extra-for-test' is registered twice"):
            workload("extra-for-test", "again")(extra)
    finally:
        WORKLOADS.pop("extra-for-test", None)
        DESCRIPTIONS.pop("extra-for-test", None)


def test_waiting_for_none_of_no_futures_returns_at_once() -> None:
    """The loader asks to wait for the batches still running; when the last one ended between
    its look and the wait, the list is empty. A wait that polled for one of them to end spun
    forever then (CI: a loader property test on cp313t ran until killed)."""
    import threading

    from harness.data.pipeline import _wait_any

    waiter = threading.Thread(target=_wait_any, args=([],), daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert not waiter.is_alive()

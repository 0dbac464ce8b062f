"""harness.mpi.segments on real files and a real mapping: only this job's orphans are removed."""

from __future__ import annotations

import mmap
import os
import threading
import time
from pathlib import Path

from harness.mpi.segments import mapped_files, remove_orphaned_segments, unlink_own_segments


def test_only_fresh_unmapped_mpich_segments_are_removed(tmp_path: Path) -> None:
    since = time.time()
    old, orphan, live, other = (
        tmp_path / name
        for name in ("mpich_shm_old_0", "mpich_shm_orphan_0", "mpich_shm_live_0", "sem.mp-other")
    )
    for path in (old, orphan, live, other):
        path.write_bytes(b"\0" * mmap.PAGESIZE)
    os.utime(old, (since - 3600, since - 3600))  # an earlier job's: not ours to judge
    with live.open("r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapping:
        assert str(live) in mapped_files()  # a job still running maps its segment
        removed = remove_orphaned_segments(since, shm=tmp_path)
        mapping[0] = 1
    assert removed == [orphan.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (old, live, other))


def test_without_a_shared_memory_folder_nothing_happens(tmp_path: Path) -> None:
    assert remove_orphaned_segments(time.time(), shm=tmp_path / "absent") == []


def test_a_rank_unlinks_the_segments_it_maps_and_nothing_else(tmp_path: Path) -> None:
    mine, other = tmp_path / "mpich_shm_mine_0", tmp_path / "mpich_shm_other_0"
    for path in (mine, other):
        path.write_bytes(b"\0" * mmap.PAGESIZE)
    with mine.open("r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapping:
        assert unlink_own_segments(shm=tmp_path) == [mine.name]
        mapping[0] = 1  # the mapping outlives the name, as the other ranks' do
    assert [p.name for p in tmp_path.iterdir()] == [other.name]


def test_the_wait_outlasts_a_segment_still_mapped_after_another_was_removed(tmp_path: Path) -> None:
    """Two orphans, one still mapped for a while (a rank going slowly): both must go."""
    since, (free, held) = (
        time.time(),
        (tmp_path / "mpich_shm_free_0", tmp_path / "mpich_shm_held_0"),
    )
    for path in (free, held):
        path.write_bytes(b"\0" * mmap.PAGESIZE)
    handle = held.open("r+b")
    mapping = mmap.mmap(handle.fileno(), 0)
    release = threading.Timer(0.5, lambda: (mapping.close(), handle.close()))
    release.start()
    removed = remove_orphaned_segments(since, shm=tmp_path, wait=10.0)
    release.join()
    assert sorted(removed) == [free.name, held.name] and not list(tmp_path.iterdir())

"""Shared-memory segments an aborted MPICH job leaves behind on this host, and their removal.

MPICH's ranks on one host talk through a POSIX shared-memory segment, `/dev/shm/mpich_shm_*`.
A job that ends normally unlinks it; one ended by MPI_Abort (a rank raised) or by killed ranks
does not, and each such job would leave a few MB of RAM allocated until reboot. So a rank that
is about to abort or kill itself unlinks the segments it maps (`unlink_own_segments`: on every
host, also under a user's own mpiexec), and the launcher, after a failed job, removes what is
left on its host (`remove_orphaned_segments`: a rank that died by a signal): segments created
since the job started, owned by this user and mapped by no live process, so a segment another
job is still using is never touched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SHM = Path("/dev/shm")
SEGMENTS = "mpich_shm_*"


def remove_orphaned_segments(since: float, shm: Path = SHM, wait: float = 0.0) -> list[str]:
    """Unlink this user's MPICH segments created at or after `since` (a time.time()) that no
    process maps, looking again for up to `wait` seconds while some are still mapped (an aborted
    job's ranks may take a moment to go after mpiexec); returns the names removed."""
    if not shm.is_dir():
        return []  # no POSIX shared memory as files here (macOS): nothing to look at
    deadline, removed = time.monotonic() + wait, []
    while fresh := [path for path in shm.glob(SEGMENTS) if _ours_since(path, since)]:
        mapped = mapped_files()
        for path in (path for path in fresh if str(path) not in mapped):
            path.unlink(missing_ok=True)
            removed.append(path.name)
        if all(str(path) not in mapped for path in fresh) or time.monotonic() >= deadline:
            break  # every fresh one was free (and is gone), or no more time to wait
        time.sleep(0.1)
    return removed


def unlink_own_segments(shm: Path = SHM, maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Unlink the MPICH segments this process maps: a rank about to abort or kill itself calls
    this, since MPICH will not. Safe for the job's other ranks: their mappings stay valid, only
    the name goes. Works on every host and under a user's own mpiexec, as the launcher cannot."""
    removed = []
    for name in sorted(mapped_in(maps)):  # empty without /proc (macOS): nothing known to clean
        path = Path(name)
        if path.parent == shm and path.match(
            SEGMENTS
        ):  # "(deleted)" ones do not match: already gone
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _ours_since(path: Path, since: float) -> bool:
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    return found.st_uid == os.getuid() and found.st_mtime >= since - 1.0  # set when MPICH sizes it


def mapped_files() -> set[str]:
    """Every file some process has mapped, as /proc/PID/maps names it (unreadable ones skipped:
    another user's processes, or one that just ended)."""
    return set().union(*(mapped_in(maps) for maps in Path("/proc").glob("[0-9]*/maps")))


def mapped_in(maps: Path) -> set[str]:
    """The files one /proc/PID/maps lists (its sixth field); none where it cannot be read."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return set()
    return {fields[5] for fields in (line.split(maxsplit=5) for line in lines) if len(fields) == 6}

"""Output paths checked before any work, and files written atomically.

A write goes to a hidden temporary file in the target's own folder (so the rename cannot cross a
file system), is fsync'd, renamed over the target, and the folder is fsync'd: a reader sees the
old file or the new one, never half of one, and a crash leaves no file that looks complete. The
temporary file is removed on every way out, an interrupt included. A failed write (full disk,
file-size limit, read-only folder) is one HarnessError naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import HarnessError

DAY_S = 24 * 3600


def temp_path(target: Path, tag: str = "tmp") -> Path:
    """A hidden sibling named after the target and this process: `.NAME.<pid>.tmp`."""
    return target.with_name(f".{target.name}.{os.getpid()}.{tag}")


def write_with(target: Path, write: Callable[[Path], None]) -> None:
    """Atomically replace `target` by what `write(temp)` writes to a temporary path."""
    temp = temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(temp)
        sync_file(temp)
        os.replace(temp, target)
        sync_folder(target.parent)
    except OSError as exc:
        raise HarnessError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)  # gone after a successful rename


def write_bytes(target: Path, data: bytes) -> None:
    write_with(target, lambda temp: temp.write_bytes(data))


def sync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sync_folder(path: Path) -> None:
    """A rename or a new file is durable only once its folder is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- checks before any work ---------------------------------------------------------------------


def nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def check_writable_parent(path: Path, option: str) -> None:
    """Where `path` would be created: its nearest existing ancestor is a folder we may write."""
    base = nearest_existing(path.parent)
    if not base.is_dir():
        raise HarnessError(f"{option} {path}: {base} is a file, so nothing can be created under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise HarnessError(f"{option} {path}: no permission to write in {base}")


def check_output_file(path: Path, option: str) -> None:
    """A file the command will (re)write at the end: not a folder, and its folder writable."""
    if path.name in ("", ".", ".."):
        raise HarnessError(f"{option} {str(path)!r} names a folder; give a file name")
    if path.is_dir():
        raise HarnessError(
            f"{option} {path} is a folder; give a file name (e.g. {path / 'raw.json'})"
        )
    check_writable_parent(path, option)


def check_output_folder(path: Path, option: str) -> None:
    """A folder the command will fill: an existing writable folder, or creatable."""
    if path.exists():
        if not path.is_dir():
            raise HarnessError(f"{option} {path} is a file; give a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise HarnessError(f"{option} {path}: no permission to write in it")
        return
    check_writable_parent(path, option)


# ---- leftovers of killed processes ---------------------------------------------------------------


def reap(path: Path, why: str) -> None:
    """Remove a leftover of a killed run, saying so on stderr (it may be hundreds of MB)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    print(f"note: removed {path}, {why}", file=sys.stderr)


def older_than_a_day(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > DAY_S
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True

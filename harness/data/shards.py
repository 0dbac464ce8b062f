"""On-disk sample sets: `data make` writes shards of raw uint8 and a manifest; readers check them.

A set is a folder of shard files (images: raw uint8 (k, H, W); labels: raw uint8 (k,)) and a
`manifest.json` naming each file with its size and sha256. `data make` builds the folder under a
temporary name next to the target and renames it into place only once everything is written and
synced, so an interrupted run leaves no folder that looks complete; the manifest is the seal.

Readers check sizes when a set is opened (cheap: a missing or truncated shard fails before any
worker starts) and each shard's sha256 the first time a process maps it (so the check runs in the
workers, in parallel, and corrupted bytes are never delivered).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from harness import HarnessError
from harness.atomic import check_output_folder, older_than_a_day, reap, sync_folder
from harness.memory import FLOAT, require_disk, require_memory
from harness.seeding import Domain, rng_for

MANIFEST = "manifest.json"
PARTIAL = re.compile(r"\..+\.partial-[0-9a-f]{8}")  # a set being made (see make_shards)
SHARD_FILE = re.compile(r"shard-\d{5,}\.(images|labels)\.u8|manifest\.json")
FORMAT = "ft-harness-shards"
VERSION = 1
TEMPLATE_DOMAIN = Domain.TEMPLATE
SAMPLE_DOMAIN = Domain.SAMPLE
CHUNK = 256  # samples drawn per key: the content does not depend on --shard-size
BLOBS = 3  # Gaussian blobs per class template


@dataclass(frozen=True)
class ShardFile:
    """One file of a shard as the manifest records it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Shard:
    images: ShardFile
    labels: ShardFile
    samples: int


@dataclass(frozen=True)
class ShardSet:
    """An opened, size-checked set; small and picklable, so it travels to worker processes."""

    root: str
    shape: tuple[int, int]
    classes: int
    shard_size: int
    shards: tuple[Shard, ...]

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (n, H, W) and int64 labels of the given sample indices, in that order."""
        images = np.empty((len(indices), *self.shape), dtype=np.uint8)
        labels = np.empty(len(indices), dtype=np.int64)
        where, offset = np.divmod(np.asarray(indices, dtype=np.int64), self.shard_size)
        for s in np.unique(where):
            rows = where == s
            mapped_images, mapped_labels = self._mapped(int(s))
            images[rows] = mapped_images[offset[rows]]
            labels[rows] = mapped_labels[offset[rows]]
        return images, labels

    def _mapped(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        shard, root = self.shards[index], Path(self.root)
        images = mapped(root / shard.images.name, shard.images.size, shard.images.sha256)
        labels = mapped(root / shard.labels.name, shard.labels.size, shard.labels.sha256)
        if labels.size and int(labels.max()) >= self.classes:  # a lying `classes`: IndexError later
            raise HarnessError(
                f"shard {root / shard.labels.name} holds label {int(labels.max())}, "
                f"but {root / MANIFEST} says classes={self.classes}"
            )
        return images.reshape(shard.samples, *self.shape), labels


def mapped(path: Path, size: int, sha256: str) -> np.ndarray:
    """The file as a read-only uint8 memory map, checked against its manifest entry once per process.

    Keyed by the file's identity too (inode, size, mtime), so a file rewritten in place is checked again.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise HarnessError(f"shard {path}: cannot read it ({exc.strerror or exc})") from exc
    return _mapped_checked(path, size, sha256, (stat.st_ino, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=512)
def _mapped_checked(
    path: Path, size: int, sha256: str, identity: tuple[int, int, int]
) -> np.ndarray:
    check_size(path, size)
    digest = file_sha256(path)
    if digest != sha256:
        raise HarnessError(
            f"shard {path} is corrupted: sha256 {digest[:16]}… but the manifest "
            f"says {sha256[:16]}…; make the set again with `data make`"
        )
    return (
        np.memmap(path, dtype=np.uint8, mode="r", shape=(size,)) if size else np.empty(0, np.uint8)
    )


def check_size(path: Path, size: int) -> None:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise HarnessError(f"shard {path} is missing (the manifest lists it)") from None
    except OSError as exc:
        raise HarnessError(f"shard {path}: cannot read it ({exc.strerror or exc})") from exc
    if actual != size:
        what = "truncated" if actual < size else "too long"
        raise HarnessError(f"shard {path} is {what}: {actual} bytes, the manifest says {size}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---- opening ---------------------------------------------------------------------------------


def open_shards(root: str | Path) -> ShardSet:
    """Read and validate the manifest of a `data make` folder and check every file's size."""
    root = Path(root)
    manifest = Fields(root / MANIFEST, read_manifest(root))
    found = ShardSet(
        str(root),
        manifest.shape("shape"),
        manifest.integer("classes", 2, 256),
        manifest.integer("shard_size", 1),
        tuple(_shard(manifest, i) for i in range(manifest.count("shards"))),
    )
    _check_layout(found, manifest.integer("samples", 1))
    for shard in found.shards:
        for file in (shard.images, shard.labels):
            _check_confined(root, file.name)
            check_size(root / file.name, file.size)
    return found


def _check_confined(root: Path, name: str) -> None:
    """A shard is a file of the set's own folder, also after symlinks are followed."""
    real = Path(os.path.realpath(root / name))
    if real.parent != Path(os.path.realpath(root)):
        raise HarnessError(f"{root / MANIFEST}: shard {name} leads to {real}, outside {root}")


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise HarnessError(
            f"data folder {root} does not exist or is not a folder; make one with `python -m harness data make`"
        )
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(
            f"{root} has no {MANIFEST}: not a complete `data make` folder "
            "(an interrupted one never gets a manifest)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise HarnessError(f"{path} is unreadable ({exc})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("version") != VERSION
    ):
        raise HarnessError(f"{path} is not a {FORMAT} version {VERSION} manifest")
    return manifest


class Fields:
    """Typed reads of a manifest's fields by dotted name; any bad value is one HarnessError
    naming the file, the field and what is accepted (a damaged file never reaches NumPy)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path, self.manifest = path, manifest

    def get(self, name: str) -> Any:
        value: Any = self.manifest
        for key in name.split("."):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                self.fail(name, "is missing", None)
        return value

    def fail(self, name: str, problem: str, value: Any) -> NoReturn:
        shown = "" if problem == "is missing" else f" = {_short(value)}"
        raise HarnessError(f"{self.path} is malformed: {name}{shown} {problem}")

    def integer(self, name: str, least: int, most: int | None = None) -> int:
        value = self.get(name)  # bool is an int to Python, not to a manifest
        if type(value) is not int or value < least or (most is not None and value > most):
            bound = f">= {least}" if most is None else f"in [{least}, {most}]"
            self.fail(name, f"must be an integer {bound}", value)
        return value

    def shape(self, name: str) -> tuple[int, int]:
        value = self.get(name)
        if not isinstance(value, list) or len(value) != 2:
            self.fail(name, "must be [height, width]", value)
        return self.integer(f"{name}.0", 1), self.integer(f"{name}.1", 1)

    def count(self, name: str) -> int:
        value = self.get(name)
        if not isinstance(value, list) or not value:
            self.fail(name, "must be a non-empty list", value)
        return len(value)

    def file_name(self, name: str) -> str:
        """A plain name inside the set's folder: no separator, no `..`, no absolute path."""
        value = self.get(name)
        if (
            not isinstance(value, str)
            or value in ("", ".", "..")
            or "/" in value
            or "\\" in value
            or "\0" in value
        ):
            self.fail(name, "must be a file name inside the set's folder", value)
        return value

    def sha256(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
            self.fail(name, "must be 64 lowercase hex digits", value)
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shard(manifest: Fields, index: int) -> Shard:
    prefix = f"shards.{index}"
    files = [
        ShardFile(
            manifest.file_name(f"{prefix}.{k}.name"),
            manifest.integer(f"{prefix}.{k}.size", 0),
            manifest.sha256(f"{prefix}.{k}.sha256"),
        )
        for k in ("images", "labels")
    ]
    return Shard(files[0], files[1], manifest.integer(f"{prefix}.samples", 1))


def _check_layout(found: ShardSet, samples: int) -> None:
    """Every shard but the last holds shard_size samples: reading relies on it."""
    pixels = found.shape[0] * found.shape[1]
    for i, shard in enumerate(found.shards):
        full = shard.samples == found.shard_size or (
            i == len(found.shards) - 1 and 0 < shard.samples
        )
        if (
            not full
            or shard.images.size != shard.samples * pixels
            or shard.labels.size != shard.samples
        ):
            raise HarnessError(
                f"{Path(found.root) / MANIFEST}: shard {i} ({shard.images.name}) does not "
                f"match shard_size={found.shard_size} and shape={found.shape}"
            )
    if found.samples != samples:
        raise HarnessError(
            f"{Path(found.root) / MANIFEST}: shards hold {found.samples} samples, "
            f"the manifest says {samples}"
        )


# ---- making ----------------------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, int]:
    try:
        height, width = (int(n) for n in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height < 4 or width < 4:
        raise HarnessError(f"shape={text!r} must look like 28x28 (height x width, each >= 4)")
    return height, width


def make_shards(
    root: str | Path,
    *,
    samples: int,
    shape: tuple[int, int],
    classes: int,
    seed: int,
    shard_size: int,
) -> dict[str, Any]:
    """Write a set atomically: a temporary sibling folder, fsync'd, then renamed to `root`."""
    root = Path(os.path.abspath(root))  # `.` or `` would name no sibling to build in
    _check_make(root, samples, shape, classes, seed, shard_size)
    reap_partials(root.parent)
    temp = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:8]}"
    temp.mkdir(parents=True)
    try:
        shards = _write_shards(temp, samples, shape, classes, seed, shard_size)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "samples": samples,
            "shape": list(shape),
            "classes": classes,
            "seed": seed,
            "shard_size": shard_size,
            "dtype": "uint8",
            "shards": shards,
        }
        _write_synced(temp / MANIFEST, json.dumps(manifest, indent=1).encode())  # last: the seal
        sync_folder(temp)
        _rename_into_place(temp, root)
    except OSError as exc:  # full disk, file-size limit, permissions: the set is not made
        raise HarnessError(f"cannot write the set in {root}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # gone after a successful rename
    return manifest


def _check_make(
    root: Path, samples: int, shape: tuple[int, int], classes: int, seed: int, shard_size: int
) -> None:
    """Every option, the output folder and the memory and disk the set needs: before any work."""
    for name, value, least in (
        ("samples", samples, 1),
        ("shard_size", shard_size, 1),
        ("seed", seed, 0),
    ):
        if value < least:
            raise HarnessError(f"{name}={value} must be >= {least}")
    if not 2 <= classes <= 256:
        raise HarnessError(f"{classes=} must be in [2, 256] (labels are stored as uint8)")
    if root == Path.cwd():
        raise HarnessError(f"--dir {root} is the current folder; give the set a folder of its own")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise HarnessError(
            f"{root} already exists and is not an empty folder; remove it or pick another --dir"
        )
    check_output_folder(root.parent, "--dir")
    pixels = shape[0] * shape[1]
    require_memory(
        {
            "class templates": 3 * FLOAT * BLOBS * classes * pixels,
            "chunks": 4 * FLOAT * CHUNK * pixels,
            "one shard": 2 * min(samples, shard_size) * (pixels + 1),
        },
        "lower --shape, --classes or --shard-size",
    )
    require_disk(
        root.parent, samples * (pixels + 1), "lower --samples or --shape, or pick another --dir"
    )


def _rename_into_place(temp: Path, root: Path) -> None:
    """rename(2) replaces an empty folder and fails on one with files: a concurrent `data make`
    that finished first keeps its set, and this one says so."""
    try:
        os.rename(temp, root)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise HarnessError(
                f"{root} was filled while this set was being made (another "
                "`data make`?); it is left as it is"
            ) from None
        raise
    sync_folder(root.parent)


def reap_partials(folder: Path) -> None:
    """Remove what a killed `data make` left in `folder`: a `.NAME.partial-XXXXXXXX` folder older
    than a day holding only shard files (an interrupt cleans up; SIGKILL cannot)."""
    for path in folder.glob(".*.partial-*"):
        if (
            PARTIAL.fullmatch(path.name)
            and path.is_dir()
            and older_than_a_day(path)
            and all(SHARD_FILE.fullmatch(p.name) for p in path.iterdir())
        ):
            reap(path, "left more than a day ago by a `data make` that was killed")


def _write_shards(
    temp: Path, samples: int, shape: tuple[int, int], classes: int, seed: int, shard_size: int
) -> list[dict[str, Any]]:
    entries = []
    shards = _regroup(_sample_chunks(samples, shape, classes, seed), shard_size)
    for index, (images, labels) in enumerate(shards):
        entries.append(
            {
                "samples": len(labels),
                "images": _write_file(temp / f"shard-{index:05d}.images.u8", images),
                "labels": _write_file(temp / f"shard-{index:05d}.labels.u8", labels),
            }
        )
    return entries


def _write_file(path: Path, array: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    _write_synced(path, data)
    return {"name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


Chunk = tuple[np.ndarray, np.ndarray]


def _regroup(chunks: Iterator[Chunk], size: int) -> Iterator[Chunk]:
    """Re-cut a stream of (images, labels) chunks into pieces of `size` samples (the last may be short)."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for chunk_images, chunk_labels in chunks:
        images.append(chunk_images)
        labels.append(chunk_labels)
        while sum(map(len, labels)) >= size:
            all_images, all_labels = np.concatenate(images), np.concatenate(labels)
            yield all_images[:size], all_labels[:size]
            images, labels = [all_images[size:]], [all_labels[size:]]
    if sum(map(len, labels)):
        yield np.concatenate(images), np.concatenate(labels)


def _sample_chunks(
    samples: int, shape: tuple[int, int], classes: int, seed: int
) -> Iterator[Chunk]:
    """A learnable image set, CHUNK samples at a time: each class is a template of a few soft
    blobs; a sample is its class's template at a random intensity plus pixel noise. Spatial
    structure (not noise labelled by a teacher) keeps the labels meaningful under crops and flips."""
    templates = class_templates(shape, classes, seed)
    for chunk, start in enumerate(range(0, samples, CHUNK)):
        count = min(CHUNK, samples - start)
        rng = rng_for(seed, SAMPLE_DOMAIN, chunk)
        labels = rng.integers(0, classes, size=count)
        intensity = rng.uniform(0.6, 1.0, size=(count, 1, 1))
        pixels = intensity * templates[labels] + 0.15 * rng.standard_normal((count, *shape))
        yield np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), labels.astype(np.uint8)


def class_templates(shape: tuple[int, int], classes: int, seed: int) -> np.ndarray:
    """(classes, H, W) in [0, 1]: BLOBS Gaussian blobs per class, placed in the central half."""
    rng = rng_for(seed, TEMPLATE_DOMAIN, *shape, classes)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = rng.uniform(0.25, 0.75, size=(classes, BLOBS, 2)) * np.array(shape)
    widths = rng.uniform(0.08, 0.2, size=(classes, BLOBS, 1, 1)) * min(shape)
    heights = rng.uniform(0.5, 1.0, size=(classes, BLOBS, 1, 1))
    squared = (rows - centres[..., 0, None, None]) ** 2 + (cols - centres[..., 1, None, None]) ** 2
    blobs = (heights * np.exp(-squared / (2 * widths**2))).sum(axis=1)
    return blobs / blobs.max(axis=(1, 2), keepdims=True)


# ---- the `data` command ------------------------------------------------------------------------


def check_all(root: str | Path) -> ShardSet:
    """Open a set and verify every shard's sha256 now (readers verify lazily, per process)."""
    found = open_shards(root)
    for index in range(len(found.shards)):
        found._mapped(index)
    return found


def data_command(args: Any) -> dict[str, Any]:
    """`data make` / `data check`: a summary with a one-line `message` for humans."""
    if args.action == "check":
        found = check_all(args.dir)
        return {
            "dir": str(args.dir),
            "samples": found.samples,
            "shards": len(found.shards),
            "shape": list(found.shape),
            "classes": found.classes,
            "ok": True,
            "message": f"{args.dir}: {found.samples} samples in {len(found.shards)} shards, "
            "every size and sha256 as the manifest says",
        }
    manifest = make_shards(
        args.dir,
        samples=args.samples,
        shape=parse_shape(args.shape),
        classes=args.classes,
        seed=args.seed,
        shard_size=args.shard_size,
    )
    shards = len(manifest["shards"])
    return {
        "dir": str(args.dir),
        **{k: v for k, v in manifest.items() if k != "shards"},
        "shards": shards,
        "message": f"wrote {args.samples} samples ({args.shape}, {args.classes} classes) "
        f"in {shards} shards to {args.dir}",
    }

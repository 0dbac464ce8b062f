"""Training data: a seeded, learnable synthetic set and a reader/writer for MNIST's IDX format."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harness import HarnessError
from harness.memory import require_memory
from harness.seeding import Domain, rng_for

TEACHER_DOMAIN = Domain.TEACHER
SAMPLES_DOMAIN = Domain.SAMPLES
TEACHER_HIDDEN = 32

# IDX type codes (third byte of the magic number) -> NumPy big-endian dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Dataset:
    """Float64 inputs and int64 labels, split into train and held-out test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def synthetic(n_features: int, n_classes: int, n_train: int, n_test: int, seed: int) -> Dataset:
    """Gaussian inputs labelled by a fixed random teacher network, so the task is learnable.

    The teacher depends only on (seed, n_features, n_classes); train and test are one draw split
    in two, so they come from the same distribution.
    """
    teacher = rng_for(seed, TEACHER_DOMAIN, n_features, n_classes)
    w1 = teacher.standard_normal((n_features, TEACHER_HIDDEN)) / np.sqrt(n_features)
    w2 = teacher.standard_normal((TEACHER_HIDDEN, n_classes))
    x = rng_for(seed, SAMPLES_DOMAIN, n_features).standard_normal((n_train + n_test, n_features))
    y = (np.tanh(x @ w1) @ w2).argmax(axis=1).astype(np.int64)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST), optionally gzip-compressed.

    The header is read and checked first (dims multiplied as Python ints, so none overflows), the
    memory it asks for is checked, and then exactly that many bytes are read: a damaged or hostile
    header, or a gzip bomb, is refused before any large allocation."""
    path = Path(path)
    try:
        with _open(path) as f:
            shape, dtype = _idx_header(path, f)
            count = math.prod(shape)
            expected = count * dtype.itemsize
            # the bytes, and the int64/float64 copy that every caller makes of them
            require_memory(
                {"IDX data": expected + 8 * count}, f"{path} is too large for this machine"
            )
            raw = f.read(expected + 1)  # one byte more tells a too-long file
    except (OSError, EOFError, zlib.error) as exc:  # a truncated .gz: EOFError; a bad one: OSError
        reason = getattr(exc, "strerror", None) or exc
        raise HarnessError(f"cannot read IDX file {path}: {reason}") from None
    if len(raw) != expected:
        header = 4 + 4 * len(shape)
        found = f"more than {header + expected}" if len(raw) > expected else str(header + len(raw))
        raise HarnessError(f"{path}: {found} bytes but shape {shape} needs {header + expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_header(path: Path, f: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
        raise HarnessError(f"{path} is not an IDX file (bad magic number {magic.hex()!r})")
    ndim = magic[3]
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise HarnessError(
            f"{path}: truncated IDX header ({4 + len(dims)} bytes, need {4 + 4 * ndim})"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    if ndim == 0 or 0 in shape:
        raise HarnessError(f"{path}: IDX shape {shape} holds no samples")
    return shape, np.dtype(IDX_DTYPES[magic[2]])


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array in IDX format (used by tests and `data make`)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise HarnessError(
            f"dtype {array.dtype} has no IDX type code; use one of {sorted(map(str, codes))}"
        )
    header = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.astype(IDX_DTYPES[codes[dtype]]).tobytes())


def load_idx_pair(images: str | Path, labels: str | Path, test_fraction: float = 0.2) -> Dataset:
    """Images (N, ...) scaled to [0, 1] and flattened, with labels; the last rows are held out."""
    raw = read_idx(images)
    x = raw.reshape(raw.shape[0], -1).astype(np.float64)
    y = read_idx(labels).astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise HarnessError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    if x.max(initial=0) > 1.0:
        x /= 255.0
    n_test = max(1, int(len(y) * test_fraction))
    if len(y) <= n_test:
        raise HarnessError(f"{images}: {len(y)} samples are too few to hold out {n_test}")
    return Dataset(x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:])

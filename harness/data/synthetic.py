"""Training data: a seeded, learnable synthetic set and a reader/writer for MNIST's IDX format."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import HarnessError
from harness.seeding import rng_for

TEACHER_DOMAIN = 2  # SeedSequence keys, one per use, so no two uses share a stream
SAMPLES_DOMAIN = 3
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


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST), optionally gzip-compressed."""
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except OSError as exc:
        raise HarnessError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise HarnessError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HarnessError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise HarnessError(f"{path}: {len(raw)} bytes but shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array in IDX format (used by tests and `data make`)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise HarnessError(f"dtype {array.dtype} has no IDX type code; use one of {sorted(map(str, codes))}")
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

"""Synthetic data is seeded and learnable; IDX files round-trip and bad ones fail with the file's name."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from harness import HarnessError
from harness.data.synthetic import load_idx_pair, read_idx, synthetic, write_idx


def test_synthetic_is_deterministic_and_split() -> None:
    a, b = synthetic(16, 4, 100, 20, seed=3), synthetic(16, 4, 100, 20, seed=3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (100, 16) and a.x_test.shape == (20, 16)
    assert not np.array_equal(a.x_train, synthetic(16, 4, 100, 20, seed=4).x_train)


def test_synthetic_labels_use_many_classes() -> None:
    data = synthetic(64, 10, 4000, 10, seed=0)
    counts = np.bincount(data.y_train, minlength=10)
    assert (counts > 0).sum() >= 8  # a degenerate teacher would make "accuracy" meaningless


def test_synthetic_is_learnable_by_a_linear_probe() -> None:
    """Least squares on one-hot labels beats chance by far on held-out data."""
    data = synthetic(32, 4, 3000, 1000, seed=1)
    onehot = np.eye(4)[data.y_train]
    coef, *_ = np.linalg.lstsq(data.x_train, onehot, rcond=None)
    accuracy = ((data.x_test @ coef).argmax(axis=1) == data.y_test).mean()
    assert accuracy > 0.5  # chance is 0.25 at best for the majority class


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64])
def test_idx_round_trip(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) % 200).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", array)
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_idx_reads_gzip(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "l.idx", array)
    (tmp_path / "l.idx.gz").write_bytes(gzip.compress((tmp_path / "l.idx").read_bytes()))
    assert np.array_equal(read_idx(tmp_path / "l.idx.gz"), array)


def test_truncated_and_foreign_files_are_named(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((5, 2, 2), dtype=np.uint8))
    raw = (tmp_path / "x.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-3])
    (tmp_path / "text.idx").write_bytes(b"hello world")
    with pytest.raises(HarnessError, match=r"short\.idx: .* bytes but shape \(5, 2, 2\)"):
        read_idx(tmp_path / "short.idx")
    with pytest.raises(HarnessError, match=r"text\.idx is not an IDX file"):
        read_idx(tmp_path / "text.idx")
    with pytest.raises(HarnessError, match=r"cannot read IDX file .*missing\.idx"):
        read_idx(tmp_path / "missing.idx")


def test_mnist_style_pair(tmp_path: Path) -> None:
    images = (np.arange(10 * 4 * 4) % 256).astype(np.uint8).reshape(10, 4, 4)
    labels = (np.arange(10) % 3).astype(np.uint8)
    write_idx(tmp_path / "img.idx", images)
    write_idx(tmp_path / "lbl.idx", labels)
    data = load_idx_pair(tmp_path / "img.idx", tmp_path / "lbl.idx", test_fraction=0.2)
    assert data.x_train.shape == (8, 16) and data.x_test.shape == (2, 16)
    assert data.x_train.max() <= 1.0 and data.y_test.tolist() == [2, 0]
    write_idx(tmp_path / "lbl9.idx", labels[:9])
    with pytest.raises(HarnessError, match="10 images but .* 9 labels"):
        load_idx_pair(tmp_path / "img.idx", tmp_path / "lbl9.idx")


# ---- damaged IDX files (issue 12, item 6): one line, before any large allocation ----------------


def idx_bytes(code: int, dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.mark.parametrize(
    "dims, message",
    [
        ((2**31, 2**31, 2**31), "too large for this machine"),  # np.prod overflowed int64 here
        ((0, 28, 28), r"shape \(0, 28, 28\) holds no samples"),
        ((), r"shape \(\) holds no samples"),
    ],
)
def test_hostile_idx_headers_are_refused(
    tmp_path: Path, dims: tuple[int, ...], message: str
) -> None:
    path = tmp_path / "h.idx"
    path.write_bytes(idx_bytes(0x08, dims, b"\0" * 16))
    with pytest.raises(HarnessError, match=message) as info:
        read_idx(path)
    assert "h.idx" in str(info.value)


def test_a_truncated_gzip_is_one_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((50, 4, 4), dtype=np.uint8))
    packed = gzip.compress((tmp_path / "x.idx").read_bytes())
    (tmp_path / "x.idx.gz").write_bytes(packed[: len(packed) // 2])  # EOFError before
    with pytest.raises(HarnessError, match=r"cannot read IDX file .*x\.idx\.gz"):
        read_idx(tmp_path / "x.idx.gz")
    (tmp_path / "y.idx.gz").write_bytes(b"\x1f\x8b" + b"junk" * 10)  # a broken gzip header
    with pytest.raises(HarnessError, match=r"cannot read IDX file .*y\.idx\.gz"):
        read_idx(tmp_path / "y.idx.gz")


def test_a_file_longer_than_its_header_says_is_refused(tmp_path: Path) -> None:
    (tmp_path / "long.idx").write_bytes(idx_bytes(0x08, (2, 2), b"\0" * 5))
    with pytest.raises(
        HarnessError, match=r"long\.idx: more than 16 bytes but shape \(2, 2\) needs"
    ):
        read_idx(tmp_path / "long.idx")

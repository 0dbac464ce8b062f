"""Decode and augment: the numpy and python implementations agree bit for bit, and do what they say."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.data.augment import (
    FILL,
    PAD,
    Draw,
    augment_batch,
    augment_numpy,
    augment_python,
    decode,
    draw,
)

IMAGES = st.integers(4, 12).flatmap(
    lambda h: st.integers(4, 12).flatmap(lambda w: arrays(np.uint8, (3, h, w)))
)


@given(
    images=IMAGES, seed=st.integers(0, 2**32), epoch=st.integers(0, 5), first=st.integers(0, 10**6)
)
def test_numpy_and_python_augment_give_identical_arrays(
    images: np.ndarray, seed: int, epoch: int, first: int
) -> None:
    samples = np.arange(first, first + len(images))
    decoded = decode(images)
    fast = augment_batch(decoded, "numpy", seed=seed, epoch=epoch, samples=samples)
    slow = augment_batch(decoded, "python", seed=seed, epoch=epoch, samples=samples)
    assert fast.dtype == slow.dtype == np.float64
    assert np.array_equal(fast, slow)


def test_draws_depend_on_seed_epoch_and_sample_only() -> None:
    a, b = draw(1, 2, 3, (8, 8)), draw(1, 2, 3, (8, 8))
    assert (a.dy, a.dx, a.flip) == (b.dy, b.dx, b.flip) and np.array_equal(a.noise, b.noise)
    for other in (draw(0, 2, 3, (8, 8)), draw(1, 0, 3, (8, 8)), draw(1, 2, 4, (8, 8))):
        assert not np.array_equal(a.noise, other.noise)


def test_decode_maps_bytes_to_minus_one_one() -> None:
    assert decode(np.array([0, 255], dtype=np.uint8)).tolist() == [-1.0, 1.0]
    assert FILL == -1.0


def test_crop_and_flip_move_pixels_as_documented() -> None:
    image = np.arange(16, dtype=np.float64).reshape(4, 4)
    still = np.zeros((4, 4))
    for transform in (augment_numpy, augment_python):
        assert np.array_equal(transform(image, Draw(PAD, PAD, False, still)), image)
        assert np.array_equal(transform(image, Draw(PAD, PAD, True, still)), image[:, ::-1])
        down = transform(image, Draw(PAD - 1, PAD, False, still))  # window starts one row higher
        assert np.array_equal(down[0], [FILL] * 4) and np.array_equal(down[1:], image[:-1])
        noisy = transform(image, Draw(PAD, PAD, False, np.full((4, 4), 0.5)))
        assert np.array_equal(noisy, image + 0.5)

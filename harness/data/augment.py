"""Decode and augment: uint8 images → normalised float64, then random crop, flip and noise.

Two augment implementations give the SAME float64 arrays, bit for bit:
- `numpy`: whole-image array operations;
- `python`: per-pixel Python loops, standing for the Python-level transforms real pipelines run
  (PIL-style callables, per-sample code). It is the stage that threads can only speed up where the
  GIL is off.
They agree exactly because each output pixel is one IEEE-754 double addition (cropped pixel +
noise) done in the same order, and every random draw is made once, by `draw`, for both.
The draws of a sample come from SeedSequence keyed by (seed, epoch, sample index): which worker
augments it, and when, cannot change them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.seeding import Domain, rng_for

AUGMENT_DOMAIN = Domain.AUGMENT
PAD = 2  # random crop: pad by PAD pixels, then cut a window of the original size
NOISE_STD = 0.1  # additive Gaussian noise, in normalised units
MEAN, STD = 0.5, 0.5  # pixel/255 → [-1, 1]
FILL = (0 / 255.0 - MEAN) / STD  # padding is black, in normalised units


def decode(images: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) → float64 normalised to [-1, 1]."""
    return (images / 255.0 - MEAN) / STD


@dataclass(frozen=True)
class Draw:
    """The random choices for one sample: crop offset, flip, and noise image."""

    dy: int
    dx: int
    flip: bool
    noise: np.ndarray


def draw(seed: int, epoch: int, sample: int, shape: tuple[int, int]) -> Draw:
    rng = rng_for(seed, AUGMENT_DOMAIN, epoch, sample)
    dy, dx = (int(v) for v in rng.integers(0, 2 * PAD + 1, size=2))
    flip = bool(rng.random() < 0.5)
    return Draw(dy, dx, flip, rng.standard_normal(shape) * NOISE_STD)


def augment_numpy(image: np.ndarray, d: Draw) -> np.ndarray:
    height, width = image.shape
    padded = np.full((height + 2 * PAD, width + 2 * PAD), FILL)
    padded[PAD : PAD + height, PAD : PAD + width] = image
    crop = padded[d.dy : d.dy + height, d.dx : d.dx + width]
    return (crop[:, ::-1] if d.flip else crop) + d.noise


def augment_python(image: np.ndarray, d: Draw) -> np.ndarray:
    """The same transform, one pixel at a time on Python lists and floats."""
    height, width = image.shape
    pixels, noise = image.tolist(), d.noise.tolist()
    out = [[0.0] * width for _ in range(height)]
    for i in range(height):
        source_row = i + d.dy - PAD
        inside_row = 0 <= source_row < height
        for j in range(width):
            source_col = (width - 1 - j if d.flip else j) + d.dx - PAD
            inside = inside_row and 0 <= source_col < width
            out[i][j] = (pixels[source_row][source_col] if inside else FILL) + noise[i][j]
    return np.array(out)


AUGMENTS: dict[str, Callable[[np.ndarray, Draw], np.ndarray]] = {
    "numpy": augment_numpy,
    "python": augment_python,
}


def augment_batch(
    images: np.ndarray, kind: str, *, seed: int, epoch: int, samples: np.ndarray
) -> np.ndarray:
    """Augment decoded images (n, H, W); row r is sample `samples[r]` of the set."""
    transform = AUGMENTS[kind]
    shape = images.shape[1:]
    out = np.empty_like(images)
    for row, sample in enumerate(samples.tolist()):
        out[row] = transform(images[row], draw(seed, epoch, sample, shape))
    return out

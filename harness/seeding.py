"""The only source of randomness: SeedSequence keyed by *what* is drawn, never by who draws it.

A key is (seed, domain, *indices), e.g. (seed, BATCH_DOMAIN, epoch) or (seed, AUGMENT, epoch,
sample). Which thread or process asks, and in what order, cannot change the numbers.
"""

from __future__ import annotations

import numpy as np


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A generator determined by (seed, *key) alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))

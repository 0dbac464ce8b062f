"""The only source of randomness: SeedSequence keyed by *what* is drawn, never by who draws it.

A key is (seed, domain, *indices), e.g. (seed, Domain.SHUFFLE, epoch) or (seed, Domain.AUGMENT,
epoch, sample). Which thread or process asks, and in what order, cannot change the numbers.
Every domain is listed here, once: two uses sharing a domain would draw the same stream, so
`Domain` is a unique enum, and a plug-in that needs a stream of its own claims a number above
PLUGIN_DOMAINS with `claim_domain`, which refuses a number that is taken.
"""

from __future__ import annotations

from enum import IntEnum, unique

import numpy as np

from harness import HarnessError


@unique
class Domain(IntEnum):
    INIT = 1  # parameter initialisation (harness.model)
    TEACHER = 2  # the synthetic set's teacher network (harness.data.synthetic)
    SAMPLES = 3  # the synthetic set's inputs
    SHUFFLE = 4  # data-parallel's per-epoch shuffle of the training rows
    TEMPLATE = 10  # `data make`'s class templates (harness.data.shards)
    SAMPLE = 11  # `data make`'s samples
    AUGMENT = 12  # the loader's augmentation draws (harness.data.augment)
    LOADER_SHUFFLE = 13  # the loader's per-epoch shuffle (harness.data.pipeline)
    PROBE = 31  # which coordinates each async worker's probe updates touch (harness.params)
    PARTITION = 32  # which rows each async-sgd worker owns
    MINIBATCH = 33  # which of them each of its updates samples


PLUGIN_DOMAINS = 1000  # plug-ins claim numbers above this one
_claimed: dict[int, str] = {}


def claim_domain(number: int, owner: str) -> int:
    """A domain for a plug-in's own draws; HarnessError if the number is not free."""
    if number <= PLUGIN_DOMAINS:
        raise HarnessError(
            f"domain={number} of {owner}: plug-in domains are numbers above "
            f"{PLUGIN_DOMAINS} (below are the harness's own)"
        )
    if _claimed.setdefault(number, owner) != owner:
        raise HarnessError(f"domain={number} of {owner} is already claimed by {_claimed[number]}")
    return number


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A generator determined by (seed, *key) alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))

"""What the training workloads share: their in-memory data set and arrays in the strategy's memory."""

from __future__ import annotations

import numpy as np

from harness.config import RunConfig
from harness.data.synthetic import Dataset, synthetic
from harness.models import Model
from strategies.base import Strategy


def to_shared(strategy: Strategy, array: np.ndarray) -> np.ndarray:
    """A copy of `array` where every worker of `strategy` sees it (shared memory for processes)."""
    shared = strategy.shared_array(array.shape, array.dtype)
    shared[...] = array
    return shared


def load_dataset(config: RunConfig, model: Model) -> Dataset:
    """The seeded synthetic set sized for the model: the same for every strategy and worker count."""
    return synthetic(
        model.n_inputs, model.n_classes, config.train_samples, config.test_samples, config.seed
    )

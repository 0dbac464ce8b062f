"""Model `softmax`: multinomial logistic (softmax) regression, `--model softmax` (64 inputs,
10 classes, the size of the `tiny` MLP's data) or `--model softmax-INPUTS-CLASSES`.

Parameters are one flat float64 vector, weights (inputs x classes) then biases, as the Model
protocol asks; `loss_and_grad` returns the SUMMED cross-entropy and its exact gradient,
x.T @ (softmax - onehot) and the column sums of (softmax - onehot).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from harness.models import ModelPlugin, register_model

DEFAULT = (64, 10)
PATTERN = re.compile(r"softmax(?:-(\d+)-(\d+))?")
SEED_KEY = 0x50F7  # this model's own stream: its draws never coincide with the harness's


class Softmax:
    def __init__(self, n_inputs: int, n_classes: int) -> None:
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.n_weights = n_inputs * n_classes
        self.size = self.n_weights + n_classes

    def views(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return flat[: self.n_weights].reshape(self.n_inputs, self.n_classes), flat[self.n_weights :]

    def init(self, seed: int) -> np.ndarray:
        flat = np.zeros(self.size)
        weights, _ = self.views(flat)
        weights[...] = np.random.default_rng([seed, SEED_KEY]).standard_normal(weights.shape) * 0.01
        return flat

    def logits(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        weights, bias = self.views(flat)
        return x @ weights + bias

    def loss_and_grad(
        self, flat: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        grad = np.empty(self.size) if out is None else out
        logits = self.logits(flat, x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        loss = float(-(shifted[rows, y] - log_norm[:, 0]).sum())
        delta = np.exp(shifted - log_norm)
        delta[rows, y] -= 1.0
        grad_weights, grad_bias = self.views(grad)
        np.matmul(x.T, delta, out=grad_weights)
        grad_bias[...] = delta.sum(axis=0)
        return loss, grad

    def predict(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.logits(flat, x).argmax(axis=1)

    def accuracy(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(flat, x) == y).mean())

    def mean_loss(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return self.loss_and_grad(flat, x, y)[0] / len(y)

    def segments(self) -> list[slice]:
        return [slice(0, self.n_weights), slice(self.n_weights, self.size)]

    def describe(self) -> dict[str, Any]:
        return {"model": f"softmax-{self.n_inputs}-{self.n_classes}", "parameters": self.size}


def parse(text: str) -> tuple[int, int] | None:
    """(inputs, classes) for `softmax` or `softmax-N-K` (N >= 1, K >= 2); None otherwise."""
    match = PATTERN.fullmatch(text)
    if match is None:
        return None
    shape = (int(match[1]), int(match[2])) if match[1] else DEFAULT
    return shape if shape[0] >= 1 and shape[1] >= 2 else None


def build(text: str) -> Softmax:
    shape = parse(text)
    assert shape is not None  # the registry builds only what `accepts` accepted
    return Softmax(*shape)


register_model(
    ModelPlugin(
        name="softmax",
        module=__name__,
        description="softmax regression (example plug-in): softmax or softmax-INPUTS-CLASSES",
        accepts=lambda text: parse(text) is not None,
        build=build,
        examples=("softmax", "softmax-64-10"),
    )
)

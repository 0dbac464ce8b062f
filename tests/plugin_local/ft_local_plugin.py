"""A plug-in that is NOT installed, loaded with `--plugin tests/plugin_local/ft_local_plugin.py`
(or FT_HARNESS_PLUGINS): strategy `strided` and model `tanh`, names the example distribution
does not use.

`strided`: thread k of W runs tasks k, k + W, k + 2W, ... (round robin instead of slices), each
result into its task's slot. `tanh`: one hidden tanh layer, `tanh` (64-16-10) or
`tanh-INPUTS-HIDDEN-CLASSES`, softmax cross-entropy, summed loss and exact gradient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from harness.models import ModelPlugin, register_model
from strategies.base import R, Strategy, T, register

__version__ = "0.0.1"


@register
class Strided(Strategy):
    name = "strided"
    description = "threads taking every W-th task (round robin; local plug-in)"

    def __init__(self, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ft-local")

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        results: list[Any] = [None] * len(tasks)

        def run_from(first: int) -> None:
            for i in range(first, len(tasks), self.workers):
                results[i] = fn(tasks[i])

        futures = [self._pool.submit(run_from, k) for k in range(min(self.workers, len(tasks)))]
        for future in futures:
            future.result()  # waits; a task's exception is raised here
        return results

    def _close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class TanhNet:
    """x -> tanh(x @ W1 + b1) @ W2 + b2; parameters flat: W1, b1, W2, b2."""

    def __init__(self, n_inputs: int, hidden: int, n_classes: int) -> None:
        self.n_inputs, self.hidden, self.n_classes = n_inputs, hidden, n_classes
        shapes = [(n_inputs, hidden), (hidden,), (hidden, n_classes), (n_classes,)]
        ends = np.cumsum([int(np.prod(s)) for s in shapes]).tolist()
        self.parts = [(slice(a, b), s) for a, b, s in zip([0, *ends[:-1]], ends, shapes)]
        self.size = ends[-1]

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[cut].reshape(shape) for cut, shape in self.parts]

    def init(self, seed: int) -> np.ndarray:
        flat = np.zeros(self.size)
        w1, _, w2, _ = self.views(flat)
        rng = np.random.default_rng([seed, 0x7A4])
        w1[...] = rng.standard_normal(w1.shape) / np.sqrt(self.n_inputs)
        w2[...] = rng.standard_normal(w2.shape) / np.sqrt(self.hidden)
        return flat

    def forward(self, flat: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w1, b1, w2, b2 = self.views(flat)
        hidden = np.tanh(x @ w1 + b1)
        return hidden @ w2 + b2, hidden

    def loss_and_grad(
        self, flat: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        grad = np.empty(self.size) if out is None else out
        logits, hidden = self.forward(flat, x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        loss = float(-(shifted[rows, y] - log_norm[:, 0]).sum())
        delta = np.exp(shifted - log_norm)
        delta[rows, y] -= 1.0
        _, _, w2, _ = self.views(flat)
        g1, gb1, g2, gb2 = self.views(grad)
        np.matmul(hidden.T, delta, out=g2)
        gb2[...] = delta.sum(axis=0)
        back = (delta @ w2.T) * (1.0 - hidden * hidden)  # tanh' = 1 - tanh^2
        np.matmul(x.T, back, out=g1)
        gb1[...] = back.sum(axis=0)
        return loss, grad

    def predict(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.forward(flat, x)[0].argmax(axis=1)

    def accuracy(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(flat, x) == y).mean())

    def mean_loss(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return self.loss_and_grad(flat, x, y)[0] / len(y)

    def segments(self) -> list[slice]:
        return [
            slice(self.parts[0][0].start, self.parts[1][0].stop),
            slice(self.parts[2][0].start, self.parts[3][0].stop),
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "model": f"tanh-{self.n_inputs}-{self.hidden}-{self.n_classes}",
            "parameters": self.size,
        }


PATTERN = re.compile(r"tanh(?:-(\d+)-(\d+)-(\d+))?")


def widths(text: str) -> tuple[int, int, int] | None:
    match = PATTERN.fullmatch(text)
    if match is None:
        return None
    found = (int(match[1]), int(match[2]), int(match[3])) if match[1] else (64, 16, 10)
    return found if min(found) >= 1 and found[2] >= 2 else None


register_model(
    ModelPlugin(
        name="tanh",
        module=__name__,
        description="one hidden tanh layer (local plug-in)",
        accepts=lambda text: widths(text) is not None,
        build=lambda text: TanhNet(*widths(text)),  # type: ignore[misc]
        examples=("tanh", "tanh-64-16-10"),
    )
)

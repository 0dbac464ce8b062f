"""A float64 MLP (ReLU hidden layers, softmax cross-entropy) whose parameters live in ONE flat buffer.

One buffer with per-layer views means a lock, a stripe or a shared-memory segment covers exactly
the bytes it names, and a whole model is hashed, copied or shared as one array.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from harness import HarnessError
from harness.seeding import rng_for

INIT_DOMAIN = 1  # SeedSequence key: parameter initialisation
MODEL_PRESETS: dict[str, tuple[int, ...]] = {
    "tiny": (64, 32, 10),  # Python overhead dominates: many small NumPy calls
    "small": (256, 128, 10),
    "large": (784, 1024, 10),  # BLAS dominates: one matmul is most of the time
}


def parse_widths(model: str) -> tuple[int, ...]:
    """A preset name or explicit widths such as `64-32-10` (input-hidden...-classes)."""
    if model in MODEL_PRESETS:
        return MODEL_PRESETS[model]
    try:
        widths = tuple(int(w) for w in model.split("-"))
    except ValueError:
        widths = ()
    if len(widths) < 2 or min(widths) < 1 or widths[-1] < 2:
        raise HarnessError(
            f"model={model!r} is not a preset ({', '.join(MODEL_PRESETS)}) nor widths like "
            "'64-32-10' (at least input and classes, every width >= 1, classes >= 2)")
    return widths


@dataclass(frozen=True)
class Layer:
    """Offsets of one dense layer inside the flat buffer: weights (n_in, n_out) then bias."""

    n_in: int
    n_out: int
    offset: int

    @property
    def weight_slice(self) -> slice:
        return slice(self.offset, self.offset + self.n_in * self.n_out)

    @property
    def bias_slice(self) -> slice:
        start = self.offset + self.n_in * self.n_out
        return slice(start, start + self.n_out)

    @property
    def end(self) -> int:
        return self.bias_slice.stop


class MLP:
    """Pure functions of (flat parameters, inputs, labels); holds only the layout."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        self.widths = tuple(widths)
        self.layers: list[Layer] = []
        offset = 0
        for n_in, n_out in zip(self.widths, self.widths[1:]):
            self.layers.append(Layer(n_in, n_out, offset))
            offset = self.layers[-1].end
        self.size = offset

    @property
    def n_inputs(self) -> int:
        return self.widths[0]

    @property
    def n_classes(self) -> int:
        return self.widths[-1]

    def segments(self) -> list[slice]:
        """One slice of the flat buffer per layer: its weights and its bias, side by side."""
        return [slice(layer.offset, layer.end) for layer in self.layers]

    def describe(self) -> dict[str, object]:
        """What a result records about the model."""
        return {"model": list(self.widths), "parameters": self.size}

    def views(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) per layer as views into `flat`: writing a view writes the buffer."""
        return [(flat[l.weight_slice].reshape(l.n_in, l.n_out), flat[l.bias_slice]) for l in self.layers]

    def init(self, seed: int) -> np.ndarray:
        """He-initialised weights, zero biases; depends only on the seed."""
        flat = np.zeros(self.size)
        rng = rng_for(seed, INIT_DOMAIN)
        for (w, _), layer in zip(self.views(flat), self.layers):
            w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / layer.n_in)
        return flat

    def forward(self, flat: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits and the activations entering each layer (kept for the backward pass)."""
        acts = [x]
        views = self.views(flat)
        for w, b in views[:-1]:
            acts.append(np.maximum(acts[-1] @ w + b, 0.0))
        w, b = views[-1]
        return acts[-1] @ w + b, acts

    def loss_and_grad(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray,
                      out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """SUMMED cross-entropy over the rows of x, and its gradient written into `out`.

        Sums (not means) so that microbatch results add up to the batch result; the caller
        divides once, after reducing in microbatch order.
        """
        grad = np.empty(self.size) if out is None else out
        logits, acts = self.forward(flat, x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        loss = float(-(shifted[rows, y] - log_norm[:, 0]).sum())
        delta = np.exp(shifted - log_norm)
        delta[rows, y] -= 1.0
        views = self.views(flat)
        for (w, _), (gw, gb), act in zip(reversed(views), reversed(self.views(grad)), reversed(acts)):
            np.matmul(act.T, delta, out=gw)
            gb[...] = delta.sum(axis=0)
            if act is not x:
                delta = (delta @ w.T) * (act > 0)
        return loss, grad

    def predict(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.forward(flat, x)[0].argmax(axis=1)

    def accuracy(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(flat, x) == y).mean())

    def mean_loss(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return self.loss_and_grad(flat, x, y)[0] / len(y)


def params_digest(flat: np.ndarray) -> str:
    """sha256 of the raw float64 bytes: equal digests mean bitwise-equal parameters."""
    return hashlib.sha256(np.ascontiguousarray(flat, dtype=np.float64).tobytes()).hexdigest()

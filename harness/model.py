"""The model protocol the workloads train, and its first implementation: a float64 MLP (ReLU
hidden layers, softmax cross-entropy) whose parameters live in ONE flat buffer.

One buffer with per-layer views means a lock, a stripe or a shared-memory segment covers exactly
the bytes it names, and a whole model is hashed, copied or shared as one array.

The hot path is a `Workspace` (harness.models): one per worker, made once, holding that worker's own views of the
parameters and of every gradient row it writes, and its scratch (gathered rows, activations,
deltas), so a microbatch allocates nothing and no Python object is touched by two threads at once
(on a free-threaded build a shared object's reference count is a contended cache line).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from harness import HarnessError
from harness.seeding import Domain, rng_for

INIT_DOMAIN = Domain.INIT
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
            "'64-32-10' (at least input and classes, every width >= 1, classes >= 2)"
        )
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
        return [
            (flat[layer.weight_slice].reshape(layer.n_in, layer.n_out), flat[layer.bias_slice])
            for layer in self.layers
        ]

    def init(self, seed: int) -> np.ndarray:
        """He-initialised weights, zero biases; depends only on the seed."""
        flat = np.zeros(self.size)
        rng = rng_for(seed, INIT_DOMAIN)
        for (w, _), layer in zip(self.views(flat), self.layers):
            w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / layer.n_in)
        return flat

    def workspace(self, flat: np.ndarray, rows: int) -> MLPWorkspace:
        return MLPWorkspace(self, flat, rows)

    def loss_and_grad(
        self, flat: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        """SUMMED cross-entropy over the rows of x, and its gradient written into `out`.

        Sums (not means) so that microbatch results add up to the batch result; the caller
        divides once, after reducing in microbatch order. One-off: a loop keeps a workspace.
        """
        grad = np.empty(self.size) if out is None else out
        work = MLPWorkspace(self, flat, len(y))
        work.load(x, y, np.arange(len(y)))
        return work.loss_and_grad(work.bind(grad)), grad

    def predict(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        work = MLPWorkspace(self, flat, len(x))
        work.acts[0][...] = x
        return work.forward().argmax(axis=1)

    def accuracy(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(flat, x) == y).mean())

    def mean_loss(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return self.loss_and_grad(flat, x, y)[0] / len(y)


class MLPWorkspace:
    """Views and scratch for `rows` samples of one MLP over one parameter buffer, built once.

    Every operation writes into a buffer allocated here (`out=`), in the order and with the
    operands of the textbook expressions in the comments, so results are bitwise those of
    `logits - max`, `exp(shifted - log_norm)`, `(delta @ W.T) * (act > 0)` evaluated afresh.
    """

    def __init__(self, model: MLP, flat: np.ndarray, rows: int) -> None:
        self.model, self.rows = model, rows
        self.weights = [(w, w.T, b) for w, b in model.views(flat)]
        widths = model.widths
        self.acts = [np.empty((rows, width)) for width in widths]  # acts[0]: the gathered inputs
        self.acts_t = [act.T for act in self.acts]
        self.deltas = [np.empty((rows, width)) for width in widths[1:]]
        self.masks = [np.empty((rows, width), dtype=bool) for width in widths[1:-1]]
        self.labels = np.empty(rows, dtype=np.intp)
        # softmax scratch: row maxima and log-normalisers as columns, the picked logits
        self.row_max, self.log_norm = np.empty((rows, 1)), np.empty((rows, 1))
        self.log_norm_vector = self.log_norm[:, 0]
        self.picked, self.picks = np.empty(rows), np.empty(rows, dtype=np.intp)
        self.row_starts = np.arange(rows, dtype=np.intp) * model.n_classes
        self.logits_flat = self.acts[-1].reshape(-1)  # a view: acts[-1] is contiguous
        self.delta_flat = self.deltas[-1].reshape(-1)

    def bind(self, grad: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.model.views(grad)

    def load(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
        # mode="clip": with "raise", take copies through a temporary; rows are valid by
        # construction (a slice of a permutation, an arange, a draw among valid rows)
        x.take(rows, axis=0, out=self.acts[0], mode="clip")  # methods: no Python wrapper
        y.take(rows, out=self.labels, mode="clip")

    def forward(self) -> np.ndarray:
        """Logits of the loaded rows (in acts[-1]); hidden activations kept for backward."""
        acts, last = self.acts, len(self.weights) - 1
        for i, (w, _, b) in enumerate(self.weights):
            out = acts[i + 1]
            np.matmul(acts[i], w, out=out)  # acts[i] @ w + b
            np.add(out, b, out=out)
            if i < last:
                np.maximum(out, 0.0, out=out)  # ReLU
        return acts[-1]

    def loss_and_grad(self, out: list[tuple[np.ndarray, np.ndarray]]) -> float:
        shifted = self.forward()
        np.maximum.reduce(shifted, axis=1, keepdims=True, out=self.row_max)
        np.subtract(shifted, self.row_max, out=shifted)  # logits - logits.max(axis=1)
        delta = self.deltas[-1]
        np.exp(shifted, out=delta)  # exp(shifted).sum(axis=1) is the softmax normaliser
        np.add.reduce(delta, axis=1, keepdims=True, out=self.log_norm)
        np.log(self.log_norm, out=self.log_norm)
        np.add(self.row_starts, self.labels, out=self.picks)  # flat index of [row, label]
        self.logits_flat.take(self.picks, out=self.picked)
        np.subtract(self.picked, self.log_norm_vector, out=self.picked)
        loss = -float(np.add.reduce(self.picked))  # -(shifted[rows, y] - log_norm).sum()
        np.subtract(shifted, self.log_norm, out=delta)
        np.exp(delta, out=delta)  # softmax; minus one-hot next
        self.delta_flat.take(self.picks, out=self.picked)
        np.subtract(self.picked, 1.0, out=self.picked)
        self.delta_flat.put(self.picks, self.picked)
        self._backward(out)
        return loss

    def _backward(self, out: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for i in range(len(self.weights) - 1, -1, -1):
            delta, (gw, gb) = self.deltas[i], out[i]
            np.matmul(self.acts_t[i], delta, out=gw)
            np.add.reduce(delta, axis=0, out=gb)
            if i:  # (delta @ W.T) * (act > 0): the delta entering layer i - 1's output
                below = self.deltas[i - 1]
                np.matmul(delta, self.weights[i][1], out=below)
                np.greater(self.acts[i], 0, out=self.masks[i - 1])
                np.multiply(below, self.masks[i - 1], out=below)


def params_digest(flat: np.ndarray) -> str:
    """sha256 of the raw float64 bytes: equal digests mean bitwise-equal parameters."""
    return hashlib.sha256(np.ascontiguousarray(flat, dtype=np.float64).tobytes()).hexdigest()

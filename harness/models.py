"""Model plug-ins: the protocol data-parallel and async-sgd train, and the registry of models.

A model is pure functions of a FLAT float64 parameter vector (so a lock, a stripe or a
shared-memory segment covers exactly the bytes it names, and a digest hashes the whole model).
`--model TEXT` is offered to each registered model in turn (registration order, built-ins first);
the first whose `accepts(TEXT)` is true builds it. The MLP (harness.model) is the first one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness import HarnessError
from harness.options import Option


class Workspace(Protocol):
    """One worker's private state for computing gradients over one parameter buffer: its own
    views and scratch, made once and reused, so the inner loop allocates nothing and touches no
    Python object another thread touches. Optional: a model without `workspace` gets
    PlainWorkspace, which calls its `loss_and_grad`."""

    def bind(self, grad: np.ndarray) -> Any:
        """An output handle for the flat gradient buffer `grad` (keep it; binding costs views)."""

    def load(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
        """Take rows `rows` of x and y as the inputs of the next loss_and_grad."""

    def loss_and_grad(self, out: Any) -> float:
        """The SUMMED loss of the loaded rows; their summed gradient written through `out`."""


@runtime_checkable
class Model(Protocol):
    """What a workload needs of a model. `loss_and_grad` returns the SUMMED loss of the rows and
    writes the summed gradient into `out` (a flat buffer of `size`): sums, so that microbatches add
    up to the batch exactly as the serial run adds them."""

    size: int
    n_inputs: int
    n_classes: int

    def init(self, seed: int) -> np.ndarray: ...

    def loss_and_grad(
        self, params: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]: ...

    def predict(self, params: np.ndarray, x: np.ndarray) -> np.ndarray: ...

    def mean_loss(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float: ...

    def accuracy(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float: ...

    def segments(self) -> list[slice]: ...  # natural stripes for `--policy striped`

    def describe(self) -> dict[str, Any]: ...  # e.g. {"model": [64, 32, 10], "parameters": 2410}


class PlainWorkspace:
    """The workspace of a model that has none of its own: gathers the rows and calls the
    model's `loss_and_grad` (correct for any model; a model's own workspace is only faster)."""

    def __init__(self, model: Model, flat: np.ndarray) -> None:
        self.model, self.flat = model, flat
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None

    def bind(self, grad: np.ndarray) -> np.ndarray:
        return grad

    def load(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
        self.x, self.y = x[rows], y[rows]

    def loss_and_grad(self, out: np.ndarray) -> float:
        return self.model.loss_and_grad(self.flat, self.x, self.y, out=out)[0]


def workspace_for(model: Model, flat: np.ndarray, rows: int) -> Workspace:
    """The model's own workspace for `rows` rows of `flat`, or the plain one."""
    make = getattr(model, "workspace", None)
    return make(flat, rows) if make is not None else PlainWorkspace(model, flat)


@dataclass(frozen=True, kw_only=True)
class ModelPlugin:
    """A family of models: `accepts(text)` says whether `--model text` names one of them, and
    `build(text)` makes it. `examples` are shown by `list` and in error messages."""

    name: str
    description: str
    accepts: Callable[[str], bool]
    build: Callable[[str], Model]
    examples: tuple[str, ...] = ()
    options: tuple[Option, ...] = field(default=())
    module: str = ""


MODELS: dict[str, ModelPlugin] = {}


def register_model(plugin: ModelPlugin) -> ModelPlugin:
    """Add a model family; a name that is taken is refused."""
    if plugin.name in MODELS:
        raise HarnessError(
            f"model {plugin.name!r} is registered twice "
            f"({MODELS[plugin.name].module or 'built-in'} and {plugin.module or '?'})"
        )
    MODELS[plugin.name] = plugin
    return plugin


def model_plugin(text: str) -> ModelPlugin:
    """The family that accepts `--model text`; HarnessError listing what would be accepted."""
    from harness import plugins

    plugins.load()
    for plugin in MODELS.values():
        if plugin.accepts(text):
            return plugin
    known = ", ".join(example for p in MODELS.values() for example in p.examples)
    raise HarnessError(f"model={text!r} is not a model any plug-in accepts; known: {known}")


def make_model(text: str) -> Model:
    return model_plugin(text).build(text)


def _register_mlp() -> None:
    from harness.model import MLP, MODEL_PRESETS, parse_widths

    def accepts(text: str) -> bool:
        try:
            parse_widths(text)
        except HarnessError:
            return False
        return True

    register_model(
        ModelPlugin(
            name="mlp",
            module=__name__,
            description="float64 MLP, ReLU hidden layers, softmax cross-entropy: a preset "
            f"({', '.join(MODEL_PRESETS)}) or widths like 64-32-10",
            accepts=accepts,
            build=lambda text: MLP(parse_widths(text)),
            examples=(*MODEL_PRESETS, "64-32-10"),
        )
    )


_register_mlp()

"""A deliberately thread-UNSAFE model plug-in (a test fixture for `advise`): the MLP, but its
gradient goes through one module-global scratch buffer, with a forced thread switch between
writing and reading it, as a model that caches state in a global would do. Two threads computing
gradients at once overwrite each other's, so a threaded run's result differs from serial's;
one thread (or separate processes) is unaffected."""

from __future__ import annotations

import time

import numpy as np

from harness.model import MLP, parse_widths
from harness.models import ModelPlugin, PlainWorkspace, register_model

PREFIX = "unsafe-"
_scratch: dict[int, np.ndarray] = {}  # shared by every thread of the process: the bug


class UnsafeMLP(MLP):
    def workspace(self, flat: np.ndarray, rows: int) -> PlainWorkspace:
        return PlainWorkspace(self, flat)  # every gradient goes through loss_and_grad below

    def loss_and_grad(
        self, flat: np.ndarray, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        scratch = _scratch.setdefault(self.size, np.empty(self.size))
        loss, _ = super().loss_and_grad(flat, x, y, out=scratch)
        time.sleep(0.0005)  # another thread runs here and overwrites the scratch buffer
        grad = np.empty(self.size) if out is None else out
        grad[...] = scratch
        return loss, grad


register_model(
    ModelPlugin(
        name="unsafe-mlp",
        module=__name__,
        description="the MLP with its gradient in a module-global buffer (thread-unsafe on purpose)",
        accepts=lambda text: text.startswith(PREFIX),
        build=lambda text: UnsafeMLP(parse_widths(text[len(PREFIX) :])),
        examples=("unsafe-tiny",),
    )
)

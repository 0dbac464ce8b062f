"""Serial: the reference every other strategy must match bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from strategies.base import R, Strategy, T, register, run_slice


@register
class Serial(Strategy):
    name = "serial"
    description = "one thread, tasks in order (the reference)"

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return run_slice(fn, tasks)

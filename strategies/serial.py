"""Serial: the reference every other strategy must match bit for bit."""

from __future__ import annotations

from typing import Callable, Sequence

from strategies.base import R, T, Strategy, register


@register
class Serial(Strategy):
    name = "serial"
    description = "one thread, tasks in order (the reference)"

    def _map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return [fn(task) for task in tasks]

"""BLAS threads: serial Python, parallelism left to the BLAS library's own thread pool.

The one strategy that does not pin BLAS to one thread: `workers` becomes the BLAS thread count.
A multi-threaded BLAS may split sums differently, so results are held to the serial loss within a
tolerance rather than bitwise.
"""

from __future__ import annotations

from strategies.base import register
from strategies.serial import Serial


@register
class BlasThreads(Serial):
    name = "blas"
    description = "serial Python; the BLAS library's threads = workers (threadpoolctl)"
    bitwise_deterministic = False

    @property
    def blas_threads(self) -> int:
        return self.workers

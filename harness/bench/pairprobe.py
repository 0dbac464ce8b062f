"""How much two threads of one process slow each other down, each doing NumPy work of its own.

Two threads that share no array still share NumPy's and CPython's objects (ufuncs, dtypes,
BLAS's buffers), and on a free-threaded build every use of them can move a cache line from one
CPU to the other. What that costs depends on where the host has put the guest's CPUs, and it
changes while the machine runs: on the 2-core VM one afternoon, two threads running this kernel
went from about 1.0x to 1.24x the time of one thread alone, and the harness's threads x2 speed-up
(tiny model, cp313t) from 1.73x to 1.36x with it, while /proc/stat showed no other work and no
steal time, so the noise meter (harness.bench.noise) saw a quiet machine.

The bench's manager process measures this once per bench command (so once per configuration and
round) before its cells and hands it to its pyperf workers in FT_HARNESS_PAIR_SLOWDOWN; the hook
records it in every run as `ft_pair_slowdown`, and the report gives it per configuration and
warns when it is above harness.report.noisy.PAIR_THRESHOLD. Where the GIL is on, two threads do
not run Python at once and nothing is measured.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from strategies.base import gil_enabled

ENV = "FT_HARNESS_PAIR_SLOWDOWN"
KERNEL_PASSES = 4000  # about 40 ms on the 2-core VM: the probe takes about 0.4 s
REPEATS = 3


def numpy_kernel(passes: int = KERNEL_PASSES) -> float:
    """Seconds for `passes` rounds of small-array work like one layer of a tiny model's
    microbatch (matmul, bias, ReLU, a sum), on arrays of the calling thread's own."""
    rng = np.random.default_rng(0)
    x, w, bias = rng.random((64, 64)), rng.random((64, 32)), rng.random(32)
    h = np.empty((64, 32))
    start = time.perf_counter()
    for _ in range(passes):
        np.matmul(x, w, out=h)
        np.add(h, bias, out=h)
        np.maximum(h, 0.0, out=h)
        h.sum()
    return time.perf_counter() - start


def two_at_once(kernel: Callable[[], float]) -> float:
    """The longer of two threads' times for `kernel`, both started together."""
    times = [0.0, 0.0]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        times[i] = kernel()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(times)


def pair_slowdown(
    kernel: Callable[[], float] = numpy_kernel, repeats: int = REPEATS
) -> float | None:
    """Two threads at once ÷ one alone (medians of `repeats` each; the slowdown comes and goes,
    so not the best of them): 1.0 when they do not slow each other; None where the GIL is on
    (the threads would take turns, not share the CPUs)."""
    if gil_enabled():
        return None
    # one BLAS thread, as the strategies pin it: BLAS's own threads are not what is measured
    with threadpool_limits(limits=1, user_api="blas"):
        kernel()  # warm-up: first-call costs (BLAS's buffers, NumPy's caches) are not sharing
        alone = statistics.median(kernel() for _ in range(repeats))
        together = statistics.median(two_at_once(kernel) for _ in range(repeats))
    return together / alone

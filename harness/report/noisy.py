"""Which cells were measured while the machine did other work (the report's noise column).

Every pyperf run records `ft_noise` (harness.bench.noise): the share of the machine's CPU time,
over the windows in which its values were measured, that went to other processes or to other
guests (steal). A cell is *noisy* when the mean of its runs' shares is above THRESHOLD: one
busy process among its runs is enough when it took a large share. Raw files from before this
was recorded have no such facts: their cells say "not measured", never "quiet".

Runs where the GIL is off also record `ft_pair_slowdown` (harness.bench.pairprobe): how much two
threads doing NumPy work of their own slowed each other down, measured before each round. The
noise meter cannot see that cost (no other work, no steal), yet it bounds every threads speed-up
of the configuration; above PAIR_THRESHOLD the report warns.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from harness.report.rawdata import Measurement

THRESHOLD = 0.10  # a tenth of the machine's CPU time went elsewhere while values were taken
# Two threads' independent NumPy work 15 % slower than one alone: on the 2-core VM the probe read
# 1.03-1.04 while cp313t's threads x2 ran at 1.7x serial and 1.13-1.24 while it ran at 1.34-1.47x.
PAIR_THRESHOLD = 1.15
PAIR_ADVICE = (
    "the host is making threads that share one process's objects pay for it now (where it put "
    "the guest's CPUs changes over time, and /proc/stat does not show it): compare with a rerun "
    "later, or on another machine, before reading the free-threaded threads speed-ups as the "
    "interpreter's"
)
ADVICE = (
    "close other work on the machine (or wait for it), tune it for benchmarks with "
    "`python -m pyperf system tune` (as root; `system reset` undoes it), and run more "
    "rounds (`nox -s report -- --rounds 8`, or `--until 5%`) so that a burst of noise is "
    "one round among many"
)


def cell_noise(m: Measurement) -> dict[str, Any] | None:
    """The noise of one cell's runs: mean and worst share, whether it is noisy; None when its
    raw file recorded none."""
    shares = [float(x) for x in m.run_facts("ft_noise")]
    if not shares:
        return None
    mean = statistics.fmean(shares)
    return {"mean": mean, "max": max(shares), "runs": len(shares), "noisy": mean > THRESHOLD}


def configuration_noise(config: str, cells: list[Measurement]) -> dict[str, Any]:
    """What the machine did while one configuration was measured, over all of its runs."""
    runs = [r.get_metadata() for m in cells for r in m.bench.get_runs() if r.values]
    measured = [r for r in runs if "ft_noise" in r]
    flagged = [m.cell.name for m in cells if (n := cell_noise(m)) is not None and n["noisy"]]
    rounds = {r["ft_round"] for r in runs if "ft_round" in r}
    return {
        "configuration": config,
        "cells": len(cells),
        "runs": len(runs),
        "measured_runs": len(measured),
        "rounds": len(rounds) or None,
        "noise_mean": mean_of(measured, "ft_noise"),
        "noise_max": max((float(r["ft_noise"]) for r in measured), default=None),
        "other_cpu_s": total_of(measured, "ft_noise_other_cpu_s"),
        "steal_s": total_of(measured, "ft_noise_steal_s"),
        "window_s": total_of(measured, "ft_noise_wall_s"),
        "load_before": mean_of(measured, "ft_load_before"),
        "load_after": mean_of(measured, "ft_load_after"),
        "cpu_mhz": mean_of(measured, "ft_cpu_mhz"),
        "cpus": first_of(measured, "ft_noise_cpus"),
        "noisy_cells": flagged,
        **pair_slowdown(runs),
    }


def pair_slowdown(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median and worst of the pair-probe readings, one per round (every run of a round
    carries its round's; None where the GIL was on), and whether the median is above
    PAIR_THRESHOLD. Per round, not per run: a round that measured every cell would otherwise
    outweigh one that measured only the cells still too wide."""
    by_round = {
        r.get("ft_round"): float(r["ft_pair_slowdown"]) for r in runs if "ft_pair_slowdown" in r
    }
    found = list(by_round.values())
    median = statistics.median(found) if found else None
    return {
        "pair_slowdown": median,
        "pair_slowdown_max": max(found, default=None),
        "threads_slowed": median is not None and median > PAIR_THRESHOLD,
    }


def mean_of(runs: Iterable[dict[str, Any]], key: str) -> float | None:
    found = [float(r[key]) for r in runs if key in r]
    return statistics.fmean(found) if found else None


def total_of(runs: Iterable[dict[str, Any]], key: str) -> float | None:
    found = [float(r[key]) for r in runs if key in r]
    return sum(found) if found else None


def first_of(runs: list[dict[str, Any]], key: str) -> Any:
    return next((r[key] for r in runs if key in r), None)


def noise_summary(configs: list[str], measurements: list[Measurement]) -> dict[str, Any]:
    """Per configuration, the flagged cells, and whether the run as a whole was noisy."""
    per = [configuration_noise(c, [m for m in measurements if m.config == c]) for c in configs]
    flagged = [
        {"configuration": p["configuration"], "name": name}
        for p in per
        for name in p["noisy_cells"]
    ]
    measured = any(p["measured_runs"] for p in per)
    slowed = [p["configuration"] for p in per if p["threads_slowed"]]
    return {
        "threshold": THRESHOLD,
        "measured": measured,
        "configurations": per,
        "noisy_cells": flagged,
        "noisy": bool(flagged),
        "advice": ADVICE if flagged else None,
        "pair_threshold": PAIR_THRESHOLD,
        "threads_slowed": slowed,
        "pair_advice": PAIR_ADVICE if slowed else None,
    }

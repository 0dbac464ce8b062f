"""Which cells were measured while the machine did other work (the report's noise column).

Every pyperf run records `ft_noise` (harness.bench.noise): the share of the machine's CPU time,
over the windows in which its values were measured, that went to other processes or to other
guests (steal). A cell is *noisy* when the mean of its runs' shares is above THRESHOLD: one
busy process among its runs is enough when it took a large share. Raw files from before this
was recorded have no such facts: their cells say "not measured", never "quiet".
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from harness.report.rawdata import Measurement

THRESHOLD = 0.10  # a tenth of the machine's CPU time went elsewhere while values were taken
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
    return {
        "threshold": THRESHOLD,
        "measured": measured,
        "configurations": per,
        "noisy_cells": flagged,
        "noisy": bool(flagged),
        "advice": ADVICE if flagged else None,
    }

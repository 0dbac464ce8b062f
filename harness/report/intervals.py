"""95 % confidence intervals for speed-ups (ratios of mean time per unit), by Fieller's theorem.

A speed-up is R = mean(base) / mean(other). Fieller's interval is every R for which
mean(base) - R mean(other) is not significantly different from 0:

    (a - R b)^2 <= t^2 (va + R^2 vb),   a, b the means, va, vb the variances of the means

a quadratic in R, solved in closed form (nothing random: the same values give the same interval).
t is the two-tailed 95 % critical value of the same test the verdict uses (harness.report.rawdata:
pyperf's Student test with na + nb - 2 degrees of freedom where both sides have as many values,
Welch's otherwise; with equal counts both have the same standard error), so the interval leaves
out 1.0 exactly when the verdict is "significant". Where mean(other) itself is not clearly above
zero the set is unbounded, and the interval is None.

The values given are one mean per pyperf process (rawdata.Measurement.samples), as for the
verdict's test: values of one process share its memory layout, hash seed and moment in the run,
and taken as independent they made intervals too narrow to agree from one report to the next.

    python -m harness.report.intervals [--goal 0.05] RAW...
        the widest headline interval and, per configuration, the bench options that select
        what is wider than the goal, as JSON (for the adaptive rounds of harness.bench.rounds)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any


def critical_t(na: int, nb: int, va: float, vb: float) -> float:
    """pyperf's 95 % t table at the degrees of freedom of the verdict's test."""
    from pyperf._utils import tdist95conf_level

    if na == nb:
        return float(tdist95conf_level(na + nb - 2))
    freedom = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return float(tdist95conf_level(max(1, math.floor(freedom))))


def ratio_interval(base: Sequence[float], other: Sequence[float]) -> list[float] | None:
    """Fieller's 95 % interval for mean(base) / mean(other); None under two values on a side,
    with no spread at all, or where the interval is unbounded."""
    if min(len(base), len(other)) < 2:
        return None
    a, b = statistics.fmean(base), statistics.fmean(other)
    va, vb = statistics.variance(base) / len(base), statistics.variance(other) / len(other)
    if va + vb == 0:
        return None
    t2 = critical_t(len(base), len(other), va, vb) ** 2
    lead = b * b - t2 * vb  # the quadratic's leading coefficient: > 0 iff b is clearly above 0
    if lead <= 0:
        return None
    root = math.sqrt(max(0.0, a * a * vb + b * b * va - t2 * va * vb))
    t = math.sqrt(t2)
    return [(a * b - t * root) / lead, (a * b + t * root) / lead]


def with_interval(
    comparison: dict[str, Any], base: Sequence[float], other: Sequence[float]
) -> dict[str, Any]:
    """A rawdata.compare() result with its interval (`ci95`: [low, high] or None)."""
    return {**comparison, "ci95": ratio_interval(base, other)}


def half_width(comparison: dict[str, Any] | None) -> float | None:
    """The larger distance from the speed-up to an end of its interval, relative to the
    speed-up (Fieller's interval is not symmetric): 0.05 means within ±5 %. inf if unbounded."""
    if comparison is None:
        return None
    ci, r = comparison.get("ci95"), comparison["speedup"]
    if ci is None:
        return math.inf
    return max(ci[1] - r, r - ci[0]) / r


def headline_widths(summary: dict[str, Any]) -> dict[str, float]:
    """`cell on configuration` -> half_width, for every headline speed-up."""
    h = summary.get("headline") or {"rows": {}}
    found = {}
    for name, cells in h["rows"].items():
        for config, entry in cells.items():
            width = half_width(entry["vs_serial_default"])
            if width is not None:
                found[f"{name} on {config}"] = width
    return found


def widest(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The headline speed-up with the widest interval: {"cell": ..., "half_width": ...}, the
    half-width None where that interval is unbounded (JSON has no infinity)."""
    widths = headline_widths(summary)
    if not widths:
        return None
    cell = max(widths, key=lambda k: (widths[k], k))
    width = widths[cell]
    return {"cell": cell, "half_width": None if math.isinf(width) else width}  # None: unbounded


def too_wide(summary: dict[str, Any], goal: float) -> dict[str, list[str]]:
    """Configuration -> the bench options (`--cells NAME,...`) that measure again every headline
    cell whose interval is wider than ±goal (or unbounded), with the serial cell of the default
    configuration, which every headline speed-up is divided by. Empty when none is too wide."""
    wide: dict[str, list[str]] = {}
    baseline = None
    for cells in ((summary.get("headline") or {}).get("rows") or {}).values():
        for config, entry in cells.items():
            if entry.get("is_default_baseline"):
                baseline = (config, entry["name"])
            width = half_width(entry.get("vs_serial_default"))
            if width is not None and width > goal:
                wide.setdefault(config, []).append(entry["name"])
    if not wide:
        return {}
    if baseline is not None and baseline[1] not in wide.get(baseline[0], []):
        wide.setdefault(baseline[0], []).insert(0, baseline[1])
    return {config: ["--cells", ",".join(names)] for config, names in sorted(wide.items())}


def main(argv: list[str]) -> int:
    from harness import HarnessError
    from harness.report import rawdata
    from harness.report.summary import summarise

    goal = None
    if argv[:1] == ["--goal"] and len(argv) > 1:
        goal, argv = float(argv[1]), argv[2:]
    try:
        summary = summarise(rawdata.load(argv))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = widest(summary)
    if found is not None and goal is not None:
        found["again"] = too_wide(summary, goal)
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

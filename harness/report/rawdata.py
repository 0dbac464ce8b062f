"""Read `bench`'s raw pyperf files, check that they belong together, and compare benchmarks.

One file per interpreter configuration. Files from another machine or preset are accepted (the
report says where they came from), but files that cannot be compared with each other (other
machine, preset, settings or harness version; one configuration twice) are refused.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyperf

from harness import HarnessError, confignames
from harness.bench.matrix import Cell

# Metadata that must agree across files for their numbers to be comparable, and why in words.
COMPATIBLE = {"hostname": "machine", "ft_cpu_model": "CPU model", "ft_cpu_logical": "logical CPUs",
              "ft_preset": "preset", "ft_settings_sha": "run settings",
              "ft_harness_version": "harness version"}


@dataclass(frozen=True, eq=False)  # identity: a measurement is never equal to another one
class Measurement:
    """One benchmark of one configuration; values are seconds per unit of work."""

    config: str
    cell: Cell
    bench: pyperf.Benchmark
    source: str  # the raw file it came from

    @property
    def values(self) -> list[float]:
        return list(self.bench.get_values())

    @property
    def mean(self) -> float:
        return self.bench.mean()

    @property
    def stdev(self) -> float:
        return self.bench.stdev() if len(self.values) > 1 else 0.0

    @property
    def rate(self) -> float:
        """Units of work per second (samples/s, updates/s)."""
        return 1.0 / self.mean

    @property
    def meta(self) -> dict[str, Any]:
        return self.bench.get_metadata()

    def run_facts(self, key: str) -> list[Any]:
        """A fact recorded per process by the bench's hook (e.g. ft_lost_updates), in run order."""
        return [run.get_metadata()[key] for run in self.bench.get_runs() if key in run.get_metadata()]

    def mean_fact(self, key: str) -> float | None:
        found = self.run_facts(key)
        return statistics.fmean(found) if found else None


@dataclass(frozen=True)
class RawFile:
    path: str
    sha256: str
    config: str
    measurements: list[Measurement]

    def common(self, key: str) -> Any:
        found = {m.meta.get(key) for m in self.measurements}
        return found.pop() if len(found) == 1 else None


def load_file(path: str) -> RawFile:
    try:
        suite = pyperf.BenchmarkSuite.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{path}: not a readable pyperf JSON file ({type(exc).__name__}: {exc})") from None
    configs = {b.get_metadata().get("ft_config") for b in suite.get_benchmarks()}
    if None in configs or not configs:
        raise HarnessError(f"{path}: not made by `python -m harness bench` (a benchmark has no ft_config)")
    if len(configs) > 1:
        raise HarnessError(f"{path}: mixes configurations {', '.join(sorted(configs))}; one file per configuration")
    config = configs.pop()
    found = [Measurement(config, cell_of(b), b, path) for b in suite.get_benchmarks()]
    return RawFile(path, hashlib.sha256(Path(path).read_bytes()).hexdigest(), config, found)


def cell_of(bench: pyperf.Benchmark) -> Cell:
    meta = bench.get_metadata()
    return Cell(meta["ft_workload"], meta["ft_strategy"], int(meta["ft_workers"]),
                meta.get("ft_variant", ""), meta.get("ft_model", ""))


def load(paths: Sequence[str]) -> list[RawFile]:
    """Every file, checked for compatibility, ordered by version (cp313, cp313t, cp313t-gil, cp314
    ...: the default build first, it is the baseline), then other names by name."""
    if not paths:
        raise HarnessError("no raw files given; make them with `nox -s bench` or `python -m harness bench --out`")
    files = [load_file(p) for p in paths]
    check_unique(files)
    check_compatible(files)
    return sorted(files, key=lambda f: config_rank(f.config))


def config_rank(name: str) -> tuple[int, int, int, int, str]:
    return confignames.rank(name)


def check_unique(files: list[RawFile]) -> None:
    seen: dict[str, str] = {}
    for f in files:
        if f.config in seen:
            raise HarnessError(f"configuration {f.config} appears twice: {seen[f.config]} and {f.path}")
        seen[f.config] = f.path


def check_compatible(files: list[RawFile]) -> None:
    """Refuse mixing, naming the first field that differs and each file's value."""
    for key, what in COMPATIBLE.items():
        values = {f.path: f.common(key) for f in files}
        if len(set(values.values())) > 1:
            listing = "; ".join(f"{path}: {value}" for path, value in values.items())
            raise HarnessError(f"these raw files cannot be compared: different {what} ({key}) — {listing}. "
                               "Re-run `nox -s bench` so that every configuration comes from one machine "
                               "and one preset")


# ---- comparisons: pyperf's own test -------------------------------------------------------------

def significance(a: Sequence[float], b: Sequence[float]) -> tuple[bool | None, float | None]:
    """A two-tailed t-test at 95 %: pyperf's own Student test (what `pyperf compare_to` uses) where
    both sides have as many values, Welch's where they do not (pyperf's would fail: its FIXME), as
    when one configuration was re-run with other `-p`/`-n`. (None, None) where no test applies:
    under two values on a side, or no variance at all."""
    from pyperf._utils import is_significant  # the helper behind pyperf compare_to
    if min(len(a), len(b)) < 2:
        return None, None
    try:
        significant, t_score = is_significant(list(a), list(b)) if len(a) == len(b) else welch(a, b)
    except ZeroDivisionError:
        return None, None
    return bool(significant), float(t_score)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[bool, float]:
    """Welch's unequal-variances t-test; its degrees of freedom are rounded down, which can only
    make the test stricter (a larger critical value)."""
    from pyperf._utils import tdist95conf_level  # the same t table as pyperf's own test
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t_score = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    freedom = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return abs(t_score) >= tdist95conf_level(max(1, math.floor(freedom))), t_score


def compare(base: Measurement, other: Measurement) -> dict[str, Any]:
    """How much faster `other` is than `base` (ratio of time per unit), and whether it is real."""
    significant, t_score = significance(base.values, other.values)
    return {"baseline": f"{base.config} {base.cell.name}", "speedup": base.mean / other.mean,
            "significant": significant, "t_score": t_score}


def speedup_label(comparison: dict[str, Any] | None) -> str:
    """A significant ratio as `1.52x`; anything else in words, never as a number."""
    if comparison is None:
        return "—"
    if comparison["significant"] is None:
        return "not tested"
    if not comparison["significant"]:
        return "not significant"
    return f"{comparison['speedup']:.2f}x"

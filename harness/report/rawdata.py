"""Read `bench`'s raw pyperf files, check that they belong together, and compare benchmarks.

One file per interpreter configuration. Files from another machine or preset are accepted (the
report says where they came from), but files that cannot be compared with each other (other
machine, preset, settings or harness version; one configuration twice) are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pyperf

from harness import HarnessError, confignames
from harness.bench.matrix import Cell

# Metadata that must agree across files for their numbers to be comparable, and why in words.
COMPATIBLE = {
    "hostname": "machine",
    "ft_cpu_model": "CPU model",
    "ft_cpu_logical": "logical CPUs",
    "ft_preset": "preset",
    "ft_settings_sha": "run settings",
    "ft_harness_version": "harness version",
}


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
    def samples(self) -> list[float]:
        """The unit of every test and interval: each pyperf process's mean value. Values of one
        process share its memory layout, hash seed and moment in the run, so they vary less among
        themselves than processes do: tested as independent values, two consecutive `nox -s
        report` runs disagreed on 4 of 27 headline verdicts, each "significant" in its own run."""
        return [statistics.fmean(run.values) for run in self.bench.get_runs() if run.values]

    @property
    def sample_stdev(self) -> float:
        samples = self.samples
        return statistics.stdev(samples) if len(samples) > 1 else 0.0

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
        return [
            run.get_metadata()[key] for run in self.bench.get_runs() if key in run.get_metadata()
        ]

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
    suite = read_suite(path)
    configs = {b.get_metadata().get("ft_config") for b in suite.get_benchmarks()}
    if None in configs or not configs:
        raise HarnessError(
            f"{path}: not made by `python -m harness bench` (a benchmark has no ft_config)"
        )
    for bench in suite.get_benchmarks():
        check_benchmark(path, bench)
    if len(configs) > 1:
        raise HarnessError(
            f"{path}: mixes configurations {', '.join(sorted(configs))}; one file per configuration"
        )
    config = configs.pop()
    found = [Measurement(config, cell_of(b), b, path) for b in suite.get_benchmarks()]
    return RawFile(path, hashlib.sha256(Path(path).read_bytes()).hexdigest(), config, found)


def read_suite(path: str) -> pyperf.BenchmarkSuite:
    """pyperf's own reader, on a file checked to be a JSON object first: pyperf meets `[]`,
    `null` or a string with an AttributeError, and other damage with whatever its code hits."""
    try:
        with open(path, "rb") as f:
            head = f.read(1).lstrip() or b" "
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if head not in (b"{", b"\x1f"):  # a JSON object, or gzip (pyperf reads .json.gz too)
        raise HarnessError(f"{path}: not a pyperf JSON file (it must hold one JSON object)")
    try:
        return pyperf.BenchmarkSuite.load(path)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
    ) as exc:
        raise HarnessError(
            f"{path}: not a readable pyperf JSON file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


NAME = re.compile(r"[A-Za-z0-9_.+:=-]*")  # cell fields name plot files: no separators, no NUL
RUN_FACTS: dict[str, tuple[type, ...]] = {  # per-run facts the report reads, and their types
    "ft_digest": (str,),
    "ft_bitwise": (bool,),
    "ft_gil_enabled": (bool,),
    "ft_blas_threads": (int,),
    "ft_lost_updates": (int,),
    "ft_lost_fraction": (int, float),
    "ft_peak_rss_mb": (int, float),
    "ft_stall_fraction": (int, float),
    "ft_time_to_first_batch_s": (int, float),
}


def check_benchmark(path: str, bench: pyperf.Benchmark) -> None:
    """Every value the report reads from a benchmark, checked: one line naming file and field."""
    meta = bench.get_metadata()

    def fail(key: str, value: Any, problem: str) -> NoReturn:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise HarnessError(f"{path}: benchmark {meta.get('name')!r}: {key} = {shown} {problem}")

    for key in ("ft_workload", "ft_strategy", "ft_model", "ft_variant"):
        value = meta.get(key, "")
        required = key in ("ft_workload", "ft_strategy")  # model and variant may be empty
        if not isinstance(value, str) or not NAME.fullmatch(value) or (required and not value):
            fail(key, value, "must be a name of letters, digits and _.+:=-")
    workers = meta.get("ft_workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        fail("ft_workers", workers, "must be an integer >= 1")
    _check_run_config(meta.get("ft_run_config"), fail)
    selection = _json_object(meta.get("ft_selection", "{}"))
    if selection is None or not all(isinstance(v, list) for v in selection.values()):
        fail("ft_selection", meta.get("ft_selection"), "must be a JSON object of lists")
    values = bench.get_values()
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        fail("values", values, "must all be finite numbers > 0 (seconds per unit)")
    for run in bench.get_runs():
        for key, value in run.get_metadata().items():
            if key in RUN_FACTS and not _fact_ok(value, RUN_FACTS[key]):
                fail(key, value, f"must be {' or '.join(t.__name__ for t in RUN_FACTS[key])}")


def _json_object(text: Any) -> dict[str, Any] | None:
    try:
        found = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _check_run_config(text: Any, fail: Any) -> None:
    config = _json_object(text)
    if config is None:
        fail("ft_run_config", text, "must be a JSON object of run options")
    per_rank = config.get("threads_per_rank", 1)
    if isinstance(per_rank, bool) or not isinstance(per_rank, int) or per_rank < 1:
        fail("ft_run_config.threads_per_rank", per_rank, "must be an integer >= 1")


def _fact_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        return False
    return (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or (math.isfinite(value) and value >= 0)
    )


def cell_of(bench: pyperf.Benchmark) -> Cell:
    meta = bench.get_metadata()
    return Cell(
        meta["ft_workload"],
        meta["ft_strategy"],
        int(meta["ft_workers"]),
        meta.get("ft_variant", ""),
        meta.get("ft_model", ""),
    )


def load(paths: Sequence[str]) -> list[RawFile]:
    """Every file, checked for compatibility, ordered by version (cp313, cp313t, cp313t-gil, cp314
    ...: the default build first, it is the baseline), then other names by name."""
    if not paths:
        raise HarnessError(
            "no raw files given; make them with `nox -s bench` or `python -m harness bench --out`"
        )
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
            raise HarnessError(
                f"configuration {f.config} appears twice: {seen[f.config]} and {f.path}"
            )
        seen[f.config] = f.path


def check_compatible(files: list[RawFile]) -> None:
    """Refuse mixing, naming the first field that differs and each file's value."""
    for key, what in COMPATIBLE.items():
        values = {f.path: f.common(key) for f in files}
        if len(set(values.values())) > 1:
            listing = "; ".join(f"{path}: {value}" for path, value in values.items())
            raise HarnessError(
                f"these raw files cannot be compared: different {what} ({key}) — {listing}. "
                "Re-run `nox -s bench` so that every configuration comes from one machine "
                "and one preset"
            )


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
    freedom = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return abs(t_score) >= tdist95conf_level(max(1, math.floor(freedom))), t_score


def compare(base: Measurement, other: Measurement) -> dict[str, Any]:
    """How much faster `other` is than `base` (ratio of time per unit), and whether it is real."""
    significant, t_score = significance(base.samples, other.samples)
    return {
        "baseline": f"{base.config} {base.cell.name}",
        "speedup": base.mean / other.mean,
        "significant": significant,
        "t_score": t_score,
    }


def speedup_label(comparison: dict[str, Any] | None) -> str:
    """A significant ratio as `1.52x`; anything else in words, never as a number."""
    if comparison is None:
        return "—"
    if comparison["significant"] is None:
        return "not tested"
    if not comparison["significant"]:
        return "not significant"
    return f"{comparison['speedup']:.2f}x"

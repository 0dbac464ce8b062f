"""`advise`'s measurements: every strategy available here, at growing worker counts, measured in
interleaved rounds within a time budget, each run checked against serial.

Each run goes through the bench's own CellBench (the same pool handling, unit check and facts as
`bench`, without pyperf's process fan-out): a round opens each candidate's pool, runs it once
untimed (warm-up), once timed, samples its memory, and closes it, candidate after candidate, so
a drift of the machine over a minute lands on every candidate alike. A strategy's sweep grows by
one worker while the last step helped significantly, up to one past the usable CPUs (to show
oversubscription).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import HarnessError
from harness.bench.matrix import Cell, spec_for
from harness.config import RunConfig
from harness.report.rawdata import significance
from harness.workloads import workload_plugin
from strategies.base import usable_cpus

MIN_ROUNDS = 5  # values per candidate before its sweep may grow: medians of five
ROUND_MARGIN = 1.25  # rounds vary: start one only if 1.25 times the last still fits the budget
SERIAL = "serial"


@dataclass(frozen=True, order=True)
class Candidate:
    strategy: str
    workers: int

    @property
    def name(self) -> str:
        return f"{self.strategy}/w{self.workers}"


@dataclass
class Measured:
    """What the rounds found about one candidate."""

    candidate: Candidate
    rates: list[float] = field(default_factory=list)  # units per second, one per round
    digests: set[str] = field(default_factory=set)
    checks: dict[str, Any] = field(default_factory=dict)  # test_loss, lost updates, ...
    peak_rss_mb: float = 0.0
    gil_enabled: bool | None = None
    bitwise: bool = True
    total_threads: int | None = None
    error: str | None = None


@dataclass
class Plan:
    """The sweep's state: candidates measured so far, and what the budget left out."""

    config: RunConfig
    budget_s: float
    started: float = field(default_factory=time.monotonic)
    measured: dict[Candidate, Measured] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    rounds: int = 0

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)


def strategies_for(
    config: RunConfig, only: tuple[str, ...] | None = None
) -> tuple[list[str], list[str]]:
    """(strategies to try, notes on those that cannot run this workload here)."""
    from strategies import REGISTRY, get_strategy

    for name in only or ():
        get_strategy(name)  # an unknown name is an error listing the known ones
    usable, notes = [], []
    for name, cls in REGISTRY.items():
        if only is not None and name not in only and name != SERIAL:
            continue
        for ok, reason in (cls.available(), cls.supports(config.workload)):
            if not ok:
                notes.append(f"{name}: {reason}")
                break
        else:
            usable.append(name)
    return usable, notes


def first_candidates(strategies: list[str]) -> list[Candidate]:
    """Serial, and every other strategy at 1 and 2 workers (1: its own overhead)."""
    found = [Candidate(SERIAL, 1)]
    for name in strategies:
        if name != SERIAL:
            found += [Candidate(name, 1), Candidate(name, 2)]
    return found


def grown(plan: Plan, limit: int) -> list[Candidate]:
    """One more worker for each strategy whose last step was a significant gain, up to `limit`."""
    tops: dict[str, int] = {}
    for c in plan.measured:
        tops[c.strategy] = max(tops.get(c.strategy, 0), c.workers)
    more = []
    for strategy, top in tops.items():
        if strategy == SERIAL or top >= limit:
            continue
        below, last = (
            plan.measured.get(Candidate(strategy, top - 1)),
            plan.measured[Candidate(strategy, top)],
        )
        if below and gained(below.rates, last.rates):
            more.append(Candidate(strategy, top + 1))
    return more


def gained(before: list[float], after: list[float]) -> bool:
    """Whether `after` is significantly faster (higher rate) than `before` (t-test at 95 %)."""
    significant, _ = significance(before, after)
    return bool(significant) and median(after) > median(before)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run_plan(
    config: RunConfig,
    budget_s: float,
    log: Callable[[str], None],
    only: tuple[str, ...] | None = None,
) -> Plan:
    """Measure until every sweep has stopped growing or the budget is spent."""
    spec_for(config.workload)  # a workload without a bench spec cannot be timed: say so first
    plan = Plan(config=config, budget_s=budget_s)
    strategies, notes = strategies_for(config, only)
    plan.skipped += notes
    active = first_candidates(strategies)
    while active:
        for candidate in active:
            plan.measured.setdefault(candidate, Measured(candidate))
        if not rounds(plan, active, MIN_ROUNDS, log):
            break
        active = [c for c in grown(plan, usable_cpus() + 1) if c not in plan.measured]
        active = active and [Candidate(SERIAL, 1), *active]  # serial runs beside every new step
    return plan


def rounds(
    plan: Plan, candidates: list[Candidate], wanted: int, log: Callable[[str], None]
) -> bool:
    """Interleaved rounds until each candidate has `wanted` values; False if the budget ran out."""
    per_round = None
    while min(len(plan.measured[c].rates) for c in candidates) < wanted:
        if per_round is not None and per_round * ROUND_MARGIN > plan.left_s():
            missing = [c.name for c in candidates if len(plan.measured[c].rates) < wanted]
            plan.skipped.append(
                f"stopped after {plan.rounds} rounds to stay within "
                f"{plan.budget_s:.0f} s; short of values: {', '.join(missing)}"
            )
            return False
        start = time.monotonic()
        for candidate in candidates:
            if plan.measured[candidate].error is None:
                measure_once(plan.config, plan.measured[candidate])
        plan.rounds += 1
        per_round = time.monotonic() - start
        log(f"round {plan.rounds}: {len(candidates)} candidates in {per_round:.1f} s")
        if all(plan.measured[c].error for c in candidates):
            return False
    return True


def measure_once(base: RunConfig, found: Measured) -> None:
    """Warm-up, one timed run, the checks; an error marks the candidate, not the whole advice."""
    from harness.bench.main import cell_bench
    from harness.workloads.loader import PeakRss

    c = found.candidate
    config = base.replace(strategy=c.strategy, workers=c.workers)
    bench = cell_bench(Cell(config.workload, c.strategy, c.workers, "", config.model), config)
    try:
        if not bench_is_job(c.strategy):  # a job starts afresh every run: nothing to warm up
            bench.run_once()  # untimed: the pool's first tasks, caches, the probe if any
        with PeakRss() as rss:
            result = bench.run_once()
        record(found, result, bench, rss.peak_mb)
    except HarnessError as exc:
        found.error = str(exc)
    finally:
        bench.close()


def bench_is_job(strategy: str) -> bool:
    from strategies import get_strategy

    return get_strategy(strategy).bench_as_job


def record(found: Measured, result: dict[str, Any], bench: Any, rss_mb: float) -> None:
    spec = bench.spec
    found.rates.append(bench.units / result["wall_s"])
    found.digests.add(str(result.get(spec.digest_key)))
    found.peak_rss_mb = max(found.peak_rss_mb, result.get("peak_rss_mb") or rss_mb)
    info = result.get("strategy_info") or (bench.strategy.info() if bench.strategy else {})
    found.total_threads = info.get("total_threads")
    cls_bitwise = bench.strategy.bitwise_deterministic if bench.strategy else True
    found.bitwise = bool(info.get("bitwise", cls_bitwise))
    interpreter = result.get("interpreter")
    found.gil_enabled = interpreter["gil_enabled"] if interpreter else _gil_here()
    for key in ("test_loss", "final_loss"):
        if result.get(key) is not None:
            found.checks[key] = result[key]
    if bench.probe_result is not None:
        found.checks["lost_updates"] = bench.probe_result.get("lost_updates")
        found.checks["policy"] = bench.probe_result.get("policy")


def _gil_here() -> bool:
    from harness.envinfo import gil_enabled

    return gil_enabled()


def workload_units(config: RunConfig) -> str:
    """What one unit of this workload's work is ("sample", "update"), for the table."""
    return spec_for(workload_plugin(config.workload).name).unit

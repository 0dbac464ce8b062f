"""`advise`'s decision, from measurements alone (no timing here, so it is tested on recorded data).

A candidate is *unsafe* when it changed the result: a bitwise strategy whose determinism digest
differs from serial's (a thread-unsafe model or transform does that), a non-bitwise one whose
held-out loss moved by more than rounding, or a locked async-sgd policy that lost updates. An
unsafe candidate is never recommended. The recommendation is the fastest safe candidate that is
significantly faster than serial (t-test at 95 % over the rounds' rates); when none is, serial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.advise.measure import SERIAL, Candidate, Measured, median
from harness.report.rawdata import significance

LOSS_TOLERANCE = 1e-6  # relative: a strategy that sums in another order differs by rounding only
LOCKED_POLICIES = ("lock", "striped")


@dataclass(frozen=True)
class Row:
    """One line of the ranked table."""

    strategy: str
    workers: int
    rate: float  # median units per second
    values: int
    speedup: float | None  # median rate / serial's median rate
    significant: bool | None  # the t-test over the rates
    efficiency: float | None  # speed-up / threads in all
    peak_rss_mb: float
    gil_enabled: bool | None
    unsafe: str  # why it is unsafe ("" when safe)
    error: str

    @property
    def name(self) -> str:
        return f"{self.strategy} x{self.workers}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "workers": self.workers,
            "rate_per_s": self.rate,
            "values": self.values,
            "speedup": self.speedup,
            "significant": self.significant,
            "efficiency": self.efficiency,
            "peak_rss_mb": self.peak_rss_mb,
            "gil_enabled": self.gil_enabled,
            "unsafe": self.unsafe or None,
            "error": self.error or None,
        }


def unsafe_reason(found: Measured, serial: Measured | None) -> str:
    """Why this candidate's result cannot be trusted ("" when it can)."""
    lost, policy = found.checks.get("lost_updates"), found.checks.get("policy")
    if lost and policy in LOCKED_POLICIES:
        return f"lost {lost} updates under the {policy!r} policy"
    if policy is not None and found.candidate.workers > 1:
        return ""  # several asynchronous writers: timing orders them, so no digest can match
    if len(found.digests) > 1:
        return f"gave {len(found.digests)} different results in {len(found.rates)} runs"
    if serial is None or not serial.digests:
        return ""
    if found.bitwise:
        return "" if found.digests == serial.digests else "result differs from serial's (digest)"
    return _loss_drift(found, serial)


def _loss_drift(found: Measured, serial: Measured) -> str:
    mine, theirs = found.checks.get("test_loss"), serial.checks.get("test_loss")
    if mine is None or theirs is None:
        return ""
    drift = abs(mine - theirs) / max(abs(theirs), 1e-300)
    return "" if drift <= LOSS_TOLERANCE else f"held-out loss differs from serial's by {drift:.1e}"


def rank(measured: dict[Candidate, Measured]) -> list[Row]:
    """Every measured candidate, fastest first (errors last)."""
    serial = measured.get(Candidate(SERIAL, 1))
    rows = [table_row(found, serial) for found in measured.values()]
    return sorted(rows, key=lambda r: (bool(r.error), -r.rate))


def table_row(found: Measured, serial: Measured | None) -> Row:
    rate = median(found.rates) if found.rates else 0.0
    speedup = significant = efficiency = None
    if serial is not None and serial.rates and found.rates:
        speedup = rate / median(serial.rates)
        significant = significance(serial.rates, found.rates)[0]
        efficiency = speedup / (found.total_threads or found.candidate.workers)
    return Row(
        found.candidate.strategy,
        found.candidate.workers,
        rate,
        len(found.rates),
        speedup,
        significant,
        efficiency,
        found.peak_rss_mb,
        found.gil_enabled,
        unsafe_reason(found, serial),
        found.error or "",
    )


def recommend(rows: list[Row]) -> Row | None:
    """The fastest safe row significantly faster than serial; None means: stay serial."""
    winners = [
        r
        for r in rows
        if not r.unsafe
        and not r.error
        and r.strategy != SERIAL
        and r.significant
        and (r.speedup or 0) > 1
    ]
    return max(winners, key=lambda r: r.rate, default=None)


def reasons(rows: list[Row], parameters: int | None) -> list[str]:
    """One reason per strategy, drawn from its best safe row, in words a user can act on."""
    found = []
    for strategy in dict.fromkeys(r.strategy for r in rows if r.strategy != SERIAL):
        mine = [r for r in rows if r.strategy == strategy]
        found.append(strategy_reason(strategy, mine, parameters))
    return found


def strategy_reason(strategy: str, rows: list[Row], parameters: int | None) -> str:
    unsafe = [r for r in rows if r.unsafe]
    if unsafe:
        return f"{strategy}: UNSAFE — {unsafe[0].name} {unsafe[0].unsafe}; never recommended"
    usable = [r for r in rows if not r.error and r.speedup is not None]
    if not usable:
        return f"{strategy}: could not run ({rows[0].error or 'no values'})"
    best = max(usable, key=lambda r: r.rate)
    verdict = (
        f"{best.speedup:.2f}x serial"
        if best.significant
        else "not significantly different from serial"
    )
    return f"{strategy} x{best.workers}: {verdict}{why(strategy, best, parameters)}"


def why(strategy: str, best: Row, parameters: int | None) -> str:
    """A cause the measurements support, where one is plain."""
    slower = best.significant and (best.speedup or 1) < 1
    gained = best.significant and (best.speedup or 0) > 1
    if strategy in ("threads", "asyncio") and best.gil_enabled and not gained:
        return " (GIL-bound: this interpreter runs one thread of Python at a time)"
    if strategy == "blas":
        size = f", {parameters:,} parameters" if parameters else ""
        return (
            " (BLAS threads help: the matrix products dominate)"
            if gained
            else f" (BLAS threads do not help: the model is too small{size})"
        )
    if slower and best.peak_rss_mb:
        return (
            " (slower than serial: the cost of moving work to workers dominates; "
            f"peak RSS {best.peak_rss_mb:.0f} MB)"
        )
    return ""


def advice(measured: dict[Candidate, Measured], parameters: int | None) -> dict[str, Any]:
    """The table, the recommendation and its reasons, as data."""
    rows = rank(measured)
    pick = recommend(rows)
    summary = (
        f"use {pick.strategy} with {pick.workers} workers: {pick.speedup:.2f}x serial"
        if pick
        else "stay serial: no safe strategy was significantly faster than serial here"
    )
    return {
        "rows": [r.as_dict() for r in rows],
        "recommendation": pick.as_dict() if pick else None,
        "summary": summary,
        "reasons": reasons(rows, parameters),
    }

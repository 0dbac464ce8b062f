"""`python -m harness advise`: which strategy, how many workers, and why — for YOUR workload,
model or plug-in, on this interpreter, within a time budget (measure.py measures, decide.py
decides from the measurements alone, render.py prints and draws)."""

from __future__ import annotations

import sys
import time
from typing import Any

from harness.config import RunConfig


def advise(
    config: RunConfig, budget_s: float, quiet: bool = False, only: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Measure every candidate here, check it, and decide; the whole advice as data."""
    from harness.advise.decide import advice
    from harness.advise.measure import run_plan, usable_cpus, workload_units
    from harness.envinfo import gil_enabled, interpreter_info

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    start = time.monotonic()
    plan = run_plan(config, budget_s, log, only)
    uses_model = _uses_model(config)
    parameters = config.parameters if uses_model else None
    return {
        "workload": config.workload,
        "model": config.model if uses_model else "-",
        "unit": workload_units(config),
        "interpreter": interpreter_info()["name"],
        "gil_enabled": gil_enabled(),
        "cpus": usable_cpus(),
        "budget_s": budget_s,
        "elapsed_s": time.monotonic() - start,
        "rounds": plan.rounds,
        "skipped": plan.skipped,
        "config": config.as_dict(),
        **advice(plan.measured, parameters),
    }


def _uses_model(config: RunConfig) -> bool:
    from harness.workloads import workload_plugin

    return workload_plugin(config.workload).uses_model

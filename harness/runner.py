"""Run one (workload, strategy) pair and wrap its numbers in the common result record."""

from __future__ import annotations

from typing import Any

from harness.config import RunConfig
from harness.envinfo import interpreter_info, require_blas
from harness.workloads import get_workload
from strategies import create
from strategies.base import blas_summary


def execute(config: RunConfig) -> dict[str, Any]:
    """Validate, run, and return the result; the strategy is always closed, even on error."""
    require_blas()
    workload = get_workload(config.workload)
    with create(config.strategy, config.workers, **config.strategy_options()) as strategy:
        blas = blas_summary()  # read inside: the strategy has set the BLAS thread count
        measured = workload(config, strategy)
        info = strategy.info()
    return {
        "workload": config.workload, "strategy": config.strategy, "workers": config.workers,
        "seed": config.seed, "interpreter": interpreter_info(), "blas": blas,
        "strategy_info": info, **measured, "config": config.as_dict(),
    }


def summary_line(result: dict[str, Any]) -> str:
    """A short human summary of a result."""
    interp = result["interpreter"]
    return (f"{result['workload']} / {result['strategy']} x{result['workers']} on {interp['name']} "
            f"(gil_enabled={interp['gil_enabled']}): {result['samples_per_s']:.0f} samples/s, "
            f"wall {result['wall_s']:.3f}s, final loss {result['final_loss']:.4f}, "
            f"accuracy {result['accuracy']:.3f}, params {result['params_sha256'][:12]}")

"""Run one (workload, strategy) pair and wrap its numbers in the common result record."""

from __future__ import annotations

from typing import Any

from harness import __version__
from harness.config import RunConfig
from harness.envinfo import interpreter_info, require_blas
from harness.plugins import loaded
from harness.workloads import get_workload
from strategies import open_strategy
from strategies.base import blas_summary


def execute(config: RunConfig) -> dict[str, Any]:
    """Validate, run, and return the result; the strategy is always closed, even on error."""
    require_blas()
    workload = get_workload(config.workload)
    with open_strategy(config) as strategy:
        blas = blas_summary()  # read inside: the strategy has set the BLAS thread count
        measured = strategy.run_workload(workload, config)  # SPMD: on every worker
        info = strategy.info()
    return {
        "workload": config.workload,
        "strategy": config.strategy,
        "workers": config.workers,
        "seed": config.seed,
        "interpreter": interpreter_info(),
        "blas": blas,
        "strategy_info": info,
        **measured,
        "config": config.as_dict(),
        "plugins": loaded(),
        "harness_version": __version__,
    }


# (result key, label, format) shown by the human summary when present and not None.
SUMMARY_FIELDS = [
    ("samples_per_s", "samples/s", "{:,.0f}"),
    ("updates_per_s", "updates/s", "{:,.0f}"),
    ("wall_s", "wall", "{:.3f}s"),
    ("time_to_first_batch_s", "first batch", "{:.3f}s"),
    ("stall_fraction", "stall", "{:.1%}"),
    ("peak_rss_mb", "peak RSS", "{:.0f} MB"),
    ("final_loss", "final loss", "{:.4f}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("lost_updates", "lost updates", "{:,}"),
    ("params_sha256", "params", "{:.12}"),
    ("batches_sha256", "batches", "{:.12}"),
]


def summary_line(result: dict[str, Any]) -> str:
    """A short human summary of any workload's result: the fields it has, in a fixed order."""
    interp = result["interpreter"]
    policy = f" [{result['policy']}]" if "policy" in result else ""
    parts = [
        label + " " + fmt.format(result[key])
        if label not in ("samples/s", "updates/s")
        else fmt.format(result[key]) + " " + label
        for key, label, fmt in SUMMARY_FIELDS
        if result.get(key) is not None
    ]
    return (
        f"{result['workload']} / {result['strategy']} x{result['workers']}{policy} on "
        f"{interp['name']} (gil_enabled={interp['gil_enabled']}): " + ", ".join(parts)
    )

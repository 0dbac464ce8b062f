"""Parallelism strategies. Importing this package fills the registry."""

from typing import Any

from harness import HarnessError

# Registration order is the order `list` and the report show: the reference first, then the
# thread pool, the two process shapes (pool; every worker runs the loop), the rest.
from strategies import serial, threads, processes, spmd, mpi, asyncio_offload, blas  # noqa: F401,I001  # isort: skip
from strategies.base import REGISTRY, Strategy, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "get_strategy", "register", "create", "open_strategy"]


def create(name: str, workers: int, **options: object) -> Strategy:
    """A ready strategy by name; HarnessError (with the reason) if it cannot run here."""
    return _runnable(name)(workers, **options)  # type: ignore[arg-type]


def _runnable(name: str) -> type[Strategy]:
    """The class of a strategy that can run here (HarnessError with the reason if not)."""
    cls = get_strategy(name)
    ok, reason = cls.available()
    if not ok:
        raise HarnessError(f"strategy {name!r} is not available here: {reason}")
    return cls


def open_strategy(config: Any) -> Strategy:
    """The strategy a run configuration names, with its own options (Strategy.from_config);
    HarnessError (with the reason) if it cannot run here or cannot run that workload."""
    cls = _runnable(config.strategy)
    ok, reason = cls.supports(config.workload)
    if not ok:
        raise HarnessError(
            f"the {config.workload} workload does not run on strategy {cls.name!r}: {reason}"
        )
    return cls.from_config(config)

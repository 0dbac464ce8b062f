"""Parallelism strategies. Importing this package fills the registry."""

from harness import HarnessError
# Registration order is the order `list` and the report show: the reference first.
from strategies import serial, threads, processes, mpi, asyncio_offload, blas  # noqa: F401,I001
from strategies.base import REGISTRY, Strategy, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "get_strategy", "register", "create", "open_strategy"]


def create(name: str, workers: int, **options: object) -> Strategy:
    """A ready strategy by name; HarnessError (with the reason) if it cannot run here."""
    cls = get_strategy(name)
    ok, reason = cls.available()
    if not ok:
        raise HarnessError(f"strategy {name!r} is not available here: {reason}")
    return cls(workers, **options)  # type: ignore[arg-type]


def open_strategy(config: object) -> Strategy:
    """The strategy a run configuration names, with its own options (Strategy.from_config);
    HarnessError (with the reason) if it cannot run here or cannot run that workload."""
    cls = get_strategy(config.strategy)  # type: ignore[attr-defined]
    for ok, reason in (cls.available(), cls.supports(config.workload)):  # type: ignore[attr-defined]
        if not ok:
            raise HarnessError(f"strategy {cls.name!r} is not available here: {reason}")
    return cls.from_config(config)

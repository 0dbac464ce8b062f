"""Parallelism strategies. Importing this package fills the registry."""

from typing import Any

from harness import HarnessError
from strategies import asyncio_offload, blas, mpi, processes, serial, spmd, threads  # noqa: F401  (registration)
from strategies.base import REGISTRY, Strategy, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "get_strategy", "register", "create", "for_config"]


def create(name: str, workers: int, **options: object) -> Strategy:
    """A ready strategy by name; HarnessError (with the reason) if it cannot run here."""
    return _runnable(name)(workers, **options)  # type: ignore[arg-type]


def for_config(config: Any) -> Strategy:
    """The ready strategy a run configuration names, built by its class's `from_config`."""
    return _runnable(config.strategy).from_config(config)


def _runnable(name: str) -> type[Strategy]:
    """The class of a strategy that can run here (HarnessError with the reason if not)."""
    cls = get_strategy(name)
    ok, reason = cls.available()
    if not ok:
        raise HarnessError(f"strategy {name!r} is not available here: {reason}")
    return cls

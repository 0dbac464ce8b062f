"""Parallelism strategies. Importing this package fills the registry."""

from harness import HarnessError
from strategies import asyncio_offload, blas, mpi, processes, serial, threads  # noqa: F401  (registration)
from strategies.base import REGISTRY, Strategy, get_strategy, register

__all__ = ["REGISTRY", "Strategy", "get_strategy", "register", "create"]


def create(name: str, workers: int, **options: object) -> Strategy:
    """A ready strategy by name; HarnessError (with the reason) if it cannot run here."""
    cls = get_strategy(name)
    ok, reason = cls.available()
    if not ok:
        raise HarnessError(f"strategy {name!r} is not available here: {reason}")
    return cls(workers, **options)  # type: ignore[arg-type]

"""Workload registry: a workload is `fn(config, strategy) -> dict of results`."""

from __future__ import annotations

from typing import Any, Callable

from harness import HarnessError
from harness.config import RunConfig
from strategies.base import Strategy

Workload = Callable[[RunConfig, Strategy], dict[str, Any]]
WORKLOADS: dict[str, Workload] = {}
DESCRIPTIONS: dict[str, str] = {}


def workload(name: str, description: str) -> Callable[[Workload], Workload]:
    """Decorator registering a workload under `name`; duplicate names are refused."""
    def add(fn: Workload) -> Workload:
        if name in WORKLOADS:
            raise HarnessError(f"workload {name!r} is registered twice")
        WORKLOADS[name], DESCRIPTIONS[name] = fn, description
        return fn
    return add


def get_workload(name: str) -> Workload:
    _load_all()
    try:
        return WORKLOADS[name]
    except KeyError:
        raise HarnessError(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}") from None


def _load_all() -> None:
    """Import every module of this package, so each registers its workloads."""
    import importlib
    import pkgutil
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")

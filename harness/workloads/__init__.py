"""Workload registry: a workload is `fn(config, strategy) -> dict of results`, registered once with
everything the rest of the harness needs to know about it (its options, how to bench it, the
facts the bench records, the cross-field rule its options obey)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness import HarnessError
from harness.options import Option

if TYPE_CHECKING:
    from harness.bench.matrix import WorkloadSpec
    from harness.config import RunConfig
    from strategies.base import Strategy

Run = Callable[["RunConfig", "Strategy"], dict[str, Any]]
# The built-ins, in the order the bench and `list` show them.
BUILTIN = ("data_parallel", "async_sgd", "loader")


@dataclass(frozen=True, kw_only=True)
class ReportSection:
    """A workload's own part of the report: `rows(index)` computes its figures into
    summary.json under `key` (index: harness.report.summary.Index), `markdown(summary)` renders
    them from the summary alone ("" when there is nothing to show)."""

    key: str
    rows: Callable[[Any], Any]
    markdown: Callable[[dict[str, Any]], str]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One registered workload.

    options: the settings it reads beyond the core ones (RunConfig's own fields).
    bench: how `bench` drives it (None: it cannot be benched).
    facts: result keys the bench copies into its raw file's metadata (`ft_<key>`).
    check: a rule across settings (e.g. microbatches divide the batch), raising HarnessError.
    uses_model: whether --model means anything to it.
    report: its own section of the report, if it has one.
    """

    name: str
    description: str
    run: Run
    options: tuple[Option, ...] = ()
    bench: WorkloadSpec | None = None
    facts: tuple[str, ...] = ()
    check: Callable[[RunConfig], None] | None = None
    uses_model: bool = True
    report: ReportSection | None = None
    module: str = ""

    def __call__(self, config: RunConfig, strategy: Strategy) -> dict[str, Any]:
        return self.run(config, strategy)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by name (an SPMD strategy sends the workload to its workers): the receiving
        process looks it up in its own registry, which holds the same plug-ins."""
        return workload_plugin, (self.name,)


WORKLOADS: dict[str, Workload] = {}
DESCRIPTIONS: dict[str, str] = {}  # name -> description, kept for readers of the old registry


def workload(
    name: str,
    description: str,
    *,
    options: tuple[Option, ...] = (),
    bench: WorkloadSpec | None = None,
    facts: tuple[str, ...] = (),
    check: Callable[[RunConfig], None] | None = None,
    uses_model: bool = True,
    report: ReportSection | None = None,
) -> Callable[[Run], Run]:
    """Decorator registering a workload under `name`; a name that is taken is refused."""

    def add(fn: Run) -> Run:
        register_workload(
            Workload(
                name=name,
                description=description,
                run=fn,
                options=options,
                bench=bench,
                facts=facts,
                check=check,
                uses_model=uses_model,
                report=report,
                module=fn.__module__,
            )
        )
        return fn

    return add


def register_workload(declared: Workload) -> Workload:
    if declared.name in WORKLOADS:
        raise HarnessError(
            f"workload {declared.name!r} is registered twice "
            f"({WORKLOADS[declared.name].module} and {declared.module})"
        )
    WORKLOADS[declared.name], DESCRIPTIONS[declared.name] = declared, declared.description
    return declared


def workload_plugin(name: str) -> Workload:
    load_workloads()
    try:
        return WORKLOADS[name]
    except KeyError:
        raise HarnessError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None


def get_workload(name: str) -> Workload:
    """The workload, callable as fn(config, strategy)."""
    return workload_plugin(name)


def load_workloads() -> None:
    """Every plug-in (the built-in workloads first, in BUILTIN order)."""
    from harness import plugins

    plugins.load()


def _load_builtins() -> None:
    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")


_load_all = load_workloads  # the old name
_load_builtins()

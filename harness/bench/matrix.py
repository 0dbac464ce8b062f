"""What `python -m harness bench` measures: cells, their stable names, and the presets.

A cell is one (workload, strategy, workers[, variant][, model]) combination; its benchmark name is
`workload/strategy/wN[/variant][/model]`, where the variant is the workload's own knob (async-sgd:
the update policy; loader: the augmentation; data-parallel: `disk-<augment>` when batches come
from the on-disk set through the loader, nothing when they come from memory) or, for a workload
whose plain form has no variant (data-parallel), a strategy's own knob (its class's
`bench_variants`).

Nothing here names a workload or a strategy: a workload declares its WorkloadSpec (unit, variants,
its share of each preset) where it is registered, and a strategy class declares its own variants
and the cells it adds to each preset (`bench_variants`, `bench_cells`).

One cell kind is not a strategy: PLAIN_LOOP, the hand-written loop of harness.plainloop, timed on
the work of its twin (`Cell.twin`: the harness cell of as many workers) so that the report can
set the harness's overhead beside it. It is no strategy of the registry (`list`, `run` and
`advise` never see it); a workload's preset part lists its cells like any other.
Standard library and harness only: no pyperf here (the report parses names with it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import HarnessError
from harness.config import RunConfig

DATA = "@bench-data"  # placeholder for the bench's on-disk sample set (made once per bench)
DATA_SHAPE = (28, 28)
DATA_SEED = 0


@dataclass(frozen=True, kw_only=True)
class PresetPart:
    """A workload's share of one preset: its cells (the first grid is the one other strategies'
    declared cells join) and its run sizes, `settings[""]` for every cell of the workload and
    `settings[variant]` on top for that variant's cells."""

    grids: tuple[tuple[Cell, ...], ...]
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """How the bench drives one workload (declared with the workload). A benchmark value is
    seconds per *unit* of work (pyperf's inner_loops = units per run), so throughputs compare
    across worker counts even where the work grows with the workers (async-sgd: each worker does
    `updates` updates)."""

    unit: str  # what one unit of work is, for humans: "sample", "update"
    units: Callable[[RunConfig], int]  # units of work in one run
    units_key: str  # the result key that must equal units(config): a check, not a trust
    digest_key: str  # the result key holding the determinism digest
    variants: dict[str, dict[str, Any]]  # variant name ("" = none) -> RunConfig fields
    uses_model: bool = True
    probe: dict[str, Any] | None = None  # fields of an untimed run once per process, for its facts
    presets: dict[str, PresetPart] = field(default_factory=dict)
    misfit: Callable[[RunConfig], str] | None = None  # why a cell cannot run ("" if it can)


PLAIN = (
    "plain"  # on the command line (--variants): the cell without a variant, e.g. plain,allreduce
)
PLAIN_LOOP = "plainloop"  # a cell's "strategy": harness.plainloop's loop (see above)


def variant_name(text: str) -> str:
    return "" if text == PLAIN else text


def cli_text(value: Any) -> str:
    """A list item as the command line writes it (the empty variant as PLAIN)."""
    return PLAIN if value == "" else str(value)


def specs() -> dict[str, WorkloadSpec]:
    """Every registered workload that declares how to bench it."""
    from harness.workloads import WORKLOADS, load_workloads

    load_workloads()
    return {name: w.bench for name, w in WORKLOADS.items() if w.bench is not None}


def spec_for(workload: str) -> WorkloadSpec:
    from harness.workloads import workload_plugin

    spec = workload_plugin(workload).bench
    if spec is None:
        raise HarnessError(
            f"workload {workload!r} declares no bench spec (the `bench=` of its "
            f"registration); workloads with one: {', '.join(specs())}"
        )
    return spec


def strategy_variants(strategy: str) -> dict[str, dict[str, Any]]:
    """A strategy's own knobs as variants (its class's `bench_variants`); none if unknown."""
    from strategies import REGISTRY

    cls = REGISTRY.get(strategy)
    return dict(cls.bench_variants) if cls is not None else {}


def variants_for(workload: str, strategy: str) -> dict[str, dict[str, Any]]:
    """The variants a cell of this workload and strategy may have -> their RunConfig fields."""
    own = spec_for(workload).variants
    return {**own, **strategy_variants(strategy)} if "" in own else own


@dataclass(frozen=True, order=True)
class Cell:
    workload: str
    strategy: str
    workers: int
    variant: str = ""
    model: str = ""  # "" for a workload without a model

    @property
    def name(self) -> str:
        parts = (self.workload, self.strategy, f"w{self.workers}", self.variant, self.model)
        return "/".join(part for part in parts if part)

    @property
    def series(self) -> str:
        """The curve this cell lies on: the strategy, and the variant where there is one."""
        return f"{self.strategy}/{self.variant}" if self.variant else self.strategy

    @property
    def baseline(self) -> Cell:
        """Its serial counterpart: serial, one worker, the same workload variant and model (a
        strategy's own variant has no serial counterpart: the baseline is the plain cell)."""
        variant = self.variant if self.variant in spec_for(self.workload).variants else ""
        return Cell(self.workload, "serial", 1, variant, self.model)

    @property
    def twin(self) -> Cell:
        """The harness cell whose work a plain-loop cell does, timed alike: serial at one
        worker, threads (a pool of threads, as the plain loop's) above."""
        strategy = "serial" if self.workers == 1 else "threads"
        return Cell(self.workload, strategy, self.workers, self.variant, self.model)


def parse_name(name: str) -> Cell:
    """The inverse of Cell.name; variant names never look like model names (tiny, 64-32-10)."""
    parts = name.split("/")
    if len(parts) < 3 or not parts[2].startswith("w") or not parts[2][1:].isdigit():
        raise HarnessError(f"benchmark name {name!r} is not workload/strategy/wN[/variant][/model]")
    workload, strategy, workers, rest = parts[0], parts[1], int(parts[2][1:]), parts[3:]
    variant = rest.pop(0) if rest and rest[0] in variants_for(workload, strategy) else ""
    model = rest.pop(0) if rest else ""
    if rest:
        raise HarnessError(f"benchmark name {name!r} has extra parts: {'/'.join(rest)}")
    return Cell(workload, strategy, workers, variant, model)


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A matrix with its run sizes. `settings` maps "workload" and "workload/variant" to RunConfig
    fields; `pyperf` holds the Runner's defaults (command-line options still override them)."""

    name: str
    cells: tuple[Cell, ...]
    settings: dict[str, dict[str, Any]]
    pyperf: dict[str, int]
    data_samples: int
    description: str = ""
    seed: int = 0

    def fields(self, cell: Cell) -> dict[str, Any]:
        """The RunConfig fields of one cell (data still as the DATA placeholder)."""
        spec, variants = spec_for(cell.workload), variants_for(cell.workload, cell.strategy)
        if cell.variant not in variants:
            raise HarnessError(
                f"{cell.workload} under {cell.strategy} has no variant {cell.variant!r}; "
                f"known: {', '.join(v or '(none)' for v in variants)}"
            )
        model = {"model": cell.model} if spec.uses_model and cell.model else {}
        return {
            "seed": self.seed,
            **self.settings.get(cell.workload, {}),
            **variants[cell.variant],
            **self.settings.get(f"{cell.workload}/{cell.variant}", {}),
            **model,
            "workload": cell.workload,
            # a plain-loop cell does its twin's work: the twin's settings describe it
            "strategy": cell.twin.strategy if cell.strategy == PLAIN_LOOP else cell.strategy,
            "workers": cell.workers,
        }

    def config(self, cell: Cell, data_dir: str) -> RunConfig:
        fields = self.fields(cell)
        if fields.get("data") == DATA:
            fields["data"] = data_dir
        return RunConfig(**fields)

    def uses_data(self, cells: Iterable[Cell]) -> bool:
        return any(self.fields(cell).get("data") == DATA for cell in cells)


def grid(
    workload: str,
    pairs: Sequence[tuple[str, int]],
    variants: Sequence[str] = ("",),
    models: Sequence[str] = ("",),
) -> tuple[Cell, ...]:
    """Every (strategy, workers) pair for every variant and model."""
    return tuple(Cell(workload, s, w, v, m) for v in variants for m in models for s, w in pairs)


def runs(strategies: Sequence[str], workers: Sequence[int]) -> list[tuple[str, int]]:
    """Serial (the baseline) and each strategy at each worker count."""
    return [("serial", 1)] + [(s, w) for s in strategies for w in workers]


@dataclass(frozen=True, kw_only=True)
class PresetInfo:
    """What a preset is apart from its cells, which the workloads and strategies declare."""

    description: str
    pyperf: dict[str, int]
    data_samples: int


PRESETS: dict[str, PresetInfo] = {
    "quick": PresetInfo(
        description="every strategy once at 2 workers, threads at 1/2/4 (a scaling fit), "
        "the three update policies and the Python-augmented loader; minutes",
        # About 0.05-0.3 s per run; 5 processes x (1 warm-up + 2 values): tests and intervals
        # take one mean per process, so processes, not values, buy precision. About 1.5 minutes
        # per configuration on 2 cores, mostly pyperf's process start-ups.
        pyperf={"processes": 5, "values": 2, "warmups": 1, "loops": 1},
        data_samples=512,
    ),
    "full": PresetInfo(
        description="every strategy at 1/2/4 workers, tiny and large models, every policy and "
        "augmentation, strategies' own variants, pyperf's default 20 processes; "
        "for real studies (hours on 2 cores)",
        pyperf={"processes": 20, "values": 3, "warmups": 1, "loops": 1},
        data_samples=4096,
    ),
    "scaling": PresetInfo(
        description="scaling curves for machines with 8 or more cores: 1 to 16 workers, each step "
        "split into 64 microbatches of 64 rows (16 workers still get 4 each); minutes",
        # a strategy whose runs are whole jobs (1-2 s each) gets 9 runs per cell, not 12
        pyperf={"processes": 3, "values": 2, "warmups": 1, "loops": 1},
        data_samples=2048,
    ),
    "smoke": PresetInfo(
        description="a few very short cells for the test suite: checks plumbing, not speed",
        # 3 processes: tests and intervals take one mean per process, and one configuration
        # re-run with a process fewer must still be testable
        pyperf={"processes": 3, "values": 2, "warmups": 0, "loops": 1},
        data_samples=256,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset assembled from every workload's part and every strategy's declared cells."""
    try:
        info = PRESETS[name]
    except KeyError:
        raise HarnessError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    cells: list[Cell] = []
    settings: dict[str, dict[str, Any]] = {}
    for workload, spec in specs().items():
        part = spec.presets.get(name)
        if part is None:
            continue
        cells += [cell for g in part.grids for cell in g] + _strategy_cells(name, workload, part)
        settings.update(
            {
                f"{workload}/{v}" if v else workload: dict(fields)
                for v, fields in part.settings.items()
            }
        )
    return Preset(
        name=name,
        cells=tuple(dict.fromkeys(cells)),
        settings=settings,
        pyperf=info.pyperf,
        data_samples=info.data_samples,
        description=info.description,
    )


def _strategy_cells(preset: str, workload: str, part: PresetPart) -> list[Cell]:
    """The cells a strategy's class declares for this preset and workload (`bench_cells`), on
    the shapes (variant, model) of the workload's first grid; a strategy's own variant replaces
    the workload's plain one."""
    from strategies import REGISTRY

    shapes = list(dict.fromkeys((c.variant, c.model) for c in part.grids[0]))
    found = []
    for name, cls in REGISTRY.items():
        for variant, workers in cls.bench_cells.get(preset, {}).get(workload, {}).items():
            found += [
                Cell(workload, name, w, variant or v, m)
                for v, m in shapes
                for w in workers
                if not variant or v == ""
            ]
    return found


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Explicit lists that replace the preset's values on their dimension (None: keep the preset's)."""

    workloads: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    workers: tuple[int, ...] | None = None
    variants: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    cells: tuple[str, ...] | None = None  # benchmark names: a filter on the cells, not a list

    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

    def as_dict(self) -> dict[str, list[Any]]:
        return {
            k: list(v) for k in self.__dataclass_fields__ if (v := getattr(self, k)) is not None
        }


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)  # and why


def select(preset: Preset, selection: Selection) -> list[Cell]:
    """The preset's cells, or the product of the explicit lists with the preset's other values,
    workload by workload (a variant or a model only where the workload has it); then only the
    cells named by `cells`, if given (a name not among them is an error)."""
    lists = replace(selection, cells=None)
    if lists.empty():
        found = list(preset.cells)
    else:
        workloads = lists.workloads or tuple(dict.fromkeys(c.workload for c in preset.cells))
        found = [cell for workload in workloads for cell in _product(preset, lists, workload)]
    if selection.cells is None:
        return found
    names = {cell.name for cell in found}
    unknown = [name for name in selection.cells if name not in names]
    if unknown:
        raise HarnessError(
            f"--cells {','.join(unknown)}: not a cell of this matrix; its cells are "
            f"{', '.join(c.name for c in found[:6])}{' ...' if len(found) > 6 else ''}"
        )
    return [cell for cell in found if cell.name in selection.cells]


def _product(preset: Preset, selection: Selection, workload: str) -> list[Cell]:
    spec, own = spec_for(workload), [c for c in preset.cells if c.workload == workload]
    runs = _pairs(
        [(c.strategy, c.workers) for c in own] or [("serial", 1)],
        selection.strategies,
        selection.workers,
    )
    known = {v for s, _ in runs for v in variants_for(workload, s)}
    variants = None if selection.variants is None else [v for v in selection.variants if v in known]
    shapes = _pairs(
        [(c.variant, c.model) for c in own] or [(next(iter(spec.variants)), "tiny")],
        variants,
        selection.models if spec.uses_model else None,
    )
    # serial uses one thread whatever it is told: its one cell is w1 (the baseline of the others)
    cells = (Cell(workload, s, 1 if s == "serial" else w, v, m) for v, m in shapes for s, w in runs)
    # a strategy's own variant goes with that strategy only (no threads/allreduce)
    return list(dict.fromkeys(c for c in cells if c.variant in variants_for(workload, c.strategy)))


def _pairs(
    pairs: list[tuple[Any, Any]], firsts: Sequence[Any] | None, seconds: Sequence[Any] | None
) -> list[tuple[Any, Any]]:
    """The preset's pairs that belong together ((strategy, workers), (variant, model): a disk
    variant needs a model that reads 28x28 images); an explicit list replaces its side of every
    pair: a first keeps its own seconds (or all of them if it had none), a second goes with every first."""
    if firsts is not None:
        every = list(dict.fromkeys(b for _, b in pairs))
        pairs = [(a, b) for a in firsts for b in ([b for pa, b in pairs if pa == a] or every)]
    if seconds is not None:
        pairs = [(a, b) for a in dict.fromkeys(a for a, _ in pairs) for b in seconds]
    return list(dict.fromkeys(pairs))


def plan(preset: Preset, selection: Selection, data_dir: str) -> Plan:
    """Cells to run, in a fixed order (the same in pyperf's manager and every worker), and the
    ones skipped with their reason: a strategy unavailable here, a model that does not fit the
    data, work the plain loop does not do."""
    from harness.plainloop import misfit as plain_misfit
    from strategies import get_strategy

    result = Plan()
    for cell in select(preset, selection):
        config = preset.config(
            cell, data_dir
        )  # bad input (a model like 'huge') raises: a usage error
        ok, reason = get_strategy(config.strategy).available()  # a plain-loop cell: its twin's
        if ok:
            ok, reason = get_strategy(config.strategy).supports(cell.workload)
        misfit = spec_for(cell.workload).misfit
        reason = reason if not ok else (misfit(config) if misfit else "")
        if not reason and cell.strategy == PLAIN_LOOP:
            reason = plain_misfit(config)
        if reason:
            result.skipped.append((cell, reason))
        else:
            result.cells.append(cell)
    return result

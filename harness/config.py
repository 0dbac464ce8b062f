"""Run configuration: one frozen, validated object shared by every workload and the CLI.

The core settings (which workload, strategy and model, how many workers, the data and the SGD
hyper-parameters every training workload shares) are this dataclass's fields, each with its help
text. Everything else is a plug-in's option: declared by the workload, the strategy or the model
that reads it (harness.options.Option), validated here, and read as an attribute like a field
(`config.policy`). An option that does not apply to the chosen workload, strategy and model is
refused, unless it is left at its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from harness import HarnessError
from harness.options import Option

if TYPE_CHECKING:
    from harness.models import Model


def _core(default: Any, help_text: str, minimum: float | None = None) -> Any:
    return field(default=default, metadata={"help": help_text, "minimum": minimum})


@dataclass(frozen=True, kw_only=True, init=False)
class RunConfig:
    """Everything that defines one run; two equal configs give bitwise-equal training."""

    workload: str = _core("data-parallel", "what to run (python -m harness list)")
    strategy: str = _core("serial", "how to run it in parallel (python -m harness list)")
    workers: int = _core(1, "workers of the strategy", 1)
    model: str = _core(
        "tiny",
        "a model any plug-in accepts: tiny | small | large | widths "
        "like 64-32-10 | a plug-in's model",
    )
    seed: int = _core(0, "the seed every random draw derives from", 0)
    batch: int = _core(
        1024, "rows per step (data-parallel), per update (async-sgd), per loaded batch (loader)", 1
    )
    lr: float = _core(0.1, "learning rate (> 0)")
    train_samples: int = _core(8192, "synthetic training rows", 1)
    test_samples: int = _core(1024, "synthetic held-out rows", 1)
    force: bool = _core(False, "allow more than 4 workers per usable CPU (harness.memory)")
    options: tuple[tuple[str, Any], ...] = field(default=(), metadata={"help": ""})

    def __init__(self, **given: Any) -> None:
        """Core fields by name; every other keyword is a plug-in option."""
        for core in core_fields():
            object.__setattr__(self, core.name, given.pop(core.name, core.default))
        extra = dict(given.pop("options", ()))
        extra.update(given)
        object.__setattr__(self, "options", _resolve_options(self, extra))
        self._validate()

    def __getattr__(self, name: str) -> Any:
        """A plug-in option of the chosen workload, strategy or model, as if it were a field."""
        if name.startswith("_"):
            raise AttributeError(name)
        for key, value in self.__dict__.get("options", ()):
            if key == name:
                return value
        raise AttributeError(
            f"{name!r} is not an option of workload {self.workload!r}, "
            f"strategy {self.strategy!r} or model {self.model!r}"
        )

    def _validate(self) -> None:
        for core in core_fields():
            core_option(core).validate(getattr(self, core.name))
        _require(self.lr > 0, f"lr={self.lr} must be > 0")
        _require(
            self.train_samples >= self.batch,
            f"train_samples={self.train_samples} must be >= batch={self.batch}",
        )
        plugins = chosen(self)
        for declared in plugins:
            check = getattr(declared, "check", None) or getattr(declared, "check_config", None)
            if check is not None:
                check(self)

    def build_model(self) -> Model:
        from harness.models import make_model

        return make_model(self.model)

    @property
    def parameters(self) -> int:
        """How many parameters the model has."""
        return self.build_model().size

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Every setting of this run, core and plug-in, flat."""
        return {**{f.name: getattr(self, f.name) for f in core_fields()}, **dict(self.options)}

    def changed(self) -> dict[str, Any]:
        """The settings that differ from their defaults (what a command line must say)."""
        defaults = {f.name: f.default for f in core_fields()}
        defaults.update({o.name: o.default for o in applicable_options(self)})
        return {k: v for k, v in self.as_dict().items() if v != defaults.get(k, object())}

    # kept for readers that still ask for the MLP's widths
    @property
    def widths(self) -> tuple[int, ...]:
        from harness.model import parse_widths

        return parse_widths(self.model)

    @property
    def microbatch_size(self) -> int:
        return self.batch // self.microbatches


def core_fields() -> list[Any]:
    return [f for f in fields(RunConfig) if f.name != "options"]


def core_option(core: Any) -> Option:
    """A core field as an Option: the CLI and `list` treat both kinds alike."""
    kind = {"int": int, "float": float, "str": str, "bool": bool}[str(core.type)]
    default = None if core.default is MISSING else core.default
    return Option(
        name=core.name,
        kind=kind,
        default=default,
        help=core.metadata["help"],
        minimum=core.metadata["minimum"],
    )


def chosen(config: RunConfig) -> list[Any]:
    """The plug-ins a config names: its workload, its strategy class and its model family."""
    from harness.models import model_plugin
    from harness.workloads import workload_plugin
    from strategies import get_strategy

    workload = workload_plugin(config.workload)
    found: list[Any] = [workload, get_strategy(config.strategy)]
    if workload.uses_model:
        found.append(model_plugin(config.model))
    return found


def applicable_options(config: RunConfig) -> list[Option]:
    """The options of the chosen plug-ins, each name once."""
    by_name: dict[str, Option] = {}
    for declared in chosen(config):
        for option in declared.options:
            by_name.setdefault(option.name, option)
    return list(by_name.values())


def all_options() -> dict[str, list[tuple[str, Option]]]:
    """Every option any registered plug-in declares -> (owner, option) pairs; one name may be
    declared by several plug-ins (the same Option, e.g. --data by data-parallel and loader)."""
    from harness import plugins
    from harness.models import MODELS
    from harness.workloads import WORKLOADS
    from strategies import REGISTRY

    plugins.load()
    owners = [
        *((f"workload {n!r}", w.options) for n, w in WORKLOADS.items()),
        *((f"strategy {n!r}", c.options) for n, c in REGISTRY.items()),
        *((f"model {n!r}", m.options) for n, m in MODELS.items()),
    ]
    found: dict[str, list[tuple[str, Option]]] = {}
    for owner, options in owners:
        for option in options:
            found.setdefault(option.name, []).append((owner, option))
    return found


def _resolve_options(config: RunConfig, given: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The chosen plug-ins' options, given or defaulted, validated; a given option that no chosen
    plug-in declares is refused (left at its default it is dropped, so a preset or a command line
    may carry it for other cells)."""
    applicable = {o.name: o for o in applicable_options(config)}
    everything = all_options()
    for name, value in given.items():
        if name in applicable:
            continue
        if name not in everything:
            raise HarnessError(
                f"{name}={value!r} is not an option of any plug-in; "
                f"known: {', '.join(sorted(everything))}"
            )
        if value != everything[name][0][1].default and value is not None:
            owners = " or ".join(owner for owner, _ in everything[name])
            raise HarnessError(f"{name}={value!r} applies to {owners} only")
    resolved = []
    for name, option in sorted(applicable.items()):
        value = given.get(name, option.default)
        option.validate(value)
        resolved.append((name, value))
    return tuple(resolved)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise HarnessError(message)


def run_options(fields_: Mapping[str, Any]) -> list[str]:
    """Settings as `python -m harness run` takes them: `--name value`, a bare `--name` for True
    (str of a float round-trips exactly)."""
    options: list[str] = []
    for key, value in fields_.items():
        options.append("--" + key.replace("_", "-"))
        if value is not True:
            options.append(str(value))
    return options

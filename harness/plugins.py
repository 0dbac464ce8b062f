"""Where plug-ins come from: the built-ins, installed distributions, and modules named by the user.

A strategy, a workload or a model is declared ONCE, in its own module, by registering it
(`strategies.base.register`, `harness.workloads.workload`, `harness.models.register_model`).
This module only makes sure the right modules are imported, in every process the harness starts:

- the built-ins (the `strategies` package, `harness.workloads`, `harness.models`);
- entry points of installed distributions, in the groups `ft_harness.strategies`,
  `ft_harness.workloads` and `ft_harness.models` (as pytest's `pytest11` and pyperf's
  `pyperf.hook`): loading one imports its module, which registers what it declares;
- modules that are not installed: `--plugin MODULE` or `FT_HARNESS_PLUGINS=mod1,mod2`, where an
  entry may also be the path of a `.py` file or of a package folder. `--plugin` is copied into
  FT_HARNESS_PLUGINS (and a path's folder into PYTHONPATH), so pyperf's workers, pool processes
  and mpi ranks, which inherit the environment, load the same plug-ins.

A plug-in that fails to import, or registers a name that is taken, is a HarnessError naming it.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import HarnessError

ENV = "FT_HARNESS_PLUGINS"
GROUPS = ("ft_harness.strategies", "ft_harness.workloads", "ft_harness.models")
BUILTIN_MODULES = ("strategies", "harness.workloads", "harness.models")


@dataclass(frozen=True)
class Source:
    """One plug-in that was loaded: what `list` and every result record about it."""

    name: str  # entry point name, or the module name
    module: str
    origin: str  # "entry point <group>" or "--plugin" / FT_HARNESS_PLUGINS
    distribution: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "origin": self.origin,
            "distribution": self.distribution,
            "version": self.version,
        }


_loaded: dict[str, Source] = {}  # by module
_done = False


def load() -> None:
    """Import every plug-in once per process (built-ins, entry points, FT_HARNESS_PLUGINS)."""
    global _done
    if _done:
        return
    _done = True  # set first: a plug-in importing harness code must not recurse into here
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for group in GROUPS:
        for entry in metadata.entry_points(group=group):
            _load_entry_point(group, entry)
    for item in _env_items():
        _load_module(item, "FT_HARNESS_PLUGINS")


def add(items: list[str]) -> None:
    """`--plugin ITEM` (repeatable): load now, and pass it on to every process started later."""
    current = _env_items()
    for item in items:
        item = _absolute_if_path(item)
        if item not in current:
            current.append(item)
        _load_module(item, "--plugin")
    os.environ[ENV] = ",".join(current)


def loaded() -> list[dict[str, Any]]:
    """The plug-ins from outside the project that this process loaded (for results and raw files)."""
    return [source.as_dict() for source in _loaded.values()]


def _env_items() -> list[str]:
    return [item.strip() for item in os.environ.get(ENV, "").split(",") if item.strip()]


def _absolute_if_path(item: str) -> str:
    path = Path(item)
    return str(path.resolve()) if item.endswith(".py") or os.sep in item else item


def _load_entry_point(group: str, entry: metadata.EntryPoint) -> None:
    module = entry.value.split(":")[0].strip()
    if module in _loaded:
        return
    dist = getattr(entry, "dist", None)
    source = Source(
        entry.name,
        module,
        f"entry point {group}",
        dist.name if dist else None,
        dist.version if dist else None,
    )
    try:
        entry.load()
    except HarnessError as exc:
        raise HarnessError(f"plugin {entry.name!r} ({group} = {entry.value}): {exc}") from None
    except Exception as exc:  # noqa: BLE001  (any failure of foreign code is one line, named)
        raise HarnessError(
            f"plugin {entry.name!r} ({group} = {entry.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    _loaded[module] = source


def _load_module(item: str, origin: str) -> None:
    """Import a module name, or a `.py` file / package folder by its path."""
    module = _import_name(item)
    if module in _loaded:
        return
    try:
        imported = importlib.import_module(module)
    except HarnessError as exc:
        raise HarnessError(f"plugin {item!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise HarnessError(f"plugin {item!r} failed to load: {type(exc).__name__}: {exc}") from None
    version = getattr(imported, "__version__", None)
    _loaded[module] = Source(module, module, origin, None, str(version) if version else None)


def _import_name(item: str) -> str:
    """The module name of ITEM; a path puts its folder on sys.path (and on PYTHONPATH for the
    processes started later)."""
    if not (item.endswith(".py") or os.sep in item):
        return item
    path = Path(item)
    if not path.exists():
        raise HarnessError(
            f"plugin {item!r}: no such file or folder (give a module name, a .py "
            "file or a package folder)"
        )
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
    return path.stem if path.suffix == ".py" else path.name

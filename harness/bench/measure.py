"""What every benchmark records about itself, and what pyperf's worker processes must inherit.

pyperf starts each worker with a scrubbed environment (PATH, HOME, PYTHONPATH, PYTHON_GIL and the
locale only), so BLAS/OpenMP thread variables and the configuration name would silently vanish:
`inherit_environ` adds them to `--inherit-environ`. pyperf records no free-threading marker and
knows nothing of our workloads: `run_metadata` and `cell_metadata` add them (keys prefixed `ft_`
so they never collide with pyperf's own), and the `ft-harness` hook adds what only exists after
a run (the determinism digest, the GIL state after imports, lost updates, stall fraction).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from harness import __version__
from harness.bench import pairprobe
from harness.bench.matrix import Cell, Preset, Selection, spec_for
from harness.bench.noise import NoiseMeter
from harness.bench.rounds import ROUND_ENV
from harness.config import RunConfig
from harness.envinfo import CONFIG_ENV, cpu_info, interpreter_info, numpy_info
from harness.plugins import ENV as PLUGINS_ENV
from harness.plugins import loaded

PREFIX = "ft_"
INHERITED_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "BLIS_", "GOTO_", "VECLIB_")
INHERITED_NAMES = (CONFIG_ENV, "FT_HARNESS_CACHE", PLUGINS_ENV, ROUND_ENV, pairprobe.ENV)
HOOK_NAME = "ft-harness"
# A run's results copied into its metadata are the workload's declared `facts`, and the
# strategy's info() keys its class declares (`info_facts`), plus these for every strategy.
# bitwise: whether it keeps serial's reduction order (False for blas, or a strategy's variant that
# sums in another order; so a digest that differs from serial is expected there); total_threads:
# the threads it computes with in all, where that is not its worker count.
INFO_KEYS = ("bitwise", "total_threads")


def inherit_environ(environ: Mapping[str, str], already: list[str] | None) -> list[str]:
    """`--inherit-environ` extended with the thread-count variables and ours that are set here."""
    ours = [k for k in sorted(environ) if k.startswith(INHERITED_PREFIXES) or k in INHERITED_NAMES]
    return list(dict.fromkeys([*(already or []), *ours]))


def probe_pair_slowdown(environ: MutableMapping[str, str]) -> None:
    """The manager measures pairprobe's slowdown now, before its cells, for its workers to
    record; where there is none (the GIL is on), an inherited value is dropped, not recorded."""
    slowdown = pairprobe.pair_slowdown()
    if slowdown is None:
        environ.pop(pairprobe.ENV, None)
    else:
        environ[pairprobe.ENV] = f"{slowdown:.4f}"


def thread_environ(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in sorted(environ) if k.startswith(INHERITED_PREFIXES)}


def settings_digest(preset: Preset, selection: Selection) -> str:
    """What makes two raw files comparable: the same preset settings and the same selection."""
    text = json.dumps(
        {
            "preset": preset.name,
            "settings": preset.settings,
            "seed": preset.seed,
            "data_samples": preset.data_samples,
            "selection": selection.as_dict(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_metadata(preset: Preset, selection: Selection) -> dict[str, Any]:
    """Facts common to every benchmark of this process (computed in each pyperf worker)."""
    interp, cpu, numpy = interpreter_info(), cpu_info(), numpy_info()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return prefixed(
        {
            "config": interp["name"],
            "python_version": interp["version"],
            "executable": interp["executable"],
            "py_gil_disabled": interp["py_gil_disabled"],
            "config_args": interp["config_args"],
            "numpy": numpy["version"],
            "blas_library": numpy["blas"]["library"],
            "blas_version": numpy["blas"]["version"],
            "cpu_model": cpu["model"],
            "cpu_logical": cpu["logical"],
            "cpu_physical": cpu["physical"],
            "cpu_usable": cpu["usable"],
            "affinity": ",".join(map(str, affinity)),
            "preset": preset.name,
            "harness_version": __version__,
            "settings_sha": settings_digest(preset, selection),
            "selection": json.dumps(selection.as_dict(), sort_keys=True),
            "thread_env": json.dumps(thread_environ(os.environ), sort_keys=True),
            "plugins": json.dumps(loaded(), sort_keys=True) if loaded() else None,
        }
    )


def cell_metadata(cell: Cell, config: RunConfig) -> dict[str, Any]:
    spec = spec_for(cell.workload)
    return prefixed(
        {
            "workload": cell.workload,
            "strategy": cell.strategy,
            "workers": cell.workers,
            "variant": cell.variant,
            "model": cell.model,
            "unit": spec.unit,
            "units": spec.units(config),
            "run_config": json.dumps(config.as_dict(), sort_keys=True),
        }
    )


def prefixed(values: Mapping[str, Any]) -> dict[str, Any]:
    """pyperf metadata accepts non-empty str, int and float only: drop None and "", keep bools."""
    return {PREFIX + k: v for k, v in values.items() if v is not None and v != ""}


# ---- facts known only after a run: handed to pyperf through a hook ------------------------------

FACTS: dict[str, Any] = {}  # one pyperf worker process measures one cell: module state is enough


def record_run(
    result: Mapping[str, Any],
    digest_key: str,
    facts: tuple[str, ...],
    blas: Mapping[str, Any],
    info: Mapping[str, Any],
    gil: bool,
) -> None:
    """Keep what the latest run of this process found, for the hook to write into its metadata.
    blas, info (the strategy's) and gil describe the process(es) that ran it: this one, or the
    processes of a job the run started."""
    from strategies import REGISTRY

    declared = getattr(REGISTRY.get(str(info.get("name"))), "info_facts", ())
    FACTS.update(prefixed({key: _scalar(result.get(key)) for key in facts}))
    FACTS.update(prefixed({key: _scalar(info.get(key)) for key in (*INFO_KEYS, *declared)}))
    FACTS.update(
        prefixed(
            {
                "digest": result[digest_key],
                "digest_kind": digest_key,
                "blas_threads": blas.get("threads"),
                "gil_enabled": gil,
            }
        )
    )


def _scalar(value: Any) -> Any:
    """pyperf keeps str, int, float (and bools) only: anything else as its JSON text."""
    return value if value is None or isinstance(value, (str, int, float)) else json.dumps(value)


def record_probe(result: Mapping[str, Any]) -> None:
    FACTS.update(prefixed({key: result.get(key) for key in ("lost_updates", "lost_fraction")}))


class FactsHook:
    """A pyperf hook (the protocol of pyperf's HookBase): pyperf calls teardown(metadata) after
    computing a run's values, with the run's own metadata dict."""

    def __init__(self) -> None:
        # pyperf enters the hook around each timed call (warm-ups included): the meter sees
        # exactly the windows in which values were measured
        self.meter = NoiseMeter()

    def __enter__(self) -> None:
        self.meter.start()

    def __exit__(self, *exc: object) -> None:
        self.meter.stop()

    def teardown(self, metadata: dict[str, Any]) -> None:
        metadata.update(FACTS)
        metadata.update(prefixed(self.meter.facts()))
        metadata.update(prefixed({"round": os.environ.get(ROUND_ENV)}))
        if pairprobe.ENV in os.environ:
            metadata.update(prefixed({"pair_slowdown": float(os.environ[pairprobe.ENV])}))


class HookEntry:
    """What pyperf expects of a hook's entry point: a name and load() returning the class."""

    name = HOOK_NAME

    @staticmethod
    def load() -> type[FactsHook]:
        return FactsHook

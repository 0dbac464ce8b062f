"""Up-front resource checks: refuse a run (or a `data make`) that cannot fit, before allocating.

Without them a `--train-samples 1000000000` run fills memory for half a minute and then dies in
an `_ArrayMemoryError` traceback. The estimate counts the large arrays a run holds at once, with
no safety margin: on two runs of ~0.8 GiB it came within +2% and +16% of the measured peak RSS,
so only runs that clearly cannot fit are refused.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import psutil

from harness import HarnessError
from harness.config import RunConfig
from strategies.base import usable_cpus

FLOAT = 8  # bytes of a float64 / int64
WORKERS_PER_CPU = 4  # beyond this, more workers only queue for the CPUs: almost surely a typo


def run_estimate(config: RunConfig) -> dict[str, int]:
    """Bytes of the big arrays of one run, by part. Python ints: no overflow at any size.
    Settings a workload does not have (microbatches, prefetch, data) count as absent."""
    data, prefetch = getattr(config, "data", None), getattr(config, "prefetch", 0)
    widths = _widths(config)
    pixels = widths[0] if widths else 28 * 28
    prefetching = FLOAT * 2 * pixels * config.batch * prefetch * config.workers if data else 0
    if not widths:  # no model (the loader): the pipeline alone
        return {"prefetch": prefetching}
    size, width_sum = config.parameters, sum(widths)
    copies = 1 if _shares_memory(config.strategy) else config.workers  # mpi: each rank its own
    microbatches = getattr(config, "microbatches", 0)
    rows = config.batch // microbatches if microbatches else config.batch
    return {
        "data": copies * _data_bytes(config, widths),
        "parameters": FLOAT * size * (5 * copies + 2 * config.workers),  # shared + per worker
        "gradient rows": FLOAT * size * microbatches * copies,
        "activations": FLOAT
        * 3
        * width_sum
        * (rows * config.workers + config.test_samples * copies),
        "prefetch": prefetching,
    }


def _widths(config: RunConfig) -> tuple[int, ...]:
    """The layer widths the estimate sizes activations by: an MLP's own, a plug-in model's inputs
    and classes; () for a workload without a model."""
    from harness.workloads import workload_plugin

    if not workload_plugin(config.workload).uses_model:
        return ()
    model = config.build_model()
    return tuple(getattr(model, "widths", (model.n_inputs, model.n_classes)))


def _data_bytes(config: RunConfig, widths: tuple[int, ...]) -> int:
    """The synthetic set (inputs, the teacher's hidden layer, logits and labels) plus the
    shared copy of its training part; a `--data` set is read batch by batch (see prefetch)."""
    if getattr(config, "data", None):
        return 0
    rows = config.train_samples + config.test_samples
    generated = rows * (widths[0] + 32 + widths[-1] + 1)
    return FLOAT * (generated + config.train_samples * (widths[0] + 1))


def _shares_memory(strategy: str) -> bool:
    from strategies import REGISTRY

    found = REGISTRY.get(strategy)
    return True if found is None else bool(found.shares_memory)


def check_run(config: RunConfig) -> None:
    """The worker bound (unless --force) and the memory estimate, both before any allocation.
    Not inside an MPI rank: the launcher checked the whole job, and ranks that each refused on
    their own (as the others allocate) would fail a job that fits."""
    from harness.mpi.launch import in_mpi_job

    if in_mpi_job():
        return
    usable = usable_cpus()
    if config.workers > WORKERS_PER_CPU * usable and not config.force:
        raise HarnessError(
            f"workers={config.workers} is more than {WORKERS_PER_CPU} per usable "
            f"CPU ({usable} usable: at most {WORKERS_PER_CPU * usable}); "
            "pass --force to run anyway"
        )
    require_memory(
        run_estimate(config),
        "lower --train-samples, --test-samples, --model, --batch, --prefetch or --workers",
    )


def available_memory() -> int:
    """What this process may still allocate: free RAM, or less under an address-space limit."""
    free = psutil.virtual_memory().available
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY:
        free = min(free, max(0, limit - psutil.Process().memory_info().vms))
    return free


def require_memory(parts: dict[str, int], hint: str) -> None:
    need, free = sum(parts.values()), available_memory()
    if need > free:
        listing = ", ".join(f"{name} {gib(n)}" for name, n in parts.items() if n)
        raise HarnessError(
            f"this needs about {gib(need)} of memory ({listing}) but "
            f"{gib(free)} is available; {hint}"
        )


def require_disk(folder: Path, need: int, hint: str) -> None:
    """`need` bytes must fit on the file system that holds `folder` (or its nearest ancestor)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise HarnessError(
            f"this needs about {gib(need)} of disk in {existing} but {gib(free)} is free; {hint}"
        )


def gib(n: int) -> str:
    """A byte count for people: GiB with one decimal, or MiB/KiB when smaller."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:  # integer arithmetic: a float overflows for a count like 10**400
            whole, tenth = divmod(n * 10 // scale, 10)
            return f"{whole}.{tenth} {unit}"
    return f"{n} B"

"""The loader workload: the data pipeline alone, from disk to collated batches, with no training.

Reads like a consumer loop: open the set, stream its batches through the strategy, hash each
one, and report throughput, first-batch latency, peak memory and a digest of what was delivered.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing
from typing import Any

import psutil

from harness.bench.matrix import DATA, PresetPart, WorkloadSpec, grid, runs
from harness.config import RunConfig
from harness.data.pipeline import (
    PIPELINE_OPTIONS,
    LoadBatch,
    PipelineStats,
    batches_digest,
    epoch_tasks,
    open_source,
    stream,
)
from harness.options import Option
from harness.workloads import ReportSection, workload
from strategies.base import Strategy

RSS_PERIOD_S = 0.05


class PeakRss:
    """Samples the resident memory of this process and its children (process workers) in a
    background thread; `peak_mb` is the largest sum seen. ru_maxrss would miss living children."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ft-harness-rss", daemon=True)

    def sample(self) -> None:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass  # a child that exited between listing and reading
        self.peak_mb = max(self.peak_mb, total / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(RSS_PERIOD_S):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


OPTIONS = (
    *PIPELINE_OPTIONS,
    Option(name="epochs", kind=int, default=1, minimum=1, help="passes over the set"),
)


def units(config: RunConfig) -> int:
    return open_source(config.data).samples * config.epochs  # reads the manifest only


AUGMENTS = {a: {"data": DATA, "augment": a} for a in ("python", "numpy")}
BENCH = WorkloadSpec(
    unit="sample",
    units=units,
    units_key="samples",
    digest_key="batches_sha256",
    variants=AUGMENTS,
    uses_model=False,
    presets={
        "quick": PresetPart(
            grids=(grid("loader", runs(["threads", "processes"], [2]), ["python"]),),
            settings={"": {"batch": 128}},
        ),
        "full": PresetPart(
            grids=(grid("loader", runs(["threads", "processes"], [1, 2, 4]), ["python", "numpy"]),),
            settings={"": {"batch": 128}},
        ),
        "scaling": PresetPart(
            grids=(grid("loader", runs(["threads", "processes"], [2, 4, 8, 16]), ["python"]),),
            settings={"": {"batch": 128}},
        ),
        "smoke": PresetPart(
            grids=(grid("loader", runs(["threads"], [2]), ["numpy"]),), settings={"": {"batch": 64}}
        ),
    },
)


def report_rows(index: Any) -> dict[str, list[dict[str, Any]]]:
    """Loader throughput, and the training loop's stall fraction where batches came from disk."""
    from harness.report.summary import vs_serial

    loading = [
        {
            "configuration": m.config,
            "name": m.cell.name,
            "samples_per_s": m.rate,
            "time_to_first_batch_s": m.mean_fact("ft_time_to_first_batch_s"),
            "peak_rss_mb": m.mean_fact("ft_peak_rss_mb"),
            "vs_serial": vs_serial(index, m),
        }
        for m in index.of("loader")
    ]
    feeding = [
        {
            "configuration": m.config,
            "name": m.cell.name,
            "samples_per_s": m.rate,
            "stall_fraction": m.mean_fact("ft_stall_fraction"),
        }
        for m in index.of("data-parallel")
        if m.cell.variant.startswith("disk")
    ]
    return {"loader": loading, "training_from_disk": feeding}


def report_markdown(s: dict[str, Any]) -> str:
    from harness.report.markdown import optional, rate, scaled, table
    from harness.report.rawdata import speedup_label

    loading, feeding = s["loader"]["loader"], s["loader"]["training_from_disk"]
    parts = []
    if loading:
        parts.append(
            table(
                [
                    "config",
                    "benchmark",
                    "samples/s",
                    "vs serial",
                    "first batch (ms)",
                    "peak RSS (MB)",
                ],
                [
                    [
                        r["configuration"],
                        f"`{r['name']}`",
                        rate(r["samples_per_s"]),
                        speedup_label(r["vs_serial"]) if r["vs_serial"] else "baseline",
                        optional(scaled(r["time_to_first_batch_s"], 1e3), ".1f"),
                        optional(r["peak_rss_mb"], ".0f"),
                    ]
                    for r in loading
                ],
            )
        )
    if feeding:
        parts.append(
            "Training fed from disk through the loader: the stall fraction is the share of the "
            "training loop spent waiting for the next batch.\n\n"
            + table(
                ["config", "benchmark", "samples/s", "stall fraction"],
                [
                    [
                        r["configuration"],
                        f"`{r['name']}`",
                        rate(r["samples_per_s"]),
                        optional(r["stall_fraction"], ".2f"),
                    ]
                    for r in feeding
                ],
            )
        )
    return "## Data loading\n\n" + "\n\n".join(parts) if parts else ""


@workload(
    "loader",
    "read → decode → augment → collate from --data, prefetched (no training)",
    options=OPTIONS,
    bench=BENCH,
    uses_model=False,
    facts=("time_to_first_batch_s", "peak_rss_mb"),
    report=ReportSection(key="loader", rows=report_rows, markdown=report_markdown),
)
def run_loader(config: RunConfig, strategy: Strategy) -> dict[str, Any]:
    source = open_source(config.data)
    tasks = epoch_tasks(source.samples, config.batch, config.seed, config.epochs)
    stats = PipelineStats(bound=config.prefetch * config.workers)
    ordered = config.order == "ordered"
    digests: list[bytes] = []
    samples, first_batch_s = 0, 0.0

    with PeakRss() as rss:
        start = time.perf_counter()
        batches = stream(
            strategy,
            LoadBatch(source, config.augment, config.seed),
            tasks,
            bound=stats.bound,
            ordered=ordered,
            stats=stats,
        )
        with closing(batches):
            for batch in batches:
                first_batch_s = first_batch_s or time.perf_counter() - start
                digests.append(batch.digest())
                samples += len(batch.y)
        wall = time.perf_counter() - start

    return {
        "data": config.data,
        "samples_in_set": source.samples,
        "shape": list(source.shape),
        "epochs": config.epochs,
        "batch": config.batch,
        "batches": len(digests),
        "samples": samples,
        "augment": config.augment,
        "order": config.order,
        "prefetch": config.prefetch,
        "in_flight_bound": stats.bound,
        "peak_in_flight": stats.peak_in_flight,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "time_to_first_batch_s": first_batch_s,
        "peak_rss_mb": rss.peak_mb,
        "batches_sha256": batches_digest(digests, ordered),
    }

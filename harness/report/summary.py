"""`python -m harness report RAW... -o DIR`: REPORT.md, PNG plots and summary.json from raw files.

Every figure is computed once into the summary (written as summary.json) and the Markdown and the
plots are drawn from the summary alone, so the two never disagree. Nothing depends on the time of
rendering, dictionaries are filled in a fixed order, and so the same raw files give the same report.

A benchmark value is seconds per unit of work (see harness.bench.matrix); speed-ups are ratios of mean
time per unit, and each one carries pyperf's own significance test (harness.report.rawdata.compare).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness import HarnessError, atomic, confignames, jsonout
from harness.atomic import sync_file, sync_folder
from harness.bench.matrix import PLAIN_LOOP, Cell, cli_text, get_preset
from harness.report import rawdata, where_time_goes
from harness.report.against import changes, changes_text, load_old_summary
from harness.report.intervals import ratio_interval, widest, with_interval
from harness.report.noisy import cell_noise, noise_summary
from harness.report.rawdata import Measurement, RawFile, compare
from harness.report.scaling import fit

FORMAT = "ft-harness-report/1"


def strategy_order() -> tuple[str, ...]:
    """Registration order (serial first; the built-ins as strategies/__init__ imports them),
    then strategies no plug-in here registers, by name."""
    from strategies import REGISTRY

    return tuple(REGISTRY)


class Index:
    """Measurements by (configuration, cell), in report order."""

    def __init__(self, files: list[RawFile]) -> None:
        self.configs = [f.config for f in files]
        self.default = confignames.baseline(self.configs)  # the oldest default build
        found = [m for f in files for m in f.measurements]
        ordered = sorted(found, key=lambda m: (cell_order(m.cell), rawdata.config_rank(m.config)))
        # the plain loop is a yardstick, not a strategy: only its section reads its cells
        # (harness.report.overhead); every table, fit and plot is the harness's own
        self.all = [m for m in ordered if m.cell.strategy != PLAIN_LOOP]
        self.plain_loop = [m for m in ordered if m.cell.strategy == PLAIN_LOOP]
        self.by_key = {(m.config, m.cell): m for m in ordered}

    def get(self, config: str, cell: Cell) -> Measurement | None:
        return self.by_key.get((config, cell))

    def serial(self, config: str, cell: Cell) -> Measurement | None:
        """The baseline of a cell: serial, one worker, same workload variant and model."""
        return self.get(config, cell.baseline)

    def cells(self) -> list[Cell]:
        return list(dict.fromkeys(m.cell for m in self.all))

    def of(self, workload: str) -> list[Measurement]:
        return [m for m in self.all if m.cell.workload == workload]


def cell_order(cell: Cell) -> tuple[Any, ...]:
    order = strategy_order()
    rank = order.index(cell.strategy) if cell.strategy in order else len(order)
    return (cell.workload, cell.model, cell.variant, rank, cell.strategy, cell.workers)


# ---- the summary -----------------------------------------------------------------------------------


def summarise(files: list[RawFile], traces: list[str] | None = None) -> dict[str, Any]:
    index = Index(files)
    summary: dict[str, Any] = {
        "format": FORMAT,
        "configurations": index.configs,
        "default_configuration": index.default,
        "provenance": provenance(files),
        "settings": settings(files),
        "environment": environment(files),
        "workloads": workload_tables(index),
        "single_thread_cost": single_thread_cost(index),
        "scaling": scaling_fits(index),
        **workload_sections(index),
        "missing": missing_cells(index),
        "noise": noise_summary(index.configs, index.all),
    }
    if traces:  # `run --trace` files: where the time goes, and σ measured beside the fits'
        summary["where_time_goes"] = where_time_goes.summarise(traces)
        where_time_goes.beside_fits(summary["scaling"], summary["where_time_goes"], index)
    summary["headline"] = headline(summary, index)
    if summary["headline"] is not None:
        summary["headline"]["widest_interval"] = widest(summary)
    summary["reproduce"] = reproduce(files)
    return summary


def dates(measurements: Iterable[Measurement]) -> tuple[str, str] | None:
    found = [d for m in measurements if (d := m.bench.get_dates())]
    if not found:
        return None
    return min(d[0] for d in found).isoformat(timespec="seconds"), max(
        d[1] for d in found
    ).isoformat(timespec="seconds")


def provenance(files: list[RawFile]) -> dict[str, Any]:
    first = files[0]
    span = dates(m for f in files for m in f.measurements)
    return {
        "hostname": first.common("hostname"),
        "cpu_model": first.common("ft_cpu_model"),
        "preset": first.common("ft_preset"),
        "harness_version": first.common("ft_harness_version"),
        "pyperf_version": first.common("perf_version"),
        "collected": list(span) if span else None,
        "files": [
            {
                "path": f.path,
                "sha256": f.sha256[:16],
                "configuration": f.config,
                "benchmarks": len(f.measurements),
            }
            for f in files
        ],
    }


def run_shape(bench: Any) -> dict[str, int]:
    """pyperf processes, values and warm-ups per process of one benchmark (`-p`, `-n`, `-w`)."""
    runs = [r for r in bench.get_runs() if r.values]
    return {
        "processes": len(runs),
        "values_per_process": len(runs[0].values) if runs else 0,
        "warmups_per_process": len(runs[0].warmups) if runs else 0,
    }


def file_shape(f: RawFile) -> dict[str, int]:
    """run_shape of a file's first benchmark, with the fewest and the most processes of any of
    its benchmarks (the adaptive rounds give the cells they measure again more)."""
    counts = [run_shape(m.bench)["processes"] for m in f.measurements]
    return {
        **run_shape(f.measurements[0].bench),
        "processes": min(counts),
        "processes_max": max(counts),
    }


def settings(files: list[RawFile]) -> dict[str, Any]:
    """The preset and how many pyperf processes/values/warm-ups each benchmark has."""
    sample = files[0].measurements[0].bench
    preset_name = files[0].common("ft_preset")
    run_configs = {
        m.cell.workload + (f"/{m.cell.variant}" if m.cell.variant else ""): json.loads(
            m.meta["ft_run_config"]
        )
        for m in files[0].measurements
    }
    return {
        "preset": preset_name,
        "description": preset_description(preset_name),
        "selection": json.loads(files[0].common("ft_selection") or "{}"),
        **run_shape(sample),  # the first file's; run_shapes has every file's (they may differ)
        "run_shapes": {f.config: file_shape(f) for f in files},
        "loops": sample.get_metadata().get("loops"),
        "bench_seconds": {
            f.config: round(sum(m.bench.get_total_duration() for m in f.measurements), 1)
            for f in files
        },
        "run_configs": {k: trimmed_config(v) for k, v in sorted(run_configs.items())},
    }


def preset_description(name: str | None) -> str:
    try:
        return get_preset(name or "").description
    except Exception:  # a raw file from a harness with other presets: say nothing, it is only words
        return ""


def trimmed_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings that differ from RunConfig's defaults, minus what the cell's name already
    says and the machine-local data path (the raw files keep every field, in ft_run_config)."""
    from harness.config import all_options, core_fields

    defaults = {f.name: f.default for f in core_fields()}
    defaults.update({name: owners[0][1].default for name, owners in all_options().items()})
    drop = {"workload", "strategy", "workers", "model", "policy", "augment", "data"}
    return {
        k: v for k, v in config.items() if k not in drop and defaults.get(k, v) != v or k == "seed"
    }


def environment(files: list[RawFile]) -> dict[str, Any]:
    first = files[0]
    machine = {
        key: first.common(f"ft_{key}")
        for key in ("cpu_model", "cpu_logical", "cpu_physical", "cpu_usable")
    }
    machine.update(
        hostname=first.common("hostname"),
        platform=first.common("platform"),
        affinity=first.common("ft_affinity"),
        pinned_by_pyperf=first.common("cpu_affinity"),
    )
    return {"machine": machine, "configurations": [configuration_env(f) for f in files]}


def configuration_env(f: RawFile) -> dict[str, Any]:
    keys = (
        "python_version",
        "executable",
        "py_gil_disabled",
        "config_args",
        "numpy",
        "blas_library",
        "blas_version",
        "thread_env",
    )
    env: dict[str, Any] = {"configuration": f.config, **{k: f.common(f"ft_{k}") for k in keys}}
    env["gil_enabled_observed"] = sorted(
        {g for m in f.measurements for g in m.run_facts("ft_gil_enabled")}
    )
    env["blas_threads"] = {
        m.cell.strategy: sorted(set(m.run_facts("ft_blas_threads"))) for m in f.measurements
    }
    return env


# ---- per-workload tables ----------------------------------------------------------------------------


def workload_tables(index: Index) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for m in index.all:
        tables.setdefault(m.cell.workload, []).append(row(index, m))
    return tables


def vs_serial(index: Index, m: Measurement, config: str | None = None) -> dict[str, Any] | None:
    """m against its serial baseline on `config` (default: its own); None for the baseline itself."""
    base = index.serial(config or m.config, m.cell)
    if base is None or base is m:
        return None
    return with_interval(compare(base, m), base.samples, m.samples)


def row(index: Index, m: Measurement) -> dict[str, Any]:
    same = index.serial(m.config, m.cell)
    vs_same, vs_default = vs_serial(index, m), vs_serial(index, m, index.default)
    speedup = 1.0 if same is m else (vs_same["speedup"] if vs_same else None)
    computing = threads(m)
    return {
        "configuration": m.config,
        "name": m.cell.name,
        "workload": m.cell.workload,
        "series": m.cell.series,
        "strategy": m.cell.strategy,
        "workers": m.cell.workers,
        "variant": m.cell.variant,
        "model": m.cell.model,
        "unit": m.meta.get("ft_unit"),
        "mean_s": m.mean,
        "stdev_s": m.stdev,
        "workload_variant": m.cell.baseline.variant,
        "threads": computing,
        "values": len(m.values),
        "rate_per_s": m.rate,
        "is_baseline": same is m,
        "vs_serial": vs_same,
        "vs_serial_default": vs_default,
        "noise": cell_noise(m),
        "efficiency": speedup / computing if speedup is not None else None,
        **digest_facts(m, same),
    }


def threads(m: Measurement) -> int:
    """The threads a cell computes with in all: what its strategy recorded (`total_threads`, e.g.
    a hybrid variant's workers x threads inside each), else its workers, so efficiency compares
    like with like. Raw files from before `total_threads` say threads_per_rank instead."""
    recorded = set(m.run_facts("ft_total_threads"))
    if len(recorded) == 1:
        return int(recorded.pop())
    per_worker = json.loads(m.meta["ft_run_config"]).get("threads_per_rank", 1)
    return m.cell.workers * int(per_worker)


def digest_facts(m: Measurement, serial: Measurement | None) -> dict[str, Any]:
    """The determinism digest of every process's last run: one value, or how many distinct; and
    whether the strategy claims serial's reduction order (False for blas, or a variant that sums
    across workers in the library's order,
    whose digests may differ from serial's by design; None in raw files that do not say)."""
    mine = sorted(set(m.run_facts("ft_digest")))
    theirs = sorted(set(serial.run_facts("ft_digest"))) if serial is not None else []
    agrees = (mine == theirs) if len(mine) == 1 and len(theirs) == 1 else None
    claims = set(m.run_facts("ft_bitwise"))
    return {
        "digest": mine[0][:12] if len(mine) == 1 else None,
        "distinct_digests": len(mine),
        "digest_matches_serial": agrees,
        "bitwise": all(claims) if claims else None,
    }


def single_thread_cost(index: Index) -> list[dict[str, Any]]:
    """Serial on each other configuration vs serial on the default build: extra time per unit."""
    found = []
    for m in index.all:
        if m.config != index.default or not (m.cell.strategy == "serial" and m.cell.workers == 1):
            continue
        for other in (index.get(c, m.cell) for c in index.configs if c != index.default):
            if other is not None:  # t > 0 when `other` is slower, as the cost is then > 0
                significant, t_score = rawdata.significance(other.samples, m.samples)
                found.append(
                    {
                        "name": m.cell.name,
                        "configuration": other.config,
                        "baseline": index.default,
                        "cost_percent": (other.mean / m.mean - 1) * 100,
                        "significant": significant,
                        "t_score": t_score,
                        "cost_interval_percent": cost_interval(other, m),
                    }
                )
    return found


def cost_interval(other: Measurement, base: Measurement) -> list[float] | None:
    """The 95 % interval of the extra time in percent: (time ratio - 1) x 100."""
    found = ratio_interval(other.samples, base.samples)
    return [(x - 1) * 100 for x in found] if found is not None else None


# ---- scaling ---------------------------------------------------------------------------------------


def scaling_fits(index: Index) -> list[dict[str, Any]]:
    """A USL/Amdahl fit per (configuration, workload, series, model) with >= 3 worker counts."""
    curves: dict[tuple[str, str, str, str], list[Measurement]] = {}
    for m in index.all:
        if m.cell.strategy != "serial":
            curves.setdefault((m.config, m.cell.workload, m.cell.series, m.cell.model), []).append(
                m
            )
    return [f for key, points in curves.items() if (f := curve_fit(index, key, points))]


def curve_fit(
    index: Index, key: tuple[str, str, str, str], points: list[Measurement]
) -> dict[str, Any] | None:
    one = next((m for m in points if m.cell.workers == 1), None) or index.serial(
        key[0], points[0].cell
    )
    if one is None:
        return None
    by_count = sorted({1: one, **{m.cell.workers: m for m in points}}.items())
    capacity = [(n, one.mean / m.mean, capacity_error(m, one)) for n, m in by_count]
    errors = [e for _, _, e in capacity]
    found = fit(
        [n for n, _, _ in capacity],
        [c for _, c, _ in capacity],
        errors if all(e > 0 for e in errors[1:]) else None,
    )
    if found is None:
        return None
    return {
        "configuration": key[0],
        "workload": key[1],
        "series": key[2],
        "model": key[3],
        "one_worker": one.cell.name,
        **found.as_dict(),
        "curve": [
            {"workers": n, "capacity": c, "error": e, "fitted": found.capacity(n)}
            for n, c, e in capacity
        ],
    }


def capacity_error(m: Measurement, one: Measurement) -> float:
    """The standard error of C = one.mean / m.mean from both means' (the spread of the processes'
    means / √processes, as the tests use), taken as independent; 0 at N = 1 (C is 1 by
    definition) and where a side has one process."""
    if m is one:
        return 0.0
    relative = [x.sample_stdev / x.mean / math.sqrt(len(x.samples)) for x in (m, one)]
    return one.mean / m.mean * math.hypot(*relative) if all(relative) else 0.0


# ---- workload-specific sections ---------------------------------------------------------------------


def workload_sections(index: Index) -> dict[str, Any]:
    """Each workload's own section (declared with the workload), in registration order."""
    from harness.workloads import WORKLOADS, load_workloads

    load_workloads()
    return {w.report.key: w.report.rows(index) for w in WORKLOADS.values() if w.report}


def missing_cells(index: Index) -> list[dict[str, Any]]:
    """Cells measured on some configurations only (skipped elsewhere, or not asked for)."""
    found = []
    for cell in index.cells():
        absent = [c for c in index.configs if index.get(c, cell) is None]
        if absent:
            found.append({"name": cell.name, "missing_in": absent})
    return found


def headline(summary: dict[str, Any], index: Index) -> dict[str, Any] | None:
    """Data-parallel training from memory, on the model with the most cells (the main curve; the
    first such model on a tie): throughput and speed-up vs serial on the default build, every
    strategy (with its own variants, e.g. allreduce) and worker count by configuration."""
    rows = [r for r in summary["workloads"].get("data-parallel", []) if not r["workload_variant"]]
    if not rows:
        return None
    models = [r["model"] for r in rows]
    model = max(dict.fromkeys(models), key=models.count)
    table: dict[str, dict[str, Any]] = {}
    for r in (r for r in rows if r["model"] == model):
        cell = table.setdefault(f"{r['series']}/w{r['workers']}", {})
        cell[r["configuration"]] = {
            "name": r["name"],  # the benchmark: what `bench --cells` selects
            "rate_per_s": r["rate_per_s"],
            "vs_serial_default": r["vs_serial_default"],
            "noisy": bool((r.get("noise") or {}).get("noisy")),
            "is_default_baseline": r["is_baseline"] and r["configuration"] == index.default,
        }
    cost = [
        c for c in summary["single_thread_cost"] if c["name"] == f"data-parallel/serial/w1/{model}"
    ]
    return {
        "workload": "data-parallel",
        "model": model,
        "unit": rows[0]["unit"],
        "columns": index.configs,
        "rows": table,
        "single_thread_cost": cost,
    }


def reproduce(files: list[RawFile]) -> dict[str, Any]:
    preset = files[0].common("ft_preset") or "quick"
    selection = json.loads(files[0].common("ft_selection") or "{}")
    extra = "".join(f" --{k} {','.join(map(cli_text, v))}" for k, v in selection.items())
    return {
        "nox": f"python3 -m pip install nox && nox -s report -- --preset {preset}{extra}",
        "bench": f"python -m harness bench --preset {preset}{extra} --out reports/raw/<configuration>.json",
        "report": "python -m harness report reports/raw/*.json -o reports/latest",
    }


# ---- writing ---------------------------------------------------------------------------------------


def report_command(
    paths: list[str], out: str, against: str | None = None, traces: list[str] | None = None
) -> str:
    """`traces`: `run --trace` files or folders of them; None: those beside the raw files."""
    target = Path(os.path.abspath(out))  # `-o .` has no name to build a sibling from
    check_output_folder(target)  # before any work: a refusal costs nothing
    old = load_old_summary(against) if against else None
    summary = summarise(rawdata.load(paths), where_time_goes.find_traces(paths, traces))
    if old is not None:
        same = Path(against).resolve() == target.resolve()  # read before it is replaced
        label = f"{against} (the report this one replaced)" if same else against
        summary["against"] = {"folder": label, **changes(old, summary)}
    created = not target.exists()
    try:
        write_report(summary, target)
    except BaseException:
        if created:  # nothing of ours is left behind, not even the folder
            shutil.rmtree(target, ignore_errors=True)
        raise
    done = (
        f"wrote {target / 'REPORT.md'}, {target / 'summary.json'} and {len(summary['plots'])} plots"
    )
    return done + (f"\n{changes_text(summary['against'])}" if old is not None else "")


def write_report(summary: dict[str, Any], target: Path) -> None:
    """Render into a hidden folder inside the target, then move each file in by an atomic rename
    (REPORT.md last), then drop the plots of the earlier report that this one does not have.
    Anything else in the folder, also what appeared while rendering, is left alone."""
    from harness.report.markdown import render_markdown
    from harness.report.plots import render_plots

    earlier = earlier_plots(target)
    temp = target / f".report.{os.getpid()}.tmp"
    try:
        temp.mkdir(parents=True)
        summary["plots"], summary["plots_note"] = render_plots(summary, temp)
        summary["plots"] += where_time_goes.draw(summary, temp)
        text = jsonout.dumps(summary, indent=1, ensure_ascii=False)
        (temp / "summary.json").write_text(text + "\n")
        (temp / "REPORT.md").write_text(render_markdown(summary))
        for name in [*summary["plots"], "summary.json", "REPORT.md"]:
            sync_file(temp / name)
            os.replace(temp / name, target / name)
        for name in set(earlier) - set(summary["plots"]):
            (target / name).unlink(missing_ok=True)
        sync_folder(target)
    except OSError as exc:  # full disk, file-size limit, a folder made read-only meanwhile
        reason = exc.strerror or exc
        raise HarnessError(f"cannot write the report into {target}: {reason}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def earlier_plots(target: Path) -> list[str]:
    """The plots an earlier report in `target` wrote, as its summary.json lists them (so a
    picture someone else put there is never taken for one)."""
    try:
        plots = json.loads((target / "summary.json").read_text()).get("plots")
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return (
        [
            p
            for p in plots
            if isinstance(p, str) and p.endswith(".png") and "/" not in p and not p.startswith(".")
        ]
        if isinstance(plots, list)
        else []
    )


REPORT_FILES = ("REPORT.md", "summary.json")  # with the *.png plots: all that a report writes


def check_output_folder(target: Path) -> None:
    """The folder may hold only an earlier report: anything else there (raw files given as
    input, say) is refused, as a report's files would be mixed with it. Reports killed by
    SIGKILL leave a `.report.<pid>.tmp` folder: removed here once that process is gone."""
    atomic.check_output_folder(target, "-o")
    if not target.exists():
        return
    for stale in target.glob(".report.*.tmp"):
        pid = stale.name.split(".")[2]
        if pid.isdigit() and not atomic.pid_alive(int(pid)):
            atomic.reap(stale, f"left by report process {pid}, which is gone")
    foreign = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in target.iterdir()
        if not (p.is_file() and (p.name in REPORT_FILES or p.suffix == ".png"))
        and not p.name.startswith(".report.")
    )
    if foreign:
        raise HarnessError(
            f"-o {target} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
            "which no report wrote; give a new folder or an earlier report's "
            "(raw files belong elsewhere)"
        )

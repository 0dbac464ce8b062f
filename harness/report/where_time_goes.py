"""The report's "Where the time goes": `run --trace` files as a breakdown per configuration,
strategy, worker count and batch; one timeline; what limits the parallel runs at the smallest
batch traced; and each trace's measured serial fraction beside the scaling fit's σ.

`nox -s report` records the traces beside its raw files (data-parallel tiny, serial and threads ×2,
batch 1024 and 256) and names them with `--traces`; without that option the report reads the
`*.trace.jsonl` files in the raw files' folders. Each trace says which run made it (the `run`
span's configuration and settings), so a file's name is never read for meaning.

Every figure is harness.report.timeline's (the same as `python -m harness trace`). The shares
split the computing workers' time from the first map's start to the last one's end, workers ×
(time in maps + serial part), three ways that add up to one: computing; waiting inside maps
(hand-off, wake-up, imbalance); the serial part between maps (reduction, update, next batch),
where every worker but the caller idles and the caller does the Amdahl part. Start-up is a one-off
cost and is left out of the shares.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness import HarnessError, confignames
from harness.bench.matrix import parse_name
from harness.report.timeline import Timeline, breakdown, timeline_of, totals
from harness.trace import read_events

SUFFIX = ".trace.jsonl"
SETTINGS = ("workload", "strategy", "workers", "model", "batch", "microbatches", "steps")
LOSSES = {"waiting_share": "waiting inside maps", "serial_share": "the serial part"}


def find_traces(raw_paths: list[str], given: list[str] | None) -> list[str]:
    """The trace files: those given (a folder stands for its *.trace.jsonl), else the
    *.trace.jsonl beside the raw files; each once, in name order."""
    places = given if given is not None else sorted({str(Path(p).parent) for p in raw_paths})
    found: list[str] = []
    for place in places:
        path = Path(place)
        if path.is_dir():
            inside = sorted(str(p) for p in path.glob(f"*{SUFFIX}"))
            if given is not None and not inside:  # asked for traces: an empty folder is a mistake
                raise HarnessError(f"--traces {place!r}: no *{SUFFIX} file in that folder")
            found += inside
        elif given is not None:  # a file named on the command line must be there
            if not path.is_file():
                raise HarnessError(f"--traces {place!r}: no such file or folder")
            found.append(place)
    return list(dict.fromkeys(found))


def trace_entry(path: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One trace's run, breakdown per worker, totals and shares (seconds and fractions)."""
    run = next(e for e in events if e["ph"] == "X" and e["name"] == "run")["args"]
    if not isinstance(run.get("settings"), dict) or not isinstance(run.get("configuration"), str):
        raise HarnessError(
            f"trace file {path!r} does not say which run made it (recorded before runs named "
            "themselves, or not by `run --trace`): record it again with run --trace"
        )
    t = timeline_of(events)
    rows, total = breakdown(t), totals(t)
    computing = [r for r in rows if r["tasks"]]
    return {
        "path": path,
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
        "configuration": run["configuration"],
        **{key: run["settings"].get(key) for key in SETTINGS},
        "startup_s": max(r["startup_s"] for r in rows),  # the caller's; 0 on the others
        "compute_s": sum(r["compute_s"] for r in computing),
        "waiting_s": sum(r["waiting_s"] for r in computing),
        "totals": total,
        "shares": shares(computing, total),
        "per_worker": rows,
    }


def shares(computing: list[dict[str, Any]], total: dict[str, Any]) -> dict[str, float] | None:
    """Computing, waiting inside maps and serial part over workers × (in maps + serial part);
    None where no task ran (no map, or tasks streamed with submit)."""
    budget = len(computing) * (total["in_maps_s"] + total["serial_s"])
    if not budget:
        return None
    return {
        "compute_share": sum(r["compute_s"] for r in computing) / budget,
        "waiting_share": sum(r["waiting_s"] for r in computing) / budget,
        "serial_share": len(computing) * total["serial_s"] / budget,
    }


def summarise(paths: list[str]) -> dict[str, Any] | None:
    """The section's figures (None without traces): every trace, the one drawn, the limits."""
    if not paths:
        return None
    traces = sorted((trace_entry(p, read_events(p)) for p in paths), key=order)
    drawn = pick_timeline(traces)
    return {
        "traces": traces,
        "timeline": {"trace": drawn["path"], "plot": plot_name(drawn)},
        "limits": limits(traces),
    }


def order(entry: dict[str, Any]) -> tuple[Any, ...]:
    from harness.report.summary import strategy_order

    strategies = strategy_order()
    rank = strategies.index(entry["strategy"]) if entry["strategy"] in strategies else 99
    return (
        confignames.rank(entry["configuration"]),
        entry["workload"],
        entry["model"],
        rank,
        entry["strategy"],
        entry["workers"],
        -(entry["batch"] or 0),
    )


def parallel(entry: dict[str, Any]) -> bool:
    return entry["workers"] > 1 and entry["shares"] is not None


def free_threaded(config: str) -> bool:
    """cp3Nt: the free-threaded build with the GIL off (not cp3Nt-gil, not a default build)."""
    parsed = confignames.parse_name(config)
    return parsed is not None and parsed[1] == "free-threaded"


def pick_timeline(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """The trace the section draws: threads at the smallest batch, the free-threaded build first
    (the run the limits paragraph leads with); else any parallel run; else the first trace."""
    for wanted in (
        lambda e: e["strategy"] == "threads" and free_threaded(e["configuration"]),
        lambda e: e["strategy"] == "threads",
        parallel,
    ):
        found = [e for e in traces if wanted(e) and parallel(e)]
        if found:
            return min(found, key=lambda e: (e["batch"], e["workers"]))
    return traces[0]


def plot_name(entry: dict[str, Any]) -> str:
    """timeline-<config>-<strategy>-w<N>-b<batch>.png: a first part that names no workload, so
    the per-workload sections do not take it for one of theirs."""
    return (
        f"timeline-{entry['configuration']}-{entry['strategy']}-w{entry['workers']}"
        f"-b{entry['batch']}.png"
    )


def limits(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At the smallest batch any parallel trace has: per parallel trace, its largest loss
    (waiting inside maps or the serial part), and the same run at the largest batch beside it."""
    runs = [e for e in traces if parallel(e)]
    if not runs:
        return []
    smallest = min(e["batch"] for e in runs)
    found = []
    for e in (e for e in runs if e["batch"] == smallest):
        larger = [
            o
            for o in runs
            if o["batch"] > smallest and same_run(o, e, ("configuration", "strategy", "workers"))
        ]
        loss = max(LOSSES, key=lambda k: e["shares"][k])
        other = next(k for k in LOSSES if k != loss)
        big = max(larger, key=lambda o: o["batch"]) if larger else None
        found.append(
            {
                **{k: e[k] for k in ("configuration", "workload", "model", "strategy", "workers")},
                "batch": smallest,
                **e["shares"],
                "limit": LOSSES[loss],
                # how many times the other loss: None where that one is zero
                "times_other": e["shares"][loss] / e["shares"][other]
                if e["shares"][other]
                else None,
                "other": LOSSES[other],
                "larger_batch": big["batch"] if big else None,
                "larger_shares": big["shares"] if big else None,
            }
        )
    return found


def same_run(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return all(a[k] == b[k] for k in ("workload", "model", *keys))


# ---- beside the scaling fits --------------------------------------------------------------------


def beside_fits(fits: list[dict[str, Any]], section: dict[str, Any], index: Any) -> None:
    """Each fit gets `measured_serial_fraction`: the traces of its configuration, workload, model,
    batch and microbatches, of its strategy at any worker count or serial (N = 1)."""
    for fit in fits:
        cell = parse_name(fit["one_worker"])
        bench = index.get(fit["configuration"], cell)
        settings = bench.meta.get("ft_run_config") if bench is not None else None
        wanted = json.loads(settings) if settings else {}
        fit["measured_serial_fraction"] = [
            {
                "strategy": e["strategy"],
                "workers": e["workers"],
                "value": e["totals"]["serial_fraction"],
                "trace": e["path"],
            }
            for e in section["traces"]
            if e["configuration"] == fit["configuration"]
            and e["workload"] == fit["workload"]
            and e["model"] == fit["model"]
            and e["strategy"] in (fit["series"], "serial")
            and e["totals"]["maps"]
            and all(e[k] == wanted.get(k) for k in ("batch", "microbatches"))
        ]


def measured_note(fit: dict[str, Any]) -> str:
    """`; trace 0.041 (serial), 0.079 (×2)` for the σ cell, '' where no trace matches."""
    found = fit.get("measured_serial_fraction")
    if not found:
        return ""
    return "; trace " + ", ".join(f"{m['value']:.3f} ({run_label(m)})" for m in found)


def run_label(m: dict[str, Any]) -> str:
    return "serial" if m["strategy"] == "serial" else f"×{m['workers']}"


def measured_legend(fits: list[dict[str, Any]]) -> str:
    """The σ column's note on the traces' figures, where any fit has one."""
    return MEASURED_LEGEND if any(f.get("measured_serial_fraction") for f in fits) else ""


MEASURED_LEGEND = (
    " *trace*: the serial fraction a `run --trace` of the same workload, model and batch measured "
    "(serial part ÷ (serial part + time in maps); see Where the time goes). σ is the serial share "
    "of one worker's time, so the serial trace is its direct reading; at N workers the maps "
    "shorten and the same serial part weighs more. Where σ is well above the serial trace's "
    "fraction, the time is lost inside the maps, not between them."
)


# ---- Markdown and the plot ------------------------------------------------------------------------


def percent(value: float) -> str:
    return f"{value:.1%}".replace("%", " %")


def section(s: dict[str, Any]) -> str:
    """## Where the time goes, from the summary alone ('' without traces)."""
    from harness.report.markdown import table
    from harness.report.timeline import markdown as worker_table

    w = s.get("where_time_goes")
    if not w:
        return ""
    rows = [
        [
            e["configuration"],
            f"{e['workload']} {e['model']}",
            e["strategy"],
            str(e["workers"]),
            str(e["batch"]),
            str(e["totals"]["maps"]),
            f"{e['totals']['run_s']:.3f}",
            f"{e['startup_s']:.3f}",
            f"{e['compute_s']:.3f}",
            f"{e['waiting_s']:.3f}",
            f"{e['totals']['serial_s']:.3f}",
            " / ".join(percent(e["shares"][k]) for k in ("compute_share", *LOSSES))
            if e["shares"]
            else "—",
            percent(e["totals"]["serial_fraction"]),
        ]
        for e in w["traces"]
    ]
    drawn = next(e for e in w["traces"] if e["path"] == w["timeline"]["trace"])
    folders = sorted(str(Path(e["path"]).parent) for e in w["traces"])
    plot = w["timeline"]["plot"]
    shown = f"\n\n![timeline]({plot})" if plot in s.get("plots", []) else ""
    return (
        f"## Where the time goes\n\nFrom {len(w['traces'])} `run --trace` files in "
        + ", ".join(f"`{folder}/`" for folder in dict.fromkeys(folders))
        + " (one run each; every file's path and sha256 are in summary.json; "
        "`python -m harness trace FILE -o DIR` draws any of them). Seconds over the whole "
        "run: start-up (to the first map), *compute* (inside tasks, summed over the workers "
        "that ran tasks), *waiting* (a map was running but that worker was not in a task: "
        "hand-off, wake-up, imbalance; summed likewise), *serial part* (the caller between two "
        "maps: reduction, update, next batch). *Shares*: compute / waiting / serial part of "
        "workers × (time in maps + serial part), adding up to 100 %. *Serial fraction*: serial "
        "part ÷ (serial part + time in maps), the trace's reading of Amdahl's σ (beside the fit's "
        "in Scaling fits).\n\n"
        + table(
            [
                "config",
                "workload",
                "strategy",
                "workers",
                "batch",
                "steps",
                "run s",
                "start-up s",
                "compute s",
                "waiting s",
                "serial part s",
                "shares: compute / waiting / serial",
                "serial fraction",
            ],
            rows,
        )
        + limits_text(w["limits"])
        + f"\n\nPer worker, {drawn['configuration']} {drawn['strategy']} ×{drawn['workers']} at "
        f"batch {drawn['batch']} (`{drawn['path']}`):\n\n"
        + worker_table(drawn["per_worker"], drawn["totals"]).rstrip()
        + shown
    )


def limits_text(found: list[dict[str, Any]]) -> str:
    """One paragraph: per parallel run at the smallest batch, its largest loss, in numbers."""
    if not found:
        return ""
    parts = []
    for f in sorted(found, key=lambda f: not free_threaded(f["configuration"])):
        text = (
            f"{f['configuration']} {f['strategy']} ×{f['workers']}: {percent(f['compute_share'])} "
            f"computing, {percent(f['waiting_share'])} waiting inside maps, "
            f"{percent(f['serial_share'])} in the serial part, so **{f['limit']}** limits it"
        )
        if f["times_other"] is not None:
            text += f", {f['times_other']:.1f}× {f['other']}"
        if f["larger_shares"]:
            big = f["larger_shares"]
            text += (
                f" (at batch {f['larger_batch']}: {percent(big['waiting_share'])} waiting, "
                f"{percent(big['serial_share'])} serial part)"
            )
        parts.append(text)
    return (
        f"\n\n**What limits the parallel runs at batch {found[0]['batch']}** (the smallest batch "
        "traced), from the shares of the workers' time: " + "; ".join(parts) + "."
    )


def draw(summary: dict[str, Any], folder: Path) -> list[str]:
    """The timeline of the trace the section picked, read again from its file (a Timeline is
    spans, not figures: the summary keeps the figures). [] without traces or matplotlib."""
    w = summary.get("where_time_goes")
    if not w:
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the other plots say so in the report's note
        return []
    from harness.report.timeline import draw as draw_timeline

    t: Timeline = timeline_of(read_events(w["timeline"]["trace"]))
    draw_timeline(t, folder / w["timeline"]["plot"])
    return [w["timeline"]["plot"]]

"""From a `run --trace` file: where the time went, per worker, as a table and a timeline plot.

    python -m harness trace FILE -o DIR   ->  DIR/breakdown.md, DIR/timeline.png, DIR/trace.json

Per worker (process id / thread): *compute*, the time inside its tasks; *waiting*, the time a map
was running but this worker was not in a task (hand-off, wake-up, imbalance). For the caller also
the *serial part*, the time between two maps (reduction, update, next batch: the Amdahl part), and
*start-up*, from the start of the run to its first map. The measured serial fraction is the
serial part over (serial part + time in maps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.trace import read_events

Span = tuple[int, int]  # start_ns, end_ns


@dataclass
class Worker:
    label: str
    tasks: list[tuple[int, int, int]] = field(default_factory=list)  # step, start, end

    @property
    def compute_ns(self) -> int:
        return sum(end - start for _, start, end in self.tasks)


@dataclass
class Timeline:
    run: Span
    caller: tuple[int, int]
    maps: list[Span]
    gaps: list[Span]  # outside map, between consecutive maps
    workers: dict[tuple[int, int], Worker]


def _ns(event: dict[str, Any]) -> Span:
    return event["args"]["start_ns"], event["args"]["end_ns"]


def timeline_of(events: list[dict[str, Any]]) -> Timeline:
    """The spans of a trace, grouped: the run, its maps and gaps, each worker's tasks."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M"}
    spans = [e for e in events if e["ph"] == "X"]
    run = next(e for e in spans if e["name"] == "run")
    caller = (run["pid"], run["tid"])
    workers: dict[tuple[int, int], Worker] = {
        caller: Worker(f"caller (pid {caller[0]}, {names.get(caller, '?')})")
    }
    for e in spans:
        if e["name"] == "task":
            key = (e["pid"], e["tid"])
            label = f"pid {key[0]}, {names.get(key, '?')}"
            workers.setdefault(key, Worker(label)).tasks.append((e["args"]["step"], *_ns(e)))
    return Timeline(
        _ns(run),
        caller,
        [_ns(e) for e in spans if e["name"] == "map"],
        [_ns(e) for e in spans if e["name"] == "outside map"],
        workers,
    )


def breakdown(t: Timeline) -> list[dict[str, Any]]:
    """One row per worker, seconds: compute, waiting inside maps, serial part, start-up."""
    in_maps = sum(end - start for start, end in t.maps)
    serial = sum(end - start for start, end in t.gaps)
    startup = (t.maps[0][0] if t.maps else t.run[1]) - t.run[0]
    rows = []
    for key, worker in t.workers.items():
        mine = key == t.caller
        rows.append(
            {
                "worker": worker.label,
                "tasks": len(worker.tasks),
                "compute_s": worker.compute_ns / 1e9,
                "waiting_s": max(0, in_maps - worker.compute_ns) / 1e9,
                "serial_s": serial / 1e9 if mine else 0.0,
                "startup_s": startup / 1e9 if mine else 0.0,
                "busy_in_maps": worker.compute_ns / in_maps if in_maps else 0.0,
            }
        )
    return rows


def totals(t: Timeline) -> dict[str, float]:
    in_maps = sum(end - start for start, end in t.maps)
    serial = sum(end - start for start, end in t.gaps)
    computing = [w for w in t.workers.values() if w.tasks]
    compute = sum(w.compute_ns for w in computing)
    return {
        "run_s": (t.run[1] - t.run[0]) / 1e9,
        "maps": len(t.maps),
        "in_maps_s": in_maps / 1e9,
        "serial_s": serial / 1e9,
        "serial_fraction": serial / (serial + in_maps) if serial + in_maps else 0.0,
        "workers": len(computing),
        "efficiency_in_maps": compute / (len(computing) * in_maps) if in_maps else 0.0,
    }


def markdown(rows: list[dict[str, Any]], total: dict[str, float]) -> str:
    lines = [
        (
            "| worker | tasks | compute s | waiting in maps s | serial part s | start-up s | "
            "busy in maps |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['worker']} | {r['tasks']} | {r['compute_s']:.3f} | {r['waiting_s']:.3f} | "
        f"{r['serial_s']:.3f} | {r['startup_s']:.3f} | {r['busy_in_maps']:.0%} |"
        for r in rows
    ]
    lines += [
        "",
        (
            f"run {total['run_s']:.3f} s; {total['maps']} maps, {total['in_maps_s']:.3f} s "
            f"in maps, {total['serial_s']:.3f} s between them: measured serial fraction "
            f"{total['serial_fraction']:.1%}; {total['workers']} computing workers busy "
            f"{total['efficiency_in_maps']:.0%} of the time in maps"
        ),
    ]
    if not total["maps"]:
        lines.append("no map was recorded: tasks streamed with submit (the loader) are not traced")
    return "\n".join(lines) + "\n"


def draw(t: Timeline, path: Path, window: int = 3) -> None:
    """Two panels: the whole run, and `window` maps from the middle of it, one row per worker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = len(t.maps) // 2
    last = min(middle + window, len(t.maps)) - 1
    zoom = (t.maps[middle][0], t.maps[last][1]) if t.maps else t.run
    fig, axes = plt.subplots(2, 1, figsize=(12, 2.2 + 0.9 * len(t.workers)))
    for ax, (lo, hi), title in (
        (axes[0], t.run, "whole run"),
        (axes[1], zoom, f"{window} maps from the middle"),
    ):
        _panel(ax, t, lo, hi)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(ax: Any, t: Timeline, lo: int, hi: int) -> None:
    def bars(spans: list[Span], row: int, color: str, label: str | None = None) -> None:
        seen = [((s - origin) / 1e6, (e - s) / 1e6) for s, e in spans if e >= lo and s <= hi]
        ax.broken_barh(seen, (row - 0.35, 0.7), facecolors=color, label=label)

    origin = t.run[0]
    keys = list(t.workers)
    for row, key in enumerate(keys):
        steps = t.workers[key].tasks
        even = [(s, e) for n, s, e in steps if n % 2 == 0]  # alternate shades: steps apart
        bars(even, row, "#1f77b4", None if row else "task")
        bars([(s, e) for n, s, e in steps if n % 2], row, "#6baed6")
    caller = keys.index(t.caller)
    bars(t.gaps, caller, "#ff7f0e", "serial part (between maps)")
    bars([(t.run[0], t.maps[0][0])] if t.maps else [], caller, "#999999", "start-up")
    ax.set_yticks(range(len(keys)), [t.workers[k].label for k in keys], fontsize=8)
    ax.set_xlim((lo - origin) / 1e6, (hi - origin) / 1e6)
    ax.set_xlabel("ms since the run started")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)


def trace_command(file: str, output: str) -> str:
    """Write DIR/breakdown.md, DIR/timeline.png and DIR/trace.json; return the breakdown."""
    events = read_events(file)
    t = timeline_of(events)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown(breakdown(t), totals(t))
    (folder / "breakdown.md").write_text(table)
    (folder / "trace.json").write_text(json.dumps({"traceEvents": events}))
    draw(t, folder / "timeline.png")
    return table + f"wrote {folder / 'breakdown.md'}, timeline.png, trace.json (Perfetto)"

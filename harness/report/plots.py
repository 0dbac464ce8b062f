"""PNG plots from the report's summary: speed-up vs workers (with the ideal line and the fitted
scalability law) and the best throughput per strategy, one pair per workload and model.

matplotlib is imported only here and only when plotting: the report still renders its Markdown
and summary.json from an interpreter without it, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.report.palette import color
from harness.report.scaling import usl


def plot_slug(workload: str, model: str) -> str:
    return f"{workload}-{model}" if model else workload


def render_plots(summary: dict[str, Any], folder: Path) -> tuple[list[str], str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display; also the deterministic backend
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            [],
            "matplotlib is not installed in the interpreter that rendered this report: no plots",
        )
    names: list[str] = []
    for workload, rows in summary["workloads"].items():
        for model in dict.fromkeys(r["model"] for r in rows):
            group = [r for r in rows if r["model"] == model]
            slug = plot_slug(workload, model)
            names += speedup_plot(plt, summary, group, slug, folder)
            names += best_plot(plt, summary, group, slug, folder)
    return names, None


def series_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["series"] for r in rows if r["strategy"] != "serial"))


def speedup_plot(
    plt: Any, summary: dict[str, Any], rows: list[dict[str, Any]], slug: str, folder: Path
) -> list[str]:
    """One panel per strategy: speed-up vs serial (same configuration) against workers."""
    series = series_of(rows)
    if not series:
        return []
    fig, axes = plt.subplots(
        1, len(series), figsize=(3.2 * len(series) + 1, 3.4), sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], series):
        speedup_panel(ax, summary, [r for r in rows if r["series"] == name], name)
    axes[0][0].set_ylabel("speed-up vs serial (same config)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{slug}: speed-up vs workers, 95 % intervals (hollow: not significant)", fontsize=10
    )
    return [save(fig, plt, folder / f"speedup-{slug}.png")]


def speedup_panel(ax: Any, summary: dict[str, Any], rows: list[dict[str, Any]], name: str) -> None:
    # x: the threads a cell computes with in all (a hybrid t2 variant at 2 workers computes with
    # 4), so such a point sits beside 4 threads or processes
    configs = summary["configurations"]
    top = max([r["threads"] for r in rows] + [2])
    ax.plot([1, top], [1, top], color="0.6", lw=1, ls=":", label="ideal")
    for config in configs:
        mine = sorted((r for r in rows if r["configuration"] == config), key=lambda r: r["threads"])
        points = [(r["threads"], r["vs_serial"]) for r in mine if r["vs_serial"]]
        if not points:
            continue
        c = color(config, configs)
        ax.plot(
            [n for n, _ in points], [p["speedup"] for _, p in points], color=c, lw=1.5, label=config
        )
        for n, p in points:
            interval_bar(ax, n, p, c)
            ax.plot(n, p["speedup"], "o", color=c, mfc=c if p["significant"] else "white", ms=6)
        fitted_curve(ax, summary, mine, name, c)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(
        "workers" if all(r["threads"] == r["workers"] for r in rows) else "threads in all"
    )
    ax.set_xticks(sorted({r["threads"] for r in rows} | {1}))
    ax.grid(alpha=0.3)


def interval_bar(ax: Any, n: int, comparison: dict[str, Any], c: str) -> None:
    """The speed-up's 95 % interval as a vertical bar (none where it is unbounded or absent)."""
    ci = comparison.get("ci95")
    if ci:
        ax.plot([n, n], ci, color=c, lw=1, alpha=0.7)
        ax.plot([n, n], ci, "_", color=c, ms=6, alpha=0.7)


def fitted_curve(
    ax: Any, summary: dict[str, Any], rows: list[dict[str, Any]], name: str, c: str
) -> None:
    """The fitted law, rescaled from 'vs one worker' to 'vs serial' by the one-worker speed-up."""
    if not rows:
        return
    fit = next(
        (
            f
            for f in summary["scaling"]
            if f["configuration"] == rows[0]["configuration"]
            and f["series"] == name
            and f["workload"] == rows[0]["workload"]
            and f["model"] == rows[0]["model"]
        ),
        None,
    )
    one = next((r for r in rows if r["workers"] == 1 and r["vs_serial"]), None)
    if fit is None:
        return
    scale = one["vs_serial"]["speedup"] if one and fit["one_worker"] == one["name"] else 1.0
    n = np.linspace(1, max(p["workers"] for p in fit["curve"]), 60)
    ax.plot(
        n,
        [usl(x, fit["sigma"], fit["kappa"]) * scale for x in n],
        color=c,
        lw=1,
        ls="--",
        label=f"{rows[0]['configuration']} {fit['law']} fit",
    )


def best_plot(
    plt: Any, summary: dict[str, Any], rows: list[dict[str, Any]], slug: str, folder: Path
) -> list[str]:
    """Grouped bars: the best throughput of each strategy on each configuration (its worker count on top)."""
    configs, series = summary["configurations"], list(dict.fromkeys(r["series"] for r in rows))
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(1.2 * len(series) * len(configs) + 2, 3.6))
    for i, config in enumerate(configs):
        for j, name in enumerate(series):
            mine = [r for r in rows if r["configuration"] == config and r["series"] == name]
            if mine:
                best = max(mine, key=lambda r: r["rate_per_s"])
                bar(
                    ax,
                    j + (i - (len(configs) - 1) / 2) * width,
                    best,
                    width,
                    color(config, configs),
                    config if j == 0 else None,
                )
    ax.set_xticks(range(len(series)), series, fontsize=8)
    ax.set_ylabel(f"{rows[0]['unit']}s per second (best)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{slug}: best throughput per strategy", fontsize=10)
    return [save(fig, plt, folder / f"best-{slug}.png")]


def bar(ax: Any, x: float, row: dict[str, Any], width: float, c: str, label: str | None) -> None:
    error = row["rate_per_s"] * row["stdev_s"] / row["mean_s"]  # relative spread of time per unit
    ax.bar(x, row["rate_per_s"], width, color=c, yerr=error, capsize=2, label=label)
    ax.text(x, row["rate_per_s"], f"w{row['workers']}", ha="center", va="bottom", fontsize=6)


def save(fig: Any, plt: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name

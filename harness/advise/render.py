"""`advise`'s output: the ranked table as text or Markdown, and one PNG (rate vs workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def text(result: dict[str, Any]) -> str:
    """What `advise` prints: the table, the recommendation, its reasons, what was skipped."""
    lines = [
        f"{result['workload']} ({result['model']}) on {result['interpreter']} "
        f"(gil_enabled={result['gil_enabled']}), {result['cpus']} usable CPUs, "
        f"{result['rounds']} rounds in {result['elapsed_s']:.0f} s of a {result['budget_s']:.0f} s budget",
        "",
        *table(result, markdown=False),
        "",
        f"recommendation: {result['summary']}",
        "why:",
    ]
    lines += [f"  - {reason}" for reason in result["reasons"]]
    lines += [f"skipped: {note}" for note in result["skipped"]]
    return "\n".join(lines)


HEADER = (
    "strategy",
    "workers",
    "unit/s",
    "vs serial",
    "efficiency",
    "peak RSS MB",
    "values",
    "safe",
)


def cells(row: dict[str, Any]) -> list[str]:
    speedup = row["speedup"]
    if row["strategy"] == "serial":
        versus = "baseline"
    elif speedup is None:
        versus = "—"
    elif row["significant"]:
        versus = f"{speedup:.2f}x"
    else:
        versus = f"{speedup:.2f}x (n.s.)"
    efficiency = "—" if row["efficiency"] is None else f"{row['efficiency']:.2f}"
    safe = (
        row["error"]
        and f"error: {row['error']}"
        or (f"UNSAFE: {row['unsafe']}" if row["unsafe"] else "yes")
    )
    return [
        row["strategy"],
        str(row["workers"]),
        f"{row['rate_per_s']:,.0f}",
        versus,
        efficiency,
        f"{row['peak_rss_mb']:.0f}",
        str(row["values"]),
        safe,
    ]


def table(result: dict[str, Any], markdown: bool) -> list[str]:
    rows = [list(HEADER), *(cells(r) for r in result["rows"])]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(HEADER))
        return lines
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def write(result: dict[str, Any], folder: str) -> list[str]:
    """ADVICE.md and advice.png in `folder` (made if missing); the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_rates(result, out / "advice.png")
    body = [
        f"# Advice: {result['workload']} ({result['model']}) on {result['interpreter']}",
        "",
        f"**{result['summary']}**",
        "",
        *[f"- {r}" for r in result["reasons"]],
        "",
        *table(result, markdown=True),
        "",
        f"{result['rounds']} interleaved rounds, medians; speed-ups tested at 95 % (n.s.: not "
        f"significant); {result['cpus']} usable CPUs.",
        "",
    ]
    body += [f"Skipped: {note}" for note in result["skipped"]]
    if plot:
        body += ["", f"![rate vs workers]({Path(plot).name})"]
    (out / "ADVICE.md").write_text("\n".join(body) + "\n")
    return [str(out / "ADVICE.md"), *([plot] if plot else [])]


def plot_rates(result: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for strategy in dict.fromkeys(r["strategy"] for r in result["rows"]):
        points = sorted(
            (r["workers"], r["rate_per_s"])
            for r in result["rows"]
            if r["strategy"] == strategy and not r["error"]
        )
        if points:
            ax.plot(*zip(*points), marker="o", label=strategy)
    ax.set_xlabel("workers")
    ax.set_ylabel(f"{result['unit']}s per second (median)")
    ax.set_title(f"{result['workload']} {result['model']} on {result['interpreter']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)

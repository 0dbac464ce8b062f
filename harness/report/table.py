"""Plain-text tables of `run --json` results (standard library only: nox imports it)."""

from __future__ import annotations

from typing import Any

COLUMNS = ("config", "strategy", "workers", "samples/s", "vs serial", "final loss", "params sha256")


def render_comparison(results: list[dict[str, Any]]) -> str:
    """One row per result; speed-up against serial x1 on the SAME configuration."""
    serial = {
        r["interpreter"]["name"]: r["samples_per_s"]
        for r in results
        if r["strategy"] == "serial" and r["workers"] == 1
    }
    rows = [COLUMNS]
    for r in results:
        name = r["interpreter"]["name"]
        base = serial.get(name)
        ratio = f"{r['samples_per_s'] / base:.2f}x" if base else "n/a"
        rows.append(
            (
                name,
                r["strategy"],
                str(r["workers"]),
                f"{r['samples_per_s']:,.0f}",
                ratio,
                "n/a" if r.get("final_loss") is None else f"{r['final_loss']:.6f}",
                r.get("params_sha256", "")[:16],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

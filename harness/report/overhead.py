"""The report's harness overhead: each plain-loop cell against its twin, the harness cell that
did the same work in the same rounds (harness.bench.matrix.PLAIN_LOOP, Cell.twin).

At one worker the ratio is the harness's own overhead (serial against the serial plain loop);
above, it is the harness's threads against a hand-written thread pool. The ratio is of mean time
per unit, harness ÷ plain loop (above 1: the harness is slower), with Fieller's 95 % interval and
the verdict of the test every other ratio of the report gets (harness.report.rawdata).

Declared as the data-parallel workload's own report section (its `report=`): the plain loop does
data-parallel work only. Standard library at import, like the rest of harness.report.
"""

from __future__ import annotations

from typing import Any

KEY = "harness_overhead"  # its place in summary.json


def rows(index: Any) -> list[dict[str, Any]]:
    """One row per plain-loop cell and configuration (index: harness.report.summary.Index)."""
    return [row(plain, index.get(plain.config, plain.cell.twin)) for plain in index.plain_loop]


def row(plain: Any, harness: Any | None) -> dict[str, Any]:
    """A plain-loop measurement against its twin's (None where the twin was not measured)."""
    from harness.report.intervals import ratio_interval
    from harness.report.noisy import cell_noise
    from harness.report.rawdata import significance

    found: dict[str, Any] = {
        "configuration": plain.config,
        "measure": "harness overhead" if plain.cell.workers == 1 else "vs plain loop",
        "harness": plain.cell.twin.name,
        "plain": plain.cell.name,
        "workers": plain.cell.workers,
        "model": plain.cell.model,
        "unit": plain.meta.get("ft_unit"),
        "plain_mean_s": plain.mean,
        "plain_noise": cell_noise(plain),
        "harness_mean_s": None,
        "harness_noise": None,
        "time_ratio": None,
        "ci95": None,
        "significant": None,
        "t_score": None,
        "verdict": "no harness cell",
        "same_digest": None,
    }
    if harness is None:
        return found
    significant, t_score = significance(harness.samples, plain.samples)
    ratio = harness.mean / plain.mean
    digests = [sorted(set(m.run_facts("ft_digest"))) for m in (harness, plain)]
    return {
        **found,
        "harness_mean_s": harness.mean,
        "harness_noise": cell_noise(harness),
        "time_ratio": ratio,
        "ci95": ratio_interval(harness.samples, plain.samples),
        "significant": significant,
        "t_score": t_score,
        "verdict": verdict(significant, ratio),
        # the same computation, bitwise: one digest each, and the same one
        "same_digest": digests[0] == digests[1] if all(len(d) == 1 for d in digests) else None,
    }


def verdict(significant: bool | None, ratio: float) -> str:
    if significant is None:
        return "not tested"
    if not significant:
        return "not significant"
    return "harness slower" if ratio > 1 else "harness faster"


def markdown(s: dict[str, Any]) -> str:
    from harness.report.markdown import noise_mark, per_unit, table

    found = s.get(KEY) or []
    if not found:
        return ""
    unit = found[0]["unit"] or "unit"
    body = [
        [
            r["configuration"],
            r["measure"],
            f"`{r['harness']}`",
            "—" if r["harness_mean_s"] is None else per_unit(r["harness_mean_s"]),
            per_unit(r["plain_mean_s"]),
            ratio_cell(r),
            interval_cell(r),
            r["verdict"],
            {True: "same", False: "differs", None: "—"}[r["same_digest"]],
            " / ".join(noise_mark(n) for n in (r["harness_noise"], r["plain_noise"])),
        ]
        for r in found
    ]
    return (
        "## Harness overhead: against a hand-written loop\n\n"
        "The same data-parallel work written by hand with plain functions "
        "(`harness/plainloop.py`; at 2 workers a `ThreadPoolExecutor`, the caller taking the "
        "first slice), benched as `plainloop` cells in the same rounds as the harness's cells "
        "and timed alike (the training loop only). *harness overhead*: serial against the "
        "serial plain loop; *vs plain loop*: threads against the plain loop at as many "
        "workers. The ratio is the harness's mean time per unit ÷ the plain loop's (above 1: "
        "the harness is slower), written only where the t-test finds it significant, with its "
        "95 % interval. Digest: whether both ended on the same parameters, bit for bit.\n\n"
        + table(
            [
                "config",
                "comparison",
                "harness cell",
                f"µs per {unit}, harness",
                f"µs per {unit}, plain loop",
                "harness ÷ plain (time)",
                "95 % interval",
                "verdict",
                "digest",
                "noise (harness / plain)",
            ],
            body,
        )
    )


def ratio_cell(r: dict[str, Any]) -> str:
    """The ratio where it is significant; the verdict in words otherwise, never a number."""
    if r["time_ratio"] is None:
        return "—"
    return f"{r['time_ratio']:.2f}" if r["significant"] else r["verdict"]


def interval_cell(r: dict[str, Any]) -> str:
    if r["time_ratio"] is None:
        return "—"
    ci = r["ci95"]
    return f"[{ci[0]:.2f}–{ci[1]:.2f}]" if ci is not None else "unbounded"

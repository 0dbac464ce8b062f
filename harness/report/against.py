"""`report ... --against OLD_REPORT_DIR`: did the conclusions change since an earlier report?

Reads OLD's summary.json (nothing else of it) and lists each headline cell (strategy/workers on
a configuration, speed-up against serial on the default build) whose verdict changed, and each
whose place in its configuration's ranking changed. Verdicts are words, not numbers: faster /
slower (significant by the report's t-test), not significant, not tested. A place is 1 + the
number of cells whose 95 % interval lies wholly above this cell's: cells the data cannot tell
apart share a place, so two of them swapping inside their noise is no change (ranked by point
estimates, two consecutive reports on a quiet machine "changed" 14 places of 27). Rankings count
only the cells both reports measured on that configuration, so a cell added or dropped does not
move the others.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness import HarnessError


def load_old_summary(folder: str) -> dict[str, Any]:
    """OLD's summary.json, checked enough to be compared; a one-line error otherwise."""
    if not Path(folder).is_dir():
        what = "not a folder" if Path(folder).exists() else "no such folder"
        raise HarnessError(
            f"--against {folder}: {what}; give the folder of an earlier "
            "report (what `python -m harness report -o` wrote)"
        )
    path = Path(folder) / "summary.json"
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(
            f"--against {folder}: no summary.json there; give the folder of an "
            "earlier report (what `python -m harness report -o` wrote)"
        ) from None
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"--against {folder}: summary.json is not readable JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(old, dict) or not isinstance(old.get("headline", {}) or {}, dict):
        raise HarnessError(f"--against {folder}: summary.json is not a report's summary")
    return old


def verdict(entry: dict[str, Any]) -> str:
    """One headline entry in words."""
    if entry.get("is_default_baseline"):
        return "baseline"
    comparison = entry.get("vs_serial_default")
    if comparison is None:
        return "no baseline"
    if comparison.get("significant") is None:
        return "not tested"
    if not comparison["significant"]:
        return "not significant"
    return "faster" if comparison["speedup"] > 1 else "slower"


def headline_rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return (summary.get("headline") or {}).get("rows", {})


def interval(entry: dict[str, Any]) -> tuple[float, float]:
    """The speed-up's 95 % interval against the default build's serial: that baseline itself is
    exactly 1; a speed-up with no interval (not tested, unbounded) could be anything."""
    if entry.get("is_default_baseline"):
        return 1.0, 1.0
    found = (entry.get("vs_serial_default") or {}).get("ci95")
    return (found[0], found[1]) if found else (-math.inf, math.inf)


def ranks(rows: dict[str, dict[str, Any]], config: str, cells: set[str]) -> dict[str, int]:
    """1 + how many of `cells` on `config` are clearly faster (their interval wholly above)."""
    return {cell: 1 + sum(above(rows, config, o, cell) for o in cells) for cell in cells}


def apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Two 95 % intervals with no value in common."""
    return a[0] > b[1] or b[0] > a[1]


def above(rows: dict[str, dict[str, Any]], config: str, a: str, b: str) -> bool:
    """Cell a is clearly faster than b in `rows`: its interval wholly above b's."""
    return interval(rows[a][config])[0] > interval(rows[b][config])[1]


def reversed_order(
    old: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    config: str,
    cell: str,
    both: set[str],
) -> bool:
    """Some other cell was clearly on one side of `cell` then and is clearly on the other now;
    otherwise the place moved only between a clear order and a tie."""
    return any(
        (above(old, config, cell, o) and above(new, config, o, cell))
        or (above(old, config, o, cell) and above(new, config, cell, o))
        for o in both - {cell}
    )


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Verdict and ranking changes of the headline cells measured in both reports."""
    before, after = headline_rows(old), headline_rows(new)
    configs = sorted({c for cells in after.values() for c in cells}, key=str)
    verdicts, rankings, compared = [], [], 0
    for config in configs:
        both = {c for c in after if config in after[c] and config in before.get(c, {})}
        compared += len(both)
        was, now = ranks(before, config, both), ranks(after, config, both)
        for cell in sorted(both):
            then, today = before[cell][config], after[cell][config]
            old_v, new_v = verdict(then), verdict(today)
            if old_v != new_v:
                verdicts.append(
                    {
                        "cell": cell,
                        "configuration": config,
                        "old": old_v,
                        "new": new_v,
                        "intervals": [interval(then), interval(today)],
                        "contradicts": apart(interval(then), interval(today)),
                    }
                )
            if was[cell] != now[cell]:
                rankings.append(
                    {
                        "cell": cell,
                        "configuration": config,
                        "old": was[cell],
                        "new": now[cell],
                        "contradicts": reversed_order(before, after, config, cell, both),
                    }
                )
    return {
        "compared": compared,
        "verdicts": verdicts,
        "rankings": rankings,
        "old_model": (old.get("headline") or {}).get("model"),
        "new_model": (new.get("headline") or {}).get("model"),
    }


def changes_text(against: dict[str, Any]) -> str:
    """The CLI's (and REPORT.md's) list of what changed."""
    head = f"against {against['folder']}: {against['compared']} headline cells in both reports"
    if against["old_model"] != against["new_model"]:
        head += f" (headline model {against['old_model']} then, {against['new_model']} now)"
    if against["compared"] == 0:
        return head + "; nothing to compare"
    lines = [
        f"- verdict of {v['cell']} on {v['configuration']}: {v['old']} -> {v['new']} "
        + (
            "(intervals apart: the reports disagree)"
            if v["contradicts"]
            else f"(intervals {span(v['intervals'][0])} then, {span(v['intervals'][1])} now overlap: "
            "the reports agree within their precision)"
        )
        for v in against["verdicts"]
    ]
    lines += [
        f"- rank of {r['cell']} on {r['configuration']}: {r['old']} -> {r['new']} "
        + (
            "(a clear order reversed)"
            if r["contradicts"]
            else "(a clear order became a tie, or back)"
        )
        for r in against["rankings"]
    ]
    if not lines:
        return head + "; no verdict or ranking changed"
    contradictions = sum(c["contradicts"] for c in (*against["verdicts"], *against["rankings"]))
    return (
        head
        + f"; {len(lines)} changed, {contradictions} of them contradicting the other report:\n"
        + "\n".join(lines)
    )


def span(bounds: list[float] | tuple[float, float]) -> str:
    low, high = bounds
    return "[unbounded]" if math.isinf(low) or math.isinf(high) else f"[{low:.2f}–{high:.2f}]"

"""Plot colours generated from configuration names, for any number of CPython versions.

The kind of build picks the hue (default blue, free-threaded red, free-threaded with the GIL
green, as the first reports had them); each further version present gets a darker or lighter
shade of it, so cp313t and cp314t read as one family and stay apart.
"""

from __future__ import annotations

from harness.confignames import KINDS, parse_name

HUES = dict(zip(KINDS, ("#1f77b4", "#d62728", "#2ca02c")))
SHADES = (0.0, -0.45, 0.45, -0.7, 0.7)  # per version present, oldest first: 0 = the hue itself
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f")  # names that are no cp3N*


def mix(hex_color: str, shade: float) -> str:
    """Towards black (shade < 0) or white (shade > 0) by |shade|."""
    target = 0 if shade < 0 else 255
    channels = [int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (target - c) * abs(shade)):02x}" for c in channels)


def color(config: str, configs: list[str]) -> str:
    """The colour of one configuration among those a report shows (stable for a given set)."""
    parsed = parse_name(config)
    if parsed is None:
        others = [c for c in configs if parse_name(c) is None]
        return OTHER_COLORS[others.index(config) % len(OTHER_COLORS)]
    versions = sorted({p[0] for c in configs if (p := parse_name(c))})
    series, kind = parsed
    return mix(HUES[kind], SHADES[versions.index(series) % len(SHADES)])

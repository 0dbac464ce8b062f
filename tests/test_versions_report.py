"""A report from raw files of six configurations (3.13 and 3.14, three each), made by relabelling
the committed sample raw files, and the colours and order the report gives any set of names."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.report.palette import color

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "reports" / "samples-raw"
SIX = ["cp313", "cp313t", "cp313t-gil", "cp314", "cp314t", "cp314t-gil"]  # the expected order


def relabel(source: Path, target: Path, config: str, version: str) -> Path:
    """A copy of a raw file under another configuration name and Python version: the same
    numbers, so every cp314* figure must equal its cp313* twin's."""
    data = json.loads(source.read_text())
    blocks = [data.get("metadata", {})] + [b.get("metadata", {}) for b in data["benchmarks"]]
    for meta in blocks:
        if "ft_config" in meta:
            meta["ft_config"] = config
        if "ft_python_version" in meta:
            meta["ft_python_version"] = version
    target.write_text(json.dumps(data))
    return target


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    raw = tmp_path_factory.mktemp("raw")
    paths = [
        relabel(SAMPLES / f"{name}.json", raw / f"{name}.json", name, "3.13.5") for name in SIX[:3]
    ]
    paths += [
        relabel(SAMPLES / f"{old}.json", raw / f"{new}.json", new, "3.14.0")
        for old, new in zip(SIX[:3], SIX[3:])
    ]
    random.Random(4).shuffle(paths)  # the report orders them, not the command line
    out = tmp_path_factory.mktemp("report") / "latest"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", *map(str, paths), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text()), (out / "REPORT.md").read_text()


def test_six_configurations_in_version_order(six: tuple[dict[str, Any], str]) -> None:
    summary, markdown = six
    assert summary["configurations"] == SIX
    assert summary["default_configuration"] == "cp313"
    assert summary["headline"]["columns"] == SIX
    assert "| cell | " + " | ".join(SIX) + " |" in markdown


def test_every_configuration_has_its_own_numbers(six: tuple[dict[str, Any], str]) -> None:
    """cp314* are relabelled copies of cp313*: a column taken from the wrong file shows here."""
    summary, _ = six
    for rows in summary["workloads"].values():
        rates = {(r["configuration"], r["name"]): r["rate_per_s"] for r in rows}
        assert {c for c, _ in rates} == set(SIX)
        for (config, name), value in rates.items():
            twin = config.replace("cp314", "cp313")
            assert rates[(twin, name)] == value
    costs = {c["configuration"] for c in summary["single_thread_cost"]}
    assert costs == set(SIX[1:])


def test_every_configuration_appears_in_the_plots(six: tuple[dict[str, Any], str]) -> None:
    summary, markdown = six
    assert summary["plots"], summary.get("plots_note")
    for name in SIX:
        assert re.search(rf"\| {re.escape(name)} \| `", markdown), name  # workload tables


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def test_colours_keep_one_hue_per_kind_and_differ_by_version() -> None:
    colours = {name: color(name, SIX) for name in SIX}
    assert len(set(colours.values())) == 6
    # the first version keeps the colours the 3.13-only reports have always used
    assert [colours[n] for n in SIX[:3]] == ["#1f77b4", "#d62728", "#2ca02c"]
    for name in SIX:  # blue for default builds, red for free-threaded, green with the GIL back
        channel = 1 if name.endswith("-gil") else 0 if name.endswith("t") else 2
        values = rgb(colours[name])
        assert values[channel] == max(values), (name, colours[name])


def test_colours_of_a_report_without_313() -> None:
    names = ["cp315t", "cp314", "cp314t", "cp315", "path-3.12"]
    colours = [color(n, names) for n in names]
    assert len(set(colours)) == len(names)
    assert color("cp314", names) == "#1f77b4"  # the oldest version present gets the base hue

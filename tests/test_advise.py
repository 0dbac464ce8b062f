"""`advise`: the decision on recorded measurements (no timing), and real short runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.advise.decide import advice, rank, recommend, unsafe_reason
from harness.advise.measure import Candidate, Measured, Plan, grown
from harness.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
UNSAFE_PLUGIN = ROOT / "tests" / "plugin_unsafe" / "unsafe_model.py"
SLOW = [100.0, 101.0, 99.0, 100.5, 99.5]  # rates: units per second, five rounds
FAST = [170.0, 171.0, 169.0, 170.5, 169.5]
SAME = [100.2, 99.8, 100.9, 99.1, 100.3]


def measured(
    strategy: str, workers: int, rates: list[float], digest: str = "d", **kw: object
) -> Measured:
    found = Measured(Candidate(strategy, workers), rates=list(rates), digests={digest})
    for key, value in kw.items():
        setattr(found, key, value)
    return found


def table(*found: Measured) -> dict[Candidate, Measured]:
    return {m.candidate: m for m in found}


def test_the_fastest_significant_safe_candidate_is_recommended() -> None:
    rows = rank(
        table(
            measured("serial", 1, SLOW),
            measured("threads", 2, FAST),
            measured("processes", 2, SAME),
        )
    )
    pick = recommend(rows)
    assert pick is not None and (pick.strategy, pick.workers) == ("threads", 2)
    assert pick.speedup == pytest.approx(170.0 / 100.0)
    assert [r.strategy for r in rows] == ["threads", "processes", "serial"]


def test_nothing_significant_means_stay_serial_and_says_so() -> None:
    result = advice(table(measured("serial", 1, SLOW), measured("threads", 2, SAME)), 2410)
    assert result["recommendation"] is None
    assert result["summary"].startswith("stay serial")
    assert "threads x2: not significantly different from serial" in result["reasons"][0]


def test_an_unsafe_candidate_is_never_recommended_even_when_fastest() -> None:
    rows = rank(
        table(
            measured("serial", 1, SLOW),
            measured("threads", 2, FAST, digest="other"),
            measured("processes", 2, [130.0, 131.0, 129.0, 130.5, 129.5]),
        )
    )
    assert (
        rows[0].strategy == "threads" and rows[0].unsafe == "result differs from serial's (digest)"
    )
    pick = recommend(rows)
    assert pick is not None and pick.strategy == "processes"


def test_a_candidate_with_several_results_is_unsafe() -> None:
    flaky = measured("threads", 2, FAST)
    flaky.digests = {"a", "b"}
    assert unsafe_reason(flaky, measured("serial", 1, SLOW)) == "gave 2 different results in 5 runs"


def test_non_bitwise_strategies_are_held_to_the_serial_loss() -> None:
    serial = measured("serial", 1, SLOW, checks={"test_loss": 0.5})
    close = measured(
        "blas", 2, FAST, digest="x", bitwise=False, checks={"test_loss": 0.5 * (1 + 1e-12)}
    )
    far = measured("blas", 2, FAST, digest="x", bitwise=False, checks={"test_loss": 0.51})
    assert unsafe_reason(close, serial) == ""
    assert unsafe_reason(far, serial).startswith("held-out loss differs from serial's by 2.0e-02")


@pytest.mark.parametrize(
    ("policy", "lost", "unsafe"),
    [("lock", 7, True), ("striped", 1, True), ("lock", 0, False), ("hogwild", 5000, False)],
)
def test_locked_policies_must_lose_nothing(policy: str, lost: int, unsafe: bool) -> None:
    found = measured(
        "threads",
        2,
        FAST,
        digest="timing-dependent",
        checks={"lost_updates": lost, "policy": policy},
    )
    assert bool(unsafe_reason(found, measured("serial", 1, SLOW))) is unsafe


def plan_of(*found: Measured) -> Plan:
    plan = Plan(config=RunConfig(), budget_s=60)
    plan.measured = table(*found)
    return plan


def test_a_sweep_grows_only_after_a_significant_gain_and_stops_one_past_the_cpus() -> None:
    plan = plan_of(
        measured("serial", 1, SLOW),
        measured("threads", 1, SLOW),
        measured("threads", 2, FAST),
        measured("processes", 1, SLOW),
        measured("processes", 2, SAME),
    )
    assert grown(plan, limit=3) == [Candidate("threads", 3)]
    assert grown(plan, limit=2) == []


def advise(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "advise", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def test_a_real_short_advice_measures_checks_and_decides_within_its_budget(tmp_path: Path) -> None:
    proc = advise(
        "--steps",
        "4",
        "--batch",
        "256",
        "--strategies",
        "threads,blas",
        "--budget",
        "20",
        "-o",
        str(tmp_path / "advice"),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    names = {(r["strategy"], r["workers"]) for r in result["rows"]}
    assert {("serial", 1), ("threads", 1), ("threads", 2), ("blas", 2)} <= names
    assert all(not r["unsafe"] for r in result["rows"])  # the built-ins keep serial's result
    assert result["elapsed_s"] <= 20 * 1.5  # a round is only started when the budget allows it
    assert result["summary"] and len(result["reasons"]) == 2
    assert (tmp_path / "advice" / "ADVICE.md").read_text().count("| threads |") >= 2


def test_a_thread_unsafe_plugin_model_is_reported_unsafe_and_not_recommended() -> None:
    proc = advise(
        "--plugin",
        str(UNSAFE_PLUGIN),
        "--model",
        "unsafe-tiny",
        "--steps",
        "3",
        "--batch",
        "256",
        "--strategies",
        "threads",
        "--budget",
        "25",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    threaded = [r for r in result["rows"] if r["strategy"] == "threads" and r["workers"] >= 2]
    assert threaded and all(r["unsafe"] for r in threaded)
    pick = result["recommendation"]
    assert pick is None or not pick["unsafe"]
    assert any("UNSAFE" in reason for reason in result["reasons"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--strategy", "threads"],
            "advise tries every strategy and worker count itself; drop --strategy",
        ),
        (["--budget", "0"], "budget=0.0 must be > 0 seconds"),
        (["--strategies", "nope"], "unknown strategy 'nope'"),
    ],
)
def test_bad_advise_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    proc = advise(*args, timeout=60)
    assert proc.returncode == 2
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

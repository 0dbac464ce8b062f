"""Interleaved rounds (harness.bench.rounds): the order of the benches, when the raw files are
replaced, when the adaptive mode stops; and a real two-round bench merged by pyperf's --append."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bench import rounds
from harness.bench.rounds import Plan, Target, run_rounds, take_options

ROOT = Path(__file__).resolve().parents[1]


def targets(
    folder: Path, names: tuple[str, ...] = ("cp313", "cp313t", "cp313t-gil")
) -> list[Target]:
    return [Target(n, f"/py/{n}", {"FT_HARNESS_CONFIG": n}, folder / f"{n}.json") for n in names]


class Recorder:
    """Stands in for the benches (not under test): notes each call, appends a line to the file
    pyperf would append to, and can fail at a chosen call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_at = fail_at

    def __call__(self, command: list[str], env: dict[str, str]) -> None:
        if len(self.calls) == self.fail_at:
            raise RuntimeError("interrupted")
        self.calls.append((env["FT_HARNESS_CONFIG"], env[rounds.ROUND_ENV]))
        path = Path(command[command.index("--append") + 1])
        with path.open("a") as f:
            f.write(f"round {env[rounds.ROUND_ENV]}\n")


def test_configurations_alternate_round_by_round(tmp_path: Path) -> None:
    run = Recorder()
    outcome = run_rounds(targets(tmp_path), [], Plan(rounds=3), run, log=lambda _: None)
    names = ["cp313", "cp313t", "cp313t-gil"]
    assert run.calls == [(n, str(r)) for r in (1, 2, 3) for n in names]
    assert outcome.rounds == 3 and "3 rounds" in outcome.reason
    for n in names:
        assert (tmp_path / f"{n}.json").read_text() == "round 1\nround 2\nround 3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in names)


def test_an_interrupted_series_leaves_every_previous_raw_file(tmp_path: Path) -> None:
    for t in targets(tmp_path):
        t.out.write_text("previous")
    with pytest.raises(RuntimeError):
        run_rounds(targets(tmp_path), [], Plan(rounds=2), Recorder(fail_at=4), log=lambda _: None)
    assert all(t.out.read_text() == "previous" for t in targets(tmp_path))


def test_a_users_processes_option_comes_after_ours_so_it_wins(tmp_path: Path) -> None:
    cmd = rounds.command(targets(tmp_path)[0], ["-p", "3", "--preset", "smoke"])
    assert cmd.index("-p", cmd.index("-p") + 1) > cmd.index("-p")
    assert cmd[-2:] == ["--append", str(tmp_path / ".cp313.json.rounds")]


class Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step / 2  # two readings per round in run_rounds' loop
        return self.now


def test_adaptive_mode_stops_when_the_widest_interval_reaches_the_goal(tmp_path: Path) -> None:
    widths = iter([0.20, 0.08, 0.04, 0.01])
    seen: list[list[Path]] = []

    def widest(paths: list[Path]) -> dict[str, Any]:
        seen.append(paths)
        return {"cell": "threads/w2 on cp313t", "half_width": next(widths)}

    outcome = run_rounds(
        targets(tmp_path),
        [],
        Plan(rounds=2, until=0.05, budget_s=1e9),
        Recorder(),
        widest,
        log=lambda _: None,
        clock=Clock(10),
    )
    assert outcome.rounds == 4  # checked after rounds 2 (0.20), 3 (0.08), 4 (0.04): stop
    assert "within ±5 %" in outcome.reason and "±4.0 %" in outcome.reason
    assert seen[0] == [t.partial for t in targets(tmp_path)]


def test_adaptive_mode_first_runs_the_fixed_modes_whole_rounds(tmp_path: Path) -> None:
    looked_after: list[int] = []
    run = Recorder()

    def widest(paths: list[Path]) -> dict[str, Any]:
        looked_after.append(len(run.calls))  # benches run so far
        return {
            "cell": "x",
            "half_width": 0.2 if len(looked_after) == 1 else 0.01,
            "again": {"cp313": []},
        }

    outcome = run_rounds(
        targets(tmp_path),
        [],
        Plan(rounds=5, until=0.05, budget_s=1e9),
        run,
        widest,
        log=lambda _: None,
        clock=Clock(10),
    )
    assert looked_after == [15, 16]  # not before the 5 whole rounds of the fixed mode
    assert [c[0] for c in run.calls[:15]] == ["cp313", "cp313t", "cp313t-gil"] * 5
    assert [c[0] for c in run.calls[15:]] == ["cp313"] and outcome.rounds == 6


def test_adaptive_mode_stops_before_a_round_that_would_overrun_the_budget(tmp_path: Path) -> None:
    def widest(paths: list[Path]) -> dict[str, Any]:
        return {"cell": "mpi/w2 on cp313", "half_width": 0.3}

    outcome = run_rounds(
        targets(tmp_path),
        [],
        Plan(rounds=2, until=0.05, budget_s=250),
        Recorder(),
        widest,
        log=lambda _: None,
        clock=Clock(100),
    )
    # rounds take 100 s: after round 2 (200 s) a third would end at 300 s > 250 s
    assert outcome.rounds == 2 and "budget of 250 s spent" in outcome.reason
    assert "±30.0 %" in outcome.reason and "mpi/w2 on cp313" in outcome.reason


class Selector(Recorder):
    """Also notes the selection options each bench was given (what follows `--preset smoke`)."""

    def __call__(self, command: list[str], env: dict[str, str]) -> None:
        super().__call__(command, env)
        self.calls[-1] += (command[command.index("smoke") + 1 : command.index("--append")],)


def test_adaptive_rounds_after_the_first_two_measure_only_what_is_still_too_wide(
    tmp_path: Path,
) -> None:
    answers = iter(
        [
            {
                "cell": "a",
                "half_width": 0.2,
                "again": {
                    "cp313": ["--strategies", "serial"],
                    "cp313t": ["--strategies", "threads"],
                },
            },
            {"cell": "b", "half_width": 0.1, "again": {"cp313": ["--strategies", "serial"]}},
            {"cell": "b", "half_width": 0.04, "again": {}},
        ]
    )
    run = Selector()
    outcome = run_rounds(
        targets(tmp_path),
        ["--preset", "smoke"],
        Plan(rounds=2, until=0.05, budget_s=1e9),
        run,
        lambda paths: next(answers),
        log=lambda _: None,
        clock=Clock(10),
    )
    assert outcome.rounds == 4
    assert run.calls == [
        *[(n, r, []) for r in ("1", "2") for n in ("cp313", "cp313t", "cp313t-gil")],
        ("cp313", "3", ["--strategies", "serial"]),
        ("cp313t", "3", ["--strategies", "threads"]),
        ("cp313", "4", ["--strategies", "serial"]),
    ]
    # every configuration's file is still replaced, with the rounds it took part in
    assert (tmp_path / "cp313t-gil.json").read_text() == "round 1\nround 2\n"
    assert (tmp_path / "cp313.json").read_text().count("round") == 4


def test_round_options_are_taken_out_and_bad_values_named() -> None:
    plan, rest = take_options(["--preset", "smoke", "--until=5%", "--budget", "8m", "-p", "2"])
    assert plan == Plan(rounds=3, until=0.05, budget_s=480.0)  # smoke: 3 pyperf processes
    assert take_options([])[0].rounds == 5  # quick, the default preset: 5 processes
    assert take_options(["--preset=full"])[0].rounds == 20
    assert rest == ["--preset", "smoke", "-p", "2"]
    assert take_options(["--rounds", "7"])[0].rounds == 7
    for bad, named in (
        (["--rounds", "0"], "'0'"),
        (["--until", "120%"], "'120%'"),
        (["--budget", "soon"], "'soon'"),
        (["--rounds"], "--rounds"),
    ):
        with pytest.raises(ValueError, match=named):
            take_options(bad)


def real_bench(command: list[str], env: dict[str, str]) -> None:
    """A round's bench, run for real (the runner nox gives run_rounds)."""
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)


def test_two_real_rounds_merge_into_one_raw_file_per_configuration(tmp_path: Path) -> None:
    """Real benches (smoke preset, two cells), real pyperf --append: every benchmark ends with
    one process per round, each process knows its round and recorded the machine's noise."""
    env = {
        **os.environ,
        "FT_HARNESS_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
    }
    found = [
        Target(n, sys.executable, {**env, "FT_HARNESS_CONFIG": n}, tmp_path / f"{n}.json")
        for n in ("cp313", "cp313t")
    ]

    args = [
        "--preset",
        "smoke",
        "--workloads",
        "data-parallel",
        "--strategies",
        "serial,threads",
        "--workers",
        "2",
    ]
    run_rounds(found, args, Plan(rounds=2), real_bench, log=lambda _: None)
    for t in found:
        data = json.loads(t.out.read_text())
        assert len(data["benchmarks"]) == 2
        for bench in data["benchmarks"]:
            # pyperf writes metadata common to every run once, at the benchmark's level
            common = {**data.get("metadata", {}), **bench.get("metadata", {})}
            runs = [
                {"metadata": {**common, **r.get("metadata", {})}}
                for r in bench["runs"]
                if r.get("values")
            ]
            assert sorted(r["metadata"]["ft_round"] for r in runs) == ["1", "2"]
            for r in runs:
                assert 0 <= r["metadata"]["ft_noise"] and r["metadata"]["ft_noise_wall_s"] > 0
                assert "ft_load_before" in r["metadata"] and r["metadata"]["ft_noise_cpus"] >= 1
                # the pair probe's reading where two threads can run at once, none elsewhere
                gil = r["metadata"]["ft_gil_enabled"]
                assert ("ft_pair_slowdown" in r["metadata"]) is not gil
                assert gil or 0.5 < r["metadata"]["ft_pair_slowdown"] < 5
    assert not list(tmp_path.glob(".*.rounds"))


def test_a_real_round_of_only_the_wide_cells_adds_processes_to_those_alone(tmp_path: Path) -> None:
    """Real benches and pyperf --append: a round given the selection of one cell adds a process
    to that benchmark and leaves the other's runs as they were."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    target = Target(
        "cp313", sys.executable, {**env, "FT_HARNESS_CONFIG": "cp313"}, tmp_path / "a.json"
    )
    answers = iter(
        [
            {
                "cell": "threads/w2 on cp313",
                "half_width": 0.5,
                "again": {"cp313": ["--cells", "data-parallel/serial/w1/tiny"]},
            },
            {"cell": "threads/w2 on cp313", "half_width": 0.01, "again": {}},
        ]
    )

    args = ["--preset", "smoke", "--workloads", "data-parallel", "--models", "tiny"]
    args += ["--strategies", "serial,threads", "--workers", "2", "-p", "1"]
    outcome = run_rounds(
        [target],
        args,
        Plan(rounds=2, until=0.05),
        real_bench,
        lambda p: next(answers),
        log=lambda _: None,
    )
    assert outcome.rounds == 3
    data = json.loads(target.out.read_text())
    processes = {
        b["metadata"]["name"]: sum(1 for r in b["runs"] if r.get("values"))
        for b in data["benchmarks"]
    }
    assert processes == {"data-parallel/serial/w1/tiny": 3, "data-parallel/threads/w2/tiny": 2}

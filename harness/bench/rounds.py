"""Bench the configurations in rounds, so that a slow drift of the machine hits each alike.

    round 1: cp313 (-p 1), cp313t (-p 1), cp313t-gil (-p 1); round 2: the same; ...

Each round is one `python -m harness bench` per configuration with pyperf's `--append FILE`:
pyperf adds the new worker processes' runs to the benchmarks already in FILE (one hidden file per
configuration next to its raw file), so after N rounds every benchmark has N x `-p` processes.
Only when every round is done are the hidden files renamed over the raw files: an interrupted
bench leaves the previous raw files as they were. Inside one round a configuration's cells run
one after another (serial first), so serial and the cells compared with it are interleaved at
the round's scale too: each of them has one process in every round.

Fixed mode: `--rounds N` (default: the preset's pyperf process count, one process a
round). Adaptive mode: `--until 5%` adds rounds until every headline speed-up's 95 % interval
is within ±5 % (harness.report.intervals) or the next round would overrun `--budget` (default
DEFAULT_BUDGET_S), and says which. The first rounds are the fixed mode's, whole (`--rounds`,
by default the preset's process count, and MIN_ADAPTIVE_ROUNDS at least): no cell gets fewer
processes than without `--until` (two consecutive adaptive reports that stopped measuring a cell
at 4 processes put cp313t threads x2 at 1.38x [1.30-1.46] and 1.53x [1.46-1.60]: a handful of
processes can miss the slow ones a cell has now and then). After them, a round measures only
what is still too wide: the headline cells whose interval is wider than the goal and the baseline
every headline speed-up is divided by (serial on the default configuration), each configuration
with the bench's own selection options; the others already meet the goal and keep their
processes. Which cells are measured again depends on the intervals' widths, never on their
verdicts: more processes for a wide cell narrow its interval around whatever it is, they do not
go looking for significance.

Standard library only: the noxfile imports this, outside any of the configurations' venvs; the
intervals are computed by a configuration's own interpreter (`widest`, given by the caller).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROUND_ENV = "FT_HARNESS_ROUND"  # which round a run belongs to (the bench hook records it)
# By default as many rounds of one process as the preset has pyperf processes (quick: 5 rounds,
# 5 processes x (1 warm-up + 2 values) per benchmark; full: 20): the
# same measuring time, plus one bench start-up (about 2 s) per extra round and configuration,
# which keeps the main job within its 10 minutes from a fresh clone (see README).
DEFAULT_ROUNDS = 3  # a preset this harness does not know
PROCESSES_PER_ROUND = 1
MIN_ADAPTIVE_ROUNDS = 2  # an interval from one process's values says little about the next
DEFAULT_BUDGET_S = 480.0


@dataclass(frozen=True)
class Target:
    """One configuration: how to run its bench and where its raw file goes."""

    name: str
    python: str
    env: dict[str, str]
    out: Path

    @property
    def partial(self) -> Path:
        """The file pyperf appends the rounds to (hidden, beside the raw file)."""
        return self.out.with_name(f".{self.out.name}.rounds")


@dataclass(frozen=True)
class Plan:
    rounds: int = DEFAULT_ROUNDS
    until: float | None = None  # relative half-width goal of the headline intervals
    budget_s: float = DEFAULT_BUDGET_S


@dataclass
class Outcome:
    rounds: int = 0
    reason: str = ""
    seconds: list[float] = field(default_factory=list)  # per round
    widest: dict[str, Any] | None = None  # intervals' answer: widest cell, and what to measure

    def next_round(self, targets: list[Target]) -> dict[str, list[str]]:
        """Configuration -> extra bench options for the next round: every configuration, as
        given, until the intervals name what is still too wide ("again")."""
        again = (self.widest or {}).get("again")
        if again is None:
            return {t.name: [] for t in targets}
        return {t.name: list(again[t.name]) for t in targets if t.name in again}


def parse_goal(text: str) -> float:
    """`5%` (or `5`) -> 0.05; between 0 and 100 % exclusive."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%?\s*", text)
    value = float(match.group(1)) if match else -1.0
    if not 0 < value < 100:
        raise ValueError(f"--until {text!r}: give the interval goal in percent, e.g. 5%")
    return value / 100


def parse_duration(text: str) -> float:
    """`480`, `480s`, `8m` -> seconds (> 0)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--budget {text!r}: give a time such as 480s or 8m")
    return float(match.group(1)) * (60 if match.group(2) in ("m", "min") else 1)


def take_options(args: list[str]) -> tuple[Plan, list[str]]:
    """`--rounds N`, `--until G`, `--budget T` (also as `--opt=value`) taken out of args; the
    rest goes to every bench. ValueError names a bad value."""
    rest, found = [], {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in ("--rounds", "--until", "--budget"):
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError(f"{name} needs a value")
                value, i = args[i + 1], i + 1
            found[name] = value
        else:
            rest.append(args[i])
        i += 1
    rounds = found.get("--rounds", str(preset_rounds(rest)))
    if not rounds.isdigit() or int(rounds) < 1:
        raise ValueError(f"--rounds {rounds!r}: give a whole number of rounds, 1 or more")
    until = parse_goal(found["--until"]) if "--until" in found else None
    budget = parse_duration(found["--budget"]) if "--budget" in found else DEFAULT_BUDGET_S
    return Plan(int(rounds), until, budget), rest


def preset_rounds(args: list[str]) -> int:
    """The pyperf processes of the preset in args (`--preset X`, default quick)."""
    from harness.bench.matrix import PRESETS  # standard library only, like this module

    name = "quick"
    for i, arg in enumerate(args):
        if arg == "--preset" and i + 1 < len(args):
            name = args[i + 1]
        elif arg.startswith("--preset="):
            name = arg.partition("=")[2]
    info = PRESETS.get(name)
    return int(info.pyperf["processes"]) if info else DEFAULT_ROUNDS


def command(target: Target, args: list[str], only: Sequence[str] = ()) -> list[str]:
    """One round's bench of one configuration (options after ours: a user's `-p` wins; `only`,
    the adaptive rounds' selection, comes last, as the bench takes the last of a repeated one)."""
    return [
        target.python,
        "-m",
        "harness",
        "bench",
        "--quiet",
        "-p",
        str(PROCESSES_PER_ROUND),
        *args,
        *only,
        "--append",
        str(target.partial),
    ]


Runner = Callable[[list[str], dict[str, str]], None]
Widest = Callable[[list[Path]], "dict[str, Any] | None"]


def run_rounds(
    targets: list[Target],
    args: list[str],
    plan: Plan,
    run: Runner,
    widest: Widest | None = None,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Round after round over every target; the raw files replaced at the end, all together."""
    for t in targets:
        t.out.parent.mkdir(parents=True, exist_ok=True)
        t.partial.unlink(missing_ok=True)  # a previous, interrupted series
    outcome, start = Outcome(), clock()
    while not outcome.reason:
        began, measure = clock(), outcome.next_round(targets)
        for t in targets:
            if t.name in measure:
                run(
                    command(t, args, measure[t.name]), {**t.env, ROUND_ENV: str(outcome.rounds + 1)}
                )
        outcome.rounds += 1
        outcome.seconds.append(clock() - began)
        log(f"round {outcome.rounds} took {outcome.seconds[-1]:.0f} s{round_scope(measure)}")
        outcome.reason = stop_reason(plan, outcome, clock() - start, targets, widest)
    for t in targets:
        os.replace(t.partial, t.out)
    log(f"{outcome.rounds} rounds: {outcome.reason}")
    return outcome


def round_scope(measure: dict[str, list[str]]) -> str:
    """For the log: the selection of a round that did not measure everything."""
    if not any(measure.values()):
        return ""
    return (
        " (only the cells still too wide: "
        + "; ".join(f"{name} {' '.join(options)}" for name, options in measure.items())
        + ")"
    )


def stop_reason(
    plan: Plan, outcome: Outcome, elapsed: float, targets: list[Target], widest: Widest | None
) -> str:
    """Why to stop after this round, or "" to go on."""
    if plan.until is None:
        return f"the {plan.rounds} rounds asked for" if outcome.rounds >= plan.rounds else ""
    goal = f"±{plan.until * 100:g} %"
    if outcome.rounds >= max(MIN_ADAPTIVE_ROUNDS, plan.rounds) and widest is not None:
        outcome.widest = widest([t.partial for t in targets])
        width = (outcome.widest or {}).get("half_width")
        if outcome.widest is None:
            return "no headline speed-up to narrow (the selection has no data-parallel cells)"
        if width is not None and width <= plan.until:
            return f"every headline interval is within {goal} (widest ±{width * 100:.1f} %)"
    if elapsed + outcome.seconds[-1] > plan.budget_s:
        width = (outcome.widest or {}).get("half_width")
        shown = "unbounded" if width is None else f"±{width * 100:.1f} %"
        return (
            f"budget of {plan.budget_s:.0f} s spent before every headline interval was "
            f"within {goal} (widest {shown}"
            + (f", {outcome.widest['cell']})" if outcome.widest else ")")
        )
    return ""

"""Fuzzing the command line (issue 12): Hypothesis draws hostile command lines for `run`,
`data make` and `report` (huge, negative, non-finite and junk values, damaged files, bad output
paths); every one must end with status 0, 2 or 130 and no traceback, under an address-space
limit so that a missing memory check fails the test instead of hurting the machine.

Most command lines run in one long-lived worker process (tests/fuzz_worker.py) for speed; a
sample runs as real `python -m harness` subprocesses. Steps, updates and epochs stay small so
an accepted run is short; sizes may be huge, and must then be refused up front.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.data.shards import MANIFEST, make_shards

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 4 * 2**30  # RLIMIT_AS of every fuzzed process
HANG_S = 60  # a hang detector, not a speed test: an accepted command line takes ~1 s
EXAMPLES = 70  # distinct command lines per command: 3 x 70 in-process + the sample, >= 200 in all
OK_STATUS = {0, 2, 130}
FUZZ = settings(
    max_examples=2 * EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

JUNK = st.sampled_from(
    [
        "",
        "x",
        "-1",
        "0",
        "nan",
        "inf",
        "-inf",
        "1e308",
        "10" * 40,
        "0x10",
        " 3",
        "\u00e9",
        "--",
        "1.5",
    ]
)


def mostly(
    likely: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any], odds: int = 4
) -> st.SearchStrategy[Any]:
    """`rarely` once in `odds` draws: junk everywhere would stop every command line at argparse."""
    pick = st.sampled_from([False] * (odds - 1) + [True])  # integers() would favour the ends
    return pick.flatmap(lambda rare: rarely if rare else likely)


def numbers(*values: int) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from([str(v) for v in values]), JUNK, odds=12)


class Scratch:
    """Files the command lines refer to: a good and a damaged sample set, good and damaged raw
    files, a plain file, a folder with files; `fresh()` names a new path for each output."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, itertools.count()
        self.good_set = self._set("good")
        self.bad_set = self._set("bad", lambda m: m.update(classes=2))  # labels 0-3
        self.file = root / "plain.txt"
        self.file.write_text("not a harness file")
        self.full = root / "full"
        (self.full / "sub").mkdir(parents=True)
        (self.full / "keep.txt").write_text("someone's")
        self.raw = raw_files(root)

    def _set(self, name: str, damage: Any = None) -> Path:
        path = self.root / name
        make_shards(path, samples=256, shape=(8, 8), classes=4, seed=1, shard_size=64)
        if damage:
            manifest = json.loads((path / MANIFEST).read_text())
            damage(manifest)
            (path / MANIFEST).write_text(json.dumps(manifest))
        return path

    def fresh(self) -> str:
        return str(self.root / f"out-{next(self.count)}")


def raw_files(root: Path) -> list[str]:
    """One good raw file (a real one, from tests/test_hostile_files.py's maker) and damaged ones."""
    from tests.test_hostile_files import raw_file

    good = raw_file(root / "good.json")
    damaged = [
        raw_file(root / f"bad-{i}.json", **{key: value})
        for i, (key, value) in enumerate(
            [("ft_workers", -3), ("ft_workload", "../x"), ("ft_run_config", "[]"), ("ft_digest", 3)]
        )
    ]
    text = good.read_text()
    for name, content in (
        ("cut.json", text[: len(text) // 2]),
        ("list.json", "[]"),
        ("null.json", "null"),
        ("nan.json", text.replace("1e-06", "NaN", 1)),
    ):
        (root / name).write_text(content)
        damaged.append(root / name)
    return [str(good), *map(str, damaged), str(root / "missing.json"), str(root), "/dev/null"]


def options(
    table: dict[str, st.SearchStrategy[str]], required: tuple[str, ...] = ()
) -> st.SearchStrategy[list[str]]:
    """Any subset of the options (the required ones mostly there), each with a drawn value,
    plus now and then a stray word."""
    picked = st.fixed_dictionaries(
        {k: mostly(table[k], st.none(), odds=10) for k in required},
        optional={k: v for k, v in table.items() if k not in required},
    )
    stray = mostly(
        st.just([]),
        st.lists(st.sampled_from(["--bogus", "-x", "extra"]), min_size=1, max_size=1),
        odds=10,
    )
    return st.builds(
        lambda chosen, extra: [
            *itertools.chain.from_iterable(
                [k] if v == "" and k in ("--json", "--probe", "--force") else [k, v]
                for k, v in chosen.items()
                if v is not None
            ),
            *extra,
        ],
        picked,
        stray,
    )


def run_argv(s: Scratch) -> st.SearchStrategy[list[str]]:
    small = numbers(-1, 0, 1, 2, 3)
    table = {
        "--workload": st.sampled_from(["data-parallel", "async-sgd", "loader", "rl"]),
        "--strategy": st.sampled_from(["serial", "threads", "asyncio", "blas", "gpu"]),
        "--workers": numbers(-1, 0, 1, 2, 3, 9, 10**6, 10**30),
        "--model": st.sampled_from(
            [
                "tiny",
                "8-4-2",
                "64-8-4",
                "0-1",
                "huge",
                "100000-100000-10",
                "",
                "1-1",
                "-".join(["5"] * 40),
                "64-10**9-10",
            ]
        ),
        "--steps": small,
        "--updates": small,
        "--epochs": small,
        "--batch": numbers(-1, 0, 1, 16, 64, 1000, 10**6, 10**15),
        "--microbatches": numbers(0, 1, 2, 3, 16, 7, 10**9),
        "--lr": st.sampled_from(["0.1", "-inf", "inf", "nan", "1e308", "-1", "0", "x", "1e-300"]),
        "--momentum": st.sampled_from(["0.9", "1", "nan", "-0.1", "inf", "0"]),
        "--train-samples": numbers(0, 1, 64, 100, 1000, 10**9, 10**12, 10**30),
        "--test-samples": numbers(0, 1, 64, 10**10, 10**30),
        "--seed": numbers(-1, 0, 1, 2**64, 10**100),
        "--start-method": st.sampled_from(["fork", "forkserver", "spawn", "vfork"]),
        "--data": st.sampled_from(
            [
                "",
                "idx:/nonexistent",
                str(s.good_set),
                str(s.bad_set),
                str(s.file),
                f"idx:{s.file}",
                str(s.full),
            ]
        ),
        "--policy": st.sampled_from(["lock", "striped", "hogwild", "none"]),
        "--stripes": numbers(0, 1, 3, 10**12),
        "--augment": st.sampled_from(["numpy", "python", "gpu"]),
        "--order": st.sampled_from(["ordered", "unordered", "random"]),
        "--prefetch": numbers(0, 1, 2, 10**9),
        "--hosts": st.sampled_from(["a,b", ""]),
        "--threads-per-rank": numbers(0, 2),
        "--probe": st.just(""),
        "--json": st.just(""),
    }
    return options(table).map(lambda rest: ["run", *rest])


def data_make_argv(s: Scratch) -> st.SearchStrategy[list[str]]:
    table = {
        "--dir": st.one_of(
            st.builds(s.fresh),
            st.sampled_from(
                [".", "", "/", str(s.file), str(s.full), str(s.file / "x"), str(s.good_set)]
            ),
        ),
        "--samples": numbers(1, 10, 30, 300, 0, 10**12),
        "--shape": st.sampled_from(
            [
                "8x8",
                "4x4",
                "8X9",
                "16x4",
                "3x3",
                "28",
                "0x0",
                "100000x100000",
                "axb",
                "8x8x8",
                "-8x8",
                "",
            ]
        ),
        "--classes": numbers(2, 3, 10, 256, 0, 257, 10**9),
        "--seed": numbers(0, 1, 7, -1, 10**30),
        "--shard-size": numbers(1, 7, 64, 10**9, 0),
        "--json": st.just(""),
    }
    required = ("--dir", "--samples", "--seed")
    return options(table, required).map(lambda rest: ["data", "make", *rest])


def report_argv(s: Scratch) -> st.SearchStrategy[list[str]]:
    files = st.lists(st.sampled_from(s.raw), min_size=1, max_size=3)
    out = st.one_of(
        st.builds(s.fresh),
        st.sampled_from([".", "/", str(s.file), str(s.full), str(s.file / "x"), ""]),
    )
    return st.builds(lambda raw, o: ["report", *raw, "-o", o], files, out)


class Worker:
    """One fuzz_worker.py process; restarted if a command line kills it."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        command = [sys.executable, str(ROOT / "tests" / "fuzz_worker.py"), str(LIMIT)]
        return subprocess.Popen(
            command, cwd=self.cwd, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, argv: list[str]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], HANG_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:  # the worker hung or died: restart it, and fail this command line
            self.proc.kill()
            code = self.proc.wait()
            self.proc = self._start()
            what = f"no answer in {HANG_S} s (hung)" if not ready else f"worker died ({code})"
            return {"status": what, "stderr": ""}
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def worker(scratch: Scratch) -> Iterator[Worker]:
    cwd = scratch.root / "cwd"  # `-o .` and `--dir .` land here: a folder with a file in it
    cwd.mkdir()
    (cwd / "keep.txt").write_text("x")
    found = Worker(cwd)
    yield found
    found.close()


def check(argv: list[str], answer: dict[str, Any]) -> None:
    assert answer["status"] in OK_STATUS and "Traceback" not in answer["stderr"], (
        f"{argv}: status {answer['status']}\n{answer['stderr'][-3000:]}"
    )


@pytest.mark.parametrize("command", [run_argv, data_make_argv, report_argv])
def test_fuzzed_command_lines_end_in_one_line(
    command: Any, scratch: Scratch, worker: Worker
) -> None:
    seen: set[str] = set()

    @FUZZ  # stops once EXAMPLES distinct command lines have passed (or at 2 x EXAMPLES draws)
    @given(command(scratch))
    def one(argv: list[str]) -> None:
        if len(seen) >= EXAMPLES:
            return
        seen.add(json.dumps(argv))
        check(argv, worker.run(argv))

    one()
    assert len(seen) >= EXAMPLES  # Hypothesis may draw one command line twice: count distinct ones


SAMPLE = [  # real subprocesses: the hostile values of issue 12, and the strategies left out above
    ["run", "--batch", "1000000000000"],
    ["run", "--train-samples", "1000000000"],
    ["run", "--model", "100000-100000-10"],
    ["run", "--lr", "-inf"],
    ["run", "--lr", "1e308", "--json", "--steps", "2"],
    ["run", "--strategy", "processes", "--workers", "2", "--steps", "2"],
    ["run", "--strategy", "processes", "--workers", "100000"],
    ["data", "make", "--dir", ".", "--samples", "10", "--seed", "1"],
    [
        "data",
        "make",
        "--dir",
        "{fresh}",
        "--samples",
        "10",
        "--seed",
        "1",
        "--shape",
        "100000x100000",
    ],
    ["report", "{raw}", "-o", "."],
    ["report", "{cut}", "-o", "{fresh}"],
    ["report", "-o", "{fresh}"],
]


@pytest.mark.parametrize("argv", SAMPLE, ids=lambda a: " ".join(a)[:50])
def test_a_sample_as_real_subprocesses(argv: list[str], scratch: Scratch) -> None:
    filled = [
        a.format(fresh=scratch.fresh(), raw=scratch.raw[0], cut=scratch.root / "cut.json")
        for a in argv
    ]
    cwd = scratch.root / "cwd-sub"
    cwd.mkdir(exist_ok=True)
    (cwd / "keep.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *filled],
        cwd=cwd,
        env=ENV,
        text=True,
        check=False,
        capture_output=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT)),
    )
    check(filled, {"status": proc.returncode, "stderr": proc.stderr})

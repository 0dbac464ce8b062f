"""`python -m harness bench`: a pyperf Runner script over a matrix of cells (see harness.bench.matrix).

    python -m harness bench [--preset quick|full] [--workloads ...] [--strategies ...]
                            [--workers 1,2,4] [--variants ...] [--models ...] [--out FILE]
                            [any pyperf Runner option: -p/--processes, -n/--values, -l, -w, ...]

pyperf re-runs this same command with `--worker --worker-task=K ...` for every value-collecting
process; each worker rebuilds the same matrix and pyperf skips all cells but the K-th. The cell's
pool is built lazily, on its first timed call and outside the timed region, so only the worker
that measures a cell pays for its pool; the time returned is the workload's own `wall_s` (its
training or loading loop), summed over pyperf's loops. A cell of a strategy whose workers a pyperf
worker cannot host (its class says `bench_as_job`, e.g. mpi's ranks) runs each loop as a whole
`python -m harness run` job instead (JobCellBench), and also returns its `wall_s`. A plain-loop
cell (matrix.PLAIN_LOOP) runs harness.plainloop's loop on the same work (PlainLoopBench), and
returns that loop's `wall_s`, timed alike.

The manager writes the suite to a hidden temporary file next to FILE and renames it over FILE at
the very end: an interrupted bench leaves the previous FILE as it was.

Ctrl-C reaches the manager and its pyperf worker at once (one process group). The worker stops its
cell, closes the cell's pool and exits quietly; the manager waits for that (killing the worker
midway would leave its shared memory behind), starts no other, and the CLI prints one line,
`error: interrupted`, with exit status 130. Interrupted travels through pyperf's frames instead of
KeyboardInterrupt, which pyperf would turn into its own message and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pyperf
from threadpoolctl import threadpool_limits

from harness import HarnessError, plainloop, swallowed
from harness.atomic import check_output_file, write_with
from harness.bench import measure
from harness.bench.matrix import (
    DATA_SEED,
    DATA_SHAPE,
    PLAIN,
    PLAIN_LOOP,
    PRESETS,
    Cell,
    Plan,
    Preset,
    Selection,
    cli_text,
    get_preset,
    plan,
    spec_for,
    variant_name,
)
from harness.config import RunConfig, run_options
from harness.envinfo import gil_enabled
from harness.workloads import get_workload
from strategies import Strategy, get_strategy, open_strategy
from strategies.base import blas_summary

PROGRAM = ("-m", "harness", "bench")  # how pyperf starts a worker: the same entry point as ours
LISTS = {
    "workloads": str,
    "strategies": str,
    "workers": int,
    "variants": variant_name,
    "models": str,
    "cells": str,
}

LIST_HELP = {
    "cells": "only these cells of the matrix, by benchmark name "
    "(e.g. data-parallel/threads/w2/tiny); the adaptive rounds measure wide cells again with it",
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Our options, on pyperf's own parser (so `--help` shows both and workers accept them)."""
    group = parser.add_argument_group("ft-harness matrix")
    group.add_argument(
        "--preset",
        default="quick",
        choices=sorted(PRESETS),
        help="the matrix and its run sizes (default: quick)",
    )
    for name, kind in LISTS.items():
        group.add_argument(
            f"--{name}",
            type=comma_list(kind),
            metavar="A,B",
            help=LIST_HELP.get(name)
            or f"explicit {name}: the matrix becomes the product of the lists given "
            "and the preset's values for the others"
            + (f" ('{PLAIN}': no variant)" if name == "variants" else ""),
        )
    group.add_argument(
        "--data-dir",
        help="the on-disk sample set for loader/disk cells "
        "(default: made once under the project cache)",
    )
    group.add_argument("--out", help="write the pyperf JSON suite here, atomically, at the end")


def comma_list(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None

    return parse


def one_line_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Interrupted(BaseException):
    """Ctrl-C (or SIGTERM) while pyperf's code is on the stack; main() turns it into
    KeyboardInterrupt once out of pyperf."""


class Stop:
    """The manager's Ctrl-C. It is held back (blocked) while a worker runs, so that the worker is
    born with it blocked: a Ctrl-C in the worker's first milliseconds (Python's own start-up,
    before any handler of ours) cannot print a traceback; the worker unblocks it once its handler
    is in place and stops its cell. Handled when no worker runs: raised at once. A SIGTERM (routed
    here by the CLI) is passed on to the running worker as SIGINT."""

    requested = False

    @classmethod
    def on_signal(cls, signum: int, frame: object) -> None:
        cls.requested = True
        workers = psutil.Process().children()
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.send_signal(signal.SIGINT)
        if not workers:
            raise Interrupted

    @classmethod
    def check(cls) -> None:
        """Take a Ctrl-C held back meanwhile (unblocking delivers it) and stop if there was one."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if cls.requested:
            raise Interrupted

    @staticmethod
    def hold() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def stop_worker(signum: int, frame: object) -> None:
    """A pyperf worker's Ctrl-C (strategies hand it over once out of their pool's bookkeeping):
    stop the cell once; a second signal must not cut its clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Interrupted


def forward_arguments(cmd: list[str], args: argparse.Namespace) -> None:
    """pyperf's add_cmdline_args callback: give each worker the options that define the matrix.
    pyperf calls it just before starting each worker: an interrupted bench starts no more."""
    Stop.check()
    Stop.hold()  # until the worker has ended (run_cells)
    cmd.extend(("--preset", args.preset, "--data-dir", args.data_dir))
    for name in LISTS:
        if getattr(args, name) is not None:
            cmd.extend((f"--{name}", ",".join(map(cli_text, getattr(args, name)))))


def selection_of(args: argparse.Namespace) -> Selection:
    return Selection(**{name: getattr(args, name) for name in LISTS})


# ---- one cell in one worker process --------------------------------------------------------------


class CellBench:
    """The time function of one cell: fn(loops) -> seconds spent in the workload's timed loop.
    The workload runs here, on a pool opened once (outside any timing) by the first call."""

    def __init__(self, cell: Cell, config: RunConfig) -> None:
        self.cell, self.config, self.spec = cell, config, spec_for(cell.workload)
        self.units = self.spec.units(config)
        self.workload = get_workload(cell.workload)
        self.strategy: Strategy | None = None
        self.opened = False
        self.probe_result: dict[str, Any] | None = None

    def __call__(self, loops: int) -> float:
        return sum(self.run_once()["wall_s"] for _ in range(loops))

    def run_once(self) -> dict[str, Any]:
        """One run of the cell (its pool opened first if need be), checked and recorded."""
        if not self.opened:
            self._open()
        result = self._run(self.config)
        self._check(result)
        measure.record_run(
            result, self.spec.digest_key, self.workload.facts, *self._context(result)
        )
        return result

    def _open(self) -> None:
        """The pool, and the workload's untimed probe if it has one (its result kept)."""
        self.opened = True
        self._start()
        if self.spec.probe:
            self.probe_result = self._run(self.config.replace(**self.spec.probe))
            measure.record_probe(self.probe_result)

    def _start(self) -> None:
        self.strategy = open_strategy(self.config)

    def _run(self, config: RunConfig) -> dict[str, Any]:
        assert self.strategy is not None
        return self.strategy.run_workload(self.workload, config)

    def _context(self, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Where the run happened: BLAS, the strategy's info, whether the GIL was on."""
        assert self.strategy is not None
        info = {"bitwise": self.strategy.bitwise_deterministic, **self.strategy.info()}
        return blas_summary(), info, gil_enabled()

    def _check(self, result: dict[str, Any]) -> None:
        done = result[self.spec.units_key]
        if done != self.units:
            raise HarnessError(
                f"{self.cell.name}: the run did {done} {self.spec.unit}s, the bench "
                f"divided by {self.units}; fix WorkloadSpec.units"
            )

    def close(self) -> None:
        if self.strategy is not None:
            self.strategy.close()


class JobCellBench(CellBench):
    """A cell of a strategy whose workers a pyperf worker cannot host (mpi: mpiexec starts the
    ranks as processes of their own): each run is `python -m harness run ... --json` in a
    subprocess, which starts them; the value is still the run's own `wall_s` (its training loop),
    not the job's start-up, and its facts come from the job's result, not from this process."""

    def _start(self) -> None:
        pass  # no pool lives here: every run starts its own job

    def _run(self, config: RunConfig) -> dict[str, Any]:
        command = [sys.executable, "-m", "harness", "run", *changed_options(config), "--json"]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise HarnessError(
                f"{self.cell.name}: `{shlex.join(command)}` exited with status "
                f"{proc.returncode}: {last}"
            )
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def _context(self, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        return result["blas"], result["strategy_info"], result["interpreter"]["gil_enabled"]


class PlainLoopBench(CellBench):
    """A cell of the hand-written loop (harness.plainloop) on the work of its twin, whose
    settings its config holds. Its value is the loop's own `wall_s`, like the harness's: set-up
    outside the clock, its pool's threads started before it (plainloop.started_pool), the
    digest recorded (bitwise the twin's: the same computation)."""

    def _start(self) -> None:
        # The loop pins BLAS to one thread while it runs, as serial and threads do; pinned here
        # for the process too (as a strategy does), so that the threads recorded are those.
        # No pool: each run makes its own, as a hand-written script does.
        self.blas_limit = threadpool_limits(limits=1, user_api="blas")

    def _run(self, config: RunConfig) -> dict[str, Any]:
        return plainloop.train(plainloop.args_for(config))

    def _context(self, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        return blas_summary(), {"name": PLAIN_LOOP, "bitwise": True}, gil_enabled()

    def close(self) -> None:
        if self.opened:
            self.blas_limit.restore_original_limits()


def cell_bench(cell: Cell, config: RunConfig) -> CellBench:
    if cell.strategy == PLAIN_LOOP:
        return PlainLoopBench(cell, config)
    job = get_strategy(cell.strategy).bench_as_job
    return JobCellBench(cell, config) if job else CellBench(cell, config)


def changed_options(config: RunConfig) -> list[str]:
    """`run`'s options for the settings that differ from their defaults (every setting has
    one: `--train-samples` for train_samples)."""
    return run_options(config.changed())


# ---- the manager: progress, data, output ----------------------------------------------------------


class Progress:
    """`[k/n] name  elapsed m:ss, about m:ss left` before each benchmark (mean time per cell so far)."""

    def __init__(self, total: int) -> None:
        self.total, self.start, self.done = total, time.monotonic(), 0

    def before(self, name: str) -> None:
        elapsed = time.monotonic() - self.start
        left = (
            f"about {clock(elapsed / self.done * (self.total - self.done))} left"
            if self.done
            else "estimating time left"
        )
        print(
            f"[{self.done + 1}/{self.total}] {name}  elapsed {clock(elapsed)}, {left}", flush=True
        )

    def after(self) -> None:
        self.done += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def default_data_dir(preset: Preset) -> str:
    from harness.toolchain import cache_dir

    height, width = DATA_SHAPE
    return str(
        cache_dir() / "bench-data" / f"{preset.data_samples}x{height}x{width}-seed{DATA_SEED}"
    )


def ensure_data(path: str, preset: Preset) -> None:
    """Make the sample set once (atomically); later benches verify and reuse it."""
    from harness.data.shards import MANIFEST, check_all, make_shards

    if (Path(path) / MANIFEST).exists():
        found = check_all(path)
        if found.samples != preset.data_samples or tuple(found.shape) != DATA_SHAPE:
            raise HarnessError(
                f"{path} holds {found.samples} samples of {found.shape}; preset "
                f"{preset.name} needs {preset.data_samples} of {DATA_SHAPE}"
            )
        return
    print(f"making the bench's sample set in {path}", flush=True)
    make_shards(
        path,
        samples=preset.data_samples,
        shape=DATA_SHAPE,
        classes=10,
        seed=DATA_SEED,
        shard_size=256,
    )


def write_suite(benchmarks: Sequence[pyperf.Benchmark], out: str) -> None:
    """Temporary file, then rename: a reader (or an interrupted run) never sees half a file."""
    suite = pyperf.BenchmarkSuite(list(benchmarks))
    write_with(Path(out), lambda temp: suite.dump(str(temp), replace=True))


# ---- the script -----------------------------------------------------------------------------------


def make_runner(argv: list[str]) -> pyperf.Runner:
    """pyperf's Runner with the preset's defaults (so -p/-n/... still override them)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--preset", default="quick")
    preset = get_preset(early.parse_known_args(argv)[0].preset)
    runner = pyperf.Runner(
        **preset.pyperf,
        program_args=PROGRAM,
        add_cmdline_args=forward_arguments,
        hooks=[measure.HookEntry],
    )
    runner.argparser.prog = "python -m harness bench"
    # bad options are one line `error: ...` and exit 2, as everywhere in the CLI
    runner.argparser.error = one_line_error  # type: ignore[method-assign]
    add_bench_arguments(runner.argparser)
    return runner


def prepare_manager(
    runner: pyperf.Runner, args: argparse.Namespace, preset: Preset, todo: Plan
) -> None:
    """Only the manager: the skip notes (first: they explain an empty plan), pass-through
    variables, the hook, the data set."""
    for cell, reason in todo.skipped:
        print(f"skipped {cell.name}: {reason}", flush=True)
    if not todo.cells:
        raise HarnessError("nothing to measure: every cell was skipped")
    measure.probe_pair_slowdown(os.environ)
    args.inherit_environ = measure.inherit_environ(os.environ, args.inherit_environ)
    args.hook = list(dict.fromkeys([*(args.hook or []), measure.HOOK_NAME]))
    if preset.uses_data(todo.cells):
        ensure_data(args.data_dir, preset)


def run_cells(
    runner: pyperf.Runner, preset: Preset, todo: Plan, data_dir: str, progress: Progress | None
) -> list[pyperf.Benchmark]:
    found = []
    for cell in todo.cells:
        config = preset.config(cell, data_dir)
        if progress:
            progress.before(cell.name)
        bench = cell_bench(cell, config)
        try:
            result = runner.bench_time_func(
                cell.name,
                bench,
                inner_loops=bench.units,
                metadata=measure.cell_metadata(cell, config),
            )
        except RuntimeError as exc:  # pyperf's manager: a worker exited non-zero
            Stop.check()  # it was stopped by Ctrl-C: no error of its own to report
            raise HarnessError(f"{cell.name}: {exc} (the worker's traceback is above)") from None
        finally:
            bench.close()
        Stop.check()
        if progress:
            progress.after()
        if result is not None:  # None: a worker skipping the cells pyperf did not ask it for
            found.append(result)
    return found


def main(argv: list[str]) -> int:
    """The bench; the caller's Ctrl-C handler and signal mask are as they were afterwards (the
    bench routes and holds SIGINT while it runs, and may be called in-process)."""
    handler = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    try:
        return run_bench(argv)
    except Interrupted:
        raise KeyboardInterrupt from None  # the CLI: one line, exit status 130
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def run_bench(argv: list[str]) -> int:
    runner = make_runner(argv)
    args = runner.parse_args(argv)
    signal.signal(signal.SIGINT, stop_worker if args.worker else Stop.on_signal)
    if args.worker:  # a Ctrl-C raised inside a finalizer would be printed and lost
        swallowed.redeliver((Interrupted,), stop_worker)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a worker is born with it held
    preset, selection = get_preset(args.preset), selection_of(args)
    args.data_dir = os.path.abspath(args.data_dir or default_data_dir(preset))
    todo = plan(preset, selection, args.data_dir)
    runner.metadata.update(measure.run_metadata(preset, selection))
    if args.worker:
        run_cells(runner, preset, todo, args.data_dir, None)
        return 0
    if args.out:  # before the matrix runs: a bad path must not cost the whole bench
        check_output_file(Path(args.out), "--out")
    prepare_manager(runner, args, preset, todo)
    progress = Progress(len(todo.cells))
    benchmarks = run_cells(runner, preset, todo, args.data_dir, progress)
    if args.out:
        write_suite(benchmarks, args.out)
        print(
            f"wrote {args.out}: {len(benchmarks)} benchmarks in {clock(progress.elapsed())}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Command line: `python -m harness {run,list,env,data,bench,report}`; each command is a `cmd_<name>` function."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any, Callable, NoReturn

from harness import HarnessError


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as ONE line `error: ...` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`; an option not given takes RunConfig's default (one source of defaults)."""
    p.add_argument("--workload")
    p.add_argument("--strategy")
    p.add_argument("--workers", type=int)
    p.add_argument("--model", help="tiny | small | large | widths like 64-32-10")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--microbatches", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--train-samples", type=int)
    p.add_argument("--test-samples", type=int)
    p.add_argument("--start-method", help="fork | forkserver | spawn (processes)")
    p.add_argument("--data", help="a `data make` folder, or idx:PATH (loader)")
    p.add_argument("--policy", help="lock | striped | hogwild (async-sgd)")
    p.add_argument("--updates", type=int, help="updates per worker (async-sgd)")
    p.add_argument("--stripes", type=int, help="equal slices (async-sgd striped)")
    p.add_argument("--probe", action="store_true", help="exact lost-update probe (async-sgd)")
    p.add_argument("--augment", help="numpy | python (loader)")
    p.add_argument("--order", help="ordered | unordered (loader)")
    p.add_argument("--epochs", type=int, help="epochs (loader)")
    p.add_argument("--prefetch", type=int, help="batches in flight per worker (loader)")
    p.add_argument("--hosts", help="hosts for the ranks, comma-separated, as mpiexec -hosts (mpi)")
    p.add_argument("--hostfile", help="an MPI hostfile, as mpiexec -f (mpi)")
    p.add_argument("--threads-per-rank", type=int, help="threads inside each rank (mpi)")
    p.add_argument("--reduce", help="ordered | allreduce (mpi data-parallel)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def config_from_args(args: argparse.Namespace) -> Any:
    from harness.config import RunConfig
    fields = RunConfig.__dataclass_fields__
    return RunConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import execute, summary_line

    def show(result: dict[str, Any]) -> None:
        print(json.dumps(result, indent=2) if args.json else summary_line(result))

    config = config_from_args(args)
    if config.strategy == "mpi":  # ranks are processes of their own: launch them, or be one
        from harness.mpi.launch import run_mpi
        return run_mpi(config, args, show)
    show(execute(config))
    return 0


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """`data make` writes a sample set to disk (atomically); `data check` verifies every shard."""
    actions = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    make = actions.add_parser("make", help="write a learnable synthetic image set as shards")
    make.add_argument("--dir", required=True)
    make.add_argument("--samples", type=int, required=True)
    make.add_argument("--shape", default="28x28", help="HxW (default 28x28)")
    make.add_argument("--classes", type=int, default=10)
    make.add_argument("--seed", type=int, required=True)
    make.add_argument("--shard-size", type=int, default=1024, help="samples per shard (default 1024)")
    check = actions.add_parser("check", help="verify the manifest and every shard's size and sha256")
    check.add_argument("--dir", required=True)
    for action in (make, check):
        action.add_argument("--json", action="store_true")


def cmd_data(args: argparse.Namespace) -> int:
    from harness.data.shards import data_command
    summary = data_command(args)
    print(json.dumps(summary, indent=2) if args.json else summary["message"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from harness.workloads import DESCRIPTIONS, _load_all
    from strategies import REGISTRY
    _load_all()
    rows = {"workloads": [{"name": n, "description": d} for n, d in sorted(DESCRIPTIONS.items())],
            "strategies": [strategy_row(cls) for _, cls in sorted(REGISTRY.items())]}
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("workloads:")
    for w in rows["workloads"]:
        print(f"  {w['name']:<15} {w['description']}")
    print("strategies:")
    for s in rows["strategies"]:
        state = "available" if s["available"] else f"UNAVAILABLE: {s['reason']}"
        print(f"  {s['name']:<10} {state:<12} {s['description']}")
    return 0


def strategy_row(cls: Any) -> dict[str, Any]:
    ok, reason = cls.available()
    return {"name": cls.name, "available": ok, "reason": reason, "description": cls.description,
            "uses_processes": cls.uses_processes, "shares_memory": cls.shares_memory,
            "bitwise_deterministic": cls.bitwise_deterministic}


def cmd_env(args: argparse.Namespace) -> int:
    from harness.envinfo import environment
    env = environment()
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    interp, cpu, blas = env["interpreter"], env["cpu"], env["numpy"]["blas"]
    print(f"interpreter: {interp['name']} {interp['version']} gil_enabled={interp['gil_enabled']} "
          f"({interp['executable']})")
    print(f"numpy: {env['numpy']['version']}  BLAS: {blas['library']} {blas['version']} "
          f"threads={blas['threads']}")
    print(f"cpu: {cpu['model']}  logical={cpu['logical']} physical={cpu['physical']} usable={cpu['usable']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.main import main as bench_main
    return bench_main(args.argv)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.summary import report_command
    print(report_command(args.raw, args.output))
    return 0


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("raw", nargs="+", help="pyperf JSON files from `bench`, one per configuration")
    p.add_argument("-o", "--output", default="reports/latest", help="folder (rewritten; default reports/latest)")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (cmd_run, "run one workload under one strategy and print its result"),
    "list": (cmd_list, "list workloads and strategies, with availability"),
    "env": (cmd_env, "describe the interpreter, NumPy/BLAS and CPU"),
    "data": (cmd_data, "make or check an on-disk sample set (shards + manifest) for --data"),
    "bench": (cmd_bench, "pyperf benchmarks of a matrix of cells (options: bench --help)"),
    "report": (cmd_report, "render REPORT.md, plots and summary.json from bench's raw files"),
}
# Commands that parse their own command line: pyperf's Runner reads bench's options and re-runs
# the same command line, with --worker and its own options, in every worker process.
RAW_COMMANDS = ("bench",)


def build_parser() -> Parser:
    parser = Parser(prog="python -m harness", description="ft-harness: parallel NumPy training, compared")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "run":
            add_run_arguments(p)
        elif name == "data":
            add_data_arguments(p)
        elif name == "report":
            add_report_arguments(p)
        elif name in RAW_COMMANDS:
            p.add_argument("argv", nargs=argparse.REMAINDER, help="see `python -m harness bench --help`")
        else:
            p.add_argument("--json", action="store_true")
    return parser


def interrupt_on_termination() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so pools are shut down and shared memory unlinked:
    they call whatever handles SIGINT at that moment (a strategy may route Ctrl-C for a while)."""
    def interrupt(signum: int, frame: object) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt(signal.Signals(signum).name)
        handler(signum, frame)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def parse(argv: list[str]) -> argparse.Namespace:
    if argv[:1] and argv[0] in RAW_COMMANDS:
        return argparse.Namespace(command=argv[0], argv=argv[1:])
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    interrupt_on_termination()
    try:
        return COMMANDS[args.command][0](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)  # 2: bad input; a crashed worker says 1
    except KeyboardInterrupt:
        if not (args.command == "bench" and "--worker" in args.argv):  # its manager says it once
            print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

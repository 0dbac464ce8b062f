"""Command line: `python -m harness {run,list,env,data,bench,report}`; each command is a `cmd_<name>` function."""

from __future__ import annotations

# Before any import, a Ctrl-C is held back until the plug-ins (NumPy with them) are loaded: one
# landing inside NumPy's C import can come out as an ImportError with no trace of the interrupt
# (PyCapsule_Import replaces it), and one at this module's own imports precedes main()'s try.
_AS_PROGRAM = __name__ == "__main__"  # not imported by a test that calls main()

if __name__ == "__main__":
    import _signal  # built in (no Python code runs), unlike `signal`, whose enums take a while

    _EARLY_CTRL_C: list[int] = []

    def _hold_ctrl_c(signum: int, frame: object) -> None:
        _EARLY_CTRL_C.append(signum)

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:  # not if ignored
        _signal.signal(_signal.SIGINT, _hold_ctrl_c)

import argparse
import re
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from harness import HarnessError, __version__, jsonout, swallowed
from harness.exitguard import end_within

# A value, not an option: argparse's own pattern misses -1e5, -inf and -nan, so `--lr -inf`
# would fail as "expected one argument" instead of naming what is wrong with the value.
NEGATIVE_NUMBER = re.compile(
    r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE
)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as ONE line `error: ...` and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`, built from the declarations: RunConfig's core fields, then every option
    of every registered plug-in (an option not given takes its declared default)."""
    from harness.config import all_options, core_fields, core_option

    for core in core_fields():
        add_option(p, core_option(core), "")
    for _, owners in sorted(all_options().items()):
        add_option(p, owners[0][1], ", ".join(owner for owner, _ in owners))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", help="write every task's worker, start and end to FILE (JSON lines)")


def add_option(p: argparse.ArgumentParser, option: Any, owners: str) -> None:
    where = f" [{owners}]" if owners else ""
    choices = f" ({' | '.join(map(str, option.choices))})" if option.choices else ""
    help_text = f"{option.help}{choices}{where}".replace("%", "%%")
    if option.kind is bool:
        p.add_argument(option.flag, action="store_true", default=None, help=help_text)
    else:
        p.add_argument(option.flag, type=option.kind, help=help_text, metavar=option.name.upper())


CLI_ONLY = ("command", "json", "trace")  # how to run and show, not what to run


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave (None: not given; a flag left off is not given either)."""
    return {k: v for k, v in vars(args).items() if k not in CLI_ONLY and v is not None}


def config_from_args(args: argparse.Namespace) -> Any:
    return config_from_settings(given_settings(args))


def config_from_settings(settings: dict[str, Any]) -> Any:
    from harness.config import RunConfig

    return RunConfig(**settings)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.memory import check_run
    from harness.runner import execute, summary_line
    from strategies import get_strategy

    def show(result: dict[str, Any]) -> None:
        print(jsonout.dumps(result, indent=2) if args.json else summary_line(result))

    config = config_from_args(args)
    strategy = get_strategy(config.strategy)
    if args.trace and strategy.bench_as_job:  # its workers are a job of their own
        raise HarnessError(
            f"trace={args.trace!r}: --trace does not support strategy {config.strategy!r} yet"
        )
    check_run(config)  # workers bound and memory estimate, before anything is allocated
    command_line = {**given_settings(args), **({"json": True} if args.json else {})}
    status = strategy.launch(config, command_line, show)
    if status is not None:  # the strategy ran the command its own way (mpi: under mpiexec)
        return int(status)
    if args.trace:
        from harness.trace import recording

        with recording(args.trace) as recorder:
            result = execute(config)
            recorder.about = {
                "configuration": result["interpreter"]["name"],
                "settings": result["config"],
            }
            show(result)
        return 0
    show(execute(config))
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from harness.advise import advise
    from harness.advise.render import text, write

    if args.budget <= 0:
        raise HarnessError(f"budget={args.budget} must be > 0 seconds")
    given = {
        k: v for k, v in given_settings(args).items() if k not in ("budget", "output", "strategies")
    }
    for fixed in ("strategy", "workers"):
        if fixed in given:
            raise HarnessError(
                f"advise tries every strategy and worker count itself; drop --{fixed}"
            )
    result = advise(config_from_settings(given), args.budget, quiet=args.json, only=args.strategies)
    written = write(result, args.output) if args.output else []
    print(jsonout.dumps(result, indent=2) if args.json else text(result))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def add_advise_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds of measuring on this interpreter (default 60)",
    )
    p.add_argument("-o", "--output", help="also write ADVICE.md and advice.png into this folder")
    p.add_argument(
        "--strategies",
        type=lambda t: tuple(x.strip() for x in t.split(",") if x.strip()),
        metavar="A,B",
        help="try only these strategies (serial is always measured)",
    )


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """`data make` writes a sample set to disk (atomically); `data check` verifies every shard."""
    actions = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    make = actions.add_parser("make", help="write a learnable synthetic image set as shards")
    make.add_argument("--dir", required=True)
    make.add_argument("--samples", type=int, required=True)
    make.add_argument("--shape", default="28x28", help="HxW (default 28x28)")
    make.add_argument("--classes", type=int, default=10)
    make.add_argument("--seed", type=int, required=True)
    make.add_argument(
        "--shard-size", type=int, default=1024, help="samples per shard (default 1024)"
    )
    check = actions.add_parser(
        "check", help="verify the manifest and every shard's size and sha256"
    )
    check.add_argument("--dir", required=True)
    for action in (make, check):
        action.add_argument("--json", action="store_true")


def cmd_data(args: argparse.Namespace) -> int:
    from harness.data.shards import data_command

    summary = data_command(args)
    print(jsonout.dumps(summary, indent=2) if args.json else summary["message"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from harness.plugins import loaded

    rows = plugin_rows()
    if args.json:
        print(jsonout.dumps({**rows, "plugins": loaded()}, indent=2))
        return 0
    for kind in ("workloads", "strategies", "models"):
        print(f"{kind}:")
        for row in rows[kind]:
            state = "" if row.get("available", True) else f"UNAVAILABLE: {row['reason']} "
            flags = " ".join(o["flag"] for o in row["options"])
            print(
                f"  {row['name']:<14} {state}{row['description']}"
                + (f"  [{flags}]" if flags else "")
            )
    for source in loaded():
        print(
            f"plugin: {source['name']} ({source['origin']}"
            + (f", {source['distribution']} {source['version']}" if source["distribution"] else "")
            + ")"
        )
    return 0


def plugin_rows() -> dict[str, list[dict[str, Any]]]:
    from harness import plugins
    from harness.models import MODELS
    from harness.workloads import WORKLOADS
    from strategies import REGISTRY

    plugins.load()
    return {
        "workloads": [workload_row(w) for w in WORKLOADS.values()],
        "strategies": [strategy_row(cls) for cls in REGISTRY.values()],
        "models": [
            {
                "name": m.name,
                "description": m.description,
                "examples": list(m.examples),
                "module": m.module,
                "options": [o.describe() for o in m.options],
            }
            for m in MODELS.values()
        ],
    }


def workload_row(w: Any) -> dict[str, Any]:
    return {
        "name": w.name,
        "description": w.description,
        "module": w.module,
        "uses_model": w.uses_model,
        "benchable": w.bench is not None,
        "options": [o.describe() for o in w.options],
    }


def strategy_row(cls: Any) -> dict[str, Any]:
    ok, reason = cls.available()
    return {
        "name": cls.name,
        "available": ok,
        "reason": reason,
        "description": cls.description,
        "module": cls.__module__,
        "uses_processes": cls.uses_processes,
        "shares_memory": cls.shares_memory,
        "bitwise_deterministic": cls.bitwise_deterministic,
        "bench_variants": sorted(cls.bench_variants),
        "options": [o.describe() for o in cls.options],
    }


def cmd_env(args: argparse.Namespace) -> int:
    from harness.envinfo import environment

    env = environment()
    if args.json:
        print(jsonout.dumps(env, indent=2))
        return 0
    interp, cpu, blas = env["interpreter"], env["cpu"], env["numpy"]["blas"]
    print(
        f"interpreter: {interp['name']} {interp['version']} gil_enabled={interp['gil_enabled']} "
        f"({interp['executable']})"
    )
    print(
        f"numpy: {env['numpy']['version']}  BLAS: {blas['library']} {blas['version']} "
        f"threads={blas['threads']}"
    )
    print(
        f"cpu: {cpu['model']}  logical={cpu['logical']} physical={cpu['physical']} usable={cpu['usable']}"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.main import main as bench_main

    return bench_main(args.argv)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.summary import report_command

    print(report_command(args.raw, args.output, args.against, args.traces))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from harness.report.timeline import trace_command

    print(trace_command(args.file, args.output))
    return 0


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("raw", nargs="+", help="pyperf JSON files from `bench`, one per configuration")
    p.add_argument(
        "-o",
        "--output",
        default="reports/latest",
        help="folder (rewritten; default reports/latest)",
    )
    p.add_argument(
        "--against",
        metavar="OLD_REPORT_DIR",
        help="list the headline cells whose verdict or ranking changed since that report",
    )
    p.add_argument(
        "--traces",
        nargs="+",
        metavar="PATH",
        help="`run --trace` files or folders of *.trace.jsonl for Where the time goes "
        "(default: the *.trace.jsonl beside the raw files)",
    )


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (cmd_run, "run one workload under one strategy and print its result"),
    "list": (cmd_list, "list workloads and strategies, with availability"),
    "env": (cmd_env, "describe the interpreter, NumPy/BLAS and CPU"),
    "advise": (cmd_advise, "which strategy and worker count for this workload/model here, and why"),
    "data": (cmd_data, "make or check an on-disk sample set (shards + manifest) for --data"),
    "bench": (cmd_bench, "pyperf benchmarks of a matrix of cells (options: bench --help)"),
    "report": (cmd_report, "render REPORT.md, plots and summary.json from bench's raw files"),
    "trace": (cmd_trace, "timeline PNG, breakdown table and trace.json from a `run --trace` file"),
}
# Commands that parse their own command line: pyperf's Runner reads bench's options and re-runs
# the same command line, with --worker and its own options, in every worker process.
RAW_COMMANDS = ("bench",)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m harness",
        description="ft-harness: parallel NumPy training, compared",
        epilog="--plugin MODULE|FILE.py|FOLDER (any command, repeatable) loads a plug-in "
        "that is not installed; FT_HARNESS_PLUGINS=mod1,mod2 does the same",
    )
    parser.add_argument("--version", action="version", version=f"ft-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "run":
            add_run_arguments(p)
        elif name == "advise":
            add_advise_arguments(p)
        elif name == "data":
            add_data_arguments(p)
        elif name == "report":
            add_report_arguments(p)
        elif name == "trace":
            p.add_argument("file", help="a `run --trace` file")
            p.add_argument("-o", "--output", required=True, help="folder to write into")
        elif name in RAW_COMMANDS:
            p.add_argument(
                "argv", nargs=argparse.REMAINDER, help="see `python -m harness bench --help`"
            )
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


def take_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """`--plugin ITEM` / `--plugin=ITEM` anywhere (repeatable): (items, the other arguments).
    They are taken before parsing because the plug-ins' options shape the parser."""
    items, rest, it = [], [], iter(argv)
    for arg in it:
        if arg == "--plugin":
            item = next(it, None)
            if item is None:
                raise HarnessError("--plugin needs a module name, a .py file or a package folder")
            items.append(item)
        elif arg.startswith("--plugin="):
            items.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return items, rest


def load_plugins(argv: list[str]) -> list[str]:
    from harness import plugins

    items, rest = take_plugins(argv)
    plugins.load()
    plugins.add(items)
    return rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet = argv[:1] == ["bench"] and "--worker" in argv  # a pyperf worker: its manager says it
    try:
        interrupt_on_termination()
        args = parse(load_plugins(argv))  # plug-ins first: their options shape the parser
        release_early_ctrl_c()
        return COMMANDS[args.command][0](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)  # 2: bad input; a crashed worker says 1
    except KeyboardInterrupt:  # also while imports and plug-ins load: one line, never a traceback
        return interrupted(quiet)
    except ImportError as exc:  # NumPy turns a Ctrl-C during its import into an ImportError
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return interrupted(quiet)
        raise


def release_early_ctrl_c() -> None:
    """Python's own Ctrl-C handling again, and a Ctrl-C held back while the imports ran raised
    now, inside main's try (one line, exit 130, not a traceback or an ImportError)."""
    hold = globals().get("_hold_ctrl_c")
    if hold is None or signal.getsignal(signal.SIGINT) is not hold:
        return  # imported, not run (tests), or SIGINT was ignored at start-up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    swallowed.redeliver((KeyboardInterrupt,), signal.default_int_handler)
    if _EARLY_CTRL_C:
        raise KeyboardInterrupt


def interrupted(quiet: bool) -> int:
    if _AS_PROGRAM:
        stop_taking_interrupts()
    if not quiet:
        print("error: interrupted", file=sys.stderr)
    return 130


def stop_taking_interrupts() -> None:
    """The interrupted program is on its way out: a further Ctrl-C (pressed again, or a group
    signal that reaches us twice) or SIGTERM is ignored. One would otherwise land in the clean-up
    still to come: multiprocessing's finalizers, run as main's frames go, unlink a semaphore and
    then tell the resource tracker, which warns of a leak if cut between the two; and after the
    interpreter has reset its handlers, SIGINT ends the process by the signal (exit -2). The exit
    guard (`end_within`) still bounds the exit."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    status = main()
    if status == 130:  # interrupted: the interpreter's exit must not hang the prompt
        end_within()
    sys.exit(status)

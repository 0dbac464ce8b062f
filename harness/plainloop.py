"""A plain, hand-written data-parallel trainer: the yardstick for the harness's own overhead.

Plain functions and plain lists of arrays, no harness classes: the work of `run --workload
data-parallel` (batch cut into a fixed number of microbatches of fancy-indexed rows, per-microbatch
summed gradients, reduced in microbatch order, momentum SGD), written the way one would write it
by hand. The data, the initial weights and the shuffle are drawn from the same seeds, so the final
parameters are bitwise the harness's: a comparison of speed between two equal computations.

    python -m harness.plainloop --workers 2 --steps 600 [--model 64-32-10 --batch 1024 ...]

`--workers 1` is the serial loop; more runs a ThreadPoolExecutor of workers - 1 threads, the
calling thread taking the first slice of microbatches itself. `compare [N]` (default 5) before the
options alternates `run` (threads, or serial at one worker) and this loop N times in fresh
processes and prints the medians of their timed loops, their ratio, and the ratio of their
loops' CPU time (usable on a busy machine, where wall times are not).

`python -m harness bench` also times it as cells of their own (`data-parallel/plainloop/wN/...`,
harness.bench.matrix.PLAIN_LOOP), on the work of the harness run a RunConfig describes
(`args_for`, `misfit`); the report sets them beside the harness's cells (harness.report.overhead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from threadpoolctl import threadpool_limits

from harness import HarnessError
from harness.data.synthetic import synthetic
from harness.model import parse_widths
from harness.seeding import rng_for

if TYPE_CHECKING:
    from harness.config import RunConfig

Params = list[np.ndarray]  # W0, b0, W1, b1, ...


def init_params(widths: list[int], seed: int) -> Params:
    """He-initialised weights, zero biases, drawn in layer order from the init seed (domain 1)."""
    rng, params = rng_for(seed, 1), []
    for n_in, n_out in pairwise(widths):
        params += [rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in), np.zeros(n_out)]
    return params


def loss_and_grads(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Summed softmax cross-entropy of an MLP with ReLU hidden layers, and its gradients."""
    acts = [x]
    for i in range(0, len(params) - 2, 2):
        acts.append(np.maximum(acts[-1] @ params[i] + params[i + 1], 0.0))
    logits = acts[-1] @ params[-2] + params[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = float(-(shifted[rows, y] - log_norm[:, 0]).sum())
    delta = np.exp(shifted - log_norm)
    delta[rows, y] -= 1.0
    grads: Params = [np.empty(0)] * len(params)
    for layer in range(len(params) // 2 - 1, -1, -1):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer:
            delta = (delta @ params[2 * layer].T) * (acts[layer] > 0)
    return loss, grads


def slice_grads(
    params: Params, x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]
) -> list[tuple[float, Params]]:
    return [loss_and_grads(params, x[rows], y[rows]) for rows in parts]


def sgd_step(
    params: Params,
    velocity: Params,
    results: list[tuple[float, Params]],
    batch: int,
    lr: float,
    momentum: float,
) -> float:
    """Reduce in microbatch order, then momentum SGD in place; the batch's mean loss."""
    for i, p in enumerate(params):
        total = results[0][1][i].copy()
        for _, grads in results[1:]:
            total += grads[i]
        velocity[i] = momentum * velocity[i] + total / batch
        p -= lr * velocity[i]
    return sum(loss for loss, _ in results) / batch


def train(args: argparse.Namespace) -> dict[str, Any]:
    widths = [int(w) for w in args.model.split("-")]
    data = synthetic(widths[0], widths[-1], args.train_samples, args.test_samples, args.seed)
    x, y, n = data.x_train, data.y_train, len(data.y_train)
    params = init_params(widths, args.seed)
    velocity = [np.zeros_like(p) for p in params]
    size, per_epoch = args.batch // args.microbatches, n // args.batch
    pool = started_pool(args.workers - 1)
    bounds = [m * args.microbatches // args.workers for m in range(args.workers + 1)]
    order_epoch, order = -1, np.empty(0, dtype=np.int64)
    # one BLAS thread, as the harness's serial and threads strategies pin it (strategies.base):
    # the same kernels, and no BLAS threads beside the pool's
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        for step in range(args.steps):
            epoch, position = divmod(step, per_epoch)
            if epoch != order_epoch:  # one shuffle per epoch, as the harness caches it
                order_epoch, order = epoch, rng_for(args.seed, 4, epoch).permutation(n)
            batch = order[position * args.batch : (position + 1) * args.batch]
            parts = [batch[m * size : (m + 1) * size] for m in range(args.microbatches)]
            slices = [parts[a:b] for a, b in pairwise(bounds)]
            futures = (
                [pool.submit(slice_grads, params, x, y, s) for s in slices[1:]] if pool else []
            )
            results = slice_grads(params, x, y, slices[0])  # the caller takes the first slice
            for future in futures:
                results += future.result()
            sgd_step(params, velocity, results, args.batch, args.lr, args.momentum)
        wall = time.perf_counter() - start
    if pool:
        pool.shutdown()
    flat = np.concatenate([p.ravel() for p in params])
    return {
        "workload": "plainloop",
        "workers": args.workers,
        "steps": args.steps,
        "samples": args.steps * args.batch,
        "wall_s": wall,
        "samples_per_s": args.steps * args.batch / wall,
        "params_sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
    }


def started_pool(threads: int) -> ThreadPoolExecutor | None:
    """A pool whose threads all run already: the executor starts a thread only when a task
    arrives, which would put thread start-ups inside the timed loop, where the harness's pool is
    started before its loop. Each thread waits on a barrier with the caller, so none is reused."""
    if threads < 1:
        return None
    pool, ready = ThreadPoolExecutor(threads), threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(ready.wait)
    ready.wait()
    return pool


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and status 2, as the harness's CLI
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="python -m harness.plainloop", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="64-32-10", help="widths, e.g. 64-32-10")
    for name, default in (
        ("workers", 1),
        ("steps", 50),
        ("seed", 0),
        ("batch", 1024),
        ("microbatches", 16),
        ("train-samples", 8192),
        ("test-samples", 1024),
    ):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    args = p.parse_args(argv)
    if message := problem(args):
        p.error(message)
    return args


def problem(args: argparse.Namespace) -> str:
    """What makes these settings unusable ("" if nothing)."""
    widths = args.model.split("-")
    if len(widths) < 2 or not all(w.isdigit() and int(w) > 0 for w in widths):
        return f"model={args.model!r} is not widths like 64-32-10"
    if args.workers < 1 or args.microbatches < args.workers or args.batch % args.microbatches:
        return (
            f"workers={args.workers} and microbatches={args.microbatches} must satisfy "
            f"1 <= workers <= microbatches, and microbatches must divide batch={args.batch}"
        )
    return ""


# ---- the work of a harness run (a bench cell's RunConfig) ---------------------------------------

# The settings this loop reads (and `force`, which changes no work); any other that differs from
# its default (--data, --augment, a strategy's knob) is work this loop does not do.
TAKEN = (
    "workload",
    "strategy",
    "workers",
    "model",
    "seed",
    "batch",
    "lr",
    "momentum",
    "steps",
    "microbatches",
    "train_samples",
    "test_samples",
    "force",
)


def args_for(config: RunConfig) -> argparse.Namespace:
    """This loop's settings for the work of a data-parallel run (a model preset as its widths)."""
    return argparse.Namespace(
        model="-".join(map(str, parse_widths(config.model))),
        **{k: getattr(config, k) for k in TAKEN if k not in ("workload", "strategy", "model")},
    )


def misfit(config: RunConfig) -> str:
    """Why this loop cannot do the work of a harness run ("" if it can)."""
    if config.workload != "data-parallel":
        return f"the plain loop trains data-parallel only, not {config.workload}"
    try:
        args = args_for(config)
    except HarnessError:
        return f"the plain loop trains MLPs given by widths, not model {config.model!r}"
    other = sorted(set(config.changed()) - set(TAKEN))
    if other:
        return f"the plain loop reads the synthetic set from memory and has no {', '.join(other)}"
    return problem(args)


def one_run(command: list[str]) -> tuple[float, float]:
    """A fresh process: its timed loop's wall time, and the CPU time it used (all of it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return float(json.loads(done.stdout)["wall_s"]), cpu


def compare(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """Harness (threads strategy; serial at 1 worker) and plain loop, alternated `repeats` times
    in fresh processes. Wall: medians of the timed loops. CPU: each run's CPU time minus that of
    the same command at a tenth of the steps (start-up cancels), which stays meaningful on a
    busy machine where wall times do not; the ratio is the median of the per-round ratios."""
    short = max(1, args.steps // 10)
    strategy = "threads" if args.workers > 1 else "serial"
    walls: dict[str, list[float]] = {"harness": [], "plain": []}
    cpus: dict[str, list[float]] = {"harness": [], "plain": []}
    for round_ in range(repeats):
        for name in ("harness", "plain")[:: 1 if round_ % 2 == 0 else -1]:
            prefix = (
                ["-m", "harness", "run", "--strategy", strategy, "--json"]
                if name == "harness"
                else ["-m", "harness.plainloop"]
            )
            wall, cpu = one_run([*prefix, *_options(args, args.steps)])
            cpus[name].append(cpu - one_run([*prefix, *_options(args, short)])[1])
            walls[name].append(wall)
    medians = {name: statistics.median(times) for name, times in walls.items()}
    cpu_ratios = [h / p for h, p in zip(cpus["harness"], cpus["plain"])]
    return {
        "workers": args.workers,
        "steps": args.steps,
        "repeats": repeats,
        "median_wall_s": medians,
        "harness_over_plain": medians["harness"] / medians["plain"],
        "loop_cpu_s": {name: statistics.median(times) for name, times in cpus.items()},
        "harness_over_plain_cpu": statistics.median(cpu_ratios),
        "walls_s": walls,
        "loadavg": os.getloadavg(),
    }


def _options(args: argparse.Namespace, steps: int) -> list[str]:
    return [
        "--model",
        args.model,
        "--workers",
        str(args.workers),
        "--steps",
        str(steps),
        "--seed",
        str(args.seed),
        "--batch",
        str(args.batch),
        "--microbatches",
        str(args.microbatches),
    ]


def main(argv: list[str]) -> None:
    repeats = 0
    if argv[:1] == ["compare"]:
        argv, repeats = argv[1:], 5
        if argv[:1] and argv[0].isdigit():
            repeats, argv = int(argv[0]), argv[1:]
    args = parse(argv)
    print(json.dumps(compare(args, repeats) if repeats else train(args)))


if __name__ == "__main__":
    main(sys.argv[1:])

"""`run --trace FILE`: when and where each task of each `map` ran, and what the caller did between.

While a `Recorder` is installed (module global RECORDER), `Strategy.map` hands its work to
`Recorder.map`, which wraps the task function so each call also returns (pid, native thread id,
thread name, start_ns, end_ns) — so process workers send their timestamps back with their results.
All times are `time.monotonic_ns()`, CLOCK_MONOTONIC: one clock for every process of the host.
With no recorder installed, `map` pays one global lookup per call (per training step).

The file is JSON lines, one Chrome/Perfetto trace event per line (`ph` "X": a span with `ts` and
`dur` in µs since the run started; `args` keeps the exact ns; the `run` span's also the
configuration's name and the run's settings); `python -m harness trace FILE -o DIR`
wraps them as DIR/trace.json for a trace viewer and draws the timeline and breakdown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import HarnessError

RECORDER: Recorder | None = None
TaskRecord = tuple[int, int, str, int, int]  # pid, native thread id, thread name, start, end


def _here() -> tuple[int, int, str]:
    return os.getpid(), threading.get_native_id(), threading.current_thread().name


class Timed:
    """A task function that returns (its result, where and when it ran); picklable if fn is."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def for_this_thread(self) -> Timed:
        """Timed around the thread's own callable, where fn has one (strategies.base)."""
        own = getattr(self.fn, "for_this_thread", None)
        return Timed(own()) if own is not None else self

    def __call__(self, task: Any) -> tuple[Any, TaskRecord]:
        start = time.monotonic_ns()
        result = self.fn(task)
        end = time.monotonic_ns()
        return result, (*_here(), start, end)


class Recorder:
    """Spans of one run: the run itself, each map (in the caller) and each task (in its worker)."""

    def __init__(self) -> None:
        self.start_ns, self.end_ns = time.monotonic_ns(), 0
        self.caller = _here()
        self.maps: list[tuple[int, int, int]] = []  # start, end, tasks
        self.tasks: list[tuple[int, int, TaskRecord]] = []  # map number, task position, record
        self._inside = threading.local()  # a map inside a traced map (mpi's threads) is not traced
        # which run this was (configuration name, settings), set by `run --trace` once it is
        # known: the report places each trace by it, not by the file's name
        self.about: dict[str, Any] = {}

    def map(
        self,
        run: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]],
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
    ) -> list[Any]:
        """`run(fn, tasks)` (a strategy's _map) with every task timed; returns the plain results."""
        if getattr(self._inside, "active", False):
            return run(fn, tasks)
        self._inside.active = True
        try:
            start = time.monotonic_ns()
            timed = run(Timed(fn), tasks)
            end = time.monotonic_ns()
        finally:
            self._inside.active = False
        number = len(self.maps)
        self.maps.append((start, end, len(tasks)))
        self.tasks += [(number, position, record) for position, (_, record) in enumerate(timed)]
        return [result for result, _ in timed]

    def events(self) -> Iterator[dict[str, Any]]:
        """The trace events, in time order per kind: names, run, start-up, maps, gaps, tasks."""
        pid, tid, name = self.caller
        threads = {(pid, tid): name, **{(r[0], r[1]): r[2] for _, _, r in self.tasks}}
        for (p, t), label in sorted(threads.items()):
            yield {"ph": "M", "name": "thread_name", "pid": p, "tid": t, "args": {"name": label}}
        run = self._span("run", self.start_ns, self.end_ns, pid, tid)
        yield {**run, "args": {**run["args"], **self.about}}
        if self.maps:
            yield self._span("start-up", self.start_ns, self.maps[0][0], pid, tid)
        for number, (start, end, count) in enumerate(self.maps):
            yield self._span("map", start, end, pid, tid, step=number, tasks=count)
            if number + 1 < len(self.maps):  # reduction, update, next batch: the serial part
                yield self._span(
                    "outside map", end, self.maps[number + 1][0], pid, tid, step=number
                )
        for number, position, (p, t, _, start, end) in self.tasks:
            yield self._span("task", start, end, p, t, step=number, index=position)

    def _span(
        self, name: str, start: int, end: int, pid: int, tid: int, **args: int
    ) -> dict[str, Any]:
        return {
            "ph": "X",
            "name": name,
            "pid": pid,
            "tid": tid,
            "ts": (start - self.start_ns) / 1000,
            "dur": (end - start) / 1000,
            "args": {"start_ns": start, "end_ns": end, **args},
        }

    def write(self, path: Path) -> None:
        """All events as JSON lines, written to a temporary name and renamed: no partial file."""
        partial = path.with_name(path.name + ".partial")
        with partial.open("w") as out:
            for event in self.events():
                out.write(json.dumps(event) + "\n")
        partial.replace(path)


@contextmanager
def recording(path: str) -> Iterator[Recorder]:
    """Trace everything run inside the block; write `path` when it ends without an error."""
    global RECORDER
    target = Path(path)
    if not target.parent.is_dir():
        raise HarnessError(f"trace={path!r}: folder {str(target.parent)!r} does not exist")
    if RECORDER is not None:
        raise HarnessError("a trace is already being recorded")
    RECORDER = recorder = Recorder()
    try:
        yield recorder
    finally:
        RECORDER = None
    recorder.end_ns = time.monotonic_ns()
    recorder.write(target)


def read_events(path: str) -> list[dict[str, Any]]:
    """The events of a `--trace` file; an unreadable or malformed file is a HarnessError."""
    try:
        lines = Path(path).read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise HarnessError(f"trace file {path!r} cannot be read as JSON lines: {exc}") from None
    if not any(e.get("name") == "run" and e.get("ph") == "X" for e in events):
        raise HarnessError(f"trace file {path!r} has no 'run' span: not written by run --trace")
    return events

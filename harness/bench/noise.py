"""What else the machine did while a benchmark's values were being measured.

A pyperf worker process measures one cell; the `ft-harness` hook (harness.bench.measure) opens
a window around each of its timed calls and adds the totals to the run's metadata:

    ft_noise_wall_s       seconds inside the windows
    ft_noise_cpus         CPUs the kernel counts in /proc/stat (the whole machine)
    ft_noise_other_cpu_s  CPU seconds the machine spent busy, minus this process tree's own
    ft_noise_steal_s      CPU seconds the hypervisor gave to other guests (steal)
    ft_noise              (other + steal) / (wall x cpus): the share of the machine's CPU time
                          that went to something else than this benchmark, 0 on a quiet machine,
                          at most 1 (tick-sampled counters can overshoot over short windows)
    ft_load_before/after  1-minute load average at the first window and at the end
    ft_cpu_mhz            mean current frequency of the usable CPUs, where the kernel says it

"Own" CPU time is that of this process and every live descendant (pools, mpiexec jobs) plus what
they already reaped (cutime/cstime), read from /proc/<pid>/stat at both ends of a window, so a
worker pool that exits during the window is still counted as ours. Both machine and own times
are tick-sampled (USER_HZ): the windows' differences are summed unclamped and only the total is
clamped at zero, so the rounding of many short windows does not add up to invented noise.
Linux only; elsewhere the hook records nothing of this (the report then says "not measured").
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/stat's aggregate `cpu` line: user nice system idle iowait irq softirq steal guest guest_nice
BUSY_FIELDS = (0, 1, 2, 5, 6)  # guest time is already inside user
STEAL_FIELD = 7


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters at one moment: seconds of wall clock and of CPU time."""

    wall: float
    busy: float  # machine-wide CPU seconds not idle, not waiting for I/O, not stolen
    steal: float
    own: float  # CPU seconds of the process tree rooted at `root`
    cpus: int


def parse_proc_stat(text: str) -> tuple[float, float, int]:
    """(busy seconds, steal seconds, number of CPUs) from /proc/stat's text."""
    lines = text.splitlines()
    ticks = [int(x) for x in lines[0].split()[1:]]
    ticks += [0] * (STEAL_FIELD + 1 - len(ticks))  # old kernels have fewer fields
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return sum(ticks[i] for i in BUSY_FIELDS) / TICK, ticks[STEAL_FIELD] / TICK, cpus


def parse_pid_stat(text: str) -> tuple[int, float]:
    """(parent pid, CPU seconds of the process and of the children it reaped) from
    /proc/<pid>/stat; the command name in brackets may hold spaces, so split after it."""
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return int(rest[1]), (utime + stime + cutime + cstime) / TICK


def tree_cpu(root: int, proc: Path = PROC) -> float:
    """CPU seconds of `root` and all its live descendants (each with what it reaped)."""
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent, cpu = parse_pid_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):  # exited while we looked
            continue
        parents[int(entry.name)], seconds[int(entry.name)] = parent, cpu
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += seconds.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def snapshot(root: int | None = None, proc: Path = PROC) -> Snapshot | None:
    """The counters now, or None where /proc is not there (not Linux)."""
    try:
        busy, steal, cpus = parse_proc_stat((proc / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    own = tree_cpu(os.getpid() if root is None else root, proc)
    return Snapshot(time.monotonic(), busy, steal, own, cpus)


class Window:
    """Sums over many (before, after) pairs; other = busy - own, clamped only in total."""

    def __init__(self) -> None:
        self.wall = self.busy = self.steal = self.own = 0.0
        self.cpus = 0

    def add(self, before: Snapshot, after: Snapshot) -> None:
        self.wall += after.wall - before.wall
        self.busy += after.busy - before.busy
        self.steal += after.steal - before.steal
        self.own += after.own - before.own
        self.cpus = max(self.cpus, after.cpus)

    def other(self) -> float:
        return max(0.0, self.busy - self.own)

    def share(self) -> float | None:
        """(other + steal) as a share of the machine's CPU time in the windows, at most 1: the
        counters tick at USER_HZ, so over a few short windows the ratio can overshoot."""
        capacity = self.wall * self.cpus
        if capacity <= 0:
            return None
        return min(1.0, (self.other() + max(0.0, self.steal)) / capacity)


def cpu_mhz(proc: Path = PROC) -> float | None:
    """Mean current frequency of the usable CPUs: cpufreq where the kernel has it, else the
    `cpu MHz` lines of /proc/cpuinfo (many VMs show a nominal figure there); None if neither."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    found = []
    for cpu in sorted(usable):
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq")
        try:
            found.append(int(path.read_text()) / 1000)
        except (OSError, ValueError):
            pass
    if not found:
        try:
            lines = (proc / "cpuinfo").read_text().splitlines()
        except OSError:
            return None
        found = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
    return round(statistics.fmean(found), 1) if found else None


class NoiseMeter:
    """One per pyperf worker process: start()/stop() around each timed call, facts() at the end."""

    def __init__(self) -> None:
        self.window = Window()
        self.before: Snapshot | None = None
        self.load_before: float | None = None

    def start(self) -> None:
        if self.load_before is None and hasattr(os, "getloadavg"):
            self.load_before = os.getloadavg()[0]
        self.before = snapshot()

    def stop(self) -> None:
        after = snapshot()
        if self.before is not None and after is not None:
            self.window.add(self.before, after)
        self.before = None

    def facts(self) -> dict[str, Any]:
        """The run's noise metadata (keys without the ft_ prefix); {} where nothing was measured."""
        w = self.window
        share = w.share()
        if share is None:
            return {}
        return {
            "noise": round(share, 4),
            "noise_wall_s": round(w.wall, 4),
            "noise_cpus": w.cpus,
            "noise_other_cpu_s": round(w.other(), 3),
            "noise_steal_s": round(max(0.0, w.steal), 3),
            "load_before": self.load_before,
            "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cpu_mhz": cpu_mhz(),
        }

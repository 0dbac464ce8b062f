"""The bench's noise meter (harness.bench.noise): /proc parsing, the process tree, and a real
background load, against figures worked out here or read independently from /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.bench import noise
from tests.background_load import child, cpu_seconds, detached

TICK = os.sysconf("SC_CLK_TCK")
LINUX = Path("/proc/stat").exists()


def test_proc_stat_busy_excludes_idle_iowait_and_steal_and_counts_cpus() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks
    text = (
        "cpu  100 20 30 4000 50 6 7 80 9 0\n"
        "cpu0 50 10 15 2000 25 3 3 40 5 0\n"
        "cpu1 50 10 15 2000 25 3 4 40 4 0\n"
        "intr 12345\nctxt 999\ncpufreq 1\n"
    )
    busy, steal, cpus = noise.parse_proc_stat(text)
    assert busy == pytest.approx((100 + 20 + 30 + 6 + 7) / TICK)  # guest is inside user already
    assert steal == pytest.approx(80 / TICK)
    assert cpus == 2  # the aggregate line and `cpufreq`-like names are not CPUs


def test_pid_stat_with_spaces_and_brackets_in_the_name() -> None:
    fields = ["S", "77"] + ["0"] * 9 + ["300", "200", "40", "60"] + ["0"] * 30
    text = "4242 (a (weird) name) " + " ".join(fields)
    parent, seconds = noise.parse_pid_stat(text)
    assert parent == 77 and seconds == pytest.approx((300 + 200 + 40 + 60) / TICK)


def fake_proc(tmp_path: Path, tree: dict[int, tuple[int, int]]) -> Path:
    """A /proc with pid -> (parent, utime ticks) and nothing else."""
    for pid, (parent, utime) in tree.items():
        (tmp_path / str(pid)).mkdir()
        fields = ["R", str(parent)] + ["0"] * 9 + [str(utime), "0", "0", "0"] + ["0"] * 30
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (p) " + " ".join(fields))
    (tmp_path / "self").mkdir()  # not a pid: skipped
    return tmp_path


def test_tree_cpu_sums_the_root_and_every_descendant_only(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {1: (0, 5000), 10: (1, 100), 11: (10, 20), 12: (11, 3), 20: (1, 7000), 21: (20, 9000)},
    )
    assert noise.tree_cpu(10, proc) == pytest.approx((100 + 20 + 3) / TICK)
    assert noise.tree_cpu(12, proc) == pytest.approx(3 / TICK)
    assert noise.tree_cpu(99, proc) == 0.0  # gone: nothing


def snap(wall: float, busy: float, own: float, steal: float = 0.0) -> noise.Snapshot:
    return noise.Snapshot(wall=wall, busy=busy, steal=steal, own=own, cpus=2)


def test_tick_rounding_of_short_windows_does_not_add_up_to_noise() -> None:
    """Own time read a tick ahead of the machine's in one window and behind in the next: per
    window clamping would report 0.01 s of 'other' work that never happened."""
    w = noise.Window()
    w.add(snap(0.0, 10.00, 5.00), snap(0.1, 10.10, 5.11))  # busy - own = -0.01
    w.add(snap(1.0, 11.00, 6.00), snap(1.1, 11.11, 6.10))  # busy - own = +0.01
    assert w.other() == pytest.approx(0.0, abs=1e-12)
    assert w.share() == pytest.approx(0.0, abs=1e-12)


def test_share_is_other_plus_steal_over_the_machines_cpu_time() -> None:
    w = noise.Window()
    w.add(snap(0.0, 0.0, 0.0), snap(2.0, 3.0, 2.0, steal=0.2))  # 1 s other, 0.2 s steal
    assert w.share() == pytest.approx((1.0 + 0.2) / (2.0 * 2))
    assert noise.Window().share() is None  # nothing measured: no figure, not 0
    short = noise.Window()
    short.add(snap(2.0, 3.0, 2.0), snap(2.1, 4.0, 2.0))  # 1 s of other work in 0.1 s: ticks
    assert short.share() == 1.0


@pytest.mark.skipif(not LINUX, reason="reads /proc")
# slow: its shares assume the machine to itself (-n 2 runs other tests beside it: noise too)
@pytest.mark.slow
def test_real_background_load_counts_as_other_and_our_own_children_do_not() -> None:
    """A burner outside our tree and one inside it, both burning while the meter watches: the
    meter's 'other' covers at least what the outside one used (read from its own /proc entry),
    and its 'own' at least what our child used, so our child was not counted as noise.
    Not timed: we wait until each has used 0.3 s of CPU, however long that takes."""
    meter = noise.NoiseMeter()
    with detached() as stranger, child() as ours:
        meter.start()  # the window holds [first, last] of the burners' own readings
        first = {pid: cpu_seconds(pid) for pid in (stranger, ours)}
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and min(cpu_seconds(p) - first[p] for p in (stranger, ours)) < 0.3
        ):
            time.sleep(0.05)
        used = {pid: cpu_seconds(pid) - first[pid] for pid in (stranger, ours)}
        meter.stop()
    slack = 3 / TICK  # each side is tick-sampled at both ends
    assert used[stranger] >= 0.3 and used[ours] >= 0.3
    assert meter.window.own >= used[ours] - slack
    assert meter.window.other() >= used[stranger] - slack
    facts = meter.facts()
    window = meter.window
    share = (window.other() + window.steal) / (window.wall * facts["noise_cpus"])
    assert facts["noise"] == pytest.approx(min(1.0, share), abs=1e-4)
    assert facts["noise_cpus"] >= 1 and facts["load_before"] is not None

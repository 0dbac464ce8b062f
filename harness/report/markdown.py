"""REPORT.md from the report's summary dict alone (every number shown is in summary.json)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.report import where_time_goes
from harness.report.plots import plot_slug
from harness.report.rawdata import speedup_label

UNSTABLE = 0.10  # pyperf warns when the standard deviation exceeds 10 % of the mean
REFERENCE_NOTE = (
    "For context, not our measurement: PEP 703 estimated 5–6 % single-thread overhead; "
    "the CPython 3.13 free-threading HOWTO says about 40 % for 3.13t (specialising "
    "interpreter disabled), PEP 779 about 10 % on Linux for 3.14."
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def per_unit(seconds: float) -> str:
    """Time per unit in µs, 3 significant digits (units are samples or updates: µs is the scale)."""
    return f"{seconds * 1e6:.3g}"


def rate(value: float) -> str:
    return f"{value:,.0f}"


def optional(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def signed_percent(entry: dict[str, Any]) -> str:
    if entry["significant"] is None:
        return "not tested"
    return f"{entry['cost_percent']:+.1f} %" if entry["significant"] else "not significant"


def interval(comparison: dict[str, Any] | None) -> str:
    """A speed-up's 95 % interval as `[1.40–1.66]`; "unbounded" where Fieller's set is."""
    if comparison is None or "ci95" not in comparison:
        return "—"
    ci = comparison["ci95"]
    return f"[{ci[0]:.2f}–{ci[1]:.2f}]" if ci is not None else "unbounded"


def with_interval(comparison: dict[str, Any] | None) -> str:
    """The verdict and its interval: `1.52x [1.40–1.66]`, `not significant [0.93–1.08]`."""
    shown = interval(comparison)
    return speedup_label(comparison) + (f" {shown}" if shown != "—" else "")


def cost_with_interval(entry: dict[str, Any]) -> str:
    ci = entry.get("cost_interval_percent")
    return signed_percent(entry) + (f" [{ci[0]:+.1f} to {ci[1]:+.1f} %]" if ci else "")


def noise_mark(noise: dict[str, Any] | None) -> str:
    """The noise column: the share of the machine's CPU that went elsewhere, flagged if noisy."""
    if noise is None:
        return "not measured"
    return f"{noise['mean'] * 100:.0f} %" + (" **noisy**" if noise["noisy"] else "")


# ---- sections --------------------------------------------------------------------------------------


def intro(s: dict[str, Any]) -> str:
    p, st = s["provenance"], s["settings"]
    span = " to ".join(p["collected"]) if p["collected"] else "unknown dates"
    files = ", ".join(
        f"`{f['path']}` ({f['configuration']}, sha256 {f['sha256']})" for f in p["files"]
    )
    return (
        f"# ft-harness report\n\nData: host `{p['hostname']}` ({p['cpu_model']}), preset "
        f"`{p['preset']}`, harness {p['harness_version']}, pyperf {p['pyperf_version']}, collected "
        f"{span}.\nRaw files: {files}.\n\nEach benchmark: {run_shapes(st['run_shapes'])}, "
        f"of {st['loops']} run each. A value is the time of the workload's timed loop divided by the "
        "units of work it did (samples or updates), so throughputs compare across worker counts. "
        "Speed-ups are ratios of mean time per unit; each is tested with a two-tailed t-test at "
        "95 % over the pyperf processes' means (pyperf's own Student test, the one behind `pyperf "
        "compare_to`, applied to one mean per process; Welch's where two benchmarks have different "
        "numbers of processes): values of one process vary less among themselves than processes "
        "do, so the process is the unit. A difference that fails the test is "
        "written **not significant** and never as a speed-up. In brackets: the speed-up's 95 % "
        "confidence interval (Fieller's, for a ratio of two means); it leaves out 1.00 exactly "
        "when the test says significant. *noisy*: measured while more than "
        f"{s['noise']['threshold'] * 100:.0f} % of the machine's CPU time went to other work "
        "(see Measurement noise)."
    )


def run_shapes(shapes: dict[str, dict[str, int]]) -> str:
    """`3 pyperf worker processes × 3 values (after 1 warm-up)`, per configuration where they differ."""

    def words(shape: dict[str, int]) -> str:
        most = shape.get("processes_max", shape["processes"])
        processes = (
            f"{shape['processes']}"
            if most == shape["processes"]
            else f"{shape['processes']}–{most}"
        )
        return (
            f"{processes} pyperf worker processes × {shape['values_per_process']} values "
            f"(after {shape['warmups_per_process']} warm-up)"
            + ("" if most == shape["processes"] else ", more for the cells measured again")
        )

    if len({tuple(shape.values()) for shape in shapes.values()}) == 1:
        return words(next(iter(shapes.values())))
    return "; ".join(f"{config}: {words(shape)}" for config, shape in shapes.items())


def headline_section(s: dict[str, Any]) -> str:
    h = s["headline"]
    if h is None:
        return ""
    columns = h["columns"]
    rows = [
        [name] + [headline_cell(cells.get(c)) for c in columns] for name, cells in h["rows"].items()
    ]
    cost = "; ".join(
        f"{c['configuration']} {cost_with_interval(c)}" for c in h["single_thread_cost"]
    )
    plot = f"\n\n![speed-up vs workers]({plot_name(s, h)})" if plot_name(s, h) else ""
    return (
        f"## Headline: {h['workload']} training, model `{h['model']}`\n\n{h['unit'].capitalize()}s per "
        f"second, and in brackets the speed-up against serial on {s['default_configuration']} "
        f"with its 95 % interval.{widest_note(h)}\n\n"
        + table(["cell"] + columns, rows)
        + (
            f"\n\nSingle-thread cost (serial, time per {h['unit']} vs {s['default_configuration']}): {cost}."
            if cost
            else ""
        )
        + plot
    )


def headline_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    comparison = entry["vs_serial_default"]
    label = "baseline" if entry["is_default_baseline"] else with_interval(comparison)
    return f"{rate(entry['rate_per_s'])} ({label})" + (" *noisy*" if entry.get("noisy") else "")


def widest_note(h: dict[str, Any]) -> str:
    w = h.get("widest_interval")
    if not w:
        return ""
    width = "unbounded" if w["half_width"] is None else f"±{w['half_width'] * 100:.1f} %"
    return f" The widest interval: {width} ({w['cell']})."


def noise_warning(s: dict[str, Any]) -> str:
    """Above the headline, when any cell was measured under noise."""
    n = s.get("noise")
    if not n or not n["noisy"]:
        return ""
    configs = sorted({c["configuration"] for c in n["noisy_cells"]}, key=s["configurations"].index)
    return (
        f"> **Warning: noisy machine.** {len(n['noisy_cells'])} benchmarks (on "
        f"{', '.join(configs)}) were measured while more than {n['threshold'] * 100:.0f} % of "
        "the machine's CPU time went to other work; their numbers (marked *noisy*) may "
        "say more "
        f"about that work than about the interpreter. To do: {n['advice']}."
    )


def pair_warning(s: dict[str, Any]) -> str:
    """Above the headline, when two threads slowed each other more than the threshold."""
    n = s.get("noise")
    if not n or not n.get("threads_slowed"):
        return ""
    slowed = [c for c in n["configurations"] if c["configuration"] in n["threads_slowed"]]
    readings = ", ".join(
        f"{c['configuration']} {c['pair_slowdown']:.2f}x (worst {c['pair_slowdown_max']:.2f}x)"
        for c in slowed
    )
    return (
        "> **Warning: threads slowed each other.** Two threads each doing NumPy work of its own "
        f"took {readings} the time of one alone (median over the rounds; above "
        f"{n['pair_threshold']:.2f}x), so no threads speed-up there could reach "
        f"{2 / max(c['pair_slowdown'] for c in slowed):.2f}x at 2 workers. To do: "
        f"{n['pair_advice']}."
    )


def noise_section(s: dict[str, Any]) -> str:
    n = s.get("noise")
    if not n:
        return ""
    if not n["measured"]:
        return (
            "## Measurement noise\n\nNot measured: these raw files are from a bench that did "
            "not record it."
        )
    rows = [
        [
            c["configuration"],
            optional(pct(c["noise_mean"]), ".1f") + " %",
            optional(pct(c["noise_max"]), ".0f") + " %",
            optional(c["other_cpu_s"], ".1f"),
            optional(c["steal_s"], ".1f"),
            optional(c["window_s"], ".1f"),
            f"{optional(c['load_before'], '.2f')} → {optional(c['load_after'], '.2f')}",
            optional(c["cpu_mhz"], ".0f"),
            str(c["cpus"] or "—"),
            f"{len(c['noisy_cells'])} of {c['cells']}",
            str(c["rounds"] or "—"),
            pair_cell(c),
        ]
        for c in n["configurations"]
    ]
    return (
        "## Measurement noise\n\nWhile each pyperf process took its values, the bench read "
        "/proc/stat and its own process tree: *other CPU* is the machine's busy CPU time "
        "minus the benchmark's own, *steal* the time the hypervisor gave to other guests. "
        "Noise = (other + steal) ÷ (measuring time × CPUs), per process; a benchmark "
        "whose mean "
        f"noise is above {n['threshold'] * 100:.0f} % is marked *noisy*. Load average: the "
        "1-minute figure at a process's first value → at its end, averaged. *Two threads*: "
        "where the GIL is off, the time two threads each doing NumPy work of its own took, "
        "÷ one thread alone, measured before each round (median, worst): a cost of sharing "
        "one process that the host's placement of the CPUs changes and /proc/stat does not "
        f"show; above {n['pair_threshold']:.2f}x it is **high**.\n\n"
        + table(
            [
                "config",
                "noise (mean)",
                "worst process",
                "other CPU (s)",
                "steal (s)",
                "measuring (s)",
                "load average",
                "MHz",
                "CPUs",
                "noisy benchmarks",
                "rounds",
                "two threads",
            ],
            rows,
        )
    )


def pair_cell(c: dict[str, Any]) -> str:
    if c.get("pair_slowdown") is None:
        return "—"
    text = f"{c['pair_slowdown']:.2f}x ({c['pair_slowdown_max']:.2f}x)"
    return text + (" **high**" if c["threads_slowed"] else "")


def pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def against_section(s: dict[str, Any]) -> str:
    from harness.report.against import changes_text

    a = s.get("against")
    return "## Against an earlier report\n\n" + changes_text(a) if a else ""


def plot_name(s: dict[str, Any], h: dict[str, Any]) -> str | None:
    wanted = f"speedup-{plot_slug(h['workload'], h['model'])}.png"
    return wanted if wanted in s.get("plots", []) else None


def cost_section(s: dict[str, Any]) -> str:
    rows = [
        [
            f"`{c['name']}`",
            c["configuration"],
            signed_percent(c),
            optional(c["t_score"], ".2f"),
            cost_interval(c),
        ]
        for c in s["single_thread_cost"]
    ]
    if not rows:
        return ""
    return (
        f"## Single-thread cost of the free-threaded build\n\nSerial, one worker: extra time per unit "
        f"against {s['default_configuration']} (positive = slower).\n\n"
        + table(["benchmark", "configuration", "extra time", "t", "95 % interval"], rows)
        + f"\n\n{REFERENCE_NOTE}"
    )


def cost_interval(entry: dict[str, Any]) -> str:
    ci = entry.get("cost_interval_percent")
    return f"{ci[0]:+.1f} to {ci[1]:+.1f} %" if ci else "—"


def workload_section(s: dict[str, Any], workload: str, rows: list[dict[str, Any]]) -> str:
    unit = rows[0]["unit"]
    default = s["default_configuration"]
    body = [
        [
            r["configuration"],
            f"`{r['name']}`",
            spread(r),
            rate(r["rate_per_s"]),
            baseline_or(r, r["vs_serial"]),
            speedup_label(r["vs_serial_default"])
            if not (r["is_baseline"] and r["configuration"] == default)
            else "baseline",
            optional(r["efficiency"], ".2f"),
            digest_cell(r),
            interval(r["vs_serial"]),
            noise_mark(r.get("noise")),
        ]
        for r in rows
    ]
    headers = [
        "config",
        "benchmark",
        f"µs per {unit} (mean ± std)",
        f"{unit}s/s",
        "vs serial, same config",
        f"vs serial, {default}",
        "efficiency",
        "digest vs serial",
        "95 % interval, same config",
        "noise",
    ]
    plots = "".join(
        f"\n\n![{name}]({name})"
        for name in s.get("plots", [])
        if name.split("-", 1)[1].startswith(workload)
    )
    return f"### {workload}\n\n" + table(headers, body) + plots


def spread(r: dict[str, Any]) -> str:
    """mean ± std, flagged where pyperf itself would call the result unstable (std > 10 % of mean)."""
    flag = " ⚠" if r["stdev_s"] > UNSTABLE * r["mean_s"] else ""
    return f"{per_unit(r['mean_s'])} ± {per_unit(r['stdev_s'])}{flag}"


def baseline_or(r: dict[str, Any], comparison: dict[str, Any] | None) -> str:
    if r["is_baseline"]:
        return "baseline"
    return speedup_label(comparison) if comparison else "no serial baseline"


def digest_cell(r: dict[str, Any]) -> str:
    claim = " (not bitwise by design)" if r["bitwise"] is False else ""
    if r["digest"] is None:
        return f"varies ({r['distinct_digests']} distinct){claim}" if r["distinct_digests"] else "—"
    verdict = {True: "= serial", False: "differs", None: ""}[r["digest_matches_serial"]]
    return (
        f"`{r['digest']}` {verdict}".rstrip() + claim
        if not r["is_baseline"]
        else f"`{r['digest']}`"
    )


def workloads_section(s: dict[str, Any]) -> str:
    parts = [workload_section(s, w, rows) for w, rows in s["workloads"].items()]
    legend = (
        "Efficiency = speed-up against serial on the same configuration ÷ threads in all "
        "(the workers, or what the strategy recorded: a hybrid variant such as `t2` runs 2 "
        "threads inside each worker). "
        "Digest: the determinism digest (parameters or delivered batches) of each process's last "
        "run; `= serial` where it is bitwise the serial one; *not bitwise by design* where the "
        "strategy sums in another order than serial (blas, an `allreduce` variant), so a difference "
        "there is expected, not a fault. ⚠: standard deviation above 10 % of "
        "the mean, where pyperf itself warns that the result may be unstable. "
        "95 % interval: of the speed-up against serial on the same configuration. Noise: the "
        "share of the machine's CPU time that went to other work while the benchmark's "
        "values "
        "were taken (mean over its processes; **noisy** above the threshold, see "
        "Measurement noise). "
        "Two process shapes: **processes (pool, DataLoader-like)**: the caller runs the "
        "loop and hands each step's tasks to a pool; **spmd (every worker runs the loop, "
        "DDP-like)**: processes started once, each running the loop on its share, with the "
        "row sum and barriers in shared memory, as `mpi`'s ranks do."
    )
    return "## Per workload\n\n" + legend + "\n\n" + "\n\n".join(parts)


def scaling_section(s: dict[str, Any]) -> str:
    if not s["scaling"]:
        return ""
    rows = [
        [
            f["configuration"],
            f"`{f['workload']}` {f['series']} {f['model']}".rstrip(),
            f["law"],
            sigma_cell(f) + where_time_goes.measured_note(f),
            kappa_cell(f),
            optional(f["peak_workers"], ".1f"),
            f"{f['r2']:.3f}",
            ", ".join(
                f"N={p['workers']}: {p['capacity']:.2f}→{p['fitted']:.2f}" for p in f["curve"]
            ),
            f["law_choice"],
        ]
        for f in s["scaling"]
    ]
    return (
        "## Scaling fits\n\nCapacity C(N) = throughput with N workers ÷ throughput with one, fitted "
        "with Gunther's Universal Scalability Law C(N) = N / (1 + σ(N−1) + κN(N−1)) by weighted least "
        "squares on C(N) itself (each point weighted by its standard error from pyperf's spread), "
        "with σ in [0, 1] and κ ≥ 0. σ: contention (serial share), κ: coherency cost, N*: the "
        "worker count where USL capacity peaks (— where it has no peak past one worker). "
        "Amdahl's law is USL with κ = 0; USL is chosen only where κ lowers the weighted residual "
        "beyond chance (an F-test at 5 %, the reason in the last column). In brackets: 95 % profile "
        "intervals (to ∞: the data set no upper limit). Where capacity never rises above one worker σ "
        "sits on its bound 1 and has no serial-fraction reading; the table says so in words. "
        "R² is on C(N), every point alike. With 3 worker counts USL passes through every point: "
        "only pyperf's spread can then judge it."
        + oversubscribed(s)
        + where_time_goes.measured_legend(s["scaling"])
        + "\n\n"
        + table(
            [
                "config",
                "curve",
                "law",
                "σ (95 %)",
                "κ (95 %)",
                "N*",
                "R²",
                "measured → fitted",
                "why this law",
            ],
            rows,
        )
    )


def sigma_cell(f: dict[str, Any]) -> str:
    """σ with its interval, or in words where the data leave the law's domain."""
    if not f["sigma_has_reading"]:
        return f["domain"]
    value = f"{f['sigma']:.3f}{interval_text(f['sigma_interval'])}"
    return f"{value}; {f['domain']}" if f["domain"] else value


def kappa_cell(f: dict[str, Any]) -> str:
    if f["law"] == "Amdahl":
        return "0 (Amdahl)"
    return f"{f['kappa']:.4f}{interval_text(f['kappa_interval'])}"


def interval_text(found: list[float | None] | None) -> str:
    if found is None:
        return " (no interval: no spread measured, no point to spare)"
    low = "(−∞" if found[0] is None else f"[{found[0]:.3g}"
    high = "∞)" if found[1] is None else f"{found[1]:.3g}]"
    return f" {low}, {high}"


def oversubscribed(s: dict[str, Any]) -> str:
    usable = s["environment"]["machine"]["cpu_usable"]
    most = max(p["workers"] for f in s["scaling"] for p in f["curve"])
    return (
        f" Worker counts above the {usable} usable CPUs oversubscribe them: there the curve "
        "measures contention, not parallelism."
        if usable and most > usable
        else ""
    )


def scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def missing_section(s: dict[str, Any]) -> str:
    if not s["missing"]:
        return ""
    return "## Missing cells\n\n" + "\n".join(
        f"- `{m['name']}`: not measured on {', '.join(m['missing_in'])}" for m in s["missing"]
    )


def environment_section(s: dict[str, Any]) -> str:
    m = s["environment"]["machine"]
    pinning = (
        f"pyperf pinned workers to CPUs {m['pinned_by_pyperf']}"
        if m["pinned_by_pyperf"]
        else f"no pinning (pyperf found no isolated CPUs; usable CPUs {m['affinity']})"
    )
    rows = [
        [
            c["configuration"],
            c["python_version"] or "—",
            yes_no(c["py_gil_disabled"]),
            "/".join(yes_no(g) for g in c["gil_enabled_observed"]) or "—",
            f"`{c['config_args']}`",
            c["numpy"] or "—",
            f"{c['blas_library']} {c['blas_version']}",
            blas_threads(c["blas_threads"]),
            f"`{c['thread_env']}`",
        ]
        for c in s["environment"]["configurations"]
    ]
    return (
        f"## Environment\n\nCPU: {m['cpu_model']}, {m['cpu_logical']} logical / {m['cpu_physical']} "
        f"physical cores, {m['cpu_usable']} usable; {m['platform']}; {pinning}.\n\n"
        + table(
            [
                "config",
                "Python",
                "Py_GIL_DISABLED",
                "GIL on (seen after runs)",
                "configure",
                "numpy",
                "BLAS",
                "BLAS threads",
                "thread variables",
            ],
            rows,
        )
        + "\n\n"
        + settings_block(s)
    )


def yes_no(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "—")


def blas_threads(by_strategy: dict[str, list[int]]) -> str:
    return ", ".join(f"{k}: {'/'.join(map(str, v))}" for k, v in sorted(by_strategy.items()))


def settings_block(s: dict[str, Any]) -> str:
    st = s["settings"]
    configs = "\n".join(
        f"- `{k}`: " + ", ".join(f"{a}={b}" for a, b in v.items())
        for k, v in st["run_configs"].items()
    )
    seconds = ", ".join(f"{k} {v} s" for k, v in st["bench_seconds"].items())
    return (
        f"Preset `{st['preset']}`: {st['description']}\n\nRun settings (RunConfig's defaults "
        f"otherwise):\n{configs}\n\n"
        f"pyperf time spent in workers per configuration: {seconds}."
    )


def reproduce_section(s: dict[str, Any]) -> str:
    r = s["reproduce"]
    return (
        "## How to reproduce\n\n```sh\n" + r["nox"] + "\n```\n\nor per configuration, with the "
        "virtual environments nox made (`PYTHON_GIL=0` for cp3Nt, `=1` for cp3Nt-gil, and "
        "`FT_HARNESS_CONFIG=<configuration>`):\n\n```sh\n"
        + r["bench"]
        + "\n"
        + r["report"]
        + "\n```"
    )


def workload_sections(s: dict[str, Any]) -> str:
    """Each workload's own section (declared with the workload), in registration order."""
    from harness.workloads import WORKLOADS, load_workloads

    load_workloads()
    parts = [w.report.markdown(s) for w in WORKLOADS.values() if w.report and w.report.key in s]
    return "\n\n".join(p for p in parts if p)


SECTIONS: tuple[Callable[[dict[str, Any]], str], ...] = (
    intro,
    against_section,
    noise_warning,
    pair_warning,
    headline_section,
    cost_section,
    noise_section,
    workloads_section,
    scaling_section,
    where_time_goes.section,
    workload_sections,
    missing_section,
    environment_section,
    reproduce_section,
)


def render_markdown(summary: dict[str, Any]) -> str:
    parts = [section(summary) for section in SECTIONS]
    if summary.get("plots_note"):
        parts.append(f"_{summary['plots_note']}_")
    return "\n\n".join(p for p in parts if p) + "\n"

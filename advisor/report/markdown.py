"""A run's summary (or a comparison of two) as GitHub-flavoured markdown; every string that came from
the user's script or torch goes through :mod:`advisor.report.escape`: names as code, free text as plain."""

from __future__ import annotations

from pathlib import Path

from advisor.format import (RANK_COLUMNS, gain, human_bytes, limit_reason, measured_gain, ms, pct, peak_memory,
                            peaks_note, rank_notes, rank_row, ranks_headline, relative, roofline_line, spread)
from advisor.report.escape import cell, code, fence, plain
from advisor.verdict import outcome

HOT_OPS_SHOWN = 15


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A GFM table of markdown cells (their ``|`` escaped here)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _image(plots: dict[str, Path], key: str, alt: str) -> list[str]:
    # <...> lets the link target hold spaces and parentheses (a report written to "my report (v1).md")
    target = plots[key].as_posix().replace("<", "%3C").replace(">", "%3E") if key in plots else ""
    return [f"![{alt}](<{target}>)", ""] if key in plots else []


def _environment(summary: dict) -> list[str]:
    env = summary.get("environment") or {}
    host = env.get("host") or {}
    gpus = ", ".join(plain(g.get("name", "?")) for g in env.get("gpus") or []) or "none"
    rows = [["torch", plain(env.get("torch", "?"))], ["Python", plain(env.get("python", "?"))],
            ["CPU", f"{plain(host.get('machine', '?'))}, {host.get('cpu_count', '?')} cores, "
                    f"{plain(env.get('cpu_capability') or '?')}"],
            ["memory", human_bytes(host.get("memory_bytes"))], ["torch threads", str(env.get("torch_threads", "?"))],
            ["GPU", gpus + (f" (CUDA {plain(env['cuda_version'])})" if env.get("cuda_version") else "")]]
    return ["## Environment", "", table(["", ""], rows), ""]


def _summary(summary: dict) -> list[str]:
    target = summary.get("target") or {}
    steps = summary.get("steps") or {}
    args = " ".join(target.get("args") or [])
    lines = ["## Summary", "", f"- **Target**: {code(target.get('name', '?'))}" + (f" {code(args)}" if args else ""),
             f"- **Outcome**: {plain(summary.get('outcome'))}"]
    if summary.get("error"):
        lines.append(f"- **Error**: {plain(summary['error'])}")
    if steps.get("detection") == "time_slices":
        lines.append(f"- **Time slices**: no step boundary found within the {plain(limit_reason(steps.get('limit')))}; "
                     f"the recording is analysed as {steps.get('count')} time slices of {steps['median_ms']:.1f} ms")
    elif steps.get("count"):
        iqr = f" (IQR {spread(steps['spread'], 1)})" if steps.get("spread") is not None else ""
        lines.append(f"- **Step time**: median {ms(steps['median_ms'])} ms{iqr} over {steps['count']} recorded "
                     f"steps after {steps.get('warmup')} warmup, found by {plain(steps.get('detection'))}")
        if steps.get("limit"):
            lines.append(f"- **Window**: ended after {steps['count']} of {steps.get('requested')} steps because of "
                         f"the {plain(limit_reason(steps['limit']))}")
    else:
        lines.append("- **Steps**: none recorded; the ops below cover the whole run "
                     "(`advisor.step()` marks steps in a script)")
    util = summary.get("utilisation") or {}
    if util.get("process_busy_cores") is not None:
        lines.append(f"- **CPU**: {util['process_busy_cores']:.2f} of {util.get('cpu_count')} cores busy in the window")
    return lines + [""]


def _breakdown(summary: dict, plots: dict[str, Path]) -> list[str]:
    parts = summary.get("breakdown") or {}
    if not parts:
        return []
    rows = [[phase, ms(v.get("ms")), pct(v.get("share"))] for phase, v in parts.items()]
    return ["## Where a step goes", "", table(["phase", "ms", "share"], rows, right={1, 2}), "",
            *_image(plots, "breakdown", "step-time breakdown")]


def _ranks(summary: dict) -> list[str]:
    """A distributed run: one row per rank, the straggler marked."""
    distributed = summary.get("distributed")
    if not distributed:
        return []
    straggler = (distributed.get("straggler") or {}).get("rank")
    rows = [[plain(text) for text in rank_row(rank, straggler)] for rank in distributed.get("ranks") or []]
    notes = [f"- {plain(note)}" for note in rank_notes(distributed)]
    return ["## Ranks", "", plain(ranks_headline(distributed)), "", "Milliseconds per step; comm: a collective in "
            "flight, wait: waiting in one for another rank.", "",
            table(list(RANK_COLUMNS), rows, right=set(range(1, len(RANK_COLUMNS) - 1))), "", *notes,
            *([""] if notes else [])]


def _hot_ops(summary: dict, plots: dict[str, Path]) -> list[str]:
    ops = summary.get("hot_ops") or []
    if not ops:
        return ["## Hot ops", "", "No PyTorch ops were recorded.", ""]
    rows = [[code(op["name"]), ms(op.get("self_time_ms")), pct(op.get("share")), str(op.get("calls", "")),
             f"{op['gflops_per_s']:.1f}" if op.get("gflops_per_s") else "", pct(op.get("roofline_fraction")),
             op.get("bound") or "", code(op.get("shapes") or ""), code(op.get("source") or "")]
            for op in ops[:HOT_OPS_SHOWN]]
    roof = roofline_line(summary.get("roofline"))
    return ["## Hot ops", "", "By self time in the recorded window; roof: the share of the rate the machine's measured "
            "peaks allow the op (for ops without counted FLOPs, of the memory bandwidth).", "",
            table(["op", "self ms", "share", "calls", "GFLOP/s", "roof", "bound", "shapes", "source"], rows,
                  right={1, 2, 3, 4, 5}), "",
            *([f"**Roofline**: {roof}; {_peaks(summary)}.", ""] if roof else []),
            *_image(plots, "roofline", "roofline: ops against the machine's roofs")]


def _peaks(summary: dict) -> str:
    return peaks_note((summary.get("hardware") or {}).get("peaks"))


def _memory(summary: dict, plots: dict[str, Path]) -> list[str]:
    mem = summary.get("memory") or {}
    lines = ["## Memory", ""]
    if mem.get("peak_rss_bytes") is not None:
        lines.append(f"- Peak RSS {human_bytes(mem['peak_rss_bytes'])} of {human_bytes(mem.get('system_memory_bytes'))}"
                     f" ({pct(mem.get('rss_share_of_system'))})")
    for gpu in mem.get("gpus") or []:
        lines.append(f"- GPU{gpu['gpu']}: {human_bytes(gpu['peak_used_bytes'])} of {human_bytes(gpu['total_bytes'])}")
    for device, peak in (mem.get("profiler_peak_bytes") or {}).items():
        lines.append(f"- Allocator peak in the window ({code(device)}): {human_bytes(peak)}")
    lines.append("")
    lines += _image(plots, "memory", "memory timeline")
    top = mem.get("top_allocators") or []
    if top:
        rows = [[code(a["name"]), human_bytes(a.get("bytes")), str(a.get("allocations", ""))] for a in top]
        lines += ["Allocated most in the window (frees not subtracted):", "",
                  table(["op", "allocated", "allocations"], rows, right={1, 2}), ""]
    return lines


def _findings(summary: dict) -> list[str]:
    findings = summary.get("findings")
    if not findings:
        return ["## Findings", "", "No findings recorded.", ""]
    lines = ["## Findings", "", "Ranked by the share of the step (or of memory) at stake.", ""]
    for f in findings:
        lines += [f"### {plain(f.get('title', '?'))} ({pct(f.get('severity'))} at stake)", "",
                  plain(f.get("evidence", "")), ""]
        if f.get("fix"):
            lines += [fence(f["fix"]), ""]
    return lines


def _recommendations(summary: dict, plots: dict[str, Path]) -> list[str]:
    records = summary.get("recommendations") or []
    if not records:
        return ["## Recommendations", "", "No technique was asked (the run ended before its trials).", ""]
    rows = []
    for r in records:
        measured = r.get("measured") or {}
        error = (measured.get("quality") or {}).get("output_rel_error")
        rows.append([code(r.get("technique", "?")), gain((r.get("estimate") or {}).get("speedup")),
                     measured_gain(measured), gain(measured.get("projected_speedup")), peak_memory(measured),
                     relative(error), plain(outcome(r))])
    lines = ["## Recommendations", "",
             "Measured: the replayed model step, baseline and variant interleaved (± half the IQR); "
             "step: that gain carried over to the whole step; peak memory: the replayed step's peak and its change "
             "against the baseline; output change: relative.", "",
             table(["technique", "estimated", "measured", "step", "peak memory", "output change", "status"], rows,
                   right={1, 2, 3, 4}),
             "", *_image(plots, "gains", "estimated and measured gain per technique")]
    for r in records:
        if r.get("applies") and r.get("snippet") and not r.get("pair"):
            lines += [f"### {code(r['technique'])}: {plain(r.get('title', ''))}", "", plain(r.get("reason") or ""), "",
                      fence(r["snippet"]), ""]
    return lines


def _collectors(summary: dict) -> list[str]:
    rows = [[code(name), "yes" if status.get("available") else "no", plain(status.get("reason") or "")]
            for name, status in (summary.get("collectors") or {}).items()]
    return ["## Collectors", "", table(["collector", "available", "why"], rows), ""] if rows else []


def render_report(summary: dict, plots: dict[str, Path]) -> str:
    """The markdown report of one run; ``plots`` maps breakdown/memory/gains to image paths (relative)."""
    name = code(Path(str((summary.get("target") or {}).get("name", "run"))).name)
    run_id = code(Path(str(summary.get("run_dir", ""))).name)
    sections = [[f"# advisor report: {name}", "", f"Run {run_id}" if run_id else "", ""],
                _environment(summary), _summary(summary), _breakdown(summary, plots), _ranks(summary),
                _hot_ops(summary, plots),
                _memory(summary, plots), _findings(summary), _recommendations(summary, plots), _collectors(summary)]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def render_comparison(comparison: dict, plots: dict[str, Path]) -> str:
    """The markdown comparison of run B against run A (see :func:`advisor.analysis.compare.compare`)."""
    a, b = comparison["a"], comparison["b"]
    step = comparison["step_ms"]
    label = {key: f"{code(Path(str(run['run_dir'])).name)} ({code(run.get('target') or '?')})" for key, run in
             (("a", a), ("b", b))}
    lines = ["# advisor comparison", "", f"- **A**: {label['a']}", f"- **B**: {label['b']}", ""]
    if step["ratio"] is not None:
        verdict = "faster" if step["ratio"] < 0.98 else "slower" if step["ratio"] > 1.02 else "about the same"
        lines += [f"Median step: A {ms(step['a'])} ms, B {ms(step['b'])} ms: B takes {gain(step['ratio'])} "
                  f"the time of A ({verdict}).", ""]
    else:
        lines += ["Step time: not comparable (a run recorded no steps).", ""]
    rows = [[phase, ms(v["a_ms"]), ms(v["b_ms"]), ms(v["delta_ms"])] for phase, v in comparison["breakdown"].items()]
    if rows:
        lines += ["## Where a step goes", "", table(["phase", "A ms", "B ms", "B - A"], rows, right={1, 2, 3}), "",
                  *_image(plots, "breakdown", "step-time breakdown of both runs")]
    rows = [[code(op["name"]), ms(op["a_ms"]), ms(op["b_ms"]), ms(op["delta_ms"]), gain(op["ratio"])]
            for op in comparison["hot_ops"]]
    if rows:
        lines += ["## Hot ops that moved the most", "", "Self time per step.", "",
                  table(["op", "A ms", "B ms", "B - A", "B / A"], rows, right={1, 2, 3, 4}), ""]
    return "\n".join(lines).rstrip() + "\n"

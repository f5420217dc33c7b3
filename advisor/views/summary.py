"""The compact terminal summary of a run, rendered from its summary dict alone."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advisor.format import (PHASE_STYLES, human_bytes, limit_reason, ms, pct, peaks_note, relative, roofline_line,
                            short_source, spread)
from advisor.views.findings import render_findings
from advisor.views.ranks import render_ranks
from advisor.views.recommendations import render_recommendations

HOT_OPS_SHOWN = 10


def _steps_line(summary: dict) -> Text:
    steps = summary.get("steps") or {}
    limit = steps.get("limit")
    if steps.get("detection") == "time_slices":
        return Text.assemble(("No step boundary found within the limit", "bold yellow"),
                             f" ({limit_reason(limit)}): analysed as {steps.get('count') or 0} time slices of "
                             f"{steps.get('median_ms') or 0:.1f} ms. Call advisor.step() at the end of each step "
                             "to mark them, or raise the limit.")
    ended = (f"the window ended after {steps.get('count') or 0} of {steps.get('requested')} steps because of the "
             f"{limit_reason(limit)}") if limit else None
    if not steps.get("count"):
        detection = steps.get("detection")
        why = ended or ("no step boundary was seen" if not detection
                        else f"steps were found by {detection} but none was recorded")
        return Text.assemble(("No steps found", "bold yellow"),
                             f": {why}. Ops below cover the whole run; call advisor.step() at the end of "
                             "each step to mark them.")
    iqr = steps.get("spread")
    return Text.assemble(
        ("Steps ", "bold"), f"{steps['count']} recorded after {steps.get('warmup')} warmup, found by ",
        (str(steps.get("detection")), "bold"), " · median ", (f"{steps['median_ms']:.2f} ms", "bold"),
        f" (IQR {spread(iqr, 1)})" if iqr is not None else "",
        f" · min {steps['min_ms']:.2f} / max {steps['max_ms']:.2f} ms",
        *((("\n  " + ended, "yellow"),) if ended else ()),
    )


def _capture_line(summary: dict) -> Text | None:
    """The step captured for trials, and whether replaying it reproduces the script's step."""
    capture = summary.get("capture")
    if not capture:
        return None
    if not capture.get("captured"):
        return Text.assemble(("Captured step ", "bold"), f"none: {capture.get('reason') or 'unknown'}",
                             style="yellow")
    parts = ["training" if capture.get("training") else "inference", str(capture.get("model"))]
    if capture.get("optimizer"):
        parts.append(str(capture["optimizer"]).rsplit(".", 1)[-1])
    if (capture.get("calls_per_step") or 1) > 1:
        parts.append(f"{capture['calls_per_step']} model calls per step")
    if capture.get("autocast"):
        parts.append("autocast " + ", ".join(capture["autocast"]))
    if capture.get("between_backward_and_step"):
        parts.append("then " + ", ".join(capture["between_backward_and_step"]))
    replay = capture.get("replay") or {}
    if replay.get("reproduced") is False:
        return Text.assemble(("Captured step ", "bold"), " · ".join(parts) + "\n",
                             (f"Its replay does not reproduce the script's step: {replay.get('why')}; "
                              "no technique was measured on it.", "yellow"))
    errors = [f"{what} {relative(replay[key])}" for key, what in (("output_rel_error", "outputs"),
                                                            ("grad_rel_error", "gradients"),
                                                            ("update_rel_error", "update"))
              if replay.get(key) is not None]
    return Text.assemble(("Captured step ", "bold"), " · ".join(parts),
                         f" · replay reproduces it ({', '.join(errors)})" if errors else "")


def _slices_table(summary: dict) -> Table | None:
    slices = (summary.get("steps") or {}).get("slices") or []
    if not slices:
        return None
    table = Table(title="Time slices (no step boundary was found)", title_justify="left", box=None, pad_edge=False)
    for header in ("slice", "from ms", "ops ms", "forward ms", "backward ms"):
        table.add_column(header, justify="right")
    table.add_column("top op", overflow="ellipsis", no_wrap=True, max_width=40)
    for row in slices:
        table.add_row(str(row["slice"]), f"{row['start_ms']:.0f}", f"{row.get('ops_ms') or 0:.1f}",
                      f"{row.get('forward_ms') or 0:.1f}", f"{row.get('backward_ms') or 0:.1f}",
                      escape(row.get("top_op") or ""))
    return table


def _breakdown_table(summary: dict, width: int = 40) -> Table | None:
    parts = summary.get("breakdown") or {}
    if not parts:
        return None
    unit = "time slice" if (summary.get("steps") or {}).get("detection") == "time_slices" else "step"
    table = Table(title=f"Where a {unit} goes (mean)", title_justify="left", show_header=True, box=None,
                  pad_edge=False)
    table.add_column("phase")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    table.add_column("")
    for phase, value in parts.items():
        bar = "█" * max(int(round(value["share"] * width)), 1 if value["share"] > 0 else 0)
        table.add_row(phase, ms(value["ms"]), pct(value["share"]), Text(bar, style=PHASE_STYLES.get(phase, "")))
    return table


def _hot_ops_table(summary: dict) -> Table | None:
    ops = summary.get("hot_ops") or []
    if not ops:
        return None
    gpu = any((op.get("device_time_ms") or 0) > 0 for op in ops)
    table = Table(title="Hot ops (self time in the window)", title_justify="left", box=None, pad_edge=False,
                  padding=(0, 1, 0, 0))
    table.add_column("op", no_wrap=True, overflow="ellipsis", min_width=16, max_width=28)
    for header in ("self ms", *(("GPU ms",) if gpu else ()), "share", "calls", "GFLOP/s", "roof"):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    table.add_column("bound", no_wrap=True, min_width=8)
    table.add_column("source", overflow="ellipsis", no_wrap=True, min_width=16, max_width=30)
    table.add_column("shapes", overflow="ellipsis", no_wrap=True, min_width=6, max_width=30)
    for op in ops[:HOT_OPS_SHOWN]:
        row = [escape(op["name"]), ms(op["self_time_ms"])]
        if gpu:
            row.append(f"{op.get('device_time_ms') or 0:.2f}")
        gflops = op.get("gflops_per_s")
        fraction = op.get("roofline_fraction")
        row += [pct(op.get("share")), str(op.get("calls")), f"{gflops:.1f}" if gflops else "",
                f"{100 * fraction:.0f}%" if fraction is not None else "", op.get("bound") or "",
                escape(short_source(op.get("source"))), escape(op.get("shapes") or "")]
        table.add_row(*row)
    return table


def _roofline_line(summary: dict) -> Text | None:
    """MFU and where the step sits against the measured roofs (roof: an op's share of its attainable rate)."""
    line = roofline_line(summary.get("roofline"))
    if not line:
        return None
    return Text.assemble(("Roofline ", "bold"), line, f"\n  {peaks_note((summary.get('hardware') or {}).get('peaks'))}")


def _memory_lines(summary: dict) -> Text:
    mem = summary.get("memory") or {}
    text = Text.assemble(("Memory ", "bold"))
    if mem.get("peak_rss_bytes") is not None:
        text.append(f"peak RSS {human_bytes(mem['peak_rss_bytes'])} of {human_bytes(mem.get('system_memory_bytes'))} "
                    f"({pct(mem.get('rss_share_of_system'))})")
    for gpu in mem.get("gpus", []):
        text.append(f" · GPU{gpu['gpu']} {human_bytes(gpu['peak_used_bytes'])} of {human_bytes(gpu['total_bytes'])} "
                    f"({pct(gpu['share'])})")
    for device, peak in (mem.get("profiler_peak_bytes") or {}).items():
        text.append(f" · allocator peak in window ({device}) {human_bytes(peak)}")
    top = mem.get("top_allocators") or []
    if top:
        most = ", ".join(f"{a['name']} {human_bytes(a['bytes'])}" for a in top[:3])
        text.append(f"\n  allocated most in the window (frees not subtracted): {most}")
    return text


def _utilisation_line(summary: dict) -> Text | None:
    util = summary.get("utilisation") or {}
    parts = []
    if util.get("process_busy_cores") is not None:
        parts.append(f"script process busy {util['process_busy_cores']:.2f} of {util.get('cpu_count')} cores "
                     "in the window")
    if util.get("samples"):
        s = util["samples"]
        parts.append(f"process tree CPU {s['mean_percent']:.0f}% mean over the {s['over']}")
    if util.get("gpu"):
        g = util["gpu"]
        parts.append(f"GPU {g['mean_percent']:.0f}% mean over the {g['over']}")
    return Text.assemble(("Utilisation ", "bold"), " · ".join(parts)) if parts else None


def _collectors_line(summary: dict) -> Text:
    text = Text.assemble(("Collectors ", "bold"))
    items = []
    for name, status in (summary.get("collectors") or {}).items():
        if status.get("available"):
            items.append(Text(f"{name} ✓", style="green"))
        else:
            items.append(Text(f"{name}: unavailable: {status.get('reason')}", style="yellow"))
    for i, item in enumerate(items):
        if i:
            text.append(" · ")
        text.append_text(item)
    return text


def _trace_lines(summary: dict) -> Text | None:
    """What of the trace could not be read, and each rank's steps when the run has one trace per rank."""
    lines = [Text.assemble(("Trace ", "bold yellow"), f"left out: {what}")
             for what in summary.get("trace_skipped") or ()]
    ranks = summary.get("ranks") or []
    if ranks:
        lines.append(Text("Ranks (median step)", style="bold"))
    for rank in ranks:
        steps = rank.get("steps") or {}
        median = steps.get("median_ms")
        text = f"{median:.2f} ms over {steps.get('count')} steps" if median is not None else "no steps"
        skipped = "; left out: " + "; ".join(rank["skipped"]) if rank.get("skipped") else ""
        lines.append(Text(f"  rank {rank['rank']}: {text}{skipped}"))
    return Text("\n").join(lines) if lines else None


def render_summary(summary: dict, snippets: bool = False) -> Group:
    """A Rich renderable of the whole summary (with each technique's code snippet when ``snippets``)."""
    target = summary.get("target") or {}
    header = Text.assemble(("advisor ", "bold"), str(target.get("name", "")),
                           f"  ({summary.get('outcome')})")
    parts = [header, _steps_line(summary)]
    for block in (_trace_lines(summary), _capture_line(summary), _slices_table(summary), _breakdown_table(summary),
                  render_ranks(summary), _hot_ops_table(summary), _roofline_line(summary), _memory_lines(summary),
                  _utilisation_line(summary), render_findings(summary), render_recommendations(summary, snippets),
                  _collectors_line(summary)):
        if block is not None:
            parts.append(block)
    parts.append(Text.assemble(("Run directory ", "bold"), str(summary.get("run_dir"))))
    return Group(*parts)


def print_summary(summary: dict, console: Console, snippets: bool = False) -> None:
    console.print(render_summary(summary, snippets))

"""The recommendations table: each technique's estimate beside its measured gain and numerical cost."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from advisor.format import gain, measured_gain, peak_memory, relative
from advisor.verdict import is_gain, outcome

_NOTE_LENGTH = 44  # the full reasons are in --json and trials.json


def _quality(quality: dict | None) -> str:
    """The relative change of the outputs and of the gradients: ``3e-04/1e-03``, ``3e-04`` or ``-``."""
    quality = quality or {}
    out, grad = quality.get("output_rel_error"), quality.get("grad_rel_error")
    if out is None and grad is None:
        return "-"
    return relative(out) + ("" if grad is None else f"/{relative(grad)}")


def bottleneck_note(summary: dict) -> str | None:
    """Says so when data loading, which no model-side technique touches, is the largest share of the step."""
    parts = summary.get("breakdown") or {}
    if not parts:
        return None
    largest = max(parts, key=lambda p: parts[p]["share"])
    if largest == "data":
        return (f"Data loading takes {parts['data']['share']:.0%} of the step: no model-side technique addresses "
                "this bottleneck; look at the DataLoader (workers, pin_memory) and the dataset's __getitem__.")
    return None


def render_recommendations(summary: dict, snippets: bool = False) -> Group | None:
    records = summary.get("recommendations") or []
    if not records:
        return None
    table = Table(title="Techniques", caption="measured: the replayed model step, baseline/variant interleaved "
                  "(± half the IQR); step: that gain over the whole step; peak: the step's peak memory and its "
                  "change; out/grad: relative change",
                  title_justify="left", caption_justify="left", box=None, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("technique", overflow="fold", min_width=14)
    table.add_column("est.", justify="right", no_wrap=True, min_width=5)
    table.add_column("measured", justify="right", no_wrap=True, min_width=11)
    table.add_column("step", justify="right", no_wrap=True, min_width=5)
    table.add_column("peak", justify="right", no_wrap=True, min_width=5)
    table.add_column("out/grad", no_wrap=True, min_width=7)
    table.add_column("why / status", overflow="fold")
    for r in records:
        measured = r.get("measured") or {}
        speed = measured.get("speedup")
        style = "green" if is_gain(r) else ("red" if speed and speed < 0.95 else "")
        status = r.get("status", "")
        why = r.get("reason") or ""
        note = why if status == "not measured" or is_gain(r) else f"{outcome(r)}; {why}" if why else outcome(r)
        if len(note) > _NOTE_LENGTH:
            note = note[:_NOTE_LENGTH - 1] + "…"
        table.add_row(escape(r.get("technique", "?")), gain((r.get("estimate") or {}).get("speedup")),
                      Text(measured_gain(measured), style=style), gain(measured.get("projected_speedup")),
                      peak_memory(measured), _quality(measured.get("quality")), escape(note))
    parts = [table]
    note = bottleneck_note(summary)
    if note:
        parts.append(Text(note, style="yellow"))
    gains = [r for r in records if is_gain(r)]
    best = gains[0]["measured"] if gains else {}
    best_gain = gain(best.get("projected_speedup") or best.get("speedup"))
    if gains and not snippets:
        parts.append(Text.assemble(("Best: ", "bold"), f"{gains[0]['technique']}, {best_gain} on the whole step "
                                   "(`advisor show --snippets` shows how to apply each technique)"))
    elif any(r.get("measured") for r in records) and not snippets:
        parts.append(Text("No measured technique is a gain (10% or more, beyond the noise, with the step unchanged)."))
    if snippets:
        for r in records:
            if r.get("snippet") and r.get("applies"):
                parts.append(Text(f"{r['technique']}:", style="bold"))
                parts.append(Syntax(r["snippet"], "python", theme="ansi_dark", background_color="default",
                                    word_wrap=True))
    return Group(*parts)

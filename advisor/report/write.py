"""Write a report file (markdown with its PNG plots beside it, or JSON) for one run or two compared."""

from __future__ import annotations

import json
from pathlib import Path

from advisor.errors import ReportNotWritten
from advisor.report.markdown import render_comparison, render_report
from advisor.rundir_io import atomic_write_text
from advisor.pipeline import compare_runs, summary_of
from advisor.store import memory_timeline, roofline_data

FORMATS = ("md", "json")


def _plot_paths(out: Path, names: tuple[str, ...]) -> dict[str, Path]:
    return {name: out.with_name(f"{out.stem}-{name}.png") for name in names}


def _written(out: Path, text: str, plots: dict[str, Path], draw) -> Path:
    """Draw the plots (keeping those drawn), then write ``text`` to ``out``; one clear error if either fails."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        drawn = {name: path for name, path in plots.items() if draw[name](path)}
        atomic_write_text(out, text(drawn))
    except OSError as exc:
        raise ReportNotWritten(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out


def write_report(run_dir: Path, out: Path, fmt: str = "md") -> Path:
    """Write the report of ``run_dir`` to ``out``; markdown links the PNGs written beside it."""
    from advisor.report import plots

    summary = summary_of(run_dir)
    if fmt == "json":
        return _written(out, lambda _: json.dumps(summary, indent=2, default=str) + "\n", {}, {})
    paths = _plot_paths(out, ("breakdown", "roofline", "memory", "gains"))
    system = (summary.get("memory") or {}).get("system_memory_bytes")
    draw = {"breakdown": lambda p: plots.breakdown_plot({"mean step": summary}, p),
            "roofline": lambda p: plots.roofline_plot(roofline_data(summary), p),
            "memory": lambda p: plots.memory_plot(memory_timeline(summary), system, p),
            "gains": lambda p: plots.gains_plot(summary.get("recommendations") or [], p)}
    return _written(out, lambda drawn: render_report(summary, _relative(drawn, out)), paths, draw)


def write_comparison(run_a: Path, run_b: Path, out: Path, fmt: str = "md") -> Path:
    """Write the comparison of ``run_b`` against ``run_a`` to ``out``."""
    from advisor.report import plots

    a, b = summary_of(run_a), summary_of(run_b)
    comparison = compare_runs(a, b)
    if fmt == "json":
        return _written(out, lambda _: json.dumps(comparison, indent=2, default=str) + "\n", {}, {})
    labels = {f"A {Path(run_a).name}": a, f"B {Path(run_b).name}": b}
    draw = {"breakdown": lambda p: plots.breakdown_plot(labels, p)}
    return _written(out, lambda drawn: render_comparison(comparison, _relative(drawn, out)),
                    _plot_paths(out, ("breakdown",)), draw)


def _relative(plots: dict[str, Path], out: Path) -> dict[str, Path]:
    return {name: path.relative_to(out.parent) for name, path in plots.items()}

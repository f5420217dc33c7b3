"""The terminal view of ``advisor profile --apply``: the baseline and the applied run side by side."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from advisor.format import gain


def _ms(run: dict) -> str:
    if "median_ms" not in run:
        return "no timed steps"
    return f"{run['median_ms']:.1f} ± {run['iqr_ms'] / 2:.1f} ms"


def _value(value: float) -> str:
    return f"{value:.4g}"


def print_comparison(comparison: dict, console: Console, target: str = "") -> None:
    """Print the comparison table and what it means."""
    runs = comparison["runs"]
    names = ", ".join(comparison["techniques"])
    console.print(f"[bold]{escape(target)}[/] as it is (baseline) and with [bold]{escape(names)}[/] applied (applied), "
                  "the two runs taking turns step by step; step times are the median ± half the interquartile "
                  f"range of steps {comparison['warmup'] + 1}-{comparison['warmup'] + comparison['steps']}")
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("baseline")
    table.add_column("applied")
    table.add_column("change")
    speedup = comparison.get("speedup")
    low, high = comparison.get("speedup_range") or (None, None)
    table.add_row("step time", _ms(runs["baseline"]), _ms(runs["applied"]),
                  f"[bold]{gain(speedup)}[/] ({low:.2f}-{high:.2f})" if speedup else "-")
    table.add_row("warmup steps", f"{runs['baseline']['warmup_s']:.1f} s", f"{runs['applied']['warmup_s']:.1f} s", "")
    outcomes = comparison.get("outcomes")
    if outcomes:
        label = "loss, first → last" if outcomes["kind"] == "loss" else "output norm, first → last"
        table.add_row(label, f"{_value(outcomes['baseline_first'])} → {_value(outcomes['baseline_last'])}",
                      f"{_value(outcomes['applied_first'])} → {_value(outcomes['applied_last'])}",
                      f"up to {outcomes['max_rel_deviation']:.2%} apart")
    console.print(table)
    for name, run in runs.items():
        if run.get("error"):
            console.print(f"[yellow]the {name} run: {escape(str(run['error']))}[/]")
    if speedup and low <= 1.0 <= high:
        console.print("The range of the ratio includes 1.0: no difference that this run can tell from noise.")
    if outcomes is None and all(run["outcomes"] for run in runs.values()):
        console.print("The runs' losses could not be paired (different kinds of values).")

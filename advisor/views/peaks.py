"""``advisor peaks``: the machine's measured peaks as a Rich table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from advisor.format import rate


def peaks_table(peaks: dict) -> Table:
    """Matmul and convolution FLOP/s per dtype and the memory bandwidth, with when and how they were measured."""
    title = (f"peaks of {peaks.get('name')} ({peaks.get('device')}, {peaks.get('threads')} threads), "
             f"measured {peaks.get('measured_at')}")
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in ("kernel", "dtype", "peak"):
        table.add_column(column, justify="right" if column == "peak" else "left")
    for label, key in (("matmul", "flops_per_s"), ("convolution", "conv_flops_per_s")):
        for dtype, value in (peaks.get(key) or {}).items():
            table.add_row(label, dtype, rate(value))
    for kind, value in (peaks.get("bandwidth") or {}).items():
        table.add_row(f"memory {kind}", "float32", rate(value, "B/s"))
    return table


def print_peaks(peaks: dict, console: Console) -> None:
    console.print(peaks_table(peaks))
    load = peaks.get("load_average")
    source = "from the cache" if peaks.get("source") == "cache" else "measured now"
    count = len(peaks.get("measurements") or [None])
    console.print(f"{source}: the best of {count} measurement{'s' if count > 1 else ''}, the last in "
                  f"{peaks.get('duration_s')} s" + (f" at load average {load[0]:g}" if load else "")
                  + "; `advisor peaks --remeasure` measures again")

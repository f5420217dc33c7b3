"""Resident memory over time as a block chart, the recorded window in its own colour."""

from __future__ import annotations

import pandas as pd
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from advisor.format import human_bytes

_BLOCKS = " ▁▂▃▄▅▆▇█"
_AXIS = 10  # columns of the y-axis labels


class MemoryPlot(Widget):
    """Plots ``timeline`` (``seconds``, ``rss_bytes``, ``in_window``) into the widget's size."""

    DEFAULT_CSS = """
    MemoryPlot { height: 8; }
    """

    timeline: reactive[pd.DataFrame | None] = reactive(None, always_update=True)

    def render(self) -> Text:
        data = self.timeline
        if data is None or data.empty:
            return Text("no memory samples in this run (the psutil collector was unavailable)", style="yellow")
        width, height = max(self.size.width - _AXIS, 8), max(self.size.height - 1, 2)
        columns = pd.cut(data["seconds"], bins=min(width, len(data)), labels=False) if len(data) > 1 \
            else pd.Series([0])
        grouped = data.groupby(columns.to_numpy())
        peaks, window = grouped["rss_bytes"].max().to_numpy(), grouped["in_window"].any().to_numpy()
        top = float(peaks.max()) or 1.0
        rows = []
        for row in range(height):
            floor = (height - row - 1) / height
            label = human_bytes(top * (height - row) / height) if row in (0, height - 1) else ""
            line = Text(f"{label:>{_AXIS - 1}} ", style="grey50")
            for peak, recorded in zip(peaks, window):
                eighths = int(max(0.0, min(1.0, peak / top - floor) * height) * 8)
                line.append(_BLOCKS[min(eighths, 8)], style="magenta" if recorded else "cyan")
            rows.append(line)
        end = float(data["seconds"].iloc[-1])
        axis = Text(f"{'':>{_AXIS}}0 s", style="grey50")
        axis.append(f"{end:.1f} s".rjust(max(len(peaks) - 3, 1)), style="grey50")
        return Text("\n").join([*rows, axis])

"""A horizontal bar split into coloured segments (shares of a whole), with a legend under it."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class Segment(NamedTuple):
    label: str
    share: float
    color: str
    value: str = ""  # shown in the legend beside the share


class ShareBar(Widget):
    """``segments`` drawn across the widget's width; the rest of the bar (to 100%) stays empty."""

    DEFAULT_CSS = """
    ShareBar { height: auto; }
    """

    segments: reactive[tuple[Segment, ...]] = reactive((), layout=True)

    def render(self) -> Text:
        width = max(self.size.width, 10)
        bar = Text()
        used = 0
        for segment in self.segments:
            cells = min(round(segment.share * width), width - used)
            bar.append("█" * cells, style=segment.color)
            used += cells
        bar.append("░" * (width - used), style="grey30")
        legend = Text()
        for segment in self.segments:
            if legend:
                legend.append("  ")
            legend.append("■ ", style=segment.color)
            value = f" {segment.value}" if segment.value else ""
            legend.append(f"{segment.label} {100 * segment.share:.0f}%{value}")
        return Text("\n").join([bar, legend])

    def get_content_height(self, container, viewport, width: int) -> int:
        legend = sum(len(s.label) + len(s.value) + 9 for s in self.segments)
        return 1 + max(1, -(-legend // max(width, 1)))

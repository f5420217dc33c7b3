"""Every rank's recorded steps on one time axis: a row per rank, the time it waited for another rank shaded."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

_LABEL = 8  # columns of the rank labels
_STEP_STYLES = ("cyan", "blue")
_WAIT_STYLE = "grey50"


class RankTimeline(Widget):
    """Plots ``steps`` (rows of ``rank``, ``step``, ``start_ms``, ``duration_ms``, ``wait_ms``) into the widget's
    width: each step a block (alternating colours), its waiting drawn at its end, the straggler's row in red."""

    DEFAULT_CSS = """
    RankTimeline { height: auto; }
    """

    steps: reactive[tuple[dict, ...]] = reactive((), always_update=True)
    straggler: reactive[int | None] = reactive(None)

    def render(self) -> Text:
        if not self.steps:
            return Text("no recorded steps", style="yellow")
        width = max(self.size.width - _LABEL, 10)
        end = max(s["start_ms"] + s["duration_ms"] for s in self.steps) or 1.0
        scale = width / end
        lines = []
        for rank in sorted({s["rank"] for s in self.steps}):
            mark = "◀" if rank == self.straggler else " "
            line = Text(f"rank {rank:<2}{mark} ", style="bold red" if rank == self.straggler else "")
            cells = [(" ", "")] * width
            for i, step in enumerate(s for s in self.steps if s["rank"] == rank):
                first = int(step["start_ms"] * scale)
                last = max(int((step["start_ms"] + step["duration_ms"]) * scale), first + 1)
                waiting = last - int(min(step["wait_ms"], step["duration_ms"]) * scale)
                for col in range(first, min(last, width)):
                    cells[col] = ("░", _WAIT_STYLE) if col >= waiting else ("█", _STEP_STYLES[i % 2])
            for char, style in cells:
                line.append(char, style=style)
            lines.append(line)
        axis = Text(f"{'':>{_LABEL}}0 ms", style="grey50")
        axis.append(f"{end:.0f} ms".rjust(max(width - 4, 1)), style="grey50")
        legend = Text(f"{'':>{_LABEL}}█ a step (alternating colours)  ░ waiting for another rank", style="grey50")
        return Text("\n").join([*lines, axis, legend])

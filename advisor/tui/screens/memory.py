"""Memory: resident memory over the run (the recorded window in its own colour) and the top allocators."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static, TabPane

from advisor.format import human_bytes, pct
from advisor.store import memory_timeline
from advisor.tui.widgets.memory_plot import MemoryPlot


class MemoryPane(TabPane):
    def __init__(self):
        super().__init__("Memory", id="memory")

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="memory-facts")
            yield MemoryPlot()
            yield DataTable(id="allocators", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("allocated most in the window (frees not subtracted)", "bytes",
                                              "allocations")

    def show(self, summary: dict | None, problem: str | None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        if summary is None:
            self.query_one("#memory-facts", Static).update(Text(problem or "no run", style="yellow"))
            self.query_one(MemoryPlot).timeline = None
            return
        mem = summary.get("memory") or {}
        self.query_one("#memory-facts", Static).update(_facts(mem))
        self.query_one(MemoryPlot).timeline = memory_timeline(summary)
        for allocator in mem.get("top_allocators") or []:
            table.add_row(Text(allocator["name"]), Text(human_bytes(allocator.get("bytes")), justify="right"),
                          Text(str(allocator.get("allocations", "")), justify="right"))


def _facts(mem: dict) -> Text:
    text = Text.assemble(("Peak RSS ", "bold"), human_bytes(mem.get("peak_rss_bytes")), " of ",
                         human_bytes(mem.get("system_memory_bytes")))
    if mem.get("rss_share_of_system") is not None:
        text.append(f" ({pct(mem['rss_share_of_system'])})")
    for gpu in mem.get("gpus") or []:
        text.append(f" · GPU{gpu['gpu']} {human_bytes(gpu['peak_used_bytes'])} of {human_bytes(gpu['total_bytes'])}")
    for device, peak in (mem.get("profiler_peak_bytes") or {}).items():
        text.append(f" · allocator peak ({device}) {human_bytes(peak)}")
    text.append("\nRSS over the run; ", style="grey50")
    text.append("recorded steps", style="magenta")
    return text

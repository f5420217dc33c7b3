"""Ranks of a distributed run: one row per rank (the straggler marked), and a timeline of each rank's steps."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static, TabPane

from advisor.format import RANK_COLUMNS, rank_notes, rank_row, ranks_headline
from advisor.tui.widgets.rank_timeline import RankTimeline


class RanksPane(TabPane):
    def __init__(self):
        super().__init__("Ranks", id="ranks")

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="ranks-headline")
            yield DataTable(id="ranks-table", cursor_type="row", zebra_stripes=True)
            yield RankTimeline()
            yield Static(id="ranks-notes")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*RANK_COLUMNS)

    def show(self, summary: dict | None, problem: str | None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        distributed = (summary or {}).get("distributed")
        timeline = self.query_one(RankTimeline)
        if not distributed:
            self.query_one("#ranks-headline", Static).update(Text("one process: no ranks", style="yellow"))
            timeline.steps, timeline.straggler = (), None
            self.query_one("#ranks-notes", Static).update("")
            return
        straggler = (distributed.get("straggler") or {}).get("rank")
        self.query_one("#ranks-headline", Static).update(ranks_headline(distributed))
        for rank in distributed.get("ranks") or []:
            style = "bold red" if rank["rank"] == straggler else ""
            table.add_row(*(Text(cell, style=style, justify="left" if i in (0, len(RANK_COLUMNS) - 1) else "right")
                            for i, cell in enumerate(rank_row(rank, straggler))))
        timeline.straggler = straggler
        timeline.steps = tuple(distributed.get("timeline") or ())
        self.query_one("#ranks-notes", Static).update(Text("\n".join(rank_notes(distributed)), style="yellow"))

"""Runs: the runs of the store; open one, or compare the selected run with the open one."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static, TabPane
from textual.worker import get_current_worker

from advisor.errors import RunDirError
from advisor.format import gain, ms
from advisor.pipeline import compare_runs, summary_of
from advisor.store import FINE_OUTCOMES, RunEntry, list_runs, read_summary


class RunsPane(TabPane):
    BINDINGS = [Binding("enter", "open", "Open"), Binding("c", "compare", "Compare with open run")]

    class OpenRun(Message):
        def __init__(self, run_dir: Path):
            super().__init__()
            self.run_dir = run_dir

    def __init__(self):
        super().__init__("Runs", id="runs")
        self.runs: list[RunEntry] = []
        self.summary: dict | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="comparison-box"):
            yield Static(id="comparison")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for title, width in (("", 1), ("run", 20), ("script", 13), ("outcome", 11), ("step ms", 8),
                             ("started UTC", 11)):
            table.add_column(title, width=width)

    def show(self, summary: dict | None, problem: str | None) -> None:
        self.summary = summary
        self.runs = list_runs(self.app.store)
        table = self.query_one(DataTable)
        table.clear()
        open_dir = Path(summary["run_dir"]).resolve() if summary else None
        for run in self.runs:
            started = time.strftime("%m-%d %H:%M", time.gmtime(run.started_at)) if run.started_at else ""
            table.add_row("▶" if run.path.resolve() == open_dir else "", Text(run.id), Text(Path(run.target).name),
                          _outcome(run),
                          Text(f"{run.median_ms:.2f}" if run.median_ms else "-", justify="right"), started)
        self.query_one("#comparison", Static).update(Text(
            f"No runs in {self.app.store}: run `advisor profile SCRIPT` first." if not self.runs else
            "enter opens the selected run; c compares it with the open one.", style="grey50"))

    def _selected(self) -> RunEntry | None:
        row = self.query_one(DataTable).cursor_row
        return self.runs[row] if 0 <= row < len(self.runs) else None

    def action_open(self) -> None:
        run = self._selected()
        if run is not None:
            self.post_message(self.OpenRun(run.path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_compare(self) -> None:
        run = self._selected()
        view = self.query_one("#comparison", Static)
        if run is None or self.summary is None:
            self.notify("open a run and select another one to compare them", severity="warning")
            return
        try:
            other = read_summary(run.path)
        except RunDirError as exc:
            view.update(Text(str(exc), style="yellow"))
            return
        if other is not None:
            view.update(render_comparison(compare_runs(self.summary, other)))
            return
        view.update(Text(f"analysing {run.path.name}…", style="yellow"))
        self._compare(self.summary, run.path)

    @work(thread=True, exclusive=True, group="compare")
    def _compare(self, summary: dict, other_run: Path) -> None:
        """Compare off the UI thread: the other run may need its analysis first."""
        try:
            shown = render_comparison(compare_runs(summary, summary_of(other_run)))
        except RunDirError as exc:
            shown = Text(str(exc), style="yellow")
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.query_one("#comparison", Static).update, shown)


def _outcome(run: RunEntry) -> Text:
    if run.problem:
        return Text(run.problem, style="red")
    return Text("ok", style="green") if run.outcome in FINE_OUTCOMES else Text(run.outcome, style="yellow")


def render_comparison(comparison: dict) -> Group:
    """A comparison (see :func:`advisor.analysis.compare.compare`) as Rich tables."""
    step = comparison["step_ms"]
    names = {key: Path(str(comparison[key]["run_dir"])).name for key in ("a", "b")}
    head = Text.assemble(("A ", "bold"), names["a"], ("  B ", "bold"), names["b"], "\n")
    if step["ratio"] is not None:
        head.append(f"median step A {ms(step['a'])} ms, B {ms(step['b'])} ms: B/A ", style="")
        head.append(gain(step["ratio"]), style="bold green" if step["ratio"] < 0.95 else
                    "bold red" if step["ratio"] > 1.05 else "bold")
    else:
        head.append("no step time to compare (a run recorded no steps)", style="yellow")
    phases = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), title="ms per step", title_justify="left")
    for column in ("phase", "A", "B", "B-A"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    for phase, v in comparison["breakdown"].items():
        phases.add_row(phase, *map(ms, (v["a_ms"], v["b_ms"], v["delta_ms"])))
    ops = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), title="ops that moved most",
                title_justify="left")
    ops.add_column("op", no_wrap=True, overflow="ellipsis", max_width=24)
    for column in ("A", "B", "B-A"):
        ops.add_column(column, justify="right")
    for op in comparison["hot_ops"]:
        ops.add_row(Text(op["name"]), *map(ms, (op["a_ms"], op["b_ms"], op["delta_ms"])))
    side_by_side = Table.grid(padding=(0, 3))
    side_by_side.add_row(phases, ops)
    return Group(head, side_by_side)

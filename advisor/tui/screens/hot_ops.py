"""Hot ops: every op of the window in a sortable, filterable table; the selected op's details and the
source lines around its call site."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static, TabPane

from advisor.format import ms, pct, rate, short_source
from advisor.store import hot_ops_table, roofline_data, source_lines
from advisor.tui.widgets.roofline_plot import RooflinePlot
from advisor.tui.widgets.source_view import SourceView

#: column key, title, width, and whether it sorts largest first; the first five fit in 80 columns
COLUMNS = (("name", "op", 26, False), ("self_time_ms", "self ms", 8, True), ("share", "share", 6, True),
           ("calls", "calls", 6, True), ("source", "source", 18, False), ("gflops_per_s", "GFLOP/s", 8, True),
           ("roofline_fraction", "roof", 5, True), ("bound", "bound", 8, False), ("shapes", "shapes", 40, False))
SORTABLE = ("self_time_ms", "calls", "gflops_per_s", "roofline_fraction", "name", "source")
_DESCENDING = {key: descending for key, _, _, descending in COLUMNS}


def _cell(key: str, value) -> Text:
    """A cell as plain text (never markup: names come from the user's script)."""
    if value is None or value == "":
        return Text("")
    if key == "self_time_ms":
        return Text(ms(value), justify="right")
    if key == "share":
        return Text(pct(value), justify="right")
    if key == "gflops_per_s":
        return Text(f"{value:.1f}", justify="right")
    if key == "roofline_fraction":
        return Text(f"{100 * value:.0f}%", justify="right")
    if key == "calls":
        return Text(str(value), justify="right")
    if key == "source":
        return Text(short_source(value))
    return Text(str(value))


class HotOpsPane(TabPane):
    BINDINGS = [Binding("slash", "filter", "Filter", key_display="/"), Binding("s", "next_sort", "Sort"),
                Binding("r", "reverse", "Reverse"), Binding("escape", "leave_filter", show=False)]

    sort_key: reactive[str] = reactive("self_time_ms", init=False)
    descending: reactive[bool] = reactive(True, init=False)
    filter_text: reactive[str] = reactive("", init=False)

    def __init__(self):
        super().__init__("Hot ops", id="hot-ops")
        self.ops: list[dict] = []
        self.run_dir: Path | None = None
        self.roofline = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter by op name or source file", compact=True, id="ops-filter")
        yield DataTable(id="ops-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="op-details-box"):
            yield Static(id="op-details")
            yield RooflinePlot(id="op-roofline")
            yield SourceView(id="op-source")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, title, width, _ in COLUMNS:
            table.add_column(title, key=key, width=width)

    def show(self, summary: dict | None, problem: str | None) -> None:
        self.run_dir = Path(summary["run_dir"]) if summary else None
        self.ops = hot_ops_table(summary) if summary else []
        self.roofline = roofline_data(summary) if summary else None
        self.refresh_table()
        if not self.ops:
            self.query_one("#op-details", Static).update(Text(
                problem or "No PyTorch ops were recorded in this run.", style="yellow"))
            self.query_one(SourceView).update("")

    def visible_ops(self) -> list[dict]:
        """The ops that match the filter, in the chosen order."""
        needle = self.filter_text.lower()
        ops = [op for op in self.ops if needle in str(op.get("name", "")).lower()
               or needle in str(op.get("source") or "").lower()]
        present = [op for op in ops if op.get(self.sort_key) is not None]
        missing = [op for op in ops if op.get(self.sort_key) is None]
        present.sort(key=lambda op: op[self.sort_key], reverse=self.descending)
        return present + missing

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for i, op in enumerate(self.visible_ops()):
            table.add_row(*(_cell(key, op.get(key)) for key, *_ in COLUMNS), key=str(i))
        arrow = "▼" if self.descending else "▲"
        for key, title, *_ in COLUMNS:
            table.columns[key].label = Text(f"{title}{arrow}" if key == self.sort_key else title)
        if table.row_count:
            self._select(0)
        elif self.ops:
            self.query_one("#op-details", Static).update(Text(f"no op matches {self.filter_text!r}", style="yellow"))
            self.query_one(SourceView).update("")

    def _select(self, row: int) -> None:
        ops = self.visible_ops()
        if not 0 <= row < len(ops):
            return
        op = ops[row]
        self.query_one("#op-details", Static).update(_details(op))
        self.query_one(RooflinePlot).show(self.roofline, op.get("name"))
        self.query_one(SourceView).show(op.get("source"), source_lines(self.run_dir, op.get("source"))
                                        if self.run_dir else None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._select(event.cursor_row)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, _DESCENDING[key]

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_leave_filter()

    def action_leave_filter(self) -> None:
        """Back to the table, the filter kept (so that q quits again)."""
        self.query_one(DataTable).focus()

    def watch_sort_key(self) -> None:
        self.refresh_table()

    def watch_descending(self) -> None:
        self.refresh_table()

    def watch_filter_text(self) -> None:
        self.refresh_table()

    def action_filter(self) -> None:
        self.query_one(Input).focus()

    def action_next_sort(self) -> None:
        key = SORTABLE[(SORTABLE.index(self.sort_key) + 1) % len(SORTABLE)] if self.sort_key in SORTABLE \
            else SORTABLE[0]
        self.descending = _DESCENDING[key]
        self.sort_key = key

    def action_reverse(self) -> None:
        self.descending = not self.descending


def _details(op: dict) -> Text:
    text = Text.assemble((str(op.get("name")), "bold"), "\n")
    facts = [f"self {ms(op['self_time_ms'])} ms" if op.get("self_time_ms") is not None else None,
             f"{pct(op['share'])} of the window" if op.get("share") is not None else None,
             f"{op.get('calls')} calls",
             f"GPU {op['device_time_ms']:.2f} ms" if op.get("device_time_ms") else None,
             f"{op['flops'] / 1e9:.2f} GFLOP at {op['gflops_per_s']:.1f} GFLOP/s" if op.get("gflops_per_s") else None]
    text.append(" · ".join(f for f in facts if f))
    if op.get("shapes"):
        text.append(f"\nshapes {op['shapes']}")
    if op.get("bound"):
        text.append(f"\n{op['bound']}-bound")
    if op.get("attainable_flops_per_s"):
        text.append(f": {pct(op.get('roofline_fraction'))} of the {rate(op['attainable_flops_per_s'])} its intensity "
                    f"({op['intensity']:.1f} FLOP/byte) allows")
    elif op.get("roofline_fraction") is not None:
        text.append(f": moves its bytes at {pct(op['roofline_fraction'])} of the memory bandwidth")
    text.append(f"\ncalled from {op.get('source') or '(no line of your code)'}", style="grey70")
    return text

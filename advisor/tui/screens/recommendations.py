"""Recommendations: each technique's estimate against its measured gain, spread and numerical change,
its snippet, and a measurement (or a new one) of the selected technique in a background worker."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, ProgressBar, Static, TabPane

from advisor.errors import AdvisorError
from advisor.format import gain, human_bytes, measured_gain, peak_memory, relative
from advisor.remeasure import Progress
from advisor.verdict import is_gain, outcome


class RecommendationsPane(TabPane):
    BINDINGS = [Binding("m", "measure", "Measure")]

    class RunChanged(Message):
        """A measurement was saved into the open run."""

    def __init__(self):
        super().__init__("Recommendations", id="recommendations")
        self.records: list[dict] = []
        self.run_dir: Path | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="techniques", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="measure-status"):
            yield Label(id="measure-text")
            yield ProgressBar(id="measure-progress", show_eta=False)
        with VerticalScroll(id="technique-details-box"):
            yield Static(id="technique-details")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for title, width in (("technique", 22), ("est.", 5), ("measured", 11), ("step", 5), ("peak", 13),
                             ("out err", 7), ("status", 30)):
            table.add_column(title, width=width)
        self.query_one("#measure-status").display = False

    def show(self, summary: dict | None, problem: str | None) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        self.run_dir = Path(summary["run_dir"]) if summary else None
        self.records = list((summary or {}).get("recommendations") or [])
        for r in self.records:
            measured = r.get("measured") or {}
            speed = measured.get("speedup")
            error = (measured.get("quality") or {}).get("output_rel_error")
            style = "green" if is_gain(r) else "red" if speed and speed < 0.95 else ""
            table.add_row(Text(r.get("technique", "?")),
                          Text(gain((r.get("estimate") or {}).get("speedup")), justify="right"),
                          Text(measured_gain(measured), justify="right", style=style),
                          Text(gain(measured.get("projected_speedup")), justify="right"),
                          Text(peak_memory(measured), justify="right"), relative(error), Text(outcome(r)))
        details = self.query_one("#technique-details", Static)
        if not self.records:
            details.update(Text(problem or "No technique was asked: the run ended before its trials.", style="yellow"))
            return
        table.move_cursor(row=min(row, len(self.records) - 1))
        self._select(table.cursor_row)

    def _select(self, row: int) -> None:
        if 0 <= row < len(self.records):
            self.query_one("#technique-details", Static).update(_details(self.records[row]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._select(event.cursor_row)

    def action_measure(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if self.run_dir is None or not 0 <= row < len(self.records):
            self.notify("no technique selected", severity="warning")
            return
        record = self.records[row]
        if record.get("pair"):
            self.notify("a pair is measured with its parts: measure each, or profile again with --pairs all",
                        severity="warning")
            return
        self.query_one("#measure-status").display = True
        self.query_one(ProgressBar).update(total=100, progress=0)
        self.query_one("#measure-text", Label).update(Text(f"measuring {record['technique']}: starting"))
        self.measure(self.run_dir, record["technique"])

    @work(thread=True, exclusive=True, group="measure")
    def measure(self, run_dir: Path, technique: str) -> None:
        """Profile the run's script again with ``technique`` measured (in a thread: the UI stays live)."""
        from advisor.remeasure import remeasure

        try:
            record = remeasure(run_dir, technique, on_progress=lambda p: self.app.call_from_thread(self._progress, p))
        except Exception as exc:  # shown in the UI, which goes on
            why = str(exc) if isinstance(exc, AdvisorError) else f"{type(exc).__name__}: {exc}"
            self.app.call_from_thread(self._finished, technique, None, why)
            return
        self.app.call_from_thread(self._finished, technique, record, None)

    def _progress(self, progress: Progress) -> None:
        self.query_one("#measure-text", Label).update(Text(progress.text))
        bar = self.query_one(ProgressBar)
        if progress.fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * progress.fraction)

    def _finished(self, technique: str, record: dict | None, error: str | None) -> None:
        self.query_one("#measure-status").display = False
        if error is not None:
            self.notify(f"{technique}: {error}", severity="error", timeout=10, markup=False)
            return
        speed = (record.get("measured") or {}).get("speedup")
        shown = f", {gain(speed)}" if speed else ""
        self.notify(f"{technique}: {record.get('status')}{shown}; saved in the run", markup=False)
        self.post_message(self.RunChanged())


def _details(r: dict) -> Group:
    estimate, measured = r.get("estimate") or {}, r.get("measured") or {}
    text = Text.assemble((r.get("technique", "?"), "bold"), f"  {r.get('title', '')}\n")
    text.append(f"{r.get('reason') or ''}\n")
    if estimate:
        text.append(f"estimate {gain(estimate.get('speedup'))}: {estimate.get('basis', '')}\n", style="grey70")
        if estimate.get("risk"):
            text.append(f"risk: {estimate['risk']}\n", style="grey70")
    if measured:
        quality = measured.get("quality") or {}
        text.append(f"measured {gain(measured.get('speedup'))} (lower quartile {gain(measured.get('speedup_low'))})"
                    f" over {measured.get('pairs')} pairs: {measured.get('baseline_ms', 0):.2f} → "
                    f"{measured.get('variant_ms', 0):.2f} ms; "
                    f"outputs change {relative(quality.get('output_rel_error'))}, "
                    f"gradients {relative(quality.get('grad_rel_error'))}\n")
        if measured.get("peak_bytes") is not None:
            text.append(f"peak memory {human_bytes(measured.get('baseline_peak_bytes'))} → "
                        f"{human_bytes(measured['peak_bytes'])} ({peak_memory(measured)}; "
                        f"{measured.get('memory_source', 'measured')})\n")
        if r.get("verdict"):
            text.append(f"verdict: {r['verdict']}\n", style="green" if is_gain(r) else "yellow")
    else:
        text.append(f"{r.get('status', '')}; press m to measure it\n", style="yellow")
    parts = [text]
    if r.get("snippet"):
        parts.append(Syntax(r["snippet"], "python", theme="ansi_dark", background_color="default", word_wrap=True))
    return Group(*parts)

"""The main screen: the open run's banner, one tab per pane, and the footer with the keys."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, Tabs

from advisor.store import FINE_OUTCOMES
from advisor.tui.screens.hot_ops import HotOpsPane
from advisor.tui.screens.memory import MemoryPane
from advisor.tui.screens.overview import OverviewPane
from advisor.tui.screens.ranks import RanksPane
from advisor.tui.screens.recommendations import RecommendationsPane
from advisor.tui.screens.runs import RunsPane

PANES = ("overview", "hot-ops", "memory", "recommendations", "runs", "ranks")


class MainScreen(Screen):
    BINDINGS = [Binding(str(i + 1), f"show_pane('{pane}')", pane, show=False) for i, pane in enumerate(PANES)]

    def compose(self) -> ComposeResult:
        yield Static(id="banner")
        with TabbedContent(initial="overview"):
            yield OverviewPane()
            yield HotOpsPane()
            yield MemoryPane()
            yield RecommendationsPane()
            yield RunsPane()
            yield RanksPane()  # a distributed run's; hidden for one process
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "summary", self._show)
        self.watch(self.app, "analysing", self._analysing)

    def _analysing(self, run_dir: Path | None) -> None:
        """While a run is analysed in the background: a loading indicator over the panes, and the banner
        says which run."""
        self.query_one(TabbedContent).loading = run_dir is not None
        if run_dir is not None:
            self.query_one("#banner", Static).update(
                Text.assemble(("advisor ", "bold"), Path(run_dir).name, ("  analysing the trace…", "yellow")))

    def _show(self, summary: dict | None) -> None:
        self.query_one("#banner", Static).update(_banner(summary, self.app.problem))
        for pane in (OverviewPane, HotOpsPane, MemoryPane, RecommendationsPane, RunsPane, RanksPane):
            self.query_one(pane).show(summary, self.app.problem)
        tabs = self.query_one(TabbedContent)
        if (summary or {}).get("distributed"):
            tabs.show_tab("ranks")
        else:
            tabs.hide_tab("ranks")

    def action_show_pane(self, pane: str) -> None:
        if pane != "ranks" or (self.app.summary or {}).get("distributed"):
            self.query_one(TabbedContent).active = pane

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the shown pane's table, so that its keys work at once (and focus left in a hidden pane
        does not bring that pane back)."""
        tables = event.pane.query(DataTable)
        (tables.first() if tables else self.query_one(TabbedContent).query_one(Tabs)).focus()

    def on_runs_pane_open_run(self, message: RunsPane.OpenRun) -> None:
        self.app.open_run(message.run_dir)
        self.action_show_pane("overview")

    def on_recommendations_pane_run_changed(self, message: RecommendationsPane.RunChanged) -> None:
        self.app.reload()


def _banner(summary: dict | None, problem: str | None) -> Text:
    if summary is None:
        return Text.assemble(("advisor ", "bold"), ("no run open", "yellow"))
    target = summary.get("target") or {}
    outcome = str(summary.get("outcome"))
    style = "green" if outcome in FINE_OUTCOMES else "yellow"
    return Text.assemble(("advisor ", "bold"), Path(str(summary.get("run_dir", ""))).name, "  ", (outcome, style),
                         "  ", Path(str(target.get("name", ""))).name)

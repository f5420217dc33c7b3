"""The Textual app and its factory (the CLI and the tests build it the same way)."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import var
from textual.worker import get_current_worker

from advisor.errors import AdvisorError, RunDirError
from advisor.rundir import DEFAULT_STORE, newest_run
from advisor.pipeline import summary_of
from advisor.store import read_summary


class AdvisorApp(App):
    """Explores one run; ``summary`` is None while ``problem`` says why no run can be shown."""

    CSS_PATH = "app.tcss"
    TITLE = "advisor"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    summary: var[dict | None] = var(None, always_update=True)
    problem: var[str | None] = var(None)
    #: the run being analysed in a worker thread (a run not analysed yet, or an imported one), else None
    analysing: var[Path | None] = var(None)

    def __init__(self, run_dir: Path | None = None, store: Path = DEFAULT_STORE):
        super().__init__()
        self.store = Path(store)
        self._initial = run_dir

    def get_default_screen(self):
        from advisor.tui.screens.main import MainScreen

        return MainScreen()

    def on_mount(self) -> None:
        self.open_run(self._initial)

    def open_run(self, run_dir: Path | None) -> None:
        """Show ``run_dir`` (None: the newest run of the store), or the reason it cannot be shown. A run
        without its summary is analysed in a worker thread while the screen says so."""
        try:
            path = run_dir if run_dir is not None else newest_run(self.store)
            summary = read_summary(path)
        except RunDirError as exc:
            self.problem, self.summary = str(exc), None
            return
        if summary is None:
            self.analysing = Path(path)
            self._analyse(Path(path))
            return
        self.analysing, self.problem, self.summary = None, None, summary

    @work(thread=True, exclusive=True, group="analysis")
    def _analyse(self, run_dir: Path) -> None:
        """Analyse ``run_dir`` off the UI thread; a newer request cancels this one's result."""
        try:
            summary, problem = summary_of(run_dir), None
        except AdvisorError as exc:
            summary, problem = None, str(exc)
        except Exception as exc:  # advisor's own analysis failed: say so in the UI, keep it running
            summary, problem = None, f"analysis of {run_dir} failed: {type(exc).__name__}: {exc}"
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._analysed, run_dir, summary, problem)

    def _analysed(self, run_dir: Path, summary: dict | None, problem: str | None) -> None:
        if self.analysing == run_dir:
            self.analysing, self.problem, self.summary = None, problem, summary

    def reload(self) -> None:
        """Read the open run again (after a measurement saved into it)."""
        if self.summary is not None:
            self.open_run(Path(self.summary["run_dir"]))

    def action_help(self) -> None:
        from advisor.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())


def make_app(run_dir: Path | None = None, store: Path = DEFAULT_STORE) -> AdvisorApp:
    """The app for ``run_dir``, or for the newest run of ``store`` when None."""
    return AdvisorApp(Path(run_dir) if run_dir is not None else None, store)

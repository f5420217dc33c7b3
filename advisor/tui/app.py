"""The Textual app and its factory (the CLI and the tests build it the same way)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.reactive import var

from advisor.errors import RunDirError
from advisor.rundir import DEFAULT_STORE, newest_run
from advisor.pipeline import summary_of


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
        """Show ``run_dir`` (None: the newest run of the store), or the reason it cannot be shown."""
        try:
            summary = summary_of(run_dir if run_dir is not None else newest_run(self.store))
        except RunDirError as exc:
            self.problem, self.summary = str(exc), None
            return
        self.problem, self.summary = None, summary

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

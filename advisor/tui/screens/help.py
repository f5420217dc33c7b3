"""The key reference, opened with ``?``."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = """\
[b]Anywhere[/]
  1-5 or click a tab   Overview, Hot ops, Memory, Recommendations, Runs
  tab / shift+tab      move the focus
  ?                    this help       q   quit
[b]Hot ops[/]
  /  filter by name or source      s  next sort column      r  reverse the order
  enter, arrows        select an op: its details and the source lines of its call site
  click a column title sort by it
[b]Recommendations[/]
  m  measure the selected technique again (runs your script; the UI stays usable)
[b]Runs[/]
  enter  open the run      c  compare the selected run with the open one
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(KEYS)

"""The key reference, opened with ``?``."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = """\
[b]Anywhere[/]
  1 to 5, or a click on a tab  the panes (Overview ... Runs)
  6                            Ranks, in a distributed run
  tab, shift+tab               move the focus
  ?  this help                 q  quit
[b]Hot ops[/]
  /  filter by op name or source file; enter, escape: to the table
  s  sort by the next column   r  reverse the order
  a click on a column title    sort by it
  up, down                     select an op: details, source lines
[b]Recommendations[/]
  m  measure the selected technique again: runs your script
     in the background; the result is saved into the run
[b]Runs[/]
  enter  open the selected run
  c      compare the selected run with the open one
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(KEYS)

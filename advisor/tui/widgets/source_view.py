"""The lines of the user's code around an op's call site, that line highlighted."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.widgets import Static


class SourceView(Static):
    """Shows ``lines`` (``(number, text)`` pairs) of ``source``, or why they cannot be shown."""

    DEFAULT_CSS = """
    SourceView { height: auto; padding: 0 1; }
    """

    def show(self, source: str | None, lines: list[tuple[int, str]] | None) -> None:
        if not source:
            self.update(Text("no call site in your code was recorded for this op", style="grey50"))
            return
        if not lines:
            self.update(Text(f"{source}: the file is not on this machine any more", style="yellow"))
            return
        line = int(source.rpartition(":")[2])
        code = "\n".join(text for _, text in lines)
        self.update(Syntax(code, "python", line_numbers=True, start_line=lines[0][0], highlight_lines={line},
                           theme="ansi_dark", background_color="default", word_wrap=False))

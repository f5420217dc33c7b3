"""The one escaping function for every string a report did not write itself (op names, paths, args)."""

from __future__ import annotations

import html
import re

# markdown's punctuation; < > & become entities instead (a backslash before & would show the entity)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")


def md(text: object) -> str:
    """``text`` as literal markdown: every markdown special backslash-escaped, HTML special characters
    as entities, newlines as spaces (so it is safe in a table cell too)."""
    escaped = _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))
    return html.escape(escaped, quote=False)


def fence(code: str, language: str = "python") -> str:
    """``code`` in a fenced block longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{code.rstrip()}\n{ticks}"

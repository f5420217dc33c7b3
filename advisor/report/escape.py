"""The escaping of every string a report did not write itself: names in code spans, free text escaped
only where it would start markup, code in fences. Table cells get their ``|`` escaped by the table."""

from __future__ import annotations

import re

# what starts markup anywhere in a line: a backslash that escapes punctuation (or the markup after the text),
# code, emphasis, strikethrough, HTML tags, entities, a link, an image or a link definition (a ``[`` that a
# later ``](`` or ``]:`` closes); ``_`` inside a word starts nothing, nor does ``[`` in ``[8, 3, 32, 32]``
_INLINE = re.compile(r"\\(?=[!-/:-@\[-`{-~]|$)|[`*~<]|&(?=#?\w+;)|(?<![^\W_])_|_(?![^\W_])|\[(?=.*\][(:])")
# what starts a block at the start of a line: quote, heading, list item or rule, setext underline, ordered list
_LINE_START = re.compile(r"^(?:>|#(?=#{0,5}(?:\s|$))|[+-](?=[\s-]|$)|=(?==*$)|\d{1,9}(?=[.)](?:\s|$)))")
_ENTITIES = {"<": "&lt;", "&": "&amp;"}


def plain(text: object) -> str:
    """Free text (a reason, an evidence sentence) on one line, with only what would start markup escaped:
    ``<`` and ``&`` as entities, the markdown characters with a backslash."""
    line = " ".join(str(text).split())
    line = _INLINE.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), line)
    return _LINE_START.sub(lambda m: m.group() + "\\" if m.group().isdigit() else "\\" + m.group(), line)


def code(name: object) -> str:
    """A name from the user's script or torch (op, file, path, module, technique, argument) as a code span
    on one line, its delimiter longer than any run of backticks inside; ``""`` for an empty name."""
    line = " ".join(str(name).split())
    if not line:
        return ""
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", line)), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""  # one space each side is stripped again
    return f"{ticks}{pad}{line}{pad}{ticks}"


def cell(markdown: str) -> str:
    """``markdown`` fit for a GFM table cell: ``|`` escaped, which GFM requires even inside code spans."""
    return markdown.replace("|", "\\|")


def fence(source: str, language: str = "python") -> str:
    """``source`` in a fenced block longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{source.rstrip()}\n{ticks}"

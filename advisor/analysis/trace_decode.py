"""Kineto trace JSON ──► the kept events as columns: codes into names, arrays of numbers, read in batches.

The file is read 1 MB at a time and split into events where kineto ends one (``}`` on its own line at the
indentation of the opening ``{``, then a comma). ``with_stack``'s Python function events, half of a trace's bytes,
are dropped by their first lines before they are decoded; the others are decoded by msgspec into typed structs
holding only the fields the analyses use (the rest of every event is skipped by the decoder), and only the event
kinds the analyses read are kept. Names become codes as they are read, and the argument lists that repeat every
step (input shapes, types, scalar inputs) are kept as codes into their distinct texts.

A batch that does not decode is decoded event by event: an event whose name holds a raw ``"`` (kineto writes some
Python names as they are) is repaired, any other broken event is skipped, and a file cut short is read up to its
last complete event.

This module imports neither pandas nor advisor's analyses: a process that decodes a part of a large file
(``python -m advisor.analysis.trace_decode``, see :func:`decode_part`) starts in a tenth of a second.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import signal
import sys
from collections.abc import Iterable

import msgspec
import numpy as np

from advisor.rundir import MEMORY_EVENT

#: event categories kept (complete events) and the instant memory events
_KEPT_CATEGORIES = frozenset({"cpu_op", "user_annotation", "gpu_user_annotation", "kernel",
                              "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver"})
_METADATA_LIMIT = 64 << 20
BATCH_BYTES = 1 << 20
CATEGORICAL = ("cat", "name", "ph", "pid", "tid")
SHARED_LISTS = ("input_dims", "input_types", "concrete_inputs")
NUMBERS = ("bytes", "total_allocated", "device_type", "device_id", "correlation", "external_id")
_Number = float | None  # absent: NaN (the decoder turns integers into floats)
_NAN = math.nan
_ABSENT = msgspec.Raw(b"")


class _Args(msgspec.Struct, gc=False):
    input_dims: msgspec.Raw = msgspec.field(default=_ABSENT, name="Input Dims")
    input_types: msgspec.Raw = msgspec.field(default=_ABSENT, name="Input type")
    concrete_inputs: msgspec.Raw = msgspec.field(default=_ABSENT, name="Concrete Inputs")
    bytes: _Number = msgspec.field(default=_NAN, name="Bytes")
    bytes_lower: _Number = msgspec.field(default=_NAN, name="bytes")  # memcpys
    total_allocated: _Number = msgspec.field(default=_NAN, name="Total Allocated")
    device_type: _Number = msgspec.field(default=_NAN, name="Device Type")
    device_id: _Number = msgspec.field(default=_NAN, name="Device Id")
    correlation: _Number = _NAN
    external_id: _Number = msgspec.field(default=_NAN, name="External id")


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    pid: int | str = ""
    tid: int | str = ""
    ts: float = 0.0
    dur: float = 0.0
    args: _Args | None = None


class _TraceEvents(msgspec.Struct):
    traceEvents: list[_Event]


_BATCH = msgspec.json.Decoder(list[_Event])
_ONE = msgspec.json.Decoder(_Event)
_WHOLE = msgspec.json.Decoder(_TraceEvents)
_ANY = msgspec.json.Decoder()


def read_header(f) -> tuple[dict, bytes]:
    """Top-level keys written before ``traceEvents`` (kineto writes its metadata there), and the bytes
    read past the array's ``[``."""
    head = b""
    while len(head) < _METADATA_LIMIT:
        chunk = f.read(1 << 16)
        head += chunk
        marker = head.find(b'"traceEvents"')
        bracket = head.find(b"[", marker) if marker >= 0 else -1
        if bracket >= 0:
            return json.loads(head[:marker] + b'"traceEvents": []}'), head[bracket + 1:]
        if not chunk:
            break
    raise ValueError("no traceEvents array")


class Layout:
    """How the events are written: each one's lines, its closing line, the comma after it."""

    def __init__(self, closing: bytes, python_function: bytes):
        self.closing = closing
        self.separator = closing + b","
        #: how a Python function event starts (its ``ph`` and ``cat`` lines); one written otherwise is decoded, then
        #: dropped
        self.python_function = python_function

    @classmethod
    def of(cls, events: bytes) -> tuple[Layout, int] | None:
        """The layout of the events array's text ``events`` (what follows its ``[``, at least its first event's first
        line), and where its first event's line starts; None when the events are not one per block of lines."""
        start = len(events) - len(events.lstrip())
        line_start = events.rfind(b"\n", 0, start)
        if line_start < 0 or events[start:start + 1] != b"{":
            return None
        indent = events[line_start + 1:start]
        inside = events[start + 1:]
        fields = inside[:len(inside) - len(inside.lstrip())]  # the first event's fields are indented as all are
        python_function = b"\n" + indent + b"{" + fields + b'"ph": "X",' + fields + b'"cat": "python_function"'
        return cls(b"\n" + indent + b"}", python_function), line_start


def read_events(f, remainder: bytes, layout: Layout, columns: Columns, length: int | None = None) -> None:
    """Decode events from ``remainder`` and what follows it in ``f``, reading ``length`` bytes more (all, when None);
    ``remainder`` (or, when it is empty, the part read) starts on the line of an event's ``{``."""
    left = math.inf if length is None else length
    while left > 0 and (chunk := _read_chunk(f, columns, int(min(BATCH_BYTES, left)))):
        left -= len(chunk)
        events = (remainder + chunk).split(layout.separator)
        remainder = events.pop()  # the event the chunk ends in
        columns.add_batch(events, layout)
    end = remainder.rfind(layout.closing)  # the last event, before the array's end
    if end >= 0:
        columns.add_batch([remainder[:end]], layout)
        remainder = remainder[end + len(layout.closing):]
    if remainder.strip() and not remainder.lstrip().startswith(b"]"):
        columns.cut_short = len(remainder)


def read_whole(array_and_rest: bytes, columns: Columns) -> None:
    """Decode an events array not written one event per block of lines, all at once."""
    columns.add_events(_WHOLE.decode(b'{"traceEvents": [' + array_and_rest).traceEvents)


def _read_chunk(f, columns: Columns, size: int) -> bytes:
    try:
        return f.read(size)
    except EOFError:  # a compressed file cut short
        columns.cut_short = columns.cut_short or 1
        return b""


class Columns:
    """The kept events, column by column: names and argument lists as codes into their distinct texts, numbers in
    arrays; one array per batch."""

    def __init__(self):
        self.codes: dict[str, list[np.ndarray]] = {c: [] for c in (*CATEGORICAL, *SHARED_LISTS)}
        #: each column's value as decoded ──► its code (names by their text, argument lists by theirs)
        self.numbering: dict[str, _Names | _Texts] = {**{c: _Names() for c in CATEGORICAL},
                                                      **{c: _Texts() for c in SHARED_LISTS}}
        self.arrays: dict[str, list[np.ndarray]] = {c: [] for c in ("ts", "dur", *NUMBERS)}
        self.rows = 0
        self.broken = 0
        self.cut_short = 0

    @property
    def skipped(self) -> list[str]:
        """What was left out, in words."""
        out = [f"{self.broken} events that do not decode"] if self.broken else []
        if self.cut_short:
            out.append("the end of a trace cut short (no complete event after the last one read)")
        return out

    def texts(self, column: str) -> list:
        """The column's distinct texts, in the order of their codes."""
        return list(self.numbering[column].texts)

    def add_batch(self, events: list[bytes], layout: Layout) -> None:
        """Decode ``events`` (each without its closing line) but the Python function ones; on failure, one by one."""
        kept = [event for event in events if not event.startswith(layout.python_function)]
        if not kept:
            return
        first, last = kept[0], kept[-1]
        kept[0] = b"[" + kept[0]
        kept[-1] += layout.closing + b"]"
        try:
            decoded = _BATCH.decode(layout.separator.join(kept))
        except msgspec.DecodeError:
            kept[0], kept[-1] = first, last
            decoded = self._one_by_one(layout.separator.join(kept) + layout.closing, layout.closing)
        self.add_events(decoded)

    def _one_by_one(self, data: bytes, closing: bytes) -> list[_Event]:
        """Each piece that starts a line with ``{`` at the events' indentation, decoded alone."""
        events = []
        opening = closing[:-1] + b"{"
        for piece in (b"\n" + data).split(opening):
            piece = piece.rstrip().removesuffix(b",")
            if not piece.strip():
                continue
            event = _decode_repaired(b"{" + piece)
            if event is None:
                self.broken += 1
            else:
                events.append(event)
        return events

    def add_events(self, events: list[_Event]) -> None:
        """Keep the complete events of the kept categories and the memory events."""
        kept = [e for e in events if (e.ph == "X" and e.cat in _KEPT_CATEGORIES)
                or (e.ph == "i" and e.name == MEMORY_EVENT)]
        if not kept:
            return
        count = len(kept)
        # one comprehension per field, written out: a loop over the names with getattr or attrgetter was slower
        self._encode("cat", [e.cat if e.ph == "X" else "memory" for e in kept], count)
        self._encode("name", [e.name for e in kept], count)
        self._encode("ph", [e.ph for e in kept], count)
        self._encode("pid", [e.pid for e in kept], count)
        self._encode("tid", [e.tid for e in kept], count)
        arrays = self.arrays
        arrays["ts"].append(np.array([e.ts for e in kept], dtype=np.float64))
        arrays["dur"].append(np.array([e.dur if e.ph == "X" else 0.0 for e in kept], dtype=np.float64))
        args = [e.args or _NO_ARGS for e in kept]
        self._encode("input_dims", [bytes(a.input_dims) for a in args], count)
        self._encode("input_types", [bytes(a.input_types) for a in args], count)
        self._encode("concrete_inputs", [bytes(a.concrete_inputs) for a in args], count)
        sizes = _floats([a.bytes for a in args])
        arrays["bytes"].append(np.where(np.isnan(sizes), _floats([a.bytes_lower for a in args]), sizes))
        arrays["total_allocated"].append(_floats([a.total_allocated for a in args]))
        arrays["device_type"].append(_floats([a.device_type for a in args]))
        arrays["device_id"].append(_floats([a.device_id for a in args]))
        arrays["correlation"].append(_floats([a.correlation for a in args]))
        arrays["external_id"].append(_floats([a.external_id for a in args]))
        self.rows += count

    def _encode(self, column: str, values: Iterable, count: int) -> None:
        numbering = self.numbering[column]
        self.codes[column].append(np.fromiter(map(numbering.__getitem__, values), dtype=np.int32, count=count))

    def state(self) -> dict:
        """The columns as plain data (each column's batches joined), for another process's :meth:`absorb`."""
        return {"codes": {c: (joined(parts, np.int32), self.texts(c)) for c, parts in self.codes.items()},
                "arrays": {c: joined(parts) for c, parts in self.arrays.items()},
                "rows": self.rows, "broken": self.broken, "cut_short": self.cut_short}

    def absorb(self, state: dict) -> None:
        """Append the events of another :class:`Columns`' :meth:`state`, their codes renumbered into these."""
        for column, (codes, texts) in state["codes"].items():
            known = self.numbering[column].texts
            renumbered = np.array([known.setdefault(t, len(known)) for t in texts], dtype=np.int32)
            self.codes[column].append(renumbered[codes] if len(codes) else codes)
        for column, values in state["arrays"].items():
            self.arrays[column].append(values)
        self.rows += state["rows"]
        self.broken += state["broken"]
        self.cut_short = state["cut_short"]  # parts are absorbed in order: the last one's end is the file's


class _Names(dict):
    """Each value as decoded (a pid may be a number or a text) ──► the code of its text; codes are numbered in
    order of first appearance, and a value seen first is given its code as it is looked up."""

    def __init__(self):
        super().__init__()
        self.texts: dict[str, int] = {}

    def __missing__(self, value) -> int:
        code = self[value] = self.texts.setdefault(str(value), len(self.texts))
        return code


class _Texts(dict):
    """Each text ──► its code, numbered in order of first appearance as it is looked up."""

    def __missing__(self, text) -> int:
        code = self[text] = len(self)
        return code

    @property
    def texts(self) -> dict[bytes, int]:
        """Itself: each text ──► its code, as :attr:`_Names.texts` is for names."""
        return self


def decoded_lists(texts: list[bytes]) -> np.ndarray:
    """The argument lists' distinct texts, decoded (an absent list: None), as an object array to take from."""
    out = np.empty(len(texts), dtype=object)
    out[:] = [_ANY.decode(t) if t else None for t in texts]
    return out


def _floats(values: list) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None (a JSON null) becomes NaN


def joined(parts: list[np.ndarray], dtype=np.float64) -> np.ndarray:
    """The batches' arrays as one."""
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


_NO_ARGS = _Args()
_NAME_LINE = re.compile(rb'^(\s*"name": )"(.*)"(,?\s*)$', re.S)


def _decode_repaired(piece: bytes) -> _Event | None:
    """One event; when it does not decode, again with each ``"name"`` value escaped anew: kineto writes
    Python function names as they are, and a name holding ``"`` (seen in code run by torch.compile)
    breaks the JSON. None when it still does not decode."""
    try:
        return _ONE.decode(piece)
    except msgspec.DecodeError:
        pass
    lines = []
    for line in piece.splitlines(keepends=True):
        match = _NAME_LINE.match(line)
        if match and b'"' in match.group(2):
            line = match.group(1) + json.dumps(match.group(2).decode("utf-8", "replace")).encode() + match.group(3)
        lines.append(line)
    try:
        return _ONE.decode(b"".join(lines))
    except msgspec.DecodeError:
        return None


def decode_part(path: str, start: int, end: int | None, layout: Layout) -> Columns:
    """The events of the plain (not compressed) file ``path`` from byte ``start``, where an event's line starts, to
    ``end`` (just after an event's comma), or to the file's end."""
    columns = Columns()
    with open(path, "rb") as f:
        f.seek(start)
        read_events(f, b"", layout, columns, None if end is None else end - start)
    return columns


def _main(argv: list[str]) -> None:
    """``PATH START END|- CLOSING PYTHON_FUNCTION`` (the last two as hex): the part's columns, pickled, on stdout.
    The process that started it answers Ctrl-C for both."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, start, end, closing, python_function = argv
    layout = Layout(bytes.fromhex(closing), bytes.fromhex(python_function))
    columns = decode_part(path, int(start), None if end == "-" else int(end), layout)
    pickle.dump(columns.state(), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    _main(sys.argv[1:])

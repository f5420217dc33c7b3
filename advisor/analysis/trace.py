"""Kineto trace file (``.json`` or ``.json.gz``) ──► (metadata, events frame), read in batches.

The file is read 1 MB at a time; each batch of events is decoded by msgspec into typed structs
holding only the fields the analyses use (the rest of every event is skipped by the decoder), and
only the event kinds the analyses read are kept (``with_stack``'s Python function events, half of a trace's
bytes, are dropped before they are decoded). Names become categorical codes as they are read,
and the argument lists that repeat every step (input shapes, types, scalar inputs) are decoded once
and shared. The memory it adds is a fraction of the file's size, and the time grows linearly with it.

A batch that does not decode is decoded event by event: an event whose name holds a raw ``"``
(kineto writes some Python names as they are) is repaired, any other broken event is skipped, and a
file cut short is read up to its last complete event; :attr:`Trace.skipped` says what was left out.
Timestamps stay in the trace's microseconds; ``base_unix_us`` turns them into wall-clock time.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from advisor.errors import RunDirError
from advisor.heap import release_memory
from advisor.rundir import MEMORY_EVENT

#: event categories kept (complete events) and the instant memory events
_KEPT_CATEGORIES = frozenset({"cpu_op", "user_annotation", "gpu_user_annotation", "kernel",
                              "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver"})
_METADATA_LIMIT = 64 << 20
_BATCH_BYTES = 1 << 20
_CATEGORICAL = ("cat", "name", "ph", "pid", "tid")
_SHARED_LISTS = ("input_dims", "input_types", "concrete_inputs")
_NUMBERS = ("bytes", "total_allocated", "device_type", "device_id", "correlation", "external_id")
COLUMNS = ("cat", "name", "ph", "pid", "tid", "ts", "dur", *_SHARED_LISTS, *_NUMBERS)
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


@dataclasses.dataclass
class Trace:
    """One trace: its top-level metadata, one row per kept event, and what could not be read."""

    metadata: dict
    events: pd.DataFrame
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def base_unix_us(self) -> float:
        return float(self.metadata.get("baseTimeNanoseconds", 0)) / 1000.0


def load_trace(path: Path) -> Trace:
    """Parse a kineto (Chrome JSON) trace into a :class:`Trace`; raise RunDirError when nothing of it is
    readable."""
    path = Path(path)
    columns = _Columns()
    try:
        with _open(path) as f:
            metadata, first = _read_header(f)
            _read_events(f, first, columns)
    except FileNotFoundError:
        raise RunDirError(f"{path}: trace missing") from None
    except (OSError, EOFError, ValueError, msgspec.DecodeError) as exc:
        raise RunDirError(f"{path}: corrupt trace ({exc})") from None
    skipped = columns.skipped
    if columns.rows == 0 and skipped:
        raise RunDirError(f"{path}: corrupt trace ({'; '.join(skipped)})")
    events = columns.frame()
    del columns
    release_memory()
    return Trace(metadata=metadata, events=events, skipped=skipped)


def read_metadata(path: Path) -> dict:
    """The trace's top-level metadata alone (raises OSError, EOFError or ValueError)."""
    with _open(Path(path)) as f:
        return _read_header(f)[0]


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_header(f) -> tuple[dict, bytes]:
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


def _read_events(f, rest: bytes, columns: _Columns) -> None:
    """Decode the events array batch by batch. Kineto writes one event per block of lines, each closing
    with ``}`` at the indentation of its opening ``{``, and a comma after it: a batch is split into events there."""
    while not rest.lstrip():
        chunk = _read_chunk(f, columns)
        if not chunk:
            return
        rest += chunk
    start = len(rest) - len(rest.lstrip())
    line_start = rest.rfind(b"\n", 0, start)
    if line_start < 0 or rest[start:start + 1] != b"{":  # not one event per block of lines: decode it whole
        _read_whole(rest + f.read(), columns)
        return
    layout = _Layout(indent=rest[line_start + 1:start], first_event=rest[start:])
    remainder = rest[line_start:]
    while chunk := _read_chunk(f, columns):
        events = (remainder + chunk).split(layout.separator)
        remainder = events.pop()  # the event the chunk ends in
        columns.add_batch(events, layout)
    end = remainder.rfind(layout.closing)  # the last event, before the array's end
    if end >= 0:
        columns.add_batch([remainder[:end]], layout)
        remainder = remainder[end + len(layout.closing):]
    if remainder.strip() and not remainder.lstrip().startswith(b"]"):
        columns.cut_short = len(remainder)


class _Layout:
    """How the events are written: each one's lines, its closing line, the comma after it."""

    def __init__(self, indent: bytes, first_event: bytes):
        self.closing = b"\n" + indent + b"}"
        self.separator = self.closing + b","
        #: how a Python function event starts (its ``ph`` and ``cat`` lines), with fields indented as in the first
        #: event; an event written otherwise is decoded, then dropped
        inside = first_event[1:]
        fields = inside[:len(inside) - len(inside.lstrip())]
        self.python_function = (b"\n" + indent + b"{" + fields + b'"ph": "X",' + fields
                                + b'"cat": "python_function"')


def _read_chunk(f, columns: _Columns) -> bytes:
    try:
        return f.read(_BATCH_BYTES)
    except EOFError:  # a compressed file cut short
        columns.cut_short = columns.cut_short or 1
        return b""


def _read_whole(array_and_rest: bytes, columns: _Columns) -> None:
    columns.add_events(_WHOLE.decode(b'{"traceEvents": [' + array_and_rest).traceEvents)


class _Columns:
    """The kept events, column by column: names shared, numbers in arrays, one array per batch."""

    def __init__(self):
        self.codes: dict[str, list[np.ndarray]] = {c: [] for c in _CATEGORICAL}
        self.names: dict[str, _Names] = {c: _Names() for c in _CATEGORICAL}
        self.lists: dict[str, list] = {c: [] for c in _SHARED_LISTS}
        self.shared: dict[bytes, object] = {b"": None}
        self.arrays: dict[str, list[np.ndarray]] = {c: [] for c in ("ts", "dur", *_NUMBERS)}
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

    def add_batch(self, events: list[bytes], layout: _Layout) -> None:
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
        self._encode("cat", [e.cat if e.ph == "X" else "memory" for e in kept], count)
        self._encode("name", [e.name for e in kept], count)
        self._encode("ph", [e.ph for e in kept], count)
        self._encode("pid", [e.pid for e in kept], count)
        self._encode("tid", [e.tid for e in kept], count)
        arrays = self.arrays
        arrays["ts"].append(np.array([e.ts for e in kept], dtype=np.float64))
        arrays["dur"].append(np.array([e.dur if e.ph == "X" else 0.0 for e in kept], dtype=np.float64))
        args = [e.args or _NO_ARGS for e in kept]
        # one comprehension per field, written out: a loop over the names with getattr or attrgetter was slower
        self.lists["input_dims"] += self._shared([bytes(a.input_dims) for a in args])
        self.lists["input_types"] += self._shared([bytes(a.input_types) for a in args])
        self.lists["concrete_inputs"] += self._shared([bytes(a.concrete_inputs) for a in args])
        sizes = _floats([a.bytes for a in args])
        arrays["bytes"].append(np.where(np.isnan(sizes), _floats([a.bytes_lower for a in args]), sizes))
        arrays["total_allocated"].append(_floats([a.total_allocated for a in args]))
        arrays["device_type"].append(_floats([a.device_type for a in args]))
        arrays["device_id"].append(_floats([a.device_id for a in args]))
        arrays["correlation"].append(_floats([a.correlation for a in args]))
        arrays["external_id"].append(_floats([a.external_id for a in args]))
        self.rows += len(kept)

    def _encode(self, column: str, values: Iterable, count: int) -> None:
        """Keep the ``count`` ``values`` as codes into the column's names."""
        self.codes[column].append(np.fromiter(map(self.names[column].__getitem__, values), dtype=np.int32,
                                              count=count))

    def _shared(self, texts: list[bytes]) -> list:
        """The decoded lists, one object per distinct text (ops repeat the same shapes every step)."""
        shared = self.shared
        for text in set(texts).difference(shared):
            shared[text] = _ANY.decode(text)
        return list(map(shared.__getitem__, texts))

    def frame(self) -> pd.DataFrame:
        """The events as one frame; each column's batches are let go once joined (only one column is held twice)."""
        data: dict[str, object] = {c: _categorical(self.codes.pop(c), self.names[c].texts) for c in _CATEGORICAL}
        for column in ("ts", "dur"):
            data[column] = _joined(self.arrays.pop(column))
        for column in _SHARED_LISTS:
            values = self.lists.pop(column)
            data[column] = np.fromiter(values, dtype=object, count=len(values))
            del values
        for column in _NUMBERS:
            data[column] = _numeric(_joined(self.arrays.pop(column)))
        events = pd.DataFrame(data, columns=list(COLUMNS), copy=False)
        events["end"] = events["ts"] + events["dur"]
        return events


class _Names(dict):
    """Each value as decoded (a pid may be a number or a text) ──► the code of its text; codes are numbered in
    order of first appearance, and a value seen first is given its code as it is looked up."""

    def __init__(self):
        super().__init__()
        self.texts: dict[str, int] = {}

    def __missing__(self, value) -> int:
        code = self[value] = self.texts.setdefault(str(value), len(self.texts))
        return code


def _floats(values: list) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None (a JSON null) becomes NaN


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


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


def _categorical(parts: list[np.ndarray], known: dict[str, int]) -> pd.Categorical:
    """Codes in order of first appearance ──► a categorical with its categories sorted, as ``astype``
    makes it."""
    names = np.array(list(known), dtype=object)
    order = np.argsort(names, kind="stable")
    remap = np.empty(len(names), dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    codes = remap[np.concatenate(parts)] if parts else np.empty(0, dtype=np.int32)
    return pd.Categorical.from_codes(codes, categories=pd.Index(names[order].tolist()))


def _numeric(values: np.ndarray) -> np.ndarray:
    """Integers when every value is a whole number, as ``pd.to_numeric`` reads them; else floats."""
    if len(values) and not np.isnan(values).any() and (values == np.round(values)).all():
        return values.astype(np.int64)
    return values

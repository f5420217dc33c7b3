"""Kineto trace file (``.json`` or ``.json.gz``) ──► :class:`Trace`: its metadata and one frame of the kept events.

The events are decoded batch by batch (:mod:`advisor.analysis.trace_decode`): the memory it adds is a fraction of the
file's size, and the time grows linearly with it. A large plain file can be decoded in parts by several processes
at once (``workers``), each part starting where an event does; their columns are joined in the file's order.
A trace that is cut short or holds broken events gives what is readable; :attr:`Trace.skipped` says what was left
out. Timestamps stay in the trace's microseconds; ``base_unix_us`` turns them into wall-clock time.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from advisor.analysis.trace_decode import (BATCH_BYTES, CATEGORICAL, NUMBERS, SHARED_LISTS, Columns, Layout,
                                           decode_part, decoded_lists, joined, read_events, read_header, read_whole)
from advisor.errors import RunDirError
from advisor.heap import release_memory

COLUMNS = ("cat", "name", "ph", "pid", "tid", "ts", "dur", *SHARED_LISTS, *NUMBERS)
#: the least a decoding process is given: below it, starting one costs more than it saves
PART_BYTES = 64 << 20


@dataclasses.dataclass
class Trace:
    """One trace: its top-level metadata, one row per kept event, and what could not be read."""

    metadata: dict
    events: pd.DataFrame
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def base_unix_us(self) -> float:
        return float(self.metadata.get("baseTimeNanoseconds", 0)) / 1000.0


def load_trace(path: Path, workers: int = 1) -> Trace:
    """Parse a kineto (Chrome JSON) trace into a :class:`Trace`, in up to ``workers`` processes at once (this one
    included) for a plain file of at least :data:`PART_BYTES` a part; raise RunDirError when nothing of it is
    readable."""
    path = Path(path)
    columns = Columns()
    try:
        with _open(path) as f:
            metadata, first = read_header(f)
            _read_events(path, f, first, columns, workers)
    except FileNotFoundError:
        raise RunDirError(f"{path}: trace missing") from None
    except (OSError, EOFError, ValueError, msgspec.DecodeError) as exc:
        raise RunDirError(f"{path}: corrupt trace ({exc})") from None
    skipped = columns.skipped
    if columns.rows == 0 and skipped:
        raise RunDirError(f"{path}: corrupt trace ({'; '.join(skipped)})")
    events = _frame(columns)
    del columns
    release_memory()
    return Trace(metadata=metadata, events=events, skipped=skipped)


def read_metadata(path: Path) -> dict:
    """The trace's top-level metadata alone (raises OSError, EOFError or ValueError)."""
    with _open(Path(path)) as f:
        return read_header(f)[0]


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_events(path: Path, f, rest: bytes, columns: Columns, workers: int) -> None:
    """Decode the events array, whose text starts with ``rest``, into ``columns``: in parts when it is worth it."""
    while not rest.lstrip():
        chunk = f.read(BATCH_BYTES)
        if not chunk:
            return
        rest += chunk
    found = Layout.of(rest)
    if found is None:
        read_whole(rest + f.read(), columns)
        return
    layout, line_start = found
    whole_file = workers > 1 and path.suffix != ".gz" and f.seekable()  # not a pipe, nor a stream to decompress
    starts = _part_starts(f, f.tell() - len(rest) + line_start, layout, workers) if whole_file else []
    if len(starts) < 2:
        read_events(f, rest[line_start:], layout, columns)
        return
    ends = [*starts[1:], None]
    others = [_start_part(path, start, end, layout) for start, end in zip(starts[1:], ends[1:])]
    try:
        f.seek(starts[0])
        read_events(f, b"", layout, columns, ends[0] - starts[0])
        for process, start, end in zip(others, starts[1:], ends[1:]):
            columns.absorb(_part_of(process) or decode_part(str(path), start, end, layout).state())
    finally:
        for process in others:
            process.kill()
            process.wait()


def _part_starts(f, first: int, layout: Layout, workers: int) -> list[int]:
    """Where each part of the events begins (the line of an event's ``{``), the first at ``first``; one part a
    worker, each of at least :data:`PART_BYTES`."""
    size = os.fstat(f.fileno()).st_size
    parts = min(workers, (size - first) // PART_BYTES)
    starts = [first]
    for k in range(1, max(parts, 1)):
        f.seek(first + k * (size - first) // parts)
        window = f.read(BATCH_BYTES)
        found = window.find(layout.separator)
        if found < 0:  # an event larger than a batch: not split here
            continue
        starts.append(f.tell() - len(window) + found + len(layout.separator))
    return starts


def _start_part(path: Path, start: int, end: int | None, layout: Layout) -> subprocess.Popen:
    """A process decoding the part from ``start`` to ``end``; its columns come pickled on its stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "advisor.analysis.trace_decode", str(path), str(start),
         "-" if end is None else str(end), layout.closing.hex(), layout.python_function.hex()],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _part_of(process: subprocess.Popen) -> dict | None:
    """The part's columns, or None when its process failed (the part is then decoded here)."""
    try:
        state = pickle.load(process.stdout)
    except (EOFError, pickle.UnpicklingError, OSError):
        return None
    return state if process.wait() == 0 else None


def _frame(columns: Columns) -> pd.DataFrame:
    """The events as one frame; each column's batches are let go once joined (only one column is held twice)."""
    data: dict[str, object] = {c: _categorical(columns.codes.pop(c), columns.texts(c)) for c in CATEGORICAL}
    for column in ("ts", "dur"):
        data[column] = joined(columns.arrays.pop(column))
    for column in SHARED_LISTS:
        data[column] = decoded_lists(columns.texts(column))[joined(columns.codes.pop(column), np.int32)]
    for column in NUMBERS:
        data[column] = _numeric(joined(columns.arrays.pop(column)))
    events = pd.DataFrame(data, columns=list(COLUMNS), copy=False)
    events["end"] = events["ts"] + events["dur"]
    return events


def _categorical(parts: list[np.ndarray], texts: list[str]) -> pd.Categorical:
    """Codes in order of first appearance ──► a categorical with its categories sorted, as ``astype``
    makes it."""
    names = np.array(texts, dtype=object)
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

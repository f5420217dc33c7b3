"""Kineto trace file ──► (metadata, events frame), parsed as a stream.

Only the fields the analyses use are kept; a 500 MB trace loads in a fraction of the memory a
``json.load`` would take. Timestamps stay in the trace's microseconds; ``base_unix_us`` turns them
into wall-clock time.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import ijson
import pandas as pd

from advisor.errors import RunDirError
from advisor.rundir import MEMORY_EVENT

#: event categories kept (complete events) and the instant memory events
_KEPT_CATEGORIES = {"cpu_op", "user_annotation", "gpu_user_annotation", "kernel",
                    "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver"}
_METADATA_LIMIT = 64 << 20


@dataclasses.dataclass
class Trace:
    """One trace: its top-level metadata and one row per kept event."""

    metadata: dict
    events: pd.DataFrame

    @property
    def base_unix_us(self) -> float:
        return float(self.metadata.get("baseTimeNanoseconds", 0)) / 1000.0


def _read_metadata(path: Path) -> dict:
    """Top-level keys written before ``traceEvents`` (kineto writes its metadata there)."""
    head = b""
    with open(path, "rb") as f:
        while len(head) < _METADATA_LIMIT:
            chunk = f.read(1 << 16)
            head += chunk
            marker = head.find(b'"traceEvents"')
            if marker >= 0:
                return json.loads(head[:marker] + b'"traceEvents": []}')
            if not chunk:
                break
    raise ValueError("no traceEvents array")


def load_trace(path: Path) -> Trace:
    """Parse a kineto (Chrome JSON) trace into a :class:`Trace`; raise RunDirError if it is unreadable."""
    path = Path(path)
    try:
        metadata = _read_metadata(path)
        try:
            with open(path, "rb") as f:
                columns = _columns(f)
        except ijson.JSONError:
            columns = _columns(_Reader(_repaired_lines(path)))
    except FileNotFoundError:
        raise RunDirError(f"{path}: trace missing") from None
    except (OSError, ijson.JSONError, ValueError, TypeError) as exc:
        raise RunDirError(f"{path}: corrupt trace ({exc})") from None
    events = pd.DataFrame(columns)
    for col in ("cat", "name", "ph", "pid", "tid"):
        events[col] = events[col].astype("category")
    for col in ("bytes", "total_allocated", "device_type", "device_id", "correlation", "external_id"):
        events[col] = pd.to_numeric(events[col], errors="coerce")
    events["end"] = events["ts"] + events["dur"]
    return Trace(metadata=metadata, events=events)


def _columns(stream) -> dict[str, list]:
    """The kept events of a trace stream, column by column."""
    columns: dict[str, list] = {k: [] for k in ("cat", "name", "ph", "pid", "tid", "ts", "dur", "input_dims",
                                                "input_types", "concrete_inputs", "bytes", "total_allocated",
                                                "device_type", "device_id", "correlation", "external_id")}
    for event in ijson.items(stream, "traceEvents.item", use_float=True):
        ph = event.get("ph")
        cat = event.get("cat")
        if ph == "X" and cat in _KEPT_CATEGORIES:
            args = event.get("args") or {}
            dur = event.get("dur", 0.0)
        elif ph == "i" and event.get("name") == MEMORY_EVENT:
            args = event.get("args") or {}
            cat, dur = "memory", 0.0
        else:
            continue
        columns["cat"].append(cat)
        columns["name"].append(event.get("name", ""))
        columns["ph"].append(ph)
        columns["pid"].append(str(event.get("pid", "")))
        columns["tid"].append(str(event.get("tid", "")))
        columns["ts"].append(float(event.get("ts", 0.0)))
        columns["dur"].append(float(dur))
        columns["input_dims"].append(args.get("Input Dims"))
        columns["input_types"].append(args.get("Input type"))
        columns["concrete_inputs"].append(args.get("Concrete Inputs"))
        columns["bytes"].append(args.get("Bytes", args.get("bytes")))  # memory events; memcpys
        columns["total_allocated"].append(args.get("Total Allocated"))
        columns["device_type"].append(args.get("Device Type"))
        columns["device_id"].append(args.get("Device Id"))
        columns["correlation"].append(args.get("correlation"))
        columns["external_id"].append(args.get("External id"))
    return columns


_NAME_LINE = re.compile(rb'^(\s*"name": )"(.*)"(,?\s*)$', re.S)


def _repaired_lines(path: Path):
    """The trace's lines with each ``"name"`` value escaped again: kineto writes Python function names
    as they are, and a name holding ``"`` (seen in code run by torch.compile) breaks the JSON."""
    with open(path, "rb") as f:
        for line in f:
            match = _NAME_LINE.match(line)
            if match and b'"' in match.group(2):
                name = json.dumps(match.group(2).decode("utf-8", "replace")).encode()
                line = match.group(1) + name + match.group(3)
            yield line


class _Reader:
    """A file-like ``read(n)`` over an iterator of byte chunks, for ijson."""

    def __init__(self, chunks):
        self._chunks, self._buffer = chunks, b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if n < 0 else n
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

"""Kineto trace file ──► (metadata, events frame), parsed as a stream.

Only the fields the analyses use are kept; a 500 MB trace loads in a fraction of the memory a
``json.load`` would take. Timestamps stay in the trace's microseconds; ``base_unix_us`` turns them
into wall-clock time.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ijson
import pandas as pd

from advisor.errors import RunDirError

#: event categories kept (complete events) and the instant memory events
_KEPT_CATEGORIES = {"cpu_op", "user_annotation", "gpu_user_annotation", "kernel",
                    "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver"}
_MEMORY_EVENT = "[memory]"
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
    columns: dict[str, list] = {k: [] for k in ("cat", "name", "ph", "pid", "tid", "ts", "dur", "input_dims",
                                                "input_types", "concrete_inputs", "bytes", "total_allocated",
                                                "device_type", "device_id", "correlation", "external_id")}
    try:
        metadata = _read_metadata(path)
        with open(path, "rb") as f:
            for event in ijson.items(f, "traceEvents.item", use_float=True):
                ph = event.get("ph")
                cat = event.get("cat")
                if ph == "X" and cat in _KEPT_CATEGORIES:
                    args = event.get("args") or {}
                    dur = event.get("dur", 0.0)
                elif ph == "i" and event.get("name") == _MEMORY_EVENT:
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

"""``advisor analyze``: kineto traces made without advisor become a run directory.

A trace file (``.json`` or ``.json.gz``), or a directory of them such as
``torch.profiler.tensorboard_trace_handler`` writes (one file per rank), is linked (or copied) into a
new run directory marked as imported in ``meta.json``; the lowest rank's trace is the run's trace, the
others lie beside it as ``trace/rank<N>.pt.trace.json[.gz]``. The pipeline then analyses it like any
run: steps are the trace's ``ProfilerStep#N`` marks (time slices when it has none). The user's files
are never changed.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
from pathlib import Path

from advisor import __version__
from advisor.errors import RunDirError
from advisor.rundir import RUNNER_FILE, TRACE_FILE, TRACE_STEPS, new_run_dir, write_meta
from advisor.rundir_io import atomic_write_json

TRACE_SUFFIXES = (".json", ".json.gz")
IMPORTED = "imported"
_HEAD_BYTES = 1 << 16


def find_traces(paths: list[Path]) -> list[Path]:
    """The trace files named by ``paths`` (files, or directories holding them); one line of error for a
    path that is missing or holds no trace."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise RunDirError(f"{path}: no such file or directory")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(TRACE_SUFFIXES))
            if not inside:
                raise RunDirError(f"{path}: no kineto trace (*.json or *.json.gz) in this directory")
            found.extend(inside)
        elif path.name.endswith(TRACE_SUFFIXES):
            found.append(path)
        else:
            raise RunDirError(f"{path}: not a kineto trace (expected a .json or .json.gz file)")
    return found


def rank_of(path: Path) -> int | None:
    """The rank a trace says it was recorded on (kineto's ``distributedInfo``), or None."""
    try:
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as f:
            head = f.read(_HEAD_BYTES)
    except (OSError, EOFError):
        return None
    match = re.search(rb'"distributedInfo"\s*:\s*\{[^{}]*?"rank"\s*:\s*(\d+)', head)
    return int(match.group(1)) if match else None


def ranked(traces: list[Path]) -> list[tuple[int, Path]]:
    """``(rank, trace)`` in rank order: the rank each trace names, else its place among the files."""
    ranks = [rank_of(t) for t in traces]
    if None in ranks or len(set(ranks)) != len(ranks):
        ranks = list(range(len(traces)))
    return sorted(zip(ranks, traces))


def import_traces(paths: list[Path], out: Path | None = None) -> Path:
    """Make a run directory of the traces at ``paths`` (not analysed yet); return it."""
    traces = ranked(find_traces(paths))
    run_dir = new_run_dir(out, _stem(traces[0][1]))
    placed = []
    for i, (rank, source) in enumerate(traces):
        target = run_dir / (TRACE_FILE if i == 0 else f"trace/rank{rank}.pt.trace.json")
        if source.name.endswith(".gz"):
            target = target.with_name(target.name + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(source, target)
        placed.append({"rank": rank, "source": str(source.resolve()), "trace": str(target.relative_to(run_dir))})
    write_meta(run_dir, {
        "advisor_version": __version__,
        "command": ["advisor", "analyze", *map(str, paths)],
        "target": {"kind": "trace", "name": str(traces[0][1]), "args": []},
        "imported": {"ranks": placed},
        "cwd": os.getcwd(),
        "settings": {},
        "collectors": {"torch_profiler": {"available": True, "reason": "imported trace, recorded without advisor"}},
        "started_at": time.time(),
        "outcome": IMPORTED,
    })
    atomic_write_json(run_dir / RUNNER_FILE, {"outcome": IMPORTED, "step_detection": TRACE_STEPS, "warmup": 0,
                                              "environment": _environment(traces[0][1])})
    return run_dir


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".json", ".trace", ".pt"):
        name = name.removesuffix(suffix)
    return name or "trace"


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link when both are on one file system (instant, no space), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _environment(trace: Path) -> dict:
    """What the trace's header says of where it was recorded."""
    from advisor.analysis.trace import read_metadata

    try:
        metadata = read_metadata(trace)
    except (OSError, EOFError, ValueError):
        return {}
    devices = metadata.get("deviceProperties") or []
    return {"host_name": metadata.get("host_name"), "gpus": [d.get("name") for d in devices if isinstance(d, dict)],
            "distributed": metadata.get("distributedInfo"), **({"trace_schema": metadata["schemaVersion"]}
                                                               if "schemaVersion" in metadata else {})}


def describe(meta: dict) -> list[dict]:
    """The imported traces of a run (``rank``, ``source``, ``trace``), empty for a profiled run."""
    return list((meta.get(IMPORTED) or {}).get("ranks") or [])


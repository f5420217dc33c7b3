"""A run directory's raw artifacts ──► :class:`Profile` (pandas frames) ──► the summary dict."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd

from advisor.analysis.call_tree import annotate
from advisor.analysis.distributed import analyse_ranks
from advisor.analysis.hot_ops import DEVICE_CATEGORIES, hot_ops
from advisor.analysis.memory import memory_summary
from advisor.analysis.roofline import roofline, step_roofline
from advisor.analysis.steps import breakdown, slice_table, step_stats, step_table
from advisor.analysis.trace import COLUMNS, Trace, load_trace
from advisor.analysis.utilisation import utilisation
from advisor.collectors.nvml import GPU_SAMPLES_FILE, load_gpu_samples
from advisor.collectors.perf_stat import PERF_STAT_FILE, load_perf_stat
from advisor.collectors.psutil_sampler import SAMPLES_FILE, load_samples
from advisor.errors import RunDirError
from advisor.heap import release_memory
from advisor.rundir import (PEAKS_FILE, RUNNER_FILE, TIME_SLICES, TRACE_STEPS, TRIALS_FILE, WORKLOAD_FILE, load_meta,
                            read_json, trace_path)
SUMMARY_HOT_OPS = 15


@dataclasses.dataclass
class Profile:
    """Everything known about one run, as frames and dicts."""

    run_dir: Path
    meta: dict
    runner: dict
    trace: Trace | None  # with only its device events: the host ones are in ``host``
    #: the host events of the recorded steps (all of them when no step was found), annotated
    host: pd.DataFrame
    steps: pd.DataFrame
    hot_ops: pd.DataFrame
    memory: dict
    utilisation: dict
    perf: pd.DataFrame | None
    peaks: dict | None = None


def _optional(path: Path, loader):
    if not path.exists():
        return None
    try:
        return loader(path)
    except Exception as exc:  # a collector's artifact is damaged: analyse the rest
        raise RunDirError(f"{path}: corrupt artifact ({exc})") from None


@dataclasses.dataclass
class TraceFrames:
    """What the trace gives (the costly part of a run's analysis), and ``key``: the run's record and files it was
    made from (see :func:`trace_key`). Made once the recording is final, it can be taken by :func:`analyse` later."""

    key: tuple
    runner: dict  # the run's record, as the steps were found in it
    trace: Trace | None
    host: pd.DataFrame
    steps: pd.DataFrame
    hot_ops: pd.DataFrame
    window_us: float
    peaks: dict | None


def runner_record(run_dir: Path) -> dict:
    """The child's ``runner.json`` (empty when it wrote none)."""
    path = Path(run_dir) / RUNNER_FILE
    return read_json(path, "runner record") if path.exists() else {}


def trace_key(run_dir: Path, runner: dict) -> tuple:
    """What the trace's frames depend on: how steps were found, and the trace's and the peaks' files as they are."""
    files = []
    for path in (trace_path(run_dir), Path(run_dir) / PEAKS_FILE):
        stat = path.stat() if path is not None and path.exists() else None
        files.append((str(path), stat.st_size, stat.st_mtime_ns) if stat else None)
    return (runner.get("step_detection"), runner.get("warmup"), runner.get("recorded_steps"),
            runner.get("time_slices"), *files)


def trace_frames(run_dir: Path, runner: dict, meta: dict, workers: int = 1) -> TraceFrames:
    """Read the run's trace (decoded by up to ``workers`` processes) and compute its frames: the annotated host events
    of the steps, the steps, the hot ops."""
    key = trace_key(run_dir, runner)
    path = trace_path(run_dir)
    trace = load_trace(path, workers) if path is not None else None
    events = trace.events if trace is not None else pd.DataFrame(columns=[*COLUMNS, "end"])
    device = events[events["cat"].isin(DEVICE_CATEGORIES)]
    if trace is not None:  # the host events live on in ``host``: only the device events stay (memory)
        trace = dataclasses.replace(trace, events=device)
    host = annotate(events, release=True)
    del events
    release_memory()
    steps = pd.DataFrame()
    if runner.get("step_detection") == TRACE_STEPS:  # an imported trace: every step it marks
        steps = step_table(host, 0, sys.maxsize)
        if steps.empty:
            runner = {**runner, "step_detection": TIME_SLICES, "time_slices": 10}
    if runner.get("step_detection") == TIME_SLICES:
        steps, host = slice_table(host, int(runner.get("time_slices") or 10))
    elif runner.get("step_detection") != TRACE_STEPS:
        steps = step_table(host, int(runner.get("warmup", 0) or 0), int(runner.get("recorded_steps", 0) or 0))
    if not steps.empty:
        host = host[host["step"].isin(steps["step"])]
    window_us = float(steps["duration_ms"].sum() * 1000.0) if not steps.empty else _span(host)
    peaks = read_json(run_dir / PEAKS_FILE, "machine peaks") if (run_dir / PEAKS_FILE).exists() else None
    table = roofline(hot_ops(host, device, window_us, cwd=meta.get("cwd")), peaks)
    release_memory()
    return TraceFrames(key=key, runner=runner, trace=trace, host=host, steps=steps, hot_ops=table,
                       window_us=window_us, peaks=peaks)


def analyse(run_dir: Path, runner: dict | None = None, frames: TraceFrames | None = None,
            workers: int = 1) -> Profile:
    """Read a run directory and compute its frames; raise RunDirError for a broken one.

    ``runner`` stands in for ``runner.json`` when the script's process analyses its own window. ``frames``, the
    trace's frames made earlier (:func:`trace_frames`), are taken when the run's record and files still agree; else
    the trace is decoded by up to ``workers`` processes.
    """
    run_dir = Path(run_dir)
    meta = load_meta(run_dir)
    if runner is None:
        runner = runner_record(run_dir)
    if frames is None or frames.key != trace_key(run_dir, runner):
        frames = trace_frames(run_dir, runner, meta, workers)
    trace, host, steps = frames.trace, frames.host, frames.steps
    samples = _optional(run_dir / SAMPLES_FILE, load_samples)
    gpu_samples = _optional(run_dir / GPU_SAMPLES_FILE, load_gpu_samples)
    perf = _optional(run_dir / PERF_STAT_FILE, load_perf_stat)
    window_unix = None
    if trace is not None and not steps.empty:
        base = trace.base_unix_us
        start = steps["start_us"].min()
        window_unix = ((base + start) / 1e6, (base + start + frames.window_us) / 1e6)
    memory = memory_summary(host, samples, gpu_samples)
    release_memory()  # what its passes over all the events let go of, before the findings read them again
    return Profile(
        run_dir=run_dir, meta=meta, runner=frames.runner, trace=trace, host=host, steps=steps,
        hot_ops=frames.hot_ops, peaks=frames.peaks, memory=memory,
        utilisation=utilisation(frames.runner, samples, gpu_samples, window_unix,
                                meta.get("host", {}).get("cpu_count")),
        perf=perf,
    )


def _span(host: pd.DataFrame) -> float:
    ops = host[host["cat"] == "cpu_op"]
    return float(ops["end"].max() - ops["ts"].min()) if not ops.empty else 0.0


def summarize(profile: Profile) -> dict:
    """The run's summary as plain JSON data (what ``--json`` prints and ``summary.json`` holds)."""
    meta, runner = profile.meta, profile.runner
    hot = profile.hot_ops.head(SUMMARY_HOT_OPS)
    stats = step_stats(profile.steps)
    stats["detection"] = runner.get("step_detection")
    stats["warmup"] = runner.get("warmup")
    stats["requested"] = runner.get("steps_requested")
    stats["boundaries_seen"] = runner.get("boundaries")
    stats["limit"] = runner.get("record_limit")
    if stats["detection"] == TIME_SLICES:
        stats["slices"] = _slices(profile.steps)
    step_line = step_roofline(profile.hot_ops, len(profile.steps), stats.get("mean_ms"), profile.peaks)
    skipped = {"trace_skipped": profile.trace.skipped} if profile.trace is not None and profile.trace.skipped else {}
    return {
        "run_dir": str(profile.run_dir),
        "target": meta.get("target"),
        "outcome": meta.get("outcome"),
        "exit_code": meta.get("exit_code"),
        "script_exit_code": meta.get("script_exit_code"),
        "error": meta.get("error"),
        "environment": {**runner.get("environment", {}), "host": meta.get("host", {})},
        "steps": stats,
        "breakdown": breakdown(profile.steps),
        "hot_ops": [_clean(row) for row in hot.to_dict(orient="records")],
        "hardware": {"peaks": profile.peaks},
        "mfu": (step_line or {}).get("mfu"),
        "roofline": step_line,
        "memory": profile.memory,
        "utilisation": profile.utilisation,
        "perf": _perf_summary(profile.perf),
        "collectors": meta.get("collectors", {}),
        "capture": _capture(profile.run_dir),
        "recommendations": _recommendations(profile.run_dir),
        "distributed": analyse_ranks(profile.run_dir, meta["distributed"]) if meta.get("distributed") else None,
        **skipped,
    }


_CAPTURE_FIELDS = ("captured", "reason", "training", "model", "calls_per_step", "captured_steps", "autocast",
                   "between_backward_and_step", "replay")


def _capture(run_dir: Path) -> dict | None:
    """What ``workload.json`` says of the captured step and whether its replay reproduces the script's."""
    path = run_dir / WORKLOAD_FILE
    if not path.exists():
        return None
    workload = read_json(path, "captured workload")
    optimizer = workload.get("optimizer") or {}
    return {**{k: workload.get(k) for k in _CAPTURE_FIELDS}, "optimizer": optimizer.get("class")}


def _slices(steps: pd.DataFrame) -> list[dict]:
    """The time slices as rows: where each starts (ms from the recording's start), its ops and phases."""
    if steps.empty:
        return []
    origin = float(steps["start_us"].min())
    rows = []
    for row in steps.to_dict(orient="records"):
        rows.append({"slice": int(row["step"]), "start_ms": round((row["start_us"] - origin) / 1000.0, 3),
                     **{k: round(float(v), 3) for k, v in row.items() if k.endswith("_ms")},
                     "top_op": row["top_op"] if isinstance(row["top_op"], str) else None})
    return rows


def _recommendations(run_dir: Path) -> list[dict]:
    path = run_dir / TRIALS_FILE
    return read_json(path, "trial results").get("techniques", []) if path.exists() else []


def _perf_summary(perf: pd.DataFrame | None) -> dict | None:
    if perf is None or perf.empty:
        return None
    counted = perf[perf["counted"]]
    return {
        "over": "run",
        "counters": {row.event: row.value for row in counted.itertuples()},
        "not_supported": sorted(perf.loc[~perf["supported"], "event"].tolist()),
    }


def _clean(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, float):
            out[k] = None if pd.isna(v) else round(v, 6)
        elif hasattr(v, "item"):
            out[k] = v.item()
        else:
            out[k] = v
    return out

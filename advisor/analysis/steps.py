"""Step time and where it goes: data loading wait, forward, backward, optimizer, other."""

from __future__ import annotations

import numpy as np
import pandas as pd

from advisor.quartiles import quartiles
from advisor.rundir import (BACKWARD_EVENT, DATALOADER_PREFIX, FORWARD_EVENT, OPTIMIZER_PREFIX,
                             STEP_PREFIX)

PHASES = ("data", "forward", "backward", "optimizer")

# Where two phases overlap (a forward recomputed inside backward, a loader inside forward),
# the one listed first wins.
_PHASE_PRIORITY = ("data", "optimizer", "backward", "forward")


def phase_of(name: str) -> str | None:
    """The step phase a host annotation marks, or None."""
    if name.startswith(DATALOADER_PREFIX):
        return "data"
    if name == FORWARD_EVENT:
        return "forward"
    if name == BACKWARD_EVENT:
        return "backward"
    if name.startswith(OPTIMIZER_PREFIX):
        return "optimizer"
    return None


def step_table(host: pd.DataFrame, first_step: int, recorded_steps: int) -> pd.DataFrame:
    """One row per recorded step: ``step``, ``start_us``, ``duration_ms`` and one ``<phase>_ms`` per phase.

    Only complete steps count: ``first_step <= n < first_step + recorded_steps``.
    """
    annotations = host[host["cat"] == "user_annotation"]
    marks = annotations[annotations["name"].astype(str).str.startswith(STEP_PREFIX)]
    rows = []
    phased = annotations.assign(phase=annotations["name"].astype(str).map(phase_of)).dropna(subset=["phase"])
    by_tid = {tid: _Intervals(group) for tid, group in phased.groupby("tid", observed=True)}
    for name, tid, start, end in zip(marks["name"].astype(str), marks["tid"], marks["ts"], marks["end"]):
        n = int(name[len(STEP_PREFIX):])
        if not first_step <= n < first_step + recorded_steps:
            continue
        inside = by_tid[tid].overlapping(start, end) if tid in by_tid else _NO_INTERVALS
        row = {"step": n, "start_us": start, "duration_ms": (end - start) / 1000.0}
        row.update({f"{p}_ms": v / 1000.0 for p, v in _phase_time(*inside, start, end).items()})
        rows.append(row)
    columns = ["step", "start_us", "duration_ms", *(f"{p}_ms" for p in PHASES)]
    return pd.DataFrame(rows, columns=columns).sort_values("step").reset_index(drop=True)


class _Intervals:
    """One thread's annotations sorted by start, to find those overlapping a span without a scan of all."""

    def __init__(self, frame: pd.DataFrame):
        frame = frame.sort_values("ts", kind="stable")
        self.starts, self.ends = frame["ts"].to_numpy(), frame["end"].to_numpy()
        self.phases = frame["phase"].to_numpy()
        self.longest = float((self.ends - self.starts).max())

    def overlapping(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Starts, ends and phases of the annotations overlapping [start, end)."""
        lo = np.searchsorted(self.starts, start - self.longest, side="left")
        hi = np.searchsorted(self.starts, end, side="left")
        kept = lo + np.flatnonzero(self.ends[lo:hi] > start)
        return self.starts[kept], self.ends[kept], self.phases[kept]


_NO_INTERVALS = (np.empty(0), np.empty(0), np.empty(0, dtype=object))


def slice_table(host: pd.DataFrame, count: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The recorded span cut into ``count`` equal time slices, analysed as steps (a recording that a limit
    ended before any step boundary): the step table's columns (``step`` is the slice's index) plus
    ``ops_ms`` (self time of the ops in the slice) and ``top_op``; and ``host`` with each event's slice as
    its ``step``."""
    columns = ["step", "start_us", "duration_ms", *(f"{p}_ms" for p in PHASES), "ops_ms", "top_op"]
    timed = host[host["cat"].isin(("cpu_op", "user_annotation"))]
    if timed.empty or count < 1:
        return pd.DataFrame(columns=columns), host
    start, end = float(timed["ts"].min()), float(timed["end"].max())
    width = max((end - start) / count, 1e-3)
    index = np.clip(((host["ts"].to_numpy() - start) // width), 0, count - 1).astype(np.int64)
    host = host.assign(step=index)
    ops = host[host["cat"] == "cpu_op"]
    main_tid = ops.groupby("tid", observed=True)["self_us"].sum().idxmax() if not ops.empty else None
    annotations = host[(host["cat"] == "user_annotation") & (host["tid"] == main_tid)]
    phased = annotations.assign(phase=annotations["name"].astype(str).map(phase_of)).dropna(subset=["phase"])
    rows = []
    for i in range(count):
        a, b = start + i * width, start + (i + 1) * width
        inside = phased[(phased["end"] > a) & (phased["ts"] < b)]
        inside = (inside["ts"].to_numpy(), inside["end"].to_numpy(), inside["phase"].to_numpy())
        mine = ops[ops["step"] == i]
        by_op = mine.groupby("name", observed=True)["self_us"].sum()
        row = {"step": i, "start_us": a, "duration_ms": width / 1000.0,
               **{f"{p}_ms": v / 1000.0 for p, v in _phase_time(*inside, a, b).items()},
               "ops_ms": float(mine["self_us"].sum()) / 1000.0,
               "top_op": str(by_op.idxmax()) if not by_op.empty and by_op.max() > 0 else None}
        rows.append(row)
    return pd.DataFrame(rows, columns=columns), host


def _phase_time(starts: np.ndarray, ends: np.ndarray, phases: np.ndarray, start: float,
                end: float) -> dict[str, float]:
    """Microseconds of [start, end) covered by each phase (intervals ``starts``..``ends`` of ``phases``), overlaps
    resolved by priority."""
    totals = {p: 0.0 for p in PHASES}
    if not len(starts):
        return totals
    s = np.clip(starts, start, end)
    e = np.clip(ends, start, end)
    cuts = np.unique(np.concatenate([s, e]))
    for a, b in zip(cuts[:-1], cuts[1:]):
        covering = {phases[k] for k in range(len(s)) if s[k] <= a and e[k] >= b}
        for p in _PHASE_PRIORITY:
            if p in covering:
                totals[p] += b - a
                break
    return totals


def breakdown(steps: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean milliseconds per step and share of all step time, for each phase and ``other``.

    Means and time-weighted shares, so that the parts add up to the step.
    """
    if steps.empty:
        return {}
    total = float(steps["duration_ms"].sum())
    sums = {p: float(steps[f"{p}_ms"].sum()) for p in PHASES}
    sums["other"] = max(total - sum(sums.values()), 0.0)
    n = len(steps)
    return {p: {"ms": round(v / n, 4), "share": round(v / total, 4) if total > 0 else 0.0}
            for p, v in sums.items()}


def step_stats(steps: pd.DataFrame) -> dict:
    """Count, median, spread (interquartile range relative to the median), min and max, in ms."""
    if steps.empty:
        return {"count": 0, "median_ms": None, "mean_ms": None, "min_ms": None, "max_ms": None,
                "iqr_ms": None, "spread": None}
    d = steps["duration_ms"]
    q1, median, q3 = quartiles(d.tolist())
    iqr = q3 - q1
    return {"count": int(len(d)), "median_ms": round(median, 4), "mean_ms": round(float(d.mean()), 4),
            "min_ms": round(float(d.min()), 4), "max_ms": round(float(d.max()), 4),
            "iqr_ms": round(iqr, 4), "spread": round(iqr / median, 4) if median > 0 else None}

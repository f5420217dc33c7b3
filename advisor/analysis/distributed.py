"""A torch.distributed run across its ranks: step time and breakdown per rank, the straggler, collective
time split into transfer and waiting, and how much communication overlaps computation.

Every rank records the same steps (see :mod:`advisor.runner.ranks`), so the n-th collective of step s is
the same collective on every rank (collectives are issued in the same order everywhere, or the program
hangs). Its least duration across the ranks is what it costs by itself (``transfer``); the rest of a
rank's time in it is ``wait``: the rank arrived early and waited for the last one. The straggler is
the rank that is busy (step time less waiting, in collectives and for a core) the longest while the others
wait for it.

Collectives are found where the backend records them: gloo runs each on one of its worker threads
(``gloo:all_reduce`` annotations there; the main thread only enqueues ``c10d::allreduce_``); NCCL runs
them as GPU kernels (``ncclKernel_*``/``ncclDevKernel_*``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from advisor.analysis.call_tree import STEP_PREFIX, annotate
from advisor.analysis.steps import PHASES, breakdown, phase_of, step_stats, step_table
from advisor.analysis.trace import load_trace
from advisor.errors import RunDirError
from advisor.rundir import FACTS_FILE, RUNNER_FILE, TRACE_FILE, rank_dir, read_json

#: a straggler is named when it is busy longer than the median other rank by this share of a step (after the
#: time each waited for a core is taken out: what a busy machine adds, not the rank's own work) ...
STRAGGLER_MIN_SHARE = 0.15
#: ... and the other ranks wait in collectives for at least this share of the difference ...
STRAGGLER_MIN_WAIT_SHARE = 0.5
#: ... and it is the busiest in at least this share of the steps
STRAGGLER_MIN_STEPS = 0.8
_OTHER = "other"


@dataclasses.dataclass
class RankRecording:
    """What one rank left in the run directory."""

    rank: int
    runner: dict
    facts: dict
    host: pd.DataFrame | None  # annotated host events; None without a trace
    device: pd.DataFrame | None  # GPU kernels (NCCL's among them)
    base_unix_us: float = 0.0
    problem: str | None = None  # why its recording could not be read


def load_rank(run_dir: Path, rank: int) -> RankRecording:
    """Read rank ``rank``'s records and trace; a damaged one is kept with its ``problem``."""
    folder = rank_dir(run_dir, rank)
    runner = read_json(folder / RUNNER_FILE, "runner record") if (folder / RUNNER_FILE).exists() else {}
    facts = read_json(folder / FACTS_FILE, "facts") if (folder / FACTS_FILE).exists() else {}
    if not (folder / TRACE_FILE).exists():
        return RankRecording(rank, runner, facts, None, None)
    try:
        trace = load_trace(folder / TRACE_FILE)
    except RunDirError as exc:
        return RankRecording(rank, runner, facts, None, None, problem=str(exc))
    events = trace.events
    device = events[events["cat"] == "kernel"]
    return RankRecording(rank, runner, facts, annotate(events), device, trace.base_unix_us)


def collectives(recording: RankRecording, steps: pd.DataFrame) -> pd.DataFrame:
    """The rank's collectives in its recorded steps: ``step``, ``index`` (order in the step), ``name``,
    ``ts``, ``end``, ``dur`` (µs)."""
    columns = ["step", "index", "name", "ts", "end", "dur"]
    if recording.host is None or steps.empty:
        return pd.DataFrame(columns=columns)
    host = recording.host
    names = host["name"].astype(str)
    gloo = host[(host["cat"] == "user_annotation") & names.str.startswith("gloo:")]
    kernels = recording.device
    nccl = kernels[kernels["name"].astype(str).str.lower().str.startswith("nccl")] if kernels is not None else None
    parts = [f[["name", "ts", "end", "dur"]] for f in (gloo, nccl) if f is not None and not f.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    found = pd.concat(parts)
    found = found.assign(name=found["name"].astype(str)).sort_values("ts")
    starts = steps["start_us"].to_numpy()
    ends = starts + steps["duration_ms"].to_numpy() * 1000.0
    i = np.searchsorted(starts, found["ts"].to_numpy(), side="right") - 1
    inside = (i >= 0) & (found["ts"].to_numpy() < ends[np.clip(i, 0, None)])
    found = found[inside].assign(step=steps["step"].to_numpy()[i[inside]])
    found["index"] = found.groupby("step").cumcount()
    return found[columns].reset_index(drop=True)


def _main_tid(host: pd.DataFrame):
    marks = host[(host["cat"] == "user_annotation") & host["name"].astype(str).str.startswith(STEP_PREFIX)]
    return marks["tid"].iloc[0] if not marks.empty else None


def _union(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s, e in sorted(zip(starts, ends)):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _overlap_us(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total, j = 0.0, 0
    for s, e in a:
        while j < len(b) and b[j][1] <= s:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            total += min(e, b[k][1]) - max(s, b[k][0])
            k += 1
    return total


def _subtract(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of the intervals ``a`` outside the intervals ``b`` (both sorted and disjoint)."""
    out = []
    for s, e in a:
        for bs, be in b:
            if be <= s or bs >= e:
                continue
            if bs > s:
                out.append((s, bs))
            s = max(s, be)
        if s < e:
            out.append((s, e))
    return out


def _compute_intervals(recording: RankRecording, main_tid) -> list[tuple[float, float]]:
    """When the rank computes: on a GPU, its kernels other than NCCL's; on the CPU, the main thread's top-level
    ops, less the time it spends in ``c10d::`` ops (enqueueing a collective, or blocking on one)."""
    kernels = recording.device
    if kernels is not None and not kernels.empty:
        compute = kernels[~kernels["name"].astype(str).str.lower().str.startswith("nccl")]
        return _union(compute["ts"].to_numpy(), compute["end"].to_numpy())
    host = recording.host
    ops = host[(host["cat"] == "cpu_op") & (host["tid"] == main_tid)]
    c10d = ops["name"].astype(str).str.startswith("c10d::")
    top = ops[(ops["op_parent"] == -1) & ~c10d]
    return _subtract(_union(top["ts"].to_numpy(), top["end"].to_numpy()),
                     _union(ops.loc[c10d, "ts"].to_numpy(), ops.loc[c10d, "end"].to_numpy()))


def _phase_at(host: pd.DataFrame, main_tid, times: np.ndarray) -> list[str]:
    """The step phase the main thread is in at each of ``times`` (the innermost phase annotation)."""
    marks = host[(host["cat"] == "user_annotation") & (host["tid"] == main_tid)]
    marks = marks.assign(phase=marks["name"].astype(str).map(phase_of)).dropna(subset=["phase"])
    phases = []
    for t in times:
        covering = marks[(marks["ts"] <= t) & (marks["end"] >= t)]
        phases.append(str(covering.sort_values("ts")["phase"].iloc[-1]) if not covering.empty else _OTHER)
    return phases


@dataclasses.dataclass
class _RankView:
    recording: RankRecording
    steps: pd.DataFrame
    comms: pd.DataFrame
    main_tid: object


def _view(recording: RankRecording) -> _RankView:
    runner = recording.runner
    if recording.host is None:
        return _RankView(recording, pd.DataFrame(columns=["step", "start_us", "duration_ms"]),
                         pd.DataFrame(columns=["step", "index", "name", "ts", "end", "dur"]), None)
    steps = step_table(recording.host, int(runner.get("warmup", 0) or 0), int(runner.get("recorded_steps", 0) or 0))
    return _RankView(recording, steps, collectives(recording, steps), _main_tid(recording.host))


def _waits(views: list[_RankView]) -> None:
    """Add ``transfer`` and ``wait`` (µs) to every rank's collectives, matched by (step, index, name)."""
    usable = [v for v in views if not v.comms.empty]
    for v in views:
        v.comms["transfer"], v.comms["wait"] = v.comms["dur"], 0.0
    if len(usable) < 2:
        return
    keyed = pd.concat([v.comms.assign(rank=v.recording.rank) for v in usable])
    least = keyed.groupby(["step", "index", "name"])["dur"].agg(["min", "count"])
    for v in usable:
        joined = v.comms.join(least, on=["step", "index", "name"])
        everywhere = joined["count"] == len(usable)
        v.comms["transfer"] = np.where(everywhere, joined["min"], v.comms["dur"])
        v.comms["wait"] = v.comms["dur"] - v.comms["transfer"]


def _waiting(comms: pd.DataFrame) -> list[tuple[float, float]]:
    """When the rank waits in collectives: the start of each, as long as it waited (several in flight at once
    count once)."""
    return _union(comms["ts"].to_numpy(), comms["ts"].to_numpy() + comms["wait"].to_numpy())


def per_step(comms: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per recorded step (index): ``comm_ms`` (time with a collective in flight) and ``wait_ms`` (time waiting
    in one)."""
    table = pd.DataFrame({"comm_ms": 0.0, "wait_ms": 0.0}, index=pd.Index(steps["step"], name="step"))
    for step, group in comms.groupby("step"):
        table.loc[step, "comm_ms"] = sum(e - s for s, e in _union(group["ts"].to_numpy(), group["end"].to_numpy()))
        table.loc[step, "wait_ms"] = sum(e - s for s, e in _waiting(group))
    return table / 1000.0


def _rank_summary(view: _RankView) -> dict:
    rec, steps, comms = view.recording, view.steps, view.comms
    runner = rec.runner
    n = max(len(steps), 1)
    times = per_step(comms, steps)
    summary = {"rank": rec.rank, "outcome": runner.get("outcome") if runner else None,
               "error": runner.get("error") if runner else None, "problem": rec.problem,
               "recorded": not steps.empty, "steps": step_stats(steps), "breakdown": breakdown(steps),
               "comm_ms": round(float(times["comm_ms"].sum()) / n, 4),
               "comm_wait_ms": round(float(times["wait_ms"].sum()) / n, 4),
               "comm_transfer_ms": round(float((times["comm_ms"] - times["wait_ms"]).sum()) / n, 4),
               "collectives_per_step": round(len(comms) / n, 2), "overlap": None,
               "ddp": ((rec.facts.get("distributed") or {}).get("ddp") or [None])[0]}
    if not comms.empty and view.main_tid is not None:
        comm = _union(comms["ts"].to_numpy(), comms["end"].to_numpy())
        total = sum(e - s for s, e in comm)
        overlapped = _overlap_us(comm, _compute_intervals(rec, view.main_tid))
        summary["overlap"] = round(float(overlapped / total), 4) if total > 0 else None
        summary["_overlap_us"], summary["_comm_us"] = overlapped, total
    return summary


def _own_phases(view: _RankView) -> dict[str, float]:
    """Mean ms per step of each phase, the waiting in collectives taken out of the phase it fell in."""
    parts = {p: v["ms"] for p, v in breakdown(view.steps).items()}
    comms = view.comms
    if comms.empty or view.main_tid is None:
        return parts
    n = max(len(view.steps), 1)
    waiting = _waiting(comms)
    ends = np.array([e for _, e in waiting])
    for phase, (start, end) in zip(_phase_at(view.recording.host, view.main_tid, ends), waiting):
        parts[phase] = parts.get(phase, 0.0) - (end - start) / 1000.0 / n
    return parts


def _queued(view: _RankView) -> pd.Series | float:
    """Per recorded step, how long the rank's main thread waited for a core (ms); 0 where not recorded."""
    queued = (view.recording.facts.get("distributed") or {}).get("run_queue_ms") or []
    if not isinstance(queued, list) or len(queued) != len(view.steps):
        return 0.0
    return pd.Series(queued, index=view.steps["step"].to_numpy(), dtype=float)


def straggler(views: list[_RankView]) -> dict | None:
    """The rank the others wait for: busy longest (step time less waiting in collectives and for a core), by
    how much (``slower_by``: a share of the step), and in which phase; None when no rank stands out beyond the
    noise."""
    timed = [v for v in views if not v.steps.empty]
    if len(timed) < 2:
        return None
    busy, wait = {}, {}
    for v in timed:
        waits = per_step(v.comms, v.steps)["wait_ms"]
        busy[v.recording.rank] = v.steps.set_index("step")["duration_ms"] - waits - _queued(v)
        wait[v.recording.rank] = float(waits.median())
    slowest = max(busy, key=lambda r: float(busy[r].median()))
    others = [r for r in busy if r != slowest]
    excess = (busy[slowest] - pd.concat([busy[r] for r in others], axis=1).median(axis=1)).dropna()
    step_ms = float(np.median([v.steps["duration_ms"].median() for v in timed]))
    slower_ms = float(excess.median()) if not excess.empty else 0.0
    waited = float(np.median([wait[r] for r in others]))
    if step_ms <= 0 or slower_ms / step_ms < STRAGGLER_MIN_SHARE or waited < STRAGGLER_MIN_WAIT_SHARE * slower_ms \
            or (excess > 0).mean() < STRAGGLER_MIN_STEPS:
        return None
    own = {v.recording.rank: _own_phases(v) for v in timed}
    phases = [*PHASES, _OTHER]
    extra = {p: own[slowest].get(p, 0.0) - float(np.median([own[r].get(p, 0.0) for r in others])) for p in phases}
    return {"rank": slowest, "slower_by": round(slower_ms / step_ms, 4), "slower_by_ms": round(slower_ms, 4),
            "phase": max(extra, key=extra.get), "others_wait_ms": round(waited, 4)}


def _timeline(views: list[_RankView]) -> list[dict]:
    """Every rank's recorded steps on one clock: start (ms from the earliest), duration and waiting."""
    starts = [v.recording.base_unix_us + float(v.steps["start_us"].min()) for v in views if not v.steps.empty]
    if not starts:
        return []
    origin = min(starts)
    rows = []
    for v in views:
        waits = per_step(v.comms, v.steps)["wait_ms"]
        for row in v.steps.itertuples():
            rows.append({"rank": v.recording.rank, "step": int(row.step),
                         "start_ms": round((v.recording.base_unix_us + row.start_us - origin) / 1000.0, 3),
                         "duration_ms": round(float(row.duration_ms), 3),
                         "wait_ms": round(float(waits.get(row.step, 0.0)), 3)})
    return rows


def analyse_ranks(run_dir: Path, launch: dict) -> dict:
    """The ``distributed`` part of a run's summary, from every rank's records in ``run_dir``; ``launch`` is
    ``meta.json``'s ``distributed``: ``world_size``, ``launcher`` and each rank's ``outcome`` and ``error``."""
    world_size = int(launch.get("world_size") or 0)
    views = [_view(load_rank(run_dir, r)) for r in range(world_size)]
    _waits(views)
    ranks = [_rank_summary(v) for v in views]
    for entry, said in zip(ranks, launch.get("ranks") or []):
        entry.update(outcome=said.get("outcome") or entry["outcome"], error=said.get("error") or entry["error"])
    comm_us = sum(r.pop("_comm_us", 0.0) for r in ranks)
    overlapped = sum(r.pop("_overlap_us", 0.0) for r in ranks)
    facts = [v.recording.facts.get("distributed") or {} for v in views]
    medians = [r["steps"]["median_ms"] for r in ranks if r["steps"]["median_ms"]]
    step_ms = float(np.median(medians)) if medians else None
    comm = [r["comm_ms"] for r in ranks if r["recorded"]]
    wait = [r["comm_wait_ms"] for r in ranks if r["recorded"]]
    return {
        "world_size": world_size,
        "backend": next((f["backend"] for f in facts if f.get("backend")), None),
        "launcher": launch.get("launcher") or {},
        "ranks": ranks,
        "recorded_ranks": [r["rank"] for r in ranks if r["recorded"]],
        "step_median_ms": round(step_ms, 4) if step_ms else None,
        "comm_share": round(float(np.mean(comm)) / step_ms, 4) if comm and step_ms else None,
        "wait_share": round(float(np.mean(wait)) / step_ms, 4) if wait and step_ms else None,
        "overlap": round(float(overlapped / comm_us), 4) if comm_us > 0 else None,
        "straggler": straggler(views),
        "timeline": _timeline(views),
    }

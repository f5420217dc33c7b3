"""One run's analysis, in one direction: raw artifacts → :class:`~advisor.analysis.profile.Profile` →
the techniques' estimates (a run that measures none; :mod:`advisor.estimates`) → findings → ``summary.json`` and
the tables beside it. Used by ``advisor profile``, ``advisor show``, the reports, the TUI and the runner's trials;
:mod:`advisor.analysis` itself writes nothing, and :mod:`advisor.store` only reads.
"""

from __future__ import annotations

from pathlib import Path

from advisor.analysis.compare import compare
from advisor.analysis.profile import TraceFrames, analyse, runner_record, summarize, trace_frames
from advisor.analysis.ranks import rank_steps
from advisor.diagnosis import diagnose
from advisor.errors import RunDirError
from advisor.estimates import estimate_run
from advisor.imported import describe
from advisor.peaks import usable_cpus
from advisor.rundir import HOT_OPS_FILE, SUMMARY_FILE, WINDOW_STEPS_FILE, load_meta
from advisor.rundir_io import atomic_write_csv, atomic_write_json
from advisor.store import hot_ops_table, read_summary


def analyse_run(run_dir: Path, frames: TraceFrames | None = None, workers: int | None = None) -> dict:
    """Analyse the run's raw artifacts and write ``summary.json`` (with the findings), ``hot_ops.csv`` and
    ``window_steps.csv`` into it, and ``trials.json`` for a run that asked for estimates only; returns the summary.
    ``frames`` (see :func:`recording_frames`) are taken when the run's record still agrees with them; else a large
    trace is decoded by up to ``workers`` processes (default: one per CPU this process may use, the script having
    ended)."""
    profile = analyse(Path(run_dir), frames=frames, workers=usable_cpus() if workers is None else workers)
    summary = summarize(profile)
    estimated = estimate_run(profile.run_dir, summary)
    if estimated is not None:
        summary["recommendations"] = estimated
    summary.update(diagnose(profile, summary))
    ranks = describe(profile.meta)
    if len(ranks) > 1:
        summary["ranks"] = per_rank(profile.run_dir, ranks, summary)
    atomic_write_csv(profile.run_dir / HOT_OPS_FILE, profile.hot_ops)
    atomic_write_csv(profile.run_dir / WINDOW_STEPS_FILE, profile.steps)
    atomic_write_json(profile.run_dir / SUMMARY_FILE, summary)
    return summary


def analyse_recording(run_dir: Path, runner: dict) -> dict:
    """The summary of what the child recorded, read before ``runner.json`` exists (``runner`` stands in for it);
    without findings, and saved nowhere: what the runner's trials estimate from."""
    return summarize(analyse(Path(run_dir), runner=runner))


def recording_summary(run_dir: Path, runner: dict) -> tuple[dict, TraceFrames]:
    """:func:`analyse_recording`'s summary, made outside the child, and the trace's frames it was made from (for
    :func:`analyse_run` to take)."""
    run_dir = Path(run_dir)
    frames = trace_frames(run_dir, runner, load_meta(run_dir))
    return summarize(analyse(run_dir, runner=runner, frames=frames)), frames


def recording_frames(run_dir: Path) -> TraceFrames:
    """The trace's frames of a run whose child has saved its record, for :func:`analyse_run` to take."""
    run_dir = Path(run_dir)
    return trace_frames(run_dir, runner_record(run_dir), load_meta(run_dir))


def per_rank(run_dir: Path, ranks: list[dict], summary: dict) -> list[dict]:
    """Each rank's steps (``rank``, ``trace``, ``steps``, ``skipped``); the first is the run's own."""
    rows = [{"rank": ranks[0]["rank"], "trace": ranks[0]["trace"], "steps": summary["steps"],
             "skipped": summary.get("trace_skipped", [])}]
    for entry in ranks[1:]:
        try:
            found = rank_steps(Path(run_dir) / entry["trace"])
        except RunDirError as exc:  # one rank's trace unreadable: the others still count
            found = {"steps": None, "skipped": [str(exc)]}
        rows.append({"rank": entry["rank"], "trace": entry["trace"], **found})
    return rows


def summary_of(run_dir: Path) -> dict:
    """The run's summary: ``summary.json``, else analysed now (and saved)."""
    summary = read_summary(run_dir)
    if summary is None:
        analyse_run(run_dir)
        summary = read_summary(run_dir)
    return summary


def compare_runs(a: dict, b: dict) -> dict:
    """:func:`~advisor.analysis.compare.compare` of two summaries over every op of both runs, not only
    the summaries' top ops (an op just out of one run's top would look gone from it)."""
    return compare({**a, "hot_ops": hot_ops_table(a)}, {**b, "hot_ops": hot_ops_table(b)})

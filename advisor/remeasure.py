"""Measure (again) one technique of a saved run and save its new record into that run.

The captured workload lives only in the script's process, so the run's script is profiled again
(same target, arguments, working directory, warmup and steps) into a temporary run directory with
only that technique and no pairs; its record then replaces the old one in ``trials.json`` and in
the summary's recommendations, projected onto the original run's step.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable

from advisor.errors import AdvisorError, ScriptNotFound
from advisor.rundir import SUMMARY_FILE, TRIALS_FILE, WORKLOAD_FILE, load_meta, read_json
from advisor.rundir_io import atomic_write_json


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a re-measurement is doing; ``fraction`` is None while the length of the work is unknown."""

    text: str
    fraction: float | None


def target_script(meta: dict) -> Path | None:
    """The run's script as an absolute path (None for a module target); raise when it is gone."""
    target = meta.get("target") or {}
    if target.get("kind") == "module":
        return None
    path = Path(target.get("name", ""))
    if not path.is_absolute():
        path = Path(meta.get("cwd") or ".") / path
    if not path.is_file():
        raise ScriptNotFound(f"the run's script {path} no longer exists; it cannot be measured again")
    return path


def remeasure(run_dir: Path, technique: str, on_progress: Callable[[Progress], None] = lambda p: None,
              budget_s: float = 60.0) -> dict:
    """Profile the run's script again with only ``technique`` measured; save and return its new record."""
    from advisor.options import ProfileOptions
    from advisor.session import profile

    run_dir = Path(run_dir)
    meta = load_meta(run_dir)
    target = meta.get("target") or {}
    script = target_script(meta)
    settings = meta.get("settings") or {}
    warmup, steps = int(settings.get("warmup") or 5), int(settings.get("steps") or 10)
    total = warmup + steps

    def update(steps_done: int, mode, window_done: bool, elapsed: float, activity: str | None) -> None:
        if activity or window_done:
            on_progress(Progress(activity or f"measuring {technique}", None))
        else:
            on_progress(Progress(f"running the script: step {steps_done}/{total}", min(steps_done / total, 1.0)))

    with tempfile.TemporaryDirectory(prefix="advisor-remeasure-") as tmp:
        options = ProfileOptions(
            target=str(script) if script else str(target.get("name")), args=list(target.get("args") or []),
            is_module=script is None, warmup=warmup, steps=steps, out=Path(tmp) / "run",
            techniques=[technique], measure=True, pairs="none", trial_budget=budget_s,
            cwd=Path(meta["cwd"]) if meta.get("cwd") and Path(meta["cwd"]).is_dir() else None,
            command_line=("advisor", "remeasure", str(run_dir), technique))
        on_progress(Progress("starting the script", 0.0))
        result = profile(options, on_update=update)
        trials_path = result.run_dir / TRIALS_FILE
        if not trials_path.exists():
            raise result.error or AdvisorError(f"the script ended before {technique} could be measured")
        fresh = read_json(trials_path, "trial results").get("techniques", [])
    record = next((r for r in fresh if r.get("technique") == technique), None)
    if record is None:
        raise AdvisorError(f"no installed technique is named {technique}")
    return save_record(run_dir, {**record, "measured_at": time.time()})


def save_record(run_dir: Path, record: dict) -> dict:
    """Put ``record`` in place of the run's record of the same technique (projected onto the run's own
    step), in ``trials.json`` and the summary's recommendations, atomically; return it."""
    from advisor.ranking import project, rank

    trials_path = run_dir / TRIALS_FILE
    trials = read_json(trials_path, "trial results") if trials_path.exists() else {"measured": True}
    summary_path = run_dir / SUMMARY_FILE
    summary = read_json(summary_path, "summary") if summary_path.exists() else None
    workload_path = run_dir / WORKLOAD_FILE
    if summary is not None and workload_path.exists():  # else keep the projection onto the new run's step
        project([record], summary, bool(read_json(workload_path, "workload").get("training")))
    records = [r for r in trials.get("techniques", []) if r.get("technique") != record["technique"]]
    trials["techniques"] = rank([*records, record])
    trials["measured"] = trials.get("measured") or record.get("measured") is not None
    atomic_write_json(trials_path, trials)
    if summary is not None:
        summary["recommendations"] = trials["techniques"]
        atomic_write_json(summary_path, summary)
    return record

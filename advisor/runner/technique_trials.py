"""After the window: ask every technique plugin about the run and measure those that apply on the captured step;
``trials.json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from advisor.rundir import HARDWARE_FILE, WORKLOAD_FILE, read_json
from advisor.rundir_io import atomic_write_json


@dataclasses.dataclass
class TrialSettings:
    names: list[str] | None
    measure: bool
    blocked: tuple[str, ...]
    budget_s: float
    pairs: str = "gaining"  # "gaining": pairs of the best singles that gained; "all"; "none"


def run_trials(run_dir: Path, runner_record: dict, workload, not_reproduced: str | None, settings: TrialSettings,
               report: Callable[..., None]) -> None:
    """Ask, estimate, measure and rank every technique; write ``trials.json``. ``report(event=...)`` tells the
    session which trial runs. Trials that measure nothing only note the machine (``hardware.json``): advisor's
    process makes their estimates once the run is analysed (:func:`advisor.estimates.estimate_run`)."""
    from advisor.trials import hardware

    if not settings.measure:
        machine = hardware(workload)
        atomic_write_json(run_dir / HARDWARE_FILE, {**machine, "cpu_flags": sorted(machine["cpu_flags"])})
        return
    from advisor.early_analysis import ask_for_summary
    from advisor.estimates import NOT_MEASURED, asked_techniques, save_trials
    from advisor.ranking import pairs_worth_measuring
    from advisor.technique import Context
    from advisor.trials import trial

    served_summary = ask_for_summary(run_dir, runner_record, report)
    # what needs no summary is done while advisor's process analyses the recording
    techniques, records = asked_techniques(settings.blocked, settings.names)
    workload_info = read_json(run_dir / WORKLOAD_FILE, "workload")
    if workload is not None and not_reproduced is None:
        workload_info = {**workload_info, "batch_that_fits": _batch_that_fits(workload)}
    machine = hardware(workload)
    summary = served_summary()
    analysed_by = "advisor" if summary is not None else "runner"
    if summary is None:
        from advisor.pipeline import analyse_recording

        summary = analyse_recording(run_dir, runner_record)
    machine["peaks"] = (summary.get("hardware") or {}).get("peaks")
    context = Context(summary=summary, workload=workload_info, hardware=machine)
    for i, technique in enumerate(techniques):
        report(event="trial", name=technique.name, n=i + 1, of=len(techniques))
        record = trial(technique, context, workload, workload is not None, settings.budget_s,
                       not_reproduced=not_reproduced)
        if workload is None and record.get("status") == NOT_MEASURED:
            record["status"] = f"not measured: no captured workload ({workload_info.get('reason')})"
        records.append(record)
    measure = workload is not None and not_reproduced is None
    if measure and settings.pairs != "none":
        everything = settings.pairs == "all"
        pairs = pairs_worth_measuring(records, {t.name: t for t in techniques}, top=None if everything else 3,
                                      threshold=0.0 if everything else 1.05)
        for i, pair in enumerate(pairs):
            report(event="trial", name=pair.name, n=i + 1, of=0)
            records.append({**trial(pair, context, workload, True, settings.budget_s), "pair": True})
    save_trials(run_dir, records, techniques, summary, workload_info, measured=measure, analysed_by=analysed_by)


def _batch_that_fits(workload) -> dict:
    """The largest batch that fits (see :func:`advisor.peak_memory.batch_that_fits`), or why it is not known."""
    from advisor.peak_memory import batch_that_fits

    try:
        return batch_that_fits(workload)
    except Exception as exc:  # advisor's measurement; the trials go on without it
        return {"why": f"{type(exc).__name__}: {exc}"}

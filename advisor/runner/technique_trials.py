"""After the window: ask every technique plugin about the run and measure those that apply on the captured step;
``trials.json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from advisor.rundir import TRIALS_FILE, WORKLOAD_FILE, read_json
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
    session which trial runs."""
    from advisor.early_analysis import ask_for_summary
    from advisor.plugins import collect, plugin_manager
    from advisor.ranking import pairs_worth_measuring, project, rank, replayed_share
    from advisor.roofcheck import flag_suspects
    from advisor.technique import Context, Technique
    from advisor.trials import broken_plugin, hardware, trial

    served_summary = ask_for_summary(run_dir, runner_record, report)
    # what needs no summary is done while advisor's process analyses the recording
    pm = plugin_manager(settings.blocked)
    records = [broken_plugin(plugin, f"failed to load: {error}") for plugin, error in pm.load_errors.items()]
    provided, problems = collect(pm.hook.advisor_techniques, Technique, config={"techniques": settings.names})
    records.extend(broken_plugin(plugin, why) for plugin, why in problems)
    workload_info = read_json(run_dir / WORKLOAD_FILE, "workload")
    if settings.measure and workload is not None and not_reproduced is None:
        workload_info = {**workload_info, "batch_that_fits": _batch_that_fits(workload)}
    machine = hardware(workload)
    summary = served_summary()
    analysed_by = "advisor" if summary is not None else "runner"
    if summary is None:
        from advisor.pipeline import analyse_recording

        summary = analyse_recording(run_dir, runner_record)
    machine["peaks"] = (summary.get("hardware") or {}).get("peaks")
    context = Context(summary=summary, workload=workload_info, hardware=machine)
    techniques = [t for t in provided if settings.names is None or t.name in settings.names]
    measure = settings.measure and workload is not None
    for i, technique in enumerate(techniques):
        report(event="trial", name=technique.name, n=i + 1, of=len(techniques))
        record = trial(technique, context, workload, measure, settings.budget_s, not_reproduced=not_reproduced)
        if settings.measure and workload is None and record.get("status") == "not measured":
            record["status"] = f"not measured: no captured workload ({workload_info.get('reason')})"
        records.append(record)
    measure = measure and not_reproduced is None
    if measure and settings.pairs != "none":
        everything = settings.pairs == "all"
        pairs = pairs_worth_measuring(records, {t.name: t for t in techniques}, top=None if everything else 3,
                                      threshold=0.0 if everything else 1.05)
        for i, pair in enumerate(pairs):
            report(event="trial", name=pair.name, n=i + 1, of=0)
            records.append({**trial(pair, context, workload, True, settings.budget_s), "pair": True})
    training = bool(workload_info.get("training"))
    project(records, summary, training)
    share = replayed_share(summary, training)
    flag_suspects(records, summary, share, {t.name for t in techniques if getattr(t, "changes_flops", False)})
    atomic_write_json(run_dir / TRIALS_FILE, {"measured": measure, "analysed_by": analysed_by, "replayed_share": share,
                                              "batch_that_fits": workload_info.get("batch_that_fits"),
                                              "techniques": rank(records)})


def _batch_that_fits(workload) -> dict:
    """The largest batch that fits (see :func:`advisor.peak_memory.batch_that_fits`), or why it is not known."""
    from advisor.peak_memory import batch_that_fits

    try:
        return batch_that_fits(workload)
    except Exception as exc:  # advisor's measurement; the trials go on without it
        return {"why": f"{type(exc).__name__}: {exc}"}

"""Technique estimates: every technique plugin asked whether it applies to a run and what it would gain, from the
run's summary, its captured step's description and the machine the script ran on; nothing runs a model here.

The runner's trials start from these records before they measure (:mod:`advisor.trials`). A run that measures
nothing (``--no-measure``) gets them from advisor's own process once the run is analysed (:func:`estimate_run`):
the script's process then only notes the machine as torch sees it (``hardware.json``), and neither waits for the
recording's analysis nor shares the machine with it. No torch here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from advisor.rundir import HARDWARE_FILE, TRIALS_FILE, WORKLOAD_FILE, load_meta, read_json
from advisor.rundir_io import atomic_write_json
from advisor.technique import Context, Estimate, Technique, Verdict

#: a record's status when the technique applies and was estimated, and nothing measured it
NOT_MEASURED = "not measured"


def checked(value, kind: type, what: str):
    """``value`` when it is a ``kind``; else the TypeError that makes its plugin broken."""
    if not isinstance(value, kind):
        raise TypeError(f"{what} returned {type(value).__name__}, not {kind.__name__}")
    return value


def broken_plugin(name: str, why: str) -> dict:
    """The record of a plugin whose techniques could not even be asked."""
    return {"technique": name, "status": f"broken plugin: {why}", "applies": None, "reason": None,
            "estimate": None, "measured": None}


def estimate(technique: Technique, context: Context) -> dict:
    """One technique's record before anything runs: verdict, estimate and snippet, with the status
    ``not applicable``, ``broken: <error>`` (it raised or answered the wrong type) or :data:`NOT_MEASURED`."""
    record: dict = {"technique": getattr(technique, "name", type(technique).__name__),
                    "title": getattr(technique, "title", ""), "snippet": getattr(technique, "snippet", ""),
                    "applies": None, "reason": None, "estimate": None, "measured": None}
    try:
        verdict = checked(technique.applies_to(context), Verdict, "applies_to")
        record.update(applies=verdict.applies, reason=verdict.reason)
        if not verdict.applies:
            record["status"] = "not applicable"
            return record
        record["estimate"] = dataclasses.asdict(checked(technique.estimate(context), Estimate, "estimate"))
        if hasattr(technique, "snippet_for"):
            record["snippet"] = checked(technique.snippet_for(context), str, "snippet_for")
    except Exception as exc:  # a broken plugin is reported, the others go on
        record["status"] = f"broken: {type(exc).__name__}: {exc}"
        return record
    record["status"] = NOT_MEASURED
    return record


def asked_techniques(blocked: tuple[str, ...], names: list[str] | None) -> tuple[list[Technique], list[dict]]:
    """The installed techniques (only those in ``names``, when given), and the records of the plugins that failed
    to load or to answer."""
    from advisor.plugins import collect, plugin_manager

    pm = plugin_manager(blocked)
    broken = [broken_plugin(plugin, f"failed to load: {error}") for plugin, error in pm.load_errors.items()]
    provided, problems = collect(pm.hook.advisor_techniques, Technique, config={"techniques": names})
    broken.extend(broken_plugin(plugin, why) for plugin, why in problems)
    return [t for t in provided if names is None or t.name in names], broken


def save_trials(run_dir: Path, records: list[dict], techniques: list[Technique], summary: dict, workload: dict,
                measured: bool, analysed_by: str) -> list[dict]:
    """Project the records onto the run's whole step, flag gains above the machine's roof, rank them and write
    ``trials.json``; the ranked records."""
    from advisor.ranking import project, rank, replayed_share
    from advisor.roofcheck import flag_suspects

    training = bool(workload.get("training"))
    project(records, summary, training)
    share = replayed_share(summary, training)
    flag_suspects(records, summary, share, {t.name for t in techniques if getattr(t, "changes_flops", False)})
    ranked = rank(records)
    atomic_write_json(Path(run_dir) / TRIALS_FILE, {
        "measured": measured, "analysed_by": analysed_by, "replayed_share": share,
        "batch_that_fits": workload.get("batch_that_fits"), "techniques": ranked})
    return ranked


def estimate_run(run_dir: Path, summary: dict) -> list[dict] | None:
    """The estimates of a run whose script asked for them without measuring (its ``hardware.json`` says so), made
    from ``summary`` and written to ``trials.json``; None for any other run, or one that has them already."""
    run_dir = Path(run_dir)
    if (run_dir / TRIALS_FILE).exists() or not (run_dir / HARDWARE_FILE).exists():
        return None
    settings = load_meta(run_dir).get("settings") or {}
    machine = read_json(run_dir / HARDWARE_FILE, "machine description")
    machine = {**machine, "cpu_flags": set(machine.get("cpu_flags") or ()),
               "peaks": (summary.get("hardware") or {}).get("peaks")}
    workload = read_json(run_dir / WORKLOAD_FILE, "workload") if (run_dir / WORKLOAD_FILE).exists() else {}
    techniques, records = asked_techniques(tuple(settings.get("blocked_plugins") or ()), settings.get("techniques"))
    context = Context(summary=summary, workload=workload, hardware=machine)
    records.extend(estimate(technique, context) for technique in techniques)
    return save_trials(run_dir, records, techniques, summary, workload, measured=False, analysed_by="advisor")

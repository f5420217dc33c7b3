"""Findings: every findings plugin asked about one analysed run, the answers ranked for the summary.

Runs in advisor's own process as part of the analysis (:func:`advisor.pipeline.analyse_run`).
The plugins blocked with ``-p no:NAME`` and the finding ids dropped with ``--no-finding ID`` are read
from the run's settings in ``meta.json``, so that ``advisor show`` re-analyses a run the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from advisor.analysis.hot_ops import DEVICE_CATEGORIES
from advisor.finding import Finding, RunFacts
from advisor.plugins import collect, plugin_manager
from advisor.rundir import FACTS_FILE, WORKLOAD_FILE, read_json

if TYPE_CHECKING:
    from advisor.analysis.profile import Profile

def run_facts(profile: Profile, summary: dict) -> RunFacts:
    """What the findings plugins are given: the recorded steps' events, and the run's records."""
    host = profile.host
    events = profile.trace.events if profile.trace is not None else None
    if events is None:
        device = pd.DataFrame(columns=["cat", "name", "ts", "dur", "bytes", "correlation"])
    else:
        launched = host.loc[host["correlation"].notna(), "correlation"]
        device = events[events["cat"].isin(DEVICE_CATEGORIES) & events["correlation"].isin(launched)]
    return RunFacts(summary=summary, host=host, device=device, meta=profile.meta, runner=profile.runner,
                    workload=_record(profile, WORKLOAD_FILE, "workload"), facts=_record(profile, FACTS_FILE, "facts"))


def _record(profile: Profile, name: str, what: str) -> dict:
    path = profile.run_dir / name
    return read_json(path, what) if path.exists() else {}


def diagnose(profile: Profile, summary: dict) -> dict:
    """``findings`` (ranked by severity, as JSON data) and ``broken_plugins`` (findings plugins that failed)."""
    settings = profile.meta.get("settings") or {}
    dropped = set(settings.get("no_findings") or ())
    pm = plugin_manager(tuple(settings.get("blocked_plugins") or ()))
    run = run_facts(profile, summary)
    answers, problems = collect(pm.hook.advisor_findings, Finding, run=run)
    findings = [f for f in answers if f.id not in dropped]
    broken = [_broken(plugin, why) for plugin, why in problems]
    records = [_with_measurement(f.to_json(), summary.get("recommendations") or []) for f in findings]
    return {"findings": sorted(records, key=lambda r: -r["severity"]), "broken_plugins": broken}


def _broken(plugin: str, why: str) -> dict:
    return {"plugin": plugin, "hook": "advisor_findings", "error": why}


def _with_measurement(record: dict, recommendations: list[dict]) -> dict:
    """The finding's measured effect taken from its technique's trial in this run, when it was measured."""
    if record["measured"] is not None or record["technique"] is None:
        return record
    for trial in recommendations:
        measured = trial.get("measured") or {}
        if trial.get("technique") == record["technique"] and measured.get("speedup"):
            record["measured"] = {"by": f"technique {record['technique']}", "speedup": measured["speedup"],
                                  "spread": measured.get("spread"),
                                  "whole_step_speedup": measured.get("projected_speedup")}
            break
    return record

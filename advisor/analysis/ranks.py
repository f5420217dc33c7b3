"""Each rank of a run with one trace per rank, analysed for its steps (the lowest rank's trace is the
run's own, analysed in full): the per-rank part that a merged multi-rank analysis builds on."""

from __future__ import annotations

import sys
from pathlib import Path

from advisor.analysis.call_tree import annotate
from advisor.analysis.steps import step_stats, step_table
from advisor.analysis.trace import load_trace


def rank_steps(trace: Path) -> dict:
    """``steps`` (count, median, spread, ... of every step the trace marks) and ``skipped`` (what of the
    trace could not be read) of one rank's trace."""
    loaded = load_trace(trace)
    steps = step_table(annotate(loaded.events), 0, sys.maxsize)
    return {"steps": step_stats(steps), "skipped": loaded.skipped}

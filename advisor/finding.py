"""The public types of findings plugins: a performance mistake seen in one run, and that run.

A findings plugin implements :func:`advisor.hookspecs.advisor_findings`: given the :class:`RunFacts`
of an analysed run it returns :class:`Finding` objects, each backed by evidence from that run.
A plugin only reads the run; it changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from advisor.format import display_source
# the annotations a finding may look inside with Run.inside (see advisor.rundir)
from advisor.rundir import BACKWARD_EVENT, FORWARD_EVENT, ZERO_GRAD_EVENT  # noqa: F401

if TYPE_CHECKING:  # the plugins load before the script is launched; the frames come after it
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class Finding:
    """One mistake, with what shows it in this run and how to fix it.

    :param id: stable identifier of the rule (``advisor profile --no-finding ID`` drops it).
    :param title: one line for people.
    :param evidence: what in this run shows it: numbers, op names, the line of the user's code.
    :param severity: share of the step's time (or of the memory) at stake, 0..1: what the fix acts
        on, not a promised gain. Findings are ranked by it.
    :param fix: the change, as a code snippet.
    :param technique: the name of the technique that measures the fix, where there is one.
    :param measured: the measured effect where known (filled from that technique's trial when it ran).
    """

    id: str
    title: str
    evidence: str
    severity: float
    fix: str
    technique: str | None = None
    measured: dict | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "severity": round(min(max(float(self.severity), 0.0), 1.0), 4),
                "evidence": self.evidence, "fix": self.fix, "technique": self.technique, "measured": self.measured}


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """One analysed run as findings plugins see it; read it, never change it.

    :param summary: the run's summary (the dict ``advisor profile --json`` prints, without findings).
    :param host: the host events of the recorded steps, one row per event, the operator calls first (each kind
        of event by thread and start): ``cat`` (``cpu_op``, ``user_annotation``, ``cuda_runtime``,
        ``cuda_driver``, ``memory``), ``name``, ``tid``, ``ts``, ``end``, ``dur``, ``self_us`` (µs), ``step``,
        ``call_site`` (``file:line`` of the user's code or None), ``input_dims``, ``input_types``,
        ``concrete_inputs``, ``op_parent`` (row label of the enclosing op, -1 at top level) and ``correlation``
        (links a CUDA runtime call to its GPU work).
    :param device: the GPU work those steps launched (``cat``: ``kernel``, ``gpu_memcpy``,
        ``gpu_memset``; ``name``, ``ts``, ``dur``, ``bytes``, ``correlation``); empty without a GPU.
    :param meta: ``meta.json``; ``runner``: ``runner.json``; ``workload``: ``workload.json`` and
        ``facts``: ``facts.json`` (what the script's process saw that a trace cannot show), ``{}`` when absent.
    """

    summary: dict
    host: pd.DataFrame
    device: pd.DataFrame
    meta: dict
    runner: dict
    workload: dict
    facts: dict

    @functools.cached_property
    def ops(self) -> pd.DataFrame:
        """The operator calls (``cat == "cpu_op"``) of :attr:`host`."""
        from advisor.analysis.call_tree import operator_rows

        return operator_rows(self.host)

    @property
    def steps(self) -> int:
        """Recorded steps (at least 1, so that counts per step can always be taken)."""
        return max(int((self.summary.get("steps") or {}).get("count") or 0), 1)

    @property
    def window_us(self) -> float:
        """Wall time of the recorded steps, in µs."""
        steps = self.summary.get("steps") or {}
        return float(steps.get("mean_ms") or 0.0) * 1000.0 * self.steps

    @property
    def gpu(self) -> bool:
        """True when the recorded steps ran work on a GPU."""
        return not self.device.empty

    def phase_share(self, *phases: str) -> float:
        """Share of the step in these phases of the breakdown (``data``, ``forward``, ``backward``,
        ``optimizer``, ``other``)."""
        parts = self.summary.get("breakdown") or {}
        return sum((parts.get(p) or {}).get("share", 0.0) for p in phases)

    def time_share(self, microseconds: float) -> float:
        """``microseconds`` as a share of the recorded steps' wall time."""
        return min(microseconds / self.window_us, 1.0) if self.window_us > 0 else 0.0

    def source(self, rows: pd.DataFrame) -> str:
        """The line of the user's code most of ``rows`` come from (shortened), or ``""``."""
        sites = rows["call_site"].dropna()
        return self.source_of(sites.value_counts().index[0]) if not sites.empty else ""

    def source_of(self, site: str | None) -> str:
        """A ``file:line`` of the user's code, relative to the run's working directory when inside it."""
        return display_source(site, self.meta.get("cwd"))

    def inside(self, rows: pd.DataFrame, annotation: str) -> pd.Series:
        """For each of ``rows``: whether it runs inside a host annotation whose name starts with
        ``annotation`` (``advisor::forward``, ``advisor::backward``, ``Optimizer.zero_grad``, ...)."""
        import numpy as np
        import pandas as pd

        annotations = self.host[self.host["cat"] == "user_annotation"]
        marks = annotations[annotations["name"].astype(str).str.startswith(annotation)]
        result = pd.Series(False, index=rows.index)
        for tid, group in marks.groupby("tid", observed=True):
            mine = rows["tid"] == tid
            if not mine.any():
                continue
            group = group.sort_values("ts")
            starts, ends = group["ts"].to_numpy(), group["end"].to_numpy()
            ts = rows.loc[mine, "ts"].to_numpy()
            i = np.searchsorted(starts, ts, side="right") - 1
            result[mine] = (i >= 0) & (ts < ends[np.clip(i, 0, None)])
        return result

"""Nesting of host-side events: self time, the enclosing op, step and call site of every event.

The profiler writes complete events (start, duration) per thread; nesting is recovered by one sweep
per thread over events sorted by start time (longest first on ties).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from advisor.rundir import CALL_SITE_PREFIX, STEP_PREFIX

_HOST_CATEGORIES = ("cpu_op", "user_annotation", "memory", "cuda_runtime", "cuda_driver")


def annotate(events: pd.DataFrame) -> pd.DataFrame:
    """Host events with ``self_us``, ``op_parent`` (row label of the enclosing op), ``step`` and
    ``call_site`` columns added; ``memory`` rows get the op they happened in as ``op_parent``."""
    host = events[events["cat"].isin(_HOST_CATEGORIES)].copy()
    host["_order"] = np.where(host["cat"] == "memory", 1, 0)
    host = host.sort_values(["tid", "ts", "_order", "dur"], ascending=[True, True, True, False], kind="stable")
    n = len(host)
    self_us = host["dur"].to_numpy(copy=True)
    op_parent = np.full(n, -1, dtype=np.int64)
    step = np.full(n, -1, dtype=np.int64)
    call_site = np.empty(n, dtype=object)
    labels = host.index.to_numpy()
    durations = host["dur"].to_numpy()

    cats = host["cat"].astype(str).to_numpy()
    names = host["name"].astype(str).to_numpy()
    tids = host["tid"].astype(str).to_numpy()
    starts = host["ts"].to_numpy()
    ends = host["end"].to_numpy()

    stack: list[int] = []
    current_tid = None
    for i in range(n):
        if tids[i] != current_tid:
            stack, current_tid = [], tids[i]
        t = starts[i]
        while stack and ends[stack[-1]] <= t and not (cats[i] == "memory" and ends[stack[-1]] == t
                                                       and starts[stack[-1]] < t):
            stack.pop()
        parent_op = -1
        for j in reversed(stack):
            if cats[j] == "cpu_op":
                parent_op = j
                break
        site = None
        step_n = -1
        for j in reversed(stack):
            if site is None and names[j].startswith(CALL_SITE_PREFIX):
                site = names[j][len(CALL_SITE_PREFIX):]
            if names[j].startswith(STEP_PREFIX):
                step_n = int(names[j][len(STEP_PREFIX):])
                break
        if names[i].startswith(STEP_PREFIX):
            step_n = int(names[i][len(STEP_PREFIX):])
        op_parent[i] = labels[parent_op] if parent_op >= 0 else -1
        step[i] = step_n
        call_site[i] = site
        if cats[i] == "cpu_op" and parent_op >= 0:
            self_us[parent_op] -= durations[i]
        if cats[i] != "memory":
            stack.append(i)

    host["self_us"] = np.where(host["cat"] == "cpu_op", np.maximum(self_us, 0.0), 0.0)
    host["op_parent"] = op_parent
    host["step"] = step
    host["call_site"] = call_site
    return host.drop(columns="_order")

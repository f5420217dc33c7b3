"""Nesting of host-side events: self time, the enclosing op, step and call site of every event.

The profiler writes complete events (start, duration) per thread; nesting is recovered by one sweep
per thread over events sorted by start time (longest first on ties). The annotated frame holds the operator
calls first, so that the many readers of those alone take them without a copy.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from advisor.rundir import CALL_SITE_PREFIX, STEP_PREFIX

_HOST_CATEGORIES = ("cpu_op", "user_annotation", "memory", "cuda_runtime", "cuda_driver")


def annotate(events: pd.DataFrame, release: bool = False) -> pd.DataFrame:
    """Host events with ``self_us``, ``op_parent`` (row label of the enclosing op), ``step`` and
    ``call_site`` columns added; ``memory`` rows get the op they happened in as ``op_parent``. The operator calls
    come first (see :func:`operator_rows`), each kind of event by thread and start.

    With ``release``, each column of ``events`` is dropped from it once copied, so that a large trace is not held
    twice (``events`` is left empty: for a caller that has no more use for it)."""
    kept = np.flatnonzero(events["cat"].isin(_HOST_CATEGORIES).to_numpy())
    memory_last = (events["cat"] == "memory").to_numpy()[kept]
    tid_codes = _codes(events["tid"])[0][kept]
    ts, dur = events["ts"].to_numpy()[kept], events["dur"].to_numpy()[kept]
    order = kept[np.lexsort((-dur, memory_last, ts, tid_codes))]  # by thread, start, longest first
    del kept, memory_last, tid_codes, ts, dur
    is_op = (events["cat"] == "cpu_op").to_numpy()[order]
    ops_first = np.concatenate([np.flatnonzero(is_op), np.flatnonzero(~is_op)])
    rows = order[ops_first]
    del order
    if release:
        host = pd.DataFrame({name: _taken(events.pop(name), rows) for name in list(events.columns)},
                            index=events.index[rows], copy=False)
    else:
        host = events.iloc[rows]
    visits = np.empty_like(ops_first)  # the sweep's order, as positions in ``host``
    visits[ops_first] = np.arange(len(ops_first))
    del rows, ops_first
    self_us, op_parent, step, call_site = _sweep(host, visits)
    host["self_us"] = np.where(host["cat"] == "cpu_op", np.maximum(self_us, 0.0), 0.0)
    host["op_parent"], host["step"], host["call_site"] = op_parent, step, call_site
    return host


def operator_rows(host: pd.DataFrame) -> pd.DataFrame:
    """The operator calls (``cat == "cpu_op"``) of ``host``: the rows they lead, without a copy, in a frame made by
    :func:`annotate` (and in any part of it kept in order); else the rows found wherever they are."""
    is_op = (host["cat"] == "cpu_op").to_numpy()
    count = int(is_op.sum())
    return host.iloc[:count] if is_op[:count].all() else host[is_op]


def _taken(column: pd.Series, order: np.ndarray):
    """The column's values at ``order`` (a categorical stays one)."""
    values = column.array if isinstance(column.dtype, pd.CategoricalDtype) else column.to_numpy()
    return values.take(order)


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's code into the column's distinct values as text (in sorted order), without a string per row."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), [str(c) for c in column.cat.categories]
    codes, uniques = pd.factorize(column.astype(str), sort=True)
    return codes, list(uniques)


def _sweep(host: pd.DataFrame, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass per thread over the rows of ``host`` in the order ``visits`` (by start, longest first on ties),
    keeping the stack of open events. Names are read through their codes, and per-name facts are worked out once
    per name."""
    n = len(host)
    name_codes, names = _codes(host["name"])
    steps_of = [int(x[len(STEP_PREFIX):]) if x.startswith(STEP_PREFIX) else -1 for x in names]
    sites_of = [x[len(CALL_SITE_PREFIX):] if x.startswith(CALL_SITE_PREFIX) else None for x in names]
    cat_codes, cats = _codes(host["cat"])
    kind_of = [1 if c == "cpu_op" else 2 if c == "memory" else 0 for c in cats]
    kinds = array("b", [kind_of[c] for c in cat_codes])
    codes, tids = _array("i", name_codes), _array("i", _codes(host["tid"])[0])
    starts, ends, durations = (_array("d", host[c].to_numpy()) for c in ("ts", "end", "dur"))
    self_us = array("d", durations)
    op_parent, step, call_site = array("q", bytes(8 * n)), array("q", bytes(8 * n)), [None] * n

    # Each frame of the stack carries what its children inherit: the nearest enclosing op, the call site
    # in effect (none above a step's mark) and the step.
    stack: list[tuple[int, int, str | None, int]] = []  # (row, enclosing op, call site, step)
    current_tid = None
    for i in _array("q", visits):
        if tids[i] != current_tid:
            stack, current_tid = [], tids[i]
        t, kind = starts[i], kinds[i]
        while stack and ends[stack[-1][0]] <= t and not (kind == 2 and ends[stack[-1][0]] == t
                                                          and starts[stack[-1][0]] < t):
            stack.pop()
        parent_op, site, step_n = stack[-1][1:] if stack else (-1, None, -1)
        code = codes[i]
        own_op, own_site = (i if kind == 1 else parent_op), site
        if steps_of[code] >= 0:
            step_n, own_site = steps_of[code], None
        elif sites_of[code] is not None:
            own_site = sites_of[code]
        op_parent[i] = parent_op
        step[i] = step_n
        call_site[i] = site
        if kind == 1 and parent_op >= 0:
            self_us[parent_op] -= durations[i]
        if kind != 2:
            stack.append((i, own_op, own_site, step_n))
    parents = np.frombuffer(op_parent, dtype=np.int64)
    labels = np.where(parents >= 0, host.index.to_numpy(np.int64)[np.maximum(parents, 0)], -1)
    return (np.frombuffer(self_us, dtype=np.float64), labels, np.frombuffer(step, dtype=np.int64),
            np.array(call_site, dtype=object))


def _array(typecode: str, values: np.ndarray) -> array:
    """``values`` as an :class:`array.array` (indexed from Python faster than a numpy array), copied once."""
    out = array(typecode)
    out.frombytes(memoryview(np.ascontiguousarray(values, dtype=typecode)).cast("B"))  # numpy reads the same codes
    return out

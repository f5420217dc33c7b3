"""Nesting of host-side events: self time, the enclosing op, step and call site of every event.

The profiler writes complete events (start, duration) per thread; nesting is recovered from the events sorted by
thread and start time (longest first on ties), as a stack per thread would find it, in whole-array passes. The
annotated frame holds the operator calls first, so that the many readers of those alone take them without a copy.
"""

from __future__ import annotations

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
    visits = np.empty_like(ops_first)  # the visiting order (thread, start), as positions in ``host``
    visits[ops_first] = np.arange(len(ops_first))
    del rows, ops_first
    self_us, op_parent, step, call_site = _nesting(host, visits)
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


def _nesting(host: pd.DataFrame, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nesting of the rows of ``host`` visited in the order ``visits`` (by thread, start, longest first on ties),
    as a stack per thread would find it, in whole-array passes: each row's self time, enclosing op (its label),
    step and call site. Positions are int32 and each array is let go once used: a large trace's host frame is
    held beside them."""
    n = len(host)
    name_codes, names = _codes(host["name"])
    code = name_codes[visits].astype(np.int32)
    del name_codes
    cat_codes, cats = _codes(host["cat"])
    kind_of = np.array([_OP if c == "cpu_op" else _MEMORY if c == "memory" else _OTHER for c in cats], dtype=np.int8)
    kind = kind_of[cat_codes[visits]]
    del cat_codes
    start = host["ts"].to_numpy()[visits]
    parent = _parents(_codes(host["tid"])[0][visits], start, host["end"].to_numpy()[visits], kind)
    del start

    steps_of = np.array([int(x[len(STEP_PREFIX):]) if x.startswith(STEP_PREFIX) else -1 for x in names],
                        dtype=np.int64)
    sites_of = np.array([x[len(CALL_SITE_PREFIX):] if x.startswith(CALL_SITE_PREFIX) else None for x in names],
                        dtype=object)
    is_step_mark = steps_of[code] >= 0
    step = np.where(is_step_mark, steps_of[code], _through(_inherited(parent, is_step_mark), parent, code, steps_of, -1))
    out_step = np.empty(n, dtype=np.int64)
    out_step[visits] = step
    del step
    site_marks = is_step_mark | (sites_of != None)[code]  # noqa: E711 (a step mark clears the site)
    out_site = np.empty(n, dtype=object)
    out_site[visits] = _through(_inherited(parent, site_marks), parent, code, sites_of, None)
    del site_marks, is_step_mark, code

    enclosing_op = _inherited(parent, kind == _OP)
    op_parent = np.where(parent >= 0, enclosing_op[parent], -1).astype(np.int32)
    del enclosing_op, parent
    duration = host["dur"].to_numpy()[visits]
    self_us = duration.copy()
    nested_ops = np.flatnonzero((kind == _OP) & (op_parent >= 0))
    np.subtract.at(self_us, op_parent[nested_ops], duration[nested_ops])  # in visiting order, as a stack would
    del duration, nested_ops
    out_self = np.empty(n)
    out_self[visits] = self_us
    del self_us
    out_parent = np.full(n, -1, dtype=np.int64)
    inside = np.flatnonzero(op_parent >= 0)
    out_parent[visits[inside]] = host.index.to_numpy(np.int64)[visits[op_parent[inside]]]
    return out_self, out_parent, out_step, out_site


_OTHER, _OP, _MEMORY = 0, 1, 2


def _parents(tid: np.ndarray, start: np.ndarray, end: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Each event's parent (its position, -1 if none), the events given in visiting order.

    An event's parent is the latest event before it on its thread still open at its start (a memory event: open, or
    ending at that instant, unless an event starts there). It is therefore on the chain of parents of the latest
    event before it: every event that chain skips ended before it began. Each pass moves every unsettled event's
    candidate to its candidate's own candidate (pointer jumping), so a chain of ``d`` ancestors settles in about
    log2(d) passes."""
    n = len(tid)
    frames = kind != _MEMORY  # the events others can nest in
    parent = np.full(n, -1, dtype=np.int32)  # first, the latest frame before each event on its thread
    if n:
        latest = np.maximum.accumulate(np.where(frames, np.arange(n, dtype=np.int32), np.int32(-1)))
        parent[1:] = latest[:-1]
        del latest
        parent[(parent >= 0) & (tid[np.maximum(parent, 0)] != tid)] = -1
    # a memory event at the instant an event of its thread starts: the events that end there were closed by it
    lenient = ~frames & ~((parent >= 0) & (start[np.maximum(parent, 0)] == start))
    unsettled = np.flatnonzero(parent >= 0)
    while unsettled.size:
        candidate = parent[unsettled]
        t = start[unsettled]
        is_open = (end[candidate] > t) | (lenient[unsettled] & (end[candidate] == t) & (start[candidate] < t))
        unsettled = unsettled[~is_open]
        parent[unsettled] = parent[parent[unsettled]]
        unsettled = unsettled[parent[unsettled] >= 0]
    return parent


def _inherited(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """For each event, the nearest of itself and its ancestors that is ``marked`` (-1 if none)."""
    nearest = np.where(marked, np.arange(len(parent), dtype=np.int32), parent)
    unsettled = np.flatnonzero((nearest >= 0) & ~marked[np.maximum(nearest, 0)])
    while unsettled.size:
        nearest[unsettled] = nearest[nearest[unsettled]]
        unsettled = unsettled[(nearest[unsettled] >= 0) & ~marked[np.maximum(nearest[unsettled], 0)]]
    return nearest


def _through(mark: np.ndarray, parent: np.ndarray, code: np.ndarray, value_of: np.ndarray, absent):
    """What each event inherits from its parent: ``value_of`` the name of the mark nearest the parent."""
    found = np.where(parent >= 0, mark[np.maximum(parent, 0)], -1)
    values = value_of[code[np.maximum(found, 0)]]
    return np.where(found >= 0, values, absent)

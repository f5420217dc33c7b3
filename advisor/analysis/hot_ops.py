"""Hot ops: which operators take the time, how often they run, on what shapes, from which line."""

from __future__ import annotations


import numpy as np
import pandas as pd

from advisor.analysis.call_tree import operator_rows
from advisor.analysis.flops import identities, move_convolution_flops, op_flops, signatures
from advisor.analysis.roofline import ROOFLINE_COLUMNS, op_bytes, op_dtype, own_bytes
from advisor.format import display_source

#: events of the GPU's own timeline
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
#: the host events' columns that the hot ops are worked out from
_OP_COLUMNS = ("name", "self_us", "dur", "op_parent", "call_site", "input_dims", "input_types", "concrete_inputs")
HOT_OP_COLUMNS = ["name", "self_time_ms", "share", "calls", "device_time_ms", "shapes", "flops",
                  "gflops_per_s", "source", "dtype", "bytes"]


def _shape_text(dims) -> str:
    """Tensor input shapes as ``8x3x32x32, 16x3x3x3``; scalars and empty arguments left out."""
    if not dims:
        return ""
    shapes = []
    for dim in dims:
        if dim and all(isinstance(d, (int, float)) for d in dim):
            shapes.append("x".join(str(int(d)) for d in dim))
        elif dim and all(isinstance(d, list) for d in dim):
            shapes.append(f"{len(dim)} tensors")
    return ", ".join(shapes)


def device_time(host: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """GPU time (µs) of each host op row that launched GPU work (by row label; the other ops have none):
    kernels/memcpys matched to their launch by correlation id."""
    device = events[events["cat"].isin(DEVICE_CATEGORIES)]
    launches = host[host["cat"].isin(["cuda_runtime", "cuda_driver"]) & host["correlation"].notna()]
    if device.empty or launches.empty:
        return pd.Series(dtype=float)
    per_launch = device.groupby("correlation")["dur"].sum()
    return (launches.assign(device_us=launches["correlation"].map(per_launch).fillna(0.0))
            .groupby("op_parent")["device_us"].sum())


def _most_common(name: np.ndarray, value: np.ndarray, count: np.ndarray) -> dict:
    """Per name code, the value with the most rows (``count`` rows for each entry; the first seen among equals,
    missing values left out)."""
    table = pd.DataFrame({"name": name, "value": value, "count": count})
    counts = table.groupby(["name", "value"], sort=False)["count"].sum().sort_values(ascending=False, kind="stable")
    first = counts[~counts.index.get_level_values(0).duplicated()]
    return dict(zip(first.index.get_level_values(0), first.index.get_level_values(1)))


def hot_ops(host: pd.DataFrame, events: pd.DataFrame, window_us: float, cwd: str | None = None) -> pd.DataFrame:
    """One row per op name, hottest first (by GPU time when the run used a GPU, else by self CPU time).

    ``share`` is the op's self time over the window's wall time; ``source`` is the line of the
    user's code under which the op spent most of its time.
    """
    ops = operator_rows(host)[list(_OP_COLUMNS)]
    if ops.empty:
        return pd.DataFrame(columns=HOT_OP_COLUMNS)
    # FLOPs, bytes, dtype and shapes are worked out once per distinct call: name and argument lists (shared)
    names = ops["name"].cat.categories.to_numpy()
    name_code = ops["name"].cat.codes.to_numpy()
    dims, types, scalars = (ops[c].to_numpy() for c in ("input_dims", "input_types", "concrete_inputs"))
    code, first = signatures(name_code.astype(np.int64), identities(ops["input_dims"]), identities(ops["input_types"]),
                             identities(ops["concrete_inputs"]))
    calls = [(str(names[name_code[i]]), dims[i], types[i], scalars[i]) for i in first]
    flops = move_convolution_flops(ops, np.array([op_flops(n, d, c) for n, d, _, c in calls], dtype=float)[code])
    nbytes = own_bytes(ops, np.array([op_bytes(n, d, t) for n, d, t, _ in calls], dtype=float)[code], flops)
    self_us = ops["self_us"].to_numpy(dtype=float)
    device_us = device_time(host, events).reindex(ops.index, fill_value=0.0).to_numpy(dtype=float)

    order, row_of = np.unique(name_code, return_index=True)  # by name code; shown in order of first appearance
    position = np.full(len(names), -1)
    position[order] = np.arange(len(order))
    group = position[name_code]
    k = len(order)

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=weights, minlength=k)

    def total_or_nan(values: np.ndarray) -> np.ndarray:
        counted = ~np.isnan(values)
        return np.where(np.bincount(group, weights=counted, minlength=k) > 0, total(np.where(counted, values, 0)),
                        np.nan)

    table = pd.DataFrame({
        "self_time_ms": total(self_us) / 1000.0,
        "calls": np.bincount(group, minlength=k),
        "device_time_ms": total(device_us) / 1000.0,
        "flops": total_or_nan(flops),
        "bytes": total_or_nan(nbytes),
    }, index=pd.Index([str(n) for n in names[order]], name="name"))
    timed = total(np.where(np.isnan(flops), 0.0, self_us))
    table["gflops_per_s"] = table["flops"] / np.where(np.isnan(table["flops"]), np.nan, timed) / 1e3
    per_call = np.bincount(code, minlength=len(first))  # rows of each distinct call
    call_group = group[first]
    dtype = _most_common(call_group, [op_dtype(t) for _, _, t, _ in calls], per_call)
    table["dtype"] = pd.Series([dtype.get(g) for g in range(k)], index=table.index, dtype=object)  # None, not NaN
    shapes = _most_common(call_group, [_shape_text(d) for _, d, _, _ in calls], per_call)
    table["shapes"] = [shapes.get(g, "") for g in range(k)]
    table["share"] = table["self_time_ms"] / (window_us / 1000.0) if window_us > 0 else np.nan
    sited = ops["call_site"].notna().to_numpy()
    source = pd.DataFrame({"name": names[name_code[sited]], "call_site": ops["call_site"].to_numpy()[sited],
                           "self_us": self_us[sited]}).groupby(["name", "call_site"])["self_us"].sum().reset_index()
    source = source.sort_values("self_us").groupby("name").tail(1).set_index("name")["call_site"]
    table["source"] = [display_source(source[n], cwd) if n in source.index else "" for n in names[order]]
    table = table.iloc[np.argsort(row_of, kind="stable")]
    by = "device_time_ms" if table["device_time_ms"].sum() > 0 else "self_time_ms"
    table = table.sort_values(by, ascending=False).reset_index()
    return table[HOT_OP_COLUMNS]

"""Hot ops: which operators take the time, how often they run, on what shapes, from which line."""

from __future__ import annotations


import numpy as np
import pandas as pd

from advisor.analysis.flops import attach_flops, identities, per_distinct
from advisor.analysis.roofline import ROOFLINE_COLUMNS, attach_bytes, op_dtype
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


def _most_common(ops: pd.DataFrame, column: str) -> pd.Series:
    """Per op name, the most common value of ``column`` (the first seen among equals; missing values left out)."""
    counts = ops.groupby(["name", column], sort=False).size().sort_values(ascending=False, kind="stable")
    first = counts[~counts.index.get_level_values(0).duplicated()]
    return pd.Series(first.index.get_level_values(1), index=first.index.get_level_values(0), dtype=object)


def hot_ops(host: pd.DataFrame, events: pd.DataFrame, window_us: float, cwd: str | None = None) -> pd.DataFrame:
    """One row per op name, hottest first (by GPU time when the run used a GPU, else by self CPU time).

    ``share`` is the op's self time over the window's wall time; ``source`` is the line of the
    user's code under which the op spent most of its time.
    """
    ops = host.loc[(host["cat"] == "cpu_op").to_numpy(), list(_OP_COLUMNS)]  # a copy of what is read, not of all
    if ops.empty:
        return pd.DataFrame(columns=HOT_OP_COLUMNS)
    ops["flops"] = attach_flops(ops)
    ops["bytes"] = attach_bytes(ops, ops["flops"])
    types = ops["input_types"].to_numpy()
    ops["dtype"] = per_distinct(lambda i: op_dtype(types[i]), identities(ops["input_types"]))
    ops["device_us"] = device_time(host, events).reindex(ops.index, fill_value=0.0)
    dims = ops["input_dims"].to_numpy()
    ops["shape_text"] = per_distinct(lambda i: _shape_text(dims[i]), identities(ops["input_dims"]))
    ops["name"] = ops["name"].astype(str)
    grouped = ops.groupby("name", sort=False)
    table = pd.DataFrame({
        "self_time_ms": grouped["self_us"].sum() / 1000.0,
        "calls": grouped.size(),
        "device_time_ms": grouped["device_us"].sum() / 1000.0,
        "flops": grouped["flops"].sum(min_count=1),
        "bytes": grouped["bytes"].sum(min_count=1),
    })
    dtype = _most_common(ops, "dtype").reindex(table.index)
    table["dtype"] = dtype.where(dtype.notna(), None)
    table["share"] = table["self_time_ms"] / (window_us / 1000.0) if window_us > 0 else np.nan
    timed_flops = ops.loc[ops["flops"].notna(), ["name", "self_us"]].groupby("name")["self_us"].sum()
    table["gflops_per_s"] = table["flops"] / timed_flops.reindex(table.index) / 1e3
    table["shapes"] = _most_common(ops, "shape_text").reindex(table.index).fillna("")
    sited = ops.loc[ops["call_site"].notna(), ["name", "call_site", "self_us"]]
    source = sited.groupby(["name", "call_site"])["self_us"].sum().reset_index()
    source = source.sort_values("self_us").groupby("name").tail(1).set_index("name")["call_site"]
    table["source"] = source.reindex(table.index).map(lambda s: display_source(s, cwd) if isinstance(s, str) else "")
    by = "device_time_ms" if table["device_time_ms"].sum() > 0 else "self_time_ms"
    table = table.sort_values(by, ascending=False).reset_index()
    return table[HOT_OP_COLUMNS]

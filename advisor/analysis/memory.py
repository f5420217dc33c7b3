"""Memory pressure: the profiler's allocation peak, the process tree's peak RSS against the
machine, GPU memory against the device, and the ops that allocate the most."""

from __future__ import annotations

import numpy as np
import pandas as pd

CPU_DEVICE, CUDA_DEVICE = 0, 1
# Ops that only allocate on behalf of their caller: an allocation is charged to the caller.
_ALLOCATION_PRIMITIVES = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::new_empty",
                          "aten::new_empty_strided", "aten::resize_", "aten::zeros", "aten::zeros_like",
                          "aten::new_zeros", "aten::ones_like", "aten::full", "aten::new_full", "aten::clone"}


def allocation_timeline(host: pd.DataFrame) -> pd.DataFrame:
    """``ts``, ``device_type``, ``device_id``, ``bytes`` and ``total_allocated`` of each allocation event."""
    mem = host[host["cat"] == "memory"]
    return mem[["ts", "device_type", "device_id", "bytes", "total_allocated", "op_parent"]].sort_values("ts")


def top_allocators(host: pd.DataFrame, limit: int = 5) -> list[dict]:
    """Ops that allocated the most bytes in the window (allocations only, frees not subtracted)."""
    mem = host[(host["cat"] == "memory") & (host["bytes"] > 0)]
    if mem.empty:
        return []
    owner = pd.Series(_owners(host, mem["op_parent"].to_numpy()), index=mem.index)
    totals = mem.groupby(owner)["bytes"].agg(["sum", "count"]).sort_values("sum", ascending=False).head(limit)
    return [{"name": name, "bytes": int(row["sum"]), "allocations": int(row["count"])}
            for name, row in totals.iterrows()]


def _owners(host: pd.DataFrame, ops: np.ndarray) -> np.ndarray:
    """The name of the op each allocation is charged to: ``ops`` (row labels) climbed past allocation
    primitives, all rows at once."""
    position = host.index.get_indexer(ops)
    names = host["name"].astype("category")
    codes, categories = names.cat.codes.to_numpy(), names.cat.categories
    parent_labels = host["op_parent"].to_numpy()
    parents = host.index.get_indexer(parent_labels)  # -1: an op outside these rows
    primitive = categories.isin(list(_ALLOCATION_PRIMITIVES))[codes]
    while True:
        climb = (position >= 0) & primitive[position] & (parent_labels[position] >= 0)
        if not climb.any():
            break
        position = np.where(climb, parents[position], position)
    named = categories.astype(str).to_numpy(dtype=object)[codes[np.maximum(position, 0)]]
    return np.where(position >= 0, named, "(outside ops)")


def memory_summary(host: pd.DataFrame, samples: pd.DataFrame | None, gpu_samples: pd.DataFrame | None) -> dict:
    """Peaks and shares. ``peak_bytes`` is the largest of what is known (GPU allocator peak on a GPU run,
    else the process tree's peak RSS, else the profiler's CPU allocation peak)."""
    timeline = allocation_timeline(host)
    result: dict = {"profiler_peak_bytes": {}, "top_allocators": top_allocators(host)}
    for (dtype, did), group in timeline.groupby(["device_type", "device_id"], dropna=True):
        totals = group["total_allocated"].dropna()
        if totals.empty:
            continue
        # The CPU allocator's running total starts at the profiler's start: its peak is the growth.
        peak = totals.max() - min(totals.min(), 0) if int(dtype) == CPU_DEVICE else totals.max()
        key = "cpu" if int(dtype) == CPU_DEVICE else f"cuda:{int(did)}"
        result["profiler_peak_bytes"][key] = int(peak)
    if samples is not None and not samples.empty:
        result["peak_rss_bytes"] = int(samples["rss_bytes"].max())
        total = int(samples["sys_mem_total_bytes"].iloc[-1])
        result["system_memory_bytes"] = total
        result["rss_share_of_system"] = round(result["peak_rss_bytes"] / total, 4) if total else None
        result["min_available_bytes"] = int(samples["sys_mem_available_bytes"].min())
    if gpu_samples is not None and not gpu_samples.empty:
        gpus = []
        for gpu, g in gpu_samples.groupby("gpu"):
            used, total = float(g["mem_used_bytes"].max()), float(g["mem_total_bytes"].max())
            gpus.append({"gpu": int(gpu), "peak_used_bytes": int(used) if not np.isnan(used) else None,
                         "total_bytes": int(total) if not np.isnan(total) else None,
                         "share": round(used / total, 4) if total and not np.isnan(used) else None})
        result["gpus"] = gpus
    cuda_peaks = [v for k, v in result["profiler_peak_bytes"].items() if k.startswith("cuda")]
    if cuda_peaks:
        result["peak_bytes"] = max(cuda_peaks)
    elif "peak_rss_bytes" in result:
        result["peak_bytes"] = result["peak_rss_bytes"]
    else:
        result["peak_bytes"] = result["profiler_peak_bytes"].get("cpu")
    return result

"""The roofline of the hot ops against the machine's measured peaks (``peaks.json``), and the step's MFU.

Bytes moved are estimated from each call's input shapes and dtypes: every input tensor read once and one
output written (its size from the op's shapes for matmuls and convolutions, else the size of the largest
input). Ops that hand their work to the ops they call (``aten::linear``, ``aten::conv2d``) spend their own
time dispatching: they move no bytes of their own and count as overhead.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


ROOFLINE_COLUMNS = ["dtype", "bytes", "intensity", "peak_flops_per_s", "attainable_flops_per_s", "roofline_fraction",
                    "bound"]
#: bytes per element of the dtypes the kineto trace names
_ITEMSIZE = {"float": 4, "double": 8, "c10::BFloat16": 2, "c10::Half": 2, "long int": 8, "int": 4, "short int": 2,
             "bool": 1, "unsigned char": 1, "signed char": 1, "c10::complex<float>": 8}
_TRACE_DTYPES = {"float": "float32", "c10::BFloat16": "bfloat16", "c10::Half": "float16", "double": "float64"}
#: an op far below its roof (under this fraction) whose calls would take under this long each at the roof (µs)
#: is bound by the fixed cost of calling it, not by its work
OVERHEAD_FRACTION, OVERHEAD_CALL_US = 0.1, 5.0
#: ops that make a view or an empty tensor: they move no data
_NO_DATA = frozenset(f"aten::{name}" for name in (
    "view", "_unsafe_view", "_reshape_alias", "reshape", "t", "transpose", "permute", "expand", "as_strided", "alias",
    "squeeze", "unsqueeze", "slice", "select", "narrow", "split", "chunk", "unbind", "flatten", "detach", "numpy_T",
    "resolve_conj", "resolve_neg", "lift_fresh", "empty", "empty_like", "empty_strided", "zeros_like"))
_MATMULS = ("aten::mm", "aten::bmm")
_ADD_MATMULS = ("aten::addmm", "aten::baddbmm")


def _numel(dim) -> int | None:
    if isinstance(dim, list) and dim and all(isinstance(d, (int, float)) for d in dim):
        return int(math.prod(dim))
    return None


def _output_elements(name: str, dims: list) -> int | None:
    """Elements the op writes, where its shapes say so: matmuls and forward convolutions."""
    try:
        if name in _MATMULS:
            return int(math.prod(dims[0][:-1]) * dims[1][-1])
        if name in _ADD_MATMULS:
            return int(math.prod(dims[1][:-1]) * dims[2][-1])
        if "convolution" in name and "backward" not in name and len(dims[0]) > 2 and len(dims[1]) > 2:
            return int(_numel(dims[0]) / dims[0][1] * dims[1][0])  # C_out channels over (about) the same positions
    except (IndexError, TypeError, ZeroDivisionError):
        return None
    return None


def op_bytes(name: str, dims, types) -> float:
    """Bytes one call of ``name`` reads and writes, from its input shapes and dtypes (NaN without tensors, or for an
    op that only makes a view or an empty tensor)."""
    if not isinstance(dims, list) or not isinstance(types, list) or name in _NO_DATA:
        return math.nan
    sizes = []
    for dim, kind in zip(dims, types):
        n = _numel(dim)
        if n is not None and kind in _ITEMSIZE:
            sizes.append((n, _ITEMSIZE[kind]))
    if not sizes:
        return math.nan
    out = _output_elements(name, dims)
    largest = max(n * size for n, size in sizes)
    written = out * sizes[0][1] if out is not None else largest
    return float(sum(n * size for n, size in sizes) + written)


def op_dtype(types) -> str | None:
    """The dtype of an op call: that of its first floating-point tensor input."""
    if not isinstance(types, list):
        return None
    return next((_TRACE_DTYPES[t] for t in types if t in _TRACE_DTYPES), None)


def own_bytes(ops: pd.DataFrame, values: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """``values`` (bytes per op row) with NaN for the ops that hand their work to the ops they call (under half of
    their time is their own) and do no counted arithmetic themselves."""
    parent = np.isin(ops.index.to_numpy(), ops["op_parent"].to_numpy())  # labels: a lookup table, not a sort
    wrapper = parent & (ops["self_us"] < 0.5 * ops["dur"]).to_numpy() & ~(flops > 0)
    return np.where(wrapper, np.nan, values)


def compute_peak(peaks: dict, name: str, dtype: str | None) -> float:
    """The measured compute peak that bounds op ``name`` in ``dtype`` (FLOP/s; NaN when not measured)."""
    table = peaks.get("conv_flops_per_s") if "conv" in name else peaks.get("flops_per_s")
    table = table or peaks.get("flops_per_s") or {}
    value = table.get(dtype or "float32") or table.get("float32")
    return float(value) if value else math.nan


def roofline(table: pd.DataFrame, peaks: dict | None) -> pd.DataFrame:
    """The hot-op ``table`` (with ``flops``, ``bytes``, ``dtype``, times and ``calls``) with the roofline columns:
    ``intensity`` (FLOP/byte), ``peak_flops_per_s`` (the compute roof of the op's kind and dtype),
    ``attainable_flops_per_s`` (min of the compute peak and intensity x bandwidth),
    ``roofline_fraction`` (achieved over attainable; for ops without counted FLOPs, bytes/s over the bandwidth)
    and ``bound`` (``compute``, ``memory`` or ``overhead``). Without peaks, only ``intensity`` is filled."""
    table = table.copy()
    table["intensity"] = table["flops"] / table["bytes"].where(table["bytes"] > 0)
    table["peak_flops_per_s"] = np.nan
    table["attainable_flops_per_s"] = np.nan
    table["roofline_fraction"] = np.nan
    table["bound"] = None
    if not peaks or not peaks.get("bytes_per_s"):
        return table
    bandwidth = float(peaks["bytes_per_s"])
    seconds = table["device_time_ms"].where(table["device_time_ms"] > 0, table["self_time_ms"]) / 1000.0
    peak = pd.Series([compute_peak(peaks, n, d) for n, d in zip(table["name"], table["dtype"])], index=table.index)
    attainable = np.minimum(peak, table["intensity"] * bandwidth)
    counted = table["flops"].notna() & (table["flops"] > 0)
    achieved = (table["flops"] / seconds).where(counted)
    moved = (table["bytes"] / seconds / bandwidth).where(~counted)
    table["peak_flops_per_s"] = peak.where(counted)
    table["attainable_flops_per_s"] = attainable.where(counted)
    table["roofline_fraction"] = (achieved / attainable).where(counted, moved)
    at_roof_s = (table["flops"] / attainable).where(counted, table["bytes"] / bandwidth)
    at_roof_us = at_roof_s * 1e6 / table["calls"].clip(lower=1)
    bound = np.where(counted & (table["intensity"] * bandwidth >= peak), "compute", "memory")
    overhead = table["bytes"].isna() | ((table["roofline_fraction"] < OVERHEAD_FRACTION)
                                        & (at_roof_us < OVERHEAD_CALL_US))
    table["bound"] = np.where(overhead, "overhead", bound)
    return table


def step_roofline(table: pd.DataFrame, steps: int, step_ms: float | None, peaks: dict | None) -> dict | None:
    """The step against the roofs: model FLOPs, achieved FLOP/s, MFU (against the peak of the dtype that does
    most of the FLOPs), the step's intensity, and the share of the step in ops of each bound (of GPU time on a GPU)."""
    if table.empty or not steps or not step_ms:
        return None
    flops = float(table["flops"].sum(min_count=1)) if table["flops"].notna().any() else 0.0
    moved = float(table["bytes"].sum())
    by_dtype = table[table["flops"] > 0].groupby("dtype")["flops"].sum()
    dtype = str(by_dtype.idxmax()) if not by_dtype.empty else "float32"
    per_step = flops / steps
    achieved = per_step / (step_ms / 1000.0)
    result = {"model_flops_per_step": per_step, "bytes_per_step": moved / steps, "achieved_flops_per_s": achieved,
              "intensity": flops / moved if moved > 0 else None, "dtype": dtype, "peak_flops_per_s": None,
              "mfu": None, "bound_shares": {}, "bound": None, "above_roof": []}
    if peaks:
        peak = max(compute_peak(peaks, "matmul", dtype), compute_peak(peaks, "conv", dtype))
        if peak > 0:
            result.update(peak_flops_per_s=peak, mfu=achieved / peak)
        gpu = bool((table["device_time_ms"] > 0).any())
        busy = table["device_time_ms"] if gpu else table["self_time_ms"]
        shares = (busy / (steps * step_ms)).groupby(table["bound"]).sum()
        result["bound_shares"] = {str(k): float(v) for k, v in shares.items()}
        if not shares.empty:
            result["bound"] = str(shares.idxmax())
        # an op faster than its roof: the peaks were measured low (on a busy machine), not the op impossibly fast
        above = (table["roofline_fraction"] > 1.0) & ((table["flops"] > 0) | (table["share"] >= 0.01))
        result["above_roof"] = table.loc[above, "name"].astype(str).tolist()
    return result

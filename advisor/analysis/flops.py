"""FLOPs of matrix-multiply and convolution ops, counted from the input shapes in the trace.

The profiler's own ``with_flops`` covers forward conv/linear only and does not write them into the
exported trace, so advisor counts them itself, forward and backward, with the usual conventions
(a multiply-add is 2 FLOPs; the same formulas as ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import ast
import math
from typing import Sequence

import numpy as np
import pandas as pd


def _prod(xs: Sequence[int]) -> int:
    return int(math.prod(xs)) if xs else 1


def _ints(value) -> list[int] | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, int):
        return [parsed]
    return [int(v) for v in parsed] if isinstance(parsed, (list, tuple)) else None


def _mm(dims, _concrete) -> float:
    a, b = dims[0], dims[1]
    return 2.0 * a[0] * a[1] * b[1]


def _addmm(dims, _concrete) -> float:
    a, b = dims[1], dims[2]
    return 2.0 * a[0] * a[1] * b[1]


def _bmm(dims, _concrete) -> float:
    a, b = dims[0], dims[1]
    return 2.0 * a[0] * a[1] * a[2] * b[2]


def _baddbmm(dims, _concrete) -> float:
    a, b = dims[1], dims[2]
    return 2.0 * a[0] * a[1] * a[2] * b[2]


def _conv_out_spatial(x, w, stride, padding, dilation) -> list[int]:
    spatial = len(x) - 2
    stride = (stride or [1]) * (spatial if len(stride or [1]) == 1 else 1)
    padding = (padding or [0]) * (spatial if len(padding or [0]) == 1 else 1)
    dilation = (dilation or [1]) * (spatial if len(dilation or [1]) == 1 else 1)
    return [(x[2 + i] + 2 * padding[i] - dilation[i] * (w[2 + i] - 1) - 1) // stride[i] + 1
            for i in range(spatial)]


def _convolution(dims, concrete) -> float:
    # aten::convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    x, w = dims[0], dims[1]
    if len(x) < 3 or len(w) < 3:
        return math.nan
    transposed = str(concrete[6]).lower() in ("true", "1") if len(concrete) > 6 else False
    spatial_in = x[2:]
    out_spatial = spatial_in if transposed else _conv_out_spatial(
        x, w, _ints(concrete[3]), _ints(concrete[4]), _ints(concrete[5]))
    # Per output element of a normal conv: (C_in / groups) * prod(kernel) multiply-adds; w[1] is C_in / groups.
    batch = x[0]
    if transposed:
        return 2.0 * batch * _prod(spatial_in) * w[0] * w[1] * _prod(w[2:])
    return 2.0 * batch * w[0] * _prod(out_spatial) * w[1] * _prod(w[2:])


def _convolution_backward(dims, concrete) -> float:
    # aten::convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation,
    #                            transposed, output_padding, groups, output_mask)
    grad_out, w = dims[0], dims[2]
    if len(grad_out) < 3 or len(w) < 3:
        return math.nan
    one_conv = 2.0 * grad_out[0] * w[0] * _prod(grad_out[2:]) * w[1] * _prod(w[2:])
    mask = str(concrete[10]).lower().strip("[]").split(",") if len(concrete) > 10 else ["true", "true"]
    passes = sum(flag.strip() in ("true", "1") for flag in mask[:2])  # grad of input, grad of weight
    return one_conv * passes


_FORMULAS = {
    "aten::mm": _mm,
    "aten::addmm": _addmm,
    "aten::bmm": _bmm,
    "aten::baddbmm": _baddbmm,
    "aten::convolution": _convolution,
    "aten::convolution_backward": _convolution_backward,
}


def op_flops(name: str, input_dims, concrete_inputs) -> float:
    """FLOPs of one call of op ``name``, or NaN when the op is not counted or shapes are missing."""
    formula = _FORMULAS.get(name)
    if formula is None or not input_dims:
        return math.nan
    try:
        return float(formula(input_dims, concrete_inputs or []))
    except (IndexError, TypeError, ValueError):
        return math.nan


def identities(column: pd.Series) -> np.ndarray:
    """The identity of each row's object: the trace loader shares the argument lists that repeat, so that
    equal identities mean equal lists."""
    return np.fromiter(map(id, column.to_numpy()), dtype=np.int64, count=len(column))


_FEW = 1 << 12


def signatures(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of each row's combination of ``keys`` (equal-length integer arrays), numbered in order of first
    appearance, and each code's first row: what is worked out once per distinct call, not once per row."""
    n = len(keys[0]) if keys else 0
    if not n:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int64)
    for key in keys:  # hashed, not sorted: linear in the rows; the tables sized for the few distinct calls, not n
        part, uniques = pd.factorize(key, size_hint=_FEW)
        codes = pd.factorize(codes * len(uniques) + part, size_hint=_FEW)[0]
    first = np.empty(int(codes.max()) + 1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    return codes, first


def move_convolution_flops(ops: pd.DataFrame, flops: np.ndarray) -> np.ndarray:
    """``flops`` (one value per op row) with each ``aten::convolution``'s moved to the op that spends its time.

    ``aten::convolution`` spends its time in a backend child (``aten::mkldnn_convolution`` on the
    CPU, cuDNN on the GPU): its FLOPs go to its descendant with the largest self time, so that FLOPs and
    self time sit on the same row and FLOP/s are meaningful.
    """
    values = flops.copy()
    convs = ~np.isnan(values) & (ops["name"] == "aten::convolution").to_numpy()
    if not convs.any():
        return values
    owner = _nearest_ancestor(ops.index.get_indexer(ops["op_parent"].to_numpy()), convs)
    kids = np.flatnonzero(owner >= 0)
    if not kids.size:
        return values
    self_us = ops["self_us"].to_numpy()
    order = kids[np.lexsort((-self_us[kids], owner[kids]))]  # by convolution, the longest first (stable: first seen)
    best = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    conv = owner[best]
    move = self_us[best] > self_us[conv]
    best, conv = best[move], conv[move]
    values[best] = np.where(np.isnan(values[best]), 0.0, values[best]) + values[conv]
    values[conv] = np.nan
    return values


def _nearest_ancestor(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """For each row position, the position of its nearest ancestor that is ``marked`` (-1: none); ``parent`` holds
    each row's parent position (-1: none). One vectorised step per level of the call tree."""
    owner = np.full(len(parent), -1, dtype=np.int64)
    above = parent.astype(np.int64, copy=True)
    while True:
        walking = np.flatnonzero(above >= 0)
        if not walking.size:
            return owner
        reached = above[walking]
        hit = marked[reached]
        owner[walking[hit]] = reached[hit]
        above[walking[hit]] = -1
        going = walking[~hit]
        above[going] = parent[above[going]]

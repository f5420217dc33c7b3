"""Larger batches: 2x and 4x the captured batch, so that per-call costs are shared by more samples."""

from __future__ import annotations

from advisor.hookspecs import hookimpl
from advisor.technique import Context, Estimate, Technique, Verdict, amdahl

#: ops averaging less than this per call are taken as overhead-bound (dispatch, kernel call, allocation)
OVERHEAD_BOUND_US = 50.0
#: the part of each call taken as fixed cost, the same for any batch size
FIXED_COST_US = 10.0
#: share of the free memory a larger batch may use (allocator fragmentation, other processes)
MEMORY_MARGIN = 0.9
_DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


def _parameter_bytes(context: Context) -> int:
    return int(context.workload.get("parameters") or 0) * _DTYPE_BYTES.get(context.workload.get("parameter_dtype"), 4)


def _memory(context: Context) -> tuple[float, float, str] | None:
    """(peak bytes, bytes the process could still grow by, where the numbers come from), or None."""
    memory = context.summary.get("memory") or {}
    if context.hardware.get("device") == "cuda":
        gpus = [g for g in memory.get("gpus") or [] if g.get("peak_used_bytes") and g.get("total_bytes")]
        if gpus:
            gpu = max(gpus, key=lambda g: g["peak_used_bytes"] / g["total_bytes"])
            return (gpu["peak_used_bytes"], gpu["total_bytes"] - gpu["peak_used_bytes"],
                    f"GPU {gpu.get('gpu', 0)} peak {_gib(gpu['peak_used_bytes'])} of {_gib(gpu['total_bytes'])}")
        peaks = [v for k, v in (memory.get("profiler_peak_bytes") or {}).items() if k.startswith("cuda")]
        totals = [g.get("total_memory") for g in context.hardware.get("gpus", []) if g.get("total_memory")]
        if peaks and totals:
            return (max(peaks), totals[0] - max(peaks),
                    f"CUDA allocator peak {_gib(max(peaks))} of {_gib(totals[0])}")
        return None
    peak, total = memory.get("peak_rss_bytes"), memory.get("system_memory_bytes")
    if not peak or not total:
        return None
    available = memory.get("min_available_bytes")
    if available is not None:
        free = min(available, total - peak)
        where = (f"process peak RSS {_gib(peak)} of {_gib(total)} system memory, "
                 f"{_gib(available)} still available at the tightest moment")
    else:
        free = total - peak
        where = f"process peak RSS {_gib(peak)} of {_gib(total)} system memory"
    return peak, free, where


def _fit(context: Context) -> tuple[int | None, str]:
    """The largest multiple of the batch that fits (None when unknown), and the reasoning."""
    found = _memory(context)
    if found is None:
        return None, "peak memory not measured: whether a larger batch fits is not checked"
    peak, free, where = found
    activations = max(peak - _parameter_bytes(context), 1.0)
    largest = int(1 + max(free, 0) * MEMORY_MARGIN / activations)
    return largest, (f"{where}; assuming everything but the parameters grows linearly with the batch "
                     f"({_gib(activations)} per batch), up to {largest}x the batch fits")


def _fixed_share(context: Context) -> tuple[float, float]:
    """(share of the step that is per-call fixed cost, share of the step in overhead-bound ops)."""
    fixed = bound = 0.0
    for op in context.summary.get("hot_ops", []):
        calls, self_ms, share = op.get("calls") or 0, op.get("self_time_ms") or 0.0, op.get("share") or 0.0
        if calls <= 0 or share <= 0:
            continue
        mean_us = 1000.0 * self_ms / calls
        if mean_us < OVERHEAD_BOUND_US:
            bound += share
            fixed += share * min(1.0, FIXED_COST_US / max(mean_us, 1e-9))
    return fixed, bound


class BatchSize(Technique):
    title = "Larger batches"

    def __init__(self, factor: int):
        self.factor = factor
        self.name = f"batch_size_x{factor}"
        self.title = f"Make the batch {factor}x larger"
        self.snippet = (f"loader = DataLoader(dataset, batch_size={factor} * batch_size, ...)\n"
                        f"# training: scale the learning rate with the batch (linear scaling rule), e.g.\n"
                        f"optimizer = torch.optim.SGD(model.parameters(), lr={factor} * lr, ...)  "
                        f"# with a few warm-up steps")

    def applies_to(self, context: Context) -> Verdict:
        batch = context.workload.get("batch_size")
        if not context.workload.get("captured", True) or not batch or batch <= 0:
            return Verdict(False, "no captured workload with a batch dimension (first dimension of the first input)")
        largest, why = _fit(context)
        if largest is not None and largest < self.factor:
            return Verdict(False, f"captured batch {batch}: {self.factor * batch} is expected to run out of "
                                  f"memory ({why})")
        return Verdict(True, f"captured batch {batch} -> {self.factor * batch}; {why}")

    def estimate(self, context: Context) -> Estimate:
        k = self.factor
        fixed, bound = _fixed_share(context)
        peak = (context.summary.get("memory") or {}).get("peak_bytes")
        memory = int((k - 1) * max(peak - _parameter_bytes(context), 0)) if peak else None
        if context.workload.get("training"):
            risk = (f"the learning rate usually has to follow the batch size (linear scaling rule: lr x {k}, "
                    f"with warm-up); the loss per step is not comparable with the smaller batch's, there are "
                    f"{k}x fewer optimizer steps per epoch, and BatchNorm statistics change")
        else:
            risk = "none for the results: each sample is computed the same way; the latency of one batch grows"
        return Estimate(
            speedup=round(amdahl(fixed, k), 3), memory_bytes=memory,
            basis=(f"Amdahl on samples per second: {bound:.0%} of the step in ops averaging under "
                   f"{OVERHEAD_BOUND_US:g} us per call (overhead-bound); counting ~{FIXED_COST_US:g} us of each such "
                   f"call as fixed cost, {fixed:.1%} of the step is shared by {k}x the samples, the rest grows "
                   f"linearly; memory: everything but the parameters assumed to grow linearly with the batch"),
            risk=risk)

    def apply(self, workload):
        from torch.utils._pytree import tree_flatten

        import torch

        k = self.factor
        first = next((x for x in tree_flatten((workload.args, workload.kwargs))[0]
                      if isinstance(x, torch.Tensor) and x.dim() >= 1), None)
        if first is None:
            raise ValueError("no input tensor with a batch dimension")
        batch = first.shape[0]

        def repeat(t):
            if t.dim() >= 1 and t.shape[0] == batch:
                out = t.detach().repeat(k, *[1] * (t.dim() - 1))
                return out.requires_grad_(t.requires_grad) if t.is_leaf else out
            return t

        workload.map_inputs(repeat)
        # Gradients of the outputs: repeated along the batch and divided by k, so that the repeated batch
        # gives the captured parameter gradients (as a loss averaged over the batch does); a scalar loss's
        # gradient (loss computed in forward) stays as it is.
        workload.output_grads = [g.repeat(k, *[1] * (g.dim() - 1)) / k
                                 if g is not None and g.dim() >= 1 and g.shape[0] == batch else g
                                 for g in workload.output_grads]
        workload.batch_scale = workload.batch_scale * k
        return workload


@hookimpl
def advisor_techniques(config):
    return [BatchSize(2), BatchSize(4)]

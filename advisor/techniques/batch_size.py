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


def _memory(context: Context) -> tuple[float, float, float, str] | None:
    """(peak bytes, the part of it that does not grow with the batch, bytes the process could still grow by,
    where the numbers come from), or None when no peak is known."""
    parameters = _parameter_bytes(context)
    memory = context.summary.get("memory") or {}
    if context.hardware.get("device") == "cuda":
        gpus = [g for g in memory.get("gpus") or [] if g.get("peak_used_bytes") and g.get("total_bytes")]
        if gpus:
            gpu = max(gpus, key=lambda g: g["peak_used_bytes"] / g["total_bytes"])
            return (gpu["peak_used_bytes"], parameters, gpu["total_bytes"] - gpu["peak_used_bytes"],
                    f"GPU {gpu.get('gpu', 0)} peak {_gib(gpu['peak_used_bytes'])} of {_gib(gpu['total_bytes'])}")
        peaks = [v for k, v in (memory.get("profiler_peak_bytes") or {}).items() if k.startswith("cuda")]
        totals = [g.get("total_memory") for g in context.hardware.get("gpus", []) if g.get("total_memory")]
        if peaks and totals:
            return (max(peaks), parameters, totals[0] - max(peaks),
                    f"CUDA allocator peak {_gib(max(peaks))} of {_gib(totals[0])}")
        return None
    total = memory.get("system_memory_bytes") or \
        ((context.summary.get("environment") or {}).get("host") or {}).get("memory_bytes")
    rss, available = memory.get("peak_rss_bytes"), memory.get("min_available_bytes")
    if rss and total:
        if available is not None:
            return (rss, parameters, min(available, total - rss),
                    f"process peak RSS {_gib(rss)} of {_gib(total)} system memory, "
                    f"{_gib(available)} still available at the tightest moment")
        return rss, parameters, total - rss, f"process peak RSS {_gib(rss)} of {_gib(total)} system memory"
    # While the script still runs, only the profiler's view is known: the growth of tensor memory in the window.
    allocated = (memory.get("profiler_peak_bytes") or {}).get("cpu")
    if allocated and total:
        return (allocated, 0, total - allocated,
                f"tensor memory peak {_gib(allocated)} in the window of {_gib(total)} system memory "
                "(the rest of the machine's use not known yet)")
    return None


def _measured_fit(context: Context) -> tuple[int, float, str] | None:
    """From the replayed forward and backward's peaks measured at the captured batch and at half of it
    (``batch_that_fits`` in the context's workload): the largest multiple of the batch that fits, the bytes a
    batch adds, the reasoning."""
    fits = context.workload.get("batch_that_fits") or {}
    if not fits.get("largest_batch"):
        return None
    batch, per_sample = fits["batch_size"], fits["per_sample_bytes"]
    return (fits["largest_batch"] // batch, per_sample * batch,
            f"measured {_gib(per_sample)} per sample (forward and backward at batch {batch} against half of it; "
            f"the step's peak {_gib(fits['peak_bytes'])}), {_gib(fits['headroom_bytes'])} {fits['headroom_source']}: "
            f"with {fits['margin']:.0%} of it, the largest batch that fits is {fits['largest_batch']}")


def _fit(context: Context) -> tuple[int | None, float | None, str]:
    """The largest multiple of the batch that fits (None when unknown), the memory that grows with the
    batch (None when unknown), and the reasoning: measured where the trials measured it, else from the run's
    peak, assuming all but the parameters grows linearly with the batch."""
    measured = _measured_fit(context)
    if measured is not None:
        return measured
    found = _memory(context)
    if found is None:
        return None, None, "peak memory not measured: whether a larger batch fits is not checked"
    peak, fixed, free, where = found
    growing = max(peak - fixed, 1.0)
    largest = int(1 + max(free, 0) * MEMORY_MARGIN / growing)
    return largest, growing, (f"{where}; assuming what is not parameters grows linearly with the batch "
                              f"({_gib(growing)} per batch), up to {largest}x the batch fits")


def _fixed_share(context: Context) -> tuple[float, float, float, tuple[float, float]]:
    """(share of the step taken as fixed cost per step, share in overhead-bound ops, share of the listed ops,
    (share of matmuls measured against the machine's roofs, their efficiency: achieved over attainable)).

    A matmul or convolution with a roofline (the run has the machine's measured peaks) spends the share of its time
    it does not need at its roof on per-call cost: ``1 - roofline_fraction`` of it counts as fixed. Otherwise
    ~FIXED_COST_US of each call to an op averaging under OVERHEAD_BOUND_US is fixed cost; the time outside the
    listed ops (smaller ops, Python between them) is assumed to split the same way.
    """
    fixed = bound = listed = roofed = useful = 0.0
    for op in context.summary.get("hot_ops", []):
        calls, self_ms, share = op.get("calls") or 0, op.get("self_time_ms") or 0.0, op.get("share") or 0.0
        if calls <= 0 or share <= 0:
            continue
        listed += share
        fraction = op.get("roofline_fraction")
        if op.get("flops") and fraction is not None:
            roofed += share
            useful += share * min(fraction, 1.0)
            fixed += share * (1.0 - min(fraction, 1.0))
            continue
        mean_us = 1000.0 * self_ms / calls
        if mean_us < OVERHEAD_BOUND_US:
            bound += share
            fixed += share * min(1.0, FIXED_COST_US / max(mean_us, 1e-9))
    return (fixed / listed if listed > 0 else 0.0), bound, listed, (roofed, useful / roofed if roofed else 0.0)


class BatchSize(Technique):
    """The captured batch repeated ``factor`` times; speedups compare samples per second."""

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
        largest, _, why = _fit(context)
        if largest is not None and largest < self.factor:
            return Verdict(False, f"captured batch {batch}: {self.factor * batch} would not fit ({why})")
        return Verdict(True, f"captured batch {batch} -> {self.factor * batch}; {why}")

    def estimate(self, context: Context) -> Estimate:
        k = self.factor
        fixed, bound, listed, (roofed, efficiency) = _fixed_share(context)
        _, growing, _ = _fit(context)
        memory = int((k - 1) * growing) if growing else None
        if context.workload.get("training"):
            risk = (f"the learning rate usually has to follow the batch size (linear scaling rule: lr x {k}, "
                    f"with warm-up); the loss per step is not comparable with the smaller batch's, there are "
                    f"{k}x fewer optimizer steps per epoch, and BatchNorm statistics (if any) change")
        else:
            risk = "none for the results: each sample is computed the same way; the latency of one batch grows"
        return Estimate(
            speedup=round(amdahl(fixed, k), 3), memory_bytes=memory,
            basis=(f"Amdahl on samples per second: {roofed:.0%} of the step in matmuls/convolutions running at "
                   f"{efficiency:.0%} of what the machine's measured roofs allow their shapes, the rest of their time "
                   f"counted as per-call cost; "
                   f"{bound:.0%} of the step in ops averaging under "
                   f"{OVERHEAD_BOUND_US:g} us per call (overhead-bound); counting ~{FIXED_COST_US:g} us of each such "
                   f"call as fixed cost, and the {max(1 - listed, 0):.0%} of the step outside the listed ops as alike, "
                   f"{fixed:.0%} of the step is shared by {k}x the samples and the rest grows linearly; memory: "
                   + ("the measured bytes per sample" if _measured_fit(context) else
                      "all but the parameters assumed to grow linearly with the batch")),
            risk=risk)

    def apply(self, workload):
        k = self.factor
        inputs: list = []
        workload.map_inputs(lambda t: inputs.append(t) or t)  # the input tensors, in the order describe() lists
        if not inputs or inputs[0].dim() == 0:
            raise ValueError("the first input tensor has no batch dimension")
        batch = inputs[0].shape[0]

        def repeat(t):
            if t.dim() >= 1 and t.shape[0] == batch:
                out = t.detach().repeat(k, *[1] * (t.dim() - 1))
                return out.requires_grad_(t.requires_grad) if t.is_leaf else out
            return t

        workload.map_inputs(repeat)
        # The gradients that reached the outputs: repeated along the batch, so that the k copies of each sample
        # together give k times the captured parameter gradients, as k batches summed would. A scalar's gradient
        # (a loss computed in forward, averaged over the batch) is multiplied by k to the same end.
        workload.map_output_grads(lambda g: g.repeat(k, *[1] * (g.dim() - 1)) if g.dim() >= 1 and g.shape[0] == batch
                                  else g * k if g.dim() == 0 else g)
        workload.batch_scale = workload.batch_scale * k
        return workload


@hookimpl
def advisor_techniques(config):
    return [BatchSize(2), BatchSize(4)]

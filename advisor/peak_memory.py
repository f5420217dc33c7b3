"""Peak memory of a replayed step, measured on the CPU (the profiler's allocation events) and on a GPU (the CUDA
allocator's peak), for the trials: what a technique costs or saves in memory beside what it gains in time.

A workload's peak is what it holds as the step starts (its model's parameters, buffers and gradients, and the
inputs of one step) plus the most the allocator held beyond that while the optimizer is built and two steps
run (the first creates the optimizer's state). Measured on one untimed replay of each side, never inside the
timed runs.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch

from advisor.workload import Workload, tensor_leaves

#: steps run while the peak is measured: the first creates lazy state (the optimizer's moments), the second is steady
STEPS = 2


def on_cuda(workload: Workload) -> bool:
    """Whether the workload's model is on a GPU."""
    return any(p.is_cuda for p in workload.model.parameters())


def allocation_peak(run: Callable[[], object], cuda: bool = False) -> int:
    """The most bytes allocated beyond those held when ``run`` starts, at any point while it runs.

    On a GPU: the CUDA allocator's peak (``torch.cuda.max_memory_allocated`` after resetting it); on the CPU:
    the running sum of the profiler's allocation and free events (``profile_memory``): the tensors torch
    allocates and frees (those allocated before and freed while it runs count as negative)."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return max(torch.cuda.max_memory_allocated() - held, 0)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU),
                    key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def resident_bytes(workload: Workload) -> int:
    """Bytes the workload holds between steps: its model's parameters, buffers and gradients (each storage once),
    and the inputs of its first step's calls."""
    tensors = list(workload.model.parameters()) + list(workload.model.buffers())
    tensors += [p.grad for p in workload.model.parameters() if p.grad is not None]
    for call in workload.steps[0]:
        tensors += tensor_leaves((call.args, call.kwargs))
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[(t.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def step_peak(workload: Workload) -> int:
    """The peak bytes of the workload's replayed step (see the module's docstring); runs it ``STEPS`` times."""
    resident = resident_bytes(workload)

    def run():
        step = workload.step_function(hold_weights=True)
        for _ in range(STEPS):
            step()
    devices = sorted({p.device.index or 0 for p in workload.model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        return resident + allocation_peak(run, cuda=on_cuda(workload))


def peak_fields(baseline_peak: int | None, variant_peak: int | None, source: str) -> dict:
    """The measurement's memory fields: ``memory_bytes`` (the variant's peak less the baseline's), ``peak_bytes``
    (the variant's), ``baseline_peak_bytes`` and ``memory_source`` (how they were measured)."""
    both = baseline_peak is not None and variant_peak is not None
    return {"memory_bytes": variant_peak - baseline_peak if both else None, "peak_bytes": variant_peak,
            "baseline_peak_bytes": baseline_peak, "memory_source": source}


def source(cuda: bool) -> str:
    """How a peak is measured, in words."""
    return "CUDA allocator peak" if cuda else "profiler allocation events"


def step_peaks(baseline: Workload, variant: Workload) -> dict:
    """The memory fields (:func:`peak_fields`) of a variant against the baseline (each replayed ``STEPS`` times)."""
    return peak_fields(step_peak(baseline), step_peak(variant), source(on_cuda(baseline)))


def call_peaks(baseline: Callable[[], object], variant: Callable[[], object]) -> dict:
    """The memory fields of a technique's own benchmark: one untimed call of each, in this process only."""
    return peak_fields(allocation_peak(baseline), allocation_peak(variant),
                       source(False) + " in this process (worker processes not counted)")


#: share of the free memory a larger batch may use (allocator fragmentation, other processes)
MARGIN = 0.9


def headroom() -> tuple[int, str]:
    """Bytes this process could still allocate, and where that comes from: the free memory of the current CUDA
    device, else the system's available memory (psutil)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        return int(free), f"free on the GPU ({total / 2**30:.1f} GiB in all)"
    import psutil

    return int(psutil.virtual_memory().available), "available system memory"


def _batch_cut(workload: Workload, batch: int, keep: int) -> Workload:
    """A copy whose inputs and output gradients with ``batch`` rows keep their first ``keep``."""
    def cut(t):
        if t.dim() == 0 or t.shape[0] != batch:
            return t
        return t.detach()[:keep].clone().requires_grad_(t.requires_grad)
    smaller = workload.clone()
    smaller.map_inputs(cut)
    smaller.map_output_grads(cut)
    return smaller


def calls_peak(workload: Workload) -> int:
    """The most bytes the first captured step's model calls (forward and, training, backward) allocate beyond what
    they start with: the part of the step that grows with the batch (the optimizer's does not)."""
    devices = sorted({p.device.index or 0 for p in workload.model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        return allocation_peak(lambda: workload.run_calls(0), cuda=on_cuda(workload))


def batch_that_fits(workload: Workload) -> dict:
    """The step's measured memory per sample (the peak of its forward and backward at the captured batch against
    half of it), the headroom, and the largest batch that fits in ``MARGIN`` of it (the step's peak kept apart);
    ``why`` instead where it cannot be measured."""
    inputs = tensor_leaves((workload.args, workload.kwargs))
    batch = inputs[0].shape[0] if inputs and inputs[0].dim() else 0
    if batch < 2:
        return {"why": "no batch dimension of two samples or more in the first input"}
    full, half = calls_peak(workload.clone()), calls_peak(_batch_cut(workload, batch, batch // 2))
    per_sample = (full - half) / (batch - batch // 2)
    if per_sample <= 0:
        return {"why": f"the peak did not grow with the batch ({half} bytes at {batch // 2}, {full} at {batch})"}
    free, where = headroom()
    return {"batch_size": batch, "peak_bytes": step_peak(workload.clone()), "per_sample_bytes": int(per_sample),
            "headroom_bytes": free, "headroom_source": where, "margin": MARGIN,
            "largest_batch": batch + int(free * MARGIN / per_sample)}

"""What the roofline shows: matmuls far below the machine's measured peak because their shapes are small, a
memory-bound step that moves its activations in float32, and a GPU step with a low MFU and idle gaps."""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.format import pct, rate
from advisor.hookspecs import hookimpl

#: matmuls and convolutions under this fraction of the compute peak count as far below it, when their calls
#: are small: under this many FLOPs each (a tenth of a millisecond or so at a CPU's peak)
FAR_BELOW, SMALL_CALL_FLOPS = 0.25, 16e6
#: share of the step in such ops (or in memory-bound float32 ops) worth a finding
MIN_SHARE = 0.1
#: a GPU step under this MFU, with the GPU idle at least this share of it, wastes the device
LOW_MFU, IDLE_SHARE = 0.2, 0.4
#: a gap between kernels at least this long (µs) is an idle gap, not a launch
GAP_US = 50.0

FIX_SMALL_MATMULS = """\
# give each matmul more rows: a larger batch (scale the learning rate with it),
loader = DataLoader(dataset, batch_size=2 * batch_size, ...)
# or fewer, wider layers in place of many narrow ones"""
FIX_MEMORY_BOUND = """\
with torch.autocast(device_type=device, dtype=torch.bfloat16):   # 16-bit activations
    loss = loss_fn(model(inputs), targets)
model = torch.compile(model)   # or fuse the elementwise ops: fewer passes over memory"""
FIX_GPU_GAPS = """\
# keep the GPU fed: prepare batches ahead and launch fewer, larger kernels
loader = DataLoader(dataset, ..., num_workers=4, pin_memory=True)
model = torch.compile(model, mode="reduce-overhead")   # CUDA graphs: no gaps between launches"""


def _share(run: RunFacts, op: dict) -> float:
    """The op's share of the step: of its GPU time on a GPU, else of its self time."""
    if run.gpu:
        return run.time_share((op.get("device_time_ms") or 0.0) * 1000.0)
    return op.get("share") or 0.0


def _ops(run: RunFacts, **where) -> list[dict]:
    return [op for op in run.summary.get("hot_ops") or []
            if all(op.get(k) == v if not callable(v) else v(op.get(k)) for k, v in where.items())]


def _listed(ops: list[dict], detail) -> str:
    return "; ".join(f"{op['name']} ({detail(op)})" for op in ops[:3])


def _of_peak(op: dict) -> float | None:
    """The op's achieved FLOP/s over the compute peak of its kind and dtype."""
    if not op.get("flops") or not op.get("peak_flops_per_s") or op.get("roofline_fraction") is None:
        return None
    return op["roofline_fraction"] * op["attainable_flops_per_s"] / op["peak_flops_per_s"]


def matmuls_below_roof(run: RunFacts) -> Finding | None:
    low = [op for op in _ops(run) if op.get("flops") and op["flops"] / max(op["calls"], 1) < SMALL_CALL_FLOPS
           and (_of_peak(op) if _of_peak(op) is not None else 1.0) < FAR_BELOW]
    share = sum(_share(run, op) for op in low)
    if share < MIN_SHARE:
        return None
    evidence = (f"{share:.0%} of the step in matmuls and convolutions running at under {FAR_BELOW:.0%} of this "
                "machine's measured peak: "
                + _listed(low, lambda op: f"{rate(op['peak_flops_per_s'] * _of_peak(op))} of "
                                          f"{rate(op['peak_flops_per_s'])} on {op.get('shapes') or 'no shapes'}, "
                                          f"{op['flops'] / op['calls'] / 1e6:.1f} MFLOP a call, "
                                          f"{op['calls'] / run.steps:.0f} calls per step")
                + ". On small matrices each call's fixed cost and reading the weights take the time; more rows per "
                  "call (a larger batch) raise the work done per byte and per call.")
    return Finding(id="matmuls_below_roof", title="Matmuls run far below the machine's peak: their shapes are small",
                   evidence=evidence, severity=share, fix=FIX_SMALL_MATMULS, technique="batch_size_x2")


def memory_bound_float32(run: RunFacts) -> Finding | None:
    ops = _ops(run, bound="memory", dtype="float32")
    share = sum(_share(run, op) for op in ops)
    if share < MIN_SHARE or (run.summary.get("roofline") or {}).get("bound") != "memory":
        return None
    bandwidth = ((run.summary.get("hardware") or {}).get("peaks") or {}).get("bytes_per_s")
    evidence = (f"{share:.0%} of the step in memory-bound ops on float32 tensors, the largest share of the step "
                f"(the memory's measured bandwidth: {rate(bandwidth, 'B/s')}): "
                + _listed(ops, lambda op: f"{pct(_share(run, op))} of the step, {pct(op.get('roofline_fraction'))} "
                                          "of the bandwidth")
                + ". Their time is the bytes they move: activations in 16 bits move half as many.")
    return Finding(id="memory_bound_float32", title="The step is memory-bound on float32 activations",
                   evidence=evidence, severity=share, fix=FIX_MEMORY_BOUND, technique="dtype")


def _idle_gaps(run: RunFacts) -> tuple[int, float]:
    """The gaps of at least :data:`GAP_US` between GPU work: how many, and their total µs."""
    import numpy as np

    work = run.device.sort_values("ts")
    if work.empty:
        return 0, 0.0
    ends = np.maximum.accumulate((work["ts"] + work["dur"]).to_numpy())
    gaps = work["ts"].to_numpy()[1:] - ends[:-1]
    gaps = gaps[gaps >= GAP_US]
    return len(gaps), float(gaps.sum())


def gpu_low_mfu(run: RunFacts) -> Finding | None:
    roof = run.summary.get("roofline") or {}
    if not run.gpu or roof.get("mfu") is None or roof["mfu"] >= LOW_MFU:
        return None
    count, idle_us = _idle_gaps(run)
    idle = run.time_share(idle_us)
    if idle < IDLE_SHARE:
        return None
    return Finding(
        id="gpu_low_mfu", title="The GPU reaches a small part of its peak, and waits between kernels",
        evidence=(f"MFU {pct(roof['mfu'])}: the step's {roof['model_flops_per_step'] / 1e9:.2f} GFLOP run at "
                  f"{rate(roof['achieved_flops_per_s'])} against the {rate(roof['peak_flops_per_s'])} measured on this "
                  f"GPU in {roof.get('dtype')}; {count / run.steps:.0f} gaps per step of {GAP_US:.0f} µs or more "
                  f"leave it idle {idle:.0%} of the step."),
        severity=idle, fix=FIX_GPU_GAPS, technique="compile")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (matmuls_below_roof(run), memory_bound_float32(run), gpu_low_mfu(run)) if f is not None]

"""torch.compile: trace the model into graphs and let Inductor fuse its elementwise ops into generated kernels."""

from __future__ import annotations

import os
import shutil
import sys
import types

from advisor.hookspecs import hookimpl
from advisor.technique import Context, Estimate, Technique, Verdict, amdahl

# Ops that already run as one library kernel each (oneDNN / MKL / cuBLAS / cuDNN): fusion does not speed them up.
MATMUL_OPS = ("mm", "conv", "linear", "scaled_dot_product", "baddbmm", "matmul", "attention")
#: ops averaging less than this per call are dispatch-bound: traced and fused, their per-call cost goes away
OVERHEAD_BOUND_US = 50.0
_LOCAL_OVERHEAD = 2.0
# What fusion does to the other non-matmul ops (elementwise, normalisation, reductions), by device.
_LOCAL_CPU_FP32, _LOCAL_CPU_UPPER, _LOCAL_GPU = 1.0, 1.3, 2.0
_MEASURED = ("measured on a 2-core CPU with torch 2.13: compiling the examples took 13-39 s cold, and in fp32 "
             "it gained nothing or lost on training (0.75x on transformer training)")


def _shares(context: Context) -> tuple[float, float, float]:
    """(overhead-bound share, share of other non-matmul ops in forward/backward, share of the optimizer step).

    The overhead-bound share counts the listed ops the roofline classes overhead-bound (the run has the machine's
    measured peaks), else those averaging under OVERHEAD_BOUND_US per call, and the time outside the listed ops
    (smaller ops, Python between them) in the same proportion; with a roofline, the other ops are the memory-bound
    ones only (fusion saves passes over memory, not arithmetic).
    """
    listed = small = matmul = 0.0
    for op in context.summary.get("hot_ops", []):
        share, calls, bound = op.get("share") or 0.0, op.get("calls") or 0, op.get("bound")
        listed += share
        if any(name in op["name"] for name in MATMUL_OPS) or bound == "compute":
            matmul += share
        elif bound == "overhead" or (bound is None and calls > 0
                                     and 1000.0 * (op.get("self_time_ms") or 0.0) / calls < OVERHEAD_BOUND_US):
            small += share
    breakdown = context.summary.get("breakdown") or {}
    optimizer = (breakdown.get("optimizer") or {}).get("share") or 0.0
    other = listed - matmul - small
    if breakdown.get("forward") is not None:  # the optimizer's step is not compiled, only the model
        model = (breakdown.get("forward") or {}).get("share", 0.0) + (breakdown.get("backward") or {}).get("share", 0.0)
        other = min(other, max(model - matmul - small, 0.0))
    overhead = min(small / listed, 1.0 - optimizer) if listed > 0 else 0.0
    return overhead, max(other, 0.0), optimizer


def _roofline(context: Context) -> bool:
    return any(op.get("bound") for op in context.summary.get("hot_ops", []))


def _how_classed(context: Context) -> str:
    if _roofline(context):
        return "ops far below the machine's measured roofs on calls too small to matter at them"
    return f"ops averaging under {OVERHEAD_BOUND_US:g} us per call"


def _others(context: Context) -> str:
    return "memory-bound non-matmul ops (against the measured bandwidth)" if _roofline(context) \
        else "other non-matmul ops"


def _check(context: Context) -> str | None:
    """Why torch.compile cannot be tried here, or None (from the context alone: for a run that measures nothing,
    advisor's own process asks, where importing torch would cost seconds)."""
    if sys.version_info >= (3, 14):
        return f"torch.compile does not support Python {sys.version_info.major}.{sys.version_info.minor} yet"
    if not context.workload.get("captured", True) or not context.workload.get("model"):
        return "no captured workload to compile"
    if context.workload.get("model") == "OptimizedModule":
        return "the model is already compiled"
    if context.hardware.get("device") != "cuda" and not any(
            shutil.which(c) for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c):
        return "no C++ compiler found ($CXX, c++, g++, clang++): Inductor needs one to generate CPU kernels"
    return None


def _fresh(fn):
    """The same function with a code object of its own: torch.compile keeps its cache on the code object, so
    every copy compiles anew (a trial's first variant step then includes a compile) without resetting the
    process's other compiled code. Inductor's caches stay warm, so this compile is still cheaper than the
    first one in a fresh process."""
    if not isinstance(fn, types.FunctionType):
        return fn
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
    return copy


class Compile(Technique):
    name = "compile"
    title = "Compile the model with torch.compile"

    def applies_to(self, context: Context) -> Verdict:
        why_not = _check(context)
        if why_not:
            return Verdict(False, why_not)
        overhead, other, _ = _shares(context)
        return Verdict(True, f"{overhead:.0%} of the step overhead-bound (many small ops) and {other:.0%} in other "
                             f"non-matmul ops, which Inductor can trace and fuse; but {_MEASURED}")

    def estimate(self, context: Context) -> Estimate:
        overhead, other, optimizer = _shares(context)
        cuda = context.hardware.get("device") == "cuda"
        dtype = context.workload.get("parameter_dtype") or "float32"
        local = _LOCAL_GPU if cuda else _LOCAL_CPU_FP32 if dtype == "float32" else _LOCAL_CPU_UPPER
        rest = max(1.0 - overhead - other, 0.0)
        speedup = 1.0 / (rest + overhead / _LOCAL_OVERHEAD + other / local)
        if cuda:
            fusion = f"fused on the GPU ~{local:g}x faster (fewer kernels, fewer passes over memory)"
        elif local == 1.0:
            upper = amdahl(other, _LOCAL_CPU_UPPER)
            fusion = (f"counted as no gain on a CPU in fp32 (the upper bound, if fusion made them "
                      f"{_LOCAL_CPU_UPPER:g}x faster, would be {upper:.2f}x)")
        else:
            fusion = f"fused ~{local:g}x faster at most ({dtype} on the CPU)"
        return Estimate(
            speedup=round(speedup, 3),
            basis=(f"{overhead:.0%} of the step overhead-bound ({_how_classed(context)}, and the time outside the "
                   f"listed ops alike), ~{_LOCAL_OVERHEAD:g}x faster once traced "
                   f"into fewer, fused calls; {other:.0%} in {_others(context)} of forward/backward, {fusion}; "
                   f"matmuls/convolutions already run as library kernels; the optimizer step ({optimizer:.0%}) "
                   f"is not compiled; {_MEASURED}; compiling costs seconds to tens of seconds before the first "
                   "step (the measured setup is a compile in a process that has compiled before, so a fresh "
                   "process pays more) and again whenever input shapes change"),
            risk="small: fused kernels reorder floating-point operations (~1e-6 relative in fp32); graph breaks "
                 "or recompilations on data-dependent Python code")

    def apply(self, workload):
        import torch

        # The model keeps its class (through a subclass with a compiled forward) and so its parameter names,
        # which the optimizer and the comparison of gradients go by; torch.compile(model) would prefix them.
        cls = type(workload.model)
        workload.model.__class__ = type(cls.__name__, (cls,), {"forward": torch.compile(_fresh(cls.forward)),
                                                              "__module__": cls.__module__,
                                                              "__qualname__": cls.__qualname__})
        return workload

    snippet = """model = torch.compile(model)   # the first steps compile (seconds to minutes): time steady steps
for inputs, targets in loader:
    loss = loss_fn(model(inputs), targets)
    ..."""


@hookimpl
def advisor_techniques(config):
    return [Compile()]

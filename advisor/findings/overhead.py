"""Overhead-bound steps: many tiny ops, with more time spent launching them than computing."""

from __future__ import annotations

from advisor.finding import BACKWARD_EVENT, FORWARD_EVENT, Finding, RunFacts
from advisor.hookspecs import hookimpl

#: median duration of the top-level ops (CPU; the median, as a descheduled op can last milliseconds)
#: or mean duration of the kernels (GPU) under which a step counts as made of tiny ops. An op's duration on the
#: CPU includes the profiler's cost of recording it and its sub-ops: a 16-wide ``aten::linear`` that takes
#: ~10 µs plain lasts 35-47 µs in the trace on an idle 2-core machine, more on a busy one.
TINY_OP_US, TINY_KERNEL_US = 100.0, 20.0
#: share of the step lost to overhead (between ops on the CPU, GPU idle on a GPU) worth a finding
OVERHEAD_SHARE = 0.25

FIX = """\
model = torch.compile(model)                         # fuses the small ops into few kernels
# on a GPU, also replay the launches as one graph:  torch.compile(model, mode="reduce-overhead")
# or give each op more work: larger batches, fewer and wider layers"""


def _achieved(run: RunFacts) -> str:
    ops = [op for op in run.summary.get("hot_ops") or [] if op.get("gflops_per_s")]
    if not ops:
        return ""
    best = max(ops, key=lambda op: op["self_time_ms"])
    return f"; {best['name']} reaches {best['gflops_per_s']:.1f} GFLOP/s"


def overhead_bound(run: RunFacts) -> Finding | None:
    if run.gpu:
        kernels = run.device[run.device["cat"] == "kernel"]
        if kernels.empty:
            return None
        mean_us, idle = kernels["dur"].mean(), 1.0 - run.time_share(kernels["dur"].sum())
        if mean_us >= TINY_KERNEL_US or idle < OVERHEAD_SHARE:
            return None
        evidence = (f"{len(kernels) / run.steps:.0f} kernels per step averaging {mean_us:.1f} µs; the GPU is idle "
                    f"{idle:.0%} of the step, waiting for the host to launch the next one{_achieved(run)}.")
        return Finding(id="overhead_bound", title="The step is launch-bound: many tiny kernels", evidence=evidence,
                       severity=idle, fix=FIX, technique="compile")
    top = run.ops[run.ops["op_parent"] < 0]
    compute = top[run.inside(top, FORWARD_EVENT) | run.inside(top, BACKWARD_EVENT)]
    if compute.empty:
        return None
    phase_us = run.phase_share("forward", "backward") * run.window_us
    median_us = compute["dur"].median()
    between = max(phase_us - compute["dur"].sum(), 0.0)
    tiny = compute.loc[compute["dur"] < TINY_OP_US, "dur"].sum()
    overhead = run.time_share(between + tiny)
    if median_us >= TINY_OP_US or overhead < OVERHEAD_SHARE:
        return None
    return Finding(
        id="overhead_bound", title="The step is overhead-bound: many tiny ops",
        evidence=(f"{len(compute) / run.steps:.0f} ops per step in forward/backward, {median_us:.0f} µs each "
                  f"(median); {run.time_share(between):.0%} of the step passes "
                  f"between ops (Python, module calls, dispatch){_achieved(run)}."),
        severity=overhead, fix=FIX, technique="compile")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (overhead_bound(run),) if f is not None]

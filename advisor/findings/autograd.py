"""Inference run with autograd on: forward passes that record a graph no backward pass ever uses."""

from __future__ import annotations

from advisor.finding import BACKWARD_EVENT, Finding, RunFacts
from advisor.hookspecs import hookimpl

FIX = """\
with torch.inference_mode():   # or torch.no_grad()
    output = model(batch)"""


def inference_with_grad(run: RunFacts) -> Finding | None:
    forward = run.facts.get("forward") or {}
    with_grad, calls = forward.get("with_grad") or 0, forward.get("outermost_calls") or 0
    backward = run.host["name"].astype(str).eq(BACKWARD_EVENT).any()
    if not with_grad or backward:
        return None
    site = forward.get("with_grad_site")
    where = f", called at {run.source_of(site)}" if site else ""
    return Finding(
        id="inference_with_grad", title="Inference runs with autograd on",
        evidence=(f"{with_grad} of the {calls} forward passes in the {run.steps} recorded steps ran with grad mode on "
                  f"and parameters that require grad{where}, and no backward pass followed: each one recorded an "
                  "autograd graph and kept its activations alive for nothing."),
        severity=run.phase_share("forward") * with_grad / max(calls, 1), fix=FIX)


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (inference_with_grad(run),) if f is not None]

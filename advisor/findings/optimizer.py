"""The optimizer: a per-parameter Python loop where a fused or multi-tensor kernel exists, and
gradients zeroed in place instead of set to None."""

from __future__ import annotations

from advisor.finding import ZERO_GRAD_EVENT, Finding, RunFacts
from advisor.format import human_bytes
from advisor.hookspecs import hookimpl

#: optimizer share of the step above which its for-loop implementation is worth a finding
OPTIMIZER_SHARE = 0.05
_ZEROING_OPS = ("aten::zero_", "aten::_foreach_zero_")


def _loops(optimizer: dict) -> bool:
    """True when the optimizer runs its per-parameter loop: neither fused nor foreach asked for, and
    not on CUDA alone (where torch picks foreach by itself)."""
    if optimizer.get("fused") or optimizer.get("foreach"):
        return False
    return optimizer.get("foreach") is False or optimizer.get("devices") != ["cuda"]


def for_loop_optimizer(run: RunFacts) -> Finding | None:
    share = run.phase_share("optimizer")
    looping = [o for o in run.facts.get("optimizers") or [] if o.get("steps") and _loops(o)
               and (o.get("accepts_fused") or o.get("accepts_foreach"))]
    if not looping or share < OPTIMIZER_SHARE:
        return None
    opt = max(looping, key=lambda o: o.get("parameters") or 0)
    option = "fused=True" if opt.get("accepts_fused") else "foreach=True"
    ms = (run.summary.get("breakdown") or {})["optimizer"]["ms"]
    where = f" (stepped at {run.source_of(opt['site'])})" if opt.get("site") else ""
    return Finding(
        id="optimizer_for_loop", title=f"{opt['class']} updates its parameters one tensor at a time",
        evidence=(f"{opt['class']}(foreach={opt.get('foreach')}, fused={opt.get('fused')}) on "
                  f"{'/'.join(opt.get('devices') or ['?'])} over {opt.get('parameters')} parameter tensors{where}: "
                  f"optimizer.step() takes {ms:.2f} ms per step ({share:.0%}), running its per-parameter "
                  "Python loop."),
        severity=share,
        fix=f"optimizer = torch.optim.{opt['class']}(model.parameters(), ..., {option})")


def zero_grad_in_place(run: RunFacts) -> Finding | None:
    ops = run.ops
    zeroing = ops[ops["name"].astype(str).isin(_ZEROING_OPS)]
    zeroing = zeroing[run.inside(zeroing, ZERO_GRAD_EVENT)]
    if zeroing.empty:
        return None
    grads = sum(o.get("parameter_bytes") or 0 for o in run.facts.get("optimizers") or [])
    # memory at stake: the gradients against them plus what a step allocates at its peak
    peaks = ((run.summary.get("memory") or {}).get("profiler_peak_bytes") or {}).values()
    held = grads / (grads + max(peaks)) if grads and peaks else 0.0
    kept = f"keeps their memory ({human_bytes(grads)}) between steps" if grads else "keeps their memory between steps"
    return Finding(
        id="zero_grad_set_to_none_false", title="Gradients are zeroed in place instead of freed",
        evidence=(f"optimizer.zero_grad() ran {len(zeroing) / run.steps:.0f} "
                  f"{'/'.join(sorted(set(zeroing['name'].astype(str))))} calls per step"
                  f"{' at ' + run.source(zeroing) if run.source(zeroing) else ''}: set_to_none=False writes zeros "
                  f"into every gradient, {kept}, and backward then adds into them."),
        severity=max(run.time_share(zeroing["dur"].sum()), held),
        fix="optimizer.zero_grad(set_to_none=True)   # the default since torch 2.0")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (for_loop_optimizer(run), zero_grad_in_place(run)) if f is not None]

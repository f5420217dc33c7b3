"""torch.compile in the profiled steps: graph breaks that split the model into several graphs with
eager Python between them, and recompilations during the steps."""

from __future__ import annotations

from advisor.finding import FORWARD_EVENT, Finding, RunFacts
from advisor.hookspecs import hookimpl

REGION = "Torch-Compiled Region"
#: Dynamo's own events among the top-level ops: its cache lookups, a compilation (``dynamo``), the regions
_DYNAMO = ("TorchDynamo", "dynamo", REGION)


def _counters(run: RunFacts) -> tuple[dict, dict]:
    compiled = run.facts.get("compile") or {}
    return compiled.get("start") or {}, compiled.get("end") or {}


def graph_breaks(run: RunFacts) -> Finding | None:
    _, end = _counters(run)
    breaks = end.get("graph_breaks") or 0
    if not breaks:
        return None
    host = run.host
    # a compiled region is an op (torch 2.13: the ops it runs are its children) or an annotation (older torch)
    regions = host[host["cat"].isin(("cpu_op", "user_annotation")) & host["name"].astype(str).str.startswith(REGION)]
    top = run.ops[run.ops["op_parent"] < 0]
    forward = top[run.inside(top, FORWARD_EVENT)]
    eager = forward[~forward["name"].astype(str).str.startswith(_DYNAMO) & ~run.inside(forward, REGION)]
    per_step = len(eager) / run.steps
    reasons = "; ".join(end.get("break_reasons") or [])
    return Finding(
        id="compile_graph_breaks", title="torch.compile breaks the model into several graphs",
        evidence=(f"torch._dynamo counted {breaks} graph break{'s' if breaks != 1 else ''}"
                  + (f" ({reasons})" if reasons else "")
                  + f"; each step runs {len(regions) / run.steps:.0f} compiled regions, with "
                  f"{per_step:.0f} op{'' if round(per_step) == 1 else 's'} per step running eagerly between them."),
        severity=max(run.time_share(eager["dur"].sum()), 0.01),
        fix=("torch._dynamo.explain(model)(*inputs)   # lists each break and its reason\n"
             "# then move the breaking code (print, .item(), data-dependent Python) out of forward;\n"
             "# torch.compile(model, fullgraph=True) turns any break into an error"))


def recompiles(run: RunFacts) -> Finding | None:
    start, end = _counters(run)
    new = (end.get("graphs") or 0) - (start.get("graphs") or 0)
    steps_between = (run.facts.get("compile") or {}).get("steps_between") or 0
    if not start or new <= 0:
        return None
    steps = run.summary.get("steps") or {}
    median, mean = steps.get("median_ms") or 0.0, steps.get("mean_ms") or 0.0
    return Finding(
        id="compile_recompiles", title="torch.compile recompiles during the steps",
        evidence=(f"{new} graph{'s were' if new != 1 else ' was'} compiled during the last {steps_between} "
                  "recorded steps "
                  f"(the guards of the compiled code failed, typically on a new input shape); steps took up to "
                  f"{steps.get('max_ms') or 0:.1f} ms against a median of {median:.1f} ms."),
        severity=max((mean - median) / mean if mean else 0.0, 0.01),
        fix=("torch.compile(model, dynamic=True)        # one graph for varying shapes\n"
             "torch._dynamo.mark_dynamic(x, 0)          # or mark the varying dimension\n"
             "# TORCH_LOGS=recompiles shows the failing guard"))


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (graph_breaks(run), recompiles(run)) if f is not None]

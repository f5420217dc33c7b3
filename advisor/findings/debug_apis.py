"""Debugging switches left on in a run that is not debugging: autograd anomaly detection,
deterministic algorithms on a GPU, and ``CUDA_LAUNCH_BLOCKING``."""

from __future__ import annotations

from advisor.finding import BACKWARD_EVENT, Finding, RunFacts
from advisor.hookspecs import hookimpl

#: ops whose deterministic variants are slower (cuDNN algorithm choice, atomics replaced by sorting)
_DETERMINISM_BOUND = ("convolution", "index_add", "index_put", "scatter", "embedding_dense_backward", "cumsum")


def _on_steps(run: RunFacts, mode: str) -> int:
    return int((run.facts.get("modes_on_steps") or {}).get(mode, 0))


def _of_steps(run: RunFacts, n: int) -> str:
    return f"{n} of the {run.facts.get('recorded_steps') or run.steps} recorded steps"


def anomaly_detection(run: RunFacts) -> Finding | None:
    steps = _on_steps(run, "anomaly_detection")
    if not steps:
        return None
    checks = run.ops[run.ops["name"].astype(str).isin(("aten::isnan", "aten::any", "aten::ne"))
                     & run.inside(run.ops, BACKWARD_EVENT)]
    checked = f"; backward ran {len(checks) / run.steps:.0f} NaN-check ops per step" if len(checks) else ""
    return Finding(
        id="anomaly_detection", title="Autograd anomaly detection is on",
        evidence=(f"torch.is_anomaly_enabled() was True in {_of_steps(run, steps)}: every forward op saves "
                  f"its Python stack and every backward op's output is checked for NaN{checked}."),
        severity=run.phase_share("forward", "backward"),
        fix=("# remove, or keep for debugging runs only:\n"
             "torch.autograd.set_detect_anomaly(False)   # and no `with torch.autograd.detect_anomaly():`"))


def deterministic_algorithms(run: RunFacts) -> Finding | None:
    steps = max(_on_steps(run, "deterministic_algorithms"), _on_steps(run, "cudnn_deterministic"))
    if not steps or not run.gpu:
        return None
    ops = run.ops[run.ops["name"].astype(str).str.contains("|".join(_DETERMINISM_BOUND))]
    bound = ops[ops["op_parent"] < 0]
    return Finding(
        id="deterministic_algorithms", title="Deterministic algorithms are forced on the GPU",
        evidence=(f"torch.use_deterministic_algorithms(True) or cudnn.deterministic was on in "
                  f"{_of_steps(run, steps)}: cuDNN may only pick deterministic convolution algorithms and "
                  f"scatter/index ops avoid atomics ({len(bound) / run.steps:.0f} such ops per step"
                  f"{', e.g. ' + ', '.join(sorted(set(bound['name'].astype(str)))[:3]) if len(bound) else ''})."),
        severity=max(run.time_share(bound["dur"].sum()), 0.01),
        fix=("# for runs that need no bit-exact reproducibility:\n"
             "torch.use_deterministic_algorithms(False)\n"
             "torch.backends.cudnn.deterministic = False"))


def cuda_launch_blocking(run: RunFacts) -> Finding | None:
    steps = _on_steps(run, "cuda_launch_blocking")
    if not steps or not run.gpu:
        return None
    host = run.host
    launches = host[(host["cat"] == "cuda_runtime") & host["name"].astype(str).str.startswith("cudaLaunch")]
    return Finding(
        id="cuda_launch_blocking", title="CUDA_LAUNCH_BLOCKING=1: every kernel launch waits for the kernel",
        evidence=(f"CUDA_LAUNCH_BLOCKING was set in {_of_steps(run, steps)}: {len(launches) / run.steps:.0f} kernel "
                  f"launches per step took {launches['dur'].sum() / 1000 / run.steps:.2f} ms of the host's time, "
                  "so the CPU never runs ahead of the GPU."),
        severity=max(run.time_share(launches["dur"].sum()), 0.01),
        fix="unset CUDA_LAUNCH_BLOCKING   # in the shell or job script; it is for debugging CUDA errors")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (anomaly_detection(run), deterministic_algorithms(run), cuda_launch_blocking(run))
            if f is not None]

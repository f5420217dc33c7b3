"""Host and device waiting on each other inside the step (GPU runs): synchronising calls such as
``.item()``, and tensors made on the host each step and copied to the device."""

from __future__ import annotations

from advisor.finding import BACKWARD_EVENT, FORWARD_EVENT, Finding, RunFacts
from advisor.hookspecs import hookimpl

#: CUDA runtime calls that block the host until the device has caught up
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
_PHASES = (FORWARD_EVENT, BACKWARD_EVENT)

SYNC_FIX = """\
# keep per-step values on the device; read them on the host every N steps
running_loss += loss.detach()              # instead of running_loss += loss.item()
if step % log_every == 0:
    print(f"loss {running_loss.item() / log_every:.4f}")
    running_loss.zero_()"""

COPY_FIX = """\
# make per-step tensors on the device directly, or once as a buffer that moves with the model
positions = torch.arange(seq_len, device=x.device)            # not torch.arange(seq_len).to(x.device)
self.register_buffer("mask", make_mask(), persistent=False)    # in __init__"""


def _callers(run: RunFacts, rows) -> str:
    """``aten::item ×6 (train.py:42), ...``: the top-level ops under which ``rows`` ran, commonest first."""
    names = run.host["name"].astype(str)
    parents = run.host["op_parent"]

    def top(label: int) -> int:
        while parents.get(label, -1) >= 0:
            label = parents[label]
        return label

    owners = rows["op_parent"].map(lambda p: top(p) if p >= 0 else -1)
    counts = {}
    for owner, group in rows.groupby(owners):
        name = names.get(owner, "(outside ops)") if owner >= 0 else "(outside ops)"
        counts[name] = (len(group), run.source(group))
    parts = [f"{name} ×{n}" + (f" ({site})" if site else "")
             for name, (n, site) in sorted(counts.items(), key=lambda kv: -kv[1][0])[:3]]
    return ", ".join(parts)


def host_device_sync(run: RunFacts) -> Finding | None:
    if not run.gpu:
        return None
    host = run.host
    syncs = host[(host["cat"] == "cuda_runtime") & host["name"].astype(str).isin(SYNC_CALLS)]
    per_step = len(syncs) / run.steps
    if per_step < 1:
        return None
    waited = syncs["dur"].sum()
    return Finding(
        id="host_device_sync", title="The host waits for the GPU inside every step",
        evidence=(f"{per_step:.1f} synchronisations per step ({', '.join(sorted(set(syncs['name'].astype(str))))}) "
                  f"from {_callers(run, syncs)}; the host waited {waited / 1000 / run.steps:.2f} ms per step "
                  "in them, and the GPU's queue ran dry each time."),
        severity=run.time_share(waited), fix=SYNC_FIX)


def host_to_device_copies(run: RunFacts) -> Finding | None:
    copies = run.device[run.device["cat"].eq("gpu_memcpy") & run.device["name"].astype(str).str.contains("HtoD")]
    if copies.empty:
        return None
    host = run.host
    launches = host[(host["cat"] == "cuda_runtime") & host["correlation"].isin(copies["correlation"])]
    inside = launches[run.inside(launches, _PHASES[0]) | run.inside(launches, _PHASES[1])]
    if inside.empty:
        return None
    mine = copies[copies["correlation"].isin(inside["correlation"])]
    per_step = len(mine) / run.steps
    size = mine["bytes"].mean()
    size_text = f", {size / 1024:.1f} KiB each on average" if size == size else ""
    return Finding(
        id="host_to_device_copies", title="Tensors are made on the host and copied to the GPU inside the model",
        evidence=(f"{per_step:.1f} host→device copies per step inside the forward/backward pass{size_text}, "
                  f"from {_callers(run, inside)}: each one is made by the CPU, then copied over."),
        severity=run.time_share(inside["dur"].sum() + mine["dur"].sum()), fix=COPY_FIX)


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (host_device_sync(run), host_to_device_copies(run)) if f is not None]

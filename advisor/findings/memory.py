"""Memory: autograd history kept across steps, optimizer state larger than the parameters and activations
together, and a run near the machine's memory limit."""

from __future__ import annotations

from advisor.finding import FORWARD_EVENT, Finding, RunFacts
from advisor.format import human_bytes, pct
from advisor.hookspecs import hookimpl

#: a run whose process tree held this share of the machine's memory, or left less than 1 - it available, is near
#: the limit
NEAR_LIMIT = 0.9
#: severity of a history that grows every step: unbounded, so it matters whatever its size now
GROWING_HISTORY_SEVERITY = 0.5


def _step_allocation_peak(run: RunFacts) -> int | None:
    """The most tensor memory a recorded step allocated beyond what it held at the window's start (the profiler's
    allocation events: activations chiefly), on the GPU where one ran."""
    peaks = (run.summary.get("memory") or {}).get("profiler_peak_bytes") or {}
    cuda = [v for k, v in peaks.items() if k.startswith("cuda")]
    return max(cuda) if cuda else peaks.get("cpu")


def forward_growth(run: RunFacts) -> int | None:
    """The most tensor memory a recorded forward pass held beyond what it started with (its activations), from
    the profiler's allocation events inside the forward passes; None without allocation events."""
    allocations = (run.host["cat"] == "memory") & (run.host["device_type"] == (1 if run.gpu else 0))
    memory = run.host.loc[allocations, ["tid", "ts", "step", "bytes"]]  # a third of a trace's events: what is read
    if memory.empty:
        return None
    memory = memory[run.inside(memory, FORWARD_EVENT)].sort_values("ts")
    if memory.empty:
        return 0
    return int(max(memory.groupby("step")["bytes"].apply(lambda b: b.cumsum().max()).max(), 0))


def autograd_history_kept(run: RunFacts) -> Finding | None:
    history = run.facts.get("autograd_history") or {}
    start, end, steps = history.get("start"), history.get("end"), history.get("steps_between") or 0
    if not start or not end or steps < 2 or not end.get("largest"):
        return None
    growth = end["nodes"] - start["nodes"]
    largest = end["largest"]
    if growth < steps or largest["nodes"] <= (start.get("largest") or {}).get("nodes", 0):
        return None
    shape = "a scalar" if not largest["shape"] else f"a tensor of shape {largest['shape']}"
    return Finding(
        id="autograd_history_kept", title="Autograd history is kept across steps: the graph grows every step",
        evidence=(f"tensors alive between steps hold an autograd graph that grew from {start['nodes']} to "
                  f"{end['nodes']} nodes over {steps} recorded steps (+{growth / steps:.0f} per step); the largest "
                  f"hangs from {shape} made by {largest['grad_fn']} ({largest['nodes']} nodes). A loss tensor summed "
                  "or stored across steps keeps every step's graph, and what it saved, alive: memory grows until "
                  "the run ends or fails."),
        severity=GROWING_HISTORY_SEVERITY,
        fix="total_loss += loss.item()        # a Python number, not the tensor\n"
            "losses.append(loss.detach())    # or keep the tensor without its history")


def optimizer_state_large(run: RunFacts) -> Finding | None:
    optimizers = [o for o in run.facts.get("optimizers") or [] if o.get("state_bytes")]
    activations = forward_growth(run)
    if not optimizers or activations is None:
        return None
    opt = max(optimizers, key=lambda o: o["state_bytes"])
    state, params = opt["state_bytes"], opt.get("parameter_bytes") or 0
    if state <= params + activations:
        return None
    training = state + 2 * params + activations  # parameters, their gradients, the state, the activations
    return Finding(
        id="optimizer_state_large", title=f"{opt['class']}'s state is larger than the parameters and activations",
        evidence=(f"{opt['class']} holds {human_bytes(state)} of state for {human_bytes(params)} of parameters, "
                  f"while a forward pass holds {human_bytes(activations)} of activations at its peak: the state is "
                  f"{pct(state / training)} of the training memory (parameters, gradients, state, activations)."),
        severity=state / training,
        fix=(f"optimizer = torch.optim.{opt['class']}(model.parameters(), ..., foreach=False)  # no temporary "
             "copies of all the state at once\n"
             f"optimizer = torch.optim.{opt['class']}(model.parameters(), ..., fused=True)      # one kernel, "
             "no temporaries\n"
             "optimizer = torch.optim.SGD(model.parameters(), lr=..., momentum=0.9)  # one buffer per parameter, "
             "not two"))


def memory_near_limit(run: RunFacts) -> Finding | None:
    memory = run.summary.get("memory") or {}
    system, rss = memory.get("system_memory_bytes"), memory.get("peak_rss_bytes")
    available = memory.get("min_available_bytes")
    if not system or not rss:
        return None
    used = max(rss / system, 1 - available / system if available is not None else 0.0)
    if used < NEAR_LIMIT:
        return None
    step = _step_allocation_peak(run)
    top = (memory.get("top_allocators") or [{}])[0]
    named = (f"; a step allocates {human_bytes(step)} at its peak" if step else "") + (
        f", most in {top['name']} ({human_bytes(top.get('bytes'))} per window)" if top.get("name") else "")
    return Finding(
        id="memory_near_limit", title="The run is near the machine's memory limit",
        evidence=(f"the process tree peaked at {human_bytes(rss)} of {human_bytes(system)}"
                  + (f", with {human_bytes(available)} left available at the tightest moment" if available is not None
                     else "") + f"{named}: a larger batch or model, or another process, runs out of memory."),
        severity=min(used, 1.0),
        fix="# checkpoint the repeated blocks (advisor's activation_checkpointing measures it), a smaller batch,\n"
            "# or bf16 activations: with torch.autocast(device_type, dtype=torch.bfloat16): ...",
        technique="activation_checkpointing")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    rules = (autograd_history_kept, optimizer_state_large, memory_near_limit)
    return [f for f in (rule(run) for rule in rules) if f is not None]

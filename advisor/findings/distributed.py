"""Data-parallel training across ranks: a straggler the others wait for, gradient accumulation that
all-reduces every micro-batch, gradient buckets that keep communication from overlapping the backward
pass, and a step that communication dominates. (``DataParallel`` where DDP belongs is in
:mod:`advisor.findings.gpu`; threads per rank times ranks above the cores in :mod:`advisor.findings.threads`.)"""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.hookspecs import hookimpl

#: overlap of communication with computation below which the buckets are worth a look
POOR_OVERLAP = 0.3
#: collective time (transfer, not waiting) per step above which a larger per-rank batch pays
COMM_BOUND_SHARE = 0.25
#: buckets per step above which each is small enough for per-collective latency to count ...
MANY_BUCKETS = 8
#: ... when the mean bucket is below this
SMALL_BUCKET_BYTES = 1 << 20
_MB = 1 << 20


def _distributed(run: RunFacts) -> dict:
    return run.summary.get("distributed") or {}


def _ddp(run: RunFacts) -> dict:
    """DDP's own counters, from the first rank that recorded them."""
    for rank in _distributed(run).get("ranks") or []:
        if rank.get("ddp") and "unavailable" not in rank["ddp"]:
            return rank["ddp"]
    return {}


def _buckets(ddp: dict) -> list[int]:
    sizes = ddp.get("rebuilt_bucket_sizes") or ddp.get("bucket_sizes") or ""
    return [int(s) for s in str(sizes).replace(",", " ").split() if s.isdigit()]


def _mean(ranks: list[dict], key: str) -> float:
    values = [r[key] for r in ranks if r.get("recorded") and r.get(key) is not None]
    return sum(values) / len(values) if values else 0.0


def _exposed(d: dict) -> tuple[float, float]:
    """Collective transfer time per step (mean of the ranks, ms) and the share of the step it is not overlapped."""
    transfer = _mean(d.get("ranks") or [], "comm_transfer_ms")
    step_ms = d.get("step_median_ms") or 0.0
    return transfer, transfer * (1 - (d.get("overlap") or 0.0)) / step_ms if step_ms else 0.0


def straggler(run: RunFacts) -> Finding | None:
    d = _distributed(run)
    slow = d.get("straggler")
    step_ms = d.get("step_median_ms")
    if not slow or not step_ms:
        return None
    return Finding(
        id="rank_straggler", title=f"Rank {slow['rank']} is a straggler the other ranks wait for",
        evidence=(f"rank {slow['rank']} is busy {slow['slower_by_ms']:.1f} ms ({slow['slower_by']:.0%} of a step) "
                  f"longer per step than the other ranks, most of it in {slow['phase']}; meanwhile they wait "
                  f"{slow['others_wait_ms']:.1f} ms per step in collectives (median step {step_ms:.1f} ms)."),
        severity=slow["others_wait_ms"] / step_ms,
        fix=(f"# give rank {slow['rank']} the same work and the same cores as the others: even data shards\n"
             "# (DistributedSampler(drop_last=True)), no other job pinned to its cores, the same input sizes"))


def accumulation_without_no_sync(run: RunFacts) -> Finding | None:
    ddp_facts = run.facts.get("distributed") or {}
    several = int(ddp_facts.get("steps_with_several_synced_forwards") or 0)
    synced = int(ddp_facts.get("synced_forwards") or 0)
    if several < 1 or synced <= run.steps:
        return None
    per_step = synced / run.steps
    comm = _mean(_distributed(run).get("ranks") or [], "comm_ms")
    step_ms = _distributed(run).get("step_median_ms") or 0.0
    return Finding(
        id="ddp_accumulation_without_no_sync", title="Gradient accumulation all-reduces every micro-batch",
        evidence=(f"{per_step:.1f} DistributedDataParallel forward passes per step, each with gradient "
                  f"synchronisation on: DDP all-reduces the gradients after every micro-batch's backward, "
                  f"where only the last one's is needed ({comm:.1f} ms of collectives per step)."),
        severity=(comm / step_ms) * (per_step - 1) / per_step if step_ms else 0.0,
        fix=("for i, batch in enumerate(micro_batches):\n"
             "    sync = i == len(micro_batches) - 1\n"
             "    with contextlib.nullcontext() if sync else model.no_sync():   # all-reduce the last one only\n"
             "        loss_fn(model(batch)).backward()\n"
             "optimizer.step()"))


def buckets(run: RunFacts) -> Finding | None:
    d = _distributed(run)
    ddp, overlap, step_ms = _ddp(run), d.get("overlap"), d.get("step_median_ms")
    sizes = _buckets(ddp)
    if not sizes or overlap is None or not step_ms:
        return None
    transfer, exposed = _exposed(d)
    total_mb = sum(sizes) / _MB
    if len(sizes) == 1 and overlap < POOR_OVERLAP and total_mb >= 1:
        cap = max(round(total_mb / 4, 1), 1.0)
        why = (f"all {total_mb:.1f} MB of gradients are in one bucket (bucket_cap_mb "
               f"{ddp.get('bucket_cap_bytes', 0) / _MB:g}): its all-reduce starts only after the whole backward "
               f"pass, and {overlap:.0%} of the communication overlaps computation")
    elif len(sizes) > MANY_BUCKETS and sum(sizes) / len(sizes) < SMALL_BUCKET_BYTES:
        cap = max(round(total_mb / 4, 1), 1.0)
        why = (f"{len(sizes)} gradient buckets of {sum(sizes) / len(sizes) / _MB:.2f} MB on average: every one is "
               f"a collective of its own, and the fixed cost of each adds up")
    else:
        return None
    return Finding(
        id="ddp_bucket_size", title="DDP's gradient buckets keep communication from overlapping the backward pass",
        evidence=f"{why}; collectives take {transfer:.1f} ms per step of {step_ms:.1f} ms.",
        severity=exposed,
        fix=f"model = DistributedDataParallel(model, bucket_cap_mb={cap:g})   # about four buckets")


def communication_bound(run: RunFacts) -> Finding | None:
    d = _distributed(run)
    step_ms = d.get("step_median_ms")
    if not step_ms or (d.get("world_size") or 0) < 2:
        return None
    transfer, exposed = _exposed(d)
    if exposed < COMM_BOUND_SHARE:
        return None
    return Finding(
        id="ddp_communication_bound", title="Gradient communication takes a large share of each step",
        evidence=(f"collectives transfer for {transfer:.1f} ms per step of {step_ms:.1f} ms ({exposed:.0%} of the "
                  f"step not overlapped with computation); their cost depends on the model's size, not the batch, "
                  f"so a larger batch per rank spreads it over more samples."),
        severity=exposed,
        fix=("# a larger batch per rank (scale the learning rate with it), or accumulate micro-batches under\n"
             "# model.no_sync() and all-reduce once per optimizer step\n"
             "loader = DataLoader(dataset, batch_size=2 * batch_size, sampler=DistributedSampler(dataset))"))


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (straggler(run), accumulation_without_no_sync(run), buckets(run), communication_bound(run))
            if f is not None]

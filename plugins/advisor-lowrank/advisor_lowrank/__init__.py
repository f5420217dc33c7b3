"""advisor plugin: low-rank factorisation of large Linear layers by truncated SVD.

``Linear(in, out)`` becomes ``Sequential(Linear(in, r, bias=False), Linear(r, out))`` holding the best
rank-``r`` approximation of its weight, at a few ranks (each one a technique). Written only against
advisor's public plugin API (``advisor.hookspecs.hookimpl``, :mod:`advisor.technique`, the workload).
"""

from __future__ import annotations

import dataclasses

from advisor.hookspecs import hookimpl
from advisor.technique import Context, DoesNotApply, Estimate, Technique, Verdict, amdahl

#: ranks tried, as a fraction of each layer's smaller dimension
RANK_FRACTIONS = (0.1, 0.25)
#: layers with fewer input or output features stay as they are
MIN_FEATURES = 64
#: what the second, smaller call of a factorised layer costs beyond its arithmetic (dispatch, allocation)
EXTRA_CALL_US = 5.0
LAYER_OPS = ("addmm", "aten::mm", "aten::linear")
MIN_SHARE = 0.05


def _factorised(layer, rank: int):
    """The rank-``rank`` truncated SVD of ``layer`` as two Linear layers, with its dtype, device and modes."""
    import torch
    import torch.nn as nn

    weight = layer.weight.detach()
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    root = s[:rank].sqrt()
    factory = {"dtype": weight.dtype, "device": weight.device}
    down = nn.Linear(layer.in_features, rank, bias=False, **factory)
    up = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **factory)
    with torch.no_grad():
        down.weight.copy_(root[:, None] * vh[:rank])
        up.weight.copy_(u[:, :rank] * root[None, :])
        if layer.bias is not None:
            up.bias.copy_(layer.bias)
    for p in (*down.parameters(), *up.parameters()):
        p.requires_grad_(layer.weight.requires_grad)
    pair = nn.Sequential(down, up).train(layer.training)
    kept = float((s[:rank] ** 2).sum() / (s ** 2).sum()) if s.numel() else 1.0
    return pair, kept


def factorise(model, fraction: float) -> dict:
    """Replace, in place, every Linear of ``model`` with at least :data:`MIN_FEATURES` features each way
    whose rank-``fraction`` factorisation needs fewer multiply-adds; ``{path: (rank, energy kept)}``."""
    import torch.nn as nn

    done = {}
    for path, layer in list(model.named_modules()):
        if type(layer) is not nn.Linear or min(layer.in_features, layer.out_features) < MIN_FEATURES:
            continue
        rank = max(1, int(fraction * min(layer.in_features, layer.out_features)))
        if rank * (layer.in_features + layer.out_features) >= layer.in_features * layer.out_features:
            continue
        pair, kept = _factorised(layer, rank)
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, pair)
        done[path] = (rank, kept)
    return done


def _renamed(optimizer, done: dict):
    """The optimizer's parameter names after factorising: ``fc.weight`` -> the two factors, ``fc.bias`` ->
    the second layer's bias."""
    def names(name: str) -> list[str]:
        layer, _, kind = name.rpartition(".")
        if layer not in done:
            return [name]
        return [f"{layer}.0.weight", f"{layer}.1.weight"] if kind == "weight" else [f"{layer}.1.{kind}"]
    groups = [(settings, [new for old in group for new in names(old)]) for settings, group in optimizer.groups]
    return dataclasses.replace(optimizer, groups=groups)


class LowRank(Technique):
    def __init__(self, fraction: float):
        self.fraction = fraction
        self.name = f"lowrank_{round(fraction * 100)}"
        self.title = (f"Factorise large Linear layers to rank {fraction:.0%} of their smaller dimension "
                      "(truncated SVD)")
        self.snippet = _SNIPPET.replace("FRACTION", f"{fraction:g}")

    def applies_to(self, context: Context) -> Verdict:
        share = context.share_of(*LAYER_OPS)
        if share <= MIN_SHARE:
            return Verdict(False, f"Linear ops (addmm/mm/linear) take {share:.0%} of the step: little to gain")
        return Verdict(True, f"{share:.0%} of the step in Linear ops; layers with at least {MIN_FEATURES} "
                             "features each way are factorised on the model copy")

    def estimate(self, context: Context) -> Estimate:
        ops = [op for op in context.summary.get("hot_ops", []) if any(n in op["name"] for n in LAYER_OPS)]
        share = sum(op.get("share") or 0.0 for op in ops)
        calls = sum(op.get("calls") or 0 for op in ops)
        call_us = 1000.0 * sum(op.get("self_time_ms") or 0.0 for op in ops) / calls if calls else 0.0
        arithmetic = 2 * self.fraction  # r (n + n) / n^2 for a square layer
        local = 1.0 / (arithmetic + EXTRA_CALL_US / call_us) if call_us else 1.0
        return Estimate(
            speedup=round(amdahl(share, local), 3),
            basis=f"an upper bound: {share:.0%} of the step in Linear ops averaging {call_us:.0f} us a call, each "
                  f"taken as a square layer doing {arithmetic:.0%} of its multiply-adds at rank {self.fraction:g}n, "
                  f"plus ~{EXTRA_CALL_US:g} us for the second call; layers under {MIN_FEATURES} features stay. "
                  "Parameter counts: in the measured notes",
            risk="the weights lose what the dropped singular values held (energy kept: in the notes); trained "
                 "weights with a fast-decaying spectrum lose little, random ones much: fine-tune after")

    def apply(self, workload):
        before = sum(p.numel() for p in workload.model.parameters())
        done = factorise(workload.model, self.fraction)
        if not done:
            raise DoesNotApply(f"no nn.Linear with at least {MIN_FEATURES} features each way that rank "
                               f"{self.fraction:g} of its smaller dimension makes cheaper")
        if workload.optimizer is not None:
            workload.optimizer = _renamed(workload.optimizer, done)
        workload.notes = {**workload.notes, "parameters_before": before,
                          "parameters_after": sum(p.numel() for p in workload.model.parameters()),
                          "layers_factorised": len(done),
                          "ranks": {path: rank for path, (rank, _) in list(done.items())[:8]},
                          "energy_kept_min": round(min(kept for _, kept in done.values()), 4)}
        return workload


_SNIPPET = """import torch, torch.nn as nn

def low_rank(layer: nn.Linear, rank: int) -> nn.Sequential:
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    down = nn.Linear(layer.in_features, rank, bias=False)
    up = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        down.weight.copy_(s[:rank].sqrt()[:, None] * vh[:rank])
        up.weight.copy_(u[:, :rank] * s[:rank].sqrt())
        if layer.bias is not None:
            up.bias.copy_(layer.bias)
    return nn.Sequential(down, up)

model.fc1 = low_rank(model.fc1, rank=int(FRACTION * min(model.fc1.in_features, model.fc1.out_features)))
# then fine-tune a little to recover accuracy"""


@hookimpl
def advisor_techniques(config):
    return [LowRank(f) for f in RANK_FRACTIONS]

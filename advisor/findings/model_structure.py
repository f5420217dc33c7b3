"""The model's structure as the trace shows it run: a convolution with a bias whose output goes
straight into BatchNorm, which subtracts the mean (and with it the bias) right away."""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.hookspecs import hookimpl

_CONVS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution")
#: the wasted work is one elementwise pass (the bias add) and one reduction (its gradient) per
#: convolution: small next to the convolution itself, so a nominal share per conv
NOMINAL_SHARE_PER_CONV = 0.005


def conv_bias_before_batchnorm(run: RunFacts) -> Finding | None:
    top = run.ops[run.ops["op_parent"] < 0].sort_values(["tid", "ts"])
    names = top["name"].astype(str).to_numpy()
    dims = top["input_dims"].to_numpy()
    tids = top["tid"].to_numpy()
    hits = []
    for i in range(len(top) - 1):
        if names[i] not in _CONVS:
            continue
        j = i + 1  # BatchNorm's own bookkeeping (num_batches_tracked += 1) on 0-d tensors may come first
        while j < len(top) - 1 and tids[j] == tids[i] and not any(dims[j] or []):
            j += 1
        if names[j] != "aten::batch_norm" or tids[j] != tids[i]:
            continue
        conv, bn = dims[i] or [], dims[j] or []
        has_bias = len(conv) > 2 and bool(conv[2])
        if has_bias and len(conv[1]) > 0 and len(bn) > 0 and len(bn[0]) > 1 and bn[0][1] == conv[1][0]:
            hits.append(top.index[i])
    if not hits:
        return None
    rows = run.ops.loc[hits]
    per_step = len(rows) / run.steps
    channels = sorted({d[1][0] for d in rows["input_dims"]})
    where = run.source(rows)
    return Finding(
        id="conv_bias_before_batchnorm", title="Convolutions with a bias feed BatchNorm directly",
        evidence=(f"{per_step:.0f} convolution{'s' if per_step != 1 else ''} per step with a bias "
                  f"({', '.join(map(str, channels))} channels) {'go' if per_step != 1 else 'goes'} straight into "
                  "aten::batch_norm"
                  f"{' (' + where + ')' if where else ''}: BatchNorm subtracts the batch mean, so the bias is "
                  "added, differentiated and updated for nothing."),
        severity=min(per_step * NOMINAL_SHARE_PER_CONV, 0.05),
        fix="nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)   # BatchNorm's own shift replaces it")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (conv_bias_before_batchnorm(run),) if f is not None]

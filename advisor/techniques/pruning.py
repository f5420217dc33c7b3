"""Pruning: structured (whole hidden units / channels removed, so dense kernels do less work) and
unstructured (half of every weight matrix zeroed, which dense kernels do not notice).

Structured pruning (``prune_structured_25``, ``prune_structured_50``) builds on the dependency graph of
Torch-Pruning (``torch_pruning.DependencyGraph``, traced through autograd on the captured call's inputs):
each of its groups is a set of layer dimensions that must shrink together. advisor prunes the groups that
are the *inner* width of one layer: the output units of one Linear (output channels of one Conv2d) that
reach other Linear (Conv2d) layers through nothing but elementwise or per-channel ops (activations,
dropout, pooling, BatchNorm) and, between Linears, reshapes of the dimensions before the units (as
``F.linear`` makes of 3-D inputs, so a Transformer's feed-forward width qualifies). The given fraction
of them with the lowest L2 norm of the producer's weights (``MagnitudeImportance(p=2,
group_reduction="first")``, decided on the unpruned weights) is removed: Torch-Pruning slices the
producer's rows (filters), the BatchNorms' channels and the consumers' input columns (input channels)
in place, so parameter names stay the same and the optimizer (rebuilt by name) still finds them;
frozen weights stay frozen and channels_last weights stay channels_last.

Groups that keep their width:

- those with more than one producer (a residual add joins them), with a Conv2d feeding a Linear
  (a flatten between them), or with any other reshape, a concatenation, split, slice, LayerNorm or
  any layer other than a plain ``nn.Linear`` / ``nn.Conv2d`` (groups=1) / ``nn.BatchNorm1d|2d`` in them;
- those that reach an output of the model, or a value the forward computes but passes to no op that
  keeps its gradient (one that Python reads for control flow, a side result): Torch-Pruning traces from
  the outputs only, so these values are shown to it as outputs;
- those with a layer registered twice in the model, with hooks, or sharing weights with another module.

Once pruned, the copy runs one forward on the captured inputs: the outputs must keep their number and
shapes (this catches what the trace cannot see: a branch it did not take, a buffer combined with a
pruned value); should it fail, the groups are tried one at a time and only those that pass are kept.

``applies_to`` sees only the run's summary, not the model, so it decides from the time spent in
Linear/conv ops (``aten::addmm``/``mm``/``convolution``); whether anything can be pruned safely is
only known in ``apply``. When nothing can, ``apply`` raises ``DoesNotApply("nothing could be pruned
safely in <model class>")``: the trial is then recorded as not applicable with that reason rather than as a
measured ~1.0x, which would read as "pruning was tried and gained nothing". The parameters removed are set
on the returned workload as ``workload.notes`` (``parameters_removed``, ``parameters_before``, ...).

Unstructured pruning (``prune_unstructured_50``) zeroes the 50% smallest-magnitude weights of every
Linear and Conv2d (``torch.nn.utils.prune.l1_unstructured`` then ``prune.remove``, on the copy). Its
estimate is honest: dense kernels multiply zeros as fast as other numbers, so no speedup and no
memory saved unless the weights are stored and multiplied sparse. In a training trial the zeros do
not stay zero after the first optimizer step (no mask is kept: a mask would rename the parameters to
``weight_orig`` and add a multiply per forward); the timing is unaffected by that.
"""

from __future__ import annotations

import copy

from advisor.hookspecs import hookimpl
from advisor.technique import Context, DoesNotApply, Estimate, Technique, Verdict, amdahl

#: hot ops that Linear and Conv2d layers run (forward and backward)
LAYER_OPS = ("addmm", "aten::mm", "aten::linear", "conv")
RISK = "accuracy: the pruned model needs fine-tuning; output deviation measured below"
#: when the forward of the fully pruned copy fails, at most this many groups are retried one by one
_MAX_RETRIES = 64


# -------------------------------------------------------------------------------------------------
# Structured pruning on Torch-Pruning's dependency graph
# -------------------------------------------------------------------------------------------------

def _traced_outputs(model, args: tuple, kwargs: dict) -> list:
    """The model's outputs and every value its forward computes with a gradient but passes to no op that
    keeps one (a value read by Python, a side result), each behind a fresh autograd node: Torch-Pruning
    traces from these and treats them all as outputs, whose widths stay."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    made: dict[int, object] = {}
    fed: dict[int, object] = {}  # tensors kept alive, so that their ids are not reused

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            results = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
            if results:
                fed.update((id(t), t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
                made.update((id(t), t) for t in results)
            return out

    with Watch():
        outputs = model(*args, **kwargs)
    outputs = [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen = {id(t) for t in outputs}
    return [t.view_as(t) for t in outputs + [t for key, t in made.items() if key not in fed and key not in seen]]


def _dependency_graph(workload):
    """Torch-Pruning's dependency graph of ``workload.model``, traced on the first captured call's inputs
    (with gradients on, in eval mode); the model's train/eval modes and ``requires_grad`` flags are kept."""
    import warnings

    import torch
    import torch_pruning as tp

    model = workload.model
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    devices = sorted({p.device.index for p in flags if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_rng_state(workload.rng_state)
            for p in flags:
                p.requires_grad_(True)
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=workload.args, verbose=False,
                forward_fn=lambda m, args: _traced_outputs(m, args, workload.kwargs))
    finally:
        for m, training in modes.items():
            m.training = training
        for p, flag in flags.items():
            p.requires_grad_(flag)


def _entangled(model) -> set[int]:
    """ids of the modules registered more than once, with hooks, or sharing a parameter with another module."""
    registered: dict[int, int] = {}
    owners: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        registered[id(m)] = registered.get(id(m), 0) + 1
        for p in m._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    out = set()
    for m in model.modules():
        hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, getattr(m, "_backward_pre_hooks", {}))
        shared = any(owners[id(p)] > 1 for p in m._parameters.values() if p is not None)
        if registered[id(m)] > 1 or any(hooks) or shared:
            out.add(id(m))
    return out


def _inner(dg, group, entangled: set[int]) -> dict | None:
    """The layers of ``group`` if it is the inner width of one layer, else None: ``{"producer", "consumers",
    "modules"}``. The producer is one plain Linear (Conv2d) whose units reach plain layers of its kind, as wide,
    through nothing but elementwise ops, BatchNorms and, between Linears, reshapes of the dimensions before the
    units (as ``F.linear`` makes of 3-D inputs)."""
    import torch.nn as nn
    import torch_pruning as tp

    producers, consumers, modules, reshaped = [], [], {}, set()
    for dep, _ in group:
        m, node = dep.target.module, dep.target
        if type(m) in (nn.Linear, nn.Conv2d) and getattr(m, "groups", 1) == 1:
            (producers if dg.is_out_channel_pruning_fn(dep.handler) else consumers).append(m)
        elif node.type == tp.ops.OPTYPE.RESHAPE:  # what it got: its last dimension must be the units
            grad_fn = node.grad_fn
            sizes = getattr(grad_fn, "_saved_self_sym_sizes", None) or getattr(grad_fn, "_saved_self_sizes", ())
            reshaped.add(sizes[-1] if sizes else None)
            continue
        elif type(m) not in (nn.BatchNorm1d, nn.BatchNorm2d):
            if node.type != tp.ops.OPTYPE.ELEMENTWISE:
                return None  # an output, concatenation, split, slice, LayerNorm, parameter, ...
            continue
        if id(m) in entangled:
            return None
        modules[id(m)] = m
    if len(producers) != 1 or not consumers:
        return None
    producer = producers[0]
    width = dg.get_out_channels(producer)
    if any(type(c) is not type(producer) or dg.get_in_channels(c) != width for c in consumers):
        return None
    if reshaped and (type(producer) is not nn.Linear or reshaped != {width}):
        return None
    return {"producer": producer, "consumers": consumers, "modules": list(modules.values())}


def _plan(dg, model, ratio: float) -> list[dict]:
    """The groups to prune, each with the output units of its producer to remove (the ``ratio`` with the
    lowest L2 norm), decided on the unpruned weights."""
    import torch
    import torch.nn as nn
    import torch_pruning as tp

    importance = tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer=None)
    entangled = _entangled(model)
    plan = []
    for group in dg.get_all_groups(root_module_types=(nn.Linear, nn.Conv2d)):
        inner = _inner(dg, group, entangled)
        if inner is None:
            continue
        width = dg.get_out_channels(inner["producer"])
        drop = int(ratio * width)
        if drop < 1 or drop >= width:
            continue
        scores = importance(group)
        inner.update(handler=group[0].dep.handler, width=width,
                     idxs=sorted(torch.argsort(scores, stable=True)[:drop].tolist()))
        plan.append(inner)
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(plan, key=lambda item: order[id(item["producer"])])


def _as_before(module, original) -> None:
    """The pruned module's parameters as the original's were: trained or frozen, channels_last or not."""
    import torch

    for name, old in original._parameters.items():
        new = module._parameters.get(name)
        if old is None or new is None:
            continue
        if old.dim() == 4 and old.is_contiguous(memory_format=torch.channels_last) and not old.is_contiguous():
            new.data = new.data.contiguous(memory_format=torch.channels_last)
        new.requires_grad_(old.requires_grad)


def _prune_together(dg, items: list[dict], check) -> bool:
    """Prune the planned groups ``items``; when ``check()`` then fails (or raises), put their layers back as
    they were and return False."""
    modules = {id(m): m for item in items for m in item["modules"]}
    before = {key: copy.deepcopy(m) for key, m in modules.items()}
    try:
        for item in items:
            dg.get_pruning_group(item["producer"], item["handler"], item["idxs"]).prune(record_history=False)
        for key, m in modules.items():
            _as_before(m, before[key])
        if check():
            return True
    except Exception:
        pass
    for key, m in modules.items():
        vars(m).update(vars(before[key]))
    return False


def _outputs_shapes(workload) -> list[tuple]:
    """The shapes of the model's outputs on the first captured call (buffers such as BatchNorm statistics kept)."""
    import torch
    from torch.utils._pytree import tree_flatten

    model = workload.model
    buffers = {name: b.clone() for name, b in model.named_buffers()}  # BatchNorm statistics in train mode
    devices = sorted({p.device.index for p in model.parameters() if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.set_rng_state(workload.rng_state)
            outputs = workload.forward()
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers and b.shape == buffers[name].shape:
                    b.copy_(buffers[name])
    return [tuple(x.shape) for x in tree_flatten(outputs)[0] if isinstance(x, torch.Tensor)]


def _detail(model, kept: list[dict]) -> str:
    """One line on the pruned groups: their widths and the first few producer -> consumer(s)."""
    names = {id(m): name for name, m in model.named_modules()}
    widths = ", ".join(f"{a}->{b}" for a, b in sorted({(p["width"], p["width"] - len(p["idxs"])) for p in kept}))
    links = ", ".join(f"{names[id(p['producer'])]}->" + "+".join(names[id(c)] for c in p["consumers"])
                      for p in kept[:4])
    return (f"{len(kept)} inner dimension(s) of {type(model).__name__} pruned ({widths}): {links}"
            + (", ..." if len(kept) > 4 else ""))


def prune_structured(workload, ratio: float):
    """Remove the ``ratio`` lowest-L2-norm units of the inner width of every prunable layer of ``workload.model``
    (see the module's docstring for which are)."""
    model = workload.model
    kind = type(model).__name__
    before = sum(p.numel() for p in model.parameters())
    try:
        dg = _dependency_graph(workload)
    except Exception as exc:
        raise DoesNotApply(f"nothing could be pruned safely in {kind}: Torch-Pruning could not trace it "
                         f"({type(exc).__name__}: {exc})") from exc
    plan = _plan(dg, model, ratio)
    if not plan:
        raise DoesNotApply(f"nothing could be pruned safely in {kind}")
    expected = _outputs_shapes(workload)

    def check() -> bool:
        return _outputs_shapes(workload) == expected

    if _prune_together(dg, plan, check):
        kept = plan
    else:  # one group at a time, each on top of those kept
        kept = [item for item in plan[:_MAX_RETRIES] if _prune_together(dg, [item], check)]
    if not kept:
        raise DoesNotApply(f"nothing could be pruned safely in {kind}: "
                         "the pruned forward changed the outputs' shapes or failed")
    notes = dict(getattr(workload, "notes", None) or {})
    notes.update(parameters_removed=before - sum(p.numel() for p in model.parameters()), parameters_before=before,
                 dimensions_pruned=len(kept), detail=_detail(model, kept))
    workload.notes = notes
    return workload


def prune_unstructured(workload, amount: float):
    """Zero the ``amount`` smallest-magnitude weights of every Linear and Conv2d of ``workload.model``."""
    import torch
    import torch.nn as nn
    import torch.nn.utils.prune as prune

    zeroed = total = 0
    for module in workload.model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and isinstance(module.weight, nn.Parameter):
            prune.l1_unstructured(module, name="weight", amount=amount)
            prune.remove(module, "weight")
            with torch.no_grad():
                zeroed += int((module.weight == 0).sum())
            total += module.weight.numel()
    if not total:
        raise DoesNotApply(f"no Linear or Conv2d layer in {type(workload.model).__name__}")
    notes = dict(getattr(workload, "notes", None) or {})
    notes.update(parameters_removed=0, parameters_before=sum(p.numel() for p in workload.model.parameters()),
                 weights_zeroed=zeroed, weights_in_layers=total)
    workload.notes = notes
    return workload


# -------------------------------------------------------------------------------------------------
# Techniques
# -------------------------------------------------------------------------------------------------

class StructuredPruning(Technique):
    changes_flops = True

    def __init__(self, ratio: float):
        self.ratio = ratio
        self.name = f"prune_structured_{round(ratio * 100)}"
        self.title = (f"Structured pruning: remove {ratio:.0%} of the inner hidden units / channels "
                      "(lowest L2 norm), so the dense layers get smaller")
        self.snippet = _STRUCTURED_SNIPPET.replace("RATIO", f"{ratio:g}")

    def applies_to(self, context: Context) -> Verdict:
        share = context.share_of(*LAYER_OPS)
        if share <= 0.05:
            return Verdict(False, f"Linear/conv ops (addmm/mm/convolution) take {share:.0%} of the step: "
                                  "little to gain")
        return Verdict(True, f"{share:.0%} of the step in Linear/conv ops (addmm/mm/convolution); which inner "
                             "dimensions can be pruned safely is found on the model copy")

    def estimate(self, context: Context) -> Estimate:
        share = context.share_of(*LAYER_OPS)
        local = 1.0 / (1.0 - self.ratio)
        params = context.workload.get("parameters")
        return Estimate(
            speedup=round(amdahl(share, local), 3),
            basis=f"an upper bound: {share:.0%} of the step in Linear/conv ops (addmm/mm/convolution), each at "
                  f"most {local:g}x faster with {self.ratio:.0%} fewer inner units; layers feeding a residual "
                  "add, a reshape or the output keep their width (Torch-Pruning's dependency graph of the "
                  "model copy tells which can shrink), and small matmuls are bound by per-op "
                  "overhead rather than arithmetic. Parameters removed: counted on the model copy when "
                  f"applied (workload notes)" + (f", of {params:,} in the model" if params else ""),
            risk=RISK)

    def apply(self, workload):
        return prune_structured(workload, self.ratio)


class UnstructuredPruning(Technique):
    def __init__(self, amount: float):
        self.amount = amount
        self.name = f"prune_unstructured_{round(amount * 100)}"
        self.title = f"Unstructured magnitude pruning: zero {amount:.0%} of the weights of every Linear/Conv2d"
        self.snippet = _UNSTRUCTURED_SNIPPET.replace("AMOUNT", f"{amount:g}")

    def applies_to(self, context: Context) -> Verdict:
        share = context.share_of(*LAYER_OPS)
        if share <= 0.0:
            return Verdict(False, "no Linear/conv ops (addmm/mm/convolution) among the step's hot ops")
        return Verdict(True, f"{share:.0%} of the step in Linear/conv ops; zeroed weights shrink a sparse "
                             "model, but dense kernels run no faster (measured to show it)")

    def estimate(self, context: Context) -> Estimate:
        share = context.share_of(*LAYER_OPS)
        return Estimate(
            speedup=1.0, memory_bytes=0,
            basis=f"{share:.0%} of the step in Linear/conv ops, but dense matmul/conv kernels multiply zeros as "
                  "fast as any other number: no speedup without sparse kernels (e.g. 2:4 semi-structured "
                  "sparsity on Ampere+ GPUs, or sparse storage at much higher sparsity); memory unchanged "
                  "unless the weights are stored sparse",
            risk=RISK)

    def apply(self, workload):
        return prune_unstructured(workload, self.amount)


_STRUCTURED_SNIPPET = """import torch_pruning as tp   # pip install torch-pruning

# One batch of your inputs traces the model: Torch-Pruning's dependency graph then knows which
# Linear/Conv2d/BatchNorm dimensions must shrink together.
example_inputs = next(iter(train_loader))[0]
pruner = tp.pruner.BasePruner(
    model, example_inputs,
    importance=tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer=None),  # L2 norm
    pruning_ratio=RATIO,   # of the output units / channels of each group
    # The output layer keeps its width. As advisor measured it, so does the residual stream: name the
    # layers that feed a residual add (the stem, each block's last layer) or leave them out to prune it too.
    ignored_layers=[model.classifier, model.stem, *(block.conv2 for block in model.blocks)],
)
pruner.step()   # removes the units: the layers get smaller (torch.nn.utils.prune.ln_structured only zeroes them)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)   # built after pruning: the parameters are new
# then fine-tune to recover accuracy."""

_UNSTRUCTURED_SNIPPET = """import torch.nn as nn
import torch.nn.utils.prune as prune

for module in model.modules():
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        prune.l1_unstructured(module, name="weight", amount=AMOUNT)   # zero the smallest weights
        prune.remove(module, "weight")                              # make it permanent
# Dense kernels are not faster with zeros: this saves time or memory only with sparse kernels / storage.
# Fine-tune afterwards (keep the masks, i.e. skip prune.remove, while fine-tuning so zeros stay zero)."""


@hookimpl
def advisor_techniques(config):
    return [StructuredPruning(0.25), StructuredPruning(0.5), UnstructuredPruning(0.5)]

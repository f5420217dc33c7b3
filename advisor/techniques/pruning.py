"""Pruning: structured (whole hidden units / channels removed, so dense kernels do less work) and
unstructured (half of every weight matrix zeroed, which dense kernels do not notice).

Structured pruning (``prune_structured_25``, ``prune_structured_50``) removes the given fraction of
the *inner* units of a layer pair: the output units of a Linear (or output channels of a Conv2d) whose
result reaches exactly one other Linear (Conv2d) through nothing but elementwise or per-channel ops
(activations, dropout, scalar arithmetic, BatchNorm, and for convolutions pooling). The units with
the lowest L2 norm of their weights are removed: the producer loses rows (filters), BatchNorms in
between lose channels, the consumer loses the matching input columns (input channels). The layers
are rebuilt smaller and put back under the same attribute names, so parameter names stay the same
and the optimizer (rebuilt by name) still finds them.

Which pairs are safe is proven on the model copy, not guessed:

- the data flow comes from ``torch.fx`` symbolic tracing (of the whole model, or else of the largest
  sub-modules that trace); a producer qualifies only when its output has a single user at every
  link of the chain up to the consumer, so residual adds, concatenations, reshapes, LayerNorms,
  outputs of the model and anything else the walk does not know keep their width;
- producer, consumer and BatchNorms must be plain ``nn.Linear`` / ``nn.Conv2d`` (groups=1) /
  ``nn.BatchNorm1d|2d``, called once in the traced graph, registered once in the model, with no
  hooks and no weights shared with other modules;
- once pruned, the copy runs one forward on the captured inputs: the outputs must keep their number
  and shapes (this catches a traced graph that differs from what really runs); should it fail, the
  pairs are tried one at a time and only those that pass are kept.

``applies_to`` sees only the run's summary, not the model, so it decides from the time spent in
Linear/conv ops (``aten::addmm``/``mm``/``convolution``); whether anything can be pruned safely is
only known in ``apply``. When nothing can, ``apply`` raises ``ValueError("nothing could be pruned
safely in <model class>")``: the trial is then recorded with that message rather than as a measured
~1.0x, which would read as "pruning was tried and gained nothing". The parameters removed are set
on the returned workload as ``workload.notes`` (``parameters_removed``, ``parameters_before``, ...).

Unstructured pruning (``prune_unstructured_50``) zeroes the 50% smallest-magnitude weights of every
Linear and Conv2d (``torch.nn.utils.prune.l1_unstructured`` then ``prune.remove``, on the copy). Its
estimate is honest: dense kernels multiply zeros as fast as other numbers, so no speedup and no
memory saved unless the weights are stored and multiplied sparse. In a training trial the zeros do
not stay zero after the first optimizer step (no mask is kept: a mask would rename the parameters to
``weight_orig`` and add a multiply per forward); the timing is unaffected by that.
"""

from __future__ import annotations

import operator

from advisor.hookspecs import hookimpl
from advisor.technique import Context, Estimate, Technique, Verdict, amdahl

#: hot ops that Linear and Conv2d layers run (forward and backward)
LAYER_OPS = ("addmm", "aten::mm", "aten::linear", "conv")
RISK = "accuracy: the pruned model needs fine-tuning; output deviation measured below"
#: when the forward of the fully pruned copy fails, at most this many pairs are retried one by one
_MAX_RETRIES = 64


# -------------------------------------------------------------------------------------------------
# Finding the prunable inner dimensions
# -------------------------------------------------------------------------------------------------

def _op_tables():
    """(elementwise modules, functions, methods) for Linear chains, and the extra ones for conv chains."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    modules = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
               nn.Tanhshrink, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.AlphaDropout)
    functions = {F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
                 F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.sigmoid,
                 F.tanh, F.dropout, F.alpha_dropout, torch.relu, torch.relu_, torch.sigmoid, torch.tanh,
                 torch.clamp, torch.clip}
    methods = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min",
               "clamp_min_", "clip", "contiguous"}
    conv_modules = (nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    conv_functions = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout2d}
    return modules, functions, methods, conv_modules, conv_functions


_SCALAR_OPS = {operator.mul, operator.truediv, operator.add, operator.sub}


def _graphs(module, prefix: str = ""):
    """(path prefix, fx graph) for the model, or for its largest sub-modules that can be traced."""
    import warnings

    import torch.fx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # untraceable forward (data-dependent control flow, **kwargs, ...): look inside
        for name, child in module.named_children():
            yield from _graphs(child, f"{prefix}{name}.")
        return
    yield prefix, graph


def _only_input(node, value) -> bool:
    """``node`` uses ``value`` exactly once and no other graph value (constants are fine)."""
    import torch.fx

    seen = []
    torch.fx.node.map_arg((node.args, node.kwargs), seen.append)
    return seen == [value]


def _find_pairs(model) -> list[dict]:
    """Inner dimensions that can be pruned: ``{"producer", "consumer", "norms", "width", "kind"}``."""
    import torch.nn as nn

    modules, functions, methods, conv_modules, conv_functions = _op_tables()
    registered: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        registered[id(m)] = registered.get(id(m), 0) + 1
    param_uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        for p in m._parameters.values():
            if p is not None:
                param_uses[id(p)] = param_uses.get(id(p), 0) + 1

    def plain(m) -> bool:
        hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                 getattr(m, "_backward_pre_hooks", {}))
        return (registered.get(id(m)) == 1 and not any(hooks)
                and all(param_uses.get(id(p)) == 1 for p in m._parameters.values() if p is not None))

    def layer_kind(m) -> str | None:
        if type(m) is nn.Linear:
            return "linear"
        if type(m) is nn.Conv2d and m.groups == 1:
            return "conv"
        return None

    pairs = []
    for prefix, graph in _graphs(model):
        calls: dict[str, int] = {}
        touched: set[str] = set()
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
            elif node.op == "get_attr":  # a module's weights read directly: leave that module alone
                touched.add(node.target.rsplit(".", 1)[0])

        def usable(target: str) -> bool:
            return calls.get(target) == 1 and target not in touched

        def module_of(node):
            return model.get_submodule(prefix + node.target) if node.op == "call_module" else None

        for node in graph.nodes:
            producer = module_of(node)
            kind = layer_kind(producer) if producer is not None else None
            if kind is None or not usable(node.target) or not plain(producer):
                continue
            width = producer.out_features if kind == "linear" else producer.out_channels
            norm_type = nn.BatchNorm1d if kind == "linear" else nn.BatchNorm2d
            ok_modules = modules + (conv_modules if kind == "conv" else ())
            ok_functions = functions | (conv_functions if kind == "conv" else set())
            current, norms, consumer = node, [], None
            while True:
                users = list(current.users)
                if len(users) != 1 or not _only_input(users[0], current):
                    break
                user = users[0]
                m = module_of(user)
                if m is not None:
                    if not usable(user.target) or not plain(m):
                        break
                    if layer_kind(m) == kind and (m.in_features if kind == "linear" else m.in_channels) == width:
                        consumer = prefix + user.target
                        break
                    if type(m) is norm_type and m.num_features == width:
                        norms.append(prefix + user.target)
                    elif not (isinstance(m, ok_modules) and type(m).__module__.startswith("torch.nn")):
                        break
                elif user.op == "call_function":
                    if user.target not in ok_functions and not (
                            user.target in _SCALAR_OPS and len(user.args) == 2 and not user.kwargs
                            and all(isinstance(a, (int, float)) for a in user.args if a is not current)):
                        break
                elif user.op == "call_method":
                    if user.target not in methods or user.args[0] is not current:
                        break
                else:  # output, placeholder, ...
                    break
                current = user
            if consumer is not None:
                pairs.append({"producer": prefix + node.target, "consumer": consumer, "norms": norms,
                              "width": width, "kind": kind})
    return pairs


# -------------------------------------------------------------------------------------------------
# Rebuilding layers
# -------------------------------------------------------------------------------------------------

def _keep_indices(weight, ratio: float):
    """Indices of the output units (rows / filters) to keep: all but the ``ratio`` with the lowest L2 norm."""
    import torch

    width = weight.shape[0]
    keep = width - int(ratio * width)
    if keep >= width or keep < 1:
        return None
    norms = weight.detach().reshape(width, -1).float().norm(dim=1)
    return torch.sort(torch.topk(norms, keep).indices).values


def _rebuilt(old, out_idx, in_idx):
    """A smaller copy of a Linear / Conv2d / BatchNorm keeping the ``out_idx`` outputs and ``in_idx`` inputs."""
    import torch
    import torch.nn as nn

    w = None if isinstance(old, nn.modules.batchnorm._BatchNorm) else old.weight
    like = next((t for t in (w, old.weight, getattr(old, "running_mean", None), old.bias) if t is not None), None)
    factory = {"device": like.device, "dtype": like.dtype} if like is not None else {}
    if isinstance(old, nn.modules.batchnorm._BatchNorm):
        new = type(old)(len(out_idx), eps=old.eps, momentum=old.momentum, affine=old.affine,
                        track_running_stats=old.track_running_stats, **factory)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(old, name, None) is not None:
                    getattr(new, name).copy_(getattr(old, name)[out_idx])
            if old.num_batches_tracked is not None:
                new.num_batches_tracked.copy_(old.num_batches_tracked)
    else:
        out_idx = out_idx if out_idx is not None else torch.arange(w.shape[0], device=w.device)
        in_idx = in_idx if in_idx is not None else torch.arange(w.shape[1], device=w.device)
        if isinstance(old, nn.Linear):
            new = nn.Linear(len(in_idx), len(out_idx), bias=old.bias is not None, **factory)
        else:
            new = nn.Conv2d(len(in_idx), len(out_idx), old.kernel_size, stride=old.stride, padding=old.padding,
                            dilation=old.dilation, groups=1, bias=old.bias is not None,
                            padding_mode=old.padding_mode, **factory)
        with torch.no_grad():
            new.weight.copy_(w[out_idx][:, in_idx])
            if old.bias is not None:
                new.bias.copy_(old.bias[out_idx])
        if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
            new = new.to(memory_format=torch.channels_last)
    for name, p in new.named_parameters(recurse=False):
        p.requires_grad_(getattr(old, name).requires_grad)
    new.train(old.training)
    return new


def _replace(model, path: str, module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _plan(lookup, pairs: list[dict], ratio: float) -> dict[str, dict]:
    """path -> {"out": kept output indices or None, "in": kept input indices or None}, decided on the
    original weights (``lookup(path)`` gives the original module)."""
    plan: dict[str, dict] = {}
    for pair in pairs:
        keep = _keep_indices(lookup(pair["producer"]).weight, ratio)
        if keep is None:
            continue
        plan.setdefault(pair["producer"], {"out": None, "in": None})["out"] = keep
        plan.setdefault(pair["consumer"], {"out": None, "in": None})["in"] = keep
        for norm in pair["norms"]:
            plan[norm] = {"out": keep, "in": None}
    return plan


def _outputs_shapes(workload):
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


def prune_structured(workload, ratio: float):
    """Remove the ``ratio`` lowest-L2-norm inner units of every safely prunable layer pair of ``workload.model``."""
    model = workload.model
    before = sum(p.numel() for p in model.parameters())
    pairs = _find_pairs(model)
    plan = _plan(model.get_submodule, pairs, ratio)
    if not plan:
        raise ValueError(f"nothing could be pruned safely in {type(model).__name__}")
    originals = {path: model.get_submodule(path) for path in plan}
    expected = _outputs_shapes(workload)

    def install(plan_now: dict) -> bool:
        for path, old in originals.items():
            _replace(model, path, old)
        for path, p in plan_now.items():
            _replace(model, path, _rebuilt(originals[path], p["out"], p["in"]))
        try:
            return _outputs_shapes(workload) == expected
        except Exception:
            return False

    kept = [p for p in pairs if plan.get(p["producer"], {}).get("out") is not None]
    if not install(plan):
        accepted: list[dict] = []
        for pair in kept[:_MAX_RETRIES]:
            if install(_plan(originals.get, accepted + [pair], ratio)):
                accepted.append(pair)
        if not accepted or not install(_plan(originals.get, accepted, ratio)):
            install({})
            raise ValueError(f"nothing could be pruned safely in {type(model).__name__}: "
                             "the pruned forward changed the outputs' shapes or failed")
        kept = accepted
    after = sum(p.numel() for p in model.parameters())
    widths = sorted({(p["width"], p["width"] - int(ratio * p["width"])) for p in kept})
    notes = dict(getattr(workload, "notes", None) or {})
    notes.update(parameters_removed=before - after, parameters_before=before, dimensions_pruned=len(kept),
                 detail=f"{len(kept)} inner dimension(s) of {type(model).__name__} pruned ("
                        + ", ".join(f"{a}->{b}" for a, b in widths) + "): "
                        + ", ".join(f"{p['producer']}->{p['consumer']}" for p in kept[:4])
                        + (", ..." if len(kept) > 4 else ""))
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
        raise ValueError(f"no Linear or Conv2d layer in {type(workload.model).__name__}")
    notes = dict(getattr(workload, "notes", None) or {})
    notes.update(parameters_removed=0, parameters_before=sum(p.numel() for p in workload.model.parameters()),
                 weights_zeroed=zeroed, weights_in_layers=total)
    workload.notes = notes
    return workload


# -------------------------------------------------------------------------------------------------
# Techniques
# -------------------------------------------------------------------------------------------------

class StructuredPruning(Technique):
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
                  "add, a reshape or the output keep their width, and small matmuls are bound by per-op "
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


_STRUCTURED_SNIPPET = """import torch.nn.utils.prune as prune

# Zero the RATIO of output units (Linear rows / Conv2d filters) with the lowest L2 norm, in the
# inner layers whose output feeds only the next layer (not the last layer, not into a residual add):
for layer in (model.block.fc1, model.features.conv1):
    prune.ln_structured(layer, name="weight", amount=RATIO, n=2, dim=0)
    prune.remove(layer, "weight")
# Zeroed rows are still multiplied: the speed comes only from physically removing them (a smaller
# layer, and the matching inputs of the next layer and channels of BatchNorms in between), e.g. with
# the torch-pruning library:
#   import torch_pruning as tp
#   pruner = tp.pruner.MagnitudePruner(model, example_inputs, importance=tp.importance.MagnitudeImportance(p=2),
#                                      pruning_ratio=RATIO, ignored_layers=[model.classifier])
#   pruner.step()
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

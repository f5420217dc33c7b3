"""Hand-written attention (``softmax(q @ k.transpose(-2, -1) * scale [masked]) [dropout] @ v``) replaced by
``F.scaled_dot_product_attention``: the model copy's own modules are traced with torch.fx, one at a time,
and the pattern is rewritten in the graph of each module that contains it."""

from __future__ import annotations

import operator

from advisor.hookspecs import hookimpl
from advisor.technique import Context, DoesNotApply, Estimate, Technique, Verdict, amdahl

#: what the fused kernel is assumed to gain on the ops it replaces (no (T x T) scores written and read back)
LOCAL_SPEEDUP = 2.0
_SCORE_OPS = ("aten::bmm", "aten::matmul", "aten::_softmax", "aten::masked_fill", "aten::dropout")
#: a masked_fill value at or below this is taken as -inf (exp() of it is 0 in every float dtype)
_NEG_INF = -1e4


def _functions(*names):
    import torch
    import torch.nn.functional as F

    return {getattr(module, name) for module in (torch, F, operator) for name in names if hasattr(module, name)}


def _is(node, functions: set, method: str | None = None) -> bool:
    return (node.op == "call_function" and node.target in functions) or \
        (method is not None and node.op == "call_method" and node.target == method)


def _arg(node, index: int, name: str, default=None):
    """A call's argument given by position (counting ``self`` for methods) or by keyword."""
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _only_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _dropout_p(module) -> float:
    return module.p if module.training else 0.0


def _functional_dropout_p(p: float, training: bool) -> float:
    return p if training else 0.0


def _reciprocal(x) -> float:
    return 1.0 / float(x)


def _as_float(x) -> float:
    return float(x)


def _logical_not(mask):
    return ~mask


class _Match:
    """One matmul-softmax-matmul chain found in a graph, with what SDPA needs to replace it."""

    def __init__(self, q, k, v, out, scale=None, mask=None, dropout=None):
        self.q, self.k, self.v, self.out = q, k, v, out
        self.scale, self.mask, self.dropout = scale, mask, dropout


def _match(softmax, modules: dict) -> _Match | None:
    """The chain around ``softmax`` (a node), or None when it is not plain attention."""
    import torch.nn as nn

    matmuls, masked_fill = _functions("matmul", "bmm"), _functions("masked_fill")
    if not _is(softmax, _functions("softmax"), "softmax") or _arg(softmax, 1, "dim") != -1 \
            or softmax.kwargs.get("dtype") is not None:
        return None
    # forward: softmax -> [dropout] -> matmul(·, v)
    weights, dropout = softmax, None
    after = _only_user(softmax)
    if after is not None and after.op == "call_module" and type(modules.get(after.target)) is nn.Dropout:
        weights, dropout = after, ("module", after.target)
    elif after is not None and _is(after, _functions("dropout")):
        weights, dropout = after, ("functional", _arg(after, 1, "p", 0.5), _arg(after, 2, "training", True))
    after = _only_user(weights)
    if after is None or not _is(after, matmuls, "matmul") or after.args[0] is not weights:
        return None
    # backward: softmax's input <- [scale] [mask] (either order) <- matmul(q, k.transpose(-2, -1))
    node, scale, mask = softmax.args[0], None, None
    while hasattr(node, "op") and not _is(node, matmuls, "matmul"):
        if len(node.users) != 1:
            return None
        if mask is None and _is(node, masked_fill, "masked_fill"):
            value = _arg(node, 2, "value")
            if not isinstance(value, (int, float)) or value > _NEG_INF:
                return None
            mask, node = _arg(node, 1, "mask"), node.args[0]
        elif scale is None and _is(node, _functions("truediv", "div"), "div") and hasattr(node.args[0], "op"):
            scale, node = ("divide", node.args[1]), node.args[0]
        elif scale is None and _is(node, _functions("mul"), "mul"):
            chain = hasattr(node.args[1], "op") and _is(node.args[1], matmuls | masked_fill, "masked_fill")
            tensor, factor = node.args[::-1] if chain else node.args
            scale, node = ("multiply", factor), tensor
        else:
            return None
    if not (hasattr(node, "op") and _is(node, matmuls, "matmul") and len(node.users) == 1):
        return None
    q, transposed = node.args[0], node.args[1]
    if not (hasattr(transposed, "op") and _is(transposed, _functions("transpose"), "transpose")
            and {_arg(transposed, 1, "dim0"), _arg(transposed, 2, "dim1")} == {-2, -1}):
        return None
    return _Match(q, transposed.args[0], after.args[1], after, scale, mask, dropout)


def _rewrite(graph_module) -> int:
    """Replace every matched chain in ``graph_module`` by SDPA; the number replaced."""
    import torch.nn.functional as F

    graph, modules = graph_module.graph, dict(graph_module.named_modules())
    matches = [m for m in (_match(node, modules) for node in graph.nodes) if m is not None]
    for m in matches:
        with graph.inserting_before(m.out):
            kwargs = {"scale": 1.0}
            if m.scale is not None:
                how, value = m.scale
                kwargs["scale"] = graph.call_function(_reciprocal if how == "divide" else _as_float, (value,))
            if m.mask is not None:
                kwargs["attn_mask"] = graph.call_function(_logical_not, (m.mask,))
            if m.dropout is not None and m.dropout[0] == "module":
                kwargs["dropout_p"] = graph.call_function(_dropout_p, (graph.get_attr(m.dropout[1]),))
            elif m.dropout is not None:
                kwargs["dropout_p"] = graph.call_function(_functional_dropout_p, m.dropout[1:])
            fused = graph.call_function(F.scaled_dot_product_attention, (m.q, m.k, m.v), kwargs)
        m.out.replace_all_uses_with(fused)
        graph.erase_node(m.out)
    if matches:
        graph.eliminate_dead_code()
        graph.lint()
        graph_module.recompile()
        graph_module.delete_all_unused_submodules()
    return len(matches)


def _tracer():
    import torch.fx as fx

    class OwnCodeOnly(fx.Tracer):
        """Traces one module's own forward, every sub-module a leaf; buffers as graph attributes."""

        proxy_buffer_attributes = True

        def is_leaf_module(self, module, qualified_name):
            return True
    return OwnCodeOnly()


def use_sdpa(model):
    """``model`` with hand-written attention in its modules' own code replaced by SDPA (on the module
    objects given: pass a copy); the number of patterns replaced and the modules they were in."""
    import torch.fx as fx

    replaced, where, untraced = 0, [], []
    for path, module in list(model.named_modules()):
        if type(module).__module__.startswith("torch.") or not _source_has_softmax(module):
            continue
        try:
            graph_module = fx.GraphModule(module, _tracer().trace(module), type(module).__name__)
        except Exception as exc:  # untraceable code (data-dependent control flow, ...)
            untraced.append(f"{path or type(module).__name__}: {type(exc).__name__}: {exc}")
            continue
        count = _rewrite(graph_module)
        if not count:
            continue
        graph_module.train(module.training)
        parent, _, name = path.rpartition(".")
        if path:
            setattr(model.get_submodule(parent) if parent else model, name, graph_module)
        else:
            model = graph_module
        replaced += count
        where.append(path or type(module).__name__)
    if not replaced:
        raise DoesNotApply("no q @ k.transpose(-2, -1) -> softmax(dim=-1) -> @ v chain found in the model's own "
                           "modules" + (f"; could not trace {'; '.join(untraced[:2])}" if untraced else ""))
    return model, replaced, where


def _source_has_softmax(module) -> bool:
    """Cheap filter before tracing: the module's class mentions softmax in its forward."""
    import inspect

    try:
        return "softmax" in inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return True


class ScaledDotProductAttention(Technique):
    name = "sdpa"
    title = "Replace hand-written attention by F.scaled_dot_product_attention (fused kernel)"
    snippet = """import torch.nn.functional as F

# instead of
#   att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
#   att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
#   y = self.attn_dropout(F.softmax(att, dim=-1)) @ v
y = F.scaled_dot_product_attention(q, k, v, is_causal=True,          # or attn_mask=<bool mask, True = attend>
                                   dropout_p=self.dropout if self.training else 0.0)"""

    def applies_to(self, context: Context) -> Verdict:
        matmul = context.share_of("aten::bmm", "aten::matmul")
        if not matmul:
            return Verdict(False, "no batched matmul among the step's hot ops: no hand-written attention to replace")
        softmax = context.share_of("aten::_softmax")  # forward and backward, not log_softmax
        return Verdict(True, f"batched matmuls ({matmul:.0%}) and softmax ({softmax:.0%}) among the hot ops, as in "
                             "hand-written attention; the pattern is looked for in the model copy")

    def estimate(self, context: Context) -> Estimate:
        share = context.share_of(*_SCORE_OPS)
        return Estimate(speedup=round(amdahl(share, LOCAL_SPEEDUP), 3),
                        basis=f"{share:.0%} of the step in batched matmuls, softmax, masking and dropout of "
                              f"attention scores, assumed ~{LOCAL_SPEEDUP:g}x faster fused (no T x T score "
                              "matrix written and read back); other bmm/matmul ops in the step count too",
                        risk="none beyond float rounding: the same arithmetic in another order (~1e-6 "
                             "relative in float32); dropout draws different random masks")

    def apply(self, workload):
        model, count, where = use_sdpa(workload.model)
        workload.model = model
        workload.notes = {**workload.notes, "attention_patterns_replaced": count, "modules": where[:8]}
        return workload


@hookimpl
def advisor_techniques(config):
    return [ScaledDotProductAttention()]

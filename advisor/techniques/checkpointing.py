"""Activation checkpointing of the model's repeated blocks: each block keeps only its input for the backward and
runs its forward again there (``torch.utils.checkpoint``, non-reentrant); the selective variant keeps the outputs
of its matmuls and recomputes only the cheap ops between them."""

from __future__ import annotations

from advisor.hookspecs import hookimpl
from advisor.technique import Context, DoesNotApply, Estimate, Technique, Verdict

#: activations at least this share of the step's peak (with parameters, gradients and optimizer state)
ACTIVATION_SHARE = 0.5
#: share of the activations still held with every block checkpointed (the blocks' inputs, one block recomputed
#: at a time, what lies outside the blocks), and with matmul outputs kept too
KEPT, KEPT_SELECTIVE = 0.25, 0.6
_MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::convolution")
#: optimizer state per parameter, in parameters' sizes
_MOMENTS = {"Adam": 2, "AdamW": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2, "Adagrad": 1, "RMSprop": 1, "Adadelta": 2}
_DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def state_bytes(workload: dict) -> int:
    """Bytes of the parameters, their gradients and the optimizer's state (``workload.json``'s description)."""
    parameters = (workload.get("trainable_parameters") or 0) * _DTYPE_BYTES.get(workload.get("parameter_dtype"), 4)
    optimizer = workload.get("optimizer") or {}
    cls = (optimizer.get("class") or "").rsplit(".", 1)[-1]
    moments = _MOMENTS.get(cls, 1 if (optimizer.get("hyperparameters") or {}).get("momentum") else 0)
    return parameters * (2 + moments)


def activation_bytes(summary: dict) -> int | None:
    """The allocator's peak growth within the recorded steps: what a step allocates on top of what it holds
    (its activations, chiefly), on the GPU where the model runs there, else on the CPU."""
    peaks = (summary.get("memory") or {}).get("profiler_peak_bytes") or {}
    cuda = [v for k, v in peaks.items() if k.startswith("cuda")]
    return max(cuda) if cuda else peaks.get("cpu")


def _forward_share(context: Context) -> float:
    return ((context.summary.get("breakdown") or {}).get("forward") or {}).get("share") or 0.0


def _policy_keeping_matmuls(ctx, op, *args, **kwargs):
    """Selective checkpointing's policy: the outputs of matrix products are saved, everything else recomputed."""
    import torch
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    saved = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.convolution.default,
             aten._scaled_dot_product_flash_attention.default, aten._scaled_dot_product_efficient_attention.default}
    return CheckpointPolicy.MUST_SAVE if op in saved else CheckpointPolicy.PREFER_RECOMPUTE


def _selective_contexts():
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_policy_keeping_matmuls)


class _CheckpointedForward:
    """A block's forward run under ``torch.utils.checkpoint`` when autograd records (set as the block's
    ``forward``, so that its parameters keep their names)."""

    def __init__(self, forward, selective: bool):
        self.forward, self.selective = forward, selective

    def __call__(self, *args, **kwargs):
        import torch
        from torch.utils.checkpoint import checkpoint, noop_context_fn

        if not torch.is_grad_enabled():
            return self.forward(*args, **kwargs)
        return checkpoint(self.forward, *args, use_reentrant=False,
                          context_fn=_selective_contexts if self.selective else noop_context_fn, **kwargs)


class Checkpointing(Technique):
    """Every block of the model's largest group of repeated blocks checkpointed (``selective``: matmuls kept)."""

    def __init__(self, selective: bool):
        self.selective = selective
        self.name = "selective_checkpointing" if selective else "activation_checkpointing"
        self.title = ("Checkpoint the repeated blocks, keeping their matmul outputs" if selective else
                      "Checkpoint the repeated blocks: recompute their activations in the backward")
        self.snippet = self._snippet("model", {"container": "blocks", "type": "Block", "count": "N"})

    def applies_to(self, context: Context) -> Verdict:
        blocks = context.workload.get("repeated_blocks") or []
        if not context.workload.get("training"):
            return Verdict(False, "inference: no activations are kept for a backward")
        if not blocks:
            return Verdict(False, "no repeated blocks (an nn.ModuleList or nn.Sequential of one block class)")
        activations, state = activation_bytes(context.summary), state_bytes(context.workload)
        if not activations:
            return Verdict(False, "the step's allocation peak was not recorded")
        share = activations / (activations + state)
        where = (f"activations ~{_mib(activations)} against {_mib(state)} of parameters, gradients and "
                 f"optimizer state ({share:.0%} of the step's peak)")
        if share < ACTIVATION_SHARE:
            return Verdict(False, f"activations do not dominate the peak: {where}")
        group = blocks[0]
        return Verdict(True, f"{where}; {group['count']} x {group['type']} in {group['container'] or 'the model'}")

    def estimate(self, context: Context) -> Estimate:
        activations = activation_bytes(context.summary) or 0
        forward = _forward_share(context)
        matmuls = context.share_of(*_MATMULS) / 3  # the forward's third of matmul time (forward, two in backward)
        added = max(forward - matmuls, 0.0) if self.selective else forward
        kept = KEPT_SELECTIVE if self.selective else KEPT
        recomputed = "the forward's ops other than matmuls" if self.selective else "the blocks' forward"
        return Estimate(
            speedup=round(1 / (1 + added), 3), memory_bytes=-int((1 - kept) * activations),
            basis=(f"{recomputed} runs again in the backward: +{added:.0%} of the step (forward {forward:.0%}"
                   + (f", matmuls ~{matmuls:.0%} of it" if self.selective else "")
                   + f"); ~{kept:.0%} of the {_mib(activations)} of activations assumed still held"),
            risk="none: the same ops recomputed with the RNG state restored (dropout alike)")

    def snippet_for(self, context: Context) -> str:
        blocks = context.workload.get("repeated_blocks") or []
        return self._snippet(context.workload.get("model") or "model", blocks[0]) if blocks else self.snippet

    def _snippet(self, model: str, group: dict) -> str:
        where = f"self.{group['container']}" if group["container"] else "self"
        call = "x = checkpoint(block, x, use_reentrant=False"
        if not self.selective:
            return (f"from torch.utils.checkpoint import checkpoint\n\n"
                    f"# in {model}.forward: each of {where} ({group['count']} x {group['type']}) keeps only its input\n"
                    f"for block in {where}:\n    {call})")
        return ("import functools\nfrom torch.utils.checkpoint import CheckpointPolicy, checkpoint, "
                "create_selective_checkpoint_contexts\n\n"
                "def keep_matmuls(ctx, op, *args, **kwargs):\n"
                "    saved = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}\n"
                "    return CheckpointPolicy.MUST_SAVE if op in saved else CheckpointPolicy.PREFER_RECOMPUTE\n\n"
                f"# in {model}.forward: each of {where} ({group['count']} x {group['type']}) keeps its matmul outputs\n"
                f"for block in {where}:\n    {call},\n"
                "                   context_fn=functools.partial(create_selective_checkpoint_contexts, keep_matmuls))")

    def apply(self, workload):
        from advisor.workload import repeated_blocks

        groups = repeated_blocks(workload.model)
        if not groups:
            raise DoesNotApply("no repeated blocks in the model")
        modules = dict(workload.model.named_modules())
        for name in groups[0]["names"]:
            block = modules[name]
            block.forward = _CheckpointedForward(block.forward, self.selective)
        workload.notes["checkpointed"] = f"{len(groups[0]['names'])} x {groups[0]['type']} in {groups[0]['container']}"
        return workload


@hookimpl
def advisor_techniques(config):
    return [Checkpointing(selective=False), Checkpointing(selective=True)]

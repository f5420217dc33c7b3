"""The captured step as techniques and trials see it: the model copy, its calls, the optimizer.

A :class:`Workload` is what :meth:`advisor.technique.Technique.apply` is given (a private copy) and what
the trials time; :mod:`advisor.runner.capture` makes one from the script's step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import itertools
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map

def copy_tensors(tree):
    """The tree with every tensor copied (detached; leaves keep ``requires_grad``)."""
    def copy_one(x):
        if isinstance(x, torch.Tensor):
            return x.detach().clone().requires_grad_(x.requires_grad) if x.is_leaf else x.detach().clone()
        return x
    return tree_map(copy_one, tree)


def _plain(tree):
    """Dataclass outputs as dicts of their fields (pytree does not see into dataclasses)."""
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type) and not isinstance(tree, dict):
        return {f.name: _plain(getattr(tree, f.name)) for f in dataclasses.fields(tree)}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(_plain(x) for x in tree)
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def tensor_leaves(tree) -> list[torch.Tensor]:
    """The tensors in a nest of tuples, lists, dicts, named tuples and dataclasses, in a stable order."""
    return [x for x in tree_flatten(_plain(tree))[0] if isinstance(x, torch.Tensor)]


def relative_error(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """``‖a - b‖ / ‖a‖`` over all floating-point tensors together, as one vector (in float64)."""
    diff = norm = 0.0
    for a, b in zip(reference, other):
        if not (a.is_floating_point() and b.is_floating_point()):
            continue
        a64, b64 = a.detach().double(), b.detach().to(a.device).double()
        diff += (a64 - b64).pow(2).sum().item()
        norm += a64.pow(2).sum().item()
    return (diff / norm) ** 0.5 if norm > 0 else diff ** 0.5


@dataclasses.dataclass
class Call:
    """One call of the model in a step: its inputs, the state it ran in, and its backward seeds.

    :param output_grads: per output tensor, the gradient that reached it from outside the model
        (None where none did, or where the output is not a backward root).
    """

    args: tuple
    kwargs: dict
    rng_state: torch.Tensor
    cuda_rng_state: list | None = None
    grad_enabled: bool = True
    train_mode: bool = True
    autocast: list = dataclasses.field(default_factory=list)
    output_grads: list = dataclasses.field(default_factory=list)

    def copy(self) -> Call:
        args, kwargs = copy_tensors((self.args, self.kwargs))
        return dataclasses.replace(self, args=args, kwargs=kwargs, output_grads=list(self.output_grads))

    @contextlib.contextmanager
    def state(self, model: torch.nn.Module):
        """RNG, grad mode, train/eval mode and autocast as they were at the script's call."""
        torch.set_rng_state(self.rng_state)
        if self.cuda_rng_state is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng_state)
        if model.training != self.train_mode:
            model.train(self.train_mode)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(self.grad_enabled))
            for device, dtype in self.autocast:
                stack.enter_context(torch.autocast(device_type=device, dtype=dtype))
            yield


@dataclasses.dataclass
class OptimizerSpec:
    """Enough to build the same optimizer, in the same state, over a copy of the model."""

    cls: type
    defaults: dict
    groups: list  # per group: (its settings, the names of its parameters)
    state: dict = dataclasses.field(default_factory=dict)  # parameter name -> its state before the step
    takes_closure: bool = False

    def build(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        # torch.compile wraps the model: its parameter names gain an ``_orig_mod.`` prefix
        params = {n.replace("_orig_mod.", ""): p for n, p in model.named_parameters()}
        groups = [{**settings, "params": [params[n] for n in names if n in params]}
                  for settings, names in self.groups]
        accepted = inspect.signature(self.cls.__init__).parameters
        defaults = {k: v for k, v in self.defaults.items() if k in accepted}
        optimizer = self.cls([g for g in groups if g["params"]], **defaults)
        for name, state in self.state.items():
            p = params.get(name)
            if p is not None and all(not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape == p.shape
                                     for v in state.values()):
                optimizer.state[p] = {k: v.clone().to(p.device) if isinstance(v, torch.Tensor) and v.dim() else
                                      v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        return optimizer

    def to_json(self) -> dict:
        def plain(v):
            return v if isinstance(v, (int, float, str, bool, type(None))) else (
                list(v) if isinstance(v, tuple) else repr(v))
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}",
                "hyperparameters": {k: plain(v) for k, v in self.defaults.items()},
                "groups": len(self.groups), "state_copied": bool(self.state), "closure": self.takes_closure}


def apply_between(model: torch.nn.Module, actions: list[tuple]) -> None:
    """Replay what the script did to the gradients between backward and the optimizer step."""
    params = dict(model.named_parameters())
    for action in actions:
        chosen = [params[n] for n in action[-1] if n in params and params[n].grad is not None]
        if not chosen:
            continue
        if action[0] == "unscale":
            torch._foreach_mul_([p.grad for p in chosen], action[1])
        elif action[0] == "clip_grad_norm":
            torch.nn.utils.clip_grad_norm_(chosen, action[1], norm_type=action[2])
        elif action[0] == "clip_grad_value":
            torch.nn.utils.clip_grad_value_(chosen, action[1])


def describe_between(actions: list[tuple]) -> list[str]:
    """The actions between backward and the optimizer step, in words."""
    words = {"unscale": "GradScaler unscale (1/{:g})", "clip_grad_norm": "clip_grad_norm_(max_norm={:g})",
             "clip_grad_value": "clip_grad_value_({:g})"}
    return [words[a[0]].format(a[1]) for a in actions]


@dataclasses.dataclass
class Workload:
    """The captured step: a private model copy, the calls of each captured step, the optimizer.

    ``steps[i]`` holds the calls of captured step ``i``; a timed replay runs them in turn, so that
    successive replays see different batches. ``args``, ``kwargs``, ``output_grads`` and
    ``rng_state`` are those of the first call of the first step.
    """

    model: torch.nn.Module
    steps: list  # list[list[Call]]
    training: bool
    optimizer: OptimizerSpec | None
    #: what the script did to the gradients between backward and the optimizer step
    between: list = dataclasses.field(default_factory=list)
    #: context managers (as factories) entered around each forward, e.g. autocast
    forward_contexts: list = dataclasses.field(default_factory=list)
    #: samples per step relative to the captured step (a technique that doubles the batch sets 2.0),
    #: so that speedups compare throughput
    batch_scale: float = 1.0
    #: what a technique wants reported about its change (e.g. ``parameters_removed``)
    notes: dict = dataclasses.field(default_factory=dict)
    #: the script's own DataLoader that fed the captured step (None if none was seen); shared by
    #: every clone and never changed: a technique builds new loaders over its ``dataset``
    data_loader: Any = None

    @classmethod
    def of_call(cls, model: torch.nn.Module, args: tuple, kwargs: dict | None = None, *, training: bool = False,
                output_grads: list | None = None, optimizer: OptimizerSpec | None = None) -> Workload:
        """A workload of one step with one call (for a plugin's own tests)."""
        call = Call(args=args, kwargs=kwargs or {}, rng_state=torch.get_rng_state(), grad_enabled=training,
                    train_mode=model.training, output_grads=list(output_grads or []))
        return cls(model=model, steps=[[call]], training=training, optimizer=optimizer)

    # -- the first call, as one-call techniques see it ------------------------------------------
    @property
    def args(self) -> tuple:
        """The first call's positional inputs."""
        return self.steps[0][0].args

    @property
    def kwargs(self) -> dict:
        """The first call's keyword inputs."""
        return self.steps[0][0].kwargs

    @property
    def rng_state(self) -> torch.Tensor:
        """The CPU RNG state at the first call."""
        return self.steps[0][0].rng_state

    @property
    def output_grads(self) -> list:
        """The first call's output gradients (see :class:`Call`); :meth:`map_output_grads` changes every call's."""
        return self.steps[0][0].output_grads

    def calls(self) -> list[Call]:
        """Every captured call, of every step."""
        return [call for step in self.steps for call in step]

    def clone(self) -> Workload:
        """An independent copy: trials change copies, never the captured workload itself."""
        return dataclasses.replace(self, model=copy.deepcopy(self.model),
                                   steps=[[call.copy() for call in step] for step in self.steps],
                                   forward_contexts=list(self.forward_contexts), notes=dict(self.notes))

    def map_inputs(self, fn) -> None:
        """Replace every input tensor ``t`` of every call by ``fn(t)``."""
        for call in self.calls():
            call.args, call.kwargs = tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x,
                                              (call.args, call.kwargs))

    def map_output_grads(self, fn) -> None:
        """Replace every captured output gradient ``g`` of every call by ``fn(g)`` (None stays None)."""
        for call in self.calls():
            call.output_grads = [None if g is None else fn(g) for g in call.output_grads]

    def call_model(self, call: Call):
        """The model called on one call's inputs, in the call's state and inside every forward context."""
        with call.state(self.model), contextlib.ExitStack() as stack:
            for make_context in self.forward_contexts:
                stack.enter_context(make_context())
            return self.model(*call.args, **call.kwargs)

    def forward(self):
        """The model called on the first call's inputs (RNG as it was then), inside every forward context."""
        return self.call_model(self.steps[0][0])

    def backward(self, call: Call, outputs) -> None:
        """Backward from the call's outputs, seeded with the gradients the script's backward gave them."""
        leaves = tensor_leaves(outputs)
        pairs = [(t, g) for t, g in zip(leaves, call.output_grads) if g is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g.to(t.dtype) for t, g in pairs])

    def run_calls(self, step: int = 0) -> list:
        """Every model call of captured step ``step``, each followed (training) by its backward; the outputs
        of each call. What the script did after backward and the optimizer step are not run."""
        outputs = []
        for call in self.steps[step]:
            out = self.call_model(call)
            if self.training:
                self.backward(call, out)
            outputs.append(out)
        return outputs

    def step_function(self, hold_weights: bool = False) -> Callable[[], list]:
        """A function running one step per call, each call on the next captured step's batches: forward; for
        training also backward, what the script did between backward and the optimizer, and the optimizer
        step (gradients are reset as the step starts, so they can be inspected after it). It returns the
        outputs of each model call.

        ``hold_weights`` runs the optimizer with a learning rate of 0: the same work, its state advancing,
        but the weights stay as captured, so that every run of a batch must give the same outputs."""
        optimizer = self.optimizer.build(self.model) if self.training and self.optimizer is not None else None
        if optimizer is not None and hold_weights:
            for group in optimizer.param_groups:
                group["lr"] = torch.zeros_like(group["lr"]) if isinstance(group["lr"], torch.Tensor) else 0.0
        turn = itertools.count()

        def step():
            if self.training:
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                else:
                    self.model.zero_grad(set_to_none=True)
            outputs = self.run_calls(next(turn) % len(self.steps))
            if self.training:
                apply_between(self.model, self.between)
                if optimizer is not None:
                    optimizer.step()
            return outputs
        return step

    def trained_share(self) -> float:
        """The share of the model's parameters (by count) that hold a gradient now."""
        params = list(self.model.parameters())
        total = sum(p.numel() for p in params)
        return sum(p.numel() for p in params if p.grad is not None) / total if total else 0.0


def repeated_blocks(model: torch.nn.Module) -> list[dict]:
    """The model's repeated blocks: per ``nn.ModuleList`` or ``nn.Sequential`` holding two or more modules of one
    class that have children of their own, its ``container`` name, the blocks' ``type``, their ``names`` within
    the model and their ``parameters``; the group with the most parameters first."""
    groups = []
    for container_name, container in model.named_modules():
        if not isinstance(container, (torch.nn.ModuleList, torch.nn.Sequential)):
            continue
        by_type: dict[type, list[tuple[str, torch.nn.Module]]] = {}
        for name, child in container.named_children():
            if any(True for _ in child.children()):
                by_type.setdefault(type(child), []).append((name, child))
        for cls, blocks in by_type.items():
            if len(blocks) >= 2:
                prefix = f"{container_name}." if container_name else ""
                groups.append({"container": container_name, "type": cls.__qualname__,
                               "names": [prefix + name for name, _ in blocks],
                               "parameters": sum(p.numel() for _, b in blocks for p in b.parameters())})
    return sorted(groups, key=lambda g: -g["parameters"])


def describe(workload: Workload) -> dict:
    """What was captured, as plain JSON data."""
    inputs = []
    for i, t in enumerate(tensor_leaves((workload.args, workload.kwargs))):
        inputs.append({"index": i, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                       "device": str(t.device)})
    params = list(workload.model.parameters())
    first = workload.steps[0][0]
    return {
        "model": type(workload.model).__qualname__,
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameter_dtype": str(params[0].dtype).replace("torch.", "") if params else None,
        "training": workload.training,
        "inputs": inputs,
        "batch_size": inputs[0]["shape"][0] if inputs and inputs[0]["shape"] else None,
        "calls_per_step": len(workload.steps[0]),
        "captured_steps": len(workload.steps),
        "autocast": [f"{device}:{str(dtype).replace('torch.', '')}" for device, dtype in first.autocast],
        "backward_from_outputs": [i for i, g in enumerate(first.output_grads) if g is not None]
        if workload.training else None,
        "between_backward_and_step": describe_between(workload.between),
        "optimizer": workload.optimizer.to_json() if workload.optimizer else None,
        "repeated_blocks": [{k: v for k, v in g.items() if k != "names"} | {"count": len(g["names"])}
                            for g in repeated_blocks(workload.model)],
    }

"""Workload capture: one step of the script, copied so that trials can replay it without the script.

During one armed step (the step before the profiled window) the capture keeps:

- a deep copy of the first outermost module with parameters called in the step (its weights as the
  step starts) and a copy of the inputs of that call, with the RNG state at that moment;
- the gradient that reached each tensor output, and which outputs the script's backward started
  from (an HF-style model returning ``(logits, loss)`` is replayed from ``loss`` alone, since
  gradients hooked on both would count the paths between them twice);
- the optimizer that stepped the module's parameters: its class, defaults and per-group settings;
- the script's own outputs and parameter gradients, to check the replay against.

The user's objects are never modified: only copies are kept and replayed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map


def _copy_tensors(tree):
    def copy_one(x):
        if isinstance(x, torch.Tensor):
            return x.detach().clone().requires_grad_(x.requires_grad) if x.is_leaf else x.detach().clone()
        return x
    return tree_map(copy_one, tree)


def _tensor_leaves(tree) -> list[torch.Tensor]:
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]


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
class OptimizerSpec:
    """Enough to build the same optimizer over a copy of the model."""

    cls: type
    defaults: dict
    groups: list[dict]  # per group: its settings and the names of its parameters

    def build(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        # torch.compile wraps the model: its parameter names gain an ``_orig_mod.`` prefix
        params = {n.replace("_orig_mod.", ""): p for n, p in model.named_parameters()}
        groups = [{**settings, "params": [params[n] for n in names if n in params]}
                  for settings, names in self.groups]
        accepted = inspect.signature(self.cls.__init__).parameters
        defaults = {k: v for k, v in self.defaults.items() if k in accepted}
        return self.cls([g for g in groups if g["params"]], **defaults)

    def to_json(self) -> dict:
        def plain(v):
            return v if isinstance(v, (int, float, str, bool, type(None))) else (
                list(v) if isinstance(v, tuple) else repr(v))
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}",
                "hyperparameters": {k: plain(v) for k, v in self.defaults.items()},
                "groups": len(self.groups)}


@dataclasses.dataclass
class Workload:
    """One captured step: a private model copy, its inputs, and what backward and the optimizer need."""

    model: torch.nn.Module
    args: tuple
    kwargs: dict
    training: bool
    output_grads: list[torch.Tensor | None]
    backward_from: list[int] | None
    optimizer: OptimizerSpec | None
    rng_state: torch.Tensor
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

    def clone(self) -> Workload:
        """An independent copy: trials change copies, never the captured workload itself."""
        return dataclasses.replace(self, model=copy.deepcopy(self.model), args=_copy_tensors(self.args),
                                   kwargs=_copy_tensors(self.kwargs), forward_contexts=list(self.forward_contexts),
                                   notes=dict(self.notes))

    def map_inputs(self, fn) -> None:
        """Replace every input tensor ``t`` by ``fn(t)``."""
        self.args, self.kwargs = tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x,
                                          (self.args, self.kwargs))

    def forward(self):
        """The model called on the inputs, inside every forward context."""
        with contextlib.ExitStack() as stack:
            for make_context in self.forward_contexts:
                stack.enter_context(make_context())
            return self.model(*self.args, **self.kwargs)

    def step_function(self):
        """A function running one full step (forward; for training also backward and optimizer step)."""
        if not self.training:
            def infer():
                with torch.no_grad():
                    return self.forward()
            return infer
        optimizer = self.optimizer.build(self.model) if self.optimizer is not None else None

        def train():
            outputs = self.forward()
            self.backward(outputs)
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                self.model.zero_grad(set_to_none=True)
            return outputs
        return train

    def backward(self, outputs) -> None:
        """Backward from the outputs the script's backward started at, with the gradients it saw."""
        leaves = _tensor_leaves(outputs)
        indices = self.backward_from if self.backward_from is not None else [
            i for i, g in enumerate(self.output_grads) if g is not None]
        roots = [leaves[i] for i in indices if leaves[i].requires_grad]
        grads = [self.output_grads[i].to(leaves[i].dtype) for i in indices if leaves[i].requires_grad]
        if roots:
            torch.autograd.backward(roots, grads)


class WorkloadCapture:
    """Observes one armed step through the step detector's hooks and packages it as a :class:`Workload`."""

    def __init__(self):
        self.armed = False
        self.failure: str | None = None
        self._module: torch.nn.Module | None = None
        self._copy: torch.nn.Module | None = None
        self._inputs: tuple | None = None
        self._rng: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] = []
        self._output_copies: list[torch.Tensor] = []
        self._output_grads: list[torch.Tensor | None] = []
        self._backward_from: list[int] | None = None
        self._optimizer: OptimizerSpec | None = None
        self._param_grads: dict[str, torch.Tensor] = {}
        self._training = False

    # -- hooks, called by the step detector ---------------------------------------------------
    def before_call(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> bool:
        if not self.armed or self._copy is not None or self.failure or not any(True for _ in module.parameters()):
            return False
        try:
            self._copy = copy.deepcopy(module)
            self._inputs = _copy_tensors((args, kwargs))
        except Exception as exc:  # a model that cannot be copied cannot be trialled
            self.failure = f"the model cannot be copied ({type(exc).__name__}: {exc})"
            self._copy = None
            return False
        self._module = module
        self._rng = torch.get_rng_state()
        self._training = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
        return True

    def after_call(self, result) -> None:
        self._outputs = _tensor_leaves(result)
        self._output_copies = [t.detach().clone() for t in self._outputs]
        self._output_grads = [None] * len(self._outputs)
        for i, t in enumerate(self._outputs):
            if t.requires_grad:
                t.register_hook(self._grad_keeper(i))

    def _grad_keeper(self, i: int):
        def keep(grad):
            self._output_grads[i] = grad.detach().clone()
        return keep

    def on_backward(self, tensors) -> None:
        if self._copy is None or self._backward_from is not None or self._optimizer is not None:
            return
        roots = tensors if isinstance(tensors, (tuple, list)) else [tensors]
        ids = {id(t) for t in roots if isinstance(t, torch.Tensor)}
        hits = [i for i, t in enumerate(self._outputs) if id(t) in ids]
        if hits:
            self._backward_from = hits

    def on_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._module is None or self._optimizer is not None:
            return
        names = {id(p): n for n, p in self._module.named_parameters()}
        groups = []
        for group in optimizer.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            groups.append((settings, [names[id(p)] for p in group["params"] if id(p) in names]))
        if not any(n for _, n in groups):
            return
        self._optimizer = OptimizerSpec(type(optimizer), dict(optimizer.defaults), groups)
        self._param_grads = {n: p.grad.detach().clone() for n, p in self._module.named_parameters()
                             if p.grad is not None}

    # -- result -------------------------------------------------------------------------------
    def finish(self) -> Workload | None:
        """Stop observing; the captured workload, or None (``failure`` says why)."""
        self.armed = False
        if self.failure:
            return None
        module, self._module, self._outputs = self._module, None, []
        del module
        if self._copy is None:
            self.failure = self.failure or "no module with parameters was called in the captured step"
            return None
        args, kwargs = self._inputs
        if self._training and not any(g is not None for g in self._output_grads):
            self._training = False  # the outputs never received a gradient: the step did not train this module
        return Workload(model=self._copy, args=args, kwargs=kwargs, training=self._training,
                        output_grads=self._output_grads, backward_from=self._backward_from,
                        optimizer=self._optimizer, rng_state=self._rng)

    def replay_check(self, workload: Workload) -> dict[str, Any]:
        """Replay the workload once on a copy and compare with what the script computed."""
        trial = workload.clone()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(workload.rng_state)
            with torch.set_grad_enabled(workload.training):
                outputs = trial.forward()
            result = {"output_rel_error": relative_error(self._output_copies, _tensor_leaves(outputs))}
            if workload.training:
                trial.backward(outputs)
                grads = dict(trial.model.named_parameters())
                names = [n for n in self._param_grads if grads[n].grad is not None]
                result["grad_rel_error"] = relative_error([self._param_grads[n] for n in names],
                                                          [grads[n].grad for n in names]) if names else None
        return result


def describe(workload: Workload) -> dict:
    """What was captured, as plain JSON data."""
    inputs = []
    for i, t in enumerate(_tensor_leaves((workload.args, workload.kwargs))):
        inputs.append({"index": i, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                       "device": str(t.device)})
    params = list(workload.model.parameters())
    return {
        "model": type(workload.model).__qualname__,
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameter_dtype": str(params[0].dtype).replace("torch.", "") if params else None,
        "training": workload.training,
        "inputs": inputs,
        "batch_size": inputs[0]["shape"][0] if inputs and inputs[0]["shape"] else None,
        "backward_from_outputs": workload.backward_from,
        "optimizer": workload.optimizer.to_json() if workload.optimizer else None,
    }

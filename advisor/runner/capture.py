"""Workload capture: the script's step, copied so that trials can replay it without the script.

The capture observes a few consecutive steps before the profiled window (see :data:`CAPTURED_STEPS`)
through the step detector's hooks. From the first of them it keeps:

- a deep copy of the model as the step starts: the one outermost module with parameters that the
  step trains (or, for inference, runs); a step that trains two models (a GAN) is not captured;
- every call of that model in the step (accumulation and siamese models call it several times):
  a copy of its inputs, the RNG state, grad mode, train/eval mode and autocast settings at the call,
  and the gradient that reached each output from outside the model. Only outputs that no other
  output depends on are backward roots, so a model returning ``(logits, loss)`` is replayed from
  ``loss`` whatever the script does to it (divide it, scale it with a ``GradScaler``);
- what runs between the last backward and the optimizer step: ``GradScaler`` unscaling and
  gradient clipping (``clip_grad_norm_``, ``clip_grad_value_``);
- the optimizer that stepped the model's parameters: its class, settings and state;
- the script's own outputs, parameter gradients (as backward left them) and parameter update, to
  check the replay against (:meth:`WorkloadCapture.replay_check`).

From the later steps it keeps the calls' inputs and output gradients only, so that timed replays
rotate among real batches. The user's objects are never modified: only copies are kept and replayed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import itertools
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map

#: steps observed before the window: the first gives the model and the check, all give batches
CAPTURED_STEPS = 3
#: relative error under which a replay counts as reproducing the script
REPLAY_TOLERANCE = 1e-3
_AUTOCAST_DEVICES = ("cpu", "cuda")


def _copy_tensors(tree):
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


def _autocast_state() -> list[tuple[str, torch.dtype]]:
    return [(device, torch.get_autocast_dtype(device)) for device in _AUTOCAST_DEVICES
            if torch.is_autocast_enabled(device)]


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
        args, kwargs = _copy_tensors((self.args, self.kwargs))
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


def _apply_between(model: torch.nn.Module, actions: list[tuple]) -> None:
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
            outputs = []
            for call in self.steps[next(turn) % len(self.steps)]:
                out = self.call_model(call)
                if self.training:
                    self.backward(call, out)
                outputs.append(out)
            if self.training:
                _apply_between(self.model, self.between)
                if optimizer is not None:
                    optimizer.step()
            return outputs
        return step

    def trained_share(self) -> float:
        """The share of the model's parameters (by count) that hold a gradient now."""
        params = list(self.model.parameters())
        total = sum(p.numel() for p in params)
        return sum(p.numel() for p in params if p.grad is not None) / total if total else 0.0


@dataclasses.dataclass
class _Seen:
    """A model call observed during the capture."""

    module: torch.nn.Module
    call: Call
    outputs: list = dataclasses.field(default_factory=list)
    output_copies: list = dataclasses.field(default_factory=list)
    received: list = dataclasses.field(default_factory=list)  # per output: got a gradient
    roots: list = dataclasses.field(default_factory=list)  # per output: no other output depends on it


class WorkloadCapture:
    """Observes the armed steps through the step detector's hooks and packages them as a :class:`Workload`."""

    def __init__(self):
        self.armed = False
        self.failure: str | None = None
        self._steps: list[list[_Seen]] = [[]]
        self._copies: dict[int, torch.nn.Module] = {}  # id(module) -> its copy as step 0 started
        self._modules: dict[int, torch.nn.Module] = {}
        self._grads: dict[int, dict[str, torch.Tensor]] = {}  # id(module) -> its gradients after a backward
        self._optimizers: dict[int, tuple] = {}  # id(module) -> (OptimizerSpec, id(optimizer))
        self._updates: dict[int, dict[str, torch.Tensor]] = {}  # id(module) -> parameters after the step
        self._between: list[tuple] = []
        self._closures: set[int] = set()  # optimizers stepped with a closure
        self._frozen_between: list[tuple] | None = None
        self.training_seen = False
        self._check: dict | None = None

    @property
    def _first_step(self) -> bool:
        return len(self._steps) == 1

    # -- hooks, called by the step detector ---------------------------------------------------
    def before_call(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> bool:
        if not self.armed or self.failure or next(module.parameters(), None) is None:
            return False
        if id(module) not in self._copies:
            if not self._first_step:
                return False
            try:
                self._copies[id(module)] = copy.deepcopy(module)
            except Exception as exc:  # a model that cannot be copied cannot be trialled
                self.failure = f"the model cannot be copied ({type(exc).__name__}: {exc})"
                return False
            self._modules[id(module)] = module
        try:
            args, kwargs = _copy_tensors((args, kwargs))
        except Exception as exc:
            self.failure = f"the model's inputs cannot be copied ({type(exc).__name__}: {exc})"
            return False
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else None
        call = Call(args=args, kwargs=kwargs, rng_state=torch.get_rng_state(), cuda_rng_state=cuda_rng,
                    grad_enabled=torch.is_grad_enabled(), train_mode=module.training, autocast=_autocast_state())
        self._steps[-1].append(_Seen(module=module, call=call))
        return True

    def after_call(self, result) -> None:
        seen = self._steps[-1][-1]
        seen.outputs = tensor_leaves(result)
        seen.call.output_grads = [None] * len(seen.outputs)
        seen.received = [False] * len(seen.outputs)
        seen.roots = _roots(seen.outputs)
        if self._first_step:
            seen.output_copies = [t.detach().clone() for t in seen.outputs]
        for i, t in enumerate(seen.outputs):
            if t.requires_grad and seen.roots[i]:
                t.register_hook(functools.partial(self._keep_grad, seen, i))
            elif t.requires_grad:
                t.register_hook(functools.partial(self._mark_received, seen, i))

    @staticmethod
    def _keep_grad(seen: _Seen, i: int, grad: torch.Tensor) -> None:
        kept = seen.call.output_grads[i]
        seen.call.output_grads[i] = grad.detach().clone() if kept is None else kept + grad.detach()
        seen.received[i] = True

    @staticmethod
    def _mark_received(seen: _Seen, i: int, grad: torch.Tensor) -> None:
        seen.received[i] = True

    def after_backward(self) -> None:
        """A backward call returned: keep the gradients as backward left them (before clipping)."""
        if not self.armed or not self._first_step:
            return
        self._between = []
        for key, module in self._modules.items():
            grads = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
            if grads:
                self._grads[key] = grads
                self.training_seen = True

    def on_gradients_changed(self, action: str, value: float, parameters, extra: float | None = None) -> None:
        """The script unscaled or clipped gradients (``action`` as :func:`_apply_between` knows it)."""
        if not self.armed or not self._first_step or self._frozen_between is not None:
            return
        ids = {id(p) for p in parameters}
        for module in self._modules.values():
            names = [n for n, p in module.named_parameters() if id(p) in ids]
            if names:
                self._between.append((action, value, extra, names))

    def on_optimizer_step(self, optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: dict | None = None) -> None:
        """An optimizer is about to step: note it, with its state, for the models whose parameters it holds."""
        if not self.armed or not self._first_step:
            return
        if any(callable(a) for a in args[1:]) or callable((kwargs or {}).get("closure")):  # args[0]: the optimizer
            self._closures.add(id(optimizer))
        self._note_optimizer(optimizer, with_state=True)
        if self._frozen_between is None and self._modules:
            self._frozen_between = list(self._between)

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer stepped: keep the parameters it updated (a closure's model is first called inside)."""
        if not self.armed or not self._first_step:
            return
        self._note_optimizer(optimizer, with_state=False)
        for key, module in self._modules.items():
            spec = self._optimizers.get(key)
            if spec is not None and spec[1] == id(optimizer) and key not in self._updates:
                self._updates[key] = {n: p.detach().clone() for n, p in module.named_parameters()}

    def _note_optimizer(self, optimizer: torch.optim.Optimizer, with_state: bool) -> None:
        param_ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for key, module in self._modules.items():
            names = {id(p): n for n, p in module.named_parameters()}
            if key in self._optimizers or not param_ids & set(names):
                continue
            groups = [({k: v for k, v in group.items() if k != "params"},
                       [names[id(p)] for p in group["params"] if id(p) in names]) for group in optimizer.param_groups]
            state = {names[id(p)]: _copy_tensors(dict(optimizer.state[p])) for p in optimizer.state
                     if id(p) in names and isinstance(optimizer.state[p], dict)} if with_state else {}
            spec = OptimizerSpec(type(optimizer), dict(optimizer.defaults), groups, state,
                                 takes_closure=id(optimizer) in self._closures)
            self._optimizers[key] = (spec, id(optimizer))

    def step_ended(self) -> None:
        """A captured step ended; the next one starts (its calls give more batches)."""
        if self.armed and not self.failure:
            self._steps.append([])

    # -- result -------------------------------------------------------------------------------
    def finish(self) -> Workload | None:
        """Stop observing; the captured workload, or None (``failure`` says why)."""
        self.armed = False
        try:
            return None if self.failure else self._package()
        finally:
            self._modules.clear()
            for step in self._steps:
                for seen in step:
                    seen.module = seen.outputs = None

    def _package(self) -> Workload | None:
        first = self._steps[0]
        if not first:
            self.failure = "no module with parameters was called in the captured step"
            return None
        trained = _unique(seen.module for seen in first if any(seen.received))
        if len(trained) > 1:
            self.training_seen = True
            self.failure = (f"the step trains {len(trained)} models ({_names(trained)}); "
                            "advisor replays the step of one model")
            return None
        training = bool(trained)
        model = trained[0] if training else None
        if model is None:
            ran = _unique(seen.module for seen in first)
            if len(ran) > 1:
                self.failure = (f"the step runs {len(ran)} models ({_names(ran)}); "
                                "advisor replays the step of one model")
                return None
            model = ran[0]
        key = id(model)
        # A training step replays the calls that trained (an evaluation under no_grad in between is left out).
        wanted = (lambda s: s.module is model and any(s.received)) if training else (lambda s: s.module is model)
        steps = [[s for s in step if wanted(s)] for step in self._steps]
        steps = [step for step in steps if step]
        spec = self._optimizers.get(key, (None, None))[0]
        workload = Workload(model=self._copies[key], steps=[[s.call for s in step] for step in steps],
                            training=training, optimizer=spec,
                            between=list(self._frozen_between if self._frozen_between is not None else self._between))
        self._check = {"outputs": [c for s in steps[0] for c in s.output_copies], "grads": self._grads.get(key, {}),
                       "updated": self._updates.get(key), "before": {n: p.detach().clone() for n, p in
                                                                     self._copies[key].named_parameters()}}
        return workload

    def replay_check(self, workload: Workload) -> dict[str, Any]:
        """Replay the first captured step once on a copy and compare with what the script computed.

        ``reproduced`` is False, with ``why``, when the outputs, the gradients (as backward left them)
        or the parameter update differ by more than :data:`REPLAY_TOLERANCE`, or when the step cannot
        be replayed at all (an optimizer that re-evaluates a closure).
        """
        check = self._check or {}
        result: dict[str, Any] = {"calls": len(workload.steps[0]), "steps": len(workload.steps)}
        trial = workload.clone()
        trial.steps = trial.steps[:1]
        optimizer = trial.optimizer.build(trial.model) if trial.training and trial.optimizer else None
        with torch.random.fork_rng(devices=_cuda_devices(trial.model)):
            outputs = []
            for call in trial.steps[0]:
                out = trial.call_model(call)
                if trial.training:
                    trial.backward(call, out)
                outputs.extend(tensor_leaves(out))
            result["output_rel_error"] = relative_error(check.get("outputs", []), outputs)
            if trial.training:
                params = dict(trial.model.named_parameters())
                script = check.get("grads", {})
                names = [n for n in script if n in params]
                result["grad_rel_error"] = relative_error(
                    [script[n] for n in names],
                    [params[n].grad if params[n].grad is not None else torch.zeros_like(script[n]) for n in names]
                ) if names else None
                updated = check.get("updated")
                if optimizer is not None and updated is not None and not trial.optimizer.takes_closure:
                    _apply_between(trial.model, trial.between)
                    with torch.no_grad():
                        optimizer.step()
                    before = check["before"]
                    result["update_rel_error"] = relative_error([updated[n] - before[n] for n in names],
                                                                [params[n].detach() - before[n] for n in names])
        result["why"] = self._not_reproduced(workload, result)
        result["reproduced"] = result["why"] is None
        return result

    @staticmethod
    def _not_reproduced(workload: Workload, result: dict) -> str | None:
        if workload.optimizer is not None and workload.optimizer.takes_closure:
            return (f"{workload.optimizer.cls.__name__} re-evaluates the script's loss in a closure at each step, "
                    "which advisor cannot replay")
        if workload.training and result.get("grad_rel_error") is None:
            return "the script's parameter gradients were not seen"
        names = {"output_rel_error": "outputs differ", "grad_rel_error": "parameter gradients differ",
                 "update_rel_error": "optimizer's parameter update differs"}
        off = [f"{what} by {result[key]:.2g}" for key, what in names.items()
               if result.get(key) is not None and not result[key] <= REPLAY_TOLERANCE]
        return "the replay's " + "; ".join(off) + f" (tolerance {REPLAY_TOLERANCE:g})" if off else None


def _unique(modules) -> list:
    found: dict[int, Any] = {}
    for m in modules:
        found.setdefault(id(m), m)
    return list(found.values())


def _names(modules: list) -> str:
    classes = [type(m).__name__ for m in modules]
    return ", ".join(f"{classes.count(c)} of class {c}" if classes.count(c) > 1 else c for c in dict.fromkeys(classes))


def _cuda_devices(model: torch.nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})


def _roots(outputs: list[torch.Tensor], limit: int = 200_000) -> list[bool]:
    """Per output: True when no other output was computed from it (its gradient is all from outside)."""
    roots = [True] * len(outputs)
    with_grad = [i for i, t in enumerate(outputs) if t.grad_fn is not None]
    if len(with_grad) < 2:
        return roots
    nodes = {t.grad_fn: i for i, t in ((i, outputs[i]) for i in with_grad)}
    for j in with_grad:
        seen, stack = set(), [fn for fn, _ in outputs[j].grad_fn.next_functions if fn is not None]
        while stack and len(seen) < limit:
            fn = stack.pop()
            if fn in seen:
                continue
            seen.add(fn)
            i = nodes.get(fn)
            if i is not None and i != j:
                roots[i] = False
            stack.extend(f for f, _ in fn.next_functions if f is not None)
    return roots


def install_gradient_watch(current: Callable[[], WorkloadCapture | None]) -> Callable[[], None]:
    """Wrap ``GradScaler.unscale_`` and the gradient clipping functions so that the capture returned by
    ``current()`` learns what the script does between backward and the optimizer step; returns the undo."""
    undo = []

    def wrap(owner, name, note):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            capture = current()
            if capture is not None and capture.armed:
                args = list(args)
                note(capture, args, kwargs)
            return original(*args, **kwargs)
        setattr(owner, name, wrapper)
        undo.append(lambda: setattr(owner, name, original))

    def clip(action, value_key):
        def note(capture, args, kwargs):
            params = kwargs.get("parameters", args[0] if args else None)
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            if args:
                args[0] = params
            else:
                kwargs["parameters"] = params
            value = kwargs.get(value_key, args[1] if len(args) > 1 else None)
            norm_type = kwargs.get("norm_type", args[2] if len(args) > 2 else 2.0)
            capture.on_gradients_changed(action, float(value), params, float(norm_type))
        return note

    def unscale(capture, args, kwargs):
        scaler, optimizer = args[0], kwargs.get("optimizer", args[1] if len(args) > 1 else None)
        state = scaler._per_optimizer_states[id(optimizer)] if hasattr(scaler, "_per_optimizer_states") else {}
        if scaler.is_enabled() and getattr(state.get("stage"), "name", "READY") == "READY":
            params = [p for group in optimizer.param_groups for p in group["params"]]
            capture.on_gradients_changed("unscale", 1.0 / scaler.get_scale(), params)

    for module in {torch.nn.utils, torch.nn.utils.clip_grad}:
        wrap(module, "clip_grad_norm_", clip("clip_grad_norm", "max_norm"))
        wrap(module, "clip_grad_value_", clip("clip_grad_value", "clip_value"))
    wrap(torch.amp.GradScaler, "unscale_", unscale)

    def remove():
        while undo:
            undo.pop()()
    return remove


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
    }

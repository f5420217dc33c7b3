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

import copy
import dataclasses
import functools
from typing import Any, Callable

import torch

from advisor.workload import (Call, OptimizerSpec, Workload, apply_between, copy_tensors, relative_error,
                              tensor_leaves)

#: steps observed before the window: the first gives the model and the check, all give batches
CAPTURED_STEPS = 3
#: relative error under which a replay counts as reproducing the script
REPLAY_TOLERANCE = 1e-3
_AUTOCAST_DEVICES = ("cpu", "cuda")


def _autocast_state() -> list[tuple[str, torch.dtype]]:
    return [(device, torch.get_autocast_dtype(device)) for device in _AUTOCAST_DEVICES
            if torch.is_autocast_enabled(device)]


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
            args, kwargs = copy_tensors((args, kwargs))
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
            state = {names[id(p)]: copy_tensors(dict(optimizer.state[p])) for p in optimizer.state
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
            outputs = tensor_leaves(trial.run_calls(0))
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
                    apply_between(trial.model, trial.between)
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


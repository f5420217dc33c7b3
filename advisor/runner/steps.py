"""Step detection in the script's process, with no change to the script.

A step ends at one of these boundaries, in this order of authority (a mode of higher authority, once
seen, replaces a lower one and the steps are counted afresh):

- ``explicit``: the script calls :func:`advisor.step`; once seen, the others are ignored;
- ``optimizer``: a ``torch.optim.Optimizer.step()`` returned (the first optimizer that steps sets
  the pace, so a GAN's second optimizer does not double the count); a ``GradScaler.step`` that skipped
  the optimizer's step (inf/nan gradients) ends the step all the same; gradient accumulation and
  LBFGS's closure stay inside one step;
- ``backward``: for loops that update the parameters by hand (no optimizer ever stepped): the end of
  every outermost ``backward``/``autograd.grad``, once a backward started after the gradients were
  reset or the parameters changed since the previous one ended (or two ``autograd.grad`` calls came);
- ``module``: a call of the outermost ``nn.Module`` returned, used for inference only: the same
  module must have completed two outermost calls with no backward pass seen anywhere.

When none of them comes before a recording limit, the runner analyses the recording as time slices
(``time_slices``, see :mod:`advisor.runner.limits`).

The detector also marks each outermost module call as ``advisor::forward`` and each backward pass
as ``advisor::backward`` in the profiler trace (names in :mod:`advisor.rundir`), which the step breakdown reads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import sysconfig
from typing import Callable

import torch
import torch.autograd.profiler as _profiler
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from advisor.rundir import BACKWARD_EVENT, CALL_SITE_PREFIX, FORWARD_EVENT


_LIBRARY_ROOTS = tuple(
    os.path.realpath(p) + os.sep
    for p in {os.path.dirname(os.path.dirname(torch.__file__)), os.path.dirname(os.__file__),
              os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
              sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)
_is_library_cache: dict[str, bool] = {}


def _is_library(filename: str) -> bool:
    known = _is_library_cache.get(filename)
    if known is None:
        known = filename.startswith("<") or os.path.realpath(filename).startswith(_LIBRARY_ROOTS)
        _is_library_cache[filename] = known
    return known


def user_call_site(depth: int = 2) -> str | None:
    """``file:line`` of the innermost frame of the user's own code calling into torch, if any."""
    frame = sys._getframe(depth)
    while frame is not None and _is_library(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@contextlib.contextmanager
def _call_site_label(depth: int):
    site = user_call_site(depth + 2)
    if site is None:
        yield
    else:
        with torch.profiler.record_function(CALL_SITE_PREFIX + site):
            yield


_UNLABELLED = contextlib.nullcontext()


def _label(name: str):
    """``record_function(name)`` while a profiler records (torch's own quick check), else nothing: a label costs
    ~20 µs even with no profiler running, on every model call of a script that goes on after the window."""
    return torch.profiler.record_function(name) if getattr(_profiler, "_is_profiler_enabled", True) else _UNLABELLED


EXPLICIT, OPTIMIZER, BACKWARD, MODULE = "explicit", "optimizer", "backward", "module"
#: most autograd nodes walked to find the leaves of a backward that no module call produced
_GRAPH_WALK_LIMIT = 20000


class StepDetector:
    """Installs the hooks and calls ``on_boundary(mode)`` at the end of every step."""

    def __init__(self, on_boundary: Callable[[str], None], on_restart: Callable[[], None] = lambda: None):
        self._on_boundary = on_boundary
        self._on_restart = on_restart
        self.mode: str | None = None
        self._pacing_optimizer: int | None = None
        self._pacing_module: int | None = None
        self._pacing_class: type | None = None
        self._module_call = torch.nn.Module.__call__
        self._depth = 0
        self._backward_depth = 0
        self._backward_seen = False
        self._optimizer_started = False
        self._optimizer_steps = 0
        self._grad_calls = 0
        self._module_calls: dict[int, int] = {}
        #: outermost modules called since the last backward ended, and the state of their parameters'
        #: gradients then (only while no mode is decided; see :meth:`_backward_starts`)
        self._called: dict[int, torch.nn.Module] = {}
        self._grad_state: list[tuple[torch.Tensor, tuple]] | None = None
        self._undo: list[Callable[[], None]] = []
        #: while True (the profiled window), module calls, backward and optimizer steps are
        #: labelled in the trace with the line of the user's code that made them
        self.label_call_sites = False
        #: observes the armed step for trials (see :mod:`advisor.runner.capture`)
        self.capture = None
        #: told of every outermost module call (see :mod:`advisor.runner.facts`)
        self.facts = None
        #: called once, at the first outermost module call or backward (the recording limits' clock)
        self.on_first_call: Callable[[], None] | None = None
        #: while True the hooks stand aside (advisor's own replays of the captured workload)
        self.paused = False
        #: ``--apply``: techniques acting on the running model, and the notes of its losses or outputs
        #: (see :mod:`advisor.runner.live`)
        self.live = None
        self.outcomes = None

    # -- installation -------------------------------------------------------------------------
    def install(self) -> None:
        handle = register_optimizer_step_post_hook(self._optimizer_stepped)
        self._undo.append(handle.remove)
        pre = register_optimizer_step_pre_hook(self._optimizer_starts)
        self._undo.append(pre.remove)
        self._optimizer_label: contextlib.AbstractContextManager | None = None
        self._install_module_call()
        self._install_backward()
        self._install_grad()
        self._install_grad_scaler()

    def _install_module_call(self) -> None:
        module_call = self._module_call = torch.nn.Module.__call__
        detector = self
        is_compiling = torch.compiler.is_compiling

        @functools.wraps(module_call)
        def advisor_module_call(self, *args, **kwargs):
            # The profiler's Python tracer reads the local named ``self`` of whatever code object
            # ``nn.Module.__call__`` has when it starts: keep that name, or it crashes.
            if is_compiling():  # traced by torch.compile: no state of advisor's in its guards
                return module_call(self, *args, **kwargs)
            if detector._depth or detector.paused:
                if not detector.label_call_sites or detector.paused:
                    return module_call(self, *args, **kwargs)
                with _call_site_label(1):
                    return module_call(self, *args, **kwargs)
            if detector.facts is not None:
                detector.facts.outermost_forward(self)
            detector._outermost_call_starts(self)
            capture = detector.capture
            captured = capture is not None and capture.before_call(self, args, kwargs)
            detector._depth += 1
            try:
                with _label(FORWARD_EVENT), _labels(detector):
                    if detector.live is None:
                        result = module_call(self, *args, **kwargs)
                    else:
                        result = detector.live.call(module_call, self, args, kwargs)
            finally:
                detector._depth -= 1
            if captured:
                capture.after_call(result)
            if detector.outcomes is not None and detector.mode == MODULE and id(self) == detector._pacing_module:
                detector.outcomes.output(result)
            detector._outermost_call_returned(self)
            return result

        torch.nn.Module.__call__ = advisor_module_call
        self._undo.append(lambda: setattr(torch.nn.Module, "__call__", module_call))

    def _install_backward(self) -> None:
        autograd_backward = torch.autograd.backward
        detector = self

        @functools.wraps(autograd_backward)
        def advisor_backward(*args, **kwargs):
            if detector.paused:
                return autograd_backward(*args, **kwargs)
            tensors = args[0] if args else kwargs.get("tensors")
            if detector.outcomes is not None:
                detector.outcomes.backward(tensors)
            return detector._backward_call(autograd_backward, args, kwargs, tensors, grad_call=False)

        torch.autograd.backward = advisor_backward
        self._undo.append(lambda: setattr(torch.autograd, "backward", autograd_backward))

    def _install_grad(self) -> None:
        autograd_grad = torch.autograd.grad
        detector = self

        @functools.wraps(autograd_grad)
        def advisor_grad(*args, **kwargs):
            if detector.paused:
                return autograd_grad(*args, **kwargs)
            outputs = args[0] if args else kwargs.get("outputs")
            return detector._backward_call(autograd_grad, args, kwargs, outputs, grad_call=True)

        torch.autograd.grad = advisor_grad
        self._undo.append(lambda: setattr(torch.autograd, "grad", autograd_grad))

    def _backward_call(self, function, args: tuple, kwargs: dict, roots, grad_call: bool):
        """``function`` (``torch.autograd.backward`` or ``grad``) labelled in the trace, told to the step rules
        and, for an outermost ``backward``, to the capture (before a boundary there ends the captured step)."""
        self._backward_depth += 1
        try:
            outermost = self._backward_starts(roots, grad_call=grad_call)
            with _label(BACKWARD_EVENT), _labels(self):
                result = function(*args, **kwargs)
        finally:
            self._backward_depth -= 1
        if outermost:
            if self.capture is not None and not grad_call:
                self.capture.after_backward()
            self._backward_returned()
        return result

    def _install_grad_scaler(self) -> None:
        """A ``GradScaler.step`` that skips the optimizer's step (inf/nan gradients) still ends the step."""
        scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)  # torch.cuda.amp's is a subclass
        if scaler is None:
            return
        scaler_step = scaler.step
        detector = self

        @functools.wraps(scaler_step)
        def advisor_scaler_step(self, optimizer, *args, **kwargs):
            if detector.paused:
                return scaler_step(self, optimizer, *args, **kwargs)
            stepped = detector._optimizer_steps
            result = scaler_step(self, optimizer, *args, **kwargs)
            if detector._optimizer_steps == stepped:  # skipped: the post-step hook did not run
                detector._optimizer_started = True
                detector._optimizer_stepped(optimizer, args, kwargs)
            return result

        scaler.step = advisor_scaler_step
        self._undo.append(lambda: setattr(scaler, "step", scaler_step))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def settle(self) -> None:
        """The window's work is done and the script goes on: from now on only the step boundaries are wanted.

        Model calls stop going through advisor's wrapper (0.7-0.9 µs more on every module call: up to 10 % of a
        step of tiny ops); in ``module`` mode, the pacing model's class alone keeps a light one that ends the
        steps. With no mode found yet, or a pacing class with a ``__call__`` of its own, the whole wrapper stays."""
        module_call, pacing = self._module_call, self._pacing_class
        if self.mode is None or self.mode == MODULE and (pacing is None or "__call__" in vars(pacing)):
            return
        torch.nn.Module.__call__ = module_call
        if self.mode != MODULE:
            return
        detector = self
        is_compiling = torch.compiler.is_compiling

        @functools.wraps(module_call)
        def advisor_pacing_call(self, *args, **kwargs):
            result = module_call(self, *args, **kwargs)
            if id(self) == detector._pacing_module and not detector.paused and not is_compiling():
                detector._on_boundary(MODULE)
            return result

        def undo():
            if vars(pacing).get("__call__") is advisor_pacing_call:
                delattr(pacing, "__call__")

        pacing.__call__ = advisor_pacing_call
        self._undo.append(undo)

    # -- boundaries ---------------------------------------------------------------------------
    def explicit_step(self) -> None:
        """The script called ``advisor.step()``: from now on only these calls end steps, counted afresh."""
        if self.mode != EXPLICIT:
            self.mode = EXPLICIT
            self._on_restart()
        self._on_boundary(EXPLICIT)

    def _switch(self, mode: str) -> None:
        """Take ``mode`` (of higher authority than the current one); steps found so far are forgotten."""
        previous, self.mode = self.mode, mode
        if previous is not None:
            self._on_restart()

    def _first_call(self) -> None:
        if self.on_first_call is not None:
            notify, self.on_first_call = self.on_first_call, None
            notify()

    def _optimizer_starts(self, optimizer, args, kwargs) -> None:
        if self.paused:
            return
        self._optimizer_started = True
        if self.capture is not None:
            self.capture.on_optimizer_step(optimizer, args, kwargs)
        if self.label_call_sites and self._optimizer_label is None:
            self._optimizer_label = _call_site_label(2)
            self._optimizer_label.__enter__()

    def _optimizer_stepped(self, optimizer, args, kwargs) -> None:
        if self._optimizer_label is not None:
            self._optimizer_label.__exit__(None, None, None)
            self._optimizer_label = None
        if self.paused:
            return
        if self.capture is not None:
            self.capture.after_optimizer_step(optimizer)
        self._optimizer_steps += 1
        self._grad_calls = 0
        if self.mode == EXPLICIT:
            return
        if self.mode != OPTIMIZER:
            self._switch(OPTIMIZER)
            self._pacing_optimizer = id(optimizer)
        if id(optimizer) == self._pacing_optimizer:
            self._on_boundary(OPTIMIZER)

    def _outermost_call_starts(self, module) -> None:
        self._first_call()
        if self.mode in (None, MODULE) and not self._optimizer_started:
            self._called[id(module)] = module

    def _outermost_call_returned(self, module) -> None:
        if self.mode in (EXPLICIT, OPTIMIZER, BACKWARD) or self._backward_seen:
            return
        if self.mode == MODULE:
            if id(module) == self._pacing_module:
                self._on_boundary(MODULE)
            return
        calls = self._module_calls[id(module)] = self._module_calls.get(id(module), 0) + 1
        if calls >= 2:
            self.mode = MODULE
            self._pacing_module, self._pacing_class = id(module), type(module)
            self._module_calls.clear()
            self._on_boundary(MODULE)

    def _backward_starts(self, roots, grad_call: bool) -> bool:
        """A backward or ``autograd.grad`` starts (counted in ``_backward_depth``); True when it is the outermost.

        With no mode of higher authority yet and no optimizer ever started, it decides ``backward`` mode
        when the script reset the gradients or changed the parameters in place since the previous
        backward ended (or when this is a second ``autograd.grad``). Gradients that were left to
        accumulate decide nothing: an optimizer step is likely to come.
        """
        if self._backward_depth > 1:  # reentrant (e.g. checkpointing): part of the outer backward
            return False
        self._backward_seen = True
        self._first_call()
        if self.mode not in (None, MODULE) or self._optimizer_started:
            return True
        if grad_call:
            self._grad_calls += 1
        changed = self._grad_state is not None and any(_grad_key(p) != key for p, key in self._grad_state)
        if changed or self._grad_calls >= 2:
            self._switch(BACKWARD)
            self._called.clear()
            self._grad_state = None
        elif not self._called:  # tensors of the script's own, no module: the leaves of this graph
            self._called = {0: _graph_leaves(roots)}
        return True

    def _backward_returned(self) -> None:
        if self.mode == BACKWARD:
            if not self._optimizer_started:  # an optimizer's step will switch to ``optimizer`` mode
                self._on_boundary(BACKWARD)
            return
        if self.mode in (None, MODULE) and not self._optimizer_started:
            params = {id(p): p for owner in self._called.values() for p in _parameters(owner)}
            self._grad_state = [(p, _grad_key(p)) for p in params.values()]
            self._called.clear()


def _parameters(owner) -> list[torch.Tensor]:
    return list(owner.parameters()) if isinstance(owner, torch.nn.Module) else owner


def _grad_key(p: torch.Tensor) -> tuple:
    """Changes when the gradient is reset (set to None, replaced, zeroed) or the parameter changes in place."""
    grad = p.grad
    return (None, None, p._version) if grad is None else (id(grad), grad._version, p._version)


def _graph_leaves(roots) -> list[torch.Tensor]:
    """The leaf tensors that a backward from ``roots`` accumulates gradients into (a bounded walk)."""
    roots = roots if isinstance(roots, (tuple, list)) else [roots]
    pending = [t.grad_fn for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen, leaves = set(), []
    while pending and len(seen) < _GRAPH_WALK_LIMIT:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _labels(detector: StepDetector):
    return _call_site_label(2) if detector.label_call_sites else contextlib.nullcontext()

"""Step detection in the script's process, with no change to the script.

A step ends at one of three kinds of boundary, tried in this order of authority:

- ``explicit``: the script calls :func:`advisor.step`; once seen, the other two are ignored;
- ``optimizer``: a ``torch.optim.Optimizer.step()`` returned (the first optimizer that steps sets
  the pace, so a GAN's second optimizer does not double the count);
- ``module``: a call of the outermost ``nn.Module`` returned, used for inference only: the same
  module must have completed two outermost calls with no backward pass seen anywhere.

The detector also marks each outermost module call as ``advisor::forward`` and each backward pass
as ``advisor::backward`` in the profiler trace, which the step breakdown reads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import sysconfig
from typing import Callable

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

FORWARD_LABEL = "advisor::forward"
BACKWARD_LABEL = "advisor::backward"
CALL_SITE_PREFIX = "advisor::call "

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

EXPLICIT, OPTIMIZER, MODULE = "explicit", "optimizer", "module"


class StepDetector:
    """Installs the hooks and calls ``on_boundary(mode)`` at the end of every step."""

    def __init__(self, on_boundary: Callable[[str], None], on_restart: Callable[[], None] = lambda: None):
        self._on_boundary = on_boundary
        self._on_restart = on_restart
        self.mode: str | None = None
        self._pacing_optimizer: int | None = None
        self._pacing_module: int | None = None
        self._depth = 0
        self._backward_seen = False
        self._module_calls: dict[int, int] = {}
        self._undo: list[Callable[[], None]] = []
        #: while True (the profiled window), module calls, backward and optimizer steps are
        #: labelled in the trace with the line of the user's code that made them
        self.label_call_sites = False
        #: observes the armed step for trials (see :mod:`advisor.runner.capture`)
        self.capture = None
        #: told of every outermost module call (see :mod:`advisor.runner.facts`)
        self.facts = None
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

        module_call = torch.nn.Module.__call__
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
            capture = detector.capture
            captured = capture is not None and capture.before_call(self, args, kwargs)
            detector._depth += 1
            try:
                with torch.profiler.record_function(FORWARD_LABEL), _labels(detector):
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

        autograd_backward = torch.autograd.backward

        @functools.wraps(autograd_backward)
        def advisor_backward(*args, **kwargs):
            if detector.paused:
                return autograd_backward(*args, **kwargs)
            if detector.outcomes is not None:
                detector.outcomes.backward(args[0] if args else kwargs.get("tensors"))
            detector._backward_seen = True
            with torch.profiler.record_function(BACKWARD_LABEL), _labels(detector):
                result = autograd_backward(*args, **kwargs)
            if detector.capture is not None:
                detector.capture.after_backward()
            return result

        torch.autograd.backward = advisor_backward
        self._undo.append(lambda: setattr(torch.autograd, "backward", autograd_backward))

        pre = register_optimizer_step_pre_hook(self._optimizer_starts)
        self._undo.append(pre.remove)
        self._optimizer_label: contextlib.AbstractContextManager | None = None

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- boundaries ---------------------------------------------------------------------------
    def explicit_step(self) -> None:
        """The script called ``advisor.step()``: from now on only these calls end steps, counted afresh."""
        if self.mode != EXPLICIT:
            self.mode = EXPLICIT
            self._on_restart()
        self._on_boundary(EXPLICIT)

    def _optimizer_starts(self, optimizer, args, kwargs) -> None:
        if self.paused:
            return
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
        if self.mode == EXPLICIT:
            return
        if self.mode != OPTIMIZER:
            self.mode = OPTIMIZER
            self._pacing_optimizer = id(optimizer)
        if id(optimizer) == self._pacing_optimizer:
            self._on_boundary(OPTIMIZER)

    def _outermost_call_returned(self, module) -> None:
        if self.mode in (EXPLICIT, OPTIMIZER) or self._backward_seen:
            return
        if self.mode == MODULE:
            if id(module) == self._pacing_module:
                self._on_boundary(MODULE)
            return
        calls = self._module_calls[id(module)] = self._module_calls.get(id(module), 0) + 1
        if calls >= 2:
            self.mode = MODULE
            self._pacing_module = id(module)
            self._module_calls.clear()
            self._on_boundary(MODULE)


def _labels(detector: StepDetector):
    return _call_site_label(2) if detector.label_call_sites else contextlib.nullcontext()

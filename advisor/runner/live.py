"""``advisor profile --apply``, in the script's process: techniques applied to the running model.

The session runs the script twice, a baseline and a run with the techniques applied, and the two
take turns step by step (see :mod:`advisor.comparison`). In each, nothing is profiled: the steps are
counted and timed, the script's own loss values are noted (for inference, the norm of the model's
output), and after each step the run waits for its turn.

A technique's ``apply`` is given the script's own model, at its first call, as a :class:`LiveWorkload`:
in place changes (``model.to(memory_format=...)``), forward contexts (autocast) and input changes
(``map_inputs``) then act on every later call. A technique that changes the batch or replaces the
model's parameters cannot act on a running script (its data loader and optimizer would not follow):
the run stops with :class:`ApplyRefused`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import torch
from torch.utils._pytree import tree_flatten, tree_map

from advisor.rundir_io import atomic_write_text
from advisor.technique import Call, DoesNotApply, Workload


class ApplyRefused(BaseException):
    """A technique cannot act on the running script; the applied run stops (not the script's fault)."""


@dataclasses.dataclass
class LiveWorkload(Workload):
    """The script's own model seen through the :class:`Workload` API: ``map_inputs`` changes every later call."""

    input_maps: list = dataclasses.field(default_factory=list)

    def map_inputs(self, fn) -> None:
        self.input_maps.append(fn)
        super().map_inputs(fn)


class LiveTechniques:
    """Applies techniques to the stepping model (the first outermost module with parameters) at its first call."""

    def __init__(self, techniques: list):
        self._techniques = techniques
        self.model: torch.nn.Module | None = None
        self._target: torch.nn.Module | None = None
        self._live: LiveWorkload | None = None

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._techniques]

    def call(self, module_call, module: torch.nn.Module, args: tuple, kwargs: dict):
        """Run one outermost module call, changed as the techniques asked when it is the stepping model."""
        if self.model is None and next(module.parameters(), None) is not None:
            self._apply(module, args, kwargs)
        if module is not self.model:
            return module_call(module, *args, **kwargs)
        for fn in self._live.input_maps:
            args, kwargs = tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x, (args, kwargs))
        with contextlib.ExitStack() as stack:
            for make_context in self._live.forward_contexts:
                stack.enter_context(make_context())
            return module_call(self._target, *args, **kwargs)

    def _apply(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.model = module
        first = Call(args=args, kwargs=kwargs, rng_state=torch.get_rng_state())
        live = LiveWorkload(model=module, steps=[[first]], training=module.training, optimizer=None)
        parameters = {id(p) for p in module.parameters()}
        for technique in self._techniques:
            try:
                result = technique.apply(live)
            except DoesNotApply as exc:
                raise ApplyRefused(f"{technique.name} does not apply to the running model: {exc}") from None
            except Exception as exc:
                raise ApplyRefused(f"{technique.name} failed on the running model: {type(exc).__name__}: {exc}") \
                    from None
            if result is not live:
                raise ApplyRefused(f"{technique.name} returned a new workload; it cannot act on the running script")
            if live.batch_scale != 1.0:
                raise ApplyRefused(f"{technique.name} changes the batch size, which the script's own data loader "
                                   "decides; change it in the script and compare the two runs instead")
            if {id(p) for p in live.model.parameters()} != parameters:
                raise ApplyRefused(f"{technique.name} replaces the model's parameters (as pruning does); the "
                                   "script's optimizer would not see them")
        self._target = live.model
        self._live = live


class StepOutcomes:
    """The script's loss values (the scalars it calls backward on), or for inference its output norms."""

    def __init__(self):
        self._values: list[tuple[int, str, torch.Tensor]] = []
        #: the step now running (steps completed so far)
        self.step = 0

    def backward(self, tensors) -> None:
        for t in tree_flatten(tensors)[0]:
            if isinstance(t, torch.Tensor) and t.numel() == 1:
                self._values.append((self.step, "loss", t.detach()))

    def output(self, result) -> None:
        leaves = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if leaves:
            with torch.no_grad():
                self._values.append((self.step, "output_norm", leaves[0].detach().float().norm()))

    def write(self, path: Path) -> None:
        """``step,kind,value`` lines; losses only when there are any (a training script)."""
        kinds = {kind for _, kind, _ in self._values}
        wanted = "loss" if "loss" in kinds else "output_norm"
        lines = ["step,kind,value"] + [f"{step},{kind},{value.item()!r}" for step, kind, value in self._values
                                       if kind == wanted]
        atomic_write_text(path, "\n".join(lines) + "\n")


class StepCountdown:
    """Stands in for the profiler window: counts ``warmup + steps`` steps and records nothing."""

    recording = False
    trace_written = False
    window_cpu_seconds = window_wall_seconds = None

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.boundaries = 0
        self.done = False

    @property
    def recorded_steps(self) -> int:
        return max(0, min(self.boundaries - self.warmup, self.steps))

    def start(self) -> None:
        pass

    def boundary(self) -> bool:
        self.boundaries += 1
        self.done = self.done or self.boundaries >= self.warmup + self.steps
        return self.done

    def restart(self) -> None:
        self.boundaries = 0

    def finish(self) -> None:
        self.done = True


class Turns:
    """Waits for advisor's go after each step, so that the baseline and the applied run alternate.

    Each wait ends the step's clock and the go restarts it: ``resumed_ns[i]`` is when the step after
    boundary ``i`` started. Pending GPU work is finished before each boundary's time is taken.
    """

    def __init__(self, fd: int | None):
        self._fd = fd
        self.resumed_ns: dict[int, int] = {}

    def settle(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def wait(self, boundary: int) -> None:
        if self._fd is not None:
            try:
                if not os.read(self._fd, 1):  # advisor went away: run on without turns
                    self._fd = None
            except OSError:
                self._fd = None
        self.resumed_ns[boundary] = time.time_ns()

"""What the script's process sees that a trace cannot show, written to ``facts.json`` for the findings.

Recorded cheaply (counters and settings, never per-call lists) while the profiled window runs:

- ``threads``: torch's intra-/inter-op threads, the cores this process may run on, the thread
  environment variables and the local world size (processes sharing the machine);
- ``forward``: outermost module calls in the window, how many ran with autograd on (grad mode on,
  not inference mode, a parameter requiring grad) and from which line, and ``DataParallel`` wrappers;
- ``modes``: debug modes (anomaly detection, deterministic algorithms, ``CUDA_LAUNCH_BLOCKING``) and
  backend settings (matmul precision, TF32, ``cudnn.benchmark``), read at each recorded step's end;
- ``optimizers``: each stepping optimizer's class, ``foreach``/``fused`` settings, parameter devices, and
  the bytes of its parameters and of its state at the window's end;
- ``distributed``: the backend, DistributedDataParallel's forward passes that synchronised gradients,
  and DDP's own counters (see :mod:`advisor.runner.ranks`);
- ``autograd_history``: the autograd graph held by tensors alive between steps, as the window starts and
  as it ends (see :mod:`advisor.runner.held_graph`);
- ``compile``: torch._dynamo's graph breaks and compiled graphs after the first recorded step and at
  the window's end (read only when ``torch._dynamo`` is imported already).

Nothing of the user's is changed: one optimizer step pre-hook is registered (and removed at the end);
the step detector reports outermost module calls.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from advisor.runner.held_graph import held_autograd_graph
from advisor.runner.ranks import DdpWatch
from advisor.runner.steps import user_call_site

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE")


def _observation(method):
    """An observation that never breaks the script: the first failure stops recording and is kept."""
    @functools.wraps(method)
    def guarded(self, *args):
        if self.failure is not None:
            return
        try:
            method(self, *args)
        except Exception as exc:
            self.failure = f"facts recording failed in {method.__name__}: {type(exc).__name__}: {exc}"
    return guarded


class FactRecorder:
    """Counts and settings of the recorded window; :meth:`record` gives them as JSON data."""

    def __init__(self):
        self._undo = None
        self.restart()

    def restart(self) -> None:
        """Forget the window so far (also when the script switches to explicit steps)."""
        #: why recording stopped early, if it did (also noted in ``runner.json``'s problems)
        self.failure: str | None = None
        self.recording = False
        self.forwards = self.forwards_with_grad = 0
        self.grad_site: str | None = None
        self.data_parallel: dict | None = None
        self.recorded_boundaries = 0
        self.modes_on: dict[str, int] = {}
        self.backends: dict = {}
        self.optimizers: dict[int, dict] = {}
        self._optimizer_refs: dict[int, weakref.ref] = {}
        self.graph_start: dict | None = None
        self.graph_end: dict | None = None
        self.compile_start: dict | None = None
        self.compile_end: dict | None = None
        self.ddp = DdpWatch()

    def install(self) -> None:
        self._undo = register_optimizer_step_pre_hook(self._optimizer_steps).remove

    def uninstall(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    # -- observations -------------------------------------------------------------------------
    @_observation
    def step_ending(self, was_recording: bool) -> None:
        """A step ends; advisor's own work at the boundary comes next."""
        self.ddp.step_ending(was_recording)

    @_observation
    def boundary(self, was_recording: bool, recording: bool) -> None:
        """A step ended: ``was_recording`` says whether it was a recorded one, ``recording`` whether
        the next one is."""
        self.ddp.boundary(was_recording, recording)
        if was_recording:
            self.recorded_boundaries += 1
            for mode, on in _modes().items():
                self.modes_on[mode] = self.modes_on.get(mode, 0) + int(on)
            self.backends = _backends()
            if self.recorded_boundaries == 1:
                # from the end of the first recorded step: advisor's call-site labels switch on as the
                # window starts, and torch.compile recompiles once for them
                self.compile_start = _dynamo_counters()
        if recording and not was_recording:
            self.graph_start = held_autograd_graph()
        if was_recording and not recording:
            self.compile_end = _dynamo_counters()
            self.graph_end = held_autograd_graph()
            for key, ref in self._optimizer_refs.items():
                self.optimizers[key].update(_optimizer_bytes(ref()))
        self.recording = recording

    @_observation
    def outermost_forward(self, module: torch.nn.Module) -> None:
        """The step detector saw an outermost module call start."""
        if not self.recording:
            return
        self.forwards += 1
        self.ddp.forward(module)
        if isinstance(module, torch.nn.DataParallel) and self.data_parallel is None:
            self.data_parallel = {"devices": len(module.device_ids or []), "site": user_call_site(2)}
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and any(
                p.requires_grad for p in module.parameters()):
            self.forwards_with_grad += 1
            if self.grad_site is None:
                self.grad_site = user_call_site(2)

    @_observation
    def _optimizer_steps(self, optimizer, args, kwargs) -> None:
        if not self.recording:
            return
        seen = self.optimizers.get(id(optimizer))
        if seen is None:
            accepted = inspect.signature(type(optimizer).__init__).parameters
            params = [p for group in optimizer.param_groups for p in group["params"]]
            seen = self.optimizers[id(optimizer)] = {
                "class": type(optimizer).__qualname__,
                "foreach": optimizer.defaults.get("foreach"), "fused": optimizer.defaults.get("fused"),
                "accepts_foreach": "foreach" in accepted, "accepts_fused": "fused" in accepted,
                "parameters": len(params), "devices": sorted({p.device.type for p in params}),
                "steps": 0, "site": user_call_site(2)}
            self._optimizer_refs[id(optimizer)] = weakref.ref(optimizer)
        seen["steps"] += 1

    # -- result -------------------------------------------------------------------------------
    def record(self) -> dict:
        return {
            "threads": _threads(),
            "forward": {"outermost_calls": self.forwards, "with_grad": self.forwards_with_grad,
                        "with_grad_site": self.grad_site, "data_parallel": self.data_parallel},
            "recorded_steps": self.recorded_boundaries,
            "modes_on_steps": self.modes_on,
            "backends": self.backends,
            "optimizers": list(self.optimizers.values()),
            "autograd_history": {"start": self.graph_start, "end": self.graph_end,
                                 "steps_between": self.recorded_boundaries},
            "compile": {"start": self.compile_start, "end": self.compile_end,
                        "steps_between": max(self.recorded_boundaries - 1, 0)},
            "distributed": self.ddp.record(),
            "failure": self.failure,
        }


def _optimizer_bytes(optimizer) -> dict:
    """The bytes of an optimizer's parameters and of its state (moments, step counts), each tensor once."""
    if optimizer is None:
        return {}

    def nbytes(tensors) -> int:
        return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {"parameter_bytes": nbytes(params), "state_bytes": nbytes(state)}


def _threads() -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(), "cores": cores,
            "cpu_count": os.cpu_count(), "environment": {k: os.environ[k] for k in _THREAD_VARIABLES
                                                          if k in os.environ}}


def _modes() -> dict[str, bool]:
    return {"anomaly_detection": torch.is_anomaly_enabled(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cuda_launch_blocking": os.environ.get("CUDA_LAUNCH_BLOCKING", "0") not in ("", "0")}


def _backends() -> dict:
    return {"matmul_tf32": _setting(_matmul_tf32), "cudnn_benchmark": _setting(lambda: torch.backends.cudnn.benchmark),
            "cudnn_tf32": _setting(lambda: torch.backends.cudnn.allow_tf32)}


def _matmul_tf32() -> bool:
    """Whether fp32 matmuls may use TF32, by the new API (``fp32_precision``) or else the legacy one."""
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")
    if precision not in (None, "none"):
        return precision == "tf32"
    return torch.get_float32_matmul_precision() != "highest"


def _setting(read) -> bool | None:
    """A backend setting, or None where torch refuses to say (it raises when old and new APIs are mixed)."""
    try:
        return bool(read())
    except RuntimeError:
        return None


def _dynamo_counters() -> dict | None:
    """Graph breaks (total and the commonest reasons) and graphs compiled so far, if dynamo is in use."""
    if "torch._dynamo" not in sys.modules:
        return None
    from torch._dynamo.utils import counters

    breaks = counters.get("graph_break", {})
    return {"graph_breaks": int(sum(breaks.values())),
            "break_reasons": [reason.strip().splitlines()[0]
                              for reason, _ in sorted(breaks.items(), key=lambda kv: -kv[1])[:3]],
            "graphs": int(counters.get("stats", {}).get("unique_graphs", 0))}

"""The torch.profiler window: skip ``warmup`` steps, record ``steps`` steps, export the trace.

Until the first step boundary a light recording (ops, shapes, memory) runs, so a script that never
steps still yields an op table. At the first boundary it is dropped; the window's recording (the same,
with Python stacks under ``--with-stack``) is prepared one step before the window and started at its
first step. No analysis reads the stacks: advisor labels the user's lines itself (see
:mod:`advisor.runner.steps`), and recording them made each recorded step of the CNN example a third slower,
its trace 2.3x larger and its saving a second longer.
Each recorded step is annotated ``ProfilerStep#<n>``, as ``torch.profiler.profile.step()`` does.
With ``--warmup 1`` there is no pre-step recording: it would stop at the boundary where the window starts, which
mostly comes inside an open ``record_function`` (``Optimizer.step#...`` wraps the optimizer's post-step hooks). torch
2.13 then ends that event in the stopped recording's freed storage, and the window's stop crashed (SIGSEGV): 3 of 4
processes that switched recordings 300 times inside a ``record_function`` crashed, none that switched outside one.
Both recordings are bounded by the runner's limits (:mod:`advisor.runner.limits`), which end them
through :meth:`ProfilerWindow.finish`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import record_function

from advisor.rundir import TRACE_FILE
from advisor.heap import heap_in_use, release_memory
from advisor.runner.limits import PRE_STEP, WINDOW, rss_bytes
from advisor.rundir import STEP_PREFIX


class _Recording:
    """One kineto recording, through the autograd profiler that ``torch.profiler.profile`` wraps.

    ``torch.profiler.profile.prepare_trace`` imports ``torch._inductor`` (seconds of start-up for a
    script that never compiles), so the layer below it is used, and the trace metadata that the
    wrapper would add is added here.
    """

    def __init__(self, with_stack: bool):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._profile = torch.autograd.profiler.profile(
                use_device="cuda" if torch.cuda.is_available() else None, record_shapes=True,
                profile_memory=True, with_stack=with_stack, use_kineto=True)
        self._with_stack = with_stack
        self._stopped = False

    def prepare(self) -> None:
        self._profile._prepare_trace()

    def start(self) -> None:
        self._profile._start_trace()
        metadata = {"profile_memory": "1", "record_shapes": "1", **({"with_stack": "1"} if self._with_stack else {})}
        distributed = _distributed_info()
        if distributed:
            metadata["distributedInfo"] = json.dumps(distributed)
        for key, value in metadata.items():
            torch.autograd._add_metadata_json(key, value)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._profile.__exit__(None, None, None)

    def export(self, path: str) -> None:
        self._profile.export_chrome_trace(path)


def _distributed_info() -> dict | None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return {"backend": dist.get_backend(), "rank": dist.get_rank(), "world_size": dist.get_world_size()}


class ProfilerWindow:
    """Drives the profiler from step boundaries; ``boundary()`` returns True once the window is done."""

    def __init__(self, run_dir: Path, warmup: int, steps: int, with_stack: bool = False):
        self.run_dir = Path(run_dir)
        self.with_stack = with_stack
        self.warmup = warmup
        self.steps = steps
        self.boundaries = 0
        self.recorded_steps = 0
        self.done = False
        self.trace_written = False
        self.window_cpu_seconds: float | None = None
        self.window_wall_seconds: float | None = None
        self._pre: _Recording | None = None
        self._window: _Recording | None = None
        self._window_started = False
        self._step_label: record_function | None = None
        self._cpu0 = self._wall0 = 0.0

    @property
    def recording(self) -> bool:
        """True while the window's steps are being recorded."""
        return self._window_started and not self.done

    @property
    def active(self) -> str | None:
        """The recording running now: ``"pre_step"``, ``"window"`` or None."""
        if self.done:
            return None
        return WINDOW if self._window_started else PRE_STEP if self._pre is not None else None

    def start(self) -> None:
        """Start the light pre-step recording (none with ``warmup`` 1: see the module's docstring)."""
        if self.warmup < 2:
            return
        self._pre = _Recording(with_stack=False)
        self._pre.prepare()
        self._pre.start()

    def stop_pre_step(self) -> int:
        """Stop the pre-step recording (``finish`` still exports it); the memory the stop took, in bytes."""
        before = heap_in_use() or rss_bytes()
        self._pre.stop()
        return (heap_in_use() or rss_bytes()) - before

    def boundary(self) -> bool:
        """A step ended. Advance the window; True when the last recorded step has just ended."""
        if self.done:
            return True
        self.boundaries += 1
        b = self.boundaries
        if b == 1 and self._pre is not None:
            self._pre.stop()
            self._pre = None
            release_memory()
        if self._window_started:
            self._close_step_label()
            self.recorded_steps += 1
            if self.recorded_steps >= self.steps:
                self.finish()
                return True
        if b == max(self.warmup - 1, 1) and self._window is None:
            self._window = _Recording(with_stack=self.with_stack)
            self._window.prepare()
        if b == self.warmup:
            self._window.start()
            self._window_started = True
            self._cpu0, self._wall0 = _process_cpu_seconds(), time.perf_counter()
        if self._window_started:
            self._step_label = record_function(f"{STEP_PREFIX}{b}")
            self._step_label.__enter__()
        return False

    def restart(self) -> None:
        """Forget the boundaries seen so far (the script switched to explicit steps)."""
        if self.done:
            return
        self._close_step_label()
        if self._window_started:
            self._window.stop()
            self._window = None
        self._window_started = False
        self.boundaries = self.recorded_steps = 0

    def finish(self) -> None:
        """Stop whatever recording runs and export it (window first, else the pre-step one)."""
        if self.done:
            return
        self.done = True
        self._close_step_label()
        if self._window_started:
            self.window_cpu_seconds = _process_cpu_seconds() - self._cpu0
            self.window_wall_seconds = time.perf_counter() - self._wall0
            self._export(self._window)
        elif self._pre is not None:
            self._export(self._pre)
        elif self._window is not None:
            self._window.stop()
        self._pre = self._window = None  # their heap stays for the script to reuse (a trim took 0.2 s)

    def _close_step_label(self) -> None:
        if self._step_label is not None:
            self._step_label.__exit__(None, None, None)
            self._step_label = None

    def _export(self, recording: _Recording) -> None:
        recording.stop()
        path = self.run_dir / TRACE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        recording.export(str(tmp))
        os.replace(tmp, path)
        self.trace_written = True


def _process_cpu_seconds() -> float:
    return time.process_time()  # all threads, to the nanosecond; os.times() counts 10 ms clock ticks

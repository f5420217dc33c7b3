"""The state of one run inside the child: step boundaries, the profiler window, the recording limits.

``advisor.step()`` reaches the run through :data:`active`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.rundir import TIME_SLICES
from advisor.runner.artifacts import safely, write_peaks, write_steps, write_workload
from advisor.runner.limits import (MEMORY, PRE_STEP, TIME_SLICE_COUNT, WINDOW, RecordLimits, Watchdog, limit_text,
                                   peak_rss_bytes)

if TYPE_CHECKING:
    from advisor.runner.technique_trials import TrialSettings


@dataclasses.dataclass
class LiveSettings:
    """A run of ``advisor profile --apply`` (see :mod:`advisor.runner.live`)."""

    techniques: object  # LiveTechniques, or None for the baseline
    outcomes: object  # StepOutcomes
    turns: object  # Turns


#: seconds between two step reports once the window is recorded and the script goes on: each report wakes advisor's
#: process, which takes a core from the script (a step of tiny ops every 3 ms woke it 3,000 times in 10 s, and its
#: two intra-op threads lost 20 % of their time waiting for each other)
STEP_REPORT_EVERY_S = 0.25


class StopScript(BaseException):
    """Raised from a step boundary once the window is recorded (or a recording limit), to end the script early."""


def _advisor_code(method):
    """Marks the runner's own bookkeeping: a recording limit passed meanwhile is acted on once it returns."""
    @functools.wraps(method)
    def guarded(self, *args):
        self._busy += 1
        try:
            result = method(self, *args)
        finally:
            self._busy -= 1
        if self._limit_pending and not self._busy:
            self._on_limit()
        return result
    return guarded


class Runner:
    """State of one run inside the child; ``advisor.step()`` reaches it through :data:`active`."""

    def __init__(self, run_dir: Path, warmup: int, steps: int, progress_fd: int | None, keep_running: bool = False,
                 trials: TrialSettings | None = None, live: LiveSettings | None = None,
                 limits: RecordLimits | None = None, with_stack: bool = False):
        from advisor.runner.capture import CAPTURED_STEPS, WorkloadCapture
        from advisor.runner.facts import FactRecorder
        from advisor.runner.loaders import LoaderWatch
        from advisor.runner.steps import StepDetector
        from advisor.runner.window import ProfilerWindow

        self.run_dir = run_dir
        self.window = ProfilerWindow(run_dir, warmup, steps, with_stack)
        self.detector = StepDetector(self._boundary, self._restart)
        self.capture = self.detector.capture = WorkloadCapture()
        self.facts = self.detector.facts = FactRecorder()
        self.loaders = LoaderWatch()
        if warmup < 2:
            # Step 0 runs under the pre-step recording, and copying the model there upset the profiler
            # (seen: crashes when the window stopped); the first step is no fair sample either.
            self.capture.failure = "--warmup 1 leaves no step to capture before the window (use 2 or more)"
        self._arm_at = max(warmup - CAPTURED_STEPS, 1)  # the boundary after which the capture starts
        self.workload = None
        #: why the replay of the captured step differs from the script's step (None: it reproduces it)
        self.not_reproduced: str | None = None
        self.capture_written = False
        self.boundary_times_ns: list[int] = []
        self.started_ns = time.time_ns()
        self._progress = os.fdopen(progress_fd, "w", buffering=1) if progress_fd is not None else None
        self._stopping = False
        self._step_reported_ns = 0
        self._keep_running = keep_running
        self.trials = trials
        self.live = live
        if live is not None:  # a run of ``--apply``: steps timed in turns, nothing profiled or captured
            from advisor.runner.live import StepCountdown

            self.window = StepCountdown(warmup, steps)
            self.capture = self.detector.capture = None
            self.detector.live, self.detector.outcomes = live.techniques, live.outcomes
        #: ends a recording that passes its limits (none in a run of ``--apply``: nothing is recorded)
        self.watchdog = Watchdog(limits or RecordLimits()) if live is None else None
        #: which limit ended the recording (``record_limit`` in runner.json), and whether no boundary came first
        self.limit: dict | None = None
        self.sliced = False
        #: why the pre-step recording stopped before a limit or a boundary ended it, if it did
        self.pre_step_stopped: str | None = None
        self.in_script = False
        self._recording: str | None = None
        self._busy = 0
        self._limit_pending = False

    def report(self, **event) -> None:
        if self._progress is not None:
            try:
                self._progress.write(json.dumps(event) + "\n")
            except (OSError, ValueError):
                self._progress = None

    @_advisor_code
    def _boundary(self, mode: str) -> None:
        if self.live is not None:
            self.live.turns.settle()
        now = time.time_ns()
        self.boundary_times_ns.append(now)
        if len(self.boundary_times_ns) == 1:
            self.report(event="mode", mode=mode)
        completed = self.window.boundaries + 1
        capture = self.capture
        if capture is not None and capture.armed:
            if completed == self.window.warmup:
                self.workload = capture.finish()  # before the window's recording starts
                if self.workload is not None:
                    self.workload.data_loader = self.loaders.current()
            else:
                capture.step_ended()
        was_recording = self.window.recording
        self.facts.step_ending(was_recording)
        done = self.window.boundary()
        self._follow_recording()
        if self._recording == WINDOW:
            self.watchdog.note_boundary()
        self.facts.boundary(was_recording, self.window.recording)
        self.detector.label_call_sites = self.window.recording
        if capture is not None and completed == self._arm_at < self.window.warmup:
            capture.armed = True
        if was_recording or not done or now - self._step_reported_ns >= STEP_REPORT_EVERY_S * 1e9:
            self._step_reported_ns = now
            self.report(event="step", n=len(self.boundary_times_ns))
        if done:
            self.window_ended()
            if not self._keep_running:
                raise StopScript
        if self.live is not None:
            self.live.outcomes.step = len(self.boundary_times_ns)
            self.live.turns.wait(len(self.boundary_times_ns) - 1)

    def window_ended(self) -> None:
        """The recording is over: save the steps and the captured workload, then run the trials if steps were kept.

        Called at a step's end or once the script stopped, never from a limit's signal handler: that can strike
        anywhere, inside the script's ``no_grad`` or ``autocast`` too, where no replay can run.
        """
        if self._stopping or not self.window.done:
            return
        self._stopping = True
        write_steps(self)
        write_workload(self)
        self.report(event="window_done")
        if self.window.recorded_steps > 0 and self.live is None:
            safely(write_peaks, self)
        if self.window.recorded_steps > 0 and self.trials is not None:
            safely(self.run_trials)
        if self._keep_running and self.live is None:
            self.detector.settle()

    # -- recording limits ---------------------------------------------------------------------
    def after_limit(self) -> None:
        """Once the script stopped: what the end of a window does, for a recording that a limit ended."""
        if self.limit is not None:
            self.window_ended()

    def start_recording(self) -> None:
        """Start the pre-step recording, under the watchdog of the recording limits."""
        self.window.start()
        if self.watchdog is not None:
            self.watchdog.start(self._limit_signal)
            self.detector.on_first_call = self._first_call
            self._follow_recording()

    def stop_watchdog(self) -> None:
        self.in_script = False
        if self.watchdog is not None:
            self.watchdog.stop()

    def _follow_recording(self) -> None:
        """Arm the watchdog when a recording starts, disarm it when none runs."""
        active = self.window.active if self.watchdog is not None else None
        if active != self._recording:
            self._recording = active
            self.watchdog.arm(active) if active else self.watchdog.disarm()

    def _first_call(self) -> None:
        if self.window.active == PRE_STEP:  # the pre-step recording's time counts from here
            self.watchdog.restart_clock()

    def _limit_signal(self) -> None:
        """The watchdog's signal, in the main thread: between two bytecodes of the script, or of advisor."""
        if not self.in_script:
            return
        if self._busy:
            self._limit_pending = True
            return
        self._on_limit()

    def _on_limit(self) -> None:
        """End the recording that passed a limit (the script too, unless ``--keep-running``)."""
        self._limit_pending = False
        reason, active = self.watchdog.tripped, self.window.active
        if reason is None or active is None:
            return
        self._busy += 1
        try:
            state = self.watchdog.state()
            if reason == MEMORY and active == PRE_STEP and self._scripts_own_growth():
                return
            self._recording = None
            self.watchdog.disarm()
            self.sliced = active == PRE_STEP
            self.limit = {"reason": reason, "recording": active, **state}
            self.report(event="limit", reason=reason)
            print(f"advisor: {limit_text(reason, state)}; "
                  + ("stopping the script" if not self._keep_running else "the script goes on"), file=sys.stderr)
            self.window.finish()  # the trials and the rest wait for the next step's end, or the script's
            self.facts.boundary(False, False)
            self.detector.label_call_sites = False
        finally:
            self._busy -= 1
        if not self._keep_running:
            raise StopScript

    def _scripts_own_growth(self) -> bool:
        """Stop the pre-step recording and see what its events took. Little: the memory that grew was the
        script's own (a dataset, a first step's activations); what was recorded is kept, and only time counts."""
        cost = self.window.stop_pre_step()
        if cost * 4 >= self.watchdog.limits.megabytes * 2**20:
            return False
        self.watchdog.memory_off()
        self.pre_step_stopped = f"the script's own memory grew (saving the recording took {cost / 2**20:.0f} MB)"
        return True

    def run_trials(self) -> None:
        """Ask every technique plugin about this run and measure those that apply; write trials.json."""
        from advisor.runner.technique_trials import run_trials

        self.detector.paused = True
        try:
            run_trials(self.run_dir, self.record(), self.workload, self.not_reproduced, self.trials, self.report)
        finally:
            self.detector.paused = False

    def record(self) -> dict:
        """What ``runner.json`` says about steps and the window (so far)."""
        record = {"step_detection": TIME_SLICES if self.sliced else self.detector.mode,
                  "boundaries": len(self.boundary_times_ns),
                  "warmup": self.window.warmup, "steps_requested": self.window.steps,
                  "recorded_steps": self.window.recorded_steps, "trace_written": self.window.trace_written,
                  "with_stack": getattr(self.window, "with_stack", False),
                  "window_cpu_seconds": self.window.window_cpu_seconds,
                  "window_wall_seconds": self.window.window_wall_seconds,
                  "record_limit": self.limit, "time_slices": TIME_SLICE_COUNT if self.sliced else None,
                  "pre_step_stopped": self.pre_step_stopped, "peak_rss_bytes": peak_rss_bytes()}
        if self.live is not None:
            record["applied"] = self.live.techniques.names if self.live.techniques else []
        return record

    @_advisor_code
    def _restart(self) -> None:
        from advisor.runner.capture import WorkloadCapture

        self.capture = self.detector.capture = WorkloadCapture()
        self.window.restart()
        self._follow_recording()
        self.facts.restart()
        self.detector.label_call_sites = False
        if self.boundary_times_ns:
            self.started_ns = self.boundary_times_ns[-1]
        self.boundary_times_ns.clear()


active: Runner | None = None

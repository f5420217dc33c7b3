"""The script's child process: its command line, its output and progress channel, stopping it, and how it ended.

The script runs in a child process (``python -m advisor.runner``), in a session of its own so that
advisor decides how it is interrupted: Ctrl-C and ``--timeout`` send it SIGINT (it saves what it
recorded), a second Ctrl-C or the end of the grace period kills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from advisor.errors import (AdvisorError, ApplyFailed, Interrupted, NoTorchWork, ScriptExited, ScriptNotFound,
                            ScriptRaised, ScriptTimedOut)
from advisor.options import ProfileOptions
from advisor.rundir import RUNNER_FILE, read_json

#: seconds a stopped script gets to save its recording before it is killed
GRACE_SECONDS = 15.0
#: ``(steps_done, step detection mode, window done, elapsed seconds, activity)``, while the script runs
ProgressListener = Callable[[int, "str | None", bool, float, "str | None"], None]
#: the child's stages (see :meth:`ScriptProcess.watch`)
LAUNCHED, RECORDED, SAVED = "launched", "recorded", "saved"
_NOISE = ("USDT:", "Memory block of unknown size was allocated before the profiling started")
#: how a wrapper such as ``perf stat`` reports that the script's interpreter died of a signal (``psignal``);
#: it then exits with 0 itself
_SIGNALS_BY_TEXT = {signal.strsignal(s): s for s in signal.Signals if signal.strsignal(s)}


def runner_command(options: ProfileOptions, run_dir: Path, *runner_args: str) -> list[str]:
    """The child's command line: ``python -m advisor.runner`` with the run's settings, ``runner_args``, the target
    and its own arguments."""
    return [sys.executable, "-m", "advisor.runner", "--run-dir", str(run_dir), "--warmup", str(options.warmup),
            "--steps", str(options.steps), *runner_args, *(["--module"] if options.is_module else []),
            *(arg for name in options.blocked_plugins for arg in ("--block", name)),
            options.target, "--", *options.args]


@contextlib.contextmanager
def sigint_to(handler):
    """Route Ctrl-C to ``handler`` while inside; only the main thread can, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Pump(threading.Thread):
    """Copies one of the child's output streams to ours, dropping the profiler's own chatter."""

    def __init__(self, pipe, sink_name: str, filter_noise: bool):
        super().__init__(daemon=True)
        self._pipe, self._sink_name, self._filter = pipe, sink_name, filter_noise
        #: the signal that a wrapper said killed the interpreter (see :data:`_SIGNALS_BY_TEXT`)
        self.signal: int | None = None

    def run(self) -> None:
        pending = b""
        while True:
            chunk = self._pipe.read1(1 << 14) if hasattr(self._pipe, "read1") else self._pipe.read(1 << 14)
            if not chunk:
                break
            pending += chunk
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
            if cut < 0:
                continue
            self._emit(pending[:cut + 1])
            pending = pending[cut + 1:]
        if pending:
            self._emit(pending)

    def _signal_report(self, line: str) -> bool:
        prefix = f"{sys.executable}: "
        if line.startswith(prefix) and line[len(prefix):].strip() in _SIGNALS_BY_TEXT:
            self.signal = _SIGNALS_BY_TEXT[line[len(prefix):].strip()]
            return True
        return False

    def _emit(self, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        if self._filter:
            text = "".join(line for line in text.splitlines(True) if not line.startswith(_NOISE[0])
                           and _NOISE[1] not in line and not self._signal_report(line))
        if text:
            sink = getattr(sys, self._sink_name)
            sink.write(text)
            sink.flush()


class _ProgressReader(threading.Thread):
    """Reads the child's JSON-lines progress channel."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self._file = os.fdopen(fd, "r")
        self.steps = 0
        self.mode: str | None = None
        self.window_done = False
        #: the child has recorded its window and waits for its summary: its runner record then
        self.recorded: dict | None = None
        #: the child has saved its record (``runner.json``): what is left is its exit
        self.saved = False
        self.trial: str | None = None

    def run(self) -> None:
        for line in self._file:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "step":
                self.steps = int(event.get("n", self.steps))
            elif event.get("event") == "mode":
                self.mode = event.get("mode")
            elif event.get("event") == "window_done":
                self.window_done = True
            elif event.get("event") == RECORDED:
                self.recorded = event.get("runner") or {}
            elif event.get("event") == "saved":
                self.saved = True
            elif event.get("event") == "limit":
                self.trial = f"recording limit ({event.get('reason')}) reached; saving the recording"
            elif event.get("event") == "trial":
                self.trial = f"measuring {event.get('name')}" + (f" ({event['n']}/{event['of']})" if event.get("of") else "")


class ScriptProcess:
    """The script's process group, in a session of its own: stopped by SIGINT, killed after a grace period."""

    def __init__(self, command: list[str], script_stdout_to_stderr: bool, takes_turns: bool = False,
                 cwd: Path | None = None, env: dict[str, str] | None = None):
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **(env or {}), "ADVISOR_PROGRESS_FD": str(write_fd), "PYTHONUNBUFFERED": "1"}
        pass_fds = [write_fd]
        self._turn_fd: int | None = None
        if takes_turns:  # the child waits for a byte on this pipe after each step (see advisor.runner.live)
            turn_read, self._turn_fd = os.pipe()
            env.update(ADVISOR_TURN_FD=str(turn_read), PYTHONHASHSEED="0")
            pass_fds.append(turn_read)
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            pass_fds=pass_fds, env=env, start_new_session=True, cwd=cwd)
        finally:
            for fd in pass_fds:
                os.close(fd)
        self._exit_fd = _process_fd(self.process.pid)
        self.progress = _ProgressReader(read_fd)
        self._pumps = [_Pump(self.process.stdout, "stderr" if script_stdout_to_stderr else "stdout", False),
                       _Pump(self.process.stderr, "stderr", True)]
        for thread in (self.progress, *self._pumps):
            thread.start()
        self.interrupts = 0
        self.timed_out = False
        self._stop_sent_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """Ask the script to stop and save (SIGINT); asked twice, kill it."""
        if self._stop_sent_at is None:
            self._stop_sent_at = time.monotonic()
            self._signal(signal.SIGINT)
        else:
            self._signal(signal.SIGKILL)

    def on_sigint(self, signum, frame) -> None:
        self.interrupts += 1
        self.stop()

    @property
    def asked_to_stop(self) -> bool:
        """True once advisor has sent it SIGINT (Ctrl-C, the timeout, or a stop)."""
        return self._stop_sent_at is not None

    def give_turn(self) -> None:
        """Let a child that takes turns run its next step."""
        try:
            os.write(self._turn_fd, b"g")
        except OSError:  # it has ended
            pass

    def supervise(self, elapsed: float, timeout: float | None) -> bool:
        """Enforce ``timeout`` and the grace period once; True while the child runs."""
        if timeout and elapsed > timeout and not self.timed_out:
            self.timed_out = True
            self.stop()
        if self._stop_sent_at and time.monotonic() - self._stop_sent_at > GRACE_SECONDS:
            self._signal(signal.SIGKILL)
        return self.process.poll() is None

    @property
    def killed_by(self) -> int | None:
        """The signal that ended the script's interpreter, if one did (also under a wrapper like ``perf``)."""
        code = self.process.returncode
        if code is not None and code < 0:
            return -code
        return self._pumps[1].signal

    def finish(self) -> int:
        """After the child ended: drain its output and return its exit code."""
        for pump in self._pumps:
            pump.join(timeout=5)
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        if self._turn_fd is not None:
            os.close(self._turn_fd)
            self._turn_fd = None
        return self.process.returncode

    def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, woken at once if the process ends (the run's end is not 25 ms late on average)."""
        if self._exit_fd is None:
            time.sleep(seconds)
        else:
            select.select([self._exit_fd], [], [], seconds)

    def watch(self, timeout: float | None, on_update: ProgressListener | None = None,
              on_stage: Callable[[str, dict | None], None] | None = None) -> int:
        """Wait for the script to end, telling ``on_update`` how it goes and ``on_stage`` its stages (``launched``;
        ``recorded``, with the runner's record then, once the window is recorded and the runner waits for its
        summary; ``saved`` once the child has saved its record); enforce ``timeout``; return its exit code."""
        on_stage = on_stage or (lambda stage, record: None)
        on_stage(LAUNCHED, None)
        recorded = saved = False
        t0 = time.monotonic()
        while self.supervise(time.monotonic() - t0, timeout):
            self._sleep(0.01 if self.progress.recorded is not None and not recorded else 0.05)
            if on_update is not None:
                on_update(self.progress.steps, self.progress.mode, self.progress.window_done,
                          time.monotonic() - t0, self.progress.trial)
            if self.progress.recorded is not None and not recorded:
                recorded = True
                on_stage(RECORDED, self.progress.recorded)
            if self.progress.saved and not saved:
                saved = True
                on_stage(SAVED, None)
        return self.finish()


def _process_fd(pid: int) -> int | None:
    """A file descriptor that becomes readable when the process ends (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def read_runner(run_dir: Path) -> dict | None:
    """The child's ``runner.json``; None when it died before writing it."""
    return read_json(run_dir / RUNNER_FILE, "runner record") if (run_dir / RUNNER_FILE).exists() else None


def died(name: str, returncode: int, signum: int | None) -> str:
    """Why a script's process ended without writing its record, in one line."""
    if signum is None:
        return f"{name} ended abruptly (exit code {returncode}) before advisor could save its recording"
    try:
        signame = signal.Signals(signum).name
    except ValueError:
        signame = f"signal {signum}"
    why = (", probably by the kernel's out-of-memory killer (the machine or the process's memory limit ran out "
           "of memory)") if signum == signal.SIGKILL else ""
    return f"{name} was killed by {signame}{why} before advisor could save its recording"


def run_error(meta: dict, runner: dict | None, returncode: int, child: ScriptProcess,
              options: ProfileOptions) -> AdvisorError | None:
    """Fill the outcome fields of ``meta`` and return the error to report, if any."""
    name = options.target
    steps = runner.get("recorded_steps", 0) if runner else 0
    kept = f"{steps} recorded step{'s' if steps != 1 else ''} kept"
    if runner is None:
        meta.update(outcome="killed", script_exit_code=returncode, exit_code=None)
        if child.timed_out:
            meta["outcome"] = "timed_out"
            return ScriptTimedOut(f"{name} timed out after {options.timeout:g} s and did not stop; it was killed")
        if child.interrupts:
            meta["outcome"] = "interrupted"
            crashed = child.killed_by not in (None, signal.SIGINT, signal.SIGKILL)  # not by advisor's stop
            return Interrupted("interrupted; " + (died(name, returncode, child.killed_by) if crashed
                                                  else "the script was killed before it saved its recording"))
        return ScriptRaised(died(name, returncode, child.killed_by))
    outcome = runner.get("outcome")
    meta.update(outcome=outcome, script_exit_code=runner.get("exit_code"), step_detection=runner.get("step_detection"),
                error=runner.get("error"))
    if child.timed_out:
        meta["outcome"] = "timed_out"
        return ScriptTimedOut(f"{name} timed out after {options.timeout:g} s; {kept}")
    if outcome == "interrupted":
        return Interrupted(f"interrupted; {kept}")
    if outcome == "raised":
        return ScriptRaised(f"{name} raised {runner.get('error')}; {kept}")
    if outcome == "exited":
        return ScriptExited(f"{name} exited with code {runner.get('exit_code')}; {kept}")
    if outcome == "not_found":
        return ScriptNotFound(f"module not found: {name}")
    if outcome == "apply_refused":
        return ApplyFailed(runner.get("error"))
    if outcome == "no_torch":
        return NoTorchWork(f"PyTorch cannot be imported by {sys.executable}: {runner.get('error')}")
    return None

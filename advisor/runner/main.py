"""The child process: run the user's script as ``python SCRIPT args`` would, under the profiler.

It writes ``runner.json`` (how the script ended, how steps were found, the window) and
``steps.csv`` (every step boundary) into the run directory, whatever way the script ends:
normally, by ``sys.exit``, by raising, by Ctrl-C, or by advisor stopping it after the window.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path

from advisor.rundir import (FACTS_FILE, OUTCOMES_FILE, RUNNER_FILE, STEPS_FILE, TIME_SLICES, TRIALS_FILE,
                            WORKLOAD_FILE)
from advisor.rundir_io import atomic_write_json, atomic_write_text
from advisor.runner.limits import (DEFAULT_MEGABYTES, DEFAULT_SECONDS, MEMORY, PRE_STEP, TIME_SLICE_COUNT,
                                   WINDOW, RecordLimits, Watchdog, limit_text, peak_rss_bytes)


@dataclasses.dataclass
class LiveSettings:
    """A run of ``advisor profile --apply`` (see :mod:`advisor.runner.live`)."""

    techniques: object  # LiveTechniques, or None for the baseline
    outcomes: object  # StepOutcomes
    turns: object  # Turns


@dataclasses.dataclass
class TrialSettings:
    names: list[str] | None
    measure: bool
    blocked: tuple[str, ...]
    budget_s: float
    pairs: str = "gaining"  # "gaining": pairs of the best singles that gained; "all"; "none"


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
                 limits: RecordLimits | None = None):
        from advisor.runner.capture import CAPTURED_STEPS, WorkloadCapture
        from advisor.runner.facts import FactRecorder
        from advisor.runner.loaders import LoaderWatch
        from advisor.runner.steps import StepDetector
        from advisor.runner.window import ProfilerWindow

        self.run_dir = run_dir
        self.window = ProfilerWindow(run_dir, warmup, steps)
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
        self._capture_written = False
        self.boundary_times_ns: list[int] = []
        self.started_ns = time.time_ns()
        self._progress = os.fdopen(progress_fd, "w", buffering=1) if progress_fd is not None else None
        self._stopping = False
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
        self.boundary_times_ns.append(time.time_ns())
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
        done = self.window.boundary()
        self._follow_recording()
        if self._recording == WINDOW:
            self.watchdog.note_boundary()
        self.facts.boundary(was_recording, self.window.recording)
        self.detector.label_call_sites = self.window.recording
        if capture is not None and completed == self._arm_at < self.window.warmup:
            capture.armed = True
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
        self.write_steps()
        self.write_workload()
        self.report(event="window_done")
        if self.window.recorded_steps > 0 and self.trials is not None:
            _safely(self.run_trials)

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

    def write_workload(self) -> None:
        """Check the captured workload by replaying it once, and describe it in ``workload.json``."""
        from advisor.workload import describe
        from advisor.runner.loaders import describe_loader

        if self._capture_written or self.live is not None:
            return
        self._capture_written = True
        record: dict = {"captured": self.workload is not None, "reason": self.capture.failure,
                        "training": self.capture.training_seen or None}
        loader = self.workload.data_loader if self.workload is not None else self.loaders.current()
        record["data_loader"] = describe_loader(loader) if loader is not None else None
        if self.workload is not None:
            record.update(describe(self.workload))
            self.detector.paused = True
            try:
                record["replay"] = replay = self.capture.replay_check(self.workload)
                if not replay["reproduced"]:
                    self.not_reproduced = replay["why"]
            except Exception as exc:  # the replay is advisor's, the script is not at fault
                record.update(captured=False, reason=f"replay failed: {type(exc).__name__}: {exc}")
                self.workload = None
            finally:
                self.detector.paused = False
        elif record["reason"] is None:
            record["reason"] = ("no step boundary was found before the recording limit" if self.sliced
                                else "the script ended before the step before the window")
        atomic_write_json(self.run_dir / WORKLOAD_FILE, record)

    def record(self) -> dict:
        """What ``runner.json`` says about steps and the window (so far)."""
        record = {"step_detection": TIME_SLICES if self.sliced else self.detector.mode,
                  "boundaries": len(self.boundary_times_ns),
                  "warmup": self.window.warmup, "steps_requested": self.window.steps,
                  "recorded_steps": self.window.recorded_steps, "trace_written": self.window.trace_written,
                  "window_cpu_seconds": self.window.window_cpu_seconds,
                  "window_wall_seconds": self.window.window_wall_seconds,
                  "record_limit": self.limit, "time_slices": TIME_SLICE_COUNT if self.sliced else None,
                  "pre_step_stopped": self.pre_step_stopped, "peak_rss_bytes": peak_rss_bytes()}
        if self.live is not None:
            record["applied"] = self.live.techniques.names if self.live.techniques else []
        return record

    def write_facts(self) -> None:
        atomic_write_json(self.run_dir / FACTS_FILE, self.facts.record())

    def run_trials(self) -> None:
        """Ask every technique plugin about this run and measure those that apply; write trials.json."""
        from advisor.analysis.profile import analyse, summarize
        from advisor.plugins import collect, plugin_manager
        from advisor.rundir import read_json
        from advisor.technique import Context, Technique
        from advisor.trials import (broken_plugin, hardware, pairs_worth_measuring, project, rank, replayed_share,
                                    trial)

        settings = self.trials
        self.detector.paused = True
        try:
            summary = summarize(analyse(self.run_dir, runner=self.record()))
            workload_info = read_json(self.run_dir / WORKLOAD_FILE, "workload")
            context = Context(summary=summary, workload=workload_info, hardware=hardware(self.workload))
            pm = plugin_manager(settings.blocked)
            records = []
            for plugin, error in pm.load_errors.items():
                records.append(broken_plugin(plugin, f"failed to load: {error}"))
            provided, problems = collect(pm.hook.advisor_techniques, Technique, config={"techniques": settings.names})
            records.extend(broken_plugin(plugin, why) for plugin, why in problems)
            techniques = [t for t in provided if settings.names is None or t.name in settings.names]
            measure = settings.measure and self.workload is not None
            for i, technique in enumerate(techniques):
                self.report(event="trial", name=technique.name, n=i + 1, of=len(techniques))
                record = trial(technique, context, self.workload, measure, settings.budget_s,
                               not_reproduced=self.not_reproduced)
                if settings.measure and self.workload is None and record.get("status") == "not measured":
                    record["status"] = f"not measured: no captured workload ({workload_info.get('reason')})"
                records.append(record)
            measure = measure and self.not_reproduced is None
            if measure and settings.pairs != "none":
                by_name = {t.name: t for t in techniques}
                everything = settings.pairs == "all"
                pairs = pairs_worth_measuring(records, by_name, top=None if everything else 3,
                                              threshold=0.0 if everything else 1.05)
                for i, pair in enumerate(pairs):
                    self.report(event="trial", name=pair.name, n=i + 1, of=0)
                    records.append({**trial(pair, context, self.workload, True, settings.budget_s), "pair": True})
            training = bool(workload_info.get("training"))
            project(records, summary, training)
            share = replayed_share(summary, training)
            atomic_write_json(self.run_dir / TRIALS_FILE, {"measured": measure, "replayed_share": share,
                                                           "techniques": rank(records)})
        finally:
            self.detector.paused = False

    def write_outcomes(self) -> None:
        if self.live is not None:
            self.live.outcomes.write(self.run_dir / OUTCOMES_FILE)

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

    def write_steps(self) -> None:
        lines = ["step,start_unix_ns,end_unix_ns,recorded"]
        first = self.window.warmup
        last = first + self.window.recorded_steps
        start = self.started_ns
        resumed = self.live.turns.resumed_ns if self.live is not None else {}
        for i, end in enumerate(self.boundary_times_ns):
            lines.append(f"{i},{start},{end},{int(first <= i < last)}")
            start = resumed.get(i, end)
        atomic_write_text(self.run_dir / STEPS_FILE, "\n".join(lines) + "\n")


active: Runner | None = None


class _TargetNotFound(Exception):
    pass


def _run_target(target: str, is_module: bool, args: list[str]) -> None:
    if is_module:
        import importlib.util

        sys.path[0] = os.getcwd()
        try:
            found = importlib.util.find_spec(target) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise _TargetNotFound(f"No module named {target!r}")
        sys.argv = [target, *args]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        path = os.path.abspath(target)
        sys.argv = [target, *args]
        sys.path[0] = os.path.dirname(path)
        runpy.run_path(path, run_name="__main__")


def _run_script(runner: Runner, target: str, is_module: bool, args: list[str]) -> None:
    """Run the target; only meanwhile may a recording limit stop it."""
    runner.in_script = True
    try:
        _run_target(target, is_module, args)
    finally:
        runner.in_script = False


def _script_traceback(exc: BaseException) -> str:
    """The traceback as ``python SCRIPT`` would print it: advisor's and runpy's frames dropped."""
    tb = exc.__traceback__
    while tb is not None and _is_harness_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_harness_frame(filename: str) -> bool:
    return filename.startswith(os.path.dirname(__file__)) or filename.endswith(("runpy.py", "<frozen runpy>"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m advisor.runner")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--module", action="store_true")
    parser.add_argument("--keep-running", action="store_true")
    parser.add_argument("--trials", action="store_true")
    parser.add_argument("--techniques", default=None)
    parser.add_argument("--no-measure", action="store_true")
    parser.add_argument("--block", action="append", default=[])
    parser.add_argument("--trial-budget", type=float, default=60.0)
    parser.add_argument("--pairs", choices=("gaining", "all", "none"), default="gaining")
    parser.add_argument("--compare", action="store_true", help="a run of --apply: steps timed in turns")
    parser.add_argument("--apply", default="", help="techniques to apply to the running model (with --compare)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record-limit-s", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--record-limit-mb", type=float, default=DEFAULT_MEGABYTES)
    parser.add_argument("target")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    run_dir: Path = ns.run_dir
    progress_fd = int(os.environ["ADVISOR_PROGRESS_FD"]) if "ADVISOR_PROGRESS_FD" in os.environ else None

    record: dict = {"outcome": "completed", "exit_code": 0, "error": None, "started_unix_ns": time.time_ns()}
    # advisor stops the script with SIGINT, which a shell's background job starts ignored: take it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import torch
    except Exception as exc:  # the interpreter has no usable torch
        record.update(outcome="no_torch", exit_code=None, error=f"{type(exc).__name__}: {exc}")
        atomic_write_json(run_dir / RUNNER_FILE, record)
        return 1

    global active
    trials = TrialSettings(names=ns.techniques.split(",") if ns.techniques else None, measure=not ns.no_measure,
                           blocked=tuple(ns.block), budget_s=ns.trial_budget, pairs=ns.pairs) if ns.trials else None
    from advisor.runner.capture import install_gradient_watch
    from advisor.runner.live import ApplyRefused

    undo_gradient_watch = _nothing
    try:
        live = _live_settings(ns, torch) if ns.compare else None
    except ApplyRefused as exc:
        record.update(outcome="apply_refused", exit_code=None, error=str(exc))
        atomic_write_json(run_dir / RUNNER_FILE, record)
        return 1
    limits = RecordLimits(seconds=ns.record_limit_s, megabytes=ns.record_limit_mb)
    runner = active = Runner(run_dir, ns.warmup, ns.steps, progress_fd, ns.keep_running, trials, live, limits)
    exit_code = 0
    try:
        runner.detector.install()
        undo_gradient_watch = install_gradient_watch(lambda: runner.capture)
        runner.loaders.install()
        runner.facts.install()
        runner.start_recording()
        _run_script(runner, ns.target, ns.module, args)
    except BaseException as exc:  # however the script ended
        exit_code = _script_ended(exc, runner, record)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for undo in (runner.stop_watchdog, runner.detector.uninstall, undo_gradient_watch, runner.loaders.uninstall,
                     runner.facts.uninstall, sys.stdout.flush, sys.stderr.flush):
            undo()
        _save(runner, record, torch, [] if ns.module else [os.path.abspath(ns.target)])
    return exit_code


def _script_ended(exc: BaseException, runner: Runner, record: dict) -> int:
    """Note in ``record`` how the script ended (by advisor's stop, ``sys.exit``, Ctrl-C, raising); the runner's
    exit code."""
    from advisor.runner.live import ApplyRefused

    if isinstance(exc, StopScript):
        record["outcome"] = "stopped_at_limit" if runner.limit is not None else "stopped_after_window"
        return 0
    if isinstance(exc, ApplyRefused):
        record.update(outcome="apply_refused", exit_code=None, error=str(exc))
        return 1
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code == 0:
            record["outcome"] = "completed"
            return 0
        if not isinstance(code, int):
            print(code, file=sys.stderr)
        exit_code = code if isinstance(code, int) else 1
        record.update(outcome="exited", exit_code=exit_code)
        return exit_code
    if isinstance(exc, KeyboardInterrupt):
        record.update(outcome="interrupted", exit_code=130)
        return 130
    if isinstance(exc, _TargetNotFound):
        record.update(outcome="not_found", exit_code=1, error=str(exc))
        return 1
    sys.stderr.write(_script_traceback(exc))
    record.update(outcome="raised", exit_code=1, error=f"{type(exc).__name__}: {exc}")
    return 1


def _save(runner: Runner, record: dict, torch, user_files: list[str]) -> None:
    """Write what was recorded (each part on its own, a failure noted in ``problems``), then ``runner.json``."""
    record["problems"] = [problem for problem in (_safely(runner.window.finish), _safely(runner.after_limit),
                                                  _safely(runner.write_steps),
                                                  _safely(runner.write_workload), _safely(runner.write_facts),
                                                  _safely(runner.write_outcomes), runner.facts.failure)
                          if problem]
    record.update(
        ended_unix_ns=time.time_ns(),
        **runner.record(),
        environment=_environment(torch),
        user_files=_user_files(user_files),
    )
    atomic_write_json(runner.run_dir / RUNNER_FILE, record)


def _live_settings(ns: argparse.Namespace, torch) -> LiveSettings:
    """The techniques named by ``--apply`` (from the installed plugins), seeded RNGs, and the turns."""
    import random

    from advisor.plugins import installed_techniques
    from advisor.runner.live import ApplyRefused, LiveTechniques, StepOutcomes, Turns

    techniques = None
    if ns.apply:
        names = ns.apply.split(",")
        found = installed_techniques(tuple(ns.block), names)
        missing = [name for name in names if name not in found]
        if missing:
            raise ApplyRefused(f"no installed technique named {', '.join(missing)}")
        techniques = LiveTechniques([found[name] for name in names])
    # Both runs start from the same random state, so that their data and their losses can be compared
    # (a script that seeds itself still does).
    random.seed(ns.seed)
    torch.manual_seed(ns.seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(ns.seed)
    turn_fd = int(os.environ["ADVISOR_TURN_FD"]) if "ADVISOR_TURN_FD" in os.environ else None
    return LiveSettings(techniques=techniques, outcomes=StepOutcomes(), turns=Turns(turn_fd))


def _nothing() -> None:
    pass


def _safely(action) -> str | None:
    """Run one finalisation step; a failure is returned (and shown), not raised, so the next steps run."""
    try:
        action()
    except Exception as exc:
        problem = f"{action.__name__} failed: {type(exc).__name__}: {exc}"
        print(f"advisor: {problem}", file=sys.stderr)
        return problem
    return None


def _environment(torch) -> dict:
    env = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "total_memory": p.total_memory,
                                "compute_capability": f"{p.major}.{p.minor}"})
    return env


def _user_files(extra: list[str]) -> dict[str, str]:
    """Source files of the user's code, keyed as the profiler's Python tracer names them.

    The tracer strips the longest ``sys.path`` prefix from a file name, so user code and library
    code look alike in the trace; this map says which names are the user's.
    """
    import sysconfig

    library_roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                   sysconfig.get_paths()["stdlib"],
                                                   sysconfig.get_paths()["purelib"],
                                                   sysconfig.get_paths()["platlib"]) if p}
    advisor_root = os.path.realpath(os.path.dirname(os.path.dirname(__file__)))
    roots = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}, key=len, reverse=True)
    files = {}
    filenames = [getattr(module, "__file__", None) for module in list(sys.modules.values())] + extra
    for filename in filenames:
        if not filename or not filename.endswith(".py") or not os.path.isabs(filename):
            continue
        real = os.path.realpath(filename)
        if real.startswith(advisor_root) or any(real.startswith(root + os.sep) for root in library_roots):
            continue
        files[_tracer_name(real, roots)] = real
    return files


def _tracer_name(path: str, roots: list[str]) -> str:
    for root in roots:
        if path.startswith(root + os.sep):
            return path[len(root) + 1:]
    return path


if __name__ == "__main__":
    sys.exit(main())

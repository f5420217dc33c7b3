"""The child process: run the user's script as ``python SCRIPT args`` would, under the profiler.

It writes ``runner.json`` (how the script ended, how steps were found, the window) and
``steps.csv`` (every step boundary) into the run directory, whatever way the script ends:
normally, by ``sys.exit``, by raising, by Ctrl-C, or by advisor stopping it after the window.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from advisor.rundir import RUNNER_FILE
from advisor.rundir_io import atomic_write_json
from advisor.runner import run
from advisor.runner.artifacts import save
from advisor.runner.limits import DEFAULT_MEGABYTES, DEFAULT_SECONDS, RecordLimits
from advisor.runner.run import LiveSettings, Runner
from advisor.runner.target import run_script, script_ended
from advisor.runner.technique_trials import TrialSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m advisor.runner")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--module", action="store_true")
    parser.add_argument("--keep-running", action="store_true")
    parser.add_argument("--with-stack", action="store_true", help="record Python stacks in the window's trace")
    parser.add_argument("--trials", action="store_true")
    parser.add_argument("--techniques", default=None)
    parser.add_argument("--no-measure", action="store_true")
    parser.add_argument("--block", action="append", default=[])
    parser.add_argument("--trial-budget", type=float, default=60.0)
    parser.add_argument("--pairs", choices=("gaining", "all", "none"), default="gaining")
    parser.add_argument("--compare", action="store_true", help="a run of --apply: steps timed in turns")
    parser.add_argument("--apply", default="", help="techniques to apply to the running model (with --compare)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distributed", action="store_true", help="one rank of a torchrun launch")
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
    if ns.distributed:  # one rank of a torchrun launch: its own folder, progress from rank 0 only
        from advisor.runner.ranks import Rank, stop_on_sigterm

        rank = Rank.from_environment()
        run_dir, progress_fd, record["rank"] = rank.run_dir(run_dir), rank.progress_fd(), rank.record()
        stop_on_sigterm()
    # advisor stops the script with SIGINT, which a shell's background job starts ignored: take it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import torch
    except Exception as exc:  # the interpreter has no usable torch
        record.update(outcome="no_torch", exit_code=None, error=f"{type(exc).__name__}: {exc}")
        atomic_write_json(run_dir / RUNNER_FILE, record)
        return 1

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
    runner = run.active = Runner(run_dir, ns.warmup, ns.steps, progress_fd, ns.keep_running, trials, live, limits,
                                 with_stack=ns.with_stack)
    if ns.distributed:  # a replay of one rank's step would wait in collectives the other ranks never join
        runner.capture.failure = "a distributed run: one rank's step cannot be replayed alone"
    exit_code = 0
    try:
        runner.detector.install()
        undo_gradient_watch = install_gradient_watch(lambda: runner.capture)
        runner.loaders.install()
        runner.facts.install()
        runner.start_recording()
        run_script(runner, ns.target, ns.module, args)
    except BaseException as exc:  # however the script ended
        exit_code = script_ended(exc, runner, record)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if ns.distributed:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for undo in (runner.stop_watchdog, runner.detector.uninstall, undo_gradient_watch, runner.loaders.uninstall,
                     runner.facts.uninstall, sys.stdout.flush, sys.stderr.flush):
            undo()
        save(runner, record, torch, [] if ns.module else [os.path.abspath(ns.target)])
        runner.report(event="saved")  # advisor may analyse the run while this process exits
    return exit_code


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


if __name__ == "__main__":
    sys.exit(main())

"""What the child writes into the run directory as the run ends: steps, the captured workload, facts, outcomes,
and ``runner.json``; each part on its own, so that one failing does not cost the others."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from advisor.rundir import FACTS_FILE, OUTCOMES_FILE, RUNNER_FILE, STEPS_FILE, WORKLOAD_FILE
from advisor.rundir_io import atomic_write_json, atomic_write_text
from advisor.runner.environment import environment, user_files

if TYPE_CHECKING:
    from advisor.runner.run import Runner


def write_steps(runner: Runner) -> None:
    """``steps.csv``: every step's start and end, and whether the window recorded it."""
    lines = ["step,start_unix_ns,end_unix_ns,recorded"]
    first = runner.window.warmup
    last = first + runner.window.recorded_steps
    start = runner.started_ns
    resumed = runner.live.turns.resumed_ns if runner.live is not None else {}
    for i, end in enumerate(runner.boundary_times_ns):
        lines.append(f"{i},{start},{end},{int(first <= i < last)}")
        start = resumed.get(i, end)
    atomic_write_text(runner.run_dir / STEPS_FILE, "\n".join(lines) + "\n")


def write_workload(runner: Runner) -> None:
    """Check the captured workload by replaying it once, and describe it in ``workload.json``."""
    from advisor.workload import describe
    from advisor.runner.loaders import describe_loader

    if runner.capture_written or runner.live is not None:
        return
    runner.capture_written = True
    record: dict = {"captured": runner.workload is not None, "reason": runner.capture.failure,
                    "training": runner.capture.training_seen or None}
    loader = runner.workload.data_loader if runner.workload is not None else runner.loaders.current()
    record["data_loader"] = describe_loader(loader) if loader is not None else None
    if runner.workload is not None:
        record.update(describe(runner.workload))
        runner.detector.paused = True
        try:
            record["replay"] = replay = runner.capture.replay_check(runner.workload)
            if not replay["reproduced"]:
                runner.not_reproduced = replay["why"]
        except Exception as exc:  # the replay is advisor's, the script is not at fault
            record.update(captured=False, reason=f"replay failed: {type(exc).__name__}: {exc}")
            runner.workload = None
        finally:
            runner.detector.paused = False
    elif record["reason"] is None:
        record["reason"] = ("no step boundary was found before the recording limit" if runner.sliced
                            else "the script ended before the step before the window")
    atomic_write_json(runner.run_dir / WORKLOAD_FILE, record)


def write_peaks(runner: Runner) -> None:
    """``peaks.json``: the machine's peaks (cached per machine; measured, when not cached, once the window is over,
    so that measuring never shares the machine with the recorded steps), on the device the model ran on."""
    from advisor.peaks import write_run_peaks

    torch = sys.modules.get("torch")
    workload = runner.workload
    cuda = (workload is not None and any(p.is_cuda for p in workload.model.parameters())) or \
        (torch is not None and torch.cuda.is_initialized())
    write_run_peaks(runner.run_dir, "cuda" if cuda else "cpu")


def write_facts(runner: Runner) -> None:
    """``facts.json``: what the script's code was seen doing (see :mod:`advisor.runner.facts`)."""
    atomic_write_json(runner.run_dir / FACTS_FILE, runner.facts.record())


def write_outcomes(runner: Runner) -> None:
    """``outcomes.csv`` of a run of ``--apply``: the script's losses (or output norms), step by step."""
    if runner.live is not None:
        runner.live.outcomes.write(runner.run_dir / OUTCOMES_FILE)


def save(runner: Runner, record: dict, torch, script_files: list[str]) -> None:
    """Write what was recorded (each part on its own, a failure noted in ``problems``), then ``runner.json``."""
    record["problems"] = [problem for problem in (safely(runner.window.finish), safely(runner.after_limit),
                                                  safely(write_steps, runner), safely(write_workload, runner),
                                                  safely(write_facts, runner), safely(write_outcomes, runner),
                                                  runner.facts.failure)
                          if problem]
    record.update(
        ended_unix_ns=time.time_ns(),
        **runner.record(),
        environment=environment(torch),
        user_files=user_files(script_files),
    )
    atomic_write_json(runner.run_dir / RUNNER_FILE, record)


def safely(action, *args) -> str | None:
    """Run one finalisation step; a failure is returned (and shown), not raised, so the next steps run."""
    try:
        action(*args)
    except Exception as exc:
        problem = f"{action.__name__} failed: {type(exc).__name__}: {exc}"
        print(f"advisor: {problem}", file=sys.stderr)
        return problem
    return None

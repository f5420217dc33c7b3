"""One profiling run: check the target, start the child under the collectors, watch it, save it.

Whatever happens to the script, the run directory keeps what was collected (see :mod:`advisor.child`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

from advisor import distributed_run
from advisor.child import ProgressListener, ScriptProcess, read_runner, run_error, runner_command, sigint_to
from advisor.collectors.base import Availability, Collector, CollectorContext
from advisor.errors import AdvisorError
from advisor.launcher import LAUNCH_FILE
from advisor.options import ProfileOptions, check_target, new_meta
from advisor.plugins import call_each, plugin_manager
from advisor.rundir import new_run_dir, write_meta


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    meta: dict
    error: AdvisorError | None


def _collectors(options: ProfileOptions, run_dir: Path) -> tuple[list[Collector], dict]:
    """Every plugin's collectors, and each one's availability as recorded in the run."""
    config = {"warmup": options.warmup, "steps": options.steps, "timeout": options.timeout,
              "run_dir": str(run_dir)}
    status: dict[str, dict] = {"torch_profiler": Availability(True, "in the script's process").to_json()}
    usable: list[Collector] = []
    pm = plugin_manager(options.blocked_plugins)
    for plugin, error in pm.load_errors.items():
        status[plugin] = {"available": False, "reason": f"broken plugin: failed to load: {error}"}
    for plugin, provided, error in call_each(pm.hook.advisor_collectors, config=config):
        if error is not None:
            status[plugin] = {"available": False, "reason": f"broken plugin: {type(error).__name__}: {error}"}
            continue
        for collector in provided:
            name = getattr(collector, "name", type(collector).__name__)
            try:
                availability = collector.check()
            except Exception as exc:
                availability = Availability(False, f"broken collector: {type(exc).__name__}: {exc}")
            status[name] = availability.to_json()
            if availability.available:
                usable.append(collector)
    return usable, status


def profile(options: ProfileOptions, on_update: ProgressListener | None = None,
            on_stage: Callable[[str, Path, dict | None], None] | None = None,
            child_env: dict[str, str] | None = None) -> RunResult:
    """Run the target under the collectors; return the run directory, its metadata and any error.

    ``on_update(steps_done, mode, window_done, elapsed_s, activity)`` is called while the script runs,
    from the calling thread (``profile`` may run in any thread; only the main one handles Ctrl-C);
    ``on_stage(stage, run_dir, record)`` at the child's stages (see :meth:`advisor.child.ScriptProcess.watch`; not
    in a distributed run); ``child_env`` is added to the child's environment (see :mod:`advisor.early_analysis`)."""
    check_target(options)
    run_dir = new_run_dir(options.out, options.target)
    collectors, collector_status = _collectors(options, run_dir)
    started = time.time()
    meta = new_meta(options, collector_status)
    write_meta(run_dir, meta)

    launch = options.launch
    command = runner_command(options, run_dir, *_runner_args(options, trials=launch is None))
    if launch is not None:  # every rank under torchrun; no trials: one rank's step cannot be replayed alone
        command = launch.command(command, str(run_dir / LAUNCH_FILE))
    for collector in collectors:
        command = collector.wrap_command(command, run_dir)
    child = distributed_run.LaunchedProcess(command, options.script_stdout_to_stderr, cwd=options.cwd) if launch \
        else ScriptProcess(command, options.script_stdout_to_stderr, cwd=options.cwd, env=child_env)
    started_collectors = _start(collectors, child, run_dir, collector_status)
    with sigint_to(child.on_sigint):
        returncode = child.watch(options.timeout, on_update) if launch else \
            child.watch(options.timeout, on_update,
                        on_stage and (lambda stage, record: on_stage(stage, run_dir, record)))
    for collector in started_collectors:
        try:
            collector.stop()
        except Exception as exc:  # a collector must not cost the run
            collector_status[collector.name] = {"available": False, "reason": f"failed while stopping: {exc}"}

    runner = read_runner(run_dir)
    error = run_error(meta, runner, returncode, child, options) if launch is None else \
        distributed_run.finish(meta, run_dir, launch, child, options.timeout, "OMP_NUM_THREADS" in os.environ)
    collector_status["torch_profiler"] = _profiler_status(runner, error)
    meta.update(ended_at=time.time(), duration_s=round(time.time() - started, 3))
    write_meta(run_dir, meta)
    return RunResult(run_dir=run_dir, meta=meta, error=error)


def _runner_args(options: ProfileOptions, trials: bool) -> list[str]:
    return [*(["--trials"] if trials else []), *(["--keep-running"] if options.keep_running else []),
            *(["--with-stack"] if options.with_stack else []),
            *(["--techniques", ",".join(options.techniques)] if options.techniques else []),
            *(["--no-measure"] if not options.measure else []), "--trial-budget", str(options.trial_budget),
            "--pairs", options.pairs, "--record-limit-s", str(options.record_limit_s),
            "--record-limit-mb", str(options.record_limit_mb)]


def _start(collectors: list[Collector], child: ScriptProcess, run_dir: Path, status: dict) -> list[Collector]:
    """Start each collector on the child; those that started."""
    started = []
    for collector in collectors:
        try:
            collector.start(CollectorContext(pid=child.pid, run_dir=run_dir))
            started.append(collector)
        except Exception as exc:  # a collector must not cost the run
            status[collector.name] = {"available": False, "reason": f"failed to start: {exc}"}
    return started


def _profiler_status(runner: dict | None, error: AdvisorError | None) -> dict:
    """The torch profiler's availability as the run found it."""
    if runner is None:
        reason = f"no trace: {error}" if error is not None else "no trace"
        return {"available": False, "reason": reason}
    if not runner.get("trace_written"):
        return {"available": False, "reason": f"no trace: the script ended as {runner.get('outcome')} first"}
    cuda = (runner.get("environment") or {}).get("cuda_available")
    return {"available": True,
            "reason": "CPU ops, shapes, memory" + (", Python stacks" if runner.get("with_stack") else "")
            + ("; CUDA kernels" if cuda else "; no CUDA device")}

"""Running the user's script or module as ``python`` would, and noting how it ended."""

from __future__ import annotations

import os
import runpy
import sys
import traceback

from advisor.runner.run import Runner, StopScript


class TargetNotFound(Exception):
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
            raise TargetNotFound(f"No module named {target!r}")
        sys.argv = [target, *args]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        path = os.path.abspath(target)
        sys.argv = [target, *args]
        sys.path[0] = os.path.dirname(path)
        runpy.run_path(path, run_name="__main__")


def run_script(runner: Runner, target: str, is_module: bool, args: list[str]) -> None:
    """Run the target; only meanwhile may a recording limit stop it."""
    runner.in_script = True
    try:
        _run_target(target, is_module, args)
    finally:
        runner.in_script = False


def _script_traceback(exc: BaseException) -> str:
    """The traceback as ``python SCRIPT`` would print it: advisor's and runpy's frames dropped (also those of the
    hooks advisor wraps around the script's calls, such as ``backward``), in chained exceptions too."""
    report = traceback.TracebackException.from_exception(exc)
    part = report
    while part is not None:
        part.stack = traceback.StackSummary.from_list([f for f in part.stack if not _is_harness_frame(f.filename)])
        part = part.__cause__ or part.__context__
    return "".join(report.format())


def _is_harness_frame(filename: str) -> bool:
    return filename.startswith(os.path.dirname(__file__)) or filename.endswith(("runpy.py", "<frozen runpy>"))


def script_ended(exc: BaseException, runner: Runner, record: dict) -> int:
    """Note in ``record`` how the script ended (by advisor's stop, ``sys.exit``, Ctrl-C, raising); the runner's
    exit code."""
    from advisor.runner.live import ApplyRefused
    from advisor.runner.ranks import LauncherStopped

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
    if isinstance(exc, LauncherStopped):  # another rank failed, or advisor was interrupted
        record.update(outcome="terminated", exit_code=143, error="stopped by the launcher (SIGTERM)")
        return 143
    if isinstance(exc, KeyboardInterrupt):
        record.update(outcome="interrupted", exit_code=130)
        return 130
    if isinstance(exc, TargetNotFound):
        record.update(outcome="not_found", exit_code=1, error=str(exc))
        return 1
    sys.stderr.write(_script_traceback(exc))
    record.update(outcome="raised", exit_code=1, error=f"{type(exc).__name__}: {exc}")
    return 1

"""Bad input through the real CLI in a subprocess: one line, a distinct exit code, no advisor traceback."""

import json
import signal
import subprocess
import sys
import time

import pytest

from advisor.errors import (AnalysisFailed, Interrupted, NoTorchWork, NotAPythonFile, RunDirError, ScriptExited, ScriptNotFound,
                            ScriptRaised, ScriptSyntaxError, ScriptTimedOut, UsageError)
from conftest import SCRIPTS, no_advisor_traceback, run_advisor


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("advisor: error:")]


@pytest.mark.parametrize("target, code, message", [
    ("missing.py", ScriptNotFound.exit_code, "script not found: missing.py"),
    ("not_python.csv", NotAPythonFile.exit_code, "not a Python file"),
    ("syntax_error.py", ScriptSyntaxError.exit_code, "syntax error in syntax_error.py, line 1"),
])
def test_target_rejected_before_running(tmp_path, target, code, message):
    (tmp_path / "not_python.csv").write_text("a,b\n1,2\n")
    (tmp_path / "syntax_error.py").write_text((SCRIPTS / "syntax_error.py").read_text())
    proc = run_advisor("profile", target, cwd=tmp_path)
    assert proc.returncode == code
    assert len(_error_lines(proc.stderr)) == 1 and message in proc.stderr
    assert no_advisor_traceback(proc.stderr)
    assert not (tmp_path / ".advisor").exists(), "no run directory for a script that never ran"


def test_codes_are_distinct():
    codes = [e.exit_code for e in (UsageError, ScriptNotFound, NotAPythonFile, ScriptSyntaxError, ScriptRaised,
                                   ScriptExited, ScriptTimedOut, NoTorchWork, RunDirError, AnalysisFailed,
                                   Interrupted)]
    assert len(set(codes)) == len(codes) and 0 not in codes


def test_script_that_raises_keeps_its_steps(tmp_path):
    out = tmp_path / "run"
    proc = run_advisor("profile", SCRIPTS / "raises.py", "--warmup", "2", "--steps", "20", "--out", out)
    assert proc.returncode == ScriptRaised.exit_code
    assert "ValueError: boom at step 9" in proc.stderr
    assert 'raises.py", line 10' in proc.stderr, "the script's own traceback is shown"
    assert no_advisor_traceback(proc.stderr)
    (line,) = _error_lines(proc.stderr)
    assert line.endswith("raises.py raised ValueError: boom at step 9; 8 recorded steps kept")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["count"] == 8, "the step cut by the exception is not counted"
    assert summary["outcome"] == "raised"
    assert json.loads((out / "meta.json").read_text())["outcome"] == "raised"


def test_script_exit_code_is_recorded(tmp_path):
    out = tmp_path / "run"
    proc = run_advisor("profile", SCRIPTS / "exits.py", "--out", out)
    assert proc.returncode == ScriptExited.exit_code
    (line,) = _error_lines(proc.stderr)
    assert line.endswith("exits.py exited with code 3; 0 recorded steps kept")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["script_exit_code"] == 3 and meta["outcome"] == "exited"


def test_script_without_torch(tmp_path):
    proc = run_advisor("profile", SCRIPTS / "no_torch.py", "--out", tmp_path / "run")
    assert proc.returncode == NoTorchWork.exit_code
    assert "ran no PyTorch operations" in proc.stderr
    assert "this script never touches PyTorch" in proc.stdout, "the script's own output passes through"


def test_missing_module(tmp_path):
    proc = run_advisor("profile", "-m", "no_such_module_here", "--out", tmp_path / "run")
    assert proc.returncode == ScriptNotFound.exit_code
    assert "module not found: no_such_module_here" in proc.stderr
    assert no_advisor_traceback(proc.stderr)


@pytest.mark.timing  # the script must reach its hang within the timeout
def test_hung_script_times_out(tmp_path):
    """Started as a shell's background job starts it (SIGINT ignored), advisor still stops the script with
    SIGINT at the timeout and keeps what it recorded, without waiting for the grace period's SIGKILL."""
    out = tmp_path / "run"
    start = time.monotonic()
    proc = run_advisor("profile", SCRIPTS / "hangs.py", "--warmup", "1", "--timeout", "12", "--out", out,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == ScriptTimedOut.exit_code
    assert time.monotonic() - start < 60
    assert "timed out after 12 s" in proc.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["outcome"] == "timed_out"
    assert json.loads((out / "runner.json").read_text())["outcome"] == "interrupted", "the script saw the SIGINT"
    assert (out / "steps.csv").read_text().count("\n") == 4, "header and the 3 steps seen before the hang"
    assert (out / "summary.json").exists()


def _ctrl_c_once_ready(script: str, out) -> tuple[subprocess.Popen, str]:
    """``advisor profile SCRIPT`` stopped by one Ctrl-C once the script printed "ready"; the process and its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "advisor", "profile", str(SCRIPTS / script), "--warmup", "1",
                             "--steps", "10", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    line = ""
    while "ready" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    assert "ready" in line
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    return proc, stderr


def test_ctrl_c_saves_what_was_recorded(tmp_path):
    out = tmp_path / "run"
    proc, stderr = _ctrl_c_once_ready("hangs.py", out)
    assert proc.returncode == Interrupted.exit_code
    assert no_advisor_traceback(stderr)
    assert _error_lines(stderr) == ["advisor: error: interrupted; 2 recorded steps kept"]
    assert json.loads((out / "meta.json").read_text())["outcome"] == "interrupted"
    assert json.loads((out / "summary.json").read_text())["steps"]["count"] == 2


def test_a_script_that_crashes_on_ctrl_c_is_reported_as_crashed(tmp_path):
    """Its interpreter dies of SIGSEGV before the runner saves: the error names the signal, not only the Ctrl-C."""
    out = tmp_path / "run"
    proc, stderr = _ctrl_c_once_ready("crashes_on_ctrl_c.py", out)
    assert proc.returncode == Interrupted.exit_code
    assert no_advisor_traceback(stderr)
    assert _error_lines(stderr) == [f"advisor: error: interrupted; {SCRIPTS / 'crashes_on_ctrl_c.py'} was killed by "
                                    "SIGSEGV before advisor could save its recording"]
    assert json.loads((out / "meta.json").read_text())["outcome"] == "interrupted"


def test_unknown_option_hints_at_separator(tmp_path):
    proc = run_advisor("profile", SCRIPTS / "tiny_mlp_infer.py", "--lr", "3")
    assert proc.returncode == UsageError.exit_code
    assert "unrecognized arguments: --lr 3" in proc.stderr


@pytest.mark.parametrize("case", ["missing", "foreign", "corrupt", "newer"])
def test_show_rejects_broken_run_directories(tmp_path, case):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
    if case == "foreign":
        (run / "meta.json").write_text(json.dumps({"name": "something else"}))
    elif case == "corrupt":
        (run / "meta.json").write_text('{"format": "advisor-run", "format_ver')
    elif case == "newer":
        (run / "meta.json").write_text(json.dumps({"format": "advisor-run", "format_version": 99}))
    proc = run_advisor("show", run)
    assert proc.returncode == RunDirError.exit_code
    assert len(_error_lines(proc.stderr)) == 1 and len(proc.stderr.strip().splitlines()) == 1
    expected = {"missing": "no such run directory", "foreign": "not an advisor run directory",
                "corrupt": "corrupt run metadata", "newer": "made by a newer advisor"}[case]
    assert expected in proc.stderr


def test_show_with_corrupt_trace(tmp_path):
    run = tmp_path / "run"
    (run / "trace").mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"format": "advisor-run", "format_version": 1}))
    (run / "trace" / "worker0.pt.trace.json").write_text('{"traceEvents": [{"ph": "X", "cat": "cpu_op", "na')
    proc = run_advisor("show", run)
    assert proc.returncode == RunDirError.exit_code
    assert "corrupt trace" in proc.stderr and no_advisor_traceback(proc.stderr)

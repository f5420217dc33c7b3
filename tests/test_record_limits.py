"""Recordings are bounded: --record-limit-s and --record-limit-mb end the pre-step recording (then analysed as
time slices) or the window (its complete steps kept), on real scripts through the real CLI; and a script
killed by a signal is reported as such."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys

import pytest

from conftest import SCRIPTS, no_advisor_traceback, run_advisor

NEVER_STEPS = SCRIPTS / "loops" / "never_steps.py"
MEMORY_LIMIT_MB = 80
#: what advisor's child holds beyond the plain script's peak besides the recording: advisor's own
#: modules, psutil and the profiler's set-up (measured: about 45 MB in all with an 80-100 MB limit)
ADVISOR_OVERHEAD_MB = 64

RUNS = {
    "memory": (NEVER_STEPS, ("--record-limit-mb", str(MEMORY_LIMIT_MB)), ("--seconds", "30", "--size", "4")),
    "time": (NEVER_STEPS, ("--record-limit-s", "2"), ()),
    "window_memory": (SCRIPTS / "loops" / "manual_sgd.py", ("--warmup", "2", "--steps", "100000",
                                                           "--record-limit-mb", "60"), ("--steps", "100000")),
    "window_time_kept_running": (SCRIPTS / "loops" / "manual_sgd.py",
                                 ("--warmup", "2", "--steps", "100000", "--record-limit-s", "1", "--keep-running"),
                                 ("--steps", "400")),
    "own_growth": (SCRIPTS / "big_first_step.py", ("--warmup", "2", "--steps", "2"), ()),
}


def _profile(out, script, options, script_args):
    proc = run_advisor("profile", "--out", out, "--json", "--no-measure", *options, script, "--", *script_args)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc, summary, json.loads((out / "runner.json").read_text()), out


def _plain_peak_rss(script, *args) -> int:
    """ru_maxrss of the script run plainly, measured in a fresh process that runs only it (bytes)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, str(script), *args], capture_output=True,
                         text=True, check=True, timeout=120)
    return int(out.stdout) * 1024


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_profile, root / name, *spec) for name, spec in RUNS.items()}
        plain = pool.submit(_plain_peak_rss, NEVER_STEPS, "--seconds", "3", "--size", "4")
        results = {name: future.result() for name, future in futures.items()}
        results["plain_peak_rss"] = plain.result()
    return results


def _shown(run_dir) -> str:
    proc = run_advisor("show", run_dir)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


@pytest.mark.timing  # the runs of `runs` meet time and memory limits: run alone (see Makefile)
def test_memory_limit_ends_a_recording_with_no_step_within_its_bound(runs):
    """never_steps.py (tiny tensor ops in a loop, no module, no step: its recording grows fast) under
    --record-limit-mb 80: the memory limit, not the time limit, ends the recording, analysed as ten time slices.

    Bound checked: the peak resident memory of advisor's child (ru_maxrss, saving the trace included) is at most
    the plain script's own peak (ru_maxrss of ``python never_steps.py``) + the limit (80 MB) + 64 MB for
    advisor's own modules and the profiler's set-up.
    """
    proc, summary, runner, run_dir = runs["memory"]
    assert proc.returncode == 0, proc.stderr
    assert no_advisor_traceback(proc.stderr)
    assert "advisor: recording limit reached" in proc.stderr and "--record-limit-mb 80" in proc.stderr
    assert runner["outcome"] == "stopped_at_limit" and "iterations" not in proc.stderr, "the script was stopped"
    assert runner["record_limit"]["reason"] == "memory" and runner["record_limit"]["recording"] == "pre_step"
    assert runner["record_limit"]["elapsed_s"] < 60
    assert runner["step_detection"] == summary["steps"]["detection"] == "time_slices"
    slices = summary["steps"]["slices"]
    assert [s["slice"] for s in slices] == list(range(10)) and summary["steps"]["count"] == 10
    width = summary["steps"]["median_ms"]
    assert all(abs(s["start_ms"] - i * width) < 0.01 and abs(s["duration_ms"] - width) < 0.01
               for i, s in enumerate(slices)), "equal slices, one after the other"
    assert sum(s["ops_ms"] for s in slices) > 0 and any(s["top_op"] for s in slices)
    assert summary["hot_ops"][0]["name"] in ("aten::mm", "aten::tanh")
    text = _shown(run_dir)
    assert "No step boundary found within the limit (memory limit of 80 MB): analysed as 10 time slices of" in text
    bound = runs["plain_peak_rss"] + (MEMORY_LIMIT_MB + ADVISOR_OVERHEAD_MB) * 2**20
    assert runner["peak_rss_bytes"] <= bound, (runner["peak_rss_bytes"] / 2**20, runs["plain_peak_rss"] / 2**20)


@pytest.mark.timing
def test_time_limit_counts_from_the_start_without_module_calls(runs):
    proc, summary, runner, run_dir = runs["time"]
    assert proc.returncode == 0, proc.stderr
    assert runner["record_limit"]["reason"] == "time" and runner["record_limit"]["recording"] == "pre_step"
    assert 2 <= runner["record_limit"]["elapsed_s"] < 9, "no module call: the clock ran from the recording's start"
    assert summary["steps"]["detection"] == "time_slices" and len(summary["steps"]["slices"]) == 10
    assert abs(summary["steps"]["median_ms"] * 10 / 1000 - runner["record_limit"]["elapsed_s"]) < 1.0
    assert "(time limit of 2 s): analysed as 10 time slices" in _shown(run_dir)
    workload = json.loads((run_dir / "workload.json").read_text())
    assert workload["captured"] is False and "recording limit" in workload["reason"]


@pytest.mark.timing
def test_memory_limit_ends_the_window_and_keeps_its_steps(runs):
    proc, summary, runner, run_dir = runs["window_memory"]
    assert proc.returncode == 0, proc.stderr
    assert runner["record_limit"]["reason"] == "memory" and runner["record_limit"]["recording"] == "window"
    assert runner["step_detection"] == "backward" and runner["outcome"] == "stopped_at_limit"
    kept = summary["steps"]["count"]
    assert 1 <= kept == runner["recorded_steps"] < 100000
    assert f"the window ended after {kept} of 100000 steps because of the memory limit of 60 MB" in _shown(run_dir)
    assert (run_dir / "trials.json").exists(), "techniques are asked about the steps kept"
    report = run_advisor("report", run_dir, "-o", run_dir / "r.md")
    assert report.returncode == 0 and f"ended after {kept} of 100000 steps" in (run_dir / "r.md").read_text()


@pytest.mark.timing
def test_time_limit_ends_the_window_and_the_script_goes_on(runs):
    proc, summary, runner, run_dir = runs["window_time_kept_running"]
    assert proc.returncode == 0, proc.stderr
    assert runner["record_limit"]["reason"] == "time" and runner["record_limit"]["recording"] == "window"
    assert "trained 400 steps" in proc.stderr and runner["outcome"] == "completed"
    assert runner["boundaries"] == 399 and 1 <= summary["steps"]["count"] == runner["recorded_steps"] < 397
    assert "because of the time limit of 1 s" in _shown(run_dir)


@pytest.mark.timing
def test_the_scripts_own_memory_does_not_end_the_recording(runs):
    """big_first_step.py builds a 200 MB dataset before its first step: far past the memory limit's share for
    a recording (1024 MB / 12), but stopping the recording takes little, so the script goes on to its steps."""
    proc, summary, runner, _ = runs["own_growth"]
    assert proc.returncode == 0, proc.stderr
    assert runner["record_limit"] is None and "the script's own memory grew" in runner["pre_step_stopped"]
    assert summary["steps"]["detection"] == "optimizer" and summary["steps"]["count"] == 2


@pytest.mark.parametrize("signame, expected", [
    ("SIGKILL", "was killed by SIGKILL, probably by the kernel's out-of-memory killer"),
    ("SIGSEGV", "was killed by SIGSEGV before advisor could save its recording"),
])
def test_a_killed_script_names_the_signal(tmp_path, signame, expected):
    proc = run_advisor("profile", "--out", tmp_path / "run", "--no-measure", SCRIPTS / "killed.py", "--", signame)
    assert proc.returncode == 6
    assert expected in proc.stderr and "exit code 0" not in proc.stderr
    assert not any(line.startswith(f"{sys.executable}: ") for line in proc.stderr.splitlines()), \
        "the report of a wrapper (perf stat) is not passed on"
    assert no_advisor_traceback(proc.stderr)
    assert (tmp_path / "run" / "samples.csv").exists(), "what was collected is kept"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["collectors"]["torch_profiler"]["available"] is False

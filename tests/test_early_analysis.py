"""The trace analysed while the child exits (advisor.early_analysis): a real run, its stages, the frames taken."""

import json
import os
import subprocess
import sys

import pytest

import advisor.analysis.profile as profile_module
from advisor.early_analysis import EarlyAnalysis
from advisor.options import ProfileOptions
from advisor.pipeline import analyse_run
from advisor.session import profile
from conftest import SCRIPTS


def _profiled_early(out, **settings):
    """``advisor profile``'s own path for tiny_cnn_train.py, in this process: the stages seen, the run's directory,
    and the early analysis that followed them."""
    stages = []
    early = EarlyAnalysis()

    def on_stage(stage, run_dir, record=None):
        stages.append(stage)
        early.on_stage(stage, run_dir, record)

    options = ProfileOptions(target=str(SCRIPTS / "tiny_cnn_train.py"), args=["--steps", "12"], warmup=2, steps=3,
                             out=out, **settings)
    result = profile(options, on_stage=on_stage, child_env=early.environment())
    assert result.error is None
    return stages, result.run_dir, early


@pytest.fixture(scope="module")
def early_run(tmp_path_factory):
    """The stages seen, the run, and the frames made early. One technique is measured, so that the runner asks for
    the recording's summary."""
    stages, run_dir, early = _profiled_early(tmp_path_factory.mktemp("early") / "run", techniques=["channels_last"],
                                             pairs="none")
    return stages, run_dir, early.frames()


def test_the_child_says_when_it_has_saved_its_record(early_run):
    stages, run_dir, frames = early_run
    assert stages == ["launched", "recorded", "saved"]
    assert frames is not None and frames.steps["step"].tolist() == [2, 3, 4]


def test_the_runner_trials_on_the_summary_made_by_advisors_process(early_run):
    """The runner asked for the recording's summary instead of analysing it (pandas never imported in the script's
    process for it); the answer's file is gone, and the summary it got is the one the run's analysis makes."""
    _, run_dir, frames = early_run
    trials = json.loads((run_dir / "trials.json").read_text())
    assert trials["analysed_by"] == "advisor"
    assert not (run_dir / ".recording_summary.json").exists()
    assert trials["techniques"] and all(not t["status"].startswith("broken") for t in trials["techniques"])


def test_a_runner_with_no_one_to_ask_analyses_the_recording_itself(tmp_path):
    options = ProfileOptions(target=str(SCRIPTS / "tiny_mlp_infer.py"), args=["12"], warmup=2, steps=2,
                             techniques=["channels_last"], pairs="none", out=tmp_path / "run")
    assert profile(options).error is None
    assert json.loads((tmp_path / "run" / "trials.json").read_text())["analysed_by"] == "runner"


def test_a_run_that_measures_nothing_is_estimated_by_advisors_process(tmp_path):
    """--no-measure: the script's process neither asks for the recording's summary nor analyses it; it notes the
    machine as torch sees it, and advisor's process makes the estimates once the run is analysed (once)."""
    import torch

    stages, run_dir, early = _profiled_early(tmp_path / "run", measure=False)
    assert stages == ["launched", "saved"]
    assert not (run_dir / "trials.json").exists()
    machine = json.loads((run_dir / "hardware.json").read_text())
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["torch_threads"] >= 1 and machine["device"] == "cpu"

    summary = analyse_run(run_dir, early.frames())
    trials = json.loads((run_dir / "trials.json").read_text())
    assert trials["measured"] is False and trials["analysed_by"] == "advisor"
    records = {r["technique"]: r for r in trials["techniques"]}
    assert records["channels_last"]["status"] == "not measured" and records["channels_last"]["estimate"]["speedup"]
    assert all(r["status"] in ("not measured", "not applicable") for r in records.values()), records
    assert summary["recommendations"] == trials["techniques"]
    written = (run_dir / "trials.json").stat().st_mtime_ns
    assert analyse_run(run_dir)["recommendations"] == trials["techniques"]
    assert (run_dir / "trials.json").stat().st_mtime_ns == written

    # made again in a process of advisor's own: no installed technique imports torch to estimate (seconds)
    (run_dir / "trials.json").unlink()
    check = ("import sys; from advisor.pipeline import analyse_run; analyse_run(sys.argv[1]); "
             "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", check, str(run_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    again = json.loads((run_dir / "trials.json").read_text())["techniques"]
    statuses = [(r["technique"], r["status"]) for r in trials["techniques"]]
    assert [(r["technique"], r["status"]) for r in again] == statuses


def test_the_run_takes_the_frames_made_while_the_child_exited(early_run, monkeypatch):
    _, run_dir, frames = early_run
    fresh = analyse_run(run_dir)

    def no_second_reading(*args):
        raise AssertionError("the trace was read again")

    monkeypatch.setattr(profile_module, "trace_frames", no_second_reading)
    taken = analyse_run(run_dir, frames)
    assert json.dumps(taken["hot_ops"]) == json.dumps(fresh["hot_ops"])
    assert taken["steps"] == fresh["steps"]
    with pytest.raises(AssertionError, match="read again"):
        analyse_run(run_dir)


def test_frames_of_another_trace_are_not_taken(early_run, monkeypatch):
    _, run_dir, frames = early_run
    trace = next((run_dir / "trace").iterdir())
    stat = trace.stat()
    calls = []
    real = profile_module.trace_frames
    monkeypatch.setattr(profile_module, "trace_frames", lambda *args: calls.append(1) or real(*args))
    try:
        os.utime(trace, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the trace as written again
        analyse_run(run_dir, frames)
    finally:
        os.utime(trace, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert calls == [1]


def test_a_runner_is_answered_when_the_analysis_cannot_be_imported(tmp_path, monkeypatch):
    """advisor's process failed to import its analysis: a runner that asks still gets an answer (an error, and it
    analyses the recording itself) instead of waiting for ever."""
    import builtins

    real_import = builtins.__import__

    def no_pipeline(name, *args, **kwargs):
        if name == "advisor.pipeline":
            raise ImportError("broken install")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pipeline)
    early = EarlyAnalysis()
    early.on_stage("launched", tmp_path)
    early.on_stage("recorded", tmp_path, {"step_detection": "optimizer"})
    assert early.frames() is None
    answer = json.loads((tmp_path / ".recording_summary.json").read_text())
    assert answer == {"error": "ImportError: broken install"}

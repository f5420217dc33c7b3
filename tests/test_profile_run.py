"""`advisor profile` end to end on small real scripts: the JSON contract, step detection, the run directory."""

import csv
import json

import pytest

from advisor.analysis.trace import load_trace
from conftest import SCRIPTS, nvidia_gpu, profile_json, run_advisor


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn")
    proc, summary = profile_json(SCRIPTS / "tiny_cnn_train.py", "--warmup", "2", "--steps", "5", "--no-measure",
                                 "--with-stack", "--", "--steps", "40", tmp_path=tmp)
    return proc, summary, tmp / "run"


def test_json_contract(cnn_run):
    proc, summary, run = cnn_run
    assert proc.returncode == 0, proc.stderr
    assert summary["run_dir"] == str(run.resolve())
    assert summary["steps"]["count"] == 5 and summary["steps"]["median_ms"] > 0
    assert summary["steps"]["detection"] == "optimizer"
    assert set(summary["breakdown"]) == {"data", "forward", "backward", "optimizer", "other"}
    assert abs(sum(part["share"] for part in summary["breakdown"].values()) - 1) < 0.02
    for op in summary["hot_ops"]:
        assert {"name", "self_time_ms", "share", "source"} <= set(op)
    assert summary["memory"]["peak_bytes"] > 0
    for name in ("torch_profiler", "psutil", "nvml", "perf"):
        status = summary["collectors"][name]
        assert isinstance(status["available"], bool) and isinstance(status["reason"], str)
    nvml = summary["collectors"]["nvml"]
    assert nvml["available"] is nvidia_gpu() and nvml["reason"], nvml
    if not nvidia_gpu():
        assert "no NVIDIA driver" in nvml["reason"] or "no GPU found" in nvml["reason"], nvml
    assert "Python stacks" in summary["collectors"]["torch_profiler"]["reason"]


def test_convolution_leads_and_points_at_the_script(cnn_run, conv_op):
    _, summary, _ = cnn_run
    top = [op["name"] for op in summary["hot_ops"][:3]]
    assert any("conv" in name for name in top), top
    conv = next(op for op in summary["hot_ops"] if op["name"] == conv_op)
    assert conv["source"].endswith("tiny_cnn_train.py:18"), "the line of `model(x)` in the script"
    assert conv["flops"] > 0 and conv["gflops_per_s"] > 0
    assert conv["shapes"].startswith("8x3x32x32")


def test_script_stopped_after_window_and_output_passes_through(cnn_run):
    proc, summary, run = cnn_run
    assert summary["outcome"] == "stopped_after_window"
    assert "trained" not in proc.stdout + proc.stderr, "the script was stopped before its end"
    assert "USDT:" not in proc.stderr and "Memory block of unknown size" not in proc.stderr
    json.loads(proc.stdout), "with --json, stdout holds only the JSON object"


def test_run_directory_layout(cnn_run):
    _, _, run = cnn_run
    meta = json.loads((run / "meta.json").read_text())
    assert meta["format"] == "advisor-run" and meta["format_version"] == 1
    assert meta["target"]["args"] == ["--steps", "40"] and meta["outcome"] == "stopped_after_window"
    with open(run / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["recorded"]) for r in rows] == [0, 0, 1, 1, 1, 1, 1]
    trace = load_trace(run / "trace" / "worker0.pt.trace.json")
    assert trace.metadata["with_stack"] == 1 and trace.base_unix_us > 0
    names = set(trace.events["name"].astype(str))
    assert {"ProfilerStep#2", "ProfilerStep#6", "advisor::forward", "advisor::backward"} <= names
    raw = json.loads((run / "trace" / "worker0.pt.trace.json").read_text())
    assert any(e.get("cat") == "python_function" for e in raw["traceEvents"]), "--with-stack records Python stacks"
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.pkl"))
    assert (run / "samples.csv").exists() and (run / "hot_ops.csv").exists()


def test_show_prints_the_same_summary(cnn_run, conv_op):
    _, summary, run = cnn_run
    proc = run_advisor("show", run, "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["hot_ops"] == summary["hot_ops"]
    text = run_advisor("show", run)
    assert conv_op in text.stdout and str(run.resolve()) in text.stdout


def test_show_reanalyses_when_summary_is_gone(cnn_run, tmp_path):
    _, summary, run = cnn_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()
    proc = run_advisor("show", copy, "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["steps"]["count"] == summary["steps"]["count"]


@pytest.mark.timing
def test_inference_steps_are_outermost_module_calls(tmp_path):
    proc, summary = profile_json(SCRIPTS / "tiny_mlp_infer.py", "--warmup", "2", "--steps", "4", "--no-measure", "--", "30",
                                 tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary["steps"]["detection"] == "module" and summary["steps"]["count"] == 4
    assert summary["breakdown"]["backward"]["ms"] == 0 and summary["breakdown"]["forward"]["share"] > 0.3


def test_explicit_advisor_step_overrides(tmp_path):
    proc, summary = profile_json(SCRIPTS / "explicit_steps.py", "--warmup", "2", "--steps", "5", "--no-measure", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary["steps"]["detection"] == "explicit" and summary["steps"]["count"] == 5
    calls = {op["name"]: op["calls"] for op in summary["hot_ops"]}
    assert calls["aten::addmm"] == 10, "two optimizer steps inside each marked step"
    trace = (tmp_path / "run" / "trace" / "worker0.pt.trace.json").read_text()
    assert '"with_stack"' not in trace and '"python_function"' not in trace, "no Python stacks without --with-stack"
    assert "Python stacks" not in summary["collectors"]["torch_profiler"]["reason"]


def test_never_stepping_script_still_reports_ops(tmp_path):
    out = tmp_path / "run"
    proc = run_advisor("profile", SCRIPTS / "never_steps.py", "--no-measure", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "No steps found" in proc.stdout
    assert "aten::mm" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["count"] == 0 and summary["hot_ops"][0]["name"] in ("aten::mm", "aten::tanh")


def test_module_target_with_arguments(tmp_path):
    proc, summary = profile_json("--warmup", "1", "--steps", "3", "--no-measure", "-m", "pkg.infer", "--", "a", "b",
                                 tmp_path=tmp_path, cwd=SCRIPTS)
    assert proc.returncode == 0, proc.stderr
    assert summary["steps"]["count"] == 3


@pytest.mark.timing
def test_data_loading_dominates_slow_loader(tmp_path):
    proc, summary = profile_json(SCRIPTS / "slow_loader_train.py", "--warmup", "2", "--steps", "5", "--no-measure", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shares = {phase: part["share"] for phase, part in summary["breakdown"].items()}
    assert max(shares, key=shares.get) == "data", shares

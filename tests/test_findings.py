"""Findings: each rule on a real run of a script making the mistake and of the same script without it
(CPU rules), or on synthetic CUDA run directories made for the purpose (GPU rules; see
tests/data/synthetic_cuda_runs/make.py)."""

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from advisor.pipeline import analyse_run
from advisor.finding import Finding
from advisor.views.summary import render_summary
from conftest import CORES, SCRIPTS, install_plugin, no_advisor_traceback, profile_json

pytestmark = pytest.mark.timing  # measured times and shares: run alone (see Makefile)

SYNTHETIC = Path(__file__).parent / "data" / "synthetic_cuda_runs"
QUICK = ("--no-measure", "--warmup", "2", "--steps", "3")
#: torch threads and DataLoader workers beyond the cores this machine lets the scripts use
OVER = CORES + 1


def _profile(tmp_path_factory, script, *script_args, options=()):
    tmp = tmp_path_factory.mktemp(script.replace(".py", ""))
    proc, summary = profile_json(*QUICK, *options, SCRIPTS / script, "--", *script_args, tmp_path=tmp)
    assert proc.returncode == 0, proc.stderr
    assert no_advisor_traceback(proc.stderr)
    assert summary["broken_plugins"] == []
    return summary


def _findings(summary) -> dict[str, dict]:
    return {f["id"]: f for f in summary["findings"]}


@pytest.fixture(scope="module")
def train_mistakes(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_train.py", "--conv-bias", "--keep-grads", "--threads", str(OVER),
                    "--workers", str(OVER))


@pytest.fixture(scope="module")
def train_clean(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_train.py", "--fused")


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_train.py", "--slow-data", "--anomaly", "--steps", "12")


@pytest.fixture(scope="module")
def infer_mistakes(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_infer.py", "--grad", "--tiny", "--threads", "1")


@pytest.fixture(scope="module")
def infer_clean(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_infer.py",
                    options=("-p", "no:findings_gpu", "--no-finding", "data_parallel"))


@pytest.fixture(scope="module")
def infer_small_batch(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_infer.py", "--small-batch")


@pytest.fixture(scope="module")
def infer_elementwise(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_infer.py", "--elementwise")


@pytest.fixture(scope="module")
def compile_breaks(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_train.py", "--compile", "breaks")


@pytest.fixture(scope="module")
def compile_clean(tmp_path_factory):
    return _profile(tmp_path_factory, "mistakes_train.py", "--compile", "clean")


@pytest.fixture(scope="module")
def memory_mistakes(tmp_path_factory):
    return _profile(tmp_path_factory, "loss_sum_train.py", "--adam", "--width", "512")


@pytest.fixture(scope="module")
def memory_clean(tmp_path_factory):
    return _profile(tmp_path_factory, "loss_sum_train.py", "--item")


# (rule id, fixture making the mistake, fixture without it, words the evidence must hold)
CPU_RULES = [
    ("conv_bias_before_batchnorm", "train_mistakes", "train_clean", ["16 channels", "mistakes_train.py:"]),
    ("zero_grad_set_to_none_false", "train_mistakes", "train_clean",
     ["aten::zero_", "per step", "iB) between steps"]),
    ("autograd_history_kept", "memory_mistakes", "memory_clean", ["per step", "a scalar made by AddBackward0"]),
    ("optimizer_state_large", "memory_mistakes", "memory_clean",
     ["of state for 1.0 MiB of parameters", "KiB of activations"]),
    ("threads_oversubscribed", "train_mistakes", "train_clean",
     [f"torch.get_num_threads() = {OVER}", f"{CORES} cores allowed", f"take turns on {CORES} cores"]),
    ("dataloader_too_many_workers", "train_mistakes", "train_clean", [f"num_workers={OVER}", f"allowed {CORES} cores"]),
    ("optimizer_for_loop", "train_mistakes", "train_clean", ["Adam(foreach=None, fused=None)", "36 parameter"]),
    ("dataloader_no_workers", "slow_data", "train_clean", ["num_workers=0", "waits"]),
    ("anomaly_detection", "slow_data", "train_clean", ["torch.is_anomaly_enabled() was True in 3 of the 3"]),
    ("inference_with_grad", "infer_mistakes", "infer_clean", ["3 of the 3 forward passes", "mistakes_infer.py:"]),
    ("overhead_bound", "infer_mistakes", "infer_clean", ["ops per step", "between ops"]),
    ("threads_idle_cores", "infer_mistakes", "infer_clean", ["torch.get_num_threads() = 1", f"{CORES} cores allowed"]),
    ("compile_graph_breaks", "compile_breaks", "compile_clean",
     ["graph break", "Data-dependent branching", "each step runs 3 compiled regions, with 0 ops per step"]),
    ("compile_recompiles", "compile_breaks", "compile_clean", ["compiled during the last 2 recorded steps"]),
    ("matmuls_below_roof", "infer_small_batch", "infer_clean",
     ["aten::addmm", "2x1024, 1024x1024", "4.2 MFLOP a call"]),
    ("memory_bound_float32", "infer_elementwise", "infer_mistakes", ["memory-bound ops on float32", "aten::gelu"]),
]


@pytest.mark.parametrize("rule, making, without, evidence", CPU_RULES, ids=[r[0] for r in CPU_RULES])
def test_cpu_rule_fires_on_the_mistake_only(request, rule, making, without, evidence):
    if rule == "threads_idle_cores" and CORES < 2:
        pytest.skip("one core allowed: one thread leaves no core idle")
    found = _findings(request.getfixturevalue(making))
    assert rule in found, f"{rule} missing; found {sorted(found)}"
    for words in evidence:
        assert words in found[rule]["evidence"], found[rule]["evidence"]
    assert found[rule]["fix"] and 0 < found[rule]["severity"] <= 1
    assert rule not in _findings(request.getfixturevalue(without))


def test_a_short_windows_cpu_time_is_read_finer_than_the_clock_tick(infer_mistakes):
    """The window of the tiny inference lasts some 20 ms on one compute thread: its CPU time is read to the
    nanosecond. Counted in os.times()' 10 ms ticks, the same run showed that thread 0.6 to 1.6 cores busy."""
    runner = json.loads((Path(infer_mistakes["run_dir"]) / "runner.json").read_text())
    ticks = runner["window_cpu_seconds"] * 100
    assert abs(ticks - round(ticks)) > 1e-6, runner["window_cpu_seconds"]
    assert infer_mistakes["utilisation"]["process_busy_cores"] <= 1.5


def test_findings_are_ranked_and_in_the_summary_json_shape(train_mistakes):
    findings = train_mistakes["findings"]
    assert [f["severity"] for f in findings] == sorted((f["severity"] for f in findings), reverse=True)
    assert all(list(f) == ["id", "title", "severity", "evidence", "fix", "technique", "measured"] for f in findings)


def test_the_settings_that_drop_findings_are_kept_with_the_run(infer_clean):
    meta = json.loads((Path(infer_clean["run_dir"]) / "meta.json").read_text())
    assert meta["settings"]["blocked_plugins"] == ["findings_gpu"]
    assert meta["settings"]["no_findings"] == ["data_parallel"]


# -- GPU rules on synthetic CUDA run directories ------------------------------------------------

def _analysed(tmp_path, name, **settings) -> dict:
    run = tmp_path / name
    shutil.copytree(SYNTHETIC / name, run)
    if settings:
        meta = json.loads((run / "meta.json").read_text())
        meta["settings"].update(settings)
        (run / "meta.json").write_text(json.dumps(meta))
    return analyse_run(run)


GPU_RULES = [
    ("tf32_off", ["compute capability 8", "'highest'", "train.py:30"]),
    ("cudnn_benchmark_off", ["cudnn.benchmark is False", "the same in every recorded step"]),
    ("matmul_dims_not_multiple_of_8", ["1000x1003", "train.py:30"]),
    ("gpu_low_utilisation", ["busy 43%"]),
    ("gpu_memory_high", ["cuda:0 peaked at 95%"]),
    ("data_parallel", ["nn.DataParallel over 2 GPUs", "train.py:30"]),
    ("host_device_sync", ["1.0 synchronisations per step", "cudaStreamSynchronize", "aten::item"]),
    ("host_to_device_copies", ["1.0 host→device copies per step inside the forward", "aten::to"]),
    ("dataloader_pin_memory", ["pin_memory=False", "pageable"]),
    ("deterministic_algorithms", ["3 of the 3 recorded steps", "aten::convolution_backward"]),
    ("cuda_launch_blocking", ["CUDA_LAUNCH_BLOCKING was set", "kernel launches per step"]),
    ("optimizer_for_loop", ["Adam(foreach=False, fused=None) on cuda"]),
    ("gpu_low_mfu", ["MFU 0.6%", "19.5 TFLOP/s measured on this GPU in float32", "6 gaps per step"]),
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("synthetic")
    return {name: _analysed(tmp, name) for name in ("mistakes", "clean", "tiny_kernels")}


@pytest.mark.parametrize("rule, evidence", GPU_RULES, ids=[r[0] for r in GPU_RULES])
def test_gpu_rule_on_synthetic_cuda_runs(synthetic, rule, evidence):
    found = _findings(synthetic["mistakes"])
    assert rule in found, f"{rule} missing; found {sorted(found)}"
    for words in evidence:
        assert words in found[rule]["evidence"], found[rule]["evidence"]
    assert rule not in _findings(synthetic["clean"])


def test_launch_bound_gpu_step_is_overhead_bound(synthetic):
    found = _findings(synthetic["tiny_kernels"])
    assert "300 kernels per step averaging 4.0 µs" in found["overhead_bound"]["evidence"]
    assert found["overhead_bound"]["technique"] == "compile"
    assert "overhead_bound" not in _findings(synthetic["mistakes"])
    assert synthetic["clean"]["findings"] == [] and synthetic["clean"]["broken_plugins"] == []


def test_findings_dropped_by_id_or_blocked_by_module(tmp_path):
    summary = _analysed(tmp_path, "mistakes", blocked_plugins=["findings_gpu"], no_findings=["host_device_sync"])
    found = _findings(summary)
    assert "host_device_sync" not in found and "tf32_off" not in found and "data_parallel" not in found
    assert "host_to_device_copies" in found  # the rest of findings_sync still runs


def test_a_broken_findings_plugin_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "raising_rule", "from advisor.hookspecs import hookimpl\n"
                   "@hookimpl\ndef advisor_findings(run):\n    raise ValueError('no idea')\n")
    install_plugin(site, "wrong_type_rule", "from advisor.hookspecs import hookimpl\n"
                   "@hookimpl\ndef advisor_findings(run):\n    return ['not a finding']\n")
    monkeypatch.syspath_prepend(str(site))
    summary = _analysed(tmp_path, "mistakes")
    broken = {b["plugin"]: b["error"] for b in summary["broken_plugins"]}
    assert broken == {"raising_rule": "ValueError: no idea", "wrong_type_rule": "returned str, not a Finding"}
    assert "tf32_off" in _findings(summary)


def test_measured_effect_comes_from_the_linked_technique(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "linked_rule", "from advisor.hookspecs import hookimpl\nfrom advisor.finding import Finding\n"
                   "@hookimpl\ndef advisor_findings(run):\n"
                   "    return [Finding('linked', 'Linked', 'seen', 0.5, 'fix()', technique='dtype')]\n")
    monkeypatch.syspath_prepend(str(site))
    run = tmp_path / "mistakes"
    shutil.copytree(SYNTHETIC / "mistakes", run)
    (run / "trials.json").write_text(json.dumps({"techniques": [
        {"technique": "dtype", "measured": {"speedup": 1.8, "spread": 0.05, "projected_speedup": 1.4}}]}))
    linked = _findings(analyse_run(run))["linked"]
    assert linked["measured"] == {"by": "technique dtype", "speedup": 1.8, "spread": 0.05, "whole_step_speedup": 1.4}


def test_terminal_summary_shows_the_top_findings_verbatim(synthetic):
    summary = dict(synthetic["mistakes"])
    summary["findings"] = [Finding("odd", "Odd [bold]title[/bold]", "at [red]x.py:3[/red]", 0.99, "f()").to_json(),
                           *summary["findings"]]
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(render_summary(summary))
    text = out.getvalue()
    assert "Findings" in text and "Odd [bold]title[/bold]" in text and "at [red]x.py:3[/red]" in text
    assert "GPU memory is nearly full" in text
    assert "more; `--json` has every finding" in text


def test_advisor_itself_makes_a_compiled_model_recompile_nothing(compile_clean):
    """advisor's labels switch on with the window; torch.compile must not guard on them (it once did:
    a recompilation in the first recorded step, a slow step and a trace 40 times larger)."""
    facts = json.loads((Path(compile_clean["run_dir"]) / "facts.json").read_text())
    assert facts["compile"]["end"]["graphs"] == 1, "one graph compiled in the whole run, none again in the window"


def test_memory_near_limit_on_a_real_run_with_the_machines_memory_faked_smaller(memory_clean):
    """This shared machine cannot be filled: the run's own peak RSS is kept, the machine's memory is faked to 95 %
    above it."""
    import pandas as pd

    from advisor.finding import RunFacts
    from advisor.findings.memory import memory_near_limit

    def facts(memory):
        return RunFacts({**memory_clean, "memory": memory}, pd.DataFrame(), pd.DataFrame(), {}, {}, {}, {})

    memory = {**memory_clean["memory"], "min_available_bytes": None}
    assert memory_near_limit(facts(memory)) is None
    found = memory_near_limit(facts({**memory, "system_memory_bytes": int(memory["peak_rss_bytes"] / 0.95)}))
    assert found.id == "memory_near_limit" and found.severity == pytest.approx(0.95, abs=0.01)
    assert "a step allocates" in found.evidence and "at its peak" in found.evidence

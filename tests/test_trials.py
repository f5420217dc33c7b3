"""Trials through the real CLI: recommendations measured on real workloads; broken technique plugins
(raising, hanging past the budget, returning the wrong type) reported while the others go on."""

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from advisor.technique import Benchmark, Context, DoesNotApply, Estimate, Technique, Verdict
from advisor.techniques.dtype import Autocast
from advisor.ranking import family, pairs_worth_measuring, project
from advisor.trials import hardware, measure, trial
from conftest import AVX2_ONLY, EXAMPLES, SCRIPTS, bf16_missing, install_plugin, profile_json

BROKEN = textwrap.dedent('''
    import time

    from advisor.hookspecs import hookimpl
    from advisor.technique import Estimate, Technique, Verdict


    class Raises(Technique):
        name = "raises"

        def applies_to(self, context):
            raise RuntimeError("plugin bug")


    class Hangs(Technique):
        name = "hangs"

        def applies_to(self, context):
            return Verdict(True, "always")

        def estimate(self, context):
            return Estimate(speedup=2.0, basis="wishful")

        def apply(self, workload):
            time.sleep(600)


    class Malformed(Technique):
        name = "malformed"

        def applies_to(self, context):
            return True


    @hookimpl
    def advisor_techniques(config):
        return [Raises(), Hangs(), Malformed(), "not a technique"]
''')


def test_measure_interleaves_and_takes_the_median_ratio():
    calls = []
    ticks = itertools.count()
    clock = lambda: next(ticks)  # noqa: E731 - every call of a step function advances the clock by 1

    def a():
        calls.append("a")

    def b():
        calls.append("b")
        next(ticks)  # b takes twice as long as a

    result = measure(a, b, pairs=4, warmup=1, clock=clock)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"], "warm-up, then A B / B A alternating"
    assert result.speedup == pytest.approx(0.5) and result.spread == 0 and result.pairs == 4
    assert measure(a, b, pairs=2, warmup=1, clock=clock, variant_scale=2.0).speedup == pytest.approx(1.0)


def test_short_steps_are_timed_in_more_pairs_until_the_timing_is_long_enough():
    ticks = itertools.count()
    clock = lambda: next(ticks) / 1000  # noqa: E731 - a call takes 1 ms

    def step():
        pass

    assert measure(step, step, pairs=4, warmup=1, clock=clock, min_seconds=0.1).pairs == 50, "2 ms a pair"
    assert measure(step, step, pairs=4, warmup=1, clock=clock, min_seconds=0.1, max_pairs=20).pairs == 20
    assert measure(step, step, pairs=4, warmup=1, clock=clock, min_seconds=0.001).pairs == 4
    assert measure(step, step, pairs=3, warmup=1, clock=clock, min_seconds=0).pairs == 4, "whole A B / B A rounds"


def test_families():
    assert family("batch_size_x4") == family("batch_size_x2") == "batch_size"
    assert family("prune_structured_50") == "prune_structured" and family("dtype") == "dtype"


@pytest.fixture(scope="module")
def cnn_summary(tmp_path_factory):
    proc, summary = profile_json(SCRIPTS / "tiny_cnn_train.py", "--warmup", "2", "--steps", "3",
                                 "--techniques", "dtype,channels_last", "--", "--steps", "40",
                                 tmp_path=tmp_path_factory.mktemp("cnn"))
    assert proc.returncode == 0, proc.stderr
    return summary


@pytest.fixture(scope="module")
def cnn_recommendations(cnn_summary):
    return {r["technique"]: r for r in cnn_summary["recommendations"]}


def _measured_on_the_cnn(r):
    assert r["applies"] is True and r["reason"] and r["snippet"]
    assert r["estimate"]["speedup"] > 0 and r["estimate"]["basis"]
    m = r["measured"]
    assert m["speedup"] > 0 and 10 <= m["pairs"] <= 100 and m["spread"] >= 0
    assert m["quality"]["output_rel_error"] is not None and m["quality"]["grad_rel_error"] is not None
    assert m["peak_bytes"] > 0 and m["baseline_peak_bytes"] > 0, "the step's peak memory, measured on the CPU too"


@pytest.mark.timing  # measured speedups: run alone (see Makefile)
def test_cnn_gets_measured_channels_last(cnn_recommendations):
    _measured_on_the_cnn(cnn_recommendations["channels_last"])
    assert cnn_recommendations["channels_last"]["measured"]["quality"]["output_rel_error"] < 1e-4


def _cites_the_measured_ratios(r, summary):
    """The dtype estimate rests on the bf16/fp32 rates measured on this machine's kernels (the run's peaks)."""
    peaks = summary["hardware"]["peaks"]
    matmul = peaks["flops_per_s"]["bfloat16"] / peaks["flops_per_s"]["float32"]
    conv = peaks["conv_flops_per_s"]["bfloat16"] / peaks["conv_flops_per_s"]["float32"]
    basis = r["estimate"]["basis"]
    assert f"{matmul:.2f}x the float32 rate for matmuls" in basis and f"{conv:.2f}x the float32 rate for " \
        "convolutions" in basis and "measured on this machine" in basis, basis
    return conv


@pytest.mark.timing
@pytest.mark.skipif(bf16_missing() is not None, reason=f"no bf16 instructions for torch here: {bf16_missing()} "
                    "(test_dtype_estimates_and_measures_a_slowdown_without_bf16 checks this side)")
def test_cnn_gets_measured_dtype_where_torch_has_bf16(cnn_summary, cnn_recommendations):
    r = cnn_recommendations["dtype"]
    _measured_on_the_cnn(r)
    assert "bf16 on this CPU" in r["reason"], r["reason"]
    _cites_the_measured_ratios(r, cnn_summary)
    assert 1e-5 < r["measured"]["quality"]["output_rel_error"] < 0.1


@pytest.mark.timing
def test_dtype_estimates_and_measures_a_slowdown_without_bf16(cnn_summary, tmp_path):
    """On this machine with torch as on an AVX2-only CPU (AVX2_ONLY: a no-op on such a CPU), and where torch has
    no bf16 instructions, in the plain run too: bf16 is emulated, measured slower than fp32 on the machine's own
    kernels, and so estimated, then measured, as a slowdown (it used to be skipped as not applicable)."""
    proc, summary = profile_json(SCRIPTS / "tiny_cnn_train.py", "--warmup", "2", "--steps", "3", "--techniques",
                                 "dtype", "--", "--steps", "40", tmp_path=tmp_path, env={**os.environ, **AVX2_ONLY})
    assert proc.returncode == 0, proc.stderr
    runs = [summary] + ([cnn_summary] if bf16_missing() is not None else [])
    for run in runs:
        r = next(r for r in run["recommendations"] if r["technique"] == "dtype")
        assert r["applies"] is True and r["status"] == "measured", r
        assert "no bf16 instructions torch can use (capability " in r["reason"] and "emulated" in r["reason"]
        assert _cites_the_measured_ratios(r, run) < 1 and r["estimate"]["speedup"] < 1, r["estimate"]
        assert r["measured"]["speedup"] < 1 and r["verdict"] == "no gain", r["measured"]
    avx2 = next(r for r in summary["recommendations"] if r["technique"] == "dtype")
    assert "(capability AVX2, ONEDNN_MAX_CPU_ISA=AVX2)" in avx2["reason"], avx2["reason"]


@pytest.mark.timing
def test_cnn_roofline_against_the_machines_peaks(cnn_summary):
    peaks, roof = cnn_summary["hardware"]["peaks"], cnn_summary["roofline"]
    assert peaks["device"] == "cpu" and peaks["flops_per_s"]["float32"] > 0 and peaks["bytes_per_s"] > 0
    assert peaks["measured_at"] and peaks["how"] and peaks["source"] in ("measured", "cache")
    assert cnn_summary["mfu"] == roof["mfu"] > 0 and roof["model_flops_per_step"] > 0
    assert roof["mfu"] == pytest.approx(roof["achieved_flops_per_s"] / roof["peak_flops_per_s"])
    assert sum(roof["bound_shares"].values()) <= 1.0 + 1e-6
    convs = [op for op in cnn_summary["hot_ops"] if "conv" in op["name"] and op.get("flops")]
    assert convs and all(op["bytes"] > 0 and op["intensity"] > 0 and op["attainable_flops_per_s"] > 0
                         and op["roofline_fraction"] > 0 and op["bound"] in ("compute", "memory", "overhead")
                         for op in convs)


_HARDWARE = "import json; from advisor.trials import hardware; print(json.dumps({**hardware(None), 'cpu_flags': []}))"


@pytest.mark.parametrize("env", [{}, {"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}],
                         ids=["as-is", "torch-capped", "onednn-capped"])
def test_bf16_counts_only_where_torch_uses_it(env):
    if env:  # torch reads ATEN_CPU_CAPABILITY once, at start: another process
        proc = subprocess.run([sys.executable, "-c", _HARDWARE], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})
        assert proc.returncode == 0, proc.stderr
        hw = json.loads(proc.stdout)
    else:
        hw = hardware(None)
    if env:
        assert hw["cpu_bf16"] is None, hw
    else:
        assert (hw["cpu_bf16"] is not None) is (bf16_missing() is None), (hw, bf16_missing())
    here = torch.backends.cpu.get_cpu_capability()  # ATEN_CPU_CAPABILITY can only lower it
    assert hw["cpu_capability"] == ("AVX2" if "ATEN_CPU_CAPABILITY" in env and here.startswith("AVX") else here)
    assert hw["onednn_max_cpu_isa"] == ("AVX2" if "ONEDNN_MAX_CPU_ISA" in env
                                        else (os.environ.get("ONEDNN_MAX_CPU_ISA") or "").upper() or None)
    context = Context(summary={"hot_ops": [{"name": "aten::mkldnn_convolution", "share": 0.6}]},
                      workload={"parameter_dtype": "float32"}, hardware=hw)
    verdict = Autocast().applies_to(context)
    assert verdict.applies is (hw["cpu_bf16"] is not None), verdict
    if not verdict.applies:
        assert f"capability {hw['cpu_capability']}" in verdict.reason, verdict.reason
        if hw["onednn_max_cpu_isa"]:
            assert f"ONEDNN_MAX_CPU_ISA={hw['onednn_max_cpu_isa']}" in verdict.reason, verdict.reason


@pytest.mark.timing
def test_input_bound_example_says_no_model_side_technique_helps(tmp_path):
    from advisor.views.recommendations import bottleneck_note

    proc, summary = profile_json(EXAMPLES / "input_bound_train.py", "--warmup", "2", "--steps", "3",
                                 "--no-measure", "--", "--steps", "10", "--read-latency-ms", "10",
                                 tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no model-side technique addresses this bottleneck" in bottleneck_note(summary)
    assert all(r["measured"] is None for r in summary["recommendations"])


def test_broken_technique_plugins_are_reported(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "broken_techniques", BROKEN)
    proc, summary = profile_json(SCRIPTS / "tiny_mlp_infer.py", "--warmup", "2", "--steps", "2",
                                 "--trial-budget", "3", "--", "20", tmp_path=tmp_path,
                                 env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    records = {r["technique"]: r for r in summary["recommendations"]}
    assert records["raises"]["status"] == "broken: RuntimeError: plugin bug"
    assert records["hangs"]["status"] == "over budget: stopped after 3 s"
    assert records["malformed"]["status"] == "broken: TypeError: applies_to returned bool, not Verdict"
    assert records["broken_techniques"]["status"] == "broken plugin: returned str, not a Technique"
    assert records["dtype"]["status"] in ("measured", "not applicable"), "the other techniques went on"


def _workload():
    import torch

    from advisor.technique import Workload

    model = torch.nn.Linear(4, 2).eval()
    return Workload.of_call(model, (torch.randn(3, 4),), output_grads=[None])


class _Applies(Technique):
    name = "applies"

    def applies_to(self, context):
        return Verdict(True, "always")

    def estimate(self, context):
        return Estimate(speedup=1.5, basis="test")


def test_a_technique_that_fails_on_the_model_is_a_record_not_a_crash():
    class Fails(_Applies):
        def apply(self, workload):
            raise AttributeError("'function' object has no attribute 'device'")

    class NotHere(_Applies):
        def apply(self, workload):
            raise DoesNotApply("no layer to change")

    context = Context({}, {}, {})
    failed = trial(Fails(), context, _workload(), measure_it=True)
    assert failed["status"] == "failed: AttributeError: 'function' object has no attribute 'device'"
    assert failed["estimate"]["speedup"] == 1.5 and failed["measured"] is None
    not_here = trial(NotHere(), context, _workload(), measure_it=True)
    assert (not_here["status"], not_here["applies"], not_here["reason"], not_here["estimate"]) == \
        ("not applicable", False, "no layer to change", None)


def test_own_benchmarks_are_timed_closed_and_projected_through_their_phases():
    closed = []

    class OwnTiming(_Applies):
        def benchmark(self, workload):
            return Benchmark(baseline=lambda: time.sleep(0.002), variant=lambda: None, phases=("data",),
                             quality={"output_rel_error": 0.0}, notes={"k": 1}, close=lambda: closed.append(1))

    class Hangs(OwnTiming):
        def benchmark(self, workload):
            return Benchmark(baseline=lambda: time.sleep(600), variant=lambda: None, phases=("data",),
                             close=lambda: closed.append(2))

    record = trial(OwnTiming(), Context({}, {}, {}), _workload(), measure_it=True)
    assert record["status"] == "measured" and closed == [1]
    assert record["measured"]["speedup"] > 1 and record["measured"]["notes"] == {"k": 1}
    over = trial(Hangs(), Context({}, {}, {}), _workload(), measure_it=True, budget_s=0.5)
    assert over["status"].startswith("over budget") and closed == [1, 2]
    step = {"technique": "step", "measured": {"speedup": 2.0, "speedup_low": 2.0}}
    summary = {"breakdown": {"data": {"share": 0.5}, "forward": {"share": 0.25}, "other": {"share": 0.25}}}
    project([record, step], summary, training=False)
    assert record["measured"]["step_share"] == 0.5 and step["measured"]["step_share"] == 0.25
    assert step["measured"]["projected_speedup"] == pytest.approx(1 / (0.75 + 0.125), abs=1e-4)
    assert pairs_worth_measuring([record], {"applies": OwnTiming()}) == [], "own benchmarks are not paired"

"""The compile technique: when it applies, an estimate that does not assume a win on a CPU in fp32, and a
compiled workload that runs a real training step."""

import sys

import pytest
import torch
from torch import nn

from advisor.technique import OptimizerSpec, Workload
from advisor.technique import Context
from advisor.techniques import compile as compile_technique
from advisor.trials import quality
from conftest import SCRIPTS, cxx_compiler, profile_json

pytestmark = pytest.mark.timing  # measured times and shares: run alone (see Makefile)

needs_cxx = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler ($CXX, c++, g++, clang++): Inductor "
                               "cannot build CPU kernels (test_refuses_without_a_cpp_compiler checks this side)")

# Shares like those of the CNN example on a 2-core x86 CPU (matmul/conv 61%, the rest elementwise/norm).
CNN_HOT_OPS = [{"name": "aten::convolution_backward", "share": 0.39, "calls": 60, "self_time_ms": 124.0},
               {"name": "aten::mkldnn_convolution", "share": 0.21, "calls": 60, "self_time_ms": 67.0},
               {"name": "aten::native_batch_norm", "share": 0.07, "calls": 60, "self_time_ms": 23.0},
               {"name": "aten::native_batch_norm_backward", "share": 0.04, "calls": 60, "self_time_ms": 13.0},
               {"name": "aten::clamp_min", "share": 0.024, "calls": 48, "self_time_ms": 7.6},
               {"name": "aten::threshold_backward", "share": 0.024, "calls": 52, "self_time_ms": 7.5},
               {"name": "aten::add", "share": 0.016, "calls": 212, "self_time_ms": 5.1}]


def _context(model="Sequential", training=True, hot_ops=CNN_HOT_OPS, device="cpu", captured=True) -> Context:
    return Context(summary={"hot_ops": hot_ops, "memory": {}},
                   workload={"captured": captured, "model": model if captured else None, "training": training,
                             "parameter_dtype": "float32", "batch_size": 8},
                   hardware={"cpu_flags": set(), "cuda": device == "cuda", "gpus": [], "device": device})


def test_plugin_provides_compile():
    names = [t.name for t in compile_technique.advisor_techniques(config={})]
    assert "compile" in names


@needs_cxx
@pytest.mark.skipif(sys.version_info >= (3, 14), reason="torch.compile does not support this Python")
def test_applies_with_the_measured_facts_in_the_reason():
    verdict = compile_technique.Compile().applies_to(_context())
    assert verdict.applies
    assert "13-39 s" in verdict.reason and "fp32" in verdict.reason


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="torch.compile does not support this Python")
def test_refuses_without_a_cpp_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder with no compiler in it
    monkeypatch.delenv("CXX", raising=False)
    verdict = compile_technique.Compile().applies_to(_context())
    assert not verdict.applies and "no C++ compiler found" in verdict.reason, verdict


def test_refuses_without_a_workload_or_when_already_compiled():
    assert not compile_technique.Compile().applies_to(_context(captured=False)).applies
    verdict = compile_technique.Compile().applies_to(_context(model="OptimizedModule"))
    assert not verdict.applies and "already compiled" in verdict.reason


def test_cpu_fp32_estimate_does_not_assume_a_win():
    for hot_ops in (CNN_HOT_OPS, [{"name": "aten::gelu", "share": 0.3}, {"name": "aten::addmm", "share": 0.6}], []):
        estimate = compile_technique.Compile().estimate(_context(hot_ops=hot_ops))
        assert 1.0 <= estimate.speedup <= 1.1, estimate
        assert "compil" in estimate.basis and "upper bound" in estimate.basis
    assert "reorder" in estimate.risk


@needs_cxx
def test_compiled_training_step_runs_and_matches_eager():
    """A real compile of a real training step (a few seconds with a warm Inductor cache, ~20 s cold)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))
    x = torch.randn(8, 16)
    out = model(x)
    names = [n for n, _ in model.named_parameters()]
    workload = Workload.of_call(model, (x,), training=True, output_grads=[torch.ones_like(out) / 32],
                                optimizer=OptimizerSpec(torch.optim.SGD, {"lr": 0.1}, [({}, names)]))
    variant = compile_technique.Compile().apply(workload.clone())
    assert isinstance(variant.model, nn.Sequential) and type(variant.model) is not nn.Sequential
    assert [n for n, _ in variant.model.named_parameters()] == names, "parameter names stay"
    assert type(workload.model) is nn.Sequential, "the original workload is untouched"
    report = quality(workload, variant)  # before a step changes the variant's weights
    assert report["output_rel_error"] < 1e-4 and report["grad_rel_error"] < 1e-4
    step = variant.step_function()
    assert step()[0].shape == (8, 4) and step()[0].shape == (8, 4)


def test_every_copy_compiles_anew_without_a_global_reset():
    forward = nn.Linear.forward
    fresh = compile_technique._fresh(forward)
    assert fresh.__code__ is not forward.__code__ and fresh.__code__.co_code == forward.__code__.co_code
    assert fresh.__name__ == forward.__name__ and fresh.__defaults__ == forward.__defaults__


@needs_cxx
def test_measured_through_the_command_line(tmp_path):
    """The real trial: ~10 s with a warm Inductor cache, ~20 s cold, on 2 cores."""
    proc, result = profile_json("--warmup", "2", "--steps", "3", "--techniques", "compile",
                                SCRIPTS / "tiny_mlp_infer.py", "--", "20", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [r for r in result["recommendations"] if r["technique"] == "compile"]
    # the estimate depends on how overhead-bound the ops looked in this run: bounded, and it says why
    assert record["applies"] and record["estimate"]["speedup"] <= 2.0, record
    assert "compil" in record["estimate"]["basis"]
    assert record["status"] == "measured", record
    measured = record["measured"]
    assert measured["speedup"] > 0 and measured["setup_s"] >= 0
    assert measured["quality"]["output_rel_error"] < 1e-4

"""int8_dynamic on real small models, and through the real CLI once installed."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from advisor.technique import Context, DoesNotApply, Workload
from advisor_int8 import DynamicInt8


def inference(model, x):
    model.eval()
    return Workload.of_call(model, (x,), output_grads=[None])


def relative_change(workload, variant):
    (reference,), (changed,) = workload.step_function()(), variant.step_function()()
    return ((reference - changed).norm() / reference.norm()).item()


def test_quantizes_linear_layers_of_a_copy():
    torch.manual_seed(0)
    base = inference(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)), torch.randn(16, 32))
    variant = DynamicInt8().apply(base.clone())
    assert variant.notes["layers_quantized"] == 2
    assert type(base.model[0]) is nn.Linear, "the workload given is a copy; the original stays"
    assert relative_change(base, variant) < 0.05


def test_transformer_encoder_runs_without_its_fast_path():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    base = inference(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), torch.randn(2, 8, 32))
    variant = DynamicInt8().apply(base.clone())
    assert relative_change(base, variant) < 0.05
    assert torch.backends.mha.get_fastpath_enabled(), "the setting is restored after each forward"


def test_a_model_without_linear_layers_does_not_apply():
    with pytest.raises(DoesNotApply, match="no nn.Linear"):
        DynamicInt8().apply(inference(nn.Sequential(nn.Conv1d(2, 2, 1)), torch.randn(1, 2, 4)))


def test_verdicts_say_why():
    hot = {"hot_ops": [{"name": "aten::addmm", "share": 0.6, "calls": 10, "self_time_ms": 6.0}]}
    hardware = {"device": "cpu", "cpu_flags": {"avx2"}, "quantized_engines": ["none", "x86"]}
    technique = DynamicInt8()
    assert technique.applies_to(Context(hot, {"training": False}, hardware)).applies
    no_engine = {**hardware, "quantized_engines": ["none"]}
    assert "no quantized engine" in technique.applies_to(Context(hot, {"training": False}, no_engine)).reason
    assert "trains" in technique.applies_to(Context(hot, {"training": True}, hardware)).reason
    assert "GPU" in technique.applies_to(Context(hot, {}, {"device": "cuda"})).reason
    big = technique.estimate(Context(hot, {"parameters": 100}, hardware))
    small = technique.estimate(Context({"hot_ops": [{**hot["hot_ops"][0], "self_time_ms": 0.05}]}, {}, hardware))
    assert big.speedup > 1 > small.speedup, "per-call quantization costs more than tiny layers gain"
    assert big.memory_bytes == -300 and "us a call" in big.basis


SCRIPT = textwrap.dedent("""
    import torch, torch.nn as nn
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for _ in range(12):
            model(torch.randn(4, 16, 64))
""")


def test_measured_through_the_cli(tmp_path):
    script = tmp_path / "encoder_infer.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "advisor", "profile", "--out", tmp_path / "run", "--json",
                           "--warmup", "2", "--steps", "3", "--techniques", "int8_dynamic", script],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    record = {r["technique"]: r for r in json.loads(proc.stdout)["recommendations"]}["int8_dynamic"]
    assert record["status"] == "measured", record
    assert record["measured"]["speedup"] > 0 and record["measured"]["notes"]["layers_quantized"] == 2
    assert 0 < record["measured"]["quality"]["output_rel_error"] < 0.05

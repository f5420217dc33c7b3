"""Low-rank factorisation on real small models, and through the real CLI once installed."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from advisor.technique import Context, DoesNotApply, OptimizerSpec, Workload
from advisor_lowrank import LowRank, advisor_techniques


def workload(model, x, training):
    model.train(training)
    names = [n for n, _ in model.named_parameters()]
    spec = OptimizerSpec(torch.optim.SGD, {"lr": 0.1}, [({"lr": 0.1}, names)]) if training else None
    out_grads = [torch.ones(x.shape[0], 10)] if training else [None]
    return Workload.of_call(model, (x,), training=training, output_grads=out_grads, optimizer=spec)


def wide():
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))


def test_factorises_large_layers_and_counts_parameters():
    torch.manual_seed(0)
    base = workload(wide(), torch.randn(4, 128), training=False)
    variant = LowRank(0.25).apply(base.clone())
    down, up = variant.model[0]
    assert (down.in_features, down.out_features, up.out_features) == (128, 32, 256)
    assert type(variant.model[2]) is nn.Linear, "10 output features: too small to factorise"
    notes = variant.notes
    assert notes["ranks"] == {"0": 32} and notes["layers_factorised"] == 1
    assert notes["parameters_before"] - notes["parameters_after"] == 128 * 256 - 32 * (128 + 256)
    assert 0.25 < notes["energy_kept_min"] < 1
    assert type(base.model[0]) is nn.Linear, "the workload given is a copy; the original stays"


def test_full_rank_reproduces_the_layer():
    from advisor_lowrank import _factorised

    torch.manual_seed(0)
    layer = nn.Linear(64, 96)
    pair, kept = _factorised(layer, 64)
    x = torch.randn(3, 64)
    assert kept == pytest.approx(1.0) and torch.allclose(pair(x), layer(x), atol=1e-5)


def test_training_steps_update_the_factors():
    torch.manual_seed(0)
    variant = LowRank(0.1).apply(workload(wide(), torch.randn(4, 128), training=True).clone())
    assert variant.optimizer.groups[0][1][:3] == ["0.0.weight", "0.1.weight", "0.1.bias"]
    before = variant.model[0][0].weight.detach().clone()
    variant.step_function()()
    assert not torch.equal(before, variant.model[0][0].weight)


def test_small_layers_do_not_apply():
    with pytest.raises(DoesNotApply, match="at least 64 features"):
        LowRank(0.25).apply(workload(nn.Linear(32, 10), torch.randn(2, 32), training=False))


def test_one_technique_per_rank_and_honest_estimates():
    assert [t.name for t in advisor_techniques({})] == ["lowrank_10", "lowrank_25"]
    busy = {"hot_ops": [{"name": "aten::addmm", "share": 0.8, "calls": 10, "self_time_ms": 10.0}]}
    tiny = {"hot_ops": [{"name": "aten::addmm", "share": 0.8, "calls": 1000, "self_time_ms": 5.0}]}
    lowrank = LowRank(0.25)
    assert lowrank.applies_to(Context(busy, {}, {})).applies
    assert not lowrank.applies_to(Context({"hot_ops": []}, {}, {})).applies
    assert lowrank.estimate(Context(busy, {}, {})).speedup > 1 > lowrank.estimate(Context(tiny, {}, {})).speedup


SCRIPT = textwrap.dedent("""
    import torch, torch.nn as nn
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256)).eval()
    with torch.no_grad():
        for _ in range(12):
            model(torch.randn(64, 256))
""")


def test_measured_per_rank_through_the_cli(tmp_path):
    script = tmp_path / "wide_infer.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "advisor", "profile", "--out", tmp_path / "run", "--json",
                           "--warmup", "2", "--steps", "3", "--techniques", "lowrank_10,lowrank_25", script],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    records = {r["technique"]: r for r in json.loads(proc.stdout)["recommendations"]}
    for name in ("lowrank_10", "lowrank_25"):
        measured = records[name]["measured"]
        assert records[name]["status"] == "measured" and measured["speedup"] > 0
        assert measured["notes"]["parameters_after"] < measured["notes"]["parameters_before"]
        assert measured["quality"]["output_rel_error"] > 0

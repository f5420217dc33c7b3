"""Pruning techniques on real small models: structured pruning removes inner units and keeps every
shape the rest of the model sees; unstructured pruning zeroes half the weights and changes no shape."""

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import EXAMPLES, ONE_THREAD, profile_json
from advisor.technique import OptimizerSpec, Workload
from advisor.technique import Context, DoesNotApply
from advisor.techniques.pruning import StructuredPruning, UnstructuredPruning, advisor_techniques
from advisor.trials import quality


def mlp():
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def conv_chain():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class Residual(nn.Module):
    """x + fc2(gelu(fc1(x))): only the hidden width of fc1/fc2 may shrink."""

    def __init__(self, width=24, hidden=40):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 24)
        self.blocks = nn.Sequential(Residual(), Residual())
        self.out = nn.Linear(24, 5)

    def forward(self, x):
        return self.out(self.blocks(self.inp(x)))


class TracedPathDiffers(nn.Module):
    """Symbolic tracing takes the ``mode is not None`` branch; the real call returns fc1's output."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x, mode=None):
        h = self.fc1(x)
        if mode is None:
            return h
        return self.fc2(torch.relu(h))


class UntraceableWrapper(nn.Module):
    """Data-dependent control flow: the whole model cannot be traced, its sub-modules are traced alone."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
        self.head = TracedPathDiffers()

    def forward(self, x):
        h = self.body(x)
        return self.head(h) if h.sum() > -1e9 else h


def workload(model, x, training, optimizer=True):
    model.train(training)
    with torch.set_grad_enabled(training):
        out = model(x)
    spec = None
    if training and optimizer:
        spec = OptimizerSpec(torch.optim.SGD, {"lr": 0.01, "momentum": 0.9},
                             [({"lr": 0.01, "momentum": 0.9}, [n for n, _ in model.named_parameters()])])
    return Workload.of_call(model, (x,), training=training,
                            output_grads=[torch.ones_like(out)] if training else [None], optimizer=spec)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def run_steps(w, n=2):
    step = w.step_function()
    return [step()[0] for _ in range(n)]


@pytest.mark.parametrize("training", [True, False])
def test_structured_mlp_removes_inner_units(training):
    torch.manual_seed(0)
    base = workload(mlp(), torch.randn(8, 32), training)
    pruned = StructuredPruning(0.5).apply(base.clone())
    m = pruned.model
    assert (m[0].out_features, m[2].in_features, m[2].out_features, m[4].in_features) == (32, 32, 24, 24)
    assert (m[0].in_features, m[4].out_features) == (32, 10)  # the model's input and output widths stay
    removed = (32 * 32 + 32) + (64 * 48 - 32 * 24 + 24) + (48 - 24) * 10
    assert n_params(base.model) - n_params(m) == removed
    assert pruned.notes["parameters_removed"] == removed
    assert pruned.notes["parameters_before"] == n_params(base.model)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in base.model.named_parameters()]
    for out in run_steps(pruned):
        assert out.shape == (8, 10)
    assert quality(base, StructuredPruning(0.5).apply(base.clone()))["output_rel_error"] is not None


def test_structured_keeps_the_largest_units_and_their_weights():
    torch.manual_seed(0)
    model = mlp()
    with torch.no_grad():
        model[0].weight[5] *= 100  # a clearly important unit
    base = workload(model, torch.randn(4, 32), training=False)
    m = StructuredPruning(0.25).apply(base.clone()).model
    kept = (m[0].weight[:, None, :] == model[0].weight[None]).all(-1).any(-1)
    assert kept.all() and m[0].out_features == 48
    assert (m[0].weight == model[0].weight[5]).all(-1).any()  # the boosted row survived


@pytest.mark.parametrize("training", [True, False])
def test_structured_conv_chain_prunes_conv_bn_conv(training):
    torch.manual_seed(0)
    base = workload(conv_chain(), torch.randn(4, 3, 16, 16), training)
    pruned = StructuredPruning(0.5).apply(base.clone())
    m = pruned.model
    assert (m[0].out_channels, m[1].num_features, m[3].in_channels) == (8, 8, 8)
    assert m[3].out_channels == 32 and m[8].in_features == 32  # conv -> pool -> flatten -> Linear is left alone
    assert m[1].running_mean.shape == (8,) and m[1].training == training
    removed = (16 - 8) * (3 * 9 + 1) + (16 - 8) * 2 + 32 * (16 - 8) * 9
    assert n_params(base.model) - n_params(m) == removed == pruned.notes["parameters_removed"]
    for out in run_steps(pruned):
        assert out.shape == (4, 10)
    report = quality(base, StructuredPruning(0.5).apply(base.clone()))
    assert report["output_rel_error"] is not None and (not training or report["grad_rel_error"] is not None)


def test_residual_blocks_keep_their_width():
    torch.manual_seed(0)
    base = workload(ResidualNet(), torch.randn(6, 16), training=True)
    pruned = StructuredPruning(0.5).apply(base.clone())
    m = pruned.model
    assert m.inp.out_features == 24 and m.out.in_features == 24  # feeds the residual stream: untouched
    for block in m.blocks:
        assert (block.fc1.in_features, block.fc1.out_features, block.fc2.in_features, block.fc2.out_features) \
            == (24, 20, 20, 24)
    assert pruned.notes["dimensions_pruned"] == 2
    for out in run_steps(pruned):
        assert out.shape == (6, 5)


def test_nothing_prunable_does_not_apply_with_the_reason():
    base = workload(nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3)), torch.randn(2, 8), True)
    with pytest.raises(DoesNotApply, match="nothing could be pruned safely in Sequential"):
        StructuredPruning(0.5).apply(base.clone())


def test_a_traced_graph_that_is_not_what_runs_is_caught_by_the_forward_check():
    base = workload(TracedPathDiffers(), torch.randn(3, 8), training=False)
    with pytest.raises(DoesNotApply, match="nothing could be pruned safely"):
        StructuredPruning(0.5).apply(base.clone())
    pruned = StructuredPruning(0.5).apply(workload(UntraceableWrapper(), torch.randn(3, 32), False).clone())
    assert pruned.model.head.fc1.out_features == 16 and pruned.model.body[0].out_features == 32  # only body's pair
    assert pruned.notes["dimensions_pruned"] == 1
    assert pruned.step_function()()[0].shape == (3, 16)



class BufferAdded(nn.Module):
    """fc1's output meets a buffer (no gradient: unseen by the autograd trace); fc3 -> fc4 is plain."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(8, 16), nn.Linear(16, 4), nn.Linear(4, 12), nn.Linear(12, 3)
        self.register_buffer("shift", torch.randn(16))

    def forward(self, x):
        return self.fc4(torch.relu(self.fc3(self.fc2(self.fc1(x) + self.shift))))


def test_transformer_feed_forward_width_is_pruned_in_3d():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
    for training in (True, False):
        pruned = StructuredPruning(0.5).apply(workload(layer, torch.randn(2, 5, 32), training).clone())
        m = pruned.model
        assert (m.linear1.out_features, m.linear2.in_features, m.linear2.out_features) == (32, 32, 32)
        assert m.self_attn.embed_dim == 32 and pruned.notes["dimensions_pruned"] == 1
        assert run_steps(pruned)[-1].shape == (2, 5, 32)


def test_a_pruned_width_the_trace_cannot_see_is_dropped_alone():
    pruned = StructuredPruning(0.5).apply(workload(BufferAdded(), torch.randn(3, 8), training=True).clone())
    m = pruned.model
    assert (m.fc1.out_features, m.fc2.in_features) == (16, 16)  # fc1 + buffer: pruning it fails the check
    assert (m.fc2.out_features, m.fc3.out_features, m.fc4.in_features) == (2, 6, 6)
    assert pruned.notes["dimensions_pruned"] == 2 and run_steps(pruned)[-1].shape == (3, 3)


def test_structured_keeps_frozen_weights_frozen_and_channels_last():
    torch.manual_seed(0)
    model = conv_chain().to(memory_format=torch.channels_last)
    model[0].weight.requires_grad_(False)
    x = torch.randn(2, 3, 16, 16).to(memory_format=torch.channels_last)
    m = StructuredPruning(0.5).apply(workload(model, x, training=True).clone()).model
    assert m[0].out_channels == 8 and not m[0].weight.requires_grad and m[3].weight.requires_grad
    for conv in (m[0], m[3]):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()

def test_unstructured_zeroes_half_and_keeps_shapes():
    torch.manual_seed(0)
    for model, x in ((mlp(), torch.randn(8, 32)), (conv_chain(), torch.randn(2, 3, 16, 16))):
        base = workload(model, x, training=True)
        pruned = UnstructuredPruning(0.5).apply(base.clone())
        before = dict(base.model.named_parameters())
        after = dict(pruned.model.named_parameters())
        assert {n: p.shape for n, p in before.items()} == {n: p.shape for n, p in after.items()}
        for module in pruned.model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                assert abs((module.weight == 0).float().mean().item() - 0.5) < 0.02
                assert not hasattr(module, "weight_orig") and not hasattr(module, "weight_mask")
        assert 0.45 < pruned.notes["weights_zeroed"] / pruned.notes["weights_in_layers"] < 0.55
        assert run_steps(pruned)[-1].shape == run_steps(base.clone())[-1].shape


def test_verdicts_and_honest_estimates():
    names = [t.name for t in advisor_techniques({})]
    assert names == ["prune_structured_25", "prune_structured_50", "prune_unstructured_50"]
    hot = Context(summary={"hot_ops": [{"name": "aten::addmm", "share": 0.6}, {"name": "aten::add", "share": 0.4}]},
                  workload={"parameters": 1000}, hardware={})
    cold = Context(summary={"hot_ops": [{"name": "aten::add", "share": 1.0}]}, workload={}, hardware={})
    s50, u50 = StructuredPruning(0.5), UnstructuredPruning(0.5)
    assert s50.applies_to(hot).applies and not s50.applies_to(cold).applies
    assert not u50.applies_to(cold).applies
    estimate = s50.estimate(hot)
    assert estimate.speedup == pytest.approx(1 / (0.4 + 0.6 / 2), abs=1e-3) and "upper bound" in estimate.basis
    assert "fine-tuning" in estimate.risk
    honest = u50.estimate(hot)
    assert honest.speedup == 1.0 and honest.memory_bytes == 0 and "dense" in honest.basis
    assert "ln_structured" in s50.snippet and "torch-pruning" in s50.snippet and "0.5" in s50.snippet
    assert "l1_unstructured" in u50.snippet and "prune.remove" in u50.snippet


def test_profile_measures_both_pruning_kinds(tmp_path):
    proc, _ = profile_json("--warmup", "2", "--steps", "3", "--techniques", "prune_structured_50,prune_unstructured_50",
                           EXAMPLES / "mlp_infer.py", "--", "--steps", "5", tmp_path=tmp_path,
                           env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    trials = {r["technique"]: r for r in json.loads((tmp_path / "run" / "trials.json").read_text())["techniques"]}
    for name in ("prune_structured_50", "prune_unstructured_50"):
        assert trials[name]["status"] == "measured", trials[name]
        assert trials[name]["measured"]["speedup"] > 0
        assert trials[name]["measured"]["quality"]["output_rel_error"] > 0
    assert trials["prune_unstructured_50"]["estimate"]["speedup"] == 1.0
    assert "upper bound" in trials["prune_structured_50"]["estimate"]["basis"]
    notes = trials["prune_structured_50"]["measured"]["notes"]
    assert 0 < notes["parameters_removed"] < notes["parameters_before"]

"""The batch_size_x2 / batch_size_x4 techniques: on real workloads built from small models, and once through
the real command line."""

import json

import pytest
import torch
from torch import nn

from advisor.peak_memory import batch_that_fits
from advisor.technique import Context, OptimizerSpec, Workload
from advisor.techniques import batch_size
from advisor.trials import quality
from conftest import SCRIPTS, profile_json

GiB = 2**30


def _cnn_workload(batch=4) -> Workload:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5))
    x = torch.randn(batch, 3, 8, 8)
    out = model(x)
    names = [n for n, _ in model.named_parameters()]
    return Workload.of_call(model, (x,), training=True, output_grads=[torch.full_like(out, 1.0 / out.numel())],
                            optimizer=OptimizerSpec(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9},
                                                    [({"lr": 0.1}, names)]))


class _LossInForward(nn.Module):
    """HF style: returns (logits, loss); the script's backward starts at the loss."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, labels, mask):
        logits = self.fc(x * mask)
        return logits, nn.functional.cross_entropy(logits, labels)


def _context(training=True, batch=4, memory=None, hot_ops=(), device="cpu", gpus=()) -> Context:
    return Context(summary={"hot_ops": list(hot_ops), "memory": memory or {}},
                   workload={"captured": True, "batch_size": batch, "parameters": 1000, "parameter_dtype": "float32",
                             "training": training},
                   hardware={"cpu_flags": set(), "cuda": device == "cuda", "gpus": list(gpus), "device": device})


def test_plugin_provides_both_factors():
    assert [t.name for t in batch_size.advisor_techniques(config={})] == ["batch_size_x2", "batch_size_x4"]


def test_apply_repeats_inputs_and_output_grads_and_scales_throughput():
    workload = _cnn_workload(batch=4)
    grads_before = workload.output_grads[0].clone()
    doubled = batch_size.BatchSize(2).apply(workload.clone())
    assert doubled.args[0].shape == (8, 3, 8, 8) and doubled.batch_scale == 2
    assert torch.equal(doubled.args[0][4:], workload.args[0])
    assert doubled.output_grads[0].shape == (8, 5)
    assert torch.equal(workload.output_grads[0], grads_before), "the original workload is untouched"
    (out,) = doubled.step_function()()
    assert out.shape == (8, 5)
    # The same samples twice: the first half of the outputs and the gradients divided by 2 match the captured step.
    report = quality(workload, batch_size.BatchSize(2).apply(workload.clone()))
    assert report["output_rel_error"] < 1e-5 and report["grad_rel_error"] < 1e-5

    quadrupled = batch_size.BatchSize(4).apply(workload.clone())
    assert quadrupled.args[0].shape[0] == 16 and quadrupled.batch_scale == 4
    assert quadrupled.step_function()()[0].shape == (16, 5)


def test_scalar_loss_gradient_and_non_batch_inputs_stay():
    torch.manual_seed(0)
    model = _LossInForward()
    x, labels, mask = torch.randn(4, 6), torch.randint(0, 3, (4,)), torch.ones(6)
    logits, loss = model(x, labels, mask=mask)
    workload = Workload.of_call(model, (x, labels), {"mask": mask}, training=True,
                                output_grads=[None, torch.tensor(1.0)])
    variant = batch_size.BatchSize(2).apply(workload.clone())
    assert variant.args[0].shape == (8, 6) and variant.args[1].shape == (8,)
    assert variant.kwargs["mask"].shape == (6,), "a tensor without the batch dimension stays"
    # The loss (a mean) of the repeated samples is the same: its gradient is scaled so that the parameter
    # gradients are k times the captured ones, like those of k repeated samples with a per-sample gradient.
    assert variant.output_grads[1].shape == () and variant.output_grads[1].item() == 2.0
    report = quality(workload, batch_size.BatchSize(2).apply(workload.clone()))
    assert report["output_rel_error"] < 1e-5 and report["grad_rel_error"] < 1e-5
    ((logits2, loss2),) = variant.step_function()()
    assert logits2.shape == (8, 3) and torch.allclose(loss2, loss, atol=1e-6)


def test_inference_workload_step_runs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 2)).eval()
    workload = Workload.of_call(model, (torch.randn(3, 5),))
    variant = batch_size.BatchSize(4).apply(workload.clone())
    (out,) = variant.step_function()()
    assert out.shape == (12, 2) and torch.allclose(out[:3], model(workload.args[0]), atol=1e-6)


def test_applies_when_memory_is_plentiful_and_says_the_batch():
    memory = {"peak_rss_bytes": 1 * GiB, "system_memory_bytes": 64 * GiB, "min_available_bytes": 60 * GiB}
    verdict = batch_size.BatchSize(4).applies_to(_context(batch=32, memory=memory))
    assert verdict.applies and "batch 32" in verdict.reason and "linearly" in verdict.reason


def test_refuses_when_the_larger_batch_would_not_fit_in_memory():
    memory = {"peak_rss_bytes": 10 * GiB, "system_memory_bytes": 16 * GiB, "min_available_bytes": 5 * GiB}
    context = _context(memory=memory)
    verdict = batch_size.BatchSize(2).applies_to(context)
    assert not verdict.applies and "would not fit" in verdict.reason

    gpu = {"gpus": [{"gpu": 0, "peak_used_bytes": 30 * GiB, "total_bytes": 80 * GiB, "share": 0.375}]}
    gpu_context = _context(memory=gpu, device="cuda")
    assert batch_size.BatchSize(2).applies_to(gpu_context).applies  # 60 GiB fit in 80
    verdict = batch_size.BatchSize(4).applies_to(gpu_context)     # 120 GiB do not
    assert not verdict.applies and "would not fit" in verdict.reason and "GPU 0" in verdict.reason


def test_refuses_without_a_batch_dimension():
    for context in (_context(batch=None), _context(batch=0)):
        verdict = batch_size.BatchSize(2).applies_to(context)
        assert not verdict.applies and "batch" in verdict.reason


def test_estimate_is_modest_and_says_its_basis_and_risk():
    hot_ops = [{"name": "aten::addmm", "self_time_ms": 50.0, "calls": 100, "share": 0.5},     # 500 us per call
               {"name": "aten::gelu", "self_time_ms": 1.0, "calls": 100, "share": 0.2},      # 10 us per call
               {"name": "aten::add", "self_time_ms": 2.0, "calls": 100, "share": 0.1}]       # 20 us per call
    memory = {"peak_rss_bytes": 1 * GiB, "system_memory_bytes": 64 * GiB}
    estimate = batch_size.BatchSize(2).estimate(_context(hot_ops=hot_ops, memory=memory))
    assert 1.0 < estimate.speedup < 2.0
    assert "30%" in estimate.basis and "Amdahl" in estimate.basis
    assert estimate.memory_bytes == 1 * GiB - 4000
    assert "learning rate" in estimate.risk and "linear scaling" in estimate.risk and "loss" in estimate.risk
    assert batch_size.BatchSize(2).estimate(_context(training=False)).risk.startswith("none")
    assert "DataLoader(" in batch_size.BatchSize(2).snippet and "lr" in batch_size.BatchSize(2).snippet


def test_measured_through_the_command_line(tmp_path):
    proc, result = profile_json("--warmup", "2", "--steps", "3", "--techniques", "batch_size_x2",
                                SCRIPTS / "tiny_cnn_train.py", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [r for r in result["recommendations"] if r["technique"] == "batch_size_x2"]
    assert record["applies"] and "batch 8" in record["reason"], record
    assert record["status"] == "measured", record
    measured = record["measured"]
    assert measured["speedup"] > 0 and measured["spread"] is not None
    assert measured["quality"]["grad_rel_error"] < 1e-4
    assert record["estimate"]["speedup"] >= 1.0
    assert "per sample" in record["reason"] and "the largest batch that fits is" in record["reason"], record["reason"]
    fits = json.loads((tmp_path / "run" / "trials.json").read_text())["batch_that_fits"]
    assert fits["batch_size"] == 8 and fits["largest_batch"] > 16 and fits["margin"] == 0.9
    # the measured bytes per sample against the measured growth of the doubled batch's peak
    assert measured["memory_bytes"] == pytest.approx(8 * fits["per_sample_bytes"], rel=0.25)


def test_the_batch_that_fits_is_measured_and_a_batch_beyond_it_refused():
    """Measured on a real step; the headroom is then set smaller than this machine's (it cannot be filled)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 2))
    workload = Workload.of_call(model, (torch.randn(16, 64),), training=True, output_grads=[torch.ones(16, 2)])
    fits = batch_that_fits(workload)
    activations = 2 * 512 * 4  # the hidden layer's output and its GELU, float32, per sample
    assert activations / 2 <= fits["per_sample_bytes"] <= 3 * activations, fits
    assert fits["largest_batch"] == 16 + int(fits["headroom_bytes"] * 0.9 / fits["per_sample_bytes"])
    tight = {**fits, "headroom_bytes": 20 * fits["per_sample_bytes"], "largest_batch": 16 + 18}
    context = _context(batch=16)
    context.workload["batch_that_fits"] = tight
    assert batch_size.BatchSize(2).applies_to(context).applies
    refused = batch_size.BatchSize(4).applies_to(context)
    assert not refused.applies and "64 would not fit" in refused.reason and "largest batch that fits is 34" \
        in refused.reason, refused.reason
    assert batch_size.BatchSize(2).estimate(context).memory_bytes == 16 * fits["per_sample_bytes"]

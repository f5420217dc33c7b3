"""Activation checkpointing (advisor.techniques.checkpointing) on the memory-heavy example: the peak is really
lower, outputs and gradients are unchanged, and the run reports the memory saved and the time it costs."""

import sys

import pytest
import torch

from advisor.peak_memory import step_peak
from advisor.technique import Context, Workload
from advisor.techniques.checkpointing import Checkpointing
from advisor.trials import quality
from advisor.workload import describe
from conftest import EXAMPLES, profile_json

sys.path.insert(0, str(EXAMPLES))
from long_sequence_train import DeepMLP, random_batch  # noqa: E402

#: checkpointing every block must lower the replayed step's peak by at least this share (measured: ~45 %)
SAVED_AT_LEAST = 0.25


@pytest.fixture(scope="module")
def workload():
    torch.manual_seed(0)
    model = DeepMLP(features=16, width=32, depth=6).train()
    x, _ = random_batch(4, 128, 16, torch.Generator().manual_seed(0))
    return Workload.of_call(model, (x,), training=True, output_grads=[torch.randn(4, 128)])


@pytest.mark.parametrize("selective", [False, True], ids=["full", "selective"])
def test_checkpointing_lowers_the_peak_and_changes_no_number(workload, selective):
    variant = Checkpointing(selective).apply(workload.clone())
    assert variant.notes["checkpointed"] == "6 x Block in blocks"
    assert [n for n, _ in variant.model.named_parameters()] == [n for n, _ in workload.model.named_parameters()]
    checked = quality(workload, variant)
    assert checked["output_rel_error"] == 0.0 and checked["grad_rel_error"] < 1e-6
    baseline_peak, variant_peak = step_peak(workload.clone()), step_peak(variant.clone())
    assert variant_peak < baseline_peak * (1 - (SAVED_AT_LEAST if not selective else 0.05)), \
        (variant_peak, baseline_peak)


def test_snippet_names_the_scripts_own_blocks_and_inference_does_not_apply(workload):
    description = describe(workload)
    summary = {"memory": {"profiler_peak_bytes": {"cpu": 64 * 2**20}}, "breakdown": {"forward": {"share": 0.3}}}
    context = Context(summary, description, {})
    technique = Checkpointing(selective=False)
    assert technique.applies_to(context).applies
    assert "for block in self.blocks:" in technique.snippet_for(context)
    assert "DeepMLP.forward" in technique.snippet_for(context) and "6 x Block" in technique.snippet_for(context)
    estimate = technique.estimate(context)
    assert estimate.memory_bytes < 0 and estimate.speedup == pytest.approx(1 / 1.3, abs=1e-3)
    assert not technique.applies_to(Context(summary, {**description, "training": False}, {})).applies
    small = {"memory": {"profiler_peak_bytes": {"cpu": 1024}}}
    assert "do not dominate" in technique.applies_to(Context(small, description, {})).reason


def test_the_example_gets_memory_saved_and_time_added_measured(tmp_path):
    proc, summary = profile_json(EXAMPLES / "long_sequence_train.py", "--warmup", "2", "--steps", "3",
                                 "--techniques", "activation_checkpointing", "--",
                                 "--steps", "20", "--seq-len", "96", "--depth", "4", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = next(r for r in summary["recommendations"] if r["technique"] == "activation_checkpointing")
    measured = record["measured"]
    assert record["status"] == "measured" and record["estimate"]["memory_bytes"] < 0
    assert measured["peak_bytes"] < measured["baseline_peak_bytes"] * (1 - SAVED_AT_LEAST)
    assert measured["memory_bytes"] == measured["peak_bytes"] - measured["baseline_peak_bytes"]
    assert measured["variant_ms"] > 0 and measured["quality"]["grad_rel_error"] < 1e-6
    assert "for block in self.blocks:" in record["snippet"]
    assert "optimizer_state_large" not in {f["id"] for f in summary["findings"]}, "Adam's state is small beside them"

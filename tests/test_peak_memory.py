"""The replayed step's peak memory, measured on the CPU from the profiler's allocation events, for the baseline
and the variant of every trial (advisor.peak_memory)."""

import pytest
import torch

from advisor.peak_memory import allocation_peak, resident_bytes, step_peak
from advisor.technique import Benchmark, Context, Estimate, Technique, Verdict, Workload
from advisor.trials import trial

MiB = 2**20


class _HoldsMore(torch.nn.Module):
    """The model, plus a buffer of ``extra`` bytes alive during its forward (as a bigger activation would be)."""

    def __init__(self, model, extra):
        super().__init__()
        self.model, self.extra = model, extra

    def forward(self, x):
        held = torch.ones(self.extra // 4)
        return self.model(x) + held[:1]


class _Wider(Technique):
    name = "wider"

    def applies_to(self, context):
        return Verdict(True, "always")

    def estimate(self, context):
        return Estimate(speedup=1.0, basis="test")

    def apply(self, workload):
        workload.model = _HoldsMore(workload.model, 8 * MiB)
        return workload


def _training_workload():
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))
    return Workload.of_call(model, (torch.randn(32, 64),), training=True, output_grads=[torch.ones(32, 8)])


def test_allocation_peak_sees_what_is_allocated_and_freed_inside():
    def run():
        a = torch.ones(MiB)  # 4 MiB
        del a
        b = torch.ones(MiB // 2)  # 2 MiB, after the first was freed
        return b
    assert 4 * MiB <= allocation_peak(run) < 5 * MiB


def test_a_step_peak_counts_what_the_step_holds_and_allocates():
    workload = _training_workload()
    parameters = sum(p.numel() * 4 for p in workload.model.parameters())
    held = resident_bytes(workload)
    assert held == parameters + 32 * 64 * 4, "parameters and inputs"
    assert step_peak(workload) >= held + parameters + 32 * 256 * 4, "gradients and activations come on top"
    assert resident_bytes(workload) == held + parameters, "the gradients stay after the step"


def test_every_measured_trial_has_both_peaks_and_their_change():
    record = trial(_Wider(), Context({}, {}, {}), _training_workload(), measure_it=True)
    measured = record["measured"]
    assert record["status"] == "measured", record["status"]
    assert measured["peak_bytes"] - measured["baseline_peak_bytes"] == measured["memory_bytes"]
    assert measured["memory_bytes"] == pytest.approx(8 * MiB, rel=0.02) and measured["memory_source"]


def test_own_benchmarks_have_their_peaks_in_this_process():
    class Loads(_Wider):
        def benchmark(self, workload):
            return Benchmark(baseline=lambda: torch.ones(MiB // 4), variant=lambda: torch.ones(MiB), phases=("data",))

    measured = trial(Loads(), Context({}, {}, {}), _training_workload(), measure_it=True)["measured"]
    assert measured["memory_bytes"] == pytest.approx(3 * MiB, rel=0.05)
    assert "worker processes not counted" in measured["memory_source"]

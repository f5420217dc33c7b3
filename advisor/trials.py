"""Trials: each applicable technique applied to a copy of the captured workload and timed against an
unchanged copy, interleaved (A B A B ...), with its numerical change measured on the same inputs.

Runs in the script's process, after the profiled window; writes ``trials.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import statistics
import time
from typing import Callable

import torch

from advisor.estimates import NOT_MEASURED, checked, estimate
from advisor.peak_memory import call_peaks, step_peaks
from advisor.peaks import cpu_flags, usable_cpus
from advisor.quartiles import quartiles
from advisor.technique import Benchmark, Context, DoesNotApply, Technique
from advisor.verdict import judge
from advisor.workload import Workload, relative_error, tensor_leaves

#: at least this many interleaved pairs, and more (two at a time) until the timed runs took :data:`MIN_SECONDS`:
#: ten pairs of a 3 ms step are 60 ms of timing, where one burst of contention makes a no-op read as 1.1x
PAIRS = 10
MIN_SECONDS = 0.3
MAX_PAIRS = 100
WARMUP_STEPS = 2
BUDGET_SECONDS = 60.0


class TrialOverBudget(BaseException):
    """Raised by the budget's alarm; a BaseException so that libraries that wrap errors (Inductor) let it through."""


@dataclasses.dataclass
class Measurement:
    """Step-time ratio baseline / variant: the median over interleaved pairs and its spread."""

    speedup: float
    spread: float
    #: the lower quartile of the pair ratios: what a cautious reader may count on
    speedup_low: float
    pairs: int
    baseline_ms: float
    variant_ms: float
    #: the first call of the variant beyond its steady step time (compilation, autotuning, caches)
    setup_s: float = 0.0
    #: steps after which the setup has paid for itself (None when the variant is not faster)
    break_even_steps: float | None = None

    def to_json(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
                for k, v in dataclasses.asdict(self).items()}


def measure(baseline: Callable[[], object], variant: Callable[[], object], pairs: int = PAIRS,
            warmup: int = WARMUP_STEPS, clock: Callable[[], float] = time.perf_counter,
            variant_scale: float = 1.0, min_seconds: float = MIN_SECONDS, max_pairs: int = MAX_PAIRS) -> Measurement:
    """Time ``baseline`` and ``variant`` in alternating order (A B, then B A, ...) after ``warmup`` calls of each:
    ``pairs`` pairs, then two more at a time until the timed calls took ``min_seconds`` (at most ``max_pairs``).

    ``variant_scale`` is how many more samples a variant step processes: speedups compare throughput.
    """
    first_variant = 0.0
    for i in range(max(warmup, 1)):
        baseline()
        start = clock()
        variant()
        if i == 0:
            first_variant = clock() - start
    times: dict[str, list[float]] = {"a": [], "b": []}
    i = 0
    # past ``pairs``, an odd count finishes its A B / B A round
    while i < pairs or i % 2 or (i < max_pairs and sum(times["a"]) + sum(times["b"]) < min_seconds):
        order = (("a", baseline), ("b", variant)) if i % 2 == 0 else (("b", variant), ("a", baseline))
        for key, fn in order:
            start = clock()
            fn()
            times[key].append(clock() - start)
        i += 1
    ratios = [variant_scale * a / b for a, b in zip(times["a"], times["b"]) if b > 0]
    q1, median, q3 = quartiles(ratios)
    a_ms, b_ms = 1000 * statistics.median(times["a"]), 1000 * statistics.median(times["b"])
    setup_s = max(first_variant - b_ms / 1000, 0.0)
    saved_per_step_s = (a_ms * variant_scale - b_ms) / 1000 / variant_scale
    return Measurement(speedup=median, spread=(q3 - q1) / median if median else math.nan, speedup_low=q1,
                       pairs=len(ratios),
                       baseline_ms=a_ms, variant_ms=b_ms, setup_s=setup_s,
                       break_even_steps=setup_s / saved_per_step_s if saved_per_step_s > 0 else None)


def quality(reference: Workload, variant: Workload) -> dict:
    """Relative change of the outputs and (training) of the parameter gradients, on the first captured
    step's inputs and RNG state, each model on a fresh copy.

    Gradients are compared for parameters present with the same shape in both models; one that the
    reference computes and the variant leaves out counts as zero, and ``gradients_left_out`` is the
    share of the reference's trained parameters whose gradients the variant no longer computes. A
    variant that runs k times the batch is compared on its first batch of outputs, its gradients
    divided by k."""
    (ref_out, ref_grads, ref_trained), (var_out, var_grads, var_trained) = (
        _first_step(reference), _first_step(variant))
    var_out = [_first_batch(v, r.shape) for r, v in zip(ref_out, var_out)]
    shapes_match = len(ref_out) == len(var_out) and all(v is not None for v in var_out)
    report = {"output_rel_error": relative_error(ref_out, var_out) if shapes_match else None}
    if reference.training:
        common = [n for n in ref_grads if n in var_grads and ref_grads[n].shape == var_grads[n].shape]
        report["grad_rel_error"] = relative_error([ref_grads[n] for n in common],
                                                  [var_grads[n] for n in common]) if common else None
        report["gradients_left_out"] = round(max(0.0, 1.0 - var_trained / ref_trained), 4) if ref_trained else 0.0
    return report


def _first_step(workload: Workload) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], float]:
    """Outputs, parameter gradients (None as zeros) and the trained share of the parameters after one replay
    of the first captured step on a fresh copy."""
    workload = workload.clone()
    workload.steps = workload.steps[:1]
    with torch.random.fork_rng(devices=_cuda_devices(workload)):
        outputs = tensor_leaves(workload.run_calls(0))
    params = dict(workload.model.named_parameters())
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) / workload.batch_scale
             for n, p in params.items()} if workload.training else {}
    total = sum(p.numel() for p in params.values())
    trained = sum(p.numel() for p in params.values() if p.grad is not None) / total if total else 0.0
    return outputs, grads, trained


def _first_batch(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``tensor`` cut to ``shape`` along dim 0 when it is a k-times batch of it, else None if shapes differ."""
    if tensor.shape == shape:
        return tensor
    if tensor.dim() == len(shape) and tensor.dim() > 0 and tensor.shape[1:] == shape[1:] \
            and shape[0] > 0 and tensor.shape[0] % shape[0] == 0:
        return tensor[: shape[0]]
    return None


class _Budget:
    """Raises TrialOverBudget in the main thread after ``seconds`` (SIGALRM)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        def over(signum, frame):
            raise TrialOverBudget
        self._previous = signal.signal(signal.SIGALRM, over)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        return False


def trial(technique: Technique, context: Context, workload: Workload | None, measure_it: bool,
          budget_s: float = BUDGET_SECONDS, not_reproduced: str | None = None) -> dict:
    """One technique's record: verdict, estimate, and (when it applies and ``measure_it``) the measurement.

    A technique that raises in ``applies_to`` or ``estimate`` is ``broken``; one that raises while
    applied to this workload has ``failed`` on it; :class:`DoesNotApply` makes it ``not applicable``.
    When the replay does not reproduce the script's step (``not_reproduced`` says why), only a
    technique that brings its own benchmark is measured; the others are ``not reproduced: <why>``.
    ``verdict`` (see :func:`judge`) says whether the measurement is a gain.
    """
    record = estimate(technique, context)
    if record["status"] != NOT_MEASURED or not measure_it or workload is None:
        return record
    try:
        with _Budget(budget_s), torch.random.fork_rng(devices=_cuda_devices(workload)):
            own = technique.benchmark(workload.clone())
            if own is None and not_reproduced is not None:
                record["status"] = f"not reproduced: {not_reproduced}"
                return record
            measured = _measure_step(technique, workload) if own is None else \
                _measure_benchmark(checked(own, Benchmark, "benchmark"))
        record["measured"] = measured
        record["status"] = "measured"
        record["verdict"] = judge(measured)
    except TrialOverBudget:
        record["status"] = f"over budget: stopped after {budget_s:g} s"
    except DoesNotApply as exc:
        record.update(applies=False, reason=str(exc), estimate=None, status="not applicable")
    except Exception as exc:  # failed on this workload; the others go on
        record["status"] = f"failed: {type(exc).__name__}: {exc}"
    return record


def _measure_step(technique: Technique, workload: Workload) -> dict:
    """The replayed step with the technique applied, timed against the unchanged step."""
    started = time.perf_counter()
    fresh = checked(technique.apply(workload.clone()), Workload, "apply")
    numerics = quality(workload, fresh)  # before any step changes the variant's weights
    first_use_s = time.perf_counter() - started  # includes a first compilation, if any
    variant = technique.apply(workload.clone())
    baseline = workload.clone()
    seen_baseline: list = []
    seen_variant: list = []
    measured = measure(_observed(baseline, seen_baseline), _observed(variant, seen_variant),
                       variant_scale=variant.batch_scale / workload.batch_scale).to_json()
    numerics["timed_output_rel_error"] = _timed_error([o for o, _ in seen_baseline], [o for o, _ in seen_variant])
    if workload.training:
        reference = min(share for _, share in seen_baseline)
        left_out = max(0.0, 1.0 - min(share for _, share in seen_variant) / reference) if reference else 0.0
        numerics["gradients_left_out"] = round(max(numerics.get("gradients_left_out", 0.0), left_out), 4)
    steady_s = (measured["baseline_ms"] + measured["variant_ms"]) / 1000
    if first_use_s - steady_s > measured["setup_s"]:
        measured["setup_s"] = round(first_use_s - steady_s, 4)
        saved_s = (measured["baseline_ms"] * measured["speedup"] - measured["baseline_ms"]) / 1000 \
            / measured["speedup"] if measured["speedup"] > 1 else 0
        measured["break_even_steps"] = round(measured["setup_s"] / saved_s, 1) if saved_s > 0 else None
    measured.update(step_peaks(baseline, variant))
    measured["quality"] = numerics
    measured["notes"] = dict(fresh.notes)
    return measured


def _observed(workload: Workload, seen: list) -> Callable[[], list]:
    """The workload's timed step (weights held, see :meth:`Workload.step_function`), noting after each run
    the outputs of its first model call and the share of parameters that got a gradient."""
    step = workload.step_function(hold_weights=True)

    def run():
        outputs = step()
        seen.append(([t.detach() for t in tensor_leaves(outputs[0])] if outputs else [],
                     workload.trained_share() if workload.training else 1.0))
        return outputs
    return run


def _timed_error(baseline: list[list[torch.Tensor]], variant: list[list[torch.Tensor]]) -> float | None:
    """The largest relative change between the baseline's and the variant's outputs over the timed runs,
    run by run: each pair of runs saw the same batch with the same weights, so a variant that caches or
    skips work shows here."""
    errors = []
    for ref, var in zip(baseline, variant):
        cut = [_first_batch(v, r.shape) for r, v in zip(ref, var)]
        if len(cut) == len(ref) and all(v is not None for v in cut):
            errors.append(relative_error(ref, cut))
    return round(max(errors), 6) if errors else None


def _cuda_devices(workload: Workload | None) -> list[int]:
    if workload is None:
        return []
    return sorted({p.device.index or 0 for p in workload.model.parameters() if p.is_cuda})


def _measure_benchmark(benchmark: Benchmark) -> dict:
    """A technique's own pair of callables timed interleaved; ``close`` runs however it ends."""
    try:
        measured = measure(benchmark.baseline, benchmark.variant).to_json()
        measured.update(call_peaks(benchmark.baseline, benchmark.variant))
    finally:
        if benchmark.close is not None:
            benchmark.close()
    measured.update(quality=dict(benchmark.quality), notes=dict(benchmark.notes),
                    phases=list(benchmark.phases))
    return measured


def hardware(workload: Workload | None) -> dict:
    """What the techniques may know of the machine: CPU flags, torch's CPU capability and the bf16 instructions
    torch will use, cores and torch threads, GPUs, and where the model runs."""
    flags = cpu_flags()
    # bf16 instructions count only where torch uses them: its own kernels dispatch at AVX-512 (torch's capability,
    # which ATEN_CPU_CAPABILITY can lower), and oneDNN, which runs convolutions and matmuls, is not capped below them
    # by ONEDNN_MAX_CPU_ISA (oneDNN's ISA names: AVX2, AVX512_CORE, AVX512_CORE_BF16, AVX512_CORE_AMX, ...)
    capability = torch.backends.cpu.get_cpu_capability()
    isa_cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or "").upper() or None

    def onednn_allows(*names: str) -> bool:
        return isa_cap in (None, "ALL") or any(name in isa_cap for name in names)

    cpu_bf16 = None
    if capability.startswith("AVX512"):
        if "amx_bf16" in flags and onednn_allows("AMX"):
            cpu_bf16 = "amx_bf16"
        elif "avx512_bf16" in flags and onednn_allows("BF16", "FP16", "AMX", "AVX10"):
            cpu_bf16 = "avx512_bf16"
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "compute_capability": f"{p.major}.{p.minor}", "total_memory": p.total_memory})
    on_cuda = workload is not None and any(p.is_cuda for p in workload.model.parameters())
    cores = usable_cpus()
    return {"cpu_flags": flags, "cpu_capability": capability, "onednn_max_cpu_isa": isa_cap, "cpu_bf16": cpu_bf16,
            "cuda": bool(gpus), "gpus": gpus, "device": "cuda" if on_cuda else "cpu",
            "cpu_cores": cores, "torch_threads": torch.get_num_threads(),
            "quantized_engines": list(torch.backends.quantized.supported_engines)}

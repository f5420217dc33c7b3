"""advisor plugin: int8 dynamic quantization of Linear and LSTM layers, for inference on the CPU.

Weights are stored as int8; activations are quantized on the fly at each call. Written only against
advisor's public plugin API (``advisor.hookimpl``, :mod:`advisor.technique`, the workload's own methods).
"""

from __future__ import annotations

import contextlib

from advisor.hookspecs import hookimpl
from advisor.technique import Context, DoesNotApply, Estimate, Technique, Verdict, amdahl

#: the ops whose time int8 kernels replace (Linear's addmm/mm/linear, LSTM's cells)
LAYER_OPS = ("addmm", "aten::mm", "aten::linear", "lstm")
#: int8 GEMM against fp32 GEMM, with the instructions the CPU has (kernel speed, before quantizing activations)
_VNNI, _AVX2 = 2.5, 1.5
#: what each quantized call adds: finding the activations' range and quantizing them (about 8 us measured
#: per call on 16 x 64 activations, 2-core CPU)
CALL_OVERHEAD_US = 8.0
MIN_SHARE = 0.05


def _kernel_speedup(flags: set) -> tuple[float, str]:
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return _VNNI, "int8 dot-product instructions (VNNI) on this CPU"
    return _AVX2, "no VNNI on this CPU: int8 GEMMs through AVX2"


def _layer_ops(context: Context) -> tuple[float, float]:
    """(share of the step in Linear/LSTM ops, the mean self time of their calls in us)."""
    ops = [op for op in context.summary.get("hot_ops", []) if any(name in op["name"] for name in LAYER_OPS)]
    share = sum(op.get("share") or 0.0 for op in ops)
    calls = sum(op.get("calls") or 0 for op in ops)
    return share, (1000.0 * sum(op.get("self_time_ms") or 0.0 for op in ops) / calls if calls else 0.0)


@contextlib.contextmanager
def mha_fastpath_disabled():
    """nn.TransformerEncoder's / MultiheadAttention's fused fast path reads ``.weight.device`` of layers
    that quantization turned into packed ones, and fails (torch 2.13): run the plain path instead."""
    import torch

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def quantize(model):
    """Quantize ``model``'s Linear and LSTM layers in place; the number of layers quantized."""
    import warnings

    import torch
    import torch.nn as nn
    from torch.ao.quantization import quantize_dynamic

    before = {name for name, m in model.named_modules() if type(m) in (nn.Linear, nn.LSTM)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=torch.qint8, inplace=True)
    return sum(1 for name, m in model.named_modules() if name in before and type(m) not in (nn.Linear, nn.LSTM))


class DynamicInt8(Technique):
    name = "int8_dynamic"
    title = "Quantize Linear/LSTM layers to int8 (dynamic quantization, inference on the CPU)"
    snippet = """import torch
from torch.ao.quantization import quantize_dynamic

model_int8 = quantize_dynamic(model.eval(), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
torch.backends.mha.set_fastpath_enabled(False)   # needed for nn.TransformerEncoder / MultiheadAttention
with torch.inference_mode():
    outputs = model_int8(inputs)"""

    def applies_to(self, context: Context) -> Verdict:
        if context.workload.get("training"):
            return Verdict(False, "the captured step trains: int8 dynamic quantization is for inference")
        if context.hardware.get("device") != "cpu":
            return Verdict(False, "the model runs on a GPU: dynamic int8 kernels are CPU kernels")
        if not set(context.hardware.get("quantized_engines") or ()) - {"none"}:
            return Verdict(False, "this torch build has no quantized engine (fbgemm/x86/qnnpack)")
        share = context.share_of(*LAYER_OPS)
        if share <= MIN_SHARE:
            return Verdict(False, f"Linear/LSTM ops take {share:.0%} of the step: little to gain")
        return Verdict(True, f"inference on the CPU with {share:.0%} of the step in Linear/LSTM ops")

    def estimate(self, context: Context) -> Estimate:
        share, call_us = _layer_ops(context)
        kernel, why = _kernel_speedup(context.hardware.get("cpu_flags", set()))
        local = 1.0 / (1.0 / kernel + CALL_OVERHEAD_US / call_us) if call_us else 1.0
        params = context.workload.get("parameters")
        return Estimate(
            speedup=round(amdahl(share, local), 3),
            memory_bytes=-3 * params if params else None,
            basis=f"{share:.0%} of the step in Linear/LSTM ops (addmm/mm/linear/lstm) averaging {call_us:.0f} us "
                  f"a call: int8 kernels ~{kernel:g}x faster with {why}, plus ~{CALL_OVERHEAD_US:g} us a call to "
                  f"quantize the activations, so {local:.2f}x on those ops. Memory: at most 3 of every 4 "
                  "weight bytes",
            risk="int8 rounding of weights and activations: outputs typically change by 1e-3..1e-2 relative")

    def apply(self, workload):
        import torch.nn as nn

        count = quantize(workload.model)
        if not count:
            raise DoesNotApply("no nn.Linear or nn.LSTM layer that can be quantized in the model")
        if any(isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer)) for m in workload.model.modules()):
            workload.forward_contexts.append(mha_fastpath_disabled)
        workload.notes = {**workload.notes, "layers_quantized": count}
        return workload


@hookimpl
def advisor_techniques(config):
    return [DynamicInt8()]

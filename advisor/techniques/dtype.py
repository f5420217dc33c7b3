"""Lower precision: autocast to bfloat16 (or float16 on GPUs without bf16) for matmuls and convolutions."""

from __future__ import annotations

from advisor.hookspecs import hookimpl
from advisor.technique import Context, Estimate, Technique, Verdict, amdahl

MATMUL_OPS = ("mm", "conv", "linear", "scaled_dot_product", "baddbmm", "matmul")
# What bf16 does to the ops it touches, by the hardware it runs on (kernel speed, not the whole step).
_CPU_AMX, _CPU_AVX512_BF16, _GPU_TENSOR_CORES = 4.0, 1.8, 2.0


def _plan(context: Context) -> tuple[str | None, str, float, str]:
    """(autocast dtype or None, device type, local speedup, why)."""
    hw = context.hardware
    if hw.get("device") == "cuda":
        cc = max((float(g.get("compute_capability", "0")) for g in hw.get("gpus", [])), default=0.0)
        if cc >= 8.0:
            return "bfloat16", "cuda", _GPU_TENSOR_CORES, f"bf16 tensor cores (compute capability {cc:g})"
        if cc >= 7.0:
            return "float16", "cuda", _GPU_TENSOR_CORES, f"fp16 tensor cores (compute capability {cc:g})"
        return None, "cuda", 1.0, f"no tensor cores (compute capability {cc:g})"
    usable = hw.get("cpu_bf16")
    if usable == "amx_bf16":
        return "bfloat16", "cpu", _CPU_AMX, "AMX bf16 on this CPU"
    if usable == "avx512_bf16":
        return "bfloat16", "cpu", _CPU_AVX512_BF16, "avx512_bf16 on this CPU"
    seen = [f"capability {hw['cpu_capability']}"] if hw.get("cpu_capability") else []
    if hw.get("onednn_max_cpu_isa"):
        seen.append(f"ONEDNN_MAX_CPU_ISA={hw['onednn_max_cpu_isa']}")
    return None, "cpu", 1.0, ("this CPU has no bf16 instructions torch can use"
                              + (f" ({', '.join(seen)})" if seen else "") + ": bf16 would be emulated")


def measured_ratios(context: Context) -> tuple[str, dict[str, float]] | None:
    """(low-precision dtype, its rate over fp32's per kernel: ``matmul``, ``conv``) from the machine's measured
    peaks (``context.hardware["peaks"]``), or None where they were not measured on the device the model runs on."""
    peaks = context.hardware.get("peaks") or {}
    if peaks.get("device", "cpu") != (context.hardware.get("device") or "cpu"):
        return None
    matmul, conv = peaks.get("flops_per_s") or {}, peaks.get("conv_flops_per_s") or {}
    low = "bfloat16" if matmul.get("bfloat16") else "float16" if peaks.get("device") == "cuda" else None
    if low is None or not matmul.get(low) or not matmul.get("float32"):
        return None
    ratios = {"matmul": matmul[low] / matmul["float32"]}
    if conv.get(low) and conv.get("float32"):
        ratios["conv"] = conv[low] / conv["float32"]
    return low, ratios


def op_mix(context: Context) -> dict[str, float]:
    """Share of the step in convolutions and in the other matmul-like ops."""
    conv = context.share_of("conv")
    return {"conv": conv, "matmul": max(context.share_of(*MATMUL_OPS) - conv, 0.0)}


def mix_speedup(mix: dict[str, float], ratios: dict[str, float]) -> float:
    """Whole-step speedup when each kernel's share of the step runs at its measured rate ratio."""
    after = 1.0 - sum(mix.values()) + sum(share / ratios.get(kind, ratios["matmul"]) for kind, share in mix.items())
    return 1.0 / after if after > 0 else 1.0


def _ratio_text(low: str, ratios: dict[str, float]) -> str:
    kinds = {"matmul": "matmuls", "conv": "convolutions"}
    return f"{low} measured on this machine at " + ", ".join(f"{r:.2f}x the float32 rate for {kinds[k]}"
                                                             for k, r in ratios.items())


class Autocast(Technique):
    name = "dtype"
    title = "Autocast matmuls and convolutions to bfloat16 / float16"

    def applies_to(self, context: Context) -> Verdict:
        dtype, _, _, why = _plan(context)
        measured = measured_ratios(context)
        if dtype is None and measured is None:
            return Verdict(False, why)
        if context.workload.get("parameter_dtype") not in ("float32", None):
            return Verdict(False, f"the model already runs in {context.workload['parameter_dtype']}")
        share = context.share_of(*MATMUL_OPS)
        if share <= 0.05:
            return Verdict(False, f"matmuls and convolutions take {share:.0%} of the step: little to gain")
        if measured is not None:
            speedup = mix_speedup(op_mix(context), measured[1])
            return Verdict(True, f"{share:.0%} of the step in matmuls/convolutions; {why}; {_ratio_text(*measured)}"
                                 + (": expected slower, measured to see by how much" if speedup < 1 else ""))
        return Verdict(True, f"{share:.0%} of the step in matmuls/convolutions; {why}")

    def estimate(self, context: Context) -> Estimate:
        dtype, _, local, why = _plan(context)
        share = context.share_of(*MATMUL_OPS)
        measured = measured_ratios(context)
        if measured is not None:
            mix = op_mix(context)
            return Estimate(speedup=round(mix_speedup(mix, measured[1]), 3),
                            basis=f"{mix['conv']:.0%} of the step in convolutions and {mix['matmul']:.0%} in other "
                                  f"matmuls, each at its measured rate: {_ratio_text(*measured)} (`advisor peaks`); "
                                  "casts add time not counted here",
                            risk=f"{measured[0]} rounding: outputs typically change by 1e-3..1e-2 relative")
        return Estimate(speedup=round(amdahl(share, local), 3),
                        basis=f"{share:.0%} of the step in matmul/conv ops, ~{local:g}x faster with {why}; "
                              "casts add time not counted here",
                        risk=f"{dtype} rounding: outputs typically change by 1e-3..1e-2 relative")

    def apply(self, workload):
        import torch

        device = "cuda" if any(p.is_cuda for p in workload.model.parameters()) else "cpu"
        dtype = torch.bfloat16
        if device == "cuda" and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        workload.forward_contexts.append(lambda: torch.autocast(device_type=device, dtype=dtype))
        return workload

    snippet = """with torch.autocast(device_type="cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16):
    loss = loss_fn(model(inputs), targets)
loss.backward()          # backward outside autocast, as usual
optimizer.step()"""


@hookimpl
def advisor_techniques(config):
    return [Autocast()]

"""channels_last memory format for convolution nets with 4-D inputs."""

from __future__ import annotations

from advisor.hookspecs import hookimpl
from advisor.technique import Context, Estimate, Technique, Verdict, amdahl

# channels_last convolution kernels against NCHW ones (oneDNN on CPU, cuDNN with tensor cores on GPU).
_LOCAL_CPU, _LOCAL_GPU = 1.15, 1.3


class ChannelsLast(Technique):
    name = "channels_last"
    title = "Use the channels_last memory format for convolutions"

    def applies_to(self, context: Context) -> Verdict:
        four_d = [i for i in context.workload.get("inputs", []) if len(i["shape"]) == 4]
        share = context.share_of("conv")
        if not four_d:
            return Verdict(False, "no 4-D (N, C, H, W) input to the model")
        if share <= 0.05:
            return Verdict(False, f"convolutions take {share:.0%} of the step")
        return Verdict(True, f"4-D input {four_d[0]['shape']} and {share:.0%} of the step in convolutions")

    def estimate(self, context: Context) -> Estimate:
        local = _LOCAL_GPU if context.hardware.get("device") == "cuda" else _LOCAL_CPU
        share = context.share_of("conv")
        return Estimate(speedup=round(amdahl(share, local), 3),
                        basis=f"{share:.0%} of the step in convolutions, ~{local:g}x faster in channels_last; "
                              "layout conversions of other ops not counted",
                        risk="none: same arithmetic, another memory layout")

    def apply(self, workload):
        import torch

        workload.model = workload.model.to(memory_format=torch.channels_last)
        workload.map_inputs(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
        return workload

    snippet = """model = model.to(memory_format=torch.channels_last)
for images, labels in loader:
    images = images.to(memory_format=torch.channels_last)
    ..."""


@hookimpl
def advisor_techniques(config):
    return [ChannelsLast()]

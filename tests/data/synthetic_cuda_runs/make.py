"""Writes the synthetic CUDA run directories the GPU findings are tested on (no GPU was at hand).

Each is a run directory as advisor writes it, with a kineto trace in the CUDA event shapes a real
one has (``cuda_runtime`` launches tied to ``kernel`` / ``gpu_memcpy`` events by correlation id):

- ``mistakes``: every GPU mistake the findings know (TF32 off, cudnn.benchmark off, fp16 matmul
  dims not multiples of 8, a sync per step, host tensors copied inside forward, pageable copies,
  memory 95 % full, the GPU idle most of the step, DataParallel on 2 GPUs, deterministic algorithms,
  CUDA_LAUNCH_BLOCKING, a for-loop optimizer);
- ``clean``: the same step without any of them;
- ``tiny_kernels``: a launch-bound step (300 kernels of 4 µs each).

Each has the ``peaks.json`` of an A100 (its data-sheet numbers), for the roofline.

Run ``python tests/data/synthetic_cuda_runs/make.py`` to regenerate them.
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
STEP_US, WARMUP, STEPS = 10_000.0, 2, 3
#: the GPU's peaks as `advisor peaks` writes them (an A100's data-sheet numbers: no GPU was at hand to measure)
PEAKS = {"device": "cuda", "name": "NVIDIA A100-SXM4-80GB", "threads": 8,
         "flops_per_s": {"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12},
         "conv_flops_per_s": {"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12},
         "bytes_per_s": 2.0e12, "bandwidth": {"copy": 1.9e12, "triad": 2.0e12},
         "measured_at": "2026-11-30T12:00:00+00:00", "how": "synthetic: data-sheet numbers", "load_average": None,
         "duration_s": 0.0, "source": "measured"}
GPU = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "total_memory": 80 * 10**9, "compute_capability": "8.0"}


class Trace:
    def __init__(self):
        self.events, self.correlation = [], 100

    def host(self, cat, name, ts, dur, **args):
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur,
                            "args": args})

    def op(self, name, ts, dur, dims, types, device_us=0.0, kind="kernel", kernel="kernel", blocking=False):
        """A cpu_op launching one kernel (or memcpy) of ``device_us`` on the GPU (and waiting for it when
        ``blocking``, as under CUDA_LAUNCH_BLOCKING=1)."""
        self.host("cpu_op", name, ts, max(dur, device_us + 20) if blocking else dur,
                  **{"Input Dims": dims, "Input type": types})
        if device_us:
            self.correlation += 1
            launch = "cudaMemcpyAsync" if kind == "gpu_memcpy" else "cudaLaunchKernel"
            self.host("cuda_runtime", launch, ts + 1, device_us + 15 if blocking else 5, correlation=self.correlation)
            self.events.append({"ph": "X", "cat": kind, "name": kernel, "pid": 0, "tid": 7, "ts": ts + 10,
                                "dur": device_us, "args": {"correlation": self.correlation, "device": 0,
                                                           "bytes": 65536}})

    def write(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schemaVersion": 1, "baseTimeNanoseconds": 1_700_000_000_000_000_000,
                                    "deviceProperties": [{"id": 0, "name": GPU["name"], "computeMajor": 8,
                                                          "computeMinor": 0}],
                                    "traceEvents": self.events}, separators=(",", ":")))


def step(trace, t0, mistakes):
    trace.host("user_annotation", f"ProfilerStep#{WARMUP + int(t0 // STEP_US)}", t0, STEP_US)
    if not mistakes:  # the batch, copied from pinned memory before the forward
        trace.op("aten::copy_", t0 + 20, 40, [[256, 1024]], ["float"], 40, "gpu_memcpy",
                 "Memcpy HtoD (Pinned -> Device)")
    trace.host("user_annotation", "advisor::forward", t0 + 100, 4000)
    trace.host("user_annotation", "advisor::call /u/train.py:30", t0 + 100, 4000)
    if mistakes:  # a mask made on the host inside forward
        trace.op("aten::to", t0 + 150, 40, [[256]], ["bool"], 5, "gpu_memcpy", "Memcpy HtoD (Pageable -> Device)")
    kernel_us = 2000 if mistakes else 4000
    trace.op("aten::mm", t0 + 300, 30, [[256, 1024], [1024, 1024]], ["float", "float"], kernel_us,
             kernel="ampere_sgemm_128x64_nn" if mistakes else "ampere_tf32_s1688gemm_128x128")
    half = [[256, 1000], [1000, 1003]] if mistakes else [[256, 1024], [1024, 1024]]
    trace.op("aten::mm", t0 + 2400, 30, half, ["c10::Half", "c10::Half"], 800, kernel="sm80_xmma_gemm_f16",
             blocking=mistakes)
    trace.op("aten::cudnn_convolution", t0 + 3300, 30, [[32, 3, 64, 64], [16, 3, 3, 3]], ["float", "float"], 500,
             kernel="cudnn_convolution_fwd", blocking=mistakes)
    trace.host("user_annotation", "advisor::backward", t0 + 4200, 1500)
    trace.op("aten::convolution_backward", t0 + 4300, 30, [[32, 16, 62, 62], [32, 3, 64, 64], [16, 3, 3, 3]],
             ["float", "float", "float"], 1000, kernel="cudnn_convolution_bwd", blocking=mistakes)
    trace.host("user_annotation", "Optimizer.step#Adam.step", t0 + 6000, 1000)
    trace.host("user_annotation", "advisor::call /u/train.py:44", t0 + 6000, 1000)
    if mistakes:  # loss.item() every step
        trace.host("cpu_op", "aten::item", t0 + 8000, 300, **{"Input Dims": [[]], "Input type": ["float"]})
        trace.op("aten::_local_scalar_dense", t0 + 8010, 280, [[]], ["float"], 2, "gpu_memcpy",
                 "Memcpy DtoH (Device -> Pageable)")
        trace.host("cuda_runtime", "cudaStreamSynchronize", t0 + 8030, 250)
        trace.events.append({"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "pid": 1, "tid": 1,
                             "ts": t0 + 310, "s": "t", "args": {"Bytes": 2**20, "Total Allocated": 76 * 10**9,
                                                                "Device Type": 1, "Device Id": 0}})


def tiny_step(trace, t0):
    trace.host("user_annotation", f"ProfilerStep#{WARMUP + int(t0 // STEP_US)}", t0, STEP_US)
    trace.host("user_annotation", "advisor::forward", t0 + 100, 9000)
    for i in range(300):
        trace.op("aten::add", t0 + 100 + 30 * i, 8, [[16, 16], [16, 16]], ["float", "float"], 4,
                 kernel="vectorized_elementwise_kernel")


def facts(mistakes):
    return {"threads": {"torch": 8, "interop": 8, "cores": 16, "cpu_count": 16, "environment": {}},
            "forward": {"outermost_calls": 3, "with_grad": 3 if mistakes else 0, "with_grad_site": "/u/train.py:30",
                        "data_parallel": {"devices": 2, "site": "/u/train.py:30"} if mistakes else None},
            "recorded_steps": STEPS,
            "modes_on_steps": {"anomaly_detection": 0, "deterministic_algorithms": STEPS if mistakes else 0,
                               "cudnn_deterministic": 0, "cuda_launch_blocking": STEPS if mistakes else 0},
            "backends": {"matmul_tf32": not mistakes, "cudnn_benchmark": not mistakes, "cudnn_tf32": True},
            "optimizers": [{"class": "Adam", "foreach": False if mistakes else None, "fused": None if mistakes else True,
                            "accepts_foreach": True, "accepts_fused": True, "parameters": 40, "devices": ["cuda"],
                            "steps": STEPS, "site": "/u/train.py:44"}],
            "compile": {"start": None, "end": None}, "failure": None}


def write_run(name, make_step, mistakes=False):
    run = HERE / name
    trace = Trace()
    for i in range(STEPS):
        make_step(trace, i * STEP_US)
    trace.write(run / "trace" / "worker0.pt.trace.json")
    meta = {"format": "advisor-run", "format_version": 1, "cwd": "/u", "target": {"kind": "script", "name": "train.py"},
            "settings": {"warmup": WARMUP, "steps": STEPS}, "host": {"cpu_count": 16}, "outcome": "stopped_after_window",
            "collectors": {}}
    runner = {"outcome": "stopped_after_window", "step_detection": "optimizer", "warmup": WARMUP,
              "recorded_steps": STEPS, "steps_requested": STEPS, "trace_written": True,
              "window_cpu_seconds": 0.03, "window_wall_seconds": 0.03,
              "environment": {"torch": "2.13.0", "cuda_available": True, "torch_threads": 8, "gpus": [GPU]}}
    workload = {"captured": False, "reason": "synthetic", "data_loader": {
        "class": "DataLoader", "dataset": "Images", "batch_size": 256, "num_workers": 4, "pin_memory": not mistakes,
        "persistent_workers": True}}
    for file, data in (("meta.json", meta), ("runner.json", runner), ("workload.json", workload),
                       ("facts.json", facts(mistakes)), ("peaks.json", PEAKS)):
        (run / file).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    write_run("mistakes", lambda trace, t0: step(trace, t0, True), mistakes=True)
    write_run("clean", lambda trace, t0: step(trace, t0, False))
    write_run("tiny_kernels", tiny_step)

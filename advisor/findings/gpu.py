"""GPU settings and use: TF32 off, cuDNN autotuning off, tensor-core-unfriendly matmul shapes, a GPU
mostly idle, device memory nearly full, and ``DataParallel`` where DDP belongs."""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.hookspecs import hookimpl

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
CONVS = ("aten::cudnn_convolution", "aten::convolution_backward", "aten::cudnn_convolution_backward",
         "aten::_convolution")
HALF_TYPES = ("c10::Half", "c10::BFloat16")
#: a GPU busy less than this share of the step, or memory fuller than this share, is worth a finding
LOW_UTILISATION, HIGH_MEMORY = 0.5, 0.9
#: share of GPU time in the ops a setting affects, under which it is not worth a finding
MIN_SHARE = 0.05


def _compute_capability(run: RunFacts) -> float:
    gpus = (run.summary.get("environment") or {}).get("gpus") or []
    return max((float(g.get("compute_capability") or 0) for g in gpus), default=0.0)


def _device_us(run: RunFacts, ops) -> float:
    """GPU time of the kernels launched directly under ``ops``."""
    launches = run.host[(run.host["cat"] == "cuda_runtime") & run.host["op_parent"].isin(ops.index)]
    return float(run.device.loc[run.device["correlation"].isin(launches["correlation"]), "dur"].sum())


def _named(run: RunFacts, names: tuple[str, ...]):
    return run.ops[run.ops["name"].astype(str).isin(names)]


def _typed(ops, *types: str):
    """The rows of ``ops`` with an input of one of these dtypes (as the trace names them)."""
    return ops[ops["input_types"].map(lambda t: any(x in types for x in (t or []))).astype(bool)]


def tf32_off(run: RunFacts) -> Finding | None:
    cc = _compute_capability(run)
    if not run.gpu or cc < 8.0 or (run.facts.get("backends") or {}).get("matmul_tf32") is not False:
        return None
    matmuls = _named(run, MATMULS)
    fp32 = _typed(matmuls, "float")
    share = run.time_share(_device_us(run, fp32))
    if share < MIN_SHARE:
        return None
    return Finding(
        id="tf32_off", title="fp32 matmuls run without TF32 on a GPU with tensor cores",
        evidence=(f"compute capability {cc:g} with torch.get_float32_matmul_precision() 'highest': "
                  f"{len(fp32) / run.steps:.0f} fp32 matmuls per step{' at ' + run.source(fp32) if run.source(fp32) else ''} "
                  f"take {share:.0%} of the step on the GPU in full fp32, without tensor cores."),
        severity=share, fix='torch.set_float32_matmul_precision("high")   # TF32 tensor cores for fp32 matmuls')


def cudnn_benchmark_off(run: RunFacts) -> Finding | None:
    if not run.gpu or (run.facts.get("backends") or {}).get("cudnn_benchmark") is not False:
        return None
    convs = _named(run, CONVS)
    share = run.time_share(_device_us(run, convs))
    if share < MIN_SHARE:
        return None
    forward = convs[convs["name"].astype(str) != "aten::convolution_backward"]
    shapes_per_step = forward.groupby("step")["input_dims"].agg(lambda d: frozenset(map(str, d)))
    if shapes_per_step.nunique() > 1:
        return None  # shapes change between steps: autotuning would run again for each new one
    shapes = len(next(iter(shapes_per_step), ()))
    return Finding(
        id="cudnn_benchmark_off", title="cuDNN does not autotune the convolutions of a fixed-shape net",
        evidence=(f"torch.backends.cudnn.benchmark is False; {len(forward) / run.steps:.0f} convolutions per step "
                  f"over {shapes} input shapes, the same in every recorded step, take {share:.0%} of the step on "
                  "the GPU with cuDNN's heuristic algorithm choice."),
        severity=share, fix="torch.backends.cudnn.benchmark = True   # before the first step; shapes stay fixed")


def _matmul_dims(name: str, dims) -> tuple[int, int, int] | None:
    """(M, K, N) of a matmul op call from its input shapes."""
    try:
        a, b = (dims[1], dims[2]) if name in ("aten::addmm", "aten::baddbmm") else (dims[0], dims[1])
        return int(a[-2]), int(a[-1]), int(b[-1])
    except (IndexError, TypeError, ValueError):
        return None


def half_matmul_misaligned(run: RunFacts) -> Finding | None:
    if not run.gpu:
        return None
    matmuls = _named(run, MATMULS)
    half = _typed(matmuls, *HALF_TYPES)
    mnk = [_matmul_dims(n, d) for n, d in zip(half["name"].astype(str), half["input_dims"])]
    bad = half[[m is not None and bool(m[1] % 8 or m[2] % 8) for m in mnk]] if mnk else half
    share = run.time_share(_device_us(run, bad))
    if bad.empty or share < 0.01:
        return None
    shapes = sorted({"x".join(map(str, d)) for dims in bad["input_dims"] for d in dims if d})[:4]
    return Finding(
        id="matmul_dims_not_multiple_of_8", title="fp16/bf16 matmuls with dimensions that are not multiples of 8",
        evidence=(f"{len(bad) / run.steps:.0f} half-precision matmuls per step have an inner or output dimension "
                  f"not divisible by 8 (shapes {', '.join(shapes)}){' at ' + run.source(bad) if run.source(bad) else ''}"
                  f": tensor cores need multiples of 8; they take {share:.0%} of the step on the GPU."),
        severity=share,
        fix=("# pad the sizes you choose (vocabulary, hidden, heads x head_dim) to a multiple of 8 (64 is better)\n"
             "vocab_size = (vocab_size + 63) // 64 * 64"))


def _busy_us(run: RunFacts) -> float:
    """Time the GPU was doing anything (kernels, copies, sets overlapping counted once)."""
    import numpy as np

    if run.device.empty:
        return 0.0
    spans = run.device.sort_values("ts")[["ts", "dur"]].to_numpy()
    ends = np.maximum.accumulate(spans[:, 0] + spans[:, 1])
    starts = np.maximum(spans[:, 0], np.concatenate([[-np.inf], ends[:-1]]))
    return float(np.clip(ends - starts, 0, None).sum())


def gpu_low_utilisation(run: RunFacts) -> Finding | None:
    if not run.gpu:
        return None
    busy = run.time_share(_busy_us(run))
    if busy >= LOW_UTILISATION:
        return None
    parts = run.summary.get("breakdown") or {}
    largest = max(parts, key=lambda p: parts[p]["share"]) if parts else None
    nvml = (run.summary.get("utilisation") or {}).get("gpu")
    return Finding(
        id="gpu_low_utilisation", title="The GPU is idle most of the step",
        evidence=(f"kernels and copies kept the GPU busy {busy:.0%} of the recorded steps"
                  + (f" (NVML: {nvml['mean_percent']:.0f}% mean over the {nvml['over']})" if nvml else "")
                  + (f"; the largest part of the step is {largest} ({parts[largest]['share']:.0%})" if largest else "")
                  + "."),
        severity=1.0 - busy,
        fix=("# feed the GPU ahead of time and give it more work per launch\n"
             "loader = DataLoader(dataset, ..., num_workers=4, pin_memory=True)\n"
             "x = x.to(device, non_blocking=True)\n"
             "model = torch.compile(model)   # fewer, larger kernels; larger batches also help"))


def gpu_memory_high(run: RunFacts) -> Finding | None:
    memory = run.summary.get("memory") or {}
    totals = {f"cuda:{g['index']}": g.get("total_memory") for g in (run.summary.get("environment") or {}).get("gpus") or []}
    shares = {device: peak / totals[device] for device, peak in (memory.get("profiler_peak_bytes") or {}).items()
              if totals.get(device)}
    shares.update({f"cuda:{g['gpu']} (NVML)": g["share"] for g in memory.get("gpus") or [] if g.get("share")})
    if not shares:
        return None
    device, share = max(shares.items(), key=lambda kv: kv[1])
    if share <= HIGH_MEMORY:
        return None
    return Finding(
        id="gpu_memory_high", title="GPU memory is nearly full",
        evidence=(f"{device} peaked at {share:.0%} of its memory during the recorded steps: the allocator has "
                  "little room left, so fragmentation or a longer batch ends in an out-of-memory error."),
        severity=share,
        fix=("os.environ['PYTORCH_CUDA_ALLOC_CONF'] = 'expandable_segments:True'   # before CUDA starts\n"
             "with torch.autocast('cuda', dtype=torch.bfloat16):   # half-size activations\n"
             "    loss = model(x)\n"
             "# or torch.utils.checkpoint on the largest blocks, or a smaller batch with gradient accumulation"))


def data_parallel(run: RunFacts) -> Finding | None:
    wrapper = (run.facts.get("forward") or {}).get("data_parallel")
    if not wrapper or (wrapper.get("devices") or 0) < 2:
        return None
    site = f" (called at {run.source_of(wrapper['site'])})" if wrapper.get("site") else ""
    return Finding(
        id="data_parallel", title="nn.DataParallel where DistributedDataParallel belongs",
        evidence=(f"the model is wrapped in nn.DataParallel over {wrapper['devices']} GPUs{site}: every step one "
                  "Python process copies the weights to each GPU, scatters the inputs and gathers the outputs, "
                  "and its threads contend for the GIL."),
        severity=run.phase_share("forward", "backward"),
        fix=("# torchrun --nproc-per-node=N train.py\n"
             "torch.distributed.init_process_group('nccl')\n"
             "model = torch.nn.parallel.DistributedDataParallel(model.to(rank), device_ids=[rank])"))


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    rules = (tf32_off, cudnn_benchmark_off, half_matmul_misaligned, gpu_low_utilisation, gpu_memory_high,
             data_parallel)
    return [f for f in (rule(run) for rule in rules) if f is not None]

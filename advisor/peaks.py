"""The machine's peaks, measured: matmul and convolution FLOP/s per dtype and memory bandwidth, with the
threads torch uses; on a GPU the same on the device. Measured once per machine and cached.

The cache lives in ``$ADVISOR_CACHE_DIR`` (else ``$XDG_CACHE_HOME/advisor``, else ``~/.cache/advisor``),
one file per machine key: CPU model, the cores the process may use, torch's version, CPU capability and
threads, ``ONEDNN_MAX_CPU_ISA``, and the GPU. Each entry says when it was measured and under what load:
on a shared machine a peak measured while others compute is low; ``advisor peaks --remeasure``
measures again, keeping each kernel's best.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

from advisor.rundir_io import atomic_write_json

CACHE_ENV = "ADVISOR_CACHE_DIR"
#: version of the measurement; a cached entry of another one is measured again
METHOD_VERSION = 1
#: seconds one kernel is timed for (after the call that picks its size)
KERNEL_BUDGET_S = 0.25
#: rounds over all kernels, taking turns: on a shared machine, the best call comes from a moment the cores were free
ROUNDS = 8
#: the torch dtype names peaks are keyed by, and the names the kineto trace gives them
DTYPES = ("float32", "bfloat16", "float16")
TRACE_DTYPES = {"float": "float32", "c10::BFloat16": "bfloat16", "c10::Half": "float16", "double": "float64"}


def cache_dir() -> Path:
    """Where the measured peaks are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advisor"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: str = "cpu") -> dict:
    """What the peaks depend on: the same key, the same peaks."""
    import torch

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    key = {"device": device, "cpu_model": _cpu_model(), "cores": cores, "torch": torch.__version__,
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "threads": torch.get_num_threads(),
           "method": METHOD_VERSION}
    if device == "cuda":
        key["gpu"] = torch.cuda.get_device_name()
        key["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return key


def cache_file(key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "peaks" / f"{key['device']}-{digest}.json"


def machine_peaks(device: str = "cpu", remeasure: bool = False) -> dict:
    """The peaks of this machine (``device``: "cpu" or "cuda"): from the cache, else measured now and cached.

    ``remeasure`` measures again and keeps, per kernel, the best of this and the cached measurements (a peak is
    what the machine reached once; on a shared machine a later, quieter moment raises it). ``measurements``
    lists when each was taken and under what load. A cache that cannot be written is left alone."""
    key = machine_key(device)
    path = cache_file(key)
    cached = _read_cached(path, key)
    if cached is not None and not remeasure:
        return {**cached, "source": "cache"}
    peaks = {**measure(device), "key": key}
    peaks["measurements"] = [{k: peaks[k] for k in ("measured_at", "load_average", "duration_s")}]
    if cached is not None:
        peaks = _best_of(cached, peaks)
    try:
        atomic_write_json(path, peaks)
    except OSError:
        pass
    return {**peaks, "source": "measured"}


def _read_cached(path: Path, key: dict) -> dict | None:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cached if cached.get("key") == key else None


def _best_of(old: dict, new: dict) -> dict:
    """``new`` with each kernel's rate the higher of the two measurements, and both measurements listed."""
    merged = {**new, "measurements": [*old.get("measurements", []), *new["measurements"]]}
    for group in ("flops_per_s", "conv_flops_per_s", "bandwidth"):
        merged[group] = {k: max(v, (old.get(group) or {}).get(k) or 0.0) for k, v in new[group].items()}
    merged["bytes_per_s"] = max(merged["bandwidth"].values())
    return merged


def write_run_peaks(run_dir: Path, device: str = "cpu") -> dict:
    """The machine's peaks written into a run directory (``peaks.json``), for the analysis to read."""
    from advisor.rundir import PEAKS_FILE

    peaks = machine_peaks(device)
    atomic_write_json(Path(run_dir) / PEAKS_FILE, peaks)
    return peaks


# -- the measurement ----------------------------------------------------------------------------------------


def measure(device: str = "cpu") -> dict:
    """Measure the peaks now: each kernel grown until one call takes a twentieth of its budget, then timed in
    :data:`ROUNDS` rounds taking turns with the others (a moment of contention on a shared machine then spoils
    one round, not the kernel); the best call counts (a peak, not a typical rate)."""
    import torch

    started = time.perf_counter()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    cuda = device == "cuda"
    largest = 1 << (28 if cuda else 25)  # elements per array: 1 GiB on a GPU, 128 MiB on the host
    makers = {}
    for dtype in _dtypes(device):
        # on a CPU, kernels of a millisecond or two: short enough to fit between other processes' time slices
        makers[("flops_per_s", dtype)] = (lambda n, d=dtype: _matmul(n, d, device), 256, 8192 if cuda else 512)
        makers[("conv_flops_per_s", dtype)] = (lambda n, d=dtype: _conv(n, d, device), 1, 32 if cuda else 2)
    makers[("bandwidth", "copy")] = (lambda n: _stream(n, device, triad=False), 1 << 24, largest)
    makers[("bandwidth", "triad")] = (lambda n: _stream(n, device, triad=True), 1 << 24, largest)
    _warm_up(sync, device)
    kernels = {name: _sized(make, sync, size, top) for name, (make, size, top) in makers.items()}
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(ROUNDS):
        for name, (fn, _work) in kernels.items():
            best[name] = min(best[name], _best_time(fn, sync, KERNEL_BUDGET_S / ROUNDS))
    rates: dict[str, dict[str, float]] = {"flops_per_s": {}, "conv_flops_per_s": {}, "bandwidth": {}}
    for (group, label), (_fn, work) in kernels.items():
        rates[group][label] = work / best[(group, label)]
    return {
        "device": device,
        "name": torch.cuda.get_device_name() if device == "cuda" else _cpu_model(),
        "threads": torch.get_num_threads(),
        **rates,
        "bytes_per_s": max(rates["bandwidth"].values()),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "how": (f"best call of {ROUNDS} rounds of {KERNEL_BUDGET_S / ROUNDS:.2g} s per kernel: square matmuls, a 3x3 "
                "convolution (64 channels, 56x56), copy and triad over arrays larger than the caches; "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads"),
        "load_average": [round(x, 2) for x in load] if load else None,
        "duration_s": round(time.perf_counter() - started, 2),
    }


def _dtypes(device: str) -> list[str]:
    """float32 and the 16-bit dtypes the device runs natively (float16 on a CPU only with its instructions)."""
    import torch

    if device == "cuda":
        return list(DTYPES) if torch.cuda.is_bf16_supported() else ["float32", "float16"]
    flags = cpu_flags()
    return list(DTYPES) if flags & {"avx512_fp16", "amx_fp16"} else ["float32", "bfloat16"]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_flags() -> set[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def _sized(make: Callable[[int], tuple[Callable[[], object], float]], sync, size: int, largest: int):
    """``make(size)``'s kernel and its work, ``size`` doubled up to ``largest`` while the faster of two calls takes
    under a twentieth of the budget."""
    while True:
        fn, work = make(size)
        fn()
        sync()
        once = min(_timed(fn, sync) for _ in range(3))
        if once * 20 >= KERNEL_BUDGET_S or size * 2 > largest:
            return fn, work
        size *= 2


def _warm_up(sync, device: str, longest: float = 0.5) -> None:
    """Small matmuls until they run fast: a fresh process's first few (seen: 6 to 10) take a hundred times
    longer, long enough to stop a kernel's growth at its smallest size."""
    fn, _work = _matmul(128, "float32", device)
    deadline = time.perf_counter() + longest
    while _timed(fn, sync) > 1e-3 and time.perf_counter() < deadline:
        pass


def _timed(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _best_time(fn, sync, budget: float, least: int = 2) -> float:
    """The fastest of the calls made within ``budget`` seconds (at least ``least`` of them)."""
    best, calls, deadline = float("inf"), 0, time.perf_counter() + budget
    while calls < least or time.perf_counter() < deadline:
        best = min(best, _timed(fn, sync))
        calls += 1
    return best


def _matmul(n: int, dtype: str, device: str):
    import torch

    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    out = torch.empty(n, n, device=device, dtype=a.dtype)
    return (lambda: torch.mm(a, b, out=out)), 2.0 * n ** 3


def _conv(batch: int, dtype: str, device: str):
    import torch

    channels, side = 64, 56
    x = torch.randn(batch, channels, side, side, device=device).to(getattr(torch, dtype))
    w = torch.randn(channels, channels, 3, 3, device=device).to(getattr(torch, dtype))

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, padding=1)
    return run, 2.0 * batch * channels * channels * 9 * side * side


def _stream(n: int, device: str, triad: bool):
    """``a = b`` (2 arrays moved) or ``a = b + s * c`` (3 arrays moved), fp32."""
    import torch

    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    if triad:
        return (lambda: torch.add(b, c, alpha=1.5, out=a)), 3.0 * 4 * n
    return (lambda: a.copy_(b)), 2.0 * 4 * n

"""Per-GPU utilisation, memory, power and clocks, through NVML or, failing that, nvidia-smi."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.collectors.base import Availability, CollectorContext, SamplingCollector, read_artifact_csv
from advisor.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

GPU_SAMPLES_FILE = "gpu_samples.csv"
COLUMNS = (
    "time",
    "gpu",
    "name",
    "util_percent",
    "mem_util_percent",
    "mem_used_bytes",
    "mem_total_bytes",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "source",
)
READING_FIELDS = COLUMNS[2:-1]
SMI_QUERY = (
    "index,name,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,clocks.sm,clocks.mem"
)
SMI_TIMEOUT_S = 5.0
_MIB = 1024 * 1024
_NAN = float("nan")


class _NvmlEdge:
    """The only place that calls pynvml: open (init + device handles), read one device, close."""

    def open(self) -> list:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            self.close()
            raise

    def read(self, handle) -> dict:
        return _nvml_read(handle)

    def close(self) -> None:
        try:
            import pynvml

            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _nvml_read(handle) -> dict:
    """One device's reading as a dict of :data:`READING_FIELDS`; a field NVML cannot give is NaN."""
    import pynvml

    def get(fn, *args):
        try:
            return fn(handle, *args)
        except pynvml.NVMLError:
            return None

    name = get(pynvml.nvmlDeviceGetName)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    util = get(pynvml.nvmlDeviceGetUtilizationRates)
    mem = get(pynvml.nvmlDeviceGetMemoryInfo)
    power_mw = get(pynvml.nvmlDeviceGetPowerUsage)
    sm_clock = get(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM)
    mem_clock = get(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_MEM)
    return {
        "name": name or "",
        "util_percent": float(util.gpu) if util is not None else _NAN,
        "mem_util_percent": float(util.memory) if util is not None else _NAN,
        "mem_used_bytes": float(mem.used) if mem is not None else _NAN,
        "mem_total_bytes": float(mem.total) if mem is not None else _NAN,
        "power_w": power_mw / 1000.0 if power_mw is not None else _NAN,
        "sm_clock_mhz": float(sm_clock) if sm_clock is not None else _NAN,
        "mem_clock_mhz": float(mem_clock) if mem_clock is not None else _NAN,
    }


_nvml_edge = _NvmlEdge()


def _smi_number(text: str, scale: float = 1.0) -> float:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return _NAN
    return value * scale if math.isfinite(value) else _NAN


def parse_smi_csv(text: str) -> list[dict]:
    """Parse ``nvidia-smi --query-gpu=<SMI_QUERY> --format=csv,noheader,nounits`` output into readings.

    Each dict has ``gpu`` plus :data:`READING_FIELDS`; ``[N/A]`` and other non-numbers become NaN,
    memory is converted from MiB to bytes.
    """
    readings = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 9:
            continue
        # a GPU name may itself contain commas: the 7 numeric fields are always the last ones
        index, name, rest = fields[0], ",".join(fields[1:-7]), fields[-7:]
        try:
            gpu = int(index)
        except ValueError:
            continue
        readings.append(
            {
                "gpu": gpu,
                "name": name,
                "util_percent": _smi_number(rest[0]),
                "mem_util_percent": _smi_number(rest[1]),
                "mem_used_bytes": _smi_number(rest[2], _MIB),
                "mem_total_bytes": _smi_number(rest[3], _MIB),
                "power_w": _smi_number(rest[4]),
                "sm_clock_mhz": _smi_number(rest[5]),
                "mem_clock_mhz": _smi_number(rest[6]),
            }
        )
    return readings


def _smi_query() -> str:
    result = subprocess.run(
        ["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=SMI_TIMEOUT_S,
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(f"nvidia-smi exited {result.returncode}: {message[-1] if message else ''}")
    return result.stdout


class GpuSampler(SamplingCollector):
    """Samples every GPU the driver sees (``gpu`` is the NVML index, not the CUDA_VISIBLE_DEVICES one).

    NVML (pynvml) is used when it initialises; otherwise ``nvidia-smi`` is run once per sample.
    """

    name = "nvml"
    side = "session"
    artifacts = (GPU_SAMPLES_FILE,)

    columns = COLUMNS

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(interval)
        self._source: str | None = None
        self._handles: list = []

    def _probe(self) -> tuple[str | None, str]:
        """Which source works (``"nvml"``, ``"nvidia-smi"`` or None) and why."""
        try:
            handles = _nvml_edge.open()
        except ImportError as exc:
            nvml_error = f"pynvml not installed ({exc})"
        except Exception as exc:  # noqa: BLE001
            nvml_error = str(exc) or type(exc).__name__
        else:
            _nvml_edge.close()
            if handles:
                return "nvml", f"NVML: {len(handles)} GPU(s)"
            nvml_error = "no GPU found"
        if shutil.which("nvidia-smi") is None:
            return None, f"no NVIDIA driver (NVML: {nvml_error}; nvidia-smi not found)"
        try:
            readings = parse_smi_csv(_smi_query())
        except Exception as exc:  # noqa: BLE001
            return None, f"no NVIDIA driver (NVML: {nvml_error}; nvidia-smi failed: {exc})"
        if not readings:
            return None, f"no GPU found (NVML: {nvml_error}; nvidia-smi listed no GPU)"
        return "nvidia-smi", f"nvidia-smi: {len(readings)} GPU(s) (NVML: {nvml_error})"

    def check(self) -> Availability:
        try:
            source, reason = self._probe()
        except Exception as exc:  # noqa: BLE001
            return Availability(False, f"GPU probe failed: {type(exc).__name__}: {exc}")
        self._source = source
        return Availability(source is not None, reason)

    def _begin(self, context: CollectorContext) -> bool:
        if self._source is None:
            self._source, _ = self._probe()
        if self._source == "nvml":
            try:
                self._handles = _nvml_edge.open()
            except Exception:  # noqa: BLE001
                self._source, _ = self._probe()
        if self._source is None:
            return False
        self._take_sample()
        return True

    def _end(self) -> None:
        if self._source == "nvml":
            _nvml_edge.close()

    def _sample(self) -> list[dict]:
        now = time.time()
        if self._source == "nvml":
            readings = [{"gpu": i, **_nvml_edge.read(h)} for i, h in enumerate(self._handles)]
        else:
            readings = parse_smi_csv(_smi_query())
        return [{"time": now, **{k: r.get(k, _NAN) for k in COLUMNS[1:-1]}, "source": self._source}
                for r in readings]


def load_gpu_samples(path: Path | str) -> pd.DataFrame:
    """Read a ``gpu_samples.csv`` written by :class:`GpuSampler` (empty frame with the columns if no rows)."""
    frame = read_artifact_csv(path, COLUMNS)
    numeric = [c for c in COLUMNS if c not in ("gpu", "name", "source")]
    frame[numeric] = frame[numeric].astype("float64")
    frame["gpu"] = frame["gpu"].astype("int64")
    frame["name"] = frame["name"].fillna("").astype(str)
    frame["source"] = frame["source"].fillna("").astype(str)
    return frame


@hookimpl
def advisor_collectors(config: dict):
    """Built-in plugin ``collectors_nvml``: the GPUs, sampled through NVML or nvidia-smi."""
    return [GpuSampler()]

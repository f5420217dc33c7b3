"""Session-side collectors: psutil sampler, GPU sampler (NVML / nvidia-smi), perf stat."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest

from advisor.collectors import nvml
from advisor.collectors.base import CollectorContext
from advisor.collectors.nvml import GpuSampler, load_gpu_samples, parse_smi_csv
from advisor.collectors.perf_stat import PerfStat, load_perf_stat, parse_perf_csv
from advisor.collectors.psutil_sampler import PsutilSampler, load_samples
from conftest import nvidia_gpu

WORKLOAD = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    block = b"x" * (120 * 1024 * 1024)
    end = time.time() + 1.0
    while time.time() < end:
        sum(range(1000))
    child.wait()
    """
)


def _sampled(code: str, run_dir) -> tuple:
    """A real process running ``code``, sampled by the psutil sampler until it ends; its samples."""
    sampler = PsutilSampler(interval=0.1)
    assert sampler.check().available
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler.start(CollectorContext(pid=proc.pid, run_dir=run_dir))
    try:
        proc.wait(timeout=20)
    finally:
        sampler.stop()
    return proc, load_samples(run_dir / "samples.csv")


def test_psutil_sampler_on_real_process_tree(tmp_path):
    proc, samples = _sampled(WORKLOAD, tmp_path)
    assert proc.returncode == 0
    assert list(samples.columns) == [
        "time",
        "cpu_percent",
        "rss_bytes",
        "num_procs",
        "sys_mem_used_bytes",
        "sys_mem_available_bytes",
        "sys_mem_total_bytes",
    ]
    assert len(samples) >= 5
    assert samples["time"].is_monotonic_increasing
    assert samples["rss_bytes"].max() > 100 * 1024 * 1024
    assert samples["num_procs"].max() >= 2
    assert samples["cpu_percent"].max() > 50
    assert (samples["sys_mem_total_bytes"] >= samples["sys_mem_used_bytes"]).all()


LATE_WORKER = textwrap.dedent(
    """
    import subprocess, sys, time
    time.sleep(0.3)
    burn = "import time\\nend = time.process_time() + 1.2\\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn])
    time.sleep(0.3)
    """
)


def test_psutil_sampler_counts_a_worker_from_its_start_though_it_looks_for_new_processes_once_a_second(tmp_path):
    """The tree is searched for new processes every second only; a worker started between two searches still
    counts from its creation (a worker that only served as a baseline would lose what it ran before)."""
    _, samples = _sampled(LATE_WORKER, tmp_path)
    seconds = (samples["cpu_percent"] / 100 * samples["time"].diff().fillna(0.1)).sum()
    assert seconds > 1.0, f"{seconds:.2f} CPU-seconds counted of the worker's 1.2 and more"
    assert samples["num_procs"].max() == 2


def test_psutil_sampler_writes_header_when_process_already_gone(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = PsutilSampler(interval=0.05)
    sampler.start(CollectorContext(pid=proc.pid, run_dir=tmp_path))
    sampler.stop()
    samples = load_samples(tmp_path / "samples.csv")
    assert samples.empty and "cpu_percent" in samples.columns


PERF_TEXT = """\
# started on Mon Nov 23 12:16:32 2026

<not supported>,,cycles,0,100.00,,
<not supported>,,instructions:u,0,100.00,,
<not counted>,,cpu_core/branches/u,0,0.00,,
121.10,msec,task-clock,121102522,100.00,0.780,CPUs utilized
105,,context-switches,121102522,100.00,867.034,/sec
9307,,page-faults:u,121102522,62.50,76.852,K/sec
"""


def test_parse_perf_csv_literal():
    frame = parse_perf_csv(PERF_TEXT).set_index("event")
    assert list(frame.index) == ["cycles", "instructions", "branches", "task-clock", "context-switches", "page-faults"]
    assert not frame.loc["cycles", "supported"] and not frame.loc["cycles", "counted"]
    assert math.isnan(frame.loc["instructions", "value"])
    assert frame.loc["instructions", "raw_event"] == "instructions:u"
    assert frame.loc["branches", "supported"] and not frame.loc["branches", "counted"]
    assert frame.loc["task-clock", "value"] == pytest.approx(121.10)
    assert frame.loc["task-clock", "unit"] == "msec"
    assert frame.loc["task-clock", "counted"]
    assert frame.loc["page-faults", "value"] == 9307
    assert frame.loc["page-faults", "running_percent"] == pytest.approx(62.5)


def test_parse_perf_csv_empty():
    frame = parse_perf_csv("# started on x\n\n")
    assert frame.empty and "supported" in frame.columns


@pytest.fixture(scope="module")
def perf_availability():
    return PerfStat().check()


def test_perf_stat_real_run(tmp_path, perf_availability):
    if not perf_availability.available:
        pytest.skip(f"perf unavailable: {perf_availability.reason}")
    perf = PerfStat()
    command = perf.wrap_command([sys.executable, "-c", "sum(range(2_000_000))"], tmp_path)
    assert command[:2] == ["perf", "stat"] and command[-3] == sys.executable
    proc = subprocess.Popen(command)
    perf.start(CollectorContext(pid=proc.pid, run_dir=tmp_path))
    assert proc.wait(timeout=30) == 0
    perf.stop()
    frame = load_perf_stat(tmp_path / "perf_stat.csv").set_index("event")
    assert frame.loc["task-clock", "counted"]
    assert frame.loc["task-clock", "value"] > 0
    assert {"cycles", "instructions", "page-faults", "context-switches"} <= set(frame.index)
    hardware_counted = bool(frame.loc["cycles", "counted"])
    assert ("hardware counters not supported" in perf_availability.reason) != hardware_counted


def test_gpu_sampler_real_check(tmp_path):
    sampler = GpuSampler(interval=0.05)
    availability = sampler.check()
    assert availability.available is nvidia_gpu(), availability
    if not availability.available:
        assert "driver" in availability.reason or "no GPU" in availability.reason
        assert "NVML" in availability.reason
        return
    sampler.start(CollectorContext(pid=0, run_dir=tmp_path))
    time.sleep(0.2)
    sampler.stop()
    samples = load_gpu_samples(tmp_path / "gpu_samples.csv")
    assert len(samples) > 0 and (samples["mem_total_bytes"] > 0).all()


class _FakeNvmlEdge:
    def __init__(self):
        self.open_count = 0
        self.close_count = 0

    def open(self):
        self.open_count += 1
        return ["h0", "h1"]

    def read(self, handle):
        if handle == "h0":
            return {
                "name": "NVIDIA H100 80GB HBM3",
                "util_percent": 97.0,
                "mem_util_percent": 61.0,
                "mem_used_bytes": 40e9,
                "mem_total_bytes": 80e9,
                "power_w": 612.5,
                "sm_clock_mhz": 1980.0,
                "mem_clock_mhz": 2619.0,
            }
        return {
            "name": "NVIDIA A10, rev b",
            "util_percent": 3.0,
            "mem_util_percent": 0.0,
            "mem_used_bytes": 1e9,
            "mem_total_bytes": 24e9,
            "power_w": float("nan"),
            "sm_clock_mhz": 210.0,
            "mem_clock_mhz": 405.0,
        }

    def close(self):
        self.close_count += 1


def test_gpu_sampler_with_faked_nvml_edge(tmp_path, monkeypatch):
    edge = _FakeNvmlEdge()
    monkeypatch.setattr(nvml, "_nvml_edge", edge)
    sampler = GpuSampler(interval=0.05)
    availability = sampler.check()
    assert availability.available and "2 GPU" in availability.reason
    sampler.start(CollectorContext(pid=0, run_dir=tmp_path))
    time.sleep(0.3)
    sampler.stop()
    assert edge.open_count == edge.close_count
    samples = load_gpu_samples(tmp_path / "gpu_samples.csv")
    assert set(samples["gpu"]) == {0, 1}
    assert (samples["source"] == "nvml").all()
    assert samples.groupby("gpu").size().min() >= 3
    first = samples[samples["gpu"] == 0].iloc[0]
    assert first["name"] == "NVIDIA H100 80GB HBM3"
    assert first["util_percent"] == 97.0 and first["mem_used_bytes"] == 40e9 and first["power_w"] == 612.5
    second = samples[samples["gpu"] == 1].iloc[0]
    assert second["name"] == "NVIDIA A10, rev b"
    assert math.isnan(second["power_w"]) and second["mem_total_bytes"] == 24e9


def test_parse_smi_csv_literal():
    text = "0, NVIDIA H100 80GB HBM3, 97, 61, 40960, 81559, 612.50, 1980, 2619\n1, Tesla T4, [N/A], 0, 5, 15360, [N/A], 300, 405\n"
    readings = parse_smi_csv(text)
    assert [r["gpu"] for r in readings] == [0, 1]
    assert readings[0]["mem_used_bytes"] == 40960 * 1024 * 1024
    assert readings[0]["power_w"] == pytest.approx(612.5)
    assert math.isnan(readings[1]["util_percent"]) and math.isnan(readings[1]["power_w"])
    assert readings[1]["name"] == "Tesla T4"

"""The machine's measured peaks (``advisor peaks``), the roofline of the hot ops and the step's MFU, and measured
gains above the roof. The peaks are measured for real here (into a temporary cache); the GPU side runs on the
synthetic CUDA runs (tests/data/synthetic_cuda_runs, with an A100's data-sheet peaks: no GPU to measure)."""

import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from rich.console import Console

from advisor.analysis.roofline import op_bytes
from advisor.cli import main
from advisor.peaks import machine_key, machine_peaks
from advisor.views.peaks import print_peaks
from advisor.pipeline import analyse_run
from advisor.ranking import rank
from advisor.roofcheck import flag_suspects, roof_speedup
from advisor.verdict import is_gain
from conftest import AVX2_ONLY, run_advisor

pytestmark = pytest.mark.timing  # measured times and shares: run alone (see Makefile)

SYNTHETIC = Path(__file__).parent / "data" / "synthetic_cuda_runs"
KERNELS = ("flops_per_s", "conv_flops_per_s", "bandwidth")


def _peaks(tmp_path, *options, env=None) -> dict:
    env = {**os.environ, "ADVISOR_CACHE_DIR": str(tmp_path), **(env or {})}
    proc = run_advisor("peaks", "--json", *options, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_peaks_are_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    first = _peaks(tmp_path)
    assert first["source"] == "measured" and first["device"] == "cpu"
    assert set(first["flops_per_s"]) >= {"float32", "bfloat16"} and set(first["conv_flops_per_s"]) >= {"float32"}
    assert all(rate > 0 for kernel in KERNELS for rate in first[kernel].values())
    assert first["bytes_per_s"] == max(first["bandwidth"].values())
    assert first["threads"] == torch.get_num_threads() == first["key"]["threads"]
    assert first["key"]["cores"] == sorted(os.sched_getaffinity(0))
    assert first["key"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert first["measured_at"] and first["how"] and first["duration_s"] > 0
    monkeypatch.setenv("ADVISOR_CACHE_DIR", str(tmp_path))  # the same machine key in this process
    second = machine_peaks()
    assert second["source"] == "cache" and second["measured_at"] == first["measured_at"]
    again = machine_peaks(remeasure=True)
    assert again["source"] == "measured" and len(again["measurements"]) == 2
    assert all(again[k][name] >= first[k][name] for k in KERNELS for name in first[k]), "each kernel's best is kept"
    console = Console(file=io.StringIO(), width=100)
    print_peaks(again, console)
    shown = console.file.getvalue()
    assert "matmul" in shown and "GFLOP/s" in shown and "GB/s" in shown and "best of 2 measurements" in shown


def test_peaks_are_kept_per_cpu_setting_and_bf16_is_slow_on_the_avx2_side(tmp_path):
    """AVX2_ONLY: torch as on an AVX2-only CPU, with a key of its own; bf16 convolutions are emulated there."""
    avx2 = _peaks(tmp_path, env=AVX2_ONLY)
    assert avx2["key"]["cpu_capability"] == "AVX2" and avx2["key"]["onednn_max_cpu_isa"] == "AVX2"
    assert avx2["key"] != machine_key(), "a setting of its own"
    conv = avx2["conv_flops_per_s"]
    assert conv["bfloat16"] < conv["float32"], conv


def test_peaks_refuses_a_gpu_it_does_not_have(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["peaks", "--device", "cuda"]) == 2
    assert "torch sees no GPU" in capsys.readouterr().err


def test_bytes_moved_from_shapes_and_dtypes():
    mm = op_bytes("aten::mm", [[256, 1024], [1024, 1024]], ["float", "float"])
    assert mm == (256 * 1024 + 1024 * 1024 + 256 * 1024) * 4
    assert op_bytes("aten::mm", [[256, 1024], [1024, 1024]], ["c10::BFloat16", "c10::BFloat16"]) == mm / 2
    conv = op_bytes("aten::mkldnn_convolution", [[8, 3, 32, 32], [16, 3, 3, 3], [16]], ["float"] * 3)
    assert conv == (8 * 3 * 32 * 32 + 16 * 3 * 9 + 16 + 8 * 16 * 32 * 32) * 4  # the output has 16 channels
    assert op_bytes("aten::relu", [[64, 64]], ["float"]) == 2 * 64 * 64 * 4
    assert math.isnan(op_bytes("aten::view", [[64, 64], [2]], ["float", "ScalarList"])), "a view moves no data"


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    return {name: analyse_run(shutil.copytree(SYNTHETIC / name, tmp / name)) for name in ("mistakes", "tiny_kernels")}


def test_roofline_of_a_gpu_step(gpu_runs):
    summary = gpu_runs["mistakes"]
    peaks, roof = summary["hardware"]["peaks"], summary["roofline"]
    assert peaks["device"] == "cuda" and peaks["flops_per_s"]["float32"] == 19.5e12
    assert summary["mfu"] == roof["mfu"] == pytest.approx(roof["achieved_flops_per_s"] / 19.5e12)
    steps = summary["steps"]
    assert roof["achieved_flops_per_s"] == pytest.approx(roof["model_flops_per_step"] / (steps["mean_ms"] / 1000))
    mm = next(op for op in summary["hot_ops"] if op["name"] == "aten::mm")
    assert mm["intensity"] == pytest.approx(mm["flops"] / mm["bytes"], rel=1e-4)
    assert mm["attainable_flops_per_s"] == pytest.approx(min(19.5e12, mm["intensity"] * 2e12), rel=1e-4)
    assert mm["bound"] == "compute" and 0 < mm["roofline_fraction"] < 1
    # the fp32 mm (1024x1024x256) ran 2 ms on the GPU: 2*256*1024*1024*calls FLOPs over its GPU time
    assert mm["roofline_fraction"] == pytest.approx(mm["flops"] / (mm["device_time_ms"] / 1000)
                                                    / mm["attainable_flops_per_s"], rel=1e-3)
    assert all({"bytes", "intensity", "attainable_flops_per_s", "roofline_fraction", "bound"} <= set(op)
               for op in summary["hot_ops"])


def test_a_launch_bound_step_sits_in_overhead(gpu_runs):
    roof = gpu_runs["tiny_kernels"]["roofline"]
    assert roof["bound"] == "overhead" and roof["mfu"] == 0.0


def _summary(flops_per_step=1e9, step_ms=100.0, peak=1e11) -> dict:
    return {"steps": {"mean_ms": step_ms}, "roofline": {"model_flops_per_step": flops_per_step},
            "hardware": {"peaks": {"flops_per_s": {"float32": peak / 2, "bfloat16": peak}, "bytes_per_s": 1e10}}}


def _measured(name, speedup) -> dict:
    return {"technique": name, "status": "measured", "applies": True, "verdict": "gain",
            "measured": {"speedup": speedup, "speedup_low": speedup * 0.95, "projected_speedup_low": speedup * 0.9}}


def test_a_gain_above_the_roof_is_suspect_and_never_ranked_first():
    """1 GFLOP per step in 100 ms of replayed step: at the fastest peak (100 GFLOP/s) 10 ms, so at most 10x."""
    summary = _summary()
    assert roof_speedup(summary, 1.0) == pytest.approx(10.0)
    records = [_measured("too_good", 25.0), _measured("prune_structured_50", 25.0), _measured("honest", 1.5)]
    flag_suspects(records, summary, 1.0, exempt={"prune_structured_50"})
    too_good = records[0]
    assert too_good["suspect"] and "above the fastest peak measured here" in too_good["suspect"]
    assert too_good["verdict"].startswith("suspect") and not is_gain(too_good)
    assert "suspect" not in records[1] and "suspect" not in records[2], "fewer FLOPs, or under the roof: kept"
    ranked = [r["technique"] for r in rank(records)]
    assert ranked[0] != "too_good" and ranked.index("too_good") > ranked.index("honest")


def test_no_roof_no_suspicion():
    records = [_measured("big", 25.0)]
    flag_suspects(records, {"steps": {"mean_ms": 100.0}}, 1.0, exempt=set())
    assert "suspect" not in records[0] and is_gain(records[0])


def test_estimates_rest_on_the_roofline():
    """batch size: a matmul at 25% of its roof spends 75% of its time on per-call cost, which a larger batch shares;
    compile: the memory-bound and overhead-bound ops are what fusion acts on."""
    from advisor.technique import Context
    from advisor.techniques.batch_size import BatchSize
    from advisor.techniques.compile import Compile

    ops = [{"name": "aten::addmm", "share": 0.6, "calls": 30, "self_time_ms": 60.0, "flops": 6e9,
            "roofline_fraction": 0.25, "bound": "compute"},
           {"name": "aten::gelu", "share": 0.3, "calls": 30, "self_time_ms": 30.0, "roofline_fraction": 0.5,
            "bound": "memory"},
           {"name": "aten::view", "share": 0.1, "calls": 300, "self_time_ms": 10.0, "bound": "overhead"}]
    context = Context(summary={"hot_ops": ops, "breakdown": {"forward": {"share": 1.0}}},
                      workload={"captured": True, "batch_size": 8, "training": False}, hardware={"device": "cpu"})
    batch = BatchSize(2).estimate(context)
    assert "running at 25% of what the machine's measured roofs allow" in batch.basis
    fixed = (0.6 * 0.75 + 0.1 * 10 / 33.3) / 1.0  # the view's 33 µs calls: ~10 µs each fixed, as before
    assert batch.speedup == pytest.approx(1 / ((1 - fixed) + fixed / 2), abs=0.01)
    compiled = Compile().estimate(context)
    assert "memory-bound non-matmul ops" in compiled.basis and "30% in memory-bound" in compiled.basis
    assert "10% of the step overhead-bound" in compiled.basis


def test_report_shows_the_roofline(gpu_runs, tmp_path):
    out = tmp_path / "gpu.md"
    assert main(["report", gpu_runs["mistakes"]["run_dir"], "-o", str(out)]) == 0
    text = out.read_text()
    assert "**Roofline**: MFU 0.6% (126.3 GFLOP/s of 19.5 TFLOP/s float32)" in text
    assert "| roof | bound |" in text and "| compute |" in text
    assert "](<gpu-roofline.png>)" in text and (tmp_path / "gpu-roofline.png").read_bytes().startswith(b"\x89PNG")

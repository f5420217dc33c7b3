import functools
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def run_advisor(*args, cwd=None, timeout=240, **kwargs) -> subprocess.CompletedProcess:
    """Run the real ``advisor`` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "advisor", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def profile_json(*args, tmp_path: Path, cwd=None, env=None) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "run"
    proc = run_advisor("profile", "--out", out, "--json", *args, cwd=cwd, env=env)
    assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
    return proc, json.loads(proc.stdout)


# -- what this machine has: the tests derive their expectations from it -----------------------------------

#: the cores this process, and every script it starts, may run on
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: one intra-op thread for a script whose op shares a test asserts on: beside another test's process on two cores,
#: each of torch's parallel regions of tiny ops waits for a descheduled thread (seen: gelu 8 ms a call instead of
#: 0.04 ms), and the shares of the ops that matter fall under the techniques' thresholds
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}

def own_inductor_cache(capability: str) -> str:
    """An Inductor cache for runs at ``ATEN_CPU_CAPABILITY=capability``: Inductor's FX graph cache does not key
    on the vector ISA that setting picks (torch 2.13), so a graph cached at one capability and loaded at another
    computes wrong results or crashes, in this run or in a later one sharing the default cache."""
    return os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{capability.lower()}")


#: the machine's measured peaks (advisor peaks) are cached here for the tests, not in the user's cache; once per
#: machine key, so that a test run measures them once for each setting it runs under
os.environ.setdefault("ADVISOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"advisor_cache_{getpass.getuser()}"))

if os.environ.get("ATEN_CPU_CAPABILITY"):
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", own_inductor_cache(os.environ["ATEN_CPU_CAPABILITY"]))

#: torch on this machine as on a CPU with AVX2 and no AVX-512: torch's own kernels and oneDNN's both capped at AVX2
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "TORCHINDUCTOR_CACHE_DIR": own_inductor_cache("avx2")}


@functools.cache
def bf16_missing() -> str | None:
    """Why torch here has no bf16 instructions to run bf16 with, or None when it has them: the CPU's flags,
    torch's CPU capability and oneDNN's own check (not advisor's code)."""
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if os.path.exists("/proc/cpuinfo") else []
    flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags")), set())
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return "the CPU has no avx512_bf16 or amx_bf16"
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.startswith("AVX512"):
        return f"torch's CPU capability is {capability}"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return f"oneDNN has no bf16 here (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA')})"
    return None


@functools.cache
def nvidia_gpu() -> bool:
    """True when an NVIDIA driver answers with at least one GPU, through NVML or else nvidia-smi."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no library: ask nvidia-smi
        pass
    if shutil.which("nvidia-smi") is None:
        return False
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and "GPU " in proc.stdout


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would build CPU kernels with ($CXX, else c++, g++, clang++), or None."""
    return next(filter(None, (shutil.which(c) for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c)), None)


@pytest.fixture(scope="session")
def conv_op() -> str:
    """The op torch here runs the first convolution of scripts/tiny_cnn_train.py with (the innermost conv op
    under ``aten::convolution``): ``aten::mkldnn_convolution`` where oneDNN takes it, else another backend's."""
    import torch

    conv, x = torch.nn.Conv2d(3, 16, 3, padding=1), torch.randn(8, 3, 32, 32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        conv(x)
    names = {e.name for e in prof.events() if "conv" in e.name and not any("conv" in c.name for c in e.cpu_children)}
    assert len(names) == 1, names
    return names.pop()


@pytest.fixture
def scripts() -> Path:
    return SCRIPTS


def no_advisor_traceback(stderr: str) -> bool:
    """True when stderr holds no traceback frame from advisor's own code."""
    advisor_dir = os.path.join(str(ROOT), "advisor")
    return not any(advisor_dir in line and line.strip().startswith("File ") for line in stderr.splitlines())


def record_with_trace_handler(directory: Path, worker: str, steps: int, use_gzip: bool = False) -> None:
    """A tiny model trained under a scheduled torch.profiler that hands its trace to
    tensorboard_trace_handler, as users record traces without advisor."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = torch.profiler.schedule(wait=1, warmup=1, active=steps, repeat=1)
    handler = torch.profiler.tensorboard_trace_handler(str(directory), worker_name=worker, use_gzip=use_gzip)
    with torch.profiler.profile(schedule=schedule, on_trace_ready=handler, record_shapes=True,
                                profile_memory=True) as prof:
        for _ in range(2 + steps):
            optimizer.zero_grad()
            model(torch.randn(16, 32)).sum().backward()
            optimizer.step()
            prof.step()


def install_plugin(site: Path, name: str, source: str) -> None:
    """A real distribution on sys.path (for PYTHONPATH=site): module plus dist-info with an `advisor` entry point."""
    (site / f"{name}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[advisor]\n{name} = {name}\n")


RECORDED_RUN = Path(__file__).parent / "data" / "recorded_run_tiny_cnn"


def copy_recorded_run(parent: Path) -> Path:
    """A writable copy of the committed run of tests/scripts/tiny_cnn_train.py (recorded on another machine:
    no trace, its paths point nowhere here), under its own name in ``parent``."""
    import shutil

    return Path(shutil.copytree(RECORDED_RUN, parent / RECORDED_RUN.name))


def profile_run(out: Path, script: Path, *options: str, script_args: tuple[str, ...] = (), cwd=None,
                summary: bool = True) -> Path:
    """A real ``advisor profile`` run into ``out``; its exit code is not checked (failed scripts are wanted too)."""
    proc = run_advisor("profile", "--out", out, *options, script, "--", *script_args, cwd=cwd)
    assert (out / ("summary.json" if summary else "meta.json")).exists(), proc.stderr
    return out


FINDINGS = [{"id": "conv_bound", "title": "Convolutions take most of the step", "severity": 0.61,
             "evidence": "aten::mkldnn_convolution and its backward: 61% of the step", "fix": "...",
             "technique": "channels_last", "measured": None},
            {"id": "small_batch", "title": "The batch is small for this machine", "severity": 0.2,
             "evidence": "batch 8", "fix": "...", "technique": "batch_size_x2", "measured": None}]


def with_findings(parent):
    """The recorded run with findings in its summary, as the analysis of findings writes them."""
    run = copy_recorded_run(parent)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "findings": FINDINGS}))
    return run


#: an autograd op and a profiler label of the weird run are named this (markdown, HTML and Rich markup);
#: its script's file is named WEIRD_FILE
WEIRD_NAME = "<script>alert(1)</script>|*bold*[/]"
WEIRD_FILE = "we*ird_<b>|name.py"
WEIRD_SCRIPT = f'''"""Names with markdown and HTML special characters: this file, an autograd op, a profiler label."""
import torch
from torch import nn

NAME = {WEIRD_NAME!r}
Weird = type(NAME, (torch.autograd.Function,), {{"forward": staticmethod(lambda ctx, x: x * 2),
                                                "backward": staticmethod(lambda ctx, grad: grad * 2)}})
model = nn.Linear(8, 8)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(12):
    with torch.profiler.record_function(NAME):
        loss = Weird.apply(model(torch.randn(4, 8))).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
'''


@pytest.fixture(scope="session")
def weird_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("weird")
    (root / WEIRD_FILE).write_text(WEIRD_SCRIPT)
    return profile_run(root / "run", root / WEIRD_FILE, "--no-measure", "--warmup", "2", "--steps", "3", cwd=root)

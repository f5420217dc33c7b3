import json
import os
import subprocess
import sys
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


@pytest.fixture
def scripts() -> Path:
    return SCRIPTS


def no_advisor_traceback(stderr: str) -> bool:
    """True when stderr holds no traceback frame from advisor's own code."""
    advisor_dir = os.path.join(str(ROOT), "advisor")
    return not any(advisor_dir in line and line.strip().startswith("File ") for line in stderr.splitlines())


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

"""The run directory: the contract between the profiling run and every later view of it.

Layout, format version 1 (every file written atomically; no pickle):

====================================  ===============================================================
``meta.json``                         format version, advisor/torch/python versions, host, the
                                      command line, the target and its arguments, timings, outcome,
                                      exit codes, how steps were found, each collector's availability
``runner.json``                       what the child process saw: outcome, step detection, window
``steps.csv``                         every step boundary (``step, start_unix_ns, end_unix_ns, recorded``)
``trace/worker0.pt.trace.json``       the kineto trace of the profiled window (Perfetto,
                                      chrome://tracing, TensorBoard, Holistic Trace Analysis)
``workload.json``                     the step captured for trials: model, inputs, optimizer, and how
                                      exactly a replay reproduces the script's outputs and gradients
``facts.json``                        what the script's process saw that the trace cannot show: torch
                                      threads and cores, grad mode of forward passes, debug and backend
                                      settings, optimizers, torch.compile counters
``trials.json``                       each technique: applies and why, estimate, measured speedup,
                                      spread and numerical change, snippet
``hardware.json``                     a run that measures no technique: the machine as the script's
                                      process saw it (what techniques may know), for their estimates
``peaks.json``                        the machine's measured peaks (FLOP/s per dtype, bandwidth), when and how
``samples.csv``                       psutil samples of the script's process tree
``gpu_samples.csv``                   NVML / nvidia-smi samples, when a GPU is present
``perf_stat.csv``                     ``perf stat`` counters of the child, when perf works
``summary.json``                      the analysis (what ``--json`` prints and ``advisor show`` shows)
``hot_ops.csv``                       the full hot-op table
``window_steps.csv``                  the recorded steps (or time slices) with their phases
``ranks/<r>/``                        a torch.distributed run: rank r's ``runner.json``, ``steps.csv``,
                                      ``facts.json`` and trace (rank 0's are the files above)
====================================  ===============================================================

A run of ``advisor profile --apply`` holds ``meta.json``, ``comparison.json`` (step times and loss
values of both runs side by side, the speedup and the loss deviation) and one directory per run,
``baseline/`` and ``applied/``, each with its ``runner.json``, ``steps.csv`` and ``outcomes.csv``
(``step, kind, value``: the script's loss values, or for inference the norm of the model's output).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from advisor.errors import RunDirError
from advisor.rundir_io import atomic_write_json

FORMAT = "advisor-run"
FORMAT_VERSION = 1
META_FILE = "meta.json"
RUNNER_FILE = "runner.json"
STEPS_FILE = "steps.csv"
TRACE_FILE = "trace/worker0.pt.trace.json"
WORKLOAD_FILE = "workload.json"
FACTS_FILE = "facts.json"
TRIALS_FILE = "trials.json"
HARDWARE_FILE = "hardware.json"
SUMMARY_FILE = "summary.json"
OUTCOMES_FILE = "outcomes.csv"
COMPARISON_FILE = "comparison.json"
HOT_OPS_FILE = "hot_ops.csv"
WINDOW_STEPS_FILE = "window_steps.csv"
PEAKS_FILE = "peaks.json"
#: ``runner.json``'s ``step_detection`` when no step boundary came before a recording limit
TIME_SLICES = "time_slices"
#: ``runner.json``'s ``step_detection`` of an imported trace: its own ``ProfilerStep#N`` marks
TRACE_STEPS = "profiler_steps"
DEFAULT_STORE = Path(".advisor") / "runs"
#: a torch.distributed run: the folder of every rank but rank 0 (whose files are the run's own)
RANKS_DIR = "ranks"


def rank_dir(run_dir: Path, rank: int) -> Path:
    """Where rank ``rank`` of a distributed run writes its files: rank 0 into the run directory itself (so that
    every view of one process shows it), the others into ``ranks/<rank>/``."""
    return Path(run_dir) if rank == 0 else Path(run_dir) / RANKS_DIR / str(rank)

# Event names in the trace: the marks the runner adds, and the torch ones the analysis reads.
#: each recorded step, as ``torch.profiler.profile.step()`` names it: ``ProfilerStep#<n>``
STEP_PREFIX = "ProfilerStep#"
#: the outermost module call of a step, and each backward pass
FORWARD_EVENT = "advisor::forward"
BACKWARD_EVENT = "advisor::backward"
#: ``advisor::call <file>:<line>``: where the script called the model (or ran backward) from
CALL_SITE_PREFIX = "advisor::call "
#: torch's own: waiting for the next batch, an optimizer's methods (``Optimizer.step#SGD.step``, ...),
#: and the allocator's instant events
DATALOADER_PREFIX = "enumerate(DataLoader)"
OPTIMIZER_PREFIX = "Optimizer."
ZERO_GRAD_EVENT = "Optimizer.zero_grad"
MEMORY_EVENT = "[memory]"


def new_run_dir(out: Path | None, target: str) -> Path:
    """Create and return the directory for a new run: ``out`` or ``.advisor/runs/<time>-<name>``."""
    if out is None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(target).stem or target)[:40]
        base = DEFAULT_STORE / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    else:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise RunDirError(f"--out {path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def trace_path(run_dir: Path) -> Path | None:
    """The run's trace (``TRACE_FILE``, or gzipped as an imported one may be), or None."""
    for path in (Path(run_dir) / TRACE_FILE, Path(run_dir) / f"{TRACE_FILE}.gz"):
        if path.exists():
            return path
    return None


def write_meta(run_dir: Path, meta: dict) -> None:
    atomic_write_json(run_dir / META_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION, **meta})


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: no {path.name} ({what} missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: corrupt {what} ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: corrupt {what} (not a JSON object)")
    return data


def load_meta(run_dir: Path) -> dict:
    """Read and check ``meta.json``; raise :class:`RunDirError` for a missing, foreign or corrupt run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory")
    if not (run_dir / META_FILE).exists():
        raise RunDirError(f"{run_dir}: not an advisor run directory (no {META_FILE})")
    meta = read_json(run_dir / META_FILE, "run metadata")
    if meta.get("format") != FORMAT:
        raise RunDirError(f"{run_dir}: not an advisor run directory ({META_FILE} is not advisor's)")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise RunDirError(f"{run_dir}: corrupt run metadata (no format version)")
    if version > FORMAT_VERSION:
        raise RunDirError(f"{run_dir}: made by a newer advisor (run format {version}, this one reads "
                          f"up to {FORMAT_VERSION}); upgrade advisor")
    return meta


def newest_run(store: Path = DEFAULT_STORE) -> Path:
    """The most recent run in the store."""
    runs = sorted((p for p in Path(store).glob("*") if (p / META_FILE).exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RunDirError(f"no runs in {store}: run `advisor profile SCRIPT` first")
    return runs[-1]

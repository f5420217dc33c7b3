"""Large traces: time and peak RSS of `advisor analyze` against `json.load` + pandas and Holistic Trace Analysis.

A real trace of an example (recorded here by `advisor profile --with-stack`; `--no-stack`: without) is
grown to about 100 MB, 500 MB and 1 GB by repeating its recorded steps with shifted timestamps (kineto's
own layout, line for line). On each size, one after another and each in its own process: `advisor
analyze` (the whole command: load, analysis, findings, summary written; run before, between and after the
others, its median and range printed), `json.load` + `pandas.DataFrame`
of the events (loading alone, no analysis), and Holistic Trace Analysis 0.5 (`TraceAnalysis` loading the trace, then its breakdown of
the CPU ops' time; its GPU breakdowns need GPU kernels). HTA runs in its own environment,
benchmarks/.venv-hta, created on first use (`pip install holistictraceanalysis==0.5.0`); it is no
dependency of advisor. Peak RSS is that of the tool's processes together (advisor decodes a large trace in one
process a CPU). A tool whose projected peak would pass --max-gb (or the free memory) is skipped, and the table
says so.

    python benchmarks/trace_scale.py [--sizes-mb 100 500 1000] [--example transformer_train] [--no-hta] [--no-stack]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTA_VENV = ROOT / "benchmarks" / ".venv-hta"
HTA_SPEC = "holistictraceanalysis==0.5.0"
#: peak RSS per byte of trace seen here (json.load + pandas 4.5x, HTA 6x): what a size is expected to take
_PEAK_PER_BYTE = {"json.load+pandas": 5.0, "HTA": 6.5, "advisor analyze": 0.6}

_JSON_PANDAS = """
import json, sys
import pandas as pd
with open(sys.argv[1]) as f:
    events = json.load(f)["traceEvents"]
frame = pd.DataFrame(events)
print(len(frame))
"""

_HTA = """
import sys, warnings
warnings.filterwarnings("ignore")
from hta.trace_analysis import TraceAnalysis
analysis = TraceAnalysis(trace_dir=sys.argv[1])
trace = analysis.t.get_trace(0)
ops = trace[trace["cat"] == analysis.t.symbol_table.sym_index["cpu_op"]]
by_name = ops.groupby("name")["dur"].sum().sort_values(ascending=False)
print(len(trace), len(by_name))
"""


def record_base(example: str, work: Path, with_stack: bool) -> Path:
    """A real trace of ``example``: `advisor profile` with 10 recorded steps (and the Python stacks: ``with_stack``)."""
    out = work / "base"
    subprocess.run([sys.executable, "-m", "advisor", "profile", "--no-measure", "--warmup", "3", "--steps", "10",
                    *(["--with-stack"] if with_stack else []), "--out", str(out),
                    str(ROOT / "examples" / f"{example}.py")],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out / "trace" / "worker0.pt.trace.json"


_TS = re.compile(rb'"ts": ([0-9.]+)')
_STEP = re.compile(rb'"ProfilerStep#(\d+)"')


def _blocks(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Header (through ``[``), the events as kineto wrote them (one block of lines each, without the
    closing ``}``), the tail (from the last closing ``}``)."""
    start = data.index(b"[", data.index(b'"traceEvents"')) + 1
    end = data.rindex(_CLOSE)
    return data[:start], data[start:end].split(_CLOSE + b","), data[end:]


_CLOSE = b"\n  }"


def grow(base: Path, target_bytes: int, out: Path) -> Path:
    """``base`` with its recorded steps repeated (timestamps shifted by the steps' span, step numbers
    continued) until the file is about ``target_bytes``."""
    header, events, tail = _blocks(base.read_bytes())
    header = header.replace(b'"traceEvents"', b'"distributedInfo": {"backend": "gloo", "rank": 0, "world_size": 1},\n'
                                              b'  "traceEvents"', 1)
    marks = [(float(_TS.search(e).group(1)), int(_STEP.search(e).group(1))) for e in events if _STEP.search(e)]
    first = min(ts for ts, _ in marks)
    span = (max(ts for ts, _ in marks) - first) * len(marks) / max(len(marks) - 1, 1)
    count = max(n for _, n in marks) - min(n for _, n in marks) + 1
    inside, outside = [], []
    for e in events:
        m = _TS.search(e)
        (inside if m and first <= float(m.group(1)) < first + span else outside).append(e)
    repeats = max(1, round((target_bytes - len(header) - sum(map(len, outside))) / max(sum(map(len, inside)), 1)))

    def blocks():
        yield from outside
        for k in range(repeats):
            def moved(match, shift=k * span):
                return b'"ts": %.3f' % (float(match.group(1)) + shift)

            def renumbered(match, k=k):
                return b'"ProfilerStep#%d"' % (int(match.group(1)) + k * count)
            for e in inside:
                yield _STEP.sub(renumbered, _TS.sub(moved, e)) if k else e

    with open(out, "wb") as f:
        f.write(header)
        for i, block in enumerate(blocks()):
            f.write(block if i == 0 else _CLOSE + b"," + block)
        f.write(tail)
    return out


def measured(command: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes (-1 when it failed) and the last output line of the command. The peak is the
    larger of the process's own peak and that of the summed RSS of it and its children (sampled every 10 ms): a
    tool that works in several processes holds the memory of all of them."""
    import psutil

    summed = 0
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        tree = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                summed = max(summed, sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)]))
            except psutil.Error:  # one ended while being read
                pass
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        last = (out.read().decode(errors="replace").strip().splitlines() or [""])[-1]
    if proc.returncode != 0:
        return wall, -1, f"failed: {last[:100]}"
    return wall, max(usage.ru_maxrss * 1024, summed), last


def hta_python() -> Path:
    """benchmarks/.venv-hta's python, creating the environment on first use."""
    python = HTA_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {HTA_VENV} with {HTA_SPEC} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(HTA_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", HTA_SPEC], check=True)
    return python


def free_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--example", default="transformer_train")
    parser.add_argument("--no-hta", action="store_true", help="leave Holistic Trace Analysis out")
    parser.add_argument("--no-stack", action="store_true",
                        help="grow a trace recorded without Python stacks (default: with them, as TensorBoard users "
                             "often record; half of such a trace's bytes are the stacks' events, which advisor skips)")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip a tool projected to peak above this")
    parser.add_argument("--keep", type=Path, default=None, help="keep the grown traces in this directory")
    args = parser.parse_args()

    hta = None if args.no_hta else hta_python()
    work = Path(tempfile.mkdtemp(prefix="trace-scale-"))
    try:
        base = record_base(args.example, work, not args.no_stack)
        print(f"base: a real trace of examples/{args.example}.py, {base.stat().st_size / 1e6:.0f} MB; "
              f"load at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
        rows = []
        for size_mb in sorted(args.sizes_mb):
            folder = (args.keep or work) / f"{size_mb}mb"
            folder.mkdir(parents=True, exist_ok=True)
            trace = grow(base, size_mb * 10**6, folder / "rank0.pt.trace.json")
            rows.append(measure_size(trace, hta, args.max_gb, work))
            print_row(rows[-1], flush=True)
            if args.keep is None:
                shutil.rmtree(folder)
        print_summary(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_size(trace: Path, hta: Path | None, max_gb: float, work: Path) -> dict:
    size = trace.stat().st_size
    row = {"size": size, "results": {}}
    tools = {"advisor analyze": [sys.executable, "-m", "advisor", "analyze", str(trace), "--json",
                                 "--out", str(work / f"run-{size}")],
             "json.load+pandas": [sys.executable, "-c", _JSON_PANDAS, str(trace)]}
    if hta is not None:
        tools["HTA"] = [str(hta), "-c", _HTA, str(trace.parent)]
    ours = "advisor analyze"
    order = [ours]  # advisor before, between and after the others: its median is not one moment of a drifting machine
    for other in tools:
        if other != ours:
            order += [other, ours]
    runs = []
    for name in order:
        projected = _PEAK_PER_BYTE[name] * size
        if projected > min(max_gb * 2**30, free_bytes() * 0.8):
            row["results"][name] = f"skipped: would take about {projected / 2**30:.1f} GB"
            continue
        if name == ours:
            shutil.rmtree(work / f"run-{size}", ignore_errors=True)
        wall, peak, line = measured(tools[name], ROOT)
        if name == ours and peak >= 0:
            runs.append((wall, peak))
        elif name != ours or not runs:
            row["results"][name] = (wall, peak) if peak >= 0 else line
    if runs:
        walls = sorted(wall for wall, _ in runs)
        row["results"] = {ours: (statistics.median(walls), max(peak for _, peak in runs)), **row["results"]}
        row["advisor_range"] = (walls[0], walls[-1])
    return row


def print_row(row: dict, flush: bool = False) -> None:
    size = row["size"]
    cells = [f"{size / 1e6:>6.0f} MB"]
    for name, result in row["results"].items():
        if isinstance(result, tuple):
            wall, peak = result
            spread = f" (median; {row['advisor_range'][0]:.1f}..{row['advisor_range'][1]:.1f})" \
                if name == "advisor analyze" and "advisor_range" in row else ""
            cells.append(f"{name}: {wall:7.1f} s{spread} {peak / 1e6:7.0f} MB ({peak / size:.2f}x file)")
        else:
            cells.append(f"{name}: {result}")
    print(" | ".join(cells), flush=flush)


def print_summary(rows: list[dict]) -> None:
    print("\nratios (time of the other tool / time of advisor analyze; peak RSS / file size):")
    print(f"{'size MB':>8} {'advisor s':>10} {'RSS/file':>9} {'json+pd s':>10} {'x':>6} {'HTA s':>8} {'x':>6} "
          f"{'HTA RSS/file':>12}")
    for row in rows:
        results = row["results"]
        ours = results.get("advisor analyze")
        if not isinstance(ours, tuple):
            continue
        cells = [f"{row['size'] / 1e6:>8.0f}", f"{ours[0]:>10.1f}", f"{ours[1] / row['size']:>9.2f}"]
        for name in ("json.load+pandas", "HTA"):
            other = results.get(name)
            if isinstance(other, tuple):
                cells += [f"{other[0]:>{10 if name != 'HTA' else 8}.1f}", f"{other[0] / ours[0]:>5.1f}x"]
            else:
                cells += [f"{'-':>{10 if name != 'HTA' else 8}}", f"{'-':>6}"]
        hta = results.get("HTA")
        cells.append(f"{hta[1] / row['size']:>12.2f}" if isinstance(hta, tuple) else f"{'-':>12}")
        print(" ".join(cells))
    timed = [r for r in rows if isinstance(r["results"].get("advisor analyze"), tuple)]
    if len(timed) > 1:
        a, b = timed[0], timed[-1]
        print(f"\ngrowth from {a['size'] / 1e6:.0f} to {b['size'] / 1e6:.0f} MB ({b['size'] / a['size']:.1f}x the "
              "bytes): " + ", ".join(
                  f"{name} {b['results'][name][0] / a['results'][name][0]:.1f}x time"
                  for name in ("advisor analyze", "json.load+pandas", "HTA")
                  if isinstance(a["results"].get(name), tuple) and isinstance(b["results"].get(name), tuple)))


if __name__ == "__main__":
    main()

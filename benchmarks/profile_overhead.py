"""Wall-time cost of `advisor profile` against a plain `python example.py`, per example.

Both run the whole script (advisor with --keep-running, so the script is not stopped after the
recorded window; --no-measure, so that technique trials, which are extra work by design, are not
counted as profiling overhead), interleaved A B / B A in one session; the ratio is the median over pairs, with its
spread (min..max of the pair ratios). The plain run runs the script as ``python script.py`` would (``runpy``, its
folder first on the path) and notes when it has ended, to tell its interpreter's exit apart.

Beside the ratio, where advisor's extra seconds go (medians over the runs), read from each run's own
records (meta.json, runner.json, steps.csv) and the benchmark's clock:

- ``cli``: from the command's start to the child's launch (advisor's imports, run directory, collectors);
- ``child``: from the launch to the runner's first line (the child's interpreter and advisor's imports);
- ``capture``: the three steps before the window (the step capture) beyond the median plain step;
- ``window``: the recorded steps beyond the median plain step (the profiler's cost while it records);
- ``saving``: the step after them beyond the median plain step: the recording stopped and the trace written, the
  captured step's replay checked, the child's analysis and the techniques' estimates;
- ``stop``: from the runner's end to the collectors stopped (psutil, perf stat) and the run recorded, less the
  plain run's own exit (from its script's end to its process's end, measured on each plain run: torch's interpreter
  takes about a second to exit, and the plain run pays that too), while the trace is analysed beside it
  (:mod:`advisor.early_analysis`);
- ``analysis``: from then to the command's end (the findings, the summary, the terminal output);
- ``rest``: what is left: the script itself run slower beside the collectors (perf stat, psutil's
  sampling) and the plain run's noise.

``parts``: the ratio the parts alone make, (python + the parts) / python, median over the runs. Each part is read
against the run's own typical step, so it does not move with the machine's speed from one run to the next as the
wall ratio does (on this project's 2-core machine the same step took 3.2 to 3.6 ms from one run to the next, which
moves a 15 s run by a second); it leaves out ``rest``.

    python benchmarks/profile_overhead.py [--steps 200] [--repeats 5] [--window N] [--examples cnn_train ...]

``--window N`` records N steps instead of advisor's default (torch's stop and export of the recording, in
``saving``, grow with them).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor.options import ProfileOptions  # noqa: E402

EXAMPLES = ["cnn_train", "transformer_train", "input_bound_train", "mlp_infer"]


PARTS = ("cli", "child", "capture", "window", "saving", "stop", "analysis")


#: the plain run: the script as ``python script.py`` runs it, and the wall clock written when it has ended
_PLAIN = """
import os, runpy, sys, time
script, sys.argv = sys.argv[1], sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
with open(os.environ["BENCHMARK_SCRIPT_END"], "w") as f:
    f.write(repr(time.time()))
"""


def _timed(command: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Wall seconds, and the wall clock (unix seconds) at the start and the end."""
    start, unix_start = time.perf_counter(), time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                   env=None if env is None else {**os.environ, **env})
    return time.perf_counter() - start, unix_start, time.time()


def _plain_run(command: list[str], end_file: Path) -> tuple[float, float]:
    """Wall seconds of the plain run, and of its exit (from its script's end to its process's end)."""
    wall, _, unix_end = _timed(command, {"BENCHMARK_SCRIPT_END": str(end_file)})
    return wall, unix_end - float(end_file.read_text())


def breakdown(run_dir: Path, unix_start: float, unix_end: float, plain_exit: float) -> dict[str, float]:
    """Seconds of each part of ``PARTS`` in one advisor run (see the module's docstring); ``plain_exit``: the seconds
    the plain run took to exit."""
    meta = json.loads((run_dir / "meta.json").read_text())
    runner = json.loads((run_dir / "runner.json").read_text())
    with open(run_dir / "steps.csv") as f:
        steps = [(int(r["step"]), (int(r["end_unix_ns"]) - int(r["start_unix_ns"])) / 1e9, r["recorded"] == "1")
                 for r in csv.DictReader(f)]
    recorded = [n for n, _, rec in steps if rec]
    first, last = (min(recorded), max(recorded)) if recorded else (len(steps), len(steps) - 1)
    durations = dict((n, d) for n, d, _ in steps)
    plain = [d for n, d in durations.items() if 1 <= n < first - 3 or n > last + 1] or list(durations.values())
    typical = statistics.median(plain) if plain else 0.0

    def beyond(numbers) -> float:
        return sum(durations[n] - typical for n in numbers if n in durations)

    runner_start, runner_end = runner["started_unix_ns"] / 1e9, runner["ended_unix_ns"] / 1e9
    return {"cli": meta["started_at"] - unix_start, "child": runner_start - meta["started_at"],
            "capture": beyond(range(first - 3, first)), "window": beyond(range(first, last + 1)),
            "saving": beyond([last + 1]),
            "stop": meta["ended_at"] - runner_end - plain_exit, "analysis": unix_end - meta["ended_at"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps the example runs")
    parser.add_argument("--repeats", type=int, default=5, help="pairs per example")
    parser.add_argument("--examples", nargs="*", default=EXAMPLES)
    parser.add_argument("--window", type=int, default=ProfileOptions.steps, help="steps advisor records")
    args = parser.parse_args()

    print(f"advisor profile (warmup {ProfileOptions.warmup}, {args.window} recorded steps, --keep-running --no-measure) "
          f"vs python, {args.steps} steps, "
          f"{args.repeats} interleaved pairs; load at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"{'example':<18} {'python s':>8} {'advisor s':>9} {'ratio':>6}  {'spread':<10} {'parts':>6} extra s: "
          + " ".join(f"{p:>8}" for p in (*PARTS, "rest")))
    # advisor's bytecode, as an installed package has it: where PYTHONDONTWRITEBYTECODE is set (this project's
    # machines set it) each run would compile advisor's modules again, which no user's run does
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "advisor")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.examples:
            script = str(ROOT / "examples" / f"{name}.py")
            plain = [sys.executable, "-c", _PLAIN, script, "--steps", str(args.steps)]
            end_file = Path(tmp) / "script-end"
            plain_times, advisor_times, ratios, parts = [], [], [], []
            for r in range(args.repeats):
                out = Path(tmp) / f"{name}-{r}"
                profiled = [sys.executable, "-m", "advisor", "profile", "--keep-running", "--no-measure",
                            "--steps", str(args.window), "--out", str(out), script, "--", "--steps", str(args.steps)]
                if r % 2 == 0:
                    (a, plain_exit), b = _plain_run(plain, end_file), _timed(profiled)
                else:
                    b, (a, plain_exit) = _timed(profiled), _plain_run(plain, end_file)
                plain_times.append(a)
                advisor_times.append(b[0])
                ratios.append(b[0] / a)
                part = breakdown(out, b[1], b[2], plain_exit)
                part["rest"] = b[0] - a - sum(part.values())
                parts.append(part)
            medians = {p: statistics.median(x[p] for x in parts) for p in (*PARTS, "rest")}
            own = statistics.median(1 + sum(x[p] for p in PARTS) / t for x, t in zip(parts, plain_times))
            print(f"{name:<18} {statistics.median(plain_times):>8.2f} {statistics.median(advisor_times):>9.2f} "
                  f"{statistics.median(ratios):>5.2f}x  {min(ratios):.2f}..{max(ratios):.2f}  {own:>5.2f}x "
                  + " ".join(f"{medians[p]:>8.2f}" for p in (*PARTS, "rest")), flush=True)


if __name__ == "__main__":
    main()

"""Wall-time cost of `advisor profile` against a plain `python example.py`, per example.

Both run the whole script (advisor with --keep-running, so the script is not stopped after the
recorded window; --no-measure, so that technique trials, which are extra work by design, are not
counted as profiling overhead), interleaved A B / B A in one session; the ratio is the median over pairs, with its
spread (min..max of the pair ratios).

    python benchmarks/profile_overhead.py [--steps 200] [--repeats 5] [--examples cnn_train ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["cnn_train", "transformer_train", "input_bound_train", "mlp_infer"]


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps the example runs")
    parser.add_argument("--repeats", type=int, default=5, help="pairs per example")
    parser.add_argument("--examples", nargs="*", default=EXAMPLES)
    args = parser.parse_args()

    print(f"advisor profile (warmup 5, 10 recorded steps, --keep-running --no-measure) vs python, {args.steps} steps, "
          f"{args.repeats} interleaved pairs\n")
    print(f"{'example':<20} {'python s':>9} {'advisor s':>10} {'ratio':>7}  spread")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.examples:
            script = str(ROOT / "examples" / f"{name}.py")
            plain = [sys.executable, script, "--steps", str(args.steps)]
            plain_times, advisor_times, ratios = [], [], []
            for r in range(args.repeats):
                profiled = [sys.executable, "-m", "advisor", "profile", "--keep-running", "--no-measure", "--out",
                            f"{tmp}/{name}-{r}", script, "--", "--steps", str(args.steps)]
                if r % 2 == 0:
                    a, b = _timed(plain), _timed(profiled)
                else:
                    b, a = _timed(profiled), _timed(plain)
                plain_times.append(a)
                advisor_times.append(b)
                ratios.append(b / a)
            print(f"{name:<20} {statistics.median(plain_times):>9.2f} {statistics.median(advisor_times):>10.2f} "
                  f"{statistics.median(ratios):>6.2f}x  {min(ratios):.2f}..{max(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main()

"""How good is advisor's advice? For each example: the measured gain of the technique advisor ranks
first, the best gain found by measuring every technique and every pair, and how far the estimates
were from the measurements.

Each example runs once under `advisor profile --pairs all` (every single technique and every pair,
each timed against its baseline interleaved in that one run).

    python benchmarks/advice_quality.py [--examples cnn_train ...] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["cnn_train", "transformer_train", "input_bound_train", "mlp_infer"]


def _run(example: str, steps: int, out: Path) -> dict:
    command = [sys.executable, "-m", "advisor", "profile", "--warmup", "3", "--steps", "5", "--pairs", "all",
               "--json", "--out", str(out), str(ROOT / "examples" / f"{example}.py"), "--", "--steps", str(steps)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if not proc.stdout.strip():
        raise SystemExit(f"{example}: advisor failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=EXAMPLES)
    parser.add_argument("--steps", type=int, default=40, help="steps each example runs (the window needs 8)")
    args = parser.parse_args()
    print(f"{'example':<18} {'advisor top (quality-gated)':<34} {'best of singles and pairs':<38} "
          f"{'est. error':>10}  measured")
    with tempfile.TemporaryDirectory() as tmp:
        for example in args.examples:
            records = _run(example, args.steps, Path(tmp) / example)["recommendations"]
            measured = [r for r in records if (r.get("measured") or {}).get("speedup")]
            if not measured:
                reasons = "; ".join(f"{r['technique']}: {r.get('reason') or r.get('status')}" for r in records)
                print(f"{example:<18} {'-':<26} {'-':<30} {'-':>10}  none applies ({reasons})")
                continue
            top = records[0]
            best = max(measured, key=lambda r: r["measured"]["speedup"])
            errors = [abs(r["estimate"]["speedup"] - r["measured"]["speedup"]) / r["measured"]["speedup"]
                      for r in measured if not r.get("pair") and (r.get("estimate") or {}).get("speedup")]
            error = f"{100 * statistics.median(errors):.0f}%" if errors else "-"
            print(f"{example:<18} {_gain(top):<34} {_gain(best):<38} {error:>10}  "
                  f"{len(measured)} ({sum(1 for r in measured if r.get('pair'))} pairs)", flush=True)


def _gain(record: dict) -> str:
    """``name 1.73x (step 1.60x)``: the replayed model step's gain and its whole-step projection."""
    measured = record.get("measured") or {}
    if not measured.get("speedup"):
        return "-"
    step = measured.get("projected_speedup")
    return f"{record['technique']} {measured['speedup']:.2f}x" + (f" (step {step:.2f}x)" if step else "")


if __name__ == "__main__":
    main()

"""How good is advisor's advice? For each example, what a user could take from one run:

- advisor's top record, by its whole-step projection (the replayed gain carried over to the step);
- the best of all records that pass the same quality gate (measured, the step unchanged, outputs and
  gradients within the tolerance), every single technique and every pair, by whole-step projection;
- the median error of the estimates against the measurements;
- the end-to-end check: the script itself run with ``--apply`` of the top record, baseline and applied
  taking turns, where the technique can act on a running script.

Each example runs once under `advisor profile --pairs all` (every single technique and every pair,
each timed against its baseline interleaved in that one run), then once under `--apply`.

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
sys.path.insert(0, str(ROOT))
from advisor.verdict import QUALITY_TOLERANCE, is_gain  # noqa: E402

EXAMPLES = ["cnn_train", "transformer_train", "input_bound_train", "mlp_infer"]


def _advisor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, cwd=ROOT)


def _profile(example: str, steps: int, out: Path) -> dict:
    proc = _advisor("profile", "--warmup", "5", "--steps", "5", "--pairs", "all", "--json", "--out", str(out),
                    str(ROOT / "examples" / f"{example}.py"), "--", "--steps", str(steps))
    if not proc.stdout.strip():
        raise SystemExit(f"{example}: advisor failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _apply(example: str, technique: str, steps: int, out: Path) -> str:
    """``1.42x (1.30-1.55)`` for the script run with ``--apply technique``, or why it could not act."""
    proc = _advisor("profile", "--apply", technique.replace("+", ","), "--warmup", "3", "--steps", "15", "--json",
                    "--out", str(out), str(ROOT / "examples" / f"{example}.py"), "--", "--steps", str(steps))
    if proc.returncode != 0 or not proc.stdout.strip():
        return "cannot act: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:60]
    comparison = json.loads(proc.stdout)
    low, high = comparison.get("speedup_range") or (None, None)
    spread = f" ({low:.2f}-{high:.2f})" if low and high else ""
    return f"{comparison['speedup']:.2f}x{spread}" if comparison.get("speedup") else "no steps compared"


def passes_gate(record: dict) -> bool:
    """Measured, the step unchanged, outputs and gradients within the quality tolerance."""
    measured = record.get("measured") or {}
    quality = measured.get("quality") or {}
    errors = [quality.get(k) for k in ("output_rel_error", "grad_rel_error") if quality.get(k) is not None]
    return bool(measured.get("speedup")) and not str(record.get("verdict", "")).startswith("step changed") \
        and all(e <= QUALITY_TOLERANCE for e in errors)


def _step_gain(record: dict | None) -> float:
    measured = (record or {}).get("measured") or {}
    return measured.get("projected_speedup") or measured.get("speedup") or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=EXAMPLES)
    parser.add_argument("--steps", type=int, default=40, help="steps each example runs (the window needs 10)")
    args = parser.parse_args()
    print(f"{'example':<18} {'advisor top (step gain)':<36} {'best passing the gate':<36} {'est. err':>8}  "
          f"{'--apply top, end to end':<28} measured")
    with tempfile.TemporaryDirectory() as tmp:
        for example in args.examples:
            records = _profile(example, args.steps, Path(tmp) / example)["recommendations"]
            measured = [r for r in records if (r.get("measured") or {}).get("speedup")]
            if not measured:
                reasons = "; ".join(f"{r['technique']}: {r.get('reason') or r.get('status')}" for r in records)
                print(f"{example:<18} {'-':<36} {'-':<36} {'-':>8}  {'-':<28} none ({reasons[:200]})")
                continue
            top = records[0] if is_gain(records[0]) else None
            gated = [r for r in measured if passes_gate(r)]
            best = max(gated, key=_step_gain) if gated else None
            errors = [abs(r["estimate"]["speedup"] - r["measured"]["speedup"]) / r["measured"]["speedup"]
                      for r in measured if not r.get("pair") and (r.get("estimate") or {}).get("speedup")]
            error = f"{100 * statistics.median(errors):.0f}%" if errors else "-"
            end_to_end = _apply(example, top["technique"], args.steps, Path(tmp) / f"{example}-apply") if top \
                else "-"
            print(f"{example:<18} {_gain(top):<36} {_gain(best):<36} {error:>8}  {end_to_end:<28} "
                  f"{len(measured)} ({sum(1 for r in measured if r.get('pair'))} pairs)", flush=True)


def _gain(record: dict | None) -> str:
    """``name step 1.60x (replay 1.73x)``: the whole-step projection and the replayed model step's gain."""
    measured = (record or {}).get("measured") or {}
    if not measured.get("speedup"):
        return "no gain"
    step = measured.get("projected_speedup")
    return f"{record['technique']} " + (f"step {step:.2f}x (replay {measured['speedup']:.2f}x)" if step
                                        else f"{measured['speedup']:.2f}x")


if __name__ == "__main__":
    main()

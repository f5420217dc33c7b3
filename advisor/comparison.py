"""``advisor profile --apply``: the script run twice, as it is and with techniques applied, side by side.

Both runs start together from the same random seed and then take turns, one step at a time (baseline,
applied, baseline, ...), so that slow phases of the machine hit both alike; each step is timed from its
turn's start to its boundary, and nothing is profiled. The comparison holds the median step times and
their ratio with its range, and the script's own loss values side by side (for inference: the norm of
the model's output).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from advisor.child import ProgressListener, ScriptProcess, read_runner, run_error, runner_command, sigint_to
from advisor.errors import AdvisorError, Interrupted, UsageError
from advisor.options import ProfileOptions, check_target, new_meta
from advisor.plugins import installed_techniques
from advisor.quartiles import quartiles
from advisor.rundir import COMPARISON_FILE, OUTCOMES_FILE, STEPS_FILE, new_run_dir, write_meta
from advisor.rundir_io import atomic_write_json
from advisor.session import RunResult

RUNS = ("baseline", "applied")


def check_techniques(names: list[str], blocked: tuple[str, ...]) -> None:
    """Raise a usage error naming the installed techniques when one of ``names`` is not among them."""
    installed = set(installed_techniques(blocked))
    missing = [name for name in names if name not in installed]
    if missing:
        raise UsageError(f"advisor profile: --apply: no technique named {', '.join(missing)} "
                         f"(installed: {', '.join(sorted(installed))})")


def compare(options: ProfileOptions, on_update: ProgressListener | None = None) -> tuple[RunResult, dict]:
    """Run the baseline and the applied run in turns; return the run and its comparison.

    ``on_update`` is told how the two runs go, as :func:`advisor.session.profile` tells it."""
    check_target(options)
    check_techniques(options.apply, options.blocked_plugins)
    run_dir = new_run_dir(options.out, options.target)
    meta = new_meta(options, {})
    meta.update(kind="comparison", apply=list(options.apply))
    write_meta(run_dir, meta)
    started = time.time()

    children = []
    for name in RUNS:
        (run_dir / name).mkdir()
        apply = ["--apply", ",".join(options.apply)] if name == "applied" else []
        command = runner_command(options, run_dir / name, "--compare", *apply)
        children.append(ScriptProcess(command, options.script_stdout_to_stderr, takes_turns=True))

    def stop_both(signum, frame) -> None:
        for child in children:
            child.on_sigint(signum, frame)

    with sigint_to(stop_both):
        stopped = _take_turns(children, options, on_update)
    errors: list[AdvisorError] = []
    runs = {}
    for i, (name, child) in enumerate(zip(RUNS, children)):
        returncode = child.finish()
        record: dict = {}
        error = run_error(record, read_runner(run_dir / name), returncode, child, options)
        if i in stopped and isinstance(error, Interrupted):
            record.update(outcome="stopped", error="stopped: the other run failed")
        elif error is not None:
            errors.append(type(error)(f"the {name} run: {error}"))
        runs[name] = {"outcome": record.get("outcome"), "error": record.get("error"), **_read_run(run_dir / name)}
    comparison = summarize(runs, options)
    atomic_write_json(run_dir / COMPARISON_FILE, comparison)
    interrupted = next((e for e in errors if isinstance(e, Interrupted)), None)
    meta.update(outcome="interrupted" if interrupted else "failed" if errors else "completed",
                error=str(errors[0]) if errors else None, ended_at=time.time(),
                duration_s=round(time.time() - started, 3))
    write_meta(run_dir, meta)
    return RunResult(run_dir=run_dir, meta=meta, error=interrupted or (errors[0] if errors else None)), comparison


def _take_turns(children: list[ScriptProcess], options: ProfileOptions,
                on_update: ProgressListener | None) -> set[int]:
    """Let one child run one step at a time, alternating, once both have reached their first boundary.

    A child that has reported a step it was not let go for waits at a boundary; the next turn is given
    only when every child still running waits, so no two steps ever overlap. The last step is not a
    wait: the child ends, and the other runs on alone. A child that fails leaves nothing to compare
    with: the other is stopped; their indices are returned.
    """
    total = options.warmup + options.steps
    released = [0] * len(children)
    turn = 0
    stopped: set[int] = set()
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        running = [child.supervise(elapsed, options.timeout) for child in children]
        if not any(running):
            return stopped
        if not stopped and any(not run and child.process.returncode != 0 and not child.asked_to_stop
                               for run, child in zip(running, children)):
            stopped = {i for i, run in enumerate(running) if run}
            for i in stopped:
                children[i].stop()
        steps = [child.progress.steps for child in children]
        waiting = [run and released[i] < steps[i] < total for i, run in enumerate(running)]
        if any(waiting) and all(waiting[i] for i, run in enumerate(running) if run):
            i = turn if waiting[turn] else 1 - turn
            released[i] = steps[i]
            children[i].give_turn()
            turn = 1 - i
        if on_update is not None:
            on_update(min(steps), children[0].progress.mode, False, elapsed,
                      f"step {steps[0]}/{total} baseline, {steps[1]}/{total} applied (taking turns)")
        time.sleep(0.005)


def _read_run(run_dir: Path) -> dict:
    """One run's timed steps (ms), its warmup time (s) and its outcomes (losses or output norms)."""
    timed, warmup_s = [], 0.0
    if (run_dir / STEPS_FILE).exists():
        with open(run_dir / STEPS_FILE, newline="") as f:
            for row in csv.DictReader(f):
                ms = (int(row["end_unix_ns"]) - int(row["start_unix_ns"])) / 1e6
                if row["recorded"] == "1":
                    timed.append(round(ms, 4))
                else:
                    warmup_s += ms / 1000
    kind, values = None, []
    if (run_dir / OUTCOMES_FILE).exists():
        with open(run_dir / OUTCOMES_FILE, newline="") as f:
            for row in csv.DictReader(f):
                kind = row["kind"]
                values.append({"step": int(row["step"]), "value": float(row["value"])})
    return {"step_ms": timed, "warmup_s": round(warmup_s, 3), "outcome_kind": kind, "outcomes": values}


def summarize(runs: dict, options: ProfileOptions) -> dict:
    """The comparison of the two runs: step times, speedup with its range, and loss deviation."""
    result: dict = {"techniques": list(options.apply), "warmup": options.warmup, "steps": options.steps,
                    "runs": runs, "speedup": None, "speedup_range": None, "outcomes": None}
    base, applied = runs["baseline"]["step_ms"], runs["applied"]["step_ms"]
    for run in runs.values():
        if run["step_ms"]:
            q1, q2, q3 = quartiles(run["step_ms"])
            run["median_ms"], run["iqr_ms"] = round(q2, 4), round(q3 - q1, 4)
    if base and applied:
        b1, b2, b3 = quartiles(base)
        a1, a2, a3 = quartiles(applied)
        result["speedup"] = round(b2 / a2, 4)
        result["speedup_range"] = [round(b1 / a3, 4), round(b3 / a1, 4)]
    result["outcomes"] = _compare_outcomes(runs["baseline"], runs["applied"])
    return result


def _compare_outcomes(base: dict, applied: dict) -> dict | None:
    """Pair the two runs' loss values (or output norms) by step and order; their largest relative deviation."""
    if not base["outcomes"] or not applied["outcomes"] or base["outcome_kind"] != applied["outcome_kind"]:
        return None
    pairs = list(zip(base["outcomes"], applied["outcomes"]))
    deviations = [abs(a["value"] - b["value"]) / max(abs(b["value"]), 1e-12) for b, a in pairs
                  if a["step"] == b["step"]]
    return {"kind": base["outcome_kind"], "compared": len(deviations),
            "max_rel_deviation": round(max(deviations), 6) if deviations else None,
            "final_rel_deviation": round(deviations[-1], 6) if deviations else None,
            "baseline_first": pairs[0][0]["value"], "baseline_last": pairs[-1][0]["value"],
            "applied_first": pairs[0][1]["value"], "applied_last": pairs[-1][1]["value"]}

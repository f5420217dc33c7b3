"""The session's side of a torch.distributed run: the launcher's process, and how each rank ended.

The launcher (torchrun, in :mod:`advisor.runner.launch`) starts every rank in a session of its own. Ctrl-C and
``--timeout`` reach it as for one process (SIGINT), and it stops the ranks with SIGTERM, each saving what it
recorded; when the grace period ends, the ranks still running are killed with it. A rank that fails is
reported by its rank, and the others' recordings are kept.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from advisor.child import ScriptProcess, died
from advisor.errors import (AdvisorError, Interrupted, NoTorchWork, ScriptExited, ScriptNotFound, ScriptRaised,
                            ScriptTimedOut)
from advisor.launcher import LAUNCH_FILE, Launch
from advisor.rundir import RANKS_DIR, RUNNER_FILE, rank_dir, read_json

#: how a rank ended when the launcher stopped it because another failed (or advisor was interrupted)
TERMINATED = "terminated"
#: the error a run ends with, by how its first failed rank ended (else ScriptRaised)
_ERRORS = {"not_found": ScriptNotFound, "no_torch": NoTorchWork, "exited": ScriptExited}
#: a rank's error is cut to this many characters (gloo's run to several hundred)
ERROR_CHARS = 160


class LaunchedProcess(ScriptProcess):
    """The launcher's process: killing it kills the ranks too (they run in sessions of their own)."""

    def _signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            try:
                ranks = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                ranks = []
            for process in ranks:
                try:
                    process.kill()
                except psutil.Error:
                    pass
        super()._signal(sig)


def world_size(run_dir: Path, launch: Launch) -> int:
    """How many ranks the run had on this machine: from the ranks' records, else the launcher's options."""
    sizes = [int(launch.nproc_per_node)] if launch.nproc_per_node.isdigit() else []
    folders = Path(run_dir) / RANKS_DIR
    if folders.is_dir():
        sizes += [int(p.name) + 1 for p in folders.iterdir() if p.name.isdigit()]
    for r in range(max(sizes, default=1)):
        path = rank_dir(run_dir, r) / RUNNER_FILE
        if path.exists():
            sizes.append(int((read_json(path, "runner record").get("rank") or {}).get("world_size") or 1))
    return max(sizes, default=1)


def rank_outcomes(run_dir: Path, world: int, one_node: bool = True) -> list[dict]:
    """Each rank: ``rank``, ``outcome``, ``error`` (one line, ``None`` when it ran as asked), ``recorded_steps``.
    Of several nodes, a rank that left nothing here and did not fail here ran on another node."""
    launched = read_json(Path(run_dir) / LAUNCH_FILE, "launch record") if (Path(run_dir) / LAUNCH_FILE).exists() \
        else {}
    failed = launched.get("failed_ranks") or {}
    outcomes = []
    for r in range(world):
        path = rank_dir(run_dir, r) / RUNNER_FILE
        runner = read_json(path, "runner record") if path.exists() else None
        failure = failed.get(str(r)) or {}
        if runner is None and not failure and not one_node:
            outcomes.append({"rank": r, "outcome": "on_another_node", "recorded_steps": 0, "error": None})
            continue
        outcomes.append({"rank": r, **_outcome(r, runner, failure)})
    return outcomes


def _outcome(rank: int, runner: dict | None, failure: dict) -> dict:
    name = f"rank {rank}"
    if runner is None:
        signum = signal.Signals[failure["signal"]].value if failure.get("signal") in signal.Signals.__members__ \
            else None
        return {"outcome": "killed", "recorded_steps": 0,
                "error": died(name, failure.get("exit_code"), signum)}
    outcome, steps = runner.get("outcome"), int(runner.get("recorded_steps") or 0)
    error = str(runner.get("error") or "").splitlines()[0][:ERROR_CHARS] if runner.get("error") else None
    errors = {"raised": f"{name} raised {error}",
              "exited": f"{name} exited with code {runner.get('exit_code')}",
              TERMINATED: f"{name} was stopped by the launcher", "interrupted": f"{name} was interrupted",
              "not_found": f"{name}: {error}", "no_torch": f"{name}: PyTorch cannot be imported: {error}"}
    return {"outcome": outcome, "recorded_steps": steps, "error": errors.get(outcome)}


def finish(meta: dict, run_dir: Path, launch: Launch, child: ScriptProcess, timeout: float | None,
           omp_from_user: bool) -> AdvisorError | None:
    """After the launcher ended: note the launch and every rank's outcome in ``meta`` (``distributed``) and
    return the error to report, if any."""
    world = world_size(run_dir, launch)
    ranks = rank_outcomes(run_dir, world, one_node=launch.nnodes in ("1", "1:1"))
    several = not launch.nproc_per_node.isdigit() or int(launch.nproc_per_node) > 1
    meta["distributed"] = {"world_size": world, "ranks": ranks, "launcher": {
        **launch.describe(), "omp_num_threads_set_by_torchrun": several and not omp_from_user}}
    return run_error(meta, ranks, child, timeout)


def run_error(meta: dict, ranks: list[dict], child: ScriptProcess, timeout: float | None) -> AdvisorError | None:
    """Fill ``meta``'s outcome from the ranks and return the error to report: the ranks that failed, by rank
    (killed ones first: the others' errors follow from them), with what the others kept."""
    kept = ", ".join(f"rank {r['rank']}: {r['recorded_steps']} recorded steps" for r in ranks if r["recorded_steps"])
    kept = f"; kept {kept}" if kept else "; no rank kept a recorded step"
    failed = sorted((r for r in ranks if r["error"] and r["outcome"] not in (TERMINATED, "interrupted")),
                    key=lambda r: r["outcome"] != "killed")
    first = ranks[0] if ranks else {}
    meta.update(outcome=first.get("outcome", "killed"), error=first.get("error"))
    if child.timed_out:
        meta["outcome"] = "timed_out"
        return ScriptTimedOut(f"timed out after {timeout:g} s{kept}")
    if child.interrupts:
        meta["outcome"] = "interrupted"
        return Interrupted(f"interrupted{kept}")
    if failed:
        first_failure = failed[0]["outcome"]
        meta.update(outcome=first_failure if first_failure in ("not_found", "no_torch") else "rank_failed",
                    error="; ".join(r["error"] for r in failed))
        error = _ERRORS.get(first_failure, ScriptRaised)
        return error("; ".join(r["error"] for r in failed) + kept)
    return None

"""CPU threads against cores: more compute threads than the cores they may run on, or cores left idle
by a compute-bound step."""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.hookspecs import hookimpl

#: data share below which the step is compute-bound enough for idle cores to matter
COMPUTE_BOUND_DATA_SHARE = 0.2


def _setting(run: RunFacts) -> tuple[dict, int, int, int] | None:
    """(threads record, torch threads per process, processes on this machine, cores) or None."""
    threads = run.facts.get("threads") or {}
    if not threads.get("torch") or not threads.get("cores"):
        return None
    processes = int((threads.get("environment") or {}).get("LOCAL_WORLD_SIZE") or 1)
    return threads, threads["torch"], processes, threads["cores"]


def _described(threads: dict, torch_threads: int, processes: int, cores: int) -> str:
    env = ", ".join(f"{k}={v}" for k, v in (threads.get("environment") or {}).items())
    return (f"torch.get_num_threads() = {torch_threads}"
            + (f" in each of {processes} processes" if processes > 1 else "")
            + f", {cores} cores allowed (os.sched_getaffinity)" + (f", {env}" if env else ""))


def oversubscribed(run: RunFacts) -> Finding | None:
    setting = _setting(run)
    if setting is None or setting[1] * setting[2] <= setting[3]:
        return None
    threads, torch_threads, processes, cores = setting
    return Finding(
        id="threads_oversubscribed", title="More compute threads than cores",
        evidence=(f"{_described(threads, torch_threads, processes, cores)}: {torch_threads * processes} threads "
                  f"take turns on {cores} cores, and every parallel op waits for its slowest, descheduled thread."),
        severity=run.phase_share("forward", "backward", "optimizer"),
        fix=f"torch.set_num_threads({max(cores // processes, 1)})   # one compute thread per core")


def idle_cores(run: RunFacts) -> Finding | None:
    setting = _setting(run)
    if setting is None or run.gpu:
        return None
    threads, torch_threads, processes, cores = setting
    busy = (run.summary.get("utilisation") or {}).get("process_busy_cores")
    spare = cores - torch_threads * processes
    if spare < 1 or busy is None or busy > torch_threads + 0.5 or run.phase_share("data") > COMPUTE_BOUND_DATA_SHARE:
        return None
    compute = run.phase_share("forward", "backward", "optimizer")
    return Finding(
        id="threads_idle_cores", title="Cores left idle by a compute-bound step",
        evidence=(f"{_described(threads, torch_threads, processes, cores)}; the process kept {busy:.2f} cores "
                  f"busy during the window while compute took {compute:.0%} of the step."),
        severity=compute * spare / cores,
        fix=f"torch.set_num_threads({cores // processes})   # or unset OMP_NUM_THREADS / MKL_NUM_THREADS")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (oversubscribed(run), idle_cores(run)) if f is not None]

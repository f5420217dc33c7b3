"""The DataLoader: loading in the training process while it dominates the step, unpinned host memory
feeding a GPU, and more worker processes than the machine has cores."""

from __future__ import annotations

from advisor.finding import Finding, RunFacts
from advisor.hookspecs import hookimpl

#: data loading share of the step above which loading in the main process is worth a finding
DATA_SHARE = 0.2


def _loader(run: RunFacts) -> dict | None:
    return run.workload.get("data_loader")


def _cores(run: RunFacts) -> int | None:
    return (run.facts.get("threads") or {}).get("cores") or (run.summary.get("utilisation") or {}).get("cpu_count")


def _described(loader: dict) -> str:
    return (f"DataLoader({loader.get('dataset')}, batch_size={loader.get('batch_size')}, "
            f"num_workers={loader.get('num_workers')}, pin_memory={loader.get('pin_memory')})")


def no_workers(run: RunFacts) -> Finding | None:
    loader = _loader(run)
    share = run.phase_share("data")
    if not loader or loader.get("num_workers") != 0 or share < DATA_SHARE:
        return None
    ms = (run.summary.get("breakdown") or {})["data"]["ms"]
    workers = max(min((_cores(run) or 2) - 1, 4), 1)
    return Finding(
        id="dataloader_no_workers", title="Data loading runs in the training process and holds up every step",
        evidence=(f"{_described(loader)}: the step waits {ms:.1f} ms for its batch ({share:.0%} of the step), "
                  "while no worker process prepares the next one."),
        severity=share,
        fix=(f"loader = DataLoader(dataset, batch_size={loader.get('batch_size')}, num_workers={workers},\n"
             "                    persistent_workers=True)   # batches are prepared while the step runs"))


def pin_memory_off(run: RunFacts) -> Finding | None:
    loader = _loader(run)
    if not loader or loader.get("pin_memory") or not run.gpu:
        return None
    pageable = run.device[run.device["cat"].eq("gpu_memcpy")
                          & run.device["name"].astype(str).str.contains("Pageable -> Device")]
    if pageable.empty:
        return None
    return Finding(
        id="dataloader_pin_memory", title="Batches are copied to the GPU from pageable memory",
        evidence=(f"{_described(loader)} feeds a GPU: {len(pageable) / run.steps:.1f} pageable host→device "
                  f"copies per step ({pageable['dur'].sum() / 1000 / run.steps:.2f} ms of copying per step), "
                  "each staged through a pinned buffer and unable to overlap with compute."),
        severity=run.time_share(pageable["dur"].sum()),
        fix=("loader = DataLoader(dataset, ..., pin_memory=True)\n"
             "x = x.to(device, non_blocking=True)   # the copy overlaps with the GPU's work"))


def too_many_workers(run: RunFacts) -> Finding | None:
    loader, cores = _loader(run), _cores(run)
    if not loader or not cores or (loader.get("num_workers") or 0) <= cores:
        return None
    workers = loader["num_workers"]
    return Finding(
        id="dataloader_too_many_workers", title="More DataLoader workers than CPU cores",
        evidence=(f"{_described(loader)} on a process allowed {cores} cores: {workers} workers and the training "
                  "process compete for them, and each worker holds its own copy of the dataset's state."),
        severity=max(run.phase_share("data"), 0.01),
        fix=f"loader = DataLoader(dataset, ..., num_workers={max(cores - 1, 1)})   # at most the cores you have")


@hookimpl
def advisor_findings(run: RunFacts) -> list[Finding]:
    return [f for f in (no_workers(run), pin_memory_off(run), too_many_workers(run)) if f is not None]

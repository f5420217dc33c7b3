"""DataLoader tuning: worker processes (persistent, with pinned memory for a GPU model) instead of the
script's settings, measured on the script's own dataset by timing batches under each setting."""

from __future__ import annotations

import contextlib
import math
import warnings

from advisor.hookspecs import hookimpl
from advisor.technique import Benchmark, Context, DoesNotApply, Estimate, Technique, Verdict, amdahl

#: worker counts tried (each one a technique)
WORKER_COUNTS = (2, 4)
#: seconds of loading each timed unit should take in the script's settings
UNIT_SECONDS = 0.3
#: below this share of the step in data loading there is little to gain
MIN_DATA_SHARE = 0.05
_SEED = 0


def _data_share(context: Context) -> float:
    return ((context.summary.get("breakdown") or {}).get("data") or {}).get("share") or 0.0


def _loader_info(context: Context) -> dict | None:
    return context.workload.get("data_loader")


def _loading_cpu_fraction(context: Context) -> float:
    """The part of data loading that keeps a core busy (the rest waits: storage, sleeps, locks), from the
    process's busy cores over the window, counting one busy core for the rest of the step."""
    share = _data_share(context)
    busy = (context.summary.get("utilisation") or {}).get("process_busy_cores")
    if busy is None or share <= 0:
        return 1.0
    return min(max((busy - (1.0 - share)) / share, 0.0), 1.0)


def _loading_time(workers: int, cpu: float, free_cores: float) -> float:
    """Time to load a batch relative to loading it in the main process: waiting overlaps across workers,
    CPU work only across the cores free for them."""
    workers = max(workers, 1)
    return (1.0 - cpu) / workers + cpu / max(min(workers, free_cores), 1.0)


class DataLoaderWorkers(Technique):
    """``num_workers`` worker processes, persistent across epochs, pinned memory for a GPU model."""

    def __init__(self, workers: int):
        self.workers = workers
        self.name = f"dataloader_workers_{workers}"
        self.title = f"Load batches in {workers} persistent DataLoader worker processes"
        self.snippet = (f"loader = DataLoader(dataset, batch_size=..., shuffle=...,\n"
                        f"                    num_workers={workers}, persistent_workers=True,\n"
                        f"                    pin_memory=torch.cuda.is_available())\n"
                        "# with pin_memory, copy with batch.to(device, non_blocking=True)\n"
                        "# workers are processes: the dataset must be picklable under the 'spawn' start method")

    def applies_to(self, context: Context) -> Verdict:
        info = _loader_info(context)
        if info is None:
            return Verdict(False, "no DataLoader fed the captured step")
        share = _data_share(context)
        if share < MIN_DATA_SHARE:
            return Verdict(False, f"data loading takes {share:.0%} of the step: little to gain")
        if info["num_workers"] >= self.workers:
            return Verdict(False, f"the DataLoader already has {info['num_workers']} workers")
        return Verdict(True, f"data loading takes {share:.0%} of the step, with {info['num_workers']} workers")

    def estimate(self, context: Context) -> Estimate:
        info, share = _loader_info(context), _data_share(context)
        cores = context.hardware.get("cpu_cores") or 1
        threads = context.hardware.get("torch_threads") or 1
        # The model's compute keeps up to its torch threads busy for the rest of the step.
        free = cores - (1.0 - share) * min(threads, cores)
        cpu = _loading_cpu_fraction(context)
        local = _loading_time(info["num_workers"], cpu, free) / _loading_time(self.workers, cpu, free)
        return Estimate(
            speedup=round(amdahl(share, local), 3),
            basis=f"{share:.0%} of the step waits on the DataLoader ({info['num_workers']} workers); about "
                  f"{cpu:.0%} of loading keeps a core busy (process busy cores over the window), which "
                  f"{self.workers} workers share among {max(free, 1):.1f} of the {cores} cores left by the "
                  f"model's {threads} compute threads; the rest (waiting) overlaps fully. Loading "
                  f"{local:.2f}x faster; its overlap with compute is not counted",
            risk="none for the values: the same items in the same order; each worker holds a copy of the "
                 "dataset, and random transforms draw from per-worker seeds")

    def apply(self, workload):
        raise DoesNotApply("measured on the DataLoader, not on the model step")

    def benchmark(self, workload) -> Benchmark:
        import torch

        if workload.data_loader is None:
            raise DoesNotApply("the DataLoader that fed the captured step is gone")
        pin = torch.cuda.is_available() and any(p.is_cuda for p in workload.model.parameters())
        return loader_benchmark(workload.data_loader, num_workers=self.workers, persistent_workers=True,
                                pin_memory=pin)


class PersistentWorkers(Technique):
    """Keep the workers of a loader that has them alive between epochs."""

    name = "dataloader_persistent_workers"
    title = "Keep the DataLoader's worker processes alive between epochs (persistent_workers=True)"
    snippet = "loader = DataLoader(dataset, ..., num_workers=N, persistent_workers=True)"

    def applies_to(self, context: Context) -> Verdict:
        info = _loader_info(context)
        if info is None:
            return Verdict(False, "no DataLoader fed the captured step")
        if not info["num_workers"] or info["persistent_workers"]:
            return Verdict(False, "the DataLoader has no workers" if not info["num_workers"]
                           else "its workers are already persistent")
        return Verdict(True, f"{info['num_workers']} workers are started again at every epoch")

    def estimate(self, context: Context) -> Estimate:
        length = _loader_info(context).get("dataset_length")
        return Estimate(speedup=None, basis="saves starting the workers once per epoch"
                        + (f" (of {length} items)" if length else "") + "; measured on short runs of batches, "
                        "where the start-up weighs more than in a whole epoch", risk="none")

    def apply(self, workload):
        raise DoesNotApply("measured on the DataLoader, not on the model step")

    def benchmark(self, workload) -> Benchmark:
        if workload.data_loader is None:
            raise DoesNotApply("the DataLoader that fed the captured step is gone")
        return loader_benchmark(workload.data_loader, persistent_workers=True)


def _settings(loader) -> dict:
    keys = ("num_workers", "pin_memory", "persistent_workers")
    return {k: getattr(loader, k) for k in keys}


def _like(loader, **settings):
    """A new DataLoader over ``loader``'s dataset with its batching and sampler kind, seeded so that every
    copy yields the same items in the same order, and with ``settings`` changed."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler
    from torch.utils.data.sampler import BatchSampler

    kwargs = dict(batch_size=loader.batch_size, drop_last=loader.drop_last, collate_fn=loader.collate_fn,
                  worker_init_fn=loader.worker_init_fn, timeout=loader.timeout,
                  multiprocessing_context=loader.multiprocessing_context,
                  generator=torch.Generator().manual_seed(_SEED))
    if not isinstance(loader.dataset, IterableDataset):
        if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
            raise DoesNotApply(f"the DataLoader has its own batch sampler ({type(loader.batch_sampler).__name__})")
        if type(loader.sampler) is RandomSampler:
            kwargs["sampler"] = RandomSampler(loader.dataset, replacement=loader.sampler.replacement,
                                              num_samples=loader.sampler.num_samples,
                                              generator=torch.Generator().manual_seed(_SEED))
        elif type(loader.sampler) is not SequentialSampler:
            raise DoesNotApply(f"the DataLoader has its own sampler ({type(loader.sampler).__name__})")
    merged = {**_settings(loader), **settings}
    if not merged["num_workers"]:
        merged["persistent_workers"] = False
    return DataLoader(loader.dataset, **kwargs, **merged)


@contextlib.contextmanager
def _workers_beyond_cores_allowed():
    """Without torch's warning that the workers outnumber the cores: that is measured, not guessed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        yield


def _first(loader):
    with _workers_beyond_cores_allowed():
        return next(iter(loader))


def _tensors(batch) -> list:
    import torch
    from torch.utils._pytree import tree_flatten

    return [x for x in tree_flatten(batch)[0] if isinstance(x, torch.Tensor)]


def _batch_quality(loader, variant) -> dict:
    """The first batch of ``variant`` against that of a copy of ``loader``, when two copies of ``loader``
    give the same first batch (the dataset's items are not random)."""
    from advisor.technique import relative_error

    first, again, other = (_tensors(_first(copy)) for copy in (_like(loader), _like(loader), variant))
    shapes = [tuple(t.shape) for t in first]
    if shapes != [tuple(t.shape) for t in other]:
        return {"output_rel_error": None, "note": "the batches' shapes differ"}
    if relative_error(first, again) > 0:
        return {"output_rel_error": None, "note": "the dataset's items are random: compared shapes only"}
    return {"output_rel_error": relative_error(first, other)}


def loader_benchmark(loader, **settings) -> Benchmark:
    """Batches of a copy of ``loader`` in its own settings against a copy with ``settings`` changed, each
    unit a fresh pass over enough batches to take about :data:`UNIT_SECONDS` in the script's settings."""
    import time

    loaders = {"baseline": _like(loader), "variant": _like(loader, **settings)}
    try:
        quality = _batch_quality(loader, loaders["variant"])
        started = time.perf_counter()
        _first(loaders["baseline"])
        per_batch = max(time.perf_counter() - started, 1e-4)
        batches = max(2 * settings.get("num_workers", loader.num_workers), math.ceil(UNIT_SECONDS / per_batch))
        try:
            batches = min(batches, len(loaders["baseline"]))
        except TypeError:  # an iterable dataset without a length
            pass
    except BaseException:
        loaders.clear()  # drops the workers of persistent copies
        raise

    def unit(key):
        def load():
            with _workers_beyond_cores_allowed():
                for _, _batch in zip(range(batches), loaders[key]):
                    pass
        return load

    return Benchmark(baseline=unit("baseline"), variant=unit("variant"), phases=("data",), quality=quality,
                     notes={"baseline": _settings(loader), "variant": _settings(loaders["variant"]),
                            "batches_per_unit": batches},
                     close=loaders.clear)


@hookimpl
def advisor_techniques(config):
    return [*(DataLoaderWorkers(k) for k in WORKER_COUNTS), PersistentWorkers()]

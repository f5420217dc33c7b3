"""Which DataLoaders the script iterates, and with which settings; the loaders themselves stay untouched.

The watch wraps ``DataLoader.__iter__`` to note each loader as the script starts iterating it. It holds
the last one only, and strongly: a loader made inside a ``for`` statement is referenced by nothing
else while its batches are used (its iterator does not point back to it). The loader iterated last
before the workload is captured is the one feeding the steps: its settings go into ``workload.json``
(``data_loader``), and techniques find the object itself as ``Workload.data_loader`` to build *new*
loaders over the same dataset.
"""

from __future__ import annotations

import functools

from torch.utils.data import DataLoader, IterableDataset


class LoaderWatch:
    """Notes the DataLoaders the script iterates."""

    def __init__(self):
        self._current: DataLoader | None = None
        self._undo = None

    def install(self) -> None:
        original = DataLoader.__iter__
        watch = self

        @functools.wraps(original)
        def advisor_loader_iter(self, *args, **kwargs):
            watch._current = self
            return original(self, *args, **kwargs)

        DataLoader.__iter__ = advisor_loader_iter
        self._undo = lambda: setattr(DataLoader, "__iter__", original)

    def uninstall(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def current(self) -> DataLoader | None:
        """The loader the script started iterating last."""
        return self._current


def describe_loader(loader: DataLoader) -> dict:
    """A loader's settings as plain JSON data."""
    dataset = loader.dataset
    iterable = isinstance(dataset, IterableDataset)
    try:
        length = len(dataset)
    except (TypeError, NotImplementedError):
        length = None
    return {
        "class": type(loader).__qualname__,
        "dataset": type(dataset).__qualname__,
        "dataset_length": length,
        "iterable_dataset": iterable,
        "batch_size": loader.batch_size,
        "num_workers": loader.num_workers,
        "pin_memory": bool(loader.pin_memory),
        "persistent_workers": bool(loader.persistent_workers),
        "prefetch_factor": loader.prefetch_factor,
        "drop_last": bool(loader.drop_last),
        "sampler": None if iterable else type(loader.sampler).__qualname__,
        "collate_fn": getattr(loader.collate_fn, "__qualname__", type(loader.collate_fn).__qualname__),
    }

"""CPU and memory of the child's whole process tree, sampled from advisor's own process."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.collectors.base import Availability, CollectorContext, SamplingCollector, read_artifact_csv
from advisor.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

SAMPLES_FILE = "samples.csv"
COLUMNS = (
    "time",
    "cpu_percent",
    "rss_bytes",
    "num_procs",
    "sys_mem_used_bytes",
    "sys_mem_available_bytes",
    "sys_mem_total_bytes",
)
#: seconds between two looks for the tree's new processes (a look reads every process's parent: 3 ms with 66
#: processes, more on a busy machine); between them, the processes known are sampled
SCAN_EVERY_S = 1.0
_INT_COLUMNS = ("rss_bytes", "num_procs", "sys_mem_used_bytes", "sys_mem_available_bytes", "sys_mem_total_bytes")


@dataclasses.dataclass
class _Tracked:
    process: object
    cpu_seconds: float


class PsutilSampler(SamplingCollector):
    """Samples CPU use and resident memory of the child and all its descendants.

    ``cpu_percent`` is the CPU time the whole tree used between two samples over the wall time between
    them (100 = one core busy). It is computed from per-process CPU times kept by pid, so a process that
    appears between two looks for new processes (every :data:`SCAN_EVERY_S`) counts from its creation; those
    found at the first look only serve as baselines. CPU a process used after the
    last sample before it vanished is not seen. The first pass in :meth:`start` only primes the
    baselines; every row has a defined ``cpu_percent``.
    """

    name = "psutil"
    side = "session"
    artifacts = (SAMPLES_FILE,)

    columns = COLUMNS

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(interval)
        self._psutil = None
        self._root = None
        self._tracked: dict[int, _Tracked] = {}
        self._last_mono: float | None = None
        self._scanned_once = False
        self._next_scan = 0.0

    def check(self) -> Availability:
        try:
            import psutil

            psutil.virtual_memory()
            psutil.Process().cpu_times()
        except Exception as exc:  # noqa: BLE001 - availability must never raise
            return Availability(False, f"psutil not usable: {type(exc).__name__}: {exc}")
        return Availability(True, f"psutil {psutil.__version__}")

    def _begin(self, context: CollectorContext) -> bool:
        import psutil

        self._psutil = psutil
        try:
            self._root = psutil.Process(context.pid)
        except psutil.Error:
            self._root = None
        self._measure()  # baselines only: the first measurement yields no row
        return True

    def _sample(self) -> list[dict]:
        row = self._measure()
        return [row] if row is not None else []

    def _tree(self, mono: float) -> list:
        psutil = self._psutil
        procs = {}
        if self._root is not None:
            try:
                if self._root.is_running():
                    procs[self._root.pid] = self._root
                    if mono >= self._next_scan:
                        self._next_scan = mono + SCAN_EVERY_S
                        for child in self._root.children(recursive=True):
                            procs[child.pid] = child
            except psutil.Error:
                pass
        for pid, tracked in self._tracked.items():
            if pid not in procs:
                try:
                    if tracked.process.is_running() and tracked.process.status() != psutil.STATUS_ZOMBIE:
                        procs[pid] = tracked.process
                except psutil.Error:
                    pass
        return list(procs.values())

    def _measure(self) -> dict | None:
        psutil = self._psutil
        wall, mono = time.time(), time.monotonic()
        cpu_delta = 0.0
        rss = 0
        seen: dict[int, _Tracked] = {}
        scanned = mono >= self._next_scan
        for proc in self._tree(mono):
            pid = proc.pid
            cached = self._tracked.get(pid)
            if cached is not None and cached.process == proc:
                proc = cached.process
            else:
                cached = None
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    mem = proc.memory_info()
            except psutil.Error:
                continue
            cpu_seconds = times.user + times.system
            if cached is not None:
                cpu_delta += max(0.0, cpu_seconds - cached.cpu_seconds)
            elif self._scanned_once:  # not there at the previous look: new since (create times are too coarse)
                cpu_delta += cpu_seconds
            seen[pid] = _Tracked(proc, cpu_seconds)
            rss += mem.rss
        self._tracked = seen
        self._scanned_once = self._scanned_once or scanned
        previous_mono = self._last_mono
        self._last_mono = mono
        if not seen or previous_mono is None:
            return None
        elapsed = mono - previous_mono
        vm = psutil.virtual_memory()
        return {
            "time": wall,
            "cpu_percent": 100.0 * cpu_delta / elapsed if elapsed > 0 else float("nan"),
            "rss_bytes": rss,
            "num_procs": len(seen),
            "sys_mem_used_bytes": vm.used,
            "sys_mem_available_bytes": vm.available,
            "sys_mem_total_bytes": vm.total,
        }


def load_samples(path: Path | str) -> pd.DataFrame:
    """Read a ``samples.csv`` written by :class:`PsutilSampler` (an empty frame with the columns if it has no rows)."""
    frame = read_artifact_csv(path, COLUMNS)
    frame = frame.astype({"time": "float64", "cpu_percent": "float64"})
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("int64") if not frame[column].isna().any() else frame[column]
    return frame


@hookimpl
def advisor_collectors(config: dict):
    """Built-in plugin ``collectors_psutil``: the script's process tree, sampled with psutil."""
    return [PsutilSampler()]

"""CPU and memory of the child's whole process tree, sampled from advisor's own process."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pandas as pd

from advisor.collectors.base import Availability, Collector, CollectorContext
from advisor.rundir_io import atomic_write_csv

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
_INT_COLUMNS = ("rss_bytes", "num_procs", "sys_mem_used_bytes", "sys_mem_available_bytes", "sys_mem_total_bytes")


@dataclasses.dataclass
class _Tracked:
    process: object
    cpu_seconds: float


class PsutilSampler(Collector):
    """Samples CPU use and resident memory of the child and all its descendants.

    ``cpu_percent`` is the CPU time the whole tree used between two samples over the wall time between
    them (100 = one core busy). It is computed from per-process CPU times kept by pid, so a process that
    appears between two samples counts from its creation, and one seen for the first time that was
    already running before the previous sample only serves as a baseline. CPU a process used after the
    last sample before it vanished is not seen. The first pass in :meth:`start` only primes the
    baselines; every row has a defined ``cpu_percent``.
    """

    name = "psutil"
    side = "session"
    artifacts = (SAMPLES_FILE,)

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = float(interval)
        self._psutil = None
        self._root = None
        self._run_dir: Path | None = None
        self._tracked: dict[int, _Tracked] = {}
        self._last_wall: float | None = None
        self._last_mono: float | None = None
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def check(self) -> Availability:
        try:
            import psutil

            psutil.virtual_memory()
            psutil.Process().cpu_times()
        except Exception as exc:  # noqa: BLE001 - availability must never raise
            return Availability(False, f"psutil not usable: {type(exc).__name__}: {exc}")
        return Availability(True, f"psutil {psutil.__version__}")

    def start(self, context: CollectorContext) -> None:
        import psutil

        self._psutil = psutil
        self._run_dir = Path(context.run_dir)
        try:
            self._root = psutil.Process(context.pid)
        except psutil.Error:
            self._root = None
        with self._lock:
            self._sample(record=False)
        self._thread = threading.Thread(target=self._loop, name="advisor-psutil-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopped or self._run_dir is None:
            return
        self._stopped = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 5 * self.interval))
        try:
            with self._lock:
                self._sample(record=True)
        except Exception:  # noqa: BLE001 - stop must not raise
            pass
        try:
            with self._lock:
                frame = pd.DataFrame(self._rows, columns=list(COLUMNS))
            atomic_write_csv(self._run_dir / SAMPLES_FILE, frame)
        except Exception:  # noqa: BLE001
            pass

    def _loop(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                with self._lock:
                    self._sample(record=True)
            except Exception:  # noqa: BLE001 - a bad sample must not end the sampling
                pass

    def _tree(self) -> list:
        psutil = self._psutil
        procs = {}
        if self._root is not None:
            try:
                if self._root.is_running():
                    procs[self._root.pid] = self._root
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

    def _sample(self, record: bool) -> None:
        psutil = self._psutil
        if psutil is None:
            return
        wall, mono = time.time(), time.monotonic()
        cpu_delta = 0.0
        rss = 0
        seen: dict[int, _Tracked] = {}
        for proc in self._tree():
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
                    created = proc.create_time()
            except psutil.Error:
                continue
            cpu_seconds = times.user + times.system
            if cached is not None:
                cpu_delta += max(0.0, cpu_seconds - cached.cpu_seconds)
            elif self._last_wall is not None and created >= self._last_wall:
                cpu_delta += cpu_seconds
            seen[pid] = _Tracked(proc, cpu_seconds)
            rss += mem.rss
        self._tracked = seen
        previous_mono = self._last_mono
        self._last_wall, self._last_mono = wall, mono
        if not record or not seen or previous_mono is None:
            return
        elapsed = mono - previous_mono
        vm = psutil.virtual_memory()
        self._rows.append(
            {
                "time": wall,
                "cpu_percent": 100.0 * cpu_delta / elapsed if elapsed > 0 else float("nan"),
                "rss_bytes": rss,
                "num_procs": len(seen),
                "sys_mem_used_bytes": vm.used,
                "sys_mem_available_bytes": vm.available,
                "sys_mem_total_bytes": vm.total,
            }
        )


def load_samples(path: Path | str) -> pd.DataFrame:
    """Read a ``samples.csv`` written by :class:`PsutilSampler` (an empty frame with the columns if it has no rows)."""
    frame = pd.read_csv(path)
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="float64")
    frame = frame[list(COLUMNS)]
    frame = frame.astype({"time": "float64", "cpu_percent": "float64"})
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("int64") if not frame[column].isna().any() else frame[column]
    return frame

"""Recording limits: a watchdog thread ends a recording that runs too long or would take too much memory.

Each recording (the light one before the first step boundary, then the window) is limited in time and
in memory. The time counts from the recording's start; for the pre-step recording it starts again at
the script's first outermost module call or backward, so that a data preparation before training does
not use it up. The memory is the growth of the process's resident memory since the recording started,
projected to what stopping the recording will take: torch's profiler materialises the recorded events
when it stops, at 6-11 times the memory they held while recorded (measured on torch 2.13), so a
recording is ended before ``growth * EXPANSION`` passes the limit. The peak of the script's process
then stays within about the limit above what it reached without advisor.

Growth that is the script's own (a dataset loaded, a first step's activations) would end the pre-step
recording early: there the runner first stops the recording and sees what its events took; when that
is little, it records again and counts the growth from then (``pre_step_restarts`` in runner.json).

The watchdog looks every :data:`POLL_S` seconds, from a thread of its own (a recording of tiny ops grows
by 100 MB a second and more), and counts the growth it expects until its next look as already there.
When a limit is passed it sends the main thread a signal whose handler (installed by the runner) ends
the recording: this works while the script makes no module call at all, and takes effect when the main
thread next runs Python code (after the torch op it is in).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Callable

import psutil

DEFAULT_SECONDS = 60.0
DEFAULT_MEGABYTES = 1024.0
EXPANSION = 12.0
POLL_S = 0.02
TIME, MEMORY = "time", "memory"
#: the recordings (see :mod:`advisor.runner.window`)
PRE_STEP, WINDOW = "pre_step", "window"
#: the step detection of a recording that a limit ended before any step boundary, and how many equal
#: slices of time the analysis cuts it into
TIME_SLICES = "time_slices"
TIME_SLICE_COUNT = 10
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass
class RecordLimits:
    """``seconds`` of one recording and ``megabytes`` it may add to the process's peak memory."""

    seconds: float = DEFAULT_SECONDS
    megabytes: float = DEFAULT_MEGABYTES


def limit_signal() -> int:
    """The signal the watchdog sends: a real-time one where there are (SIGUSR1/2 are often taken by
    job schedulers' handlers in training scripts)."""
    return signal.SIGRTMAX - 2 if hasattr(signal, "SIGRTMAX") else signal.SIGUSR2


def limit_text(reason: str, state: dict) -> str:
    """One line saying which limit ended a recording."""
    if reason == TIME:
        return (f"recording limit reached: {state['elapsed_s']:.1f} s of recording "
                f"(--record-limit-s {state['limit_s']:g})")
    return (f"recording limit reached: the recording would take about {state['projected_mb']:.0f} MB when saved "
            f"(--record-limit-mb {state['limit_mb']:g})")


def peak_rss_bytes() -> int | None:
    """The peak resident memory of this process so far."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int:
    """This process's resident memory, cheaply where ``/proc`` has it (the watchdog reads it 50 times a second)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return psutil.Process().memory_info().rss



def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise): after a recording stops."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Watchdog:
    """Polls the armed recording's time and memory; calls ``on_trip`` (from the main thread) when one passes."""

    def __init__(self, limits: RecordLimits, interval: float = POLL_S):
        self.limits = limits
        self.interval = interval
        #: ``"time"`` or ``"memory"`` once a limit of the armed recording was passed
        self.tripped: str | None = None
        self._armed = False
        self._t0 = 0.0
        self._rss0 = 0
        self._last = (0.0, 0)  # time and resident memory at the last look
        self._signal = limit_signal()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler = None

    def start(self, on_trip: Callable[[], None]) -> None:
        """Install the signal handler (call from the main thread) and start polling."""
        self._previous_handler = signal.signal(self._signal, lambda signum, frame: on_trip())
        self._thread = threading.Thread(target=self._run, name="advisor-record-limits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a signal still on its way is ignored."""
        self._armed = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        signal.signal(self._signal, signal.SIG_IGN)

    def arm(self) -> None:
        """A recording starts: both clocks start now."""
        self._t0, self._rss0 = time.monotonic(), rss_bytes()
        self._last = (self._t0, self._rss0)
        self.tripped = None
        self._armed = True

    def restart_clock(self) -> None:
        self._t0 = time.monotonic()

    def rebase_memory(self) -> None:
        """Count memory growth from now (the growth so far was found to be the script's own)."""
        self._rss0 = rss_bytes()
        self._last = (time.monotonic(), self._rss0)
        self.tripped = None

    def disarm(self) -> None:
        self._armed = False
        self.tripped = None

    def state(self) -> dict:
        """Elapsed seconds and memory growth of the armed recording, and the limits."""
        growth = max(rss_bytes() - self._rss0, 0) / 2**20
        return {"limit_s": self.limits.seconds, "limit_mb": self.limits.megabytes,
                "elapsed_s": round(time.monotonic() - self._t0, 3), "rss_growth_mb": round(growth, 1),
                "projected_mb": round(growth * EXPANSION, 1)}

    def _passed(self) -> str | None:
        now, rss = time.monotonic(), rss_bytes()
        then, before = self._last
        self._last = (now, rss)
        if now - self._t0 > self.limits.seconds:
            return TIME
        coming = max(rss - before, 0) * self.interval / max(now - then, self.interval)
        if (rss - self._rss0 + coming) * EXPANSION > self.limits.megabytes * 2**20:
            return MEMORY
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._armed or self.tripped is not None:
                continue
            try:
                reason = self._passed()
            except (OSError, psutil.Error):
                continue
            if reason is not None and self._armed:
                self.tripped = reason
                signal.pthread_kill(self._main, self._signal)

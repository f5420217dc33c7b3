"""Recording limits: a watchdog thread ends a recording that runs too long or would take too much memory.

Each recording (the light one before the first step boundary, then the window) is limited in time and
in memory. The time counts from the recording's start; for the pre-step recording it starts again at
the script's first outermost module call or backward, so that a data preparation before training does
not use it up. The memory is projected to the peak that saving the recording will reach: torch's
profiler materialises the recorded events when it stops, at 6-11 times the memory they held while
recorded (measured on torch 2.13), so the events count :data:`EXPANSION` times, on top of what the
process's resident memory grew since the recording started (see :class:`Watchdog`). The peak of the
script's process then stays within about the limit above what it reached without advisor.

Before the first step boundary, growth of the script's own (a dataset loaded, a first step's
activations) cannot be told from recorded events: when the memory limit strikes there, the runner stops
the recording and sees what its events took. When that is little, it keeps what was recorded, records
nothing more until the window, and only the time limit still counts (``pre_step_stopped`` in
runner.json). A new recording is never started there: a ``record_function`` range open across a stop and
a start corrupts torch's profiler (seen: SIGSEGV on torch 2.13).

The watchdog looks every :data:`POLL_S` seconds, from a thread of its own (a recording of tiny ops grows
by 100 MB a second and more), and counts the growth it expects until its next look as already there.
When a limit is passed it sends the main thread a signal whose handler (installed by the runner) ends
the recording: this works while the script makes no module call at all, and takes effect when the main
thread next runs Python code (after the torch op it is in).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Callable

import psutil

from advisor.heap import heap_in_use

DEFAULT_SECONDS = 60.0
DEFAULT_MEGABYTES = 1024.0
EXPANSION = 12.0
POLL_S = 0.02
TIME, MEMORY = "time", "memory"
#: the recordings (see :mod:`advisor.runner.window`)
PRE_STEP, WINDOW = "pre_step", "window"
#: the step detection of a recording that a limit ended before any step boundary, and how many equal
#: slices of time the analysis cuts it into
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


class Watchdog:
    """Polls the armed recording's time and memory; calls ``on_trip`` (from the main thread) when one passes.

    Memory, projected to the peak that saving the recording will reach: the resident memory's growth, plus
    :data:`EXPANSION` times the recorded events, which the growth of the heap in use stands for (glibc; else
    the resident memory's). In the window that growth is taken at the last step boundary
    (:meth:`note_boundary`), where a step's transient tensors are freed; before the first boundary there is
    no such moment, so the script's own tensors count as events too, and the runner checks what a stop
    really takes before it believes them.
    """

    def __init__(self, limits: RecordLimits, interval: float = POLL_S):
        self.limits = limits
        self.interval = interval
        #: ``"time"`` or ``"memory"`` once a limit of the armed recording was passed
        self.tripped: str | None = None
        self._armed = False
        self._recording: str | None = None
        self._memory = True
        self._t0 = 0.0
        self._rss0 = 0
        self._heap0: int | None = None
        self._events = 0  # bytes of recorded events, as of the last step boundary (window)
        self._last = (0.0, 0, 0)  # time, resident memory and events at the last look
        self._signal = limit_signal()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        #: set while a recording is armed: the thread sleeps on it otherwise, instead of waking 50 times a second
        #: for the rest of the script (that cost was within this machine's noise, but it is no work of advisor's)
        self._polling = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_trip: Callable[[], None]) -> None:
        """Install the signal handler (call from the main thread) and start polling."""
        signal.signal(self._signal, lambda signum, frame: on_trip())
        self._thread = threading.Thread(target=self._run, name="advisor-record-limits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a signal still on its way is ignored."""
        self._armed = False
        self._stop.set()
        self._polling.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        signal.signal(self._signal, signal.SIG_IGN)

    def arm(self, recording: str) -> None:
        """A recording (``pre_step`` or ``window``) starts: both clocks start now."""
        self._t0, self._rss0, self._heap0 = time.monotonic(), rss_bytes(), heap_in_use()
        self._last = (self._t0, self._rss0, 0)
        self._recording, self._events, self._memory = recording, 0, True
        self.tripped = None
        self._armed = True
        self._polling.set()

    def restart_clock(self) -> None:
        self._t0 = time.monotonic()

    def memory_off(self) -> None:
        """Only time counts from now (the recording stopped growing)."""
        self._memory = False
        self.tripped = None

    def note_boundary(self) -> None:
        """A step of the window ended (called from the main thread): take stock of the recorded events."""
        self._events = self._events_now(rss_bytes())

    def _events_now(self, rss: int) -> int:
        heap = heap_in_use() if self._heap0 is not None else None
        return max(rss - self._rss0 if heap is None else heap - self._heap0, 0)

    def disarm(self) -> None:
        self._armed = False
        self._polling.clear()
        self.tripped = None

    def state(self) -> dict:
        """Elapsed seconds and memory growth of the armed recording, and the limits."""
        rss = rss_bytes()
        growth = max(rss - self._rss0, 0)
        events = self._events if self._recording == WINDOW else self._events_now(rss)
        return {"limit_s": self.limits.seconds, "limit_mb": self.limits.megabytes,
                "elapsed_s": round(time.monotonic() - self._t0, 3), "rss_growth_mb": round(growth / 2**20, 1),
                "events_mb": round(events / 2**20, 1), "projected_mb": round((growth + EXPANSION * events) / 2**20, 1)}

    def _passed(self) -> str | None:
        now, rss = time.monotonic(), rss_bytes()
        events = self._events if self._recording == WINDOW else self._events_now(rss)
        then, rss_then, events_then = self._last
        self._last = (now, rss, events)
        if now - self._t0 > self.limits.seconds:
            return TIME
        if not self._memory:
            return None
        ahead = self.interval / max(now - then, self.interval)  # the growth until the next look, as now
        rss_growth = rss - self._rss0 + max(rss - rss_then, 0) * ahead
        events += max(events - events_then, 0) * ahead
        if rss_growth + EXPANSION * events > self.limits.megabytes * 2**20:
            return MEMORY
        return None

    def _run(self) -> None:
        while self._polling.wait() and not self._stop.wait(self.interval):
            if not self._armed or self.tripped is not None:
                continue
            try:
                reason = self._passed()
            except (OSError, psutil.Error):
                continue
            if reason is not None and self._armed:
                self.tripped = reason
                signal.pthread_kill(self._main, self._signal)

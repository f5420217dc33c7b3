"""Hardware and software counters of the child, by running it under ``perf stat``."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.collectors.base import Availability, Collector, CollectorContext, read_artifact_csv
from advisor.rundir_io import atomic_write_csv
from advisor.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

RAW_FILE = "perf_stat.txt"
PERF_STAT_FILE = "perf_stat.csv"
HARDWARE_EVENTS = ("cycles", "instructions", "cache-references", "cache-misses", "branches", "branch-misses")
SOFTWARE_EVENTS = ("task-clock", "context-switches", "cpu-migrations", "page-faults")
EVENTS = ",".join(HARDWARE_EVENTS + SOFTWARE_EVENTS)
COLUMNS = ("event", "value", "unit", "supported", "counted", "running_percent", "raw_event")
TRIAL_TIMEOUT_S = 10.0
_PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")
_PMU_EVENT = re.compile(r"^[\w.-]+/([^/]+)/([a-zA-Z]*)$")


def _base_event(raw: str) -> str:
    """``cycles:u`` -> ``cycles``; ``cpu_core/cycles/u`` -> ``cycles``; otherwise the name itself."""
    match = _PMU_EVENT.match(raw)
    if match:
        raw = match.group(1)
    return raw.split(":", 1)[0]


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value


def parse_perf_csv(text: str) -> pd.DataFrame:
    """Parse ``perf stat -x ,`` output into a frame of :data:`COLUMNS`.

    ``event`` is the event name without modifier or PMU prefix (``cycles:u`` -> ``cycles``), ``raw_event``
    the name as perf printed it. ``value`` is NaN for ``<not supported>`` and ``<not counted>``
    (``supported`` / ``counted`` say which); ``running_percent`` is the share of the run the counter was
    scheduled (below 100 when perf multiplexed it and scaled the value). Comments, blank and
    unparseable lines are skipped.
    """
    import pandas as pd

    frame = pd.DataFrame(_rows(text), columns=list(COLUMNS))
    return frame.astype({"value": "float64", "supported": "bool", "counted": "bool", "running_percent": "float64"})


def _rows(text: str) -> list[dict]:
    """The rows of :func:`parse_perf_csv`, as dicts."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[2]:
            continue
        value_text, unit, raw_event = fields[0], fields[1], fields[2]
        supported = value_text != "<not supported>"
        counted = supported and value_text != "<not counted>"
        value = _float(value_text) if counted else math.nan
        if counted and math.isnan(value):
            continue
        rows.append(
            {
                "event": _base_event(raw_event),
                "value": value,
                "unit": unit,
                "supported": supported,
                "counted": counted,
                "running_percent": _float(fields[4]) if len(fields) > 4 else math.nan,
                "raw_event": raw_event,
            }
        )
    return rows


def _counted(text: str) -> set[str]:
    """The events that ``perf stat -x ,`` output counted."""
    return {row["event"] for row in _rows(text) if row["counted"]}


def _paranoid_note() -> str:
    try:
        level = _PARANOID.read_text().strip()
    except OSError:
        return "kernel.perf_event_paranoid unreadable"
    return f"kernel.perf_event_paranoid={level}; non-root users need <= 2 to count their own processes"


def _trial(events: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["perf", "stat", "-x", ",", "-e", events, "true"],
        capture_output=True,
        text=True,
        timeout=TRIAL_TIMEOUT_S,
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class PerfStat(Collector):
    """Runs the child under ``perf stat`` (see :meth:`wrap_command`) and turns its output into a CSV.

    Note that the child's pid then is perf's, with the script as perf's child; ``perf stat`` passes the
    script's exit status through and writes its counts only when the script ends.
    """

    name = "perf"
    side = "session"
    artifacts = (RAW_FILE, PERF_STAT_FILE)

    def __init__(self) -> None:
        self._run_dir: Path | None = None

    def check(self) -> Availability:
        try:
            if shutil.which("perf") is None:
                return Availability(False, "perf not found on PATH")
            try:  # one trial for all three (each costs a tenth of a second before the script starts)
                result = _trial("task-clock,cycles,instructions")
                counted = _counted(result.stderr)
                if result.returncode != 0 or "task-clock" not in counted:
                    result = _trial("task-clock")  # the hardware events may be what made it fail
                    counted = _counted(result.stderr)
            except subprocess.TimeoutExpired:
                return Availability(False, f"'perf stat' trial timed out after {TRIAL_TIMEOUT_S:.0f} s")
            if result.returncode != 0 or not counted:
                error = _last_line(result.stderr) or f"exit status {result.returncode}"
                return Availability(False, f"'perf stat' does not work here: {error} ({_paranoid_note()})")
            counted = sorted(counted & {"cycles", "instructions"})
            if len(counted) == 2:
                return Availability(True, "hardware and software counters")
            if counted:
                return Availability(True, f"software counters and only some hardware counters ({', '.join(counted)})")
            return Availability(True, "software counters only: hardware counters not supported on this machine")
        except Exception as exc:  # noqa: BLE001 - availability must never raise
            return Availability(False, f"perf check failed: {type(exc).__name__}: {exc}")

    def wrap_command(self, command: list[str], run_dir: Path) -> list[str]:
        self._run_dir = Path(run_dir)
        return ["perf", "stat", "-x", ",", "-o", str(self._run_dir / RAW_FILE), "-e", EVENTS, "--", *command]

    def start(self, context: CollectorContext) -> None:
        if self._run_dir is None:
            self._run_dir = Path(context.run_dir)

    def stop(self) -> None:
        if self._run_dir is None:
            return
        try:
            raw = self._run_dir / RAW_FILE
            text = raw.read_text(errors="replace") if raw.exists() else ""
            atomic_write_csv(self._run_dir / PERF_STAT_FILE, parse_perf_csv(text))
        except Exception:  # noqa: BLE001 - stop must not raise
            pass


def load_perf_stat(path: Path | str) -> pd.DataFrame:
    """Read a ``perf_stat.csv`` written by :class:`PerfStat`."""
    frame = read_artifact_csv(path, COLUMNS)
    frame["unit"] = frame["unit"].fillna("").astype(str)
    frame["event"] = frame["event"].fillna("").astype(str)
    frame["raw_event"] = frame["raw_event"].fillna("").astype(str)
    return frame.astype({"value": "float64", "supported": "bool", "counted": "bool", "running_percent": "float64"})


@hookimpl
def advisor_collectors(config: dict):
    """Built-in plugin ``collectors_perf``: ``perf stat`` counters of the script's process."""
    return [PerfStat()]

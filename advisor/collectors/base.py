"""What every collector is: a source of one raw artifact in the run directory.

A collector never fails the run. When it cannot work on this machine it says so through
:meth:`Collector.check`, and the run records ``unavailable: <reason>``.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from advisor.rundir_io import atomic_write_csv

if TYPE_CHECKING:  # pandas is imported where a frame is made: not before the script is launched
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a collector can run here, and why (a reason is given either way when useful)."""

    available: bool
    reason: str = ""

    def to_json(self) -> dict:
        return {"available": self.available, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class CollectorContext:
    """What a session-side collector is told when the script starts.

    :param pid: the process id of the child that runs the script (its process tree is the workload).
    :param run_dir: the run directory; a collector writes its artifact there when it stops.
    """

    pid: int
    run_dir: Path


class Collector:
    """Base class of collectors.

    ``side`` is ``"session"`` for collectors that watch the child from advisor's own process
    (psutil, NVML, perf) and ``"runner"`` for the one that must live inside the child
    (torch.profiler). A session-side collector:

    - :meth:`check` is called first; when it answers unavailable nothing else is called;
    - :meth:`wrap_command` may prefix the child's command line (``perf stat`` does);
    - :meth:`start` is called once the child runs, :meth:`stop` after it has exited (or was killed);
      ``stop`` writes the artifact atomically and must not raise.
    """

    name: str = "collector"
    side: Literal["session", "runner"] = "session"
    #: file names (relative to the run directory) this collector writes
    artifacts: tuple[str, ...] = ()

    def check(self) -> Availability:
        return Availability(True)

    def wrap_command(self, command: list[str], run_dir: Path) -> list[str]:
        return command

    def start(self, context: CollectorContext) -> None:
        pass

    def stop(self) -> None:
        pass


class SamplingCollector(Collector):
    """A session-side collector that samples every ``interval`` seconds on a thread of its own and
    writes its rows as one CSV (``artifacts[0]``, columns :attr:`columns`) when stopped.

    Subclasses implement :meth:`_sample` (the rows of one sample) and may implement :meth:`_begin`
    (set-up; False means nothing to sample) and :meth:`_end`. A sample that raises is skipped.
    """

    columns: tuple[str, ...] = ()

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = float(interval)
        self._run_dir: Path | None = None
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def _begin(self, context: CollectorContext) -> bool:
        return True

    def _sample(self) -> list[dict]:
        raise NotImplementedError

    def _end(self) -> None:
        pass

    def start(self, context: CollectorContext) -> None:
        self._run_dir = Path(context.run_dir)
        if not self._begin(context):
            return
        self._thread = threading.Thread(target=self._loop, name=f"advisor-{self.name}", daemon=True)
        self._thread.start()

    def _take_sample(self) -> None:
        try:
            rows = self._sample()
        except Exception:  # a failed sample is skipped; sampling goes on
            return
        with self._lock:
            self._rows.extend(rows)

    def _loop(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._take_sample()

    def stop(self) -> None:
        if self._stopped or self._run_dir is None:
            return
        self._stopped = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10 + 5 * self.interval)
            self._take_sample()
        try:
            self._end()
        except Exception:  # stop must not raise
            pass
        import pandas as pd

        with self._lock:
            frame = pd.DataFrame(self._rows, columns=list(self.columns))
        try:
            atomic_write_csv(self._run_dir / self.artifacts[0], frame)
        except OSError:
            pass


def read_artifact_csv(path: Path | str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a collector's CSV with exactly ``columns`` (missing ones added empty), in that order."""
    import pandas as pd

    frame = pd.read_csv(path)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="float64")
    return frame[list(columns)]

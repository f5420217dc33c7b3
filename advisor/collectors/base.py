"""What every collector is: a source of one raw artifact in the run directory.

A collector never fails the run. When it cannot work on this machine it says so through
:meth:`Collector.check`, and the run records ``unavailable: <reason>``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal


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

"""The public types of technique plugins: what a technique answers and what it is given.

A technique plugin implements :func:`advisor.hookspecs.advisor_techniques` and returns
:class:`Technique` objects. advisor calls, in the script's process once the window is recorded:

1. :meth:`Technique.applies_to` with the :class:`Context` (the run's summary, the captured workload's
   description, the hardware) — the reason is shown either way;
2. :meth:`Technique.estimate`, before anything runs — it must say what it is based on;
3. :meth:`Technique.apply` on a private copy of the captured workload, which advisor then times
   against the unchanged copy, interleaved, and checks for numerical change.

A technique never touches the user's objects: it only changes the copy it is given.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.runner.capture import Workload


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a technique applies to this run, and why (or why not)."""

    applies: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The expected effect, made before anything runs.

    :param speedup: expected step-time ratio (baseline / variant), None when unknown.
    :param memory_bytes: expected change of peak memory (negative saves), None when unknown.
    :param basis: what the estimate rests on (time shares, hardware, measured peaks).
    :param risk: the numerical risk in words ("none", "bf16 rounding: ~1e-2 relative", ...).
    """

    speedup: float | None
    memory_bytes: int | None = None
    basis: str = ""
    risk: str = "none"


@dataclasses.dataclass(frozen=True)
class Context:
    """What a technique may look at.

    :param summary: the run's summary (the same dict as ``advisor profile --json``).
    :param workload: the captured workload's description (``workload.json``).
    :param hardware: ``cpu_flags`` (set of str), ``cuda`` (bool), ``gpus`` (list of dicts with
        ``name``, ``compute_capability``, ``total_memory``), ``device`` ("cpu" or "cuda").
    """

    summary: dict
    workload: dict
    hardware: dict

    def share_of(self, *op_names: str) -> float:
        """Share of the window's time spent in ops whose names contain any of ``op_names``."""
        return sum(op.get("share") or 0.0 for op in self.summary.get("hot_ops", [])
                   if any(name in op["name"] for name in op_names))


class Technique:
    """Base class of techniques; subclasses set the attributes and implement the three methods."""

    #: short identifier used by ``--techniques`` and ``--apply``
    name: str = ""
    #: one line for people
    title: str = ""
    #: how to make the same change in one's own script
    snippet: str = ""

    def applies_to(self, context: Context) -> Verdict:
        raise NotImplementedError

    def estimate(self, context: Context) -> Estimate:
        raise NotImplementedError

    def apply(self, workload: Workload) -> Workload:
        """Change ``workload`` (a private copy) and return it."""
        raise NotImplementedError


def amdahl(share: float, local_speedup: float) -> float:
    """Whole-step speedup when ``share`` of the step gets ``local_speedup`` faster."""
    share = min(max(share, 0.0), 1.0)
    return 1.0 / ((1.0 - share) + share / local_speedup)

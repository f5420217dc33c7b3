"""Which measurements count and in which order: the gain carried over to the whole step, the ranking of the
records, and the pairs worth measuring together. Pure functions of the records: no torch here, so the views rank
without importing it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from advisor.technique import Context, Estimate, Technique, Verdict, amdahl
from advisor.verdict import is_gain

if TYPE_CHECKING:
    from advisor.workload import Workload


class Combined(Technique):
    """Two techniques applied one after the other, to measure whether they add up."""

    def __init__(self, first: Technique, second: Technique):
        self.parts = (first, second)
        self.name = f"{first.name}+{second.name}"
        self.title = f"{first.title}, and {second.title[:1].lower()}{second.title[1:]}"
        self.snippet = f"{first.snippet}\n# and\n{second.snippet}"

    def applies_to(self, context: Context) -> Verdict:
        return Verdict(True, "both apply; measured together")

    def estimate(self, context: Context) -> Estimate:
        speedups = [t.estimate(context).speedup for t in self.parts]
        product = None if None in speedups else speedups[0] * speedups[1]
        return Estimate(speedup=product, basis="product of the two estimates (assumes they are independent)",
                        risk="; ".join(t.estimate(context).risk for t in self.parts))

    def apply(self, workload: Workload) -> Workload:
        return self.parts[1].apply(self.parts[0].apply(workload))


def family(name: str) -> str:
    """Variants of one technique (``batch_size_x2``/``_x4``, ``prune_structured_25``/``_50``) share a family."""
    return re.sub(r"_x?\d+$", "", name)


def pairs_worth_measuring(records: list[dict], techniques: dict[str, Technique], top: int | None = 3,
                          threshold: float = 1.05) -> list[Combined]:
    """Pairs among the ``top`` (None: all) best measured singles that gained at least ``threshold``,
    one technique per family; techniques measured by their own benchmark are not paired."""
    gaining, families = [], set()
    for r in sorted(records, key=lambda r: -((r.get("measured") or {}).get("speedup") or 0)):
        speedup = (r.get("measured") or {}).get("speedup") or 0
        name = r.get("technique")
        if r.get("status") == "measured" and speedup >= threshold and name in techniques and \
                (threshold <= 0 or is_gain(r)) \
                and family(name) not in families and not r["measured"].get("phases"):
            gaining.append(techniques[name])
            families.add(family(name))
    gaining = gaining[:top]
    return [Combined(a, b) for i, a in enumerate(gaining) for b in gaining[i + 1:]]


def phase_share(summary: dict, phases) -> float | None:
    """Share of the script's step spent in ``phases`` (None when the step breakdown is unknown)."""
    parts = summary.get("breakdown") or {}
    if not parts:
        return None
    return sum(parts.get(p, {}).get("share", 0.0) for p in phases)


def replayed_share(summary: dict, training: bool) -> float | None:
    """Share of the script's step that the replayed workload covers (forward, and for training backward
    and the optimizer); data loading and the rest of the script's step are not replayed."""
    return phase_share(summary, ("forward", "backward", "optimizer") if training else ("forward",))


def project(records: list[dict], summary: dict, training: bool) -> None:
    """Add ``projected_speedup``: the measured gain carried over to the whole step, through the share of
    the phases it was measured on (the replayed step's, unless the measurement names its ``phases``)."""
    replayed = replayed_share(summary, training)
    for r in records:
        measured = r.get("measured")
        share = phase_share(summary, measured["phases"]) if measured and measured.get("phases") else replayed
        if measured and measured.get("speedup") and share is not None:
            measured["step_share"] = round(share, 4)
            measured["projected_speedup"] = round(amdahl(share, measured["speedup"]), 4)
            measured["projected_speedup_low"] = round(amdahl(share, measured["speedup_low"]), 4)


_VERDICT_ORDER = {"gain": 0, "gain, outputs change": 1, "no gain": 2}


def rank(records: list[dict]) -> list[dict]:
    """Gains first, those within :data:`advisor.verdict.QUALITY_TOLERANCE` before the others, then measurements
    without a gain, then changed steps, each by the lower quartile of its projected (else measured) speedup, so
    that a noisy gain does not outrank a steady one; then the unmeasured by estimated speedup;
    inapplicable last."""
    def key(r):
        measured = r.get("measured") or {}
        gain = measured.get("projected_speedup_low") or measured.get("speedup_low")
        verdict = r.get("verdict")
        order = _VERDICT_ORDER.get(verdict, 3) if verdict else 4
        estimated = (r.get("estimate") or {}).get("speedup")
        return (order, -(gain or 0), estimated is None, -(estimated or 0), not r.get("applies"))
    return sorted(records, key=key)

"""Whether a measured trial is a gain: pure functions over the JSON records, shared by the trials and the views."""

from __future__ import annotations

#: outputs or gradients that change by more than this (relative) make a gain one whose outputs change
QUALITY_TOLERANCE = 0.05

#: a measured ratio must reach this (median) to count as a gain: the noise between processes is ~±10 %
GAIN_THRESHOLD = 1.1


def judge(measured: dict) -> str:
    """Whether a measurement is a gain: ``gain``, ``gain, outputs change`` (beyond
    :data:`QUALITY_TOLERANCE`), ``no gain`` (under :data:`GAIN_THRESHOLD`, or a lower quartile under 1),
    or a changed step: gradients the script computes left out, or timed outputs that differ from the
    baseline's far more than the checked copy's did (a variant that caches or skips work)."""
    q = measured.get("quality") or {}
    if (q.get("gradients_left_out") or 0) > 0.01:
        return f"step changed: leaves out the gradients of {q['gradients_left_out']:.0%} of the trained parameters"
    fresh, timed = q.get("output_rel_error"), q.get("timed_output_rel_error")
    if timed is not None and timed > max(QUALITY_TOLERANCE, 10 * (fresh or 0.0)):
        return (f"step changed: its timed outputs differ by {timed:.2g} from the baseline's "
                f"(checked copy: {fresh or 0:.2g})")
    if not (measured.get("speedup", 0) >= GAIN_THRESHOLD and measured.get("speedup_low", 0) > 1.0):
        return "no gain"
    errors = [e for e in (fresh, q.get("grad_rel_error")) if e is not None]
    return "gain, outputs change" if any(e > QUALITY_TOLERANCE for e in errors) else "gain"


def is_gain(record: dict) -> bool:
    """True when a record's measurement is a gain (its numerical change aside)."""
    return str(record.get("verdict", "")).startswith("gain")


def outcome(record: dict) -> str:
    """What a record's status column shows: the verdict of a measurement, else the status."""
    return record.get("verdict") or record.get("status", "") if record.get("status") == "measured" \
        else record.get("status", "")

"""Two runs side by side: step time, the breakdown, and the hot ops whose self time moved the most."""

from __future__ import annotations


def _ratio(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None else None


def compare(a: dict, b: dict, top: int = 10) -> dict:
    """Compare summary ``b`` against summary ``a`` (the baseline); plain JSON data.

    ``ratio`` is b over a (below 1: b is faster); ``hot_ops`` holds the ops whose self time per step
    changed the most, in either direction, ops seen in only one of the runs included.
    """
    steps_a, steps_b = a.get("steps") or {}, b.get("steps") or {}
    phases = list(dict.fromkeys([*(a.get("breakdown") or {}), *(b.get("breakdown") or {})]))
    breakdown = {}
    for phase in phases:
        ms_a = ((a.get("breakdown") or {}).get(phase) or {}).get("ms")
        ms_b = ((b.get("breakdown") or {}).get(phase) or {}).get("ms")
        breakdown[phase] = {"a_ms": ms_a, "b_ms": ms_b,
                            "delta_ms": None if ms_a is None or ms_b is None else round(ms_b - ms_a, 6)}
    per_step_a, per_step_b = _per_step(a), _per_step(b)
    moved = []
    for name in dict.fromkeys([*per_step_a, *per_step_b]):
        ms_a, ms_b = per_step_a.get(name), per_step_b.get(name)
        moved.append({"name": name, "a_ms": ms_a, "b_ms": ms_b, "delta_ms": round((ms_b or 0.0) - (ms_a or 0.0), 6),
                      "ratio": _ratio(ms_a, ms_b)})
    moved.sort(key=lambda op: -abs(op["delta_ms"]))
    return {
        "a": {"run_dir": a.get("run_dir"), "target": (a.get("target") or {}).get("name")},
        "b": {"run_dir": b.get("run_dir"), "target": (b.get("target") or {}).get("name")},
        "step_ms": {"a": steps_a.get("median_ms"), "b": steps_b.get("median_ms"),
                    "ratio": _ratio(steps_a.get("median_ms"), steps_b.get("median_ms"))},
        "breakdown": breakdown,
        "hot_ops": moved[:top],
    }


def _per_step(summary: dict) -> dict[str, float]:
    """Self time per recorded step of each hot op (the whole window when no step was recorded)."""
    steps = (summary.get("steps") or {}).get("count") or 1
    return {op["name"]: op["self_time_ms"] / steps for op in summary.get("hot_ops") or []
            if op.get("self_time_ms") is not None}

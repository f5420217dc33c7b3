"""Measured gains against the machine's roofs: a gain that would run the step's FLOPs faster than the fastest
peak measured on this machine cannot be the same work done faster. Such a record is flagged ``suspect`` (its
verdict says so, so it is neither a gain nor ranked first). Torch-free: it reads the summary and the records."""

from __future__ import annotations

from advisor.format import rate


def roof_speedup(summary: dict, replayed_share: float | None) -> float | None:
    """The largest speedup of the replayed step the roofs allow: its time over the time its counted FLOPs take at
    the fastest measured peak (any dtype, matmul or convolution); None without peaks or FLOPs."""
    roof = summary.get("roofline") or {}
    peaks = (summary.get("hardware") or {}).get("peaks") or {}
    fastest = max([*(peaks.get("flops_per_s") or {}).values(), *(peaks.get("conv_flops_per_s") or {}).values()],
                  default=0.0)
    flops, step_ms = roof.get("model_flops_per_step"), (summary.get("steps") or {}).get("mean_ms")
    if not fastest or not flops or not step_ms or not replayed_share:
        return None
    return (step_ms / 1000.0 * replayed_share) / (flops / fastest)


def flag_suspects(records: list[dict], summary: dict, replayed_share: float | None, exempt: set[str]) -> None:
    """Mark each measured gain above :func:`roof_speedup` ``suspect`` (and its verdict), except techniques in
    ``exempt``: those that change the work itself (pruning removes FLOPs)."""
    limit = roof_speedup(summary, replayed_share)
    if limit is None:
        return
    achieved = summary["roofline"]["model_flops_per_step"] / (summary["steps"]["mean_ms"] / 1000.0 * replayed_share)
    for r in records:
        measured = r.get("measured") or {}
        speedup = measured.get("speedup")
        changes_work = set(str(r.get("technique")).split("+")) & exempt
        if not speedup or speedup <= limit or changes_work or measured.get("phases"):
            continue
        r["suspect"] = (f"{speedup:.2f}x would run the step's FLOPs at {rate(achieved * speedup)}, above the fastest "
                        f"peak measured here ({rate(achieved * limit)}): not the same work done faster")
        r["verdict"] = f"suspect: {r['suspect']}"

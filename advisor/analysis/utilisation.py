"""CPU and GPU utilisation over the profiled window."""

from __future__ import annotations

import os

import pandas as pd


def utilisation(runner: dict, samples: pd.DataFrame | None, gpu_samples: pd.DataFrame | None,
                window_unix: tuple[float, float] | None, cpu_count: int | None) -> dict:
    """Busy cores of the script's process over the window (exact, from its CPU times), the process
    tree's mean CPU % from the samples, and mean GPU utilisation, over the window where samples fall
    in it, else over the whole run (``over`` says which)."""
    cpu_count = cpu_count or os.cpu_count() or 1
    result: dict = {"cpu_count": cpu_count}
    cpu_s, wall_s = runner.get("window_cpu_seconds"), runner.get("window_wall_seconds")
    if cpu_s is not None and wall_s:
        result["process_busy_cores"] = round(cpu_s / wall_s, 3)
        result["process_cpu_share"] = round(cpu_s / wall_s / cpu_count, 4)
    result["samples"] = _mean_over_window(samples, "cpu_percent", window_unix)
    result["gpu"] = _mean_over_window(gpu_samples, "util_percent", window_unix)
    return result


def _mean_over_window(frame: pd.DataFrame | None, column: str, window: tuple[float, float] | None) -> dict | None:
    if frame is None or frame.empty or column not in frame:
        return None
    over = "run"
    if window is not None:
        inside = frame[(frame["time"] >= window[0]) & (frame["time"] <= window[1])]
        if len(inside) >= 2:
            frame, over = inside, "window"
    values = frame[column].dropna()
    if values.empty:
        return None
    return {"mean_percent": round(float(values.mean()), 2), "max_percent": round(float(values.max()), 2),
            "samples": int(len(values)), "over": over}

"""The report's PNG plots (matplotlib, no display needed). Each returns False when it has nothing to draw."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PHASE_COLORS = {"data": "#d4a017", "forward": "#2a9d8f", "backward": "#b5179e", "optimizer": "#4caf50",
                "other": "#9e9e9e"}
ROOF_COLORS = ("#264653", "#e76f51", "#8d99ae")
BOUND_COLORS = {"compute": "#2a9d8f", "memory": "#b5179e", "overhead": "#d4a017"}
_DPI = 110


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return True


def breakdown_plot(summaries: dict[str, dict], path: Path) -> bool:
    """One horizontal stacked bar per run (label ──► summary): the mean step split into its phases."""
    runs = {label: s.get("breakdown") or {} for label, s in summaries.items()}
    if not any(runs.values()):
        return False
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.55 * len(runs)))
    labels = list(runs)
    lefts = [0.0] * len(labels)
    for phase, color in PHASE_COLORS.items():
        widths = [(runs[label].get(phase) or {}).get("ms", 0.0) for label in labels]
        ax.barh(labels, widths, left=lefts, color=color, label=phase)
        lefts = [left + width for left, width in zip(lefts, widths)]
    ax.set_xlabel("ms per step (mean)")
    ax.invert_yaxis()
    ax.legend(ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize="small")
    return _save(fig, path)


def memory_plot(timeline: pd.DataFrame, system_bytes: float | None, path: Path) -> bool:
    """RSS of the script's process tree over the run, the recorded window shaded."""
    if timeline.empty:
        return False
    fig, ax = plt.subplots(figsize=(7, 2.8))
    gib = timeline["rss_bytes"] / 2**30
    ax.plot(timeline["seconds"], gib, color="#2a9d8f", label="RSS")
    window = timeline[timeline["in_window"].astype(bool)]
    if not window.empty:
        ax.axvspan(window["seconds"].min(), window["seconds"].max(), color="#b5179e", alpha=0.15,
                   label="recorded steps")
    ax.set_xlabel("seconds since the script started")
    ax.set_ylabel("GiB")
    ax.set_ylim(bottom=0)
    title = f"peak {gib.max():.2f} GiB" + (f" of {system_bytes / 2**30:.1f} GiB" if system_bytes else "")
    ax.set_title(title, fontsize="medium", loc="left")
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return _save(fig, path)


def gains_plot(recommendations: list[dict], path: Path) -> bool:
    """Estimated against measured speedup per technique, with the measured spread as an error bar."""
    rows = [r for r in recommendations if (r.get("estimate") or {}).get("speedup") or (r.get("measured") or {})
            .get("speedup")]
    if not rows:
        return False
    names = [r["technique"] for r in rows]
    estimated = [(r.get("estimate") or {}).get("speedup") or 0 for r in rows]
    measured = [(r.get("measured") or {}).get("speedup") or 0 for r in rows]
    spread = [measured[i] * ((r.get("measured") or {}).get("spread") or 0) / 2 for i, r in enumerate(rows)]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.38 * len(rows)))
    y = range(len(rows))
    ax.barh([i - 0.2 for i in y], estimated, height=0.4, color="#9e9e9e", label="estimated")
    ax.barh([i + 0.2 for i in y], measured, height=0.4, xerr=spread, color="#2a9d8f", label="measured")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), names, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("speedup of the replayed step (x)")
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return _save(fig, path)


def roofline_plot(data, path: Path) -> bool:
    """The machine's roofs (memory bandwidth, compute peak per dtype) on log-log axes, each op with counted FLOPs
    a point at its intensity and achieved FLOP/s, sized by its share of the step (``data``: a
    :class:`advisor.store.RooflineData`)."""
    if data is None or not data.ops:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    intensities = [op["intensity"] for op in data.ops]
    x = np.logspace(np.log10(min(intensities) / 4), np.log10(max(intensities) * 4), 200)
    for (dtype, peak), color in zip(sorted(data.compute.items(), key=lambda kv: -kv[1]), ROOF_COLORS):
        ax.plot(x, np.minimum(peak, x * data.bandwidth), color=color, label=f"roof {dtype}")
    for op in data.ops:
        ax.scatter(op["intensity"], op["flops_per_s"], s=20 + 400 * op["share"], alpha=0.7,
                   color=BOUND_COLORS.get(op["bound"], "#9e9e9e"))
        ax.annotate(op["name"].replace("aten::", ""), (op["intensity"], op["flops_per_s"]), fontsize="x-small",
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"memory roof {data.bandwidth / 1e9:.1f} GB/s; points: ops, sized by share of the step",
                 fontsize="medium", loc="left")
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return _save(fig, path)

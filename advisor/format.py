"""How the views (terminal, TUI, markdown report) write numbers: one place, plain strings, no Rich, no torch."""

from __future__ import annotations

import os

#: the colour of each phase of a step, in the terminal and the TUI (the report's plots have their own)
PHASE_STYLES = {"data": "yellow", "forward": "cyan", "backward": "magenta", "optimizer": "green", "other": "grey50"}


def gain(ratio: float | None) -> str:
    """A speedup: ``1.23x``, or ``-`` when there is none."""
    return "-" if ratio is None else f"{ratio:.2f}x"


def spread(iqr: float, digits: int = 0) -> str:
    """A relative interquartile range as plus or minus half of it: ``±12%``."""
    return f"±{100 * iqr / 2:.{digits}f}%"


def measured_gain(measured: dict) -> str:
    """A measured speedup with its spread: ``1.23x ±12%``, ``1.23x`` (no spread) or ``-``."""
    speed, iqr = measured.get("speedup"), measured.get("spread")
    return gain(speed) + (f" {spread(iqr)}" if speed and iqr else "")


def relative(error: float | None) -> str:
    """A relative error: ``3e-04``, or ``-``."""
    return "-" if error is None else f"{error:.0e}"


def ms(value: float | None) -> str:
    """Milliseconds, without the unit: ``12.34``, or ``-``."""
    return "-" if value is None else f"{value:.2f}"


def pct(share: float | None) -> str:
    """A share as a percentage: ``12.3%``, or ``-``."""
    return "-" if share is None else f"{100 * share:.1f}%"


def human_bytes(n: float | None) -> str:
    """A size in binary units: ``512 B``, ``1.5 MiB``, or ``-``."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def peak_memory(measured: dict) -> str:
    """A measured step's peak memory with its change against the baseline: ``1.6 MiB -40%``, ``1.6 MiB`` or ``-``."""
    peak, baseline = measured.get("peak_bytes"), measured.get("baseline_peak_bytes")
    if peak is None:
        return "-"
    return human_bytes(peak) + (f" {100 * (peak - baseline) / baseline:+.0f}%" if baseline else "")


def short_source(source: str | None) -> str:
    """``file.py:12`` without its folders (the JSON and the CSV keep the path)."""
    return source.replace("\\", "/").rsplit("/", 1)[-1] if source else ""


def limit_reason(limit: dict | None) -> str:
    """``time limit of 60 s`` or ``memory limit of 1024 MB``: which recording limit was reached."""
    if not limit:
        return "no limit reached"
    if limit.get("reason") == "time":
        return f"time limit of {limit.get('limit_s'):g} s"
    return f"memory limit of {limit.get('limit_mb'):g} MB"


def display_source(site: str | None, cwd: str | None = None) -> str:
    """``file:line`` shortened: relative to ``cwd`` when inside it."""
    if not site:
        return ""
    path, _, line = site.rpartition(":")
    if cwd and path.startswith(cwd.rstrip(os.sep) + os.sep):
        path = os.path.relpath(path, cwd)
    return f"{path}:{line}"


def rate(value: float | None, unit: str = "FLOP/s") -> str:
    """A rate with an SI prefix: ``312.5 GFLOP/s``, ``21.0 GB/s``, or ``-``."""
    if value is None or value != value:
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def roofline_line(roof: dict | None) -> str:
    """Where the step sits: ``MFU 12.3% (34.5 GFLOP/s of 280.1 GFLOP/s float32); the step in memory-bound ops
    61%, compute-bound ops 30%, ...``, or ``""`` when the run has no roofline."""
    if not roof or roof.get("mfu") is None:
        return ""
    line = (f"MFU {pct(roof['mfu'])} ({rate(roof['achieved_flops_per_s'])} of {rate(roof['peak_flops_per_s'])} "
            f"{roof.get('dtype')})")
    shares = roof.get("bound_shares") or {}
    if shares:
        line += "; the step in " + ", ".join(f"{kind}-bound ops {100 * share:.0f}%" for kind, share in
                                             sorted(shares.items(), key=lambda kv: -kv[1]))
    if roof["mfu"] > 1 or roof.get("above_roof"):
        line += (f" ({', '.join(roof.get('above_roof') or ['the step'])} ran above the measured roof: the peaks were "
                 "measured low, on a busy machine; `advisor peaks --remeasure` raises them)")
    return line


def peaks_note(peaks: dict | None) -> str:
    """Where the peaks come from: ``peaks of AMD EPYC (2 threads) measured 2026-12-02T07:21:18+00:00 at load 3.9``."""
    if not peaks:
        return "no peaks measured"
    load = peaks.get("load_average")
    return (f"peaks of {peaks.get('name')} ({peaks.get('threads')} threads) measured {peaks.get('measured_at')}"
            + (f" at load {load[0]:g}" if load else "") + ": `advisor peaks`")


# The ranks of a torch.distributed run: what the terminal, the TUI and the report show of each.
STRAGGLER_MARK = "◀ straggler"


def ranks_headline(distributed: dict) -> str:
    """One line: backend and world size, communication, overlap, the straggler."""
    parts = [f"{distributed.get('backend') or 'unknown backend'}, {distributed.get('world_size')} ranks"]
    if distributed.get("comm_share") is not None:
        parts.append(f"collectives {pct(distributed['comm_share'])} of a step "
                     f"(waiting {pct(distributed.get('wait_share'))})")
    if distributed.get("overlap") is not None:
        parts.append(f"{pct(distributed['overlap'])} of it overlaps computation")
    slow = distributed.get("straggler")
    parts.append(f"straggler: rank {slow['rank']}, busy {ms(slow['slower_by_ms'])} ms ({pct(slow['slower_by'])} of a "
                 f"step) longer than the others, in {slow['phase']}" if slow else "no straggler")
    return " · ".join(parts)


def rank_notes(distributed: dict) -> list[str]:
    """What the launcher set, and each rank that did not end as asked."""
    notes = []
    if (distributed.get("launcher") or {}).get("omp_num_threads_set_by_torchrun"):
        notes.append("torchrun set OMP_NUM_THREADS=1 in every rank (more than one process per node): "
                     "each rank computes on one thread unless the script sets its own")
    notes += [r["error"] for r in distributed.get("ranks") or [] if r.get("error")]
    return notes


def rank_row(rank: dict, straggler: int | None) -> list[str]:
    """The cells of one rank: step median, phases, collectives, waiting, overlap, and the straggler mark."""
    steps, parts = rank.get("steps") or {}, rank.get("breakdown") or {}
    if not rank.get("recorded"):
        return [str(rank["rank"]), "–", "", "", "", "", "", "", "", f"no steps ({rank.get('outcome')})"]
    overlap = rank.get("overlap")
    return [str(rank["rank"]), ms(steps.get("median_ms")),
            *(ms((parts.get(p) or {}).get("ms")) for p in ("data", "forward", "backward", "optimizer")),
            ms(rank.get("comm_ms")), ms(rank.get("comm_wait_ms")), pct(overlap) if overlap is not None else "",
            STRAGGLER_MARK if rank["rank"] == straggler else ""]


RANK_COLUMNS = ("rank", "step", "data", "fwd", "bwd", "opt", "comm", "wait", "overlap", "")

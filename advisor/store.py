"""Read access to saved runs for the views (``show``, ``tui``, ``report``): summaries, the run store,
the full hot-op table, the memory timeline and the source lines behind an op. No UI here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from advisor.errors import RunDirError
from advisor.rundir import DEFAULT_STORE, HOT_OPS_FILE, META_FILE, STEPS_FILE, SUMMARY_FILE, load_meta, read_json


#: outcomes of a run whose script did what it was asked (ran to its end, or was stopped after the window), and of
#: traces imported by `advisor analyze`
FINE_OUTCOMES = ("completed", "stopped_after_window", "stopped_at_limit", "imported")


@dataclasses.dataclass(frozen=True)
class RunEntry:
    """One run of the store, as listed: its directory, what it ran, and why it cannot be read, if so."""

    path: Path
    target: str
    outcome: str
    started_at: float | None
    median_ms: float | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return self.path.name


def read_summary(run_dir: Path) -> dict | None:
    """The run's saved summary (``summary.json``, its ``run_dir`` set to where it is now), or None when the
    run was not analysed yet (:func:`advisor.pipeline.summary_of` analyses it)."""
    run_dir = Path(run_dir)
    if load_meta(run_dir).get("kind") == "comparison":
        raise RunDirError(f"{run_dir}: a comparison made by `advisor profile --apply`, not a profiled run; "
                          "`advisor show RUN` prints it")
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        return None
    summary = read_json(path, "summary")
    summary["run_dir"] = str(run_dir.resolve())
    return summary


def list_runs(store: Path = DEFAULT_STORE) -> list[RunEntry]:
    """Every run directory in ``store``, newest first; a broken one is listed with its problem."""
    entries = []
    for path in sorted((p for p in Path(store).glob("*") if (p / META_FILE).exists()),
                       key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            meta = load_meta(path)
        except RunDirError as exc:
            entries.append(RunEntry(path, "?", "broken", None, None, str(exc)))
            continue
        summary_path = path / SUMMARY_FILE
        median = None
        if summary_path.exists():
            try:
                median = (read_json(summary_path, "summary").get("steps") or {}).get("median_ms")
            except RunDirError:
                pass
        target = meta.get("target") or {}
        outcome = "--apply" if meta.get("kind") == "comparison" else str(meta.get("outcome", "?"))
        entries.append(RunEntry(path, str(target.get("name", "?")), outcome, meta.get("started_at"), median))
    return entries


def hot_ops_table(summary: dict) -> list[dict]:
    """Every op of the run (``hot_ops.csv``), else the summary's top ops."""
    path = Path(summary.get("run_dir") or "") / HOT_OPS_FILE
    if not path.is_file():
        return list(summary.get("hot_ops") or [])
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{path}: corrupt hot-op table ({exc})") from None
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")


def memory_timeline(summary: dict) -> pd.DataFrame:
    """RSS of the script's process tree over the run: columns ``seconds`` (from the first sample),
    ``rss_bytes`` and ``in_window`` (the sample falls in the recorded steps); empty without samples."""
    from advisor.collectors.psutil_sampler import SAMPLES_FILE, load_samples

    run_dir = Path(summary.get("run_dir") or "")
    empty = pd.DataFrame({"seconds": [], "rss_bytes": [], "in_window": []})
    if not (run_dir / SAMPLES_FILE).is_file():
        return empty
    try:
        samples = load_samples(run_dir / SAMPLES_FILE)
    except Exception as exc:  # the sampler's artifact is damaged
        raise RunDirError(f"{run_dir / SAMPLES_FILE}: corrupt artifact ({exc})") from None
    if samples.empty:
        return empty
    start, end = _window_unix(run_dir)
    times = samples["time"].astype(float)
    return pd.DataFrame({"seconds": times - times.iloc[0], "rss_bytes": samples["rss_bytes"].astype(float),
                         "in_window": (times >= start) & (times <= end) if start is not None else False})


def _window_unix(run_dir: Path) -> tuple[float | None, float | None]:
    """Start and end (Unix seconds) of the recorded steps, from ``steps.csv``."""
    path = run_dir / STEPS_FILE
    if not path.is_file():
        return None, None
    try:
        steps = pd.read_csv(path)
        recorded = steps[steps["recorded"].astype(bool)]
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None, None
    if recorded.empty:
        return None, None
    return recorded["start_unix_ns"].min() / 1e9, recorded["end_unix_ns"].max() / 1e9


def source_lines(run_dir: Path, source: str | None, radius: int = 3) -> list[tuple[int, str]] | None:
    """The lines around ``file:line`` (relative to the run's working directory), or None when the file
    is not on this machine."""
    file, _, line_text = (source or "").rpartition(":")
    if not file or not line_text.isdigit():
        return None
    path = Path(file)
    if not path.is_absolute():
        path = Path(load_meta(run_dir).get("cwd") or ".") / path
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    line = int(line_text)
    first = max(1, line - radius)
    return [(n, text[n - 1]) for n in range(first, min(len(text), line + radius) + 1)] or None


@dataclasses.dataclass(frozen=True)
class RooflineData:
    """The roofs of the machine and the ops under them, as the roofline plots draw them.

    :param bandwidth: the memory roof's slope (bytes/s); ``compute``: the compute roof per dtype (FLOP/s);
        ``ops``: each op with counted FLOPs: ``name``, ``intensity`` (FLOP/byte), ``flops_per_s`` (achieved),
        ``bound``, ``share`` of the step."""

    bandwidth: float
    compute: dict[str, float]
    ops: list[dict]


def roofline_data(summary: dict) -> RooflineData | None:
    """The run's roofline (every op of ``hot_ops.csv``), or None when the run has no measured peaks."""
    peaks = (summary.get("hardware") or {}).get("peaks") or {}
    if not peaks.get("bytes_per_s"):
        return None
    ops = [{"name": op["name"], "intensity": op["intensity"], "bound": op.get("bound"), "share": op.get("share") or 0,
            "flops_per_s": op["attainable_flops_per_s"] * op["roofline_fraction"]}
           for op in hot_ops_table(summary)
           if op.get("intensity") and op.get("attainable_flops_per_s") and op.get("roofline_fraction")]
    compute = {dtype: max(rate, (peaks.get("conv_flops_per_s") or {}).get(dtype) or 0.0)
               for dtype, rate in (peaks.get("flops_per_s") or {}).items()}
    return RooflineData(bandwidth=float(peaks["bytes_per_s"]), compute=compute, ops=ops)

"""`advisor analyze` of traces made without advisor, by the real torch.profiler and its
tensorboard_trace_handler: whole, gzipped, cut short, holding event kinds advisor does not know, and a
directory with one trace per rank; each through the real CLI."""

import gzip
import json
import subprocess
import sys

import pandas as pd
import pytest

from advisor.analysis import trace
from advisor.analysis.trace import load_trace
from advisor.cli import main
from advisor.errors import RunDirError
from conftest import no_advisor_traceback, record_with_trace_handler, run_advisor

STEPS = 4


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """``ranks/``: two workers' traces as tensorboard_trace_handler writes them (rank1 gzipped), and
    ``rank0``: the first one's path."""
    root = tmp_path_factory.mktemp("traces")
    record_with_trace_handler(root / "ranks", "rank0", STEPS)
    record_with_trace_handler(root / "ranks", "rank1", STEPS, use_gzip=True)
    (rank0,) = (root / "ranks").glob("rank0*.pt.trace.json")
    return root, rank0


def _with_events(traces, path, events: str):
    """The first rank's real trace with ``events`` (JSON text, each followed by a comma) put first in its events,
    written to ``path``."""
    marker = '"traceEvents": ['
    path.write_text(traces[1].read_text().replace(marker, marker + events, 1))
    return path


def _analyze(tmp_path, *paths, name="run") -> dict:
    out = tmp_path / name
    assert main(["analyze", *map(str, paths), "--out", str(out), "--json"]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_trace_from_tensorboard_trace_handler(tmp_path, traces, capsys):
    summary = _analyze(tmp_path, traces[1])
    assert summary["outcome"] == "imported"
    assert summary["steps"]["count"] == STEPS and summary["steps"]["detection"] == "profiler_steps"
    assert {"aten::addmm", "aten::mm"} & {op["name"] for op in summary["hot_ops"]}
    assert summary["breakdown"]["optimizer"]["ms"] > 0
    assert "trace_skipped" not in summary
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["imported"]["ranks"][0]["source"] == str(traces[1].resolve())
    assert traces[1].exists(), "the user's trace stays where it was"


def test_gzipped_trace_reads_as_the_plain_one(tmp_path, traces):
    gzipped = tmp_path / "trace.json.gz"
    gzipped.write_bytes(gzip.compress(traces[1].read_bytes()))
    plain, packed = _analyze(tmp_path, traces[1], name="plain"), _analyze(tmp_path, gzipped, name="packed")
    assert packed["steps"] == plain["steps"]
    assert packed["hot_ops"] == plain["hot_ops"]


def test_truncated_trace_analyses_what_is_readable(tmp_path, traces):
    data = traces[1].read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[:int(len(data) * 0.7)])
    whole = load_trace(traces[1])
    partial = load_trace(cut)
    assert 0 < len(partial.events) < len(whole.events)
    for column in ("name", "ts", "dur"):
        assert partial.events[column].tolist() == whole.events[column].iloc[:len(partial.events)].tolist()
    assert any("cut short" in s for s in partial.skipped)
    summary = _analyze(tmp_path, cut)
    assert summary["trace_skipped"] == partial.skipped
    assert summary["steps"]["count"] >= 1


def test_unknown_event_kinds_and_broken_events_are_left_out(tmp_path, traces):
    """Events of kinds advisor never reads, one with fields of unexpected types and one that is not JSON, put
    among the real ones: the analysis is the same, and the broken events are counted."""
    strange = ('\n  {"ph": "X", "cat": "mystery_kind", "name": "who knows", "pid": 1, "tid": 1, "ts": 5, "dur": 3},'
               '\n  {"ph": "Q", "name": "a phase no viewer has", "args": {"x": [1, {"y": 2}]}},'
               '\n  {"ph": "X", "cat": "cpu_op", "name": "aten::odd", "ts": "not a number", "dur": [1]},'
               '\n  {"ph": "X", "cat": "cpu_op", "name": oops not json},'
               '\n  {\n    "ph": "X",\n    "cat": "user_annotation",\n    "name": "say("hi")",\n    "pid": 1,\n'
               '    "tid": 1,\n    "ts": 1,\n    "dur": 1\n  },')
    mixed = _with_events(traces, tmp_path / "mixed.json", strange)
    loaded = load_trace(mixed)
    assert loaded.skipped == ["2 events that do not decode"]
    assert "mystery_kind" not in set(loaded.events["cat"].astype(str))
    assert 'say("hi")' in set(loaded.events["name"].astype(str)), "a raw quote in a name (kineto writes them) mended"
    assert _analyze(tmp_path, mixed, name="mixed")["hot_ops"] == _analyze(tmp_path, traces[1])["hot_ops"]


def test_python_function_events_are_dropped_before_they_are_decoded(tmp_path, traces):
    """``with_stack``'s Python function events (half a trace's bytes) are never decoded: one that is not even
    JSON is not counted as broken, and the events kept are the same."""
    python = ('\n  {\n    "ph": "X",\n    "cat": "python_function",\n    "name": f.py(1): not json,\n    "pid": 1,\n'
              '    "tid": 1,\n    "ts": 1,\n    "dur": 1\n  },')
    loaded = load_trace(_with_events(traces, tmp_path / "python.json", python * 3))
    assert loaded.skipped == []
    assert loaded.events["name"].astype(str).tolist() == load_trace(traces[1]).events["name"].astype(str).tolist()


@pytest.fixture()
def small_parts(monkeypatch):
    """Traces split into parts of a few kB (a real one: 64 MB), and the parts' processes counted as they start."""
    started = []
    start_part = trace._start_part
    monkeypatch.setattr(trace, "PART_BYTES", 4096)
    monkeypatch.setattr(trace, "_start_part", lambda *args: started.append(args) or start_part(*args))
    return started


def _same_frames(a, b):
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.skipped == b.skipped


def test_a_trace_decoded_in_parts_by_several_processes_is_the_same(tmp_path, traces, small_parts):
    """The parts start where events do, each decoded in its own process; the frame is the one decoded in one piece,
    also for a trace cut short (in its last part) and one with broken events."""
    cut = tmp_path / "cut.json"
    cut.write_bytes(traces[1].read_bytes()[:int(traces[1].stat().st_size * 0.8)])
    broken = '\n  {"ph": "X", "cat": "cpu_op", "name": oops not json},'
    marker = '"traceEvents": ['
    text = traces[1].read_text()
    middle = text.index('\n  },', len(text) * 3 // 4) + len('\n  },')  # after an event of the last part
    mixed = tmp_path / "mixed.json"
    mixed.write_text((text[:middle] + broken + text[middle:]).replace(marker, marker + broken, 1))
    for path in (traces[1], cut, mixed):
        small_parts.clear()
        _same_frames(load_trace(path, workers=3), load_trace(path))
        assert len(small_parts) == 2, "two processes beside this one"
    assert load_trace(mixed).skipped == ["2 events that do not decode"]


def test_a_part_whose_process_fails_is_decoded_here(tmp_path, traces, small_parts, monkeypatch):
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    monkeypatch.setattr(trace, "_start_part", lambda *args: small_parts.append(args) or subprocess.Popen(
        failing, stdout=subprocess.PIPE))
    _same_frames(load_trace(traces[1], workers=2), load_trace(traces[1]))
    assert small_parts


def test_directory_with_one_trace_per_rank_through_the_cli(tmp_path, traces):
    out = tmp_path / "run"
    proc = run_advisor("analyze", traces[0] / "ranks", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Ranks" in proc.stdout and "rank 1" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert [r["trace"] for r in summary["ranks"]] == ["trace/worker0.pt.trace.json",
                                                      "trace/rank1.pt.trace.json.gz"]
    assert all(r["steps"]["count"] == STEPS and r["steps"]["median_ms"] > 0 for r in summary["ranks"])
    show = run_advisor("show", out)
    assert show.returncode == 0 and "imported" in show.stdout
    report = run_advisor("report", out, "-o", tmp_path / "r.md")
    assert report.returncode == 0, report.stderr
    assert "Hot ops" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.json", "no such file or directory"),
    (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "not a kineto trace"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no kineto trace"),
    (lambda d: (d / "garbage.json").write_text("{\"traceEvents\": [{\"ph\": ") and d / "garbage.json", "corrupt trace"),
])
def test_bad_paths_give_one_line(tmp_path, make, message):
    proc = run_advisor("analyze", make(tmp_path), "--out", tmp_path / "run")
    assert proc.returncode == RunDirError.exit_code
    assert [line for line in proc.stderr.splitlines() if line.startswith("advisor: error:")] == \
        [line for line in proc.stderr.splitlines() if line.strip()]
    assert message in proc.stderr and no_advisor_traceback(proc.stderr)



def test_a_thread_named_by_number_and_by_text_is_one_thread_and_a_null_number_is_absent(tmp_path, traces):
    """Writers differ: one event's ``tid`` a number, another's the same as text; a memory event's ``Bytes`` null.
    The thread is one category, and the null reads as no number (not a broken event)."""
    written = ('\n  {"ph": "X", "cat": "cpu_op", "name": "aten::mine", "pid": 1, "tid": 7, "ts": 1, "dur": 2},'
               '\n  {"ph": "X", "cat": "cpu_op", "name": "aten::mine", "pid": 1, "tid": "7", "ts": 4, "dur": 2},'
               '\n  {"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "pid": 1, "tid": 7, "ts": 2,'
               ' "args": {"Bytes": null, "Total Allocated": 64, "Device Type": 0}},')
    loaded = load_trace(_with_events(traces, tmp_path / "writers.json", written))
    assert loaded.skipped == []
    mine = loaded.events[loaded.events["pid"].astype(str) == "1"]
    assert mine["tid"].astype(str).tolist() == ["7", "7", "7"]
    assert [str(c) for c in loaded.events["tid"].cat.categories].count("7") == 1
    memory = mine[mine["cat"] == "memory"].iloc[0]
    assert memory["bytes"] != memory["bytes"] and memory["total_allocated"] == 64  # NaN, and the number beside it

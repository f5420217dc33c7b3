"""Analysis on real traces recorded here by the real profiler, checked against independent answers."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from advisor.analysis.call_tree import annotate, operator_rows
from advisor.analysis.flops import op_flops
from advisor.analysis.hot_ops import hot_ops
from advisor.analysis.steps import breakdown, step_table
from advisor.analysis.trace import load_trace
from advisor.errors import RunDirError
from advisor.rundir import CALL_SITE_PREFIX, STEP_PREFIX
from advisor.views.summary import render_summary


def _record(tmp_path, fn, steps=3):
    """Run ``fn`` under the profiler with ProfilerStep annotations, as the runner does; return the trace path."""
    path = tmp_path / "trace.json"
    prof = torch.autograd.profiler.profile(record_shapes=True, profile_memory=True, use_kineto=True)
    prof._prepare_trace()
    prof._start_trace()
    for n in range(steps):
        with torch.profiler.record_function(f"ProfilerStep#{n}"):
            fn()
    prof.__exit__(None, None, None)
    prof.export_chrome_trace(str(path))
    return path


@pytest.mark.parametrize("make, inputs", [
    (lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 17, 17)),
    (lambda: nn.Conv2d(4, 8, (3, 5), dilation=2), (1, 4, 20, 24)),  # (its grouped weight-grad count is off)
    (lambda: nn.Linear(12, 7), (5, 12)),
])
def test_flops_match_torch_flop_counter(tmp_path, make, inputs):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(*inputs, requires_grad=True)

    def step():
        module(x).sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    expected = counter.get_total_flops()
    host = annotate(load_trace(_record(tmp_path, step, steps=1)).events)
    ops = host[host["cat"] == "cpu_op"]
    counted = sum(op_flops(n, d, c) for n, d, c in zip(ops["name"].astype(str), ops["input_dims"],
                                                         ops["concrete_inputs"])
                  if op_flops(n, d, c) == op_flops(n, d, c))
    assert counted == pytest.approx(expected, rel=1e-6)


def test_self_times_partition_the_top_level_ops(tmp_path):
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    host = annotate(load_trace(_record(tmp_path, lambda: model(torch.randn(16, 64)).sum().backward())).events)
    ops = host[host["cat"] == "cpu_op"]
    top_level = ops[ops["op_parent"] < 0]
    assert ops["self_us"].sum() == pytest.approx(top_level["dur"].sum(), rel=1e-6)
    assert (ops["self_us"] >= 0).all()
    assert set(ops["step"]) == {0, 1, 2}


def test_operator_calls_lead_the_annotated_events_and_are_taken_without_a_copy(tmp_path):
    """The rows of every kind keep their order (by thread, then start); the ops come first, so that their readers
    (hot ops, every findings plugin) share the annotated frame's memory instead of copying it."""
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    events = load_trace(_record(tmp_path, lambda: model(torch.randn(16, 64)).sum().backward())).events
    host = annotate(events)
    by_kind = host[host["cat"] == "cpu_op"]
    ops = operator_rows(host)
    assert ops.index.tolist() == by_kind.index.tolist() and (host["cat"] == "memory").any()
    assert np.shares_memory(ops["ts"].to_numpy(), host["ts"].to_numpy())
    assert (ops.groupby("tid", observed=True)["ts"].apply(lambda t: t.is_monotonic_increasing)).all()
    others = host.iloc[len(ops):]
    assert others.equals(host[host["cat"] != "cpu_op"]) and not (others["cat"] == "cpu_op").any()
    shuffled = host.sample(frac=1.0, random_state=0)  # any frame: the ops found wherever they are
    assert operator_rows(shuffled).index.tolist() == shuffled[shuffled["cat"] == "cpu_op"].index.tolist()


def _random_events(seed: int) -> pd.DataFrame:
    """Events on three threads at few distinct instants: ties, zero durations, events that overlap without nesting,
    memory events at the instant an event ends or starts, step and call site marks."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    cat = rng.choice(["cpu_op", "user_annotation", "memory", "cuda_runtime"], n, p=[0.5, 0.2, 0.2, 0.1])
    names = ["aten::mm", "aten::add", f"{STEP_PREFIX}1", f"{STEP_PREFIX}2", f"{CALL_SITE_PREFIX}train.py(3): f", "x"]
    name = np.where(cat == "memory", "[memory]", rng.choice(names, n))
    dur = np.where(cat == "memory", 0.0, rng.choice([0.0, 1.0, 2.0, 5.0, 10.0, 30.0], n))
    events = pd.DataFrame({"cat": pd.Categorical(cat), "name": pd.Categorical(name),
                           "tid": pd.Categorical(rng.choice([1, 2, 3], n)),
                           "ts": rng.integers(0, 60, n).astype(float), "dur": dur})
    events["end"] = events["ts"] + events["dur"]
    return events


def _nesting_by_stack(events: pd.DataFrame) -> dict:
    """The nesting as one stack per thread finds it, visiting events by start (at one instant memory events last,
    longer events first): each row's enclosing op, step, call site and self time. A memory event still belongs to an
    event that ends at its instant, unless another event starts there."""
    rows = sorted(events.itertuples(), key=lambda e: (e.tid, e.ts, e.cat == "memory", -e.dur))
    self_us = {e.Index: e.dur for e in rows}
    out, stack, tid = {}, [], None
    for e in rows:
        if e.tid != tid:
            stack, tid = [], e.tid
        memory = e.cat == "memory"
        while stack and stack[-1][0].end <= e.ts and not (memory and stack[-1][0].end == e.ts
                                                          and stack[-1][0].ts < e.ts):
            stack.pop()
        op, site, step = stack[-1][1:] if stack else (-1, None, -1)
        own_op, own_site, own_step = (e.Index if e.cat == "cpu_op" else op), site, step
        if e.name.startswith(STEP_PREFIX):
            own_step, own_site = int(e.name[len(STEP_PREFIX):]), None
        elif e.name.startswith(CALL_SITE_PREFIX):
            own_site = e.name[len(CALL_SITE_PREFIX):]
        out[e.Index] = (op, own_step, site)
        if e.cat == "cpu_op" and op >= 0:
            self_us[op] -= e.dur
        if not memory:
            stack.append((e, own_op, own_site, own_step))
    return {i: (*out[i], max(self_us[i], 0.0) if events.at[i, "cat"] == "cpu_op" else 0.0) for i in out}


@pytest.mark.parametrize("seed", range(40))
def test_nesting_is_a_stacks_on_events_of_every_shape(seed):
    """The whole-array nesting gives what a stack per thread gives, on events that nest, tie, overlap and end at
    the instant of a memory event."""
    events = _random_events(seed)
    host = annotate(events)
    found = {r.Index: (r.op_parent, r.step, r.call_site if isinstance(r.call_site, str) else None, r.self_us)
             for r in host.itertuples()}
    assert found == _nesting_by_stack(events)


def test_steps_and_hot_ops_from_a_trace(tmp_path):
    model = nn.Linear(256, 256)

    def step():
        with torch.profiler.record_function("advisor::forward"):
            y = model(torch.randn(64, 256))
        with torch.profiler.record_function("advisor::backward"):
            y.sum().backward()

    trace = load_trace(_record(tmp_path, step, steps=4))
    host = annotate(trace.events)
    steps = step_table(host, first_step=1, recorded_steps=3)
    assert list(steps["step"]) == [1, 2, 3]
    assert (steps["forward_ms"] > 0).all() and (steps["backward_ms"] > 0).all()
    assert (steps["forward_ms"] + steps["backward_ms"] <= steps["duration_ms"] + 1e-9).all()
    parts = breakdown(steps)
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0, abs=1e-3)
    table = hot_ops(host[host["step"].isin([1, 2, 3])], trace.events, steps["duration_ms"].sum() * 1000)
    addmm = table.set_index("name").loc["aten::addmm"]
    assert addmm["calls"] == 3 and addmm["shapes"] == "256, 64x256, 256x256"
    assert addmm["flops"] == pytest.approx(3 * 2 * 64 * 256 * 256)
    assert 0 < addmm["share"] < 1


def test_trace_loader_errors(tmp_path):
    with pytest.raises(RunDirError, match="trace missing"):
        load_trace(tmp_path / "absent.json")
    truncated = tmp_path / "t.json"
    truncated.write_text('{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "a')
    with pytest.raises(RunDirError, match="corrupt trace"):
        load_trace(truncated)


def test_summary_escapes_names_from_the_script():
    evil = "[bold red]<b>x</b>[/]|*_"
    summary = {"run_dir": "/r", "target": {"name": evil}, "outcome": "completed",
               "steps": {"count": 1, "median_ms": 1.0, "min_ms": 1.0, "max_ms": 1.0, "spread": 0.0,
                         "warmup": 1, "detection": "explicit"},
               "breakdown": {"forward": {"ms": 1.0, "share": 1.0}},
               "hot_ops": [{"name": evil, "self_time_ms": 1.0, "share": 0.5, "calls": 1, "shapes": evil,
                            "source": f"{evil}.py:3", "gflops_per_s": None}],
               "memory": {}, "utilisation": {}, "collectors": {"x": {"available": False, "reason": evil}},
               "recommendations": [{"technique": evil, "applies": True, "reason": evil, "status": "measured",
                                    "estimate": {"speedup": 1.2}, "snippet": evil,
                                    "measured": {"speedup": 1.5, "spread": 0.1, "projected_speedup": 1.3,
                                                 "quality": {"output_rel_error": 1e-3}}}]}
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render_summary(summary))
    text = out.getvalue()
    assert text.count("[bold red]<b>x</b>[/]") >= 6, text
    assert "1.50x" in text and "1.30x" in text
    json.dumps(summary)


def test_gpu_time_on_a_synthetic_cuda_trace():
    """No GPU here: a hand-made trace in kineto's CUDA shape (tests/data/synthetic_cuda_trace.json)."""
    from pathlib import Path

    from advisor.analysis.memory import memory_summary

    trace = load_trace(Path(__file__).parent / "data" / "synthetic_cuda_trace.json")
    host = annotate(trace.events)
    table = hot_ops(host, trace.events, window_us=1000.0).set_index("name")
    assert table.loc["aten::mm", "device_time_ms"] == pytest.approx(0.300)
    assert table.loc["aten::relu", "device_time_ms"] == pytest.approx(0.020)
    assert table.loc["aten::relu", "self_time_ms"] > table.loc["aten::mm", "self_time_ms"]
    assert list(table.index[:2]) == ["aten::mm", "aten::relu"], "ranked by GPU time on a GPU run"
    assert table.loc["aten::mm", "source"] == "/u/train.py:7"
    memory = memory_summary(host, None, None)
    assert memory["profiler_peak_bytes"] == {"cuda:0": 1048576} and memory["peak_bytes"] == 1048576

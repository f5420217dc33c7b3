"""Trials through the real CLI: recommendations measured on real workloads; broken technique plugins
(raising, hanging past the budget, returning the wrong type) reported while the others go on."""

import itertools
import os
import textwrap

import pytest

from advisor.trials import family, measure
from conftest import EXAMPLES, SCRIPTS, install_plugin, profile_json

BROKEN = textwrap.dedent('''
    import time

    from advisor.hookspecs import hookimpl
    from advisor.technique import Estimate, Technique, Verdict


    class Raises(Technique):
        name = "raises"

        def applies_to(self, context):
            raise RuntimeError("plugin bug")


    class Hangs(Technique):
        name = "hangs"

        def applies_to(self, context):
            return Verdict(True, "always")

        def estimate(self, context):
            return Estimate(speedup=2.0, basis="wishful")

        def apply(self, workload):
            time.sleep(600)


    class Malformed(Technique):
        name = "malformed"

        def applies_to(self, context):
            return True


    @hookimpl
    def advisor_techniques(config):
        return [Raises(), Hangs(), Malformed(), "not a technique"]
''')


def test_measure_interleaves_and_takes_the_median_ratio():
    calls = []
    ticks = itertools.count()
    clock = lambda: next(ticks)  # noqa: E731 - every call of a step function advances the clock by 1

    def a():
        calls.append("a")

    def b():
        calls.append("b")
        next(ticks)  # b takes twice as long as a

    result = measure(a, b, pairs=4, warmup=1, clock=clock)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"], "warm-up, then A B / B A alternating"
    assert result.speedup == pytest.approx(0.5) and result.spread == 0 and result.pairs == 4
    assert measure(a, b, pairs=2, warmup=1, clock=clock, variant_scale=2.0).speedup == pytest.approx(1.0)


def test_families():
    assert family("batch_size_x4") == family("batch_size_x2") == "batch_size"
    assert family("prune_structured_50") == "prune_structured" and family("dtype") == "dtype"


@pytest.fixture(scope="module")
def cnn_recommendations(tmp_path_factory):
    proc, summary = profile_json(SCRIPTS / "tiny_cnn_train.py", "--warmup", "2", "--steps", "3",
                                 "--techniques", "dtype,channels_last", "--", "--steps", "40",
                                 tmp_path=tmp_path_factory.mktemp("cnn"))
    assert proc.returncode == 0, proc.stderr
    return {r["technique"]: r for r in summary["recommendations"]}


def test_cnn_gets_measured_dtype_and_channels_last(cnn_recommendations):
    for name in ("dtype", "channels_last"):
        r = cnn_recommendations[name]
        assert r["applies"] is True and r["reason"] and r["snippet"]
        assert r["estimate"]["speedup"] > 1 and r["estimate"]["basis"]
        m = r["measured"]
        assert m["speedup"] > 0 and m["pairs"] == 10 and m["spread"] >= 0
        assert m["quality"]["output_rel_error"] is not None and m["quality"]["grad_rel_error"] is not None
    assert cnn_recommendations["channels_last"]["measured"]["quality"]["output_rel_error"] < 1e-4
    assert 1e-5 < cnn_recommendations["dtype"]["measured"]["quality"]["output_rel_error"] < 0.1


def test_input_bound_example_says_no_model_side_technique_helps(tmp_path):
    from advisor.views.recommendations import bottleneck_note

    proc, summary = profile_json(EXAMPLES / "input_bound_train.py", "--warmup", "2", "--steps", "3",
                                 "--no-measure", "--", "--steps", "10", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no model-side technique addresses this bottleneck" in bottleneck_note(summary)
    assert all(r["measured"] is None for r in summary["recommendations"])


def test_broken_technique_plugins_are_reported(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "broken_techniques", BROKEN)
    proc, summary = profile_json(SCRIPTS / "tiny_mlp_infer.py", "--warmup", "2", "--steps", "2",
                                 "--trial-budget", "3", "--", "20", tmp_path=tmp_path,
                                 env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    records = {r["technique"]: r for r in summary["recommendations"]}
    assert records["raises"]["status"] == "broken: RuntimeError: plugin bug"
    assert records["hangs"]["status"] == "over budget: stopped after 3 s"
    assert records["malformed"]["status"] == "broken: TypeError: applies_to returned bool, not Verdict"
    assert records["broken_techniques"]["status"] == "broken plugin: returned str, not a Technique"
    assert records["dtype"]["status"] in ("measured", "not applicable"), "the other techniques went on"

"""Techniques that game the measurement never show as gains: planted through the real plugin mechanism,
measured through the real CLI on a training and an inference workload."""

import os

import pytest

from advisor.verdict import is_gain
from conftest import EXAMPLES, SCRIPTS, install_plugin, profile_json

pytestmark = pytest.mark.timing  # measured times and shares: run alone (see Makefile)

TRAPS = (SCRIPTS.parent / "plugins" / "trap_techniques.py").read_text()


@pytest.fixture(scope="module")
def trap_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    install_plugin(site, "trap_techniques", TRAPS)
    return site


def _records(site, tmp_path, script, *args):
    proc, summary = profile_json(script, "--warmup", "4", "--steps", "2", "--pairs", "none", "--techniques",
                                 "trap_memoise,trap_freeze,trap_noop", *args, tmp_path=tmp_path,
                                 env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    return {r["technique"]: r for r in summary["recommendations"]}


def test_traps_on_a_training_step_are_not_gains(trap_site, tmp_path):
    records = _records(trap_site, tmp_path, SCRIPTS / "tiny_cnn_train.py", "--", "--steps", "30")
    assert set(records) == {"trap_memoise", "trap_freeze", "trap_noop"}
    for record in records.values():
        assert not is_gain(record), record
    freeze = records["trap_freeze"]
    assert freeze["status"] == "measured" and freeze["verdict"].startswith("step changed: leaves out the gradients")
    assert freeze["measured"]["quality"]["gradients_left_out"] > 0.5
    # Its backward runs through a graph that the first call freed: the memoiser cannot even run a second step.
    assert records["trap_memoise"]["status"].startswith("failed") or not is_gain(records["trap_memoise"])


def test_traps_on_an_inference_step_are_not_gains(trap_site, tmp_path):
    records = _records(trap_site, tmp_path, EXAMPLES / "mlp_infer.py", "--", "--steps", "30")
    for record in records.values():
        assert not is_gain(record), record
    memoise = records["trap_memoise"]
    assert memoise["status"] == "measured", memoise["status"]
    assert memoise["measured"]["quality"]["output_rel_error"] < 1e-6, "the checked copy alone sees nothing wrong"
    assert memoise["measured"]["quality"]["timed_output_rel_error"] > 0.1
    assert memoise["verdict"].startswith("step changed: its timed outputs differ")
    assert records["trap_noop"]["verdict"] == "no gain", records["trap_noop"]

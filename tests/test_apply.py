"""``advisor profile --apply``: the script run as it is and with techniques applied live, taking turns."""

import csv
import hashlib
import json
import os
import signal

import pytest

from conftest import SCRIPTS, install_plugin, no_advisor_traceback, run_advisor

STEPS = ("--warmup", "2", "--steps", "4")


def _steps(run_dir):
    with open(run_dir / "steps.csv") as f:
        return [(int(r["start_unix_ns"]), int(r["end_unix_ns"])) for r in csv.DictReader(f) if r["recorded"] == "1"]


@pytest.fixture(scope="module")
def channels_last_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("apply") / "run"
    script = SCRIPTS / "unseeded_cnn_train.py"
    before = hashlib.sha256(script.read_bytes()).hexdigest()
    proc = run_advisor("profile", "--apply", "channels_last", "--json", "--out", out, *STEPS, script, "--", "20")
    assert hashlib.sha256(script.read_bytes()).hexdigest() == before, "the user's script is never changed"
    return proc, out


def test_applied_run_compared_with_baseline(channels_last_run):
    proc, out = channels_last_run
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads(proc.stdout)
    assert comparison == json.loads((out / "comparison.json").read_text())
    assert comparison["techniques"] == ["channels_last"]
    for name in ("baseline", "applied"):
        run = comparison["runs"][name]
        assert len(run["step_ms"]) == 4 and run["median_ms"] > 0, name
    assert json.loads((out / "applied" / "runner.json").read_text())["applied"] == ["channels_last"]
    assert json.loads((out / "baseline" / "runner.json").read_text())["applied"] == []
    low, high = comparison["speedup_range"]
    assert low <= comparison["speedup"] <= high


def test_both_runs_see_the_same_data_so_their_losses_pair_up(channels_last_run):
    """The script seeds nothing; advisor seeds both runs alike, and channels_last changes numerics only
    by rounding, so the loss curves agree closely (unseeded, they would differ from the first step)."""
    outcomes = json.loads(channels_last_run[0].stdout)["outcomes"]
    assert outcomes["kind"] == "loss" and outcomes["compared"] == 6
    assert outcomes["max_rel_deviation"] < 1e-3


def test_the_runs_take_turns_and_no_steps_overlap(channels_last_run):
    out = channels_last_run[1]
    steps = sorted([(s, e, "baseline") for s, e in _steps(out / "baseline")] +
                   [(s, e, "applied") for s, e in _steps(out / "applied")])
    for (_, end, _), (start, _, _) in zip(steps, steps[1:]):
        assert end <= start, "one step at a time"
    assert [name for *_, name in steps] in (["baseline", "applied"] * 4, ["applied", "baseline"] * 4)


def test_show_prints_the_comparison_again(channels_last_run):
    proc = run_advisor("show", channels_last_run[1])
    assert proc.returncode == 0, proc.stderr
    assert "channels_last" in proc.stdout and "step time" in proc.stdout and "loss" in proc.stdout


def test_inference_compares_output_norms(tmp_path):
    proc = run_advisor("profile", "--apply", "dtype", "--json", "--out", tmp_path / "run", *STEPS,
                       SCRIPTS / "tiny_mlp_infer.py", "--", "20")
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads(proc.stdout)
    assert comparison["outcomes"]["kind"] == "output_norm" and comparison["speedup"] > 0


@pytest.mark.parametrize("technique, why", [("batch_size_x2", "changes the batch size"),
                                            ("prune_structured_50", "replaces the model's parameters")])
def test_technique_that_cannot_act_on_a_running_script_is_refused(tmp_path, technique, why):
    """Started with SIGINT ignored, as a shell's background job is: the baseline is still stopped by it."""
    proc = run_advisor("profile", "--apply", technique, "--out", tmp_path / "run", *STEPS,
                       SCRIPTS / "tiny_cnn_train.py", "--", "--steps", "20",
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 12, proc.stderr
    assert why in proc.stderr and no_advisor_traceback(proc.stderr)
    baseline = json.loads((tmp_path / "run" / "comparison.json").read_text())["runs"]["baseline"]
    assert baseline["outcome"] == "stopped", "nothing to compare with: the baseline is stopped, not run to its end"


def test_technique_that_raises_on_the_running_model(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "explodes", """
from advisor import hookimpl
from advisor.technique import Technique

class Explodes(Technique):
    name = "explodes"
    def apply(self, workload):
        raise RuntimeError("boom")

@hookimpl
def advisor_techniques(config):
    return [Explodes()]
""")
    proc = run_advisor("profile", "--apply", "explodes", "--out", tmp_path / "run", *STEPS,
                       SCRIPTS / "unseeded_cnn_train.py", "--", "20", env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 12
    assert "explodes failed on the running model: RuntimeError: boom" in proc.stderr
    assert no_advisor_traceback(proc.stderr)


def test_unknown_technique_lists_the_installed_ones(tmp_path):
    proc = run_advisor("profile", "--apply", "nope", SCRIPTS / "unseeded_cnn_train.py")
    assert proc.returncode == 2
    assert "no technique named nope" in proc.stderr and "channels_last" in proc.stderr

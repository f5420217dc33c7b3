"""The corpus of training-loop patterns (tests/scripts/loops/): each runs once through the real CLI, and the
step detection must find exactly one step per loop iteration, by the expected mode.

Every script runs ``--steps 8`` iterations under ``--keep-running``, so that the boundaries counted over the
whole run say whether each iteration ended exactly one step (a GAN's two optimizers, LBFGS's closure,
gradient accumulation and GradScaler's skipped steps must not count twice or not at all).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
from pathlib import Path

import pytest

from conftest import SCRIPTS, no_advisor_traceback, run_advisor

LOOPS = SCRIPTS / "loops"
ITERATIONS = 8


@dataclasses.dataclass(frozen=True)
class Loop:
    """One pattern: its script and arguments, how steps must be found, and what its captured step is."""

    name: str
    script: str
    detection: str
    training: bool
    optimizer: str | None  # the optimizer's class name; None for updates by hand
    args: tuple[str, ...] = ()
    #: "reproduced", or words of the reason why the step is not replayed (not captured, or not reproduced)
    replay: str = "reproduced"
    calls: int = 1  # model calls per step (accumulation, siamese)
    between: str = ""  # words of what runs between backward and the optimizer step

    @property
    def boundaries(self) -> int:
        """Boundaries over the whole run: in ``backward`` mode the first one ends the second iteration (the
        first backward cannot tell a manual update from gradient accumulation)."""
        return ITERATIONS - 1 if self.detection == "backward" else ITERATIONS


CORPUS = [
    Loop("manual_sgd", "manual_sgd.py", "backward", True, None),
    Loop("autocast_scaler_accum", "autocast_scaler_accum.py", "optimizer", True, "SGD", calls=4,
         between="GradScaler unscale"),
    Loop("scaler_skips_steps", "autocast_scaler_accum.py", "optimizer", True, "SGD", ("--inf-every", "3"),
         calls=4, between="GradScaler unscale"),
    Loop("clip_grad", "clip_grad.py", "optimizer", True, "AdamW", between="clip_grad_norm_(max_norm=1)"),
    Loop("logits_loss_tuple", "logits_loss_tuple.py", "optimizer", True, "Adam"),
    Loop("dict_output", "dict_output.py", "optimizer", True, "SGD"),
    Loop("dataclass_output", "dict_output.py", "optimizer", True, "SGD", ("--output", "dataclass")),
    Loop("loss_outside", "loss_outside.py", "optimizer", True, "SGD"),
    Loop("lbfgs_closure", "lbfgs_closure.py", "optimizer", True, "LBFGS", calls=5,
         replay="LBFGS re-evaluates the script's loss in a closure"),
    Loop("gan_two_optimizers", "gan_two_optimizers.py", "optimizer", True, None,
         replay="the step trains 2 models"),
    Loop("siamese", "siamese.py", "optimizer", True, "SGD", calls=2),
    Loop("eval_between", "eval_between.py", "optimizer", True, "SGD", ("--eval-every", "2")),
    Loop("rnn_hidden_manual", "rnn_hidden_carried.py", "backward", True, None),
    Loop("rnn_hidden_optim", "rnn_hidden_carried.py", "optimizer", True, "SGD", ("--update", "optim"),
         between="clip_grad_norm_(max_norm=0.25)"),
    Loop("lazy_first_step", "lazy_first_step.py", "optimizer", True, "Adam"),
    Loop("autograd_grad", "autograd_grad.py", "backward", True, None,
         replay="the script's parameter gradients were not seen"),
    Loop("no_module_manual", "no_module_manual.py", "backward", None, None,
         replay="no module with parameters was called"),
]


@dataclasses.dataclass
class CorpusRun:
    proc: object
    summary: dict | None
    runner: dict
    run_dir: Path


def _profile(loop: Loop, out: Path) -> CorpusRun:
    proc = run_advisor("profile", "--out", out, "--json", "--no-measure", "--keep-running", "--warmup", "3",
                       "--steps", "3", LOOPS / loop.script, "--", "--steps", str(ITERATIONS), *loop.args)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    runner = json.loads((out / "runner.json").read_text()) if (out / "runner.json").exists() else {}
    return CorpusRun(proc, summary, runner, out)


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory) -> dict[str, CorpusRun]:
    """Every pattern profiled once, three at a time (each run is mostly one busy core)."""
    root = tmp_path_factory.mktemp("corpus")
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {loop.name: pool.submit(_profile, loop, root / loop.name) for loop in CORPUS}
        return {name: future.result() for name, future in futures.items()}


def check_capture(loop: Loop, run: CorpusRun) -> None:
    """The captured step against the table, and the replay's check against the script's own step: exact where it
    reproduces it (outputs, gradients as backward left them, the optimizer's update), else refused with why."""
    workload = json.loads((run.run_dir / "workload.json").read_text())
    assert workload["training"] == loop.training
    optimizer = (workload.get("optimizer") or {}).get("class")
    assert (optimizer.rsplit(".", 1)[-1] if optimizer else None) == loop.optimizer
    replay = workload.get("replay") or {}
    if loop.replay != "reproduced":
        assert not (workload["captured"] and replay["reproduced"])
        assert loop.replay in (replay.get("why") or workload["reason"])
        return
    assert workload["captured"] and replay["reproduced"], replay
    assert workload["calls_per_step"] == loop.calls
    assert workload["captured_steps"] == 2, "--warmup 3: the two steps after the first one are captured"
    assert replay["output_rel_error"] < 1e-6 and replay["grad_rel_error"] < 1e-6
    assert (replay.get("update_rel_error") is None) == (loop.optimizer is None), "the update is checked with an optimizer"
    if loop.optimizer:
        assert replay["update_rel_error"] < 1e-6
    assert any(loop.between in action for action in workload["between_backward_and_step"]) if loop.between \
        else workload["between_backward_and_step"] == []


@pytest.mark.parametrize("loop", CORPUS, ids=lambda loop: loop.name)
def test_steps_found_once_per_iteration(corpus_runs, loop):
    run = corpus_runs[loop.name]
    assert run.proc.returncode == 0, run.proc.stderr
    assert no_advisor_traceback(run.proc.stderr), run.proc.stderr
    assert f"trained {ITERATIONS} steps" in run.proc.stderr, "the script ran to its end (--keep-running)"
    assert run.runner["outcome"] == "completed" and run.runner["record_limit"] is None
    assert run.runner["step_detection"] == loop.detection
    assert run.summary["steps"]["detection"] == loop.detection
    assert run.runner["boundaries"] == loop.boundaries, "exactly one step per iteration of the loop"
    assert run.summary["steps"]["count"] == 3 and run.summary["steps"]["median_ms"] > 0
    parts = run.summary["breakdown"]
    # LBFGS runs its backward passes inside optimizer.step(), where the optimizer phase wins
    assert max(parts["backward"]["ms"], parts["optimizer"]["ms"]) > 0, "backward passes are inside the steps"
    check_capture(loop, run)


def test_scaler_skipped_every_third_step(corpus_runs):
    """The variant whose scaler skips steps really skipped some: their boundaries came from GradScaler.step."""
    run = corpus_runs["scaler_skips_steps"]
    assert f"({len(range(0, ITERATIONS, 3))} skipped by the scaler)" in run.proc.stderr

"""Workload capture: the step before the window is copied, and replaying the copy reproduces the
script's own outputs and parameter gradients (checked by the runner itself, in workload.json)."""

import json

from conftest import SCRIPTS, run_advisor


def _workload(tmp_path, script, *args):
    out = tmp_path / "run"
    proc = run_advisor("profile", "--warmup", "3", "--steps", "3", "--no-measure", "--out", out, script, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "workload.json").read_text())


def test_cnn_training_step_replays_exactly(tmp_path):
    w = _workload(tmp_path, SCRIPTS / "tiny_cnn_train.py")
    assert w["captured"] and w["training"] and w["model"] == "Sequential"
    assert w["inputs"] == [{"index": 0, "shape": [8, 3, 32, 32], "dtype": "float32", "device": "cpu"}]
    assert w["batch_size"] == 8
    assert w["optimizer"]["class"] == "torch.optim.sgd.SGD"
    assert w["optimizer"]["hyperparameters"]["momentum"] == 0.9
    assert w["replay"]["output_rel_error"] < 1e-6 and w["replay"]["grad_rel_error"] < 1e-5
    loader = w["data_loader"]
    assert loader["dataset"] == "TensorDataset" and loader["batch_size"] == 8 and loader["num_workers"] == 0
    assert loader["pin_memory"] is False and loader["sampler"] == "SequentialSampler"


def test_model_returning_its_own_loss_replays_from_the_loss(tmp_path):
    w = _workload(tmp_path, SCRIPTS / "hf_style_train.py")
    assert w["captured"] and w["backward_from_outputs"] == [1], "backward started at the loss output"
    assert w["optimizer"]["class"] == "torch.optim.adamw.AdamW" and w["optimizer"]["groups"] == 2
    assert w["replay"]["output_rel_error"] < 1e-6, "dropout replays with the same RNG state"
    assert w["replay"]["grad_rel_error"] < 1e-5, "no double counting between logits and loss"


def test_inference_workload(tmp_path):
    w = _workload(tmp_path, SCRIPTS / "tiny_mlp_infer.py", "--", "20")
    assert w["captured"] and not w["training"] and w["optimizer"] is None
    assert "grad_rel_error" not in w["replay"] and w["replay"]["output_rel_error"] < 1e-6
    assert w["data_loader"] is None, "the script feeds its model without a DataLoader"


def test_nothing_to_capture(tmp_path):
    out = tmp_path / "run"
    assert run_advisor("profile", "--out", out, SCRIPTS / "never_steps.py").returncode == 0
    w = json.loads((out / "workload.json").read_text())
    assert w["captured"] is False and w["reason"]


def test_a_step_the_replay_does_not_reproduce_is_not_measured(tmp_path):
    """Gradients changed by hand between backward and the optimizer step: the replay's outputs and gradients
    agree, its parameter update does not, so no technique is measured on that step."""
    from conftest import profile_json

    proc, summary = profile_json(SCRIPTS / "hand_scaled_grads.py", "--warmup", "3", "--steps", "2",
                                 "--techniques", "channels_last,batch_size_x2", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    w = json.loads((tmp_path / "run" / "workload.json").read_text())
    replay = w["replay"]
    assert w["captured"] and w["training"] and replay["reproduced"] is False
    assert replay["output_rel_error"] < 1e-6 and replay["grad_rel_error"] < 1e-6
    assert replay["update_rel_error"] > 0.1 and "parameter update" in replay["why"]
    assert any(r["status"].startswith("not reproduced") for r in summary["recommendations"])
    for record in summary["recommendations"]:
        assert record["measured"] is None, record
        assert record["status"] == f"not reproduced: {replay['why']}" or record["status"] == "not applicable"

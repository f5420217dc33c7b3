"""The bundled examples under the real CLI: each shows the bottleneck it was written for."""

import pytest

from conftest import EXAMPLES, profile_json


def _profile(tmp_path, example, *script_args):
    proc, summary = profile_json(EXAMPLES / f"{example}.py", "--warmup", "2", "--steps", "4", "--no-measure", "--",
                                 "--steps", "30", *script_args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary["steps"]["count"] == 4
    return summary


@pytest.mark.timing  # the shares of the step: run alone (see Makefile)
def test_cnn_is_convolution_bound(tmp_path):
    summary = _profile(tmp_path, "cnn_train")
    assert summary["steps"]["detection"] == "optimizer"
    assert "conv" in summary["hot_ops"][0]["name"], [op["name"] for op in summary["hot_ops"][:5]]
    assert summary["hot_ops"][0]["source"].startswith("examples/cnn_train.py:")


@pytest.mark.timing
def test_transformer_is_matmul_bound(tmp_path):
    summary = _profile(tmp_path, "transformer_train")
    top = {op["name"] for op in summary["hot_ops"][:4]}
    assert top & {"aten::addmm", "aten::mm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}, top


@pytest.mark.timing
def test_input_bound_is_data_bound(tmp_path):
    summary = _profile(tmp_path, "input_bound_train")
    shares = {phase: part["share"] for phase, part in summary["breakdown"].items()}
    assert max(shares, key=shares.get) == "data", shares


def test_mlp_inference_steps_are_module_calls(tmp_path):
    summary = _profile(tmp_path, "mlp_infer")
    assert summary["steps"]["detection"] == "module"
    assert summary["breakdown"]["backward"]["ms"] == 0


def test_gpt_attention_is_hand_written(tmp_path):
    summary = _profile(tmp_path, "gpt_train")
    names = {op["name"] for op in summary["hot_ops"]}
    assert "aten::bmm" in names, names
    assert not any("scaled_dot_product" in n for n in names), names

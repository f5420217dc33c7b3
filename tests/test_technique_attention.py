"""Hand-written attention rewritten to F.scaled_dot_product_attention in the model copy's own modules."""

import copy
import importlib.util
import math

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from advisor.technique import Context, DoesNotApply
from advisor.techniques.attention import ScaledDotProductAttention, use_sdpa
from conftest import EXAMPLES, profile_json

spec = importlib.util.spec_from_file_location("gpt_train", EXAMPLES / "gpt_train.py")
gpt_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpt_train)


class Plain(nn.Module):
    """Divided by sqrt(d), no mask, functional dropout, torch.softmax with a positional dim."""

    def __init__(self, d=16):
        super().__init__()
        self.qkv, self.d = nn.Linear(d, 3 * d), d

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d), -1)
        return F.dropout(weights, p=0.1, training=self.training) @ v


class ReturnsWeights(Plain):
    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return weights @ v, weights


def same(a, b, tolerance=1e-5):
    return ((a - b).norm() / a.norm()).item() < tolerance


@pytest.mark.parametrize("training", [True, False])
def test_gpt_attention_is_rewritten_with_the_same_outputs_and_gradients(training):
    torch.manual_seed(0)
    model = gpt_train.TinyGPT(64, 32, 4, 2, 16).train(training)
    rewritten, count, where = use_sdpa(copy.deepcopy(model))
    assert count == 2 and where == ["blocks.0.attn", "blocks.1.attn"]
    assert isinstance(rewritten.blocks[0].attn, fx.GraphModule) and rewritten.blocks[0].attn.training == training
    code = rewritten.blocks[0].attn.code
    assert "scaled_dot_product_attention" in code and "softmax" not in code and "masked_fill" not in code
    assert [n for n, _ in rewritten.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert type(model.blocks[0].attn) is gpt_train.CausalSelfAttention, "the model given was a copy"
    tokens = torch.randint(0, 64, (2, 16))
    expected, got = model(tokens), rewritten(tokens)
    assert same(expected, got)
    expected.square().sum().backward()
    got.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), rewritten.parameters()):
        assert same(p.grad, q.grad, 1e-4), name


def test_divisor_functional_dropout_and_positional_dim():
    torch.manual_seed(0)
    model = Plain().eval()
    rewritten, count, _ = use_sdpa(copy.deepcopy(model))
    x = torch.randn(2, 5, 16)
    assert count == 1 and same(model(x), rewritten(x))


def test_does_not_apply_with_reasons():
    with pytest.raises(DoesNotApply, match="no q @ k.transpose"):
        use_sdpa(ReturnsWeights())  # the weights are used elsewhere: not replaceable
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    with pytest.raises(DoesNotApply, match="no q @ k.transpose"):
        use_sdpa(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))


def test_verdict_from_the_hot_ops():
    technique = ScaledDotProductAttention()
    hot = Context({"hot_ops": [{"name": "aten::bmm", "share": 0.3}, {"name": "aten::_softmax", "share": 0.1}]},
                  {}, {})
    assert technique.applies_to(hot).applies and technique.estimate(hot).speedup > 1
    assert not technique.applies_to(Context({"hot_ops": [{"name": "aten::addmm", "share": 0.9}]}, {}, {})).applies


def test_measured_on_the_gpt_example(tmp_path):
    proc, summary = profile_json("--warmup", "2", "--steps", "2", "--techniques", "sdpa", EXAMPLES / "gpt_train.py",
                                 "--", "--steps", "8", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = {r["technique"]: r for r in summary["recommendations"]}["sdpa"]
    assert record["status"] == "measured", record
    assert record["measured"]["notes"]["attention_patterns_replaced"] == 2
    quality = record["measured"]["quality"]
    assert quality["output_rel_error"] < 1e-4 and quality["grad_rel_error"] < 1e-4

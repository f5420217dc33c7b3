"""Train a small Transformer encoder language model on synthetic token ids.

Bottleneck demonstrated: matmul/attention-bound compute. The step time is
dominated by the dense linear layers (aten::addmm / aten::mm, forward and
backward) and by scaled-dot-product attention inside nn.TransformerEncoder.

Usage:
    python examples/transformer_train.py --steps 200
"""

import argparse
import math
import time

import torch
import torch.nn as nn


class TinyLM(nn.Module):
    """Token embedding + learned positions + causal TransformerEncoder + LM head."""

    def __init__(self, vocab_size, d_model, num_heads, num_layers, seq_len, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens):
        seq_len = tokens.size(1)
        x = self.embed(tokens) * self.scale + self.pos[:, :seq_len]
        mask = self.causal_mask[:seq_len, :seq_len]
        x = self.encoder(x, mask=mask, is_causal=True)
        return self.head(self.norm(x))


def random_batch(batch_size, seq_len, vocab_size, generator):
    # Targets are the inputs shifted by one position, as in language modelling.
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="number of training steps")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    model = TinyLM(args.vocab_size, args.d_model, args.num_heads, args.num_layers, args.seq_len)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)

    model.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        inputs, targets = random_batch(args.batch_size, args.seq_len, args.vocab_size, generator)
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = criterion(logits.reshape(-1, args.vocab_size), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss {loss.item():.4f}", flush=True)

    elapsed = time.perf_counter() - start
    print(f"done: {args.steps} steps in {elapsed:.2f}s ({elapsed / max(args.steps, 1) * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()

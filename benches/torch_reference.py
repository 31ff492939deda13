#!/usr/bin/env python3
"""PyTorch reference of xp's GPT, for side-by-side loss and speed comparisons.

Same model as src/train/model.rs: token + position embeddings, pre-LN blocks with causal
self-attention and a paGating feed-forward unit, final LayerNorm, untied LM head; N(0, 0.02)
init (N(0, 0.02/sqrt(2 layers)) for the projections into the residual stream), zero biases.
Same recipe as xp's trainer: AdamW (decay on matrices only), linear warm-up then cosine decay
to min_lr (xp's formula), global-norm clipping, random crops of block+1 tokens, validation loss
on fixed batches.

Attention is `F.scaled_dot_product_attention` by default, as nanoGPT runs it (`--attention
manual` writes it out); `--dtype bf16` is autocast, `--compile` is torch.compile: the three
ways a nanoGPT user runs it.

    python3 benches/torch_reference.py --data tinyshakespeare.txt --unit glu --alpha 1.0
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class FeedForward(nn.Module):
    def __init__(self, d, mult, unit, alpha, bias):
        super().__init__()
        h = mult * d
        self.unit, self.alpha = unit, alpha
        self.a = nn.Linear(d, h, bias=bias)
        self.b = nn.Linear(d, h, bias=bias) if unit != "mlp" else None
        self.o = nn.Linear(h, d, bias=bias)
        self.alpha_logit = nn.Parameter(torch.zeros(1)) if alpha == "learnable" and unit != "mlp" else None
        self.beta = nn.Parameter(torch.ones(1)) if unit == "swish" else None

    def gate(self, b):
        u = self.unit
        if u in ("glu", "gtu"):
            return torch.sigmoid(b)
        if u == "reglu":
            return F.relu(b)
        if u == "gelu":
            return F.gelu(b)
        if u == "mish":
            return F.mish(b)
        if u == "silu":
            return F.silu(b)
        if u == "swish":
            return b * torch.sigmoid(self.beta * b)
        raise ValueError(u)

    def forward(self, x, scheduled_alpha):
        a = self.a(x)
        if self.b is None:
            return self.o(F.gelu(a))
        g = self.gate(self.b(x))
        v = torch.tanh(a) if self.unit == "gtu" else a
        if self.alpha_logit is not None:
            alpha = torch.sigmoid(self.alpha_logit)
        elif self.alpha == "cosine":
            alpha = scheduled_alpha
        else:
            alpha = float(self.alpha)
        return self.o(v * (alpha * g + (1 - alpha)))


class Block(nn.Module):
    def __init__(self, d, heads, mult, unit, alpha, bias, dropout, attention):
        super().__init__()
        self.heads = heads
        self.sdpa = attention == "sdpa"
        self.ln1 = nn.LayerNorm(d, bias=bias)
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.ln2 = nn.LayerNorm(d, bias=bias)
        self.ffn = FeedForward(d, mult, unit, alpha, bias)
        self.attn_drop = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def attention(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
            return self.proj(y.transpose(1, 2).reshape(b, t, d))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), 1)
        att = self.attn_drop(F.softmax(att.masked_fill(mask, float("-inf")), dim=-1))
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))

    def forward(self, x, alpha):
        x = x + self.drop(self.attention(self.ln1(x)))
        return x + self.drop(self.ffn(self.ln2(x), alpha))


class Gpt(nn.Module):
    def __init__(self, vocab, a):
        super().__init__()
        self.tok = nn.Embedding(vocab, a.dim)
        self.pos = nn.Embedding(a.block, a.dim)
        self.drop = nn.Dropout(a.dropout)
        self.blocks = nn.ModuleList(
            Block(a.dim, a.heads, a.hidden_mult, a.unit, a.alpha, a.bias, a.dropout, a.attention)
            for _ in range(a.layers)
        )
        self.ln_f = nn.LayerNorm(a.dim, bias=a.bias)
        self.head = nn.Linear(a.dim, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        # nanoGPT's scaled init of the projections that write into the residual stream.
        for block in self.blocks:
            for m in (block.proj, block.ffn.o):
                nn.init.normal_(m.weight, 0.0, 0.02 / math.sqrt(2 * a.layers))

    def forward(self, idx, targets, alpha):
        b, t = idx.shape
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x, alpha)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def learning_rate(a, step):
    if step < a.warmup:
        return a.lr * (step + 1) / (a.warmup + 1)
    progress = min((step - a.warmup) / max(a.steps - a.warmup, 1), 1.0)
    return a.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (a.lr - a.min_lr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--unit", default="glu")
    p.add_argument("--alpha", default="1.0")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--hidden-mult", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--bias", action="store_true")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-batches", type=int, default=200)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args()
    if a.alpha not in ("learnable", "cosine"):
        a.alpha = float(a.alpha)

    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    text = open(a.data, encoding="utf-8").read()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    split = int(len(ids) * 0.9)
    train, val = ids[:split], ids[split:]

    def batch(data, gen):
        ix = torch.randint(len(data) - a.block - 1, (a.batch,), generator=gen)
        x = torch.stack([data[i : i + a.block] for i in ix])
        y = torch.stack([data[i + 1 : i + a.block + 1] for i in ix])
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    model = Gpt(len(chars), a).to(device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, a.beta2), eps=1e-8, fused=device == "cuda",
    )
    step_fn = torch.compile(model) if a.compile else model
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    train_gen = torch.Generator().manual_seed(a.seed)
    tokens_per_step = a.batch * a.block

    def evaluate():
        model.eval()
        gen = torch.Generator().manual_seed(a.seed + 1)
        total = 0.0
        with torch.no_grad(), autocast:
            for _ in range(a.eval_batches):
                x, y = batch(val, gen)
                total += step_fn(x, y, 1.0).item()
        model.train()
        return total / a.eval_batches

    print(json.dumps({"params": params, "vocab": len(chars), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                      "dtype": a.dtype, "attention": a.attention, "compile": a.compile, "unit": a.unit,
                      "alpha": a.alpha, "torch": torch.__version__}), flush=True)
    speeds, best = [], float("inf")
    start = time.time()
    last = (time.time(), 0)
    for step in range(a.steps):
        lr = learning_rate(a, step)
        for g in opt.param_groups:
            g["lr"] = lr
        scheduled = 0.5 * (1 + math.cos(math.pi * step / a.steps))
        x, y = batch(train, train_gen)
        with autocast:
            loss = step_fn(x, y, scheduled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        done = step + 1
        if step == 0:
            if device == "cuda":
                torch.cuda.synchronize()
            first_step = time.time() - start
            last = (time.time(), 1)
        if done % a.log_every == 0 or done == a.steps:
            value = loss.item()
            elapsed = time.time() - last[0]
            speed = (done - last[1]) * tokens_per_step / max(elapsed, 1e-9)
            last = (time.time(), done)
            if done > a.log_every:
                speeds.append(speed)
            print(json.dumps({"step": done, "train_loss": round(value, 4), "tokens_per_s": round(speed)}), flush=True)
        if done % a.eval_every == 0 or done == a.steps:
            t0 = time.time()
            v = evaluate()
            best = min(best, v)
            last = (last[0] + (time.time() - t0), last[1])
            print(json.dumps({"step": done, "val_loss": round(v, 4)}), flush=True)
    speeds.sort()
    print(json.dumps({"summary": True, "best_val_loss": round(best, 4), "median_tokens_per_s": round(speeds[len(speeds) // 2]) if speeds else None,
                      "first_step_s": round(first_step, 2), "wall_s": round(time.time() - start, 1),
                      "peak_mb": round(torch.cuda.max_memory_allocated() / 1e6) if device == "cuda" else None}), flush=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""PyTorch side of tests/bench/train_bench.sh: the lecture recipe (gpt.py) on
the lecture model class of tests/python/torch_models.py.
usage: train_torch.py CORPUS --layers L --embd C --heads H --ctx T --batch B
         --steps N [--lr 3e-4] [--dropout 0.2] [--eval-batches E] [--threads 2]
         [--seed S] [--warmup W]
Prints 'torch tokens/s X' (training steps after W warm-up steps, evaluation
excluded), 'torch median tokens/s M' (B*T / the median step time) and 'torch final val loss Y' (E fixed batches of the last 10%)."""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch_models as tm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = open(a.corpus, encoding="utf-8").read()
    vocab = tm.vocab_of(text)
    stoi = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    T, B = a.ctx, a.batch

    def get_batch(split, g=None):
        d = train if split == "train" else val
        ix = torch.randint(len(d) - T, (B,), generator=g)
        x = torch.stack([d[i:i + T] for i in ix])
        y = torch.stack([d[i + 1:i + T + 1] for i in ix])
        return x, y

    m = tm.LectureGPT(vocab_size=len(vocab), n_embd=a.embd, n_head=a.heads, n_layer=a.layers,
                      block_size=max(T, 64), dropout=a.dropout)

    def init(mod):  # gpt.py _init_weights
        if isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, mean=0.0, std=0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.Embedding):
            nn.init.normal_(mod.weight, mean=0.0, std=0.02)
    m.apply(init)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed + 1)
    evalb = [get_batch("val", g) for _ in range(a.eval_batches)]
    m.train()
    t_start = None
    dts = []
    for step in range(a.steps):
        if step == a.warmup:
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        x, y = get_batch("train")
        logits = m(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= a.warmup:
            dts.append(time.perf_counter() - t0)
    dt = time.perf_counter() - t_start
    print(f"torch tokens/s {(a.steps - a.warmup) * B * T / dt:.0f}")
    dts.sort()
    k = len(dts)
    med = dts[k // 2] if k % 2 else 0.5 * (dts[k // 2 - 1] + dts[k // 2])
    print(f"torch median tokens/s {B * T / med:.1f}")
    m.eval()
    with torch.no_grad():
        tot = 0.0
        for x, y in evalb:
            lg = m(x)
            tot += F.cross_entropy(lg.view(-1, lg.shape[-1]), y.view(-1)).item()
    print(f"torch final val loss {tot / len(evalb):.4f}")


if __name__ == "__main__":
    main()

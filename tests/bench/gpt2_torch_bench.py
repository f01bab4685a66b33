#!/usr/bin/python3
"""PyTorch side of gpt2_bench.sh: the plain-PyTorch GPT-2 of
tests/python/gpt2_hf.py (Hugging Face names, Conv1D, gelu_new) loaded from the
same Hugging Face folder's model.safetensors, run on the same tokens as
bench_forward, last-position logits only (as the C run), eval mode, no grad,
torch.set_num_threads(--threads), float32. Prints `key value` lines and checks
its logits against the C ones (--logits)."""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gpt2_hf as g  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        if v["dtype"] == "F32":
            out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy().reshape(v["shape"]))
    return out


def forward_last(model, idx):
    tr = model.transformer
    T = idx.shape[1]
    x = tr.wte(idx) + tr.wpe(torch.arange(T))
    C, H = model.cfg["n_embd"], model.cfg["n_head"]
    B = idx.shape[0]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for blk in tr.h:
        q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(C, dim=2)
        qh, kh, vh = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = ((qh @ kh.transpose(-2, -1)) / (C // H) ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + blk.attn.c_proj((att @ vh).transpose(1, 2).reshape(B, T, C))
        x = x + blk.mlp.c_proj(g.gelu_new(blk.mlp.c_fc(blk.ln_2(x))))
    return model.lm_head(tr.ln_f(x[:, -1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--logits")
    ap.add_argument("--B", type=int, required=True)
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.folder, "config.json")))
    model = g.GPT2(V=cfg["vocab_size"], T=cfg["n_positions"], C=cfg["n_embd"], H=cfg["n_head"], L=cfg["n_layer"])
    sd = load_safetensors(os.path.join(a.folder, "model.safetensors"))
    sd = {("transformer." + k if not k.startswith("lm_head") else k): v for k, v in sd.items()}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=False)
    model.eval()
    idx = torch.from_numpy(np.fromfile(a.tokens, dtype="<i4").astype(np.int64).reshape(a.B, a.T))
    with torch.no_grad():
        forward_last(model, idx[:1])  # warm-up
        best = float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = forward_last(model, idx)
            best = min(best, time.perf_counter() - t0)
    print(f"torch_threads {torch.get_num_threads()}")
    print(f"torch_tokens_per_s {a.B * a.T / best:.1f}")
    if a.logits:
        c = np.fromfile(a.logits, dtype="<f4").reshape(a.B, -1)
        d = float(np.abs(c - out.numpy()).max())
        print(f"logits_max_abs_diff {d:.3e}")
        if not d <= 1e-3:
            print("gpt2_torch_bench.py: C and PyTorch logits differ", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

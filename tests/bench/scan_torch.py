#!/usr/bin/python3
"""Plain PyTorch scan of the same slice as `corpuslens scan` with
CORPUSLENS_SCAN_SAMPLE_SHARDS=K: batched forward (no prefix sharing) of the
sampled substrings and the prompts, hook mlp_out at the last position of every
block, normalised matmul, count pairs > prefilter. Prints time and pairs.
usage: scan_torch.py MODEL.h5 CORPUS.h5 K [shard_size] [threads]"""
import sys
import time

import h5py
import numpy as np
import torch

model, corpus, K = sys.argv[1], sys.argv[2], int(sys.argv[3])
S = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
f = h5py.File(model, "r")
cfg = dict(f["config"].attrs)
W = {}
f["weights"].visititems(lambda n, o: W.__setitem__(n, torch.from_numpy(o[()])) if isinstance(o, h5py.Dataset) else None)
C, H, NL = int(cfg["n_embd"]), int(cfg["n_head"]), int(cfg["n_layer"])
hs = C // H
c = h5py.File(corpus, "r")
toks = c["substrings/tokens"][()]
N, L = toks.shape
pidx = c["prompts/index"][()]
order = np.lexsort(toks.T[::-1])  # lexicographic, as the C shard plan
n_shards = (N + S - 1) // S
sel = np.concatenate([order[(j * n_shards // K) * S:(j * n_shards // K) * S + S] for j in range(K)])


@torch.no_grad()
def hooked(tk, bs=2048):
    out = []
    for i in range(0, len(tk), bs):
        t = torch.from_numpy(tk[i:i + bs].astype(np.int64))
        B, T = t.shape
        x = W["token_embedding_table.weight"][t] + W["position_embedding_table.weight"][:T]
        caps = []
        for l in range(NL):
            p = f"blocks.{l}."
            h = torch.nn.functional.layer_norm(x, (C,), W[p + "ln1.weight"], W[p + "ln1.bias"])
            q, k, v = (h @ W[p + "sa.qkv.weight"].T).split(C, -1)
            q, k, v = (z.view(B, T, H, hs).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / hs ** 0.5
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            z = att @ v
            x = x + z.transpose(1, 2).reshape(B, T, C) @ W[p + "sa.proj.weight"].T + W[p + "sa.proj.bias"]
            h = torch.nn.functional.layer_norm(x, (C,), W[p + "ln2.weight"], W[p + "ln2.bias"])
            m = torch.relu(h @ W[p + "ffwd.net.0.weight"].T + W[p + "ffwd.net.0.bias"]) @ W[p + "ffwd.net.2.weight"].T \
                + W[p + "ffwd.net.2.bias"]
            caps.append(m[:, -1])
            x = x + m
        out.append(torch.nn.functional.normalize(torch.stack(caps), dim=-1))
    return torch.cat(out, 1)  # [NL, n, C]


t0 = time.time()
pv = hooked(toks[pidx])
t1 = time.time()
sv = hooked(toks[sel])
t2 = time.time()
pairs = 0
with torch.no_grad():
    for b in range(NL):
        for i in range(0, sv.shape[1], 8192):
            sim = pv[b] @ sv[b, i:i + 8192].T
            pairs += int((sim > 0.7).sum())
t3 = time.time()
print(f"torch: {len(pidx)} prompts x {len(sel)} substrings x {NL} blocks, threads {torch.get_num_threads()}: "
      f"prompt forward {t1 - t0:.1f} s, substring forward {t2 - t1:.1f} s, cosine {t3 - t2:.1f} s, "
      f"total {t3 - t0:.1f} s, pairs > 0.7: {pairs}")

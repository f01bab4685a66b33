#!/usr/bin/python3
"""PyTorch side of forward_bench.sh: the lecture model (tests/python/torch_models.py,
the lecture's own per-head modules) loaded from the same corpuslens model file,
run on the same tokens as bench_forward, last-position logits only (as the C
run), eval mode, no grad, torch.set_num_threads(--threads). Best of --reps after
a warm-up on 64 rows. Prints `key value` lines, and checks its logits against the C
ones (--logits) so both sides provably computed the same thing."""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch_models as tm  # noqa: E402


def forward_last(model, idx):
    if isinstance(model, tm.LectureGPT):
        T = idx.shape[1]
        x = model.token_embedding_table(idx) + model.position_embedding_table(torch.arange(T))
        x = model.blocks(x)
        return model.lm_head(model.ln_f(x[:, -1]))
    tr = model.transformer
    x = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1]))
    for blk in tr.h:
        x = blk(x)
    return model.lm_head(tr.ln_f(x[:, -1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="int32 [B, T] raw (bench_forward --tokens-out)")
    ap.add_argument("--logits", help="float32 [B, V] raw (bench_forward --logits-out) to check against")
    ap.add_argument("--B", type=int, required=True)
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, vocab, cfg = tm.model_from_h5(a.model)
    tok = np.fromfile(a.tokens, dtype="<i4")
    if tok.size != a.B * a.T:
        sys.exit(f"forward_bench.py: {a.tokens} holds {tok.size} ids, expected {a.B}x{a.T}")
    idx = torch.from_numpy(tok.astype(np.int64).reshape(a.B, a.T))
    with torch.no_grad():
        out = forward_last(model, idx[:64])  # warm-up (as bench_forward: <= 64 rows)
        best = float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = forward_last(model, idx)
            best = min(best, time.perf_counter() - t0)
    n = a.B * a.T
    print(f"torch_version {torch.__version__}")
    print(f"torch_threads {torch.get_num_threads()}")
    print(f"torch_s {best:.6f}")
    print(f"torch_tokens_per_s {n / best:.1f}")
    if a.logits:
        c = np.fromfile(a.logits, dtype="<f4").reshape(a.B, -1)
        d = float(np.abs(c - out.numpy()).max())
        print(f"logits_max_abs_diff {d:.3e}")
        if not d <= 1e-3:
            print("forward_bench.py: C and PyTorch logits differ", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

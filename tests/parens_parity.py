#!/usr/bin/python3
"""The balanced-parentheses classifier (issue 17) against PyTorch, and its data.

Data (`demo-corpus parens`): labels right; balanced / unbalanced half each;
even lengths 2..40 near-uniform; for each length, balanced depths near-uniform
over 1..length/2; every unbalanced string passes exactly one of the count and
never-negative tests, both kinds present; split sizes; the same seed gives the
same bytes, another seed other bytes.

Model (`train --task parens`: causal=0, pos=sinusoidal, n_classes=2, pad_id):
one step with lr 0 keeps the initial weights; the first batch's class
probabilities (the inference forward pass) and the first step's gradients
(the training backward pass) must equal a float64 PyTorch reference written
here (bidirectional attention with the padding keys masked, sinusoidal
positions, the head reading [start]); `capture` hooks (attention patterns,
residual stream) and the class logits at every position too. Negative
controls: the reference with a causal mask, or without the padding mask,
must disagree.
"""
import collections
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

torch.set_default_dtype(torch.float64)
failures = []
TOL_FWD = 1e-4
VOCAB = "$()^_"
PAD = VOCAB.index("_")


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(args):
    return subprocess.run([os.environ["CORPUSLENS"]] + args, capture_output=True, text=True)


def read_data(path):
    rows = []
    for line in open(path):
        if line.startswith("#"):
            continue
        sp, lab, s = line.rstrip("\n").split("\t")
        rows.append((sp, int(lab), s))
    return rows


def balanced(s):
    h = 0
    for ch in s:
        h += 1 if ch == "(" else -1
        if h < 0:
            return False
    return h == 0


def depth(s):
    h = m = 0
    for ch in s:
        h += 1 if ch == "(" else -1
        m = max(m, h)
    return m


def data_checks(d):
    p = os.path.join(d, "parens.tsv")
    r = run(["demo-corpus", "parens", "--seed", "5", "--n", "40000", "--val", "1000", "--test", "2000", "-o", p])
    check(r.returncode == 0, f"demo-corpus parens ({r.stderr.strip()})")
    rows = read_data(p)
    check(len(rows) == 40000, f"{len(rows)} examples")
    check(all(balanced(s) == bool(lab) for _, lab, s in rows), "every label is right")
    nb = sum(lab for _, lab, _ in rows)
    check(nb == 20000, f"balanced {nb} of 40000 (half)")
    sp = collections.Counter(x for x, _, _ in rows)
    check(sp == {"train": 37000, "val": 1000, "test": 2000}, f"splits {dict(sp)}")
    lens = collections.Counter(len(s) for _, _, s in rows)
    check(sorted(lens) == list(range(2, 41, 2)), f"lengths are the even numbers 2..40 ({sorted(lens)[:3]}...)")
    # 20 lengths, 2000 expected each: binomial sd ~44; allow 5 sd
    worst = max(abs(v - 2000) for v in lens.values())
    check(worst <= 220, f"lengths near-uniform (worst |count - 2000| = {worst})")
    # depths of balanced strings, per length: uniform over 1..len/2
    byl = collections.defaultdict(collections.Counter)
    for _, lab, s in rows:
        if lab:
            byl[len(s)][depth(s)] += 1
    bad = []
    for n, cnt in byl.items():
        m = n // 2
        tot = sum(cnt.values())
        e = tot / m
        sd = math.sqrt(e * (1 - 1 / m)) + 1e-9
        if set(cnt) != set(range(1, m + 1)) and tot >= 5 * m:
            bad.append((n, "missing depths"))
        for k, v in cnt.items():
            if not (abs(v - e) <= 5 * sd):
                bad.append((n, k, v, round(e)))
    check(not bad, f"balanced depths uniform per length (off: {bad[:3]})")
    # control for the depth check: plain uniform Dyck strings are far from it
    rng = np.random.default_rng(0)
    dy = collections.Counter()
    while sum(dy.values()) < 1000:
        s = "".join(rng.permutation(list("(" * 10 + ")" * 10)))
        if balanced(s):
            dy[depth(s)] += 1
    check(dy[10] == 0 and dy[1] == 0, "control: uniform Dyck strings of length 20 almost never have depth 1 or 10")
    # unbalanced: exactly one of the two tests passes; both kinds
    kinds = collections.Counter()
    for _, lab, s in rows:
        if lab:
            continue
        count_ok = s.count("(") == s.count(")")
        h, never_neg = 0, True
        for ch in s:
            h += 1 if ch == "(" else -1
            never_neg = never_neg and h >= 0
        kinds[(count_ok, never_neg)] += 1
    check(set(kinds) == {(True, False), (False, True)} and min(kinds.values()) > 9000,
          f"unbalanced strings pass exactly one test ({dict(kinds)})")
    p2 = os.path.join(d, "again.tsv")
    run(["demo-corpus", "parens", "--seed", "5", "--n", "40000", "--val", "1000", "--test", "2000", "-o", p2])
    check(open(p, "rb").read() == open(p2, "rb").read(), "same seed, same bytes")
    p3 = os.path.join(d, "other.tsv")
    run(["demo-corpus", "parens", "--seed", "6", "--n", "40000", "--val", "1000", "--test", "2000", "-o", p3])
    check(open(p, "rb").read() != open(p3, "rb").read(), "another seed, other bytes")
    r = run(["demo-corpus", "parens", "--n", "10", "--val", "5", "--test", "5", "-o", os.path.join(d, "x.tsv")])
    check(r.returncode == 2 and not os.path.exists(os.path.join(d, "x.tsv")), "val + test >= n refused")


# ---- the PyTorch reference ----

def sinusoid(T, C):
    pe = torch.zeros(T, C)
    pos = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(0, C, 2, dtype=torch.float64)
    freq = torch.pow(torch.tensor(10000.0), -i / C)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def load_weights(path):
    with h5py.File(path, "r") as f:
        cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()}
        W = {k: torch.tensor(f["weights"][k][()], dtype=torch.float64, requires_grad=True) for k in f["weights"]}
    return cfg, W


def reference(cfg, W, ids, causal=False, padmask=True, hooks=None, ablate=None):
    """ablate: ('attn', l), ('mlp', l) or ('head', l, h) zeroed."""
    B, T = ids.shape
    L, H, C = int(cfg["n_layer"]), int(cfg["n_head"]), int(cfg["n_embd"])
    hs = C // H
    eps = float(cfg["ln_eps"])

    def ln(x, w, b):
        return torch.nn.functional.layer_norm(x, (C,), w, b, eps)

    x = W["token_embedding_table.weight"][ids] + sinusoid(int(cfg["block_size"]), C)[:T]
    keep = (ids != PAD) if padmask else torch.ones_like(ids, dtype=torch.bool)
    mask = keep[:, None, None, :].expand(B, H, T, T)
    if causal:
        mask = mask & torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = f"blocks.{l}."
        h = ln(x, W[p + "ln1.weight"], W[p + "ln1.bias"])
        qkv = h @ W[p + "sa.qkv.weight"].T
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, H, hs).transpose(1, 2)
        k = k.view(B, T, H, hs).transpose(1, 2)
        v = v.view(B, T, H, hs).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        z = att @ v
        if ablate and ablate[0] == "head" and ablate[1] == l:
            z = z.clone()
            z[:, ablate[2]] = 0
        z = z.transpose(1, 2).reshape(B, T, C)
        a_out = z @ W[p + "sa.proj.weight"].T + W[p + "sa.proj.bias"]
        if ablate and ablate[0] == "attn" and ablate[1] == l:
            a_out = a_out * 0
        x = x + a_out
        h = ln(x, W[p + "ln2.weight"], W[p + "ln2.bias"])
        f = torch.relu(h @ W[p + "ffwd.net.0.weight"].T + W[p + "ffwd.net.0.bias"])
        m_out = f @ W[p + "ffwd.net.2.weight"].T + W[p + "ffwd.net.2.bias"]
        if ablate and ablate[0] == "mlp" and ablate[1] == l:
            m_out = m_out * 0
        x = x + m_out
        if hooks is not None:
            hooks[f"blocks.{l}.attn.hook_pattern"] = att
            hooks[f"blocks.{l}.hook_resid_post"] = x
    xf = ln(x, W["ln_f.weight"], W["ln_f.bias"])
    logits_all = xf @ W["lm_head.weight"].T + W["lm_head.bias"]
    return logits_all[:, 0], logits_all


def model_checks(d):
    data = os.path.join(d, "small.tsv")
    r = run(["demo-corpus", "parens", "--seed", "2", "--n", "600", "--val", "100", "--test", "100", "-o", data])
    check(r.returncode == 0, "small data set")
    model = os.path.join(d, "m.h5")
    first = os.path.join(d, "first.h5")
    r = run(["train", "--task", "parens", "--data", data, "--steps", "1", "--batch", "24", "--lr", "0",
             "--eval-every", "0", "--seed", "3", "--dump-first", first, "-o", model])
    check(r.returncode == 0, f"train --task parens, one step with lr 0 ({r.stderr.strip()})")
    if r.returncode:
        return
    cfg, W = load_weights(model)
    check(int(cfg["causal"]) == 0 and int(cfg["sinusoidal"]) == 1 and int(cfg["n_classes"]) == 2
          and int(cfg["n_layer"]) == 3 and int(cfg["n_head"]) == 2 and int(cfg["n_embd"]) == 56
          and "position_embedding_table.weight" not in W,
          "model file: causal 0, sinusoidal (no learned positions), 2 classes, 3 x 2 heads x 56")
    with h5py.File(first, "r") as f:
        ids = torch.tensor(f["batch/ids"][()].astype(np.int64))
        labels = torch.tensor(f["batch/labels"][()].astype(np.int64))
        probs_c = f["batch/probs"][()]
        grads_c = {k: f["grads"][k][()] for k in f["grads"]}
    check(bool((ids == PAD).any()), "the batch has padding")
    logits, _ = reference(cfg, W, ids)
    probs = logits.softmax(-1).detach().numpy()
    dif = float(np.abs(probs - probs_c).max())
    check(dif <= TOL_FWD, f"class probabilities of the first batch: max|d| {dif:.2g} (<= {TOL_FWD})")
    for name, kw in (("causal", dict(causal=True)), ("no padding mask", dict(padmask=False))):
        lc, _ = reference(cfg, W, ids, **kw)
        dc = float(np.abs(lc.softmax(-1).detach().numpy() - probs_c).max())
        check(not (dc <= TOL_FWD), f"control ({name}): max|d| {dc:.2g} > {TOL_FWD}")
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    missing = [k for k in W if k not in grads_c]
    excess = {}
    for k, w in W.items():
        if k in grads_c:
            g, gc = w.grad.numpy(), grads_c[k]
            e = np.abs(g - gc) - (1e-5 + 1e-3 * np.abs(g))
            excess[k] = float("nan") if np.isnan(e).any() else float(e.max())
    worst_name = max(excess, key=lambda k: excess[k] if excess[k] == excess[k] else float("inf"))
    worst = excess[worst_name]
    check(not missing and worst <= 0.0,
          f"gradients of all {len(W)} tensors within 1e-5 + 1e-3|ref| (worst excess {worst:.2g} at {worst_name})")
    g_head = W["lm_head.weight"].grad.numpy()
    check(float(np.abs(g_head).max()) > 1e-4, "control: the head's gradient is not zero")
    # capture: hooks and logits at every position
    texts = ["^(())$" + "_" * 36, "^)(()$" + "_" * 36, "^" + "()" * 20 + "$", "^((((" + "_" * 37]
    acts = os.path.join(d, "acts.h5")
    hk = []
    for l in range(3):
        hk += ["--hook", f"blocks.{l}.attn.hook_pattern"]
    r = run(["capture", "--model", model] + hk + ["--hook", "resid_post", "-o", acts] + texts)
    check(r.returncode == 0, f"capture ({r.stderr.strip()})")
    if r.returncode:
        return
    ids2 = torch.tensor([[VOCAB.index(ch) for ch in t] for t in texts])
    hooks = {}
    with torch.no_grad():
        _, la = reference(cfg, W, ids2, hooks=hooks)
    with h5py.File(acts, "r") as f:
        lc = f["logits"][()]
        dif = float(np.abs(la.numpy() - lc).max()) if lc.shape == tuple(la.shape) else float("inf")
        check(dif <= TOL_FWD, f"capture logits [4, 42, 2] vs PyTorch: max|d| {dif:.2g}")
        for k, v in hooks.items():
            got = f["hooks"][k][()]
            dif = float(np.abs(v.numpy() - got).max()) if got.shape == tuple(v.shape) else float("inf")
            check(dif <= TOL_FWD, f"{k} {list(got.shape)}: max|d| {dif:.2g}")
        pat = f["hooks"]["blocks.0.attn.hook_pattern"][()]
        check(float(pat[0, :, :, 6:].max()) == 0.0 and float(pat[0, :, 0, 5].min()) > 0.0,
              "attention: no weight on padding keys, weight on later keys (bidirectional)")


def analysis_checks(d):
    """ablate --data and lens --parens against the reference (the lr-0 model)."""
    import xml.etree.ElementTree as ET
    data, model = os.path.join(d, "small.tsv"), os.path.join(d, "m.h5")
    cfg, W = load_weights(model)
    rows = [(s, lab) for sp, lab, s in read_data(data) if sp == "test"]
    ids = torch.tensor([[VOCAB.index(ch) for ch in "^" + s + "$" + "_" * (40 - len(s))] for s, _ in rows])
    labels = torch.tensor([lab for _, lab in rows])
    r = run(["ablate", "--model", model, "--data", data])
    check(r.returncode == 0, f"ablate --data ({r.stderr.strip()})")
    got = {}
    for line in r.stdout.splitlines():
        parts = line.rsplit(None, 2)
        if len(parts) == 3 and parts[0].startswith("block"):
            got[parts[0].strip()] = float(parts[1])
    cases = {}
    for l in range(3):
        cases[f"block {l} attention"] = ("attn", l)
        cases[f"block {l} feed-forward"] = ("mlp", l)
        for h in range(2):
            cases[f"block {l} head {h}"] = ("head", l, h)
    with torch.no_grad():
        base = float((reference(cfg, W, ids)[0].argmax(-1) == labels).double().mean())
        bad = []
        for name, ab in cases.items():
            acc = float((reference(cfg, W, ids, ablate=ab)[0].argmax(-1) == labels).double().mean())
            if not (abs(got.get(name, float("nan")) - acc) <= 1e-4):
                bad.append((name, got.get(name), acc))
    check(len(got) == len(cases) and not bad, f"ablate: the {len(cases)} accuracies equal PyTorch's (off: {bad[:3]})")
    check(f"intact model accuracy {base:.4f}" in r.stdout, f"ablate: intact accuracy {base:.4f}")
    # lens at [start]
    s = "(()())"
    svg = os.path.join(d, "heads.svg")
    r = run(["lens", "--model", model, "--parens", s, "--attn-svg", svg])
    check(r.returncode == 0, f"lens --parens ({r.stderr.strip()})")
    vals = [float(line.split()[-1]) for line in r.stdout.splitlines()
            if line.startswith(("embed", "block", "model"))]
    idr = torch.tensor([[VOCAB.index(ch) for ch in "^" + s + "$" + "_" * (40 - len(s))]])
    hooks = {}
    with torch.no_grad():
        lg, _ = reference(cfg, W, idr, hooks=hooks)
        C = int(cfg["n_embd"])
        emb = W["token_embedding_table.weight"][idr] + sinusoid(int(cfg["block_size"]), C)[:idr.shape[1]]
        streams = [emb] + [hooks[f"blocks.{l}.hook_resid_post"] for l in range(3)]
        want = []
        for x in streams:
            xf = torch.nn.functional.layer_norm(x[:, 0], (C,), W["ln_f.weight"], W["ln_f.bias"], float(cfg["ln_eps"]))
            want.append(float((xf @ W["lm_head.weight"].T + W["lm_head.bias"]).softmax(-1)[0, 1]))
        want.append(float(lg.softmax(-1)[0, 1]))
    dif = max(abs(a - b) for a, b in zip(vals, want)) if len(vals) == len(want) else float("inf")
    check(dif <= 1e-5, f"lens at [start]: P(balanced) per layer vs PyTorch, max|d| {dif:.2g}")
    try:
        root = ET.parse(svg).getroot()
        texts = [t.text or "" for t in root.iter() if t.tag.endswith("text")]
        ok = all(f"block {l} head {h}" in texts for l in range(3) for h in range(2))
    except (ET.ParseError, OSError):
        ok = False
    check(ok, "the attention SVG parses and has one panel per head")
    r = run(["lens", "--model", model, "--parens", "(a)"])
    check(r.returncode == 1 and "not a parenthesis" in r.stderr, "lens refuses a string with another character")


def main():
    if not os.environ.get("CORPUSLENS"):
        sys.exit("parens_parity.py: CORPUSLENS is not set")
    with tempfile.TemporaryDirectory() as d:
        data_checks(d)
        model_checks(d)
        analysis_checks(d)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()

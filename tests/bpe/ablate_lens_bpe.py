#!/usr/bin/python3
"""ablate --corpus and lens --prompts on a BPE corpus against a numpy oracle
(issue 25: both refused a BPE corpus before).

A tiny GPT-2-format tokenizer (tiny_tokenizer.py), a 2-layer GPT over its V
(train --tokenizer, one step from random weights), a BPE corpus of 4-token
n-grams (prepare --vocab-from). The oracle reads the prompts' tokens from the
corpus (/prompts/index into /substrings/tokens) and runs a float64 forward
(scan_test.py's weights and layer norm):
  - ablate --corpus (zero mode, 1 and 2 ranks): per block, the mean and std
    over the prompts of the Hellinger distance between the last position's
    next-token distribution intact and with that block's attention output
    (feed-forward output) zeroed, within 1e-5;
  - lens --prompts --max 12: per layer (the embeddings, then after each
    block) the mean over the prompts of H_last and KL_last (the final
    distribution against the layer's, last position) within 1e-5.
Negative controls: the oracle with another block ablated, and the lens of the
layer below, differ from the tool's beyond 1e-5.
Environment: CORPUSLENS, TESTDATA."""
import os
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import scan_test as st  # noqa: E402
from scan_test import check, run  # noqa: E402
from tiny_tokenizer import tiny_bpe_model  # noqa: E402

TOL = 1e-5


def forward(cfg, w, toks, zero=None):
    """Last-position logits [B, V] and the lens logits [B, NL + 1, V] (the
    embeddings, then each block's output: scan_test's forward)."""
    out = st.forward(cfg, w, toks, zero)
    eps = float(cfg["ln_eps"])
    emb = st.ln(out["resid_pre"][0], w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T + w["lm_head.bias"]
    return out["logits"], np.concatenate([emb[:, None], out["lens"]], 1)


def hell(p, q):
    return np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum(-1)) / np.sqrt(2)


def kl(p, q):
    return np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))), 0).sum(-1)


def main():
    d = tempfile.mkdtemp(prefix="cl_ablbpe_")
    tok, V, txt, m = tiny_bpe_model(d, run, st.TESTDATA)
    c = os.path.join(d, "c.h5")
    run(["prepare", txt, "--len", "4", "--prompts", "20", "--seed", "3", "--vocab-from", m, "-o", c])
    with h5py.File(c) as f:
        toks = f["/substrings/tokens"][()][f["/prompts/index"][()]].astype(np.int64)
    cfg, w = st.load_model(m)
    NL, P = int(cfg["n_layer"]), len(toks)
    check(int(cfg["vocab_size"]) == V, f"model V {cfg['vocab_size']} == tokenizer V {V}")
    logits, lens = forward(cfg, w, toks)
    p0 = st.softmax(logits)

    # ---- ablate --corpus (zero): per block mean and std of H ----
    def oracle_h(kind, l):
        return hell(p0, st.softmax(forward(cfg, w, toks, (kind, l))[0]))
    ref = {k: np.array([oracle_h(k, l) for l in range(NL)]) for k in ("attn", "mlp")}
    for ranks in (None, 2):
        a = os.path.join(d, f"abl{ranks}.h5")
        run(["ablate", "--model", m, "--corpus", c, "-o", a], ranks=ranks)
        with h5py.File(a) as f:
            check(int(f.attrs["prompts"]) == P, f"ablate: {int(f.attrs['prompts'])} prompts == {P}")
            for k, g in (("attn", "attn_removed"), ("mlp", "ffwd_removed")):
                dm = float(np.abs(f[f"/{g}/mean"][()] - ref[k].mean(1)).max())
                ds = float(np.abs(f[f"/{g}/std"][()] - ref[k].std(1)).max())
                check(dm <= TOL and ds <= TOL, f"ablate ({ranks or 1} rank) {g}: mean/std == the oracle's "
                      f"(max diff {dm:.3g} / {ds:.3g})")
                if k == "attn" and ranks is None:
                    dneg = float(np.abs(f[f"/{g}/mean"][()] - ref[k].mean(1)[::-1]).max())
                    check(dneg > TOL, f"negative control: another block's ablation differs ({dneg:.3g})")
    print(f"ablate --corpus (BPE, P={P}): attn_removed mean {ref['attn'].mean(1)}, "
          f"ffwd_removed mean {ref['mlp'].mean(1)}: == the oracle")

    # ---- lens --prompts --max 12: per-layer means of H_last and KL_last ----
    Pm = 12
    pl = st.softmax(lens[:Pm])  # [Pm, NL + 1, V]
    fin = p0[:Pm, None]
    h_ref, kl_ref = hell(fin, pl).mean(0), kl(fin, pl).mean(0)
    r = run(["lens", "--model", m, "--prompts", c, "--max", str(Pm)])
    lines = r.stdout.splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.split()[:2] == ["layer", "H_last"]), len(lines))
    rows = [ln.split()[-6:] for ln in lines[at + 1:] if ln.strip()]  # a label, then the 6 statistics
    check(len(rows) == NL + 1 and f"logit lens over {Pm} prompts" in r.stdout and "(4 tokens)" in r.stdout,
          f"lens --prompts prints {NL + 1} layers over {Pm} prompts of 4 tokens:\n{r.stdout}")
    if len(rows) == NL + 1:
        got_h = np.array([float(x[0]) for x in rows])
        got_kl = np.array([float(x[1]) for x in rows])
        dh, dk = float(np.abs(got_h - h_ref).max()), float(np.abs(got_kl - kl_ref).max())
        check(dh <= TOL and dk <= TOL, f"lens --prompts H_last / KL_last == the oracle's ({dh:.3g} / {dk:.3g})")
        dneg = float(np.abs(got_h[1:] - h_ref[:-1]).max())
        check(dneg > TOL, f"negative control: the layer below's H_last differs ({dneg:.3g})")
        print(f"lens --prompts (BPE): H_last per layer {got_h} == the oracle ({dh:.3g})")
    if st.FAIL:
        print(f"{len(st.FAIL)} failure(s)")
        return 1
    print("ablate_lens_bpe: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

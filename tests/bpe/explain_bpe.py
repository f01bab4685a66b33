#!/usr/bin/python3
"""index + explain on a BPE corpus against a naive numpy oracle (issue 25 item 3).

A tiny GPT-2-format tokenizer (tiny_tokenizer.py), a 2-layer GPT over its V
(train --tokenizer, one step from random weights), a BPE corpus of 4-token
n-grams with a held-out part (prepare), a float32 index (index).

The oracle encodes each text itself (GPT-2's byte-level BPE: the pre-token
pattern restricted to ASCII, which the texts are, and the merges by rank;
checked against the corpus's whole token stream), keeps the last L tokens
(the window explain documents), finds the unique n-grams and their next-token
counts naively from the stream, runs a float64 forward (scan_test.py's) of
every n-gram and window, and computes per block the cosine similarities, the
strings above the threshold and their summed next-token counts, the
approximation and its Hellinger distance to the model:
  - explain's model probabilities within 1e-5, per (text, block) the match
    count and the counts exactly and H within 1e-5 (texts with a pair within
    1e-5 of a threshold excepted, none expected); H from the file's own counts
    and probabilities to 1e-12; the best match's similarity within 1e-5;
  - 1 and 2 ranks give the same counts and H (exactly);
  - --passage: its tokens are the oracle's encoding, position i's window
    starts at max(0, i - L + 1), and its last position equals explain of the
    whole text bit for bit;
  - --eval-text: the held-out windows' H equals H from the file's counts and
    probabilities (1e-12), and the summary has every baseline row;
  - refusals: a char model with the BPE corpus (index, explain).
Negative control: a changed count changes the oracle's H beyond 1e-5.
Mode `serve` (test serve_bpe): serve on the BPE index answers /api/explain
for a text with one position per token (the oracle's encoding), each with its
token's text, and every position's H, matches, similar strings and
similarities equal explain --passage -o of the same text (bit for bit), the
model's top probabilities likewise; /api/locate of a similar string finds it
in the corpus's tokens; a char model with the BPE corpus is refused.
Environment: CORPUSLENS, TESTDATA."""
import json
import os
import re
import shutil
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import scan_test as st  # noqa: E402
from scan_test import check, run  # noqa: E402
from tiny_tokenizer import write_tokenizer  # noqa: E402
from ngram_oracle import hell, naive_ngrams  # noqa: E402

TOL = 1e-5
THR = [0.75, 0.8]
WTS = [1.0, 0.5]
L = 4
# GPT-2's pre-token pattern with \p{L} -> [A-Za-z] and \p{N} -> [0-9]: exact on ASCII text
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


class Encoder:
    def __init__(self, d):
        with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
            self.ids = json.load(f)
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            ms = [ln.split() for ln in f.read().split("\n")[1:] if ln.strip()]
        self.ranks = {tuple(m): i for i, m in enumerate(ms)}
        from tiny_tokenizer import B2U
        self.b2u = B2U
        self.tok_bytes = {}
        u2b = {u: b for b, u in B2U.items()}
        for t, i in self.ids.items():
            self.tok_bytes[i] = bytes(u2b[c] for c in t)

    def bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, 1 << 30))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        assert all(ord(c) < 128 for c in text)
        out = []
        for piece in PAT.findall(text):
            out += [self.ids[t] for t in self.bpe("".join(self.b2u[b] for b in piece.encode()))]
        return out

    def decode(self, ids):
        return b"".join(self.tok_bytes[int(i)] for i in ids)


def read_counts(g, V=None):
    """/blocks/counts [P, Lh, V], from the sparse rows /blocks/next/* when the file has them (checked)."""
    if "/blocks/counts" in g:
        return g["/blocks/counts"][()]
    P = g["/hellinger"].shape[0]
    V = V or g["/model/probs"].shape[1]
    Lh = g["/blocks/n_matches"].shape[1]
    ip, tk, ct = (g["/blocks/next/" + k][()] for k in ("indptr", "token", "count"))
    check(ip.shape == (P * Lh + 1,) and ip[0] == 0 and ip[-1] == len(tk) == len(ct) and (np.diff(ip) >= 0).all(),
          "sparse rows: indptr")
    out = np.zeros((P * Lh, V), np.int64)
    for r in range(P * Lh):
        t, c = tk[ip[r]:ip[r + 1]], ct[ip[r]:ip[r + 1]]
        check((np.diff(t) > 0).all() and (c > 0).all() and ((t >= 0) & (t < V)).all(),
              f"sparse row {r}: tokens increasing in [0, V), counts > 0")
        out[r, t] = c
    return out.reshape(P, Lh, V)


DENSE = dict(st.ENV, CORPUSLENS_EXPLAIN_COUNTS="dense")  # the dense arrays of a BPE model: the reference


def top_ids(x, k):
    """the k largest of x (ties: the lower id), positive ones only (explain's and serve's lists)"""
    o = np.lexsort((np.arange(len(x)), -np.asarray(x, np.float64)))[:k]
    return [int(i) for i in o if x[i] > 0]


def csr_rows(g, name, P, V):
    """the rows of a CSR group (indptr [P + 1] from 0, tokens increasing in [0, V)), checked"""
    ip = g[name + "/indptr"][()]
    tk = g[name + "/token"][()]
    check(ip.shape == (P + 1,) and ip[0] == 0 and ip[-1] == len(tk) and (np.diff(ip) >= 0).all(), f"{name}: indptr")
    for p in range(P):
        t = tk[ip[p]:ip[p + 1]]
        check((np.diff(t) > 0).all() and ((t >= 0) & (t < V)).all(), f"{name} row {p}: tokens increasing in [0, V)")
    return ip, tk


def support_h(a, q, sq, rest):
    """H over a support (format.md): a on the support, q the model's probabilities there, sq its normaliser over
    V, rest its mass off the support"""
    a = np.asarray(a, np.float64)
    sa = a.sum()
    if not (sa > 0) or not (sq > 0):
        return -1.0
    acc = ((np.sqrt(a / sa) - np.sqrt(np.asarray(q, np.float64) / sq)) ** 2).sum() + rest / sq
    return min(1.0, float(np.sqrt(acc) / np.sqrt(2)))


def check_sparse(name, fs, fd, V, Lh, W, negative=False):
    """A sparse explain.h5 / passage.h5 (fs) against the dense one of the same run (fd, CORPUSLENS_EXPLAIN_COUNTS=
    dense): the support holds every count, n-gram and top-16 token, its probabilities are the dense row's bits, the
    approximations there are the dense ones and zero elsewhere, the mass matches, every H equals the dense H and
    the support formula gives it from the file (1e-12), the lens's H and top lists equal the dense rows'. W: the
    weights. Returns the largest H difference seen."""
    gs, gd = h5py.File(fs, "r"), h5py.File(fd, "r")
    check("/model/probs" not in gs and "/lens/probs" not in gs and "/approx" not in gs and "/ngram/counts" not in gs,
          f"{name}: the sparse file has no [P, V] arrays")
    check("/model/probs" in gd, f"{name}: the reference is dense")
    mp, ap = gd["/model/probs"][()], gd["/approx"][()]
    P = mp.shape[0]
    soft = "/soft/approx" in gd
    ip, tk = csr_rows(gs, "/model/support", P, V)
    pr, sap = gs["/model/support/prob"][()], gs["/model/support/approx"][()]
    ssp = gs["/model/support/soft_approx"][()] if soft else None
    mass = gs["/model/mass"][()]
    cs, cd = read_counts(gs, V), read_counts(gd)
    check((cs == cd).all(), f"{name}: the same counts")
    nip, ntk = csr_rows(gs, "/ngram/next", P, V)
    ncn = gs["/ngram/next/count"][()]
    ngd = gd["/ngram/counts"][()]
    H, Hd = gs["/hellinger"][()], gd["/hellinger"][()]
    worst = float(np.abs(H - Hd).max())
    for k in ("/ngram/hellinger",) + (("/soft/hellinger",) if soft else ()):
        worst = max(worst, float(np.abs(gs[k][()] - gd[k][()]).max()))
    bad = []
    for p in range(P):
        t = tk[ip[p]:ip[p + 1]]
        q = mp[p]
        onsup = np.zeros(V, bool)
        onsup[t] = True
        if not (pr[ip[p]:ip[p + 1]] == q[t]).all():
            bad.append(f"{p}: support probabilities are not the dense row's")
        if not set(top_ids(q, 16)) <= set(t.tolist()):
            bad.append(f"{p}: the model's top 16 not on the support")
        need = (cd[p].sum(0) > 0) | (ngd[p] > 0)
        if soft:
            need |= gd["/soft/approx"][p] > 0
        if (need & ~onsup).any():
            bad.append(f"{p}: a count or n-gram token off the support")
        if not ((sap[ip[p]:ip[p + 1]] == ap[p, t]).all() and (ap[p, ~onsup] == 0).all()):
            bad.append(f"{p}: the approximation on the support is not the dense one")
        if soft and not (ssp[ip[p]:ip[p + 1]] == gd["/soft/approx"][p, t]).all():
            bad.append(f"{p}: the soft approximation on the support")
        qq = np.where(q > 0, q, 0).astype(np.float64)
        dm = max(abs(mass[p, 0] - qq.sum()), abs(mass[p, 1] - qq[~onsup].sum()))
        if not (dm <= 1e-12):
            bad.append(f"{p}: mass {mass[p]} vs {qq.sum()}, {qq[~onsup].sum()}")
        row = np.zeros(V, np.int64)
        row[ntk[nip[p]:nip[p + 1]]] = ncn[nip[p]:nip[p + 1]]
        if not (row == ngd[p]).all():
            bad.append(f"{p}: the n-gram's rows")
        # H from the file alone: the counts' approximation on the support
        a = sum(W[b] * cs[p, b, t].astype(np.float64) for b in range(Lh))
        hs = support_h(a, pr[ip[p]:ip[p + 1]], mass[p, 0], mass[p, 1])
        worst = max(worst, abs(hs - float(H[p])))
        if negative and p == 0 and a.sum() > 0:  # negative control: one support probability changed
            q2 = pr[ip[p]:ip[p + 1]].astype(np.float64).copy()
            q2[int(np.argmax(a))] *= 1.5
            check(abs(support_h(a, q2, mass[p, 0], mass[p, 1]) - float(H[p])) > 1e-12,
                  f"{name}: negative control: a changed support probability changes H beyond 1e-12")
    lh, lid, lpr = gs["/lens/hellinger"][()], gs["/lens/top/token"][()], gs["/lens/top/prob"][()]
    lp = gd["/lens/probs"][()]
    NL = lp.shape[1]
    for p in range(P):
        for l in range(NL):
            hd = hell(lp[p, l].astype(np.float64), mp[p].astype(np.float64))
            worst = max(worst, abs(hd - float(lh[p, l])))
            ids = top_ids(lp[p, l], lid.shape[2])
            if lid[p, l, :len(ids)].tolist() != ids or not (lpr[p, l, :len(ids)] == lp[p, l, ids]).all():
                bad.append(f"{p} lens {l}: top tokens")
    check(not bad, f"{name}: sparse results equal the dense ones: {bad[:4]}")
    check(worst <= 1e-12, f"{name}: every H equals the dense one and the support's formula ({worst:.3g})")
    check(int((H >= 0).sum()) >= 1, f"{name}: some approximation (the comparison is not empty)")
    ss, sd = os.path.getsize(fs), os.path.getsize(fd)
    print(f"{name}: sparse == dense (H within {worst:.3g}); file {ss} bytes sparse, {sd} dense")
    gs.close(), gd.close()
    return worst


def test_sparse_char():
    """sparse counts (CORPUSLENS_EXPLAIN_COUNTS=csr) equal the dense path on a char model: texts (the sketch's
    per-text search), a passage (the batched search), --soft; 1 and 2 ranks"""
    d = tempfile.mkdtemp(prefix="cl_explainsparse_")
    m, c = st.setup(d, L=6)
    ix = os.path.join(d, "ix.h5")
    run(["index", "--model", m, "--corpus", c, "-o", ix])  # float16 with a sketch
    opts = ["--thresholds", "0.5,0.6", "--weights", "1,0.5", "--top", "5", "--soft"]
    base = ["explain", "--index", ix, "--corpus", c, "--model", m] + opts
    texts = ["First Citizen", "the people", "ze", "And I am sure"]
    passage = "Before we proceed any further, hear me speak. You are all resolved rather to die than to famish?"
    keys = ("/hellinger", "/approx", "/soft/hellinger", "/soft/approx", "/blocks/n_matches", "/model/probs")
    compared = 0
    for name, src, ranks in (("texts", texts, None), ("passage", ["--passage", passage], None),
                             ("passage, 2 ranks", ["--passage", passage], 2)):
        res = {}
        for lay in ("dense", "csr"):
            o = os.path.join(d, f"{lay}.h5")
            run(base + ["-o", o] + src, ranks=ranks, env=dict(st.ENV, CORPUSLENS_EXPLAIN_COUNTS=lay))
            with h5py.File(o) as g:
                res[lay] = {k: g[k][()] for k in keys} | {"counts": read_counts(g), "sparse": "/blocks/next" in g}
        check(not res["dense"]["sparse"] and res["csr"]["sparse"], f"{name}: the layouts are the ones asked for")
        for k in keys + ("counts",):
            a, b = res["dense"][k], res["csr"][k]
            dmax = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            check(a.shape == b.shape and dmax <= 1e-12, f"{name} {k}: sparse equals dense ({dmax:.3g})")
        check(int((res["dense"]["counts"] > 0).sum()) > 0, f"{name}: some counts (the comparison is not empty)")
        compared += 1
        check(int((res["dense"]["/hellinger"] >= 0).sum()) >= 2, f"{name}: at least two non-empty approximations")
        # negative control: another threshold changes H beyond 1e-12 (the comparison can fail)
        if name == "texts":
            o = os.path.join(d, "neg.h5")
            run(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", "0.55,0.6", "--weights",
                 "1,0.5", "--top", "5", "-o", o] + src, env=dict(st.ENV, CORPUSLENS_EXPLAIN_COUNTS="csr"))
            with h5py.File(o) as g:
                hn = g["/hellinger"][()]
            h0 = res["dense"]["/hellinger"]
            check(bool((np.abs(hn - h0) > 1e-12).any()), "negative control: another threshold changes H")
    print(f"sparse == dense on a char model: {compared} cases")
    shutil.rmtree(d, ignore_errors=True)
    finish()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "explain"
    if mode == "sparse":
        test_sparse_char()
        return
    d = tempfile.mkdtemp(prefix="cl_explainbpe_")
    tok = os.path.join(d, "tok")
    V = write_tokenizer(tok)
    enc = Encoder(tok)
    with open(os.path.join(st.TESTDATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()[:3000]
    txt = os.path.join(d, "t.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(text)
    m, c, ix, e, e2, char = (os.path.join(d, n) for n in ("m.h5", "c.h5", "ix.h5", "e.h5", "e2.h5", "char.h5"))
    run(["train", "--corpus", txt, "--tokenizer", tok, "--config", "n_layer=2,n_head=4,n_embd=32,block_size=16",
         "--steps", "1", "--batch", "2", "--ctx", "8", "--eval-batches", "1", "--seed", "5", "-o", m])
    run(["prepare", txt, "--len", str(L), "--prompts", "8", "--seed", "3", "--vocab-from", m,
         "--holdout-fraction", "0.2", "-o", c])
    run(["index", "--model", m, "--corpus", c, "--dtype", "f32", "-o", ix])
    if mode == "serve":
        test_serve(d, m, c, ix, enc, txt)
        shutil.rmtree(d, ignore_errors=True)
        finish()
        return
    # ---- the oracle's corpus ----
    with h5py.File(c) as f:
        train = f["/text/tokens"][()].astype(np.int64)
        hold = f["/holdout/tokens"][()].astype(np.int64)
        ctoks = f["/substrings/tokens"][()]
    allids = enc.encode(text)
    check(list(train) + list(hold) == allids, "the oracle's encoding is the corpus's token stream")
    toks, dense = naive_ngrams(train, L, V)
    check(toks.shape == ctoks.shape and (toks == ctoks).all(), "the corpus's n-grams are the naive ones")
    N = len(toks)
    cfg, w = st.load_model(m)
    act = st.forward(cfg, w, toks)
    vecs = np.stack(act["mlp_out"])
    nrm = vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-300)
    Lh = nrm.shape[0]

    # ---- explain of a few texts (one longer than L tokens, one held out, one not in the corpus) ----
    texts = ["First Citizen: hear me", "the", "Before we proceed any further",
             text[2820:2850], "zqx and the", "speak"]
    opts = ["--thresholds", ",".join(map(str, THR)), "--weights", ",".join(map(str, WTS)), "--top", "5"]
    base = ["explain", "--index", ix, "--corpus", c, "--model", m] + opts
    ed = os.path.join(d, "ed.h5")
    p1 = run(base + ["-o", e] + texts)
    run(base + ["-o", e2] + texts, ranks=2)
    pd_ = run(base + ["-o", ed] + texts, env=DENSE)
    check("(the last 4 tokens)" in p1.stdout, "the baselines are named in tokens")
    check(p1.stdout == pd_.stdout, "sparse results print what the dense ones print")
    import filecmp
    check(filecmp.cmp(e, e2, shallow=False), "1 and 2 ranks: the same bytes (sparse results)")
    check_sparse("texts", e, ed, V, 2, WTS, negative=True)
    # the oracle's checks read the dense reference (equal to the sparse file: check_sparse)
    f, f2 = h5py.File(ed, "r"), h5py.File(e2, "r")
    check("/blocks/counts" not in f2 and "/blocks/next/indptr" in f2, "a BPE explain.h5 holds sparse counts")
    mp, cnt, nm, H = f["/model/probs"][()], read_counts(f), f["/blocks/n_matches"][()], f["/hellinger"][()]
    tsim = f["/matches/similarity"][()]
    check((cnt == read_counts(f2, V)).all() and (f2["/hellinger"][()] == H).all()
          and (nm == f2["/blocks/n_matches"][()]).all(), "1 and 2 ranks: the same counts, matches and H")
    check(mp.shape == (len(texts), V) and cnt.shape == (len(texts), Lh, V), f"shapes {mp.shape} {cnt.shape}")
    neg_done = False
    n_exact = 0
    for p, t in enumerate(texts):
        ids = enc.encode(t)
        win = np.array(ids[-L:], np.int64)[None]
        a = st.forward(cfg, w, win)
        q = st.softmax(a["logits"])[0]
        dq = float(np.abs(mp[p] - q).max())
        check(dq <= TOL, f"text {p}: model probs within 1e-5 of the oracle ({dq:.3g})")
        approx = np.zeros(V)
        near_any = False
        for b in range(Lh):
            v = np.asarray(a["mlp_out"][b][0])
            v = v / np.linalg.norm(v)
            sim = nrm[b] @ v
            above = sim > THR[b]
            near = np.abs(sim - THR[b]) <= TOL
            near_any |= bool(near.any())
            ref = dense[above].sum(0)
            if not near.any():
                check(int(nm[p, b]) == int(above.sum()), f"text {p} block {b}: {nm[p, b]} matches, oracle {above.sum()}")
                check((cnt[p, b] == ref).all(), f"text {p} block {b}: counts equal the oracle's")
            ds = abs(float(tsim[p, b, 0]) - float(sim.max()))
            check(ds <= TOL, f"text {p} block {b}: best similarity {tsim[p, b, 0]} vs oracle {sim.max()}")
            approx += WTS[b] * ref
        h_file = hell(sum(WTS[b] * cnt[p, b].astype(np.float64) for b in range(Lh)), mp[p].astype(np.float64))
        dh_file = abs(h_file - float(H[p]))
        check(dh_file <= 1e-12, f"text {p}: H {H[p]} equals H from the file's counts ({dh_file:.3g})")
        if near_any:
            print(f"text {p}: a pair within 1e-5 of a threshold; H not compared with the oracle")
            continue
        n_exact += 1
        h_ref = hell(approx, q)
        dh = abs(h_ref - float(H[p]))
        check(dh <= TOL, f"text {p}: H {H[p]:.9f} within 1e-5 of the oracle's {h_ref:.9f} ({dh:.3g})")
        if not neg_done and approx.sum() > 0:
            bad = approx.copy()
            bad[int(np.argmin(bad + (bad == 0) * 1e9))] += 1  # a changed count
            check(abs(hell(bad, q) - float(H[p])) > TOL, "negative control: a changed count changes H beyond 1e-5")
            neg_done = True
    print(f"{n_exact} of {len(texts)} texts compared with the oracle")
    check(n_exact >= 4 and neg_done, f"{n_exact} texts compared with the oracle; negative control run")

    # ---- --passage: tokens, windows, the last position equals explain of the text ----
    pp, ppd = os.path.join(d, "p.h5"), os.path.join(d, "pd.h5")
    q1 = run(base + ["--passage", texts[0], "-o", pp])
    q2 = run(base + ["--passage", texts[0], "-o", ppd], env=DENSE)
    check(q1.stdout == q2.stdout, "--passage: sparse results print what the dense ones print")
    check_sparse("passage", pp, ppd, V, 2, WTS)
    with h5py.File(pp) as g, h5py.File(ppd) as gd:
        check((g["/lens/hellinger"][()] == gd["/lens/hellinger"][()]).all()
              and (g["/ngram/substring"][()] == gd["/ngram/substring"][()]).all(),
              "--passage: the lens's H and the n-gram's substrings equal the dense passage's")
    with h5py.File(pp) as g:
        ptok = g["/passage/tokens"][()]
        ws = g["/passage/win_start"][()]
        ph = g["/hellinger"][()]
        pc = read_counts(g, V)
    ids = enc.encode(texts[0])
    check(list(ptok) == ids, "passage tokens are the oracle's encoding")
    check(list(ws) == [max(0, i - L + 1) for i in range(len(ids))], "passage windows: the last L tokens")
    check(ph[-1] == H[0] and (pc[-1] == cnt[0]).all(), "the passage's last position equals explain of the text")

    # ---- --eval-text: held-out windows, with the baselines ----
    ev, evd = os.path.join(d, "ev.h5"), os.path.join(d, "evd.h5")
    pe = run(base + ["--eval-text", "30", "--quiet", "--soft", "-o", ev])
    ped = run(base + ["--eval-text", "30", "--quiet", "--soft", "-o", evd], env=DENSE)
    for row in ("approximation", "exact-string n-gram", "∞-gram", "backoff n-gram", "unigram", "logit lens, block 0"):
        check(row in pe.stdout, f"--eval-text prints the {row} row")
    check(pe.stdout == ped.stdout, "--eval-text: every summary row (the ∞-gram's, the unigram's, the lens's) of the "
          "sparse results equals the dense ones'")
    check_sparse("--eval-text --soft", ev, evd, V, 2, WTS)
    # 2 ranks: a passage of more than 256 distinct windows is two pieces of the trie forward (256 strings
    # each), one per rank, so the lens's H and top lists and the last residuals come from both ranks (summed):
    # the same bytes
    long_text = text[:1500]
    e300, e300r = os.path.join(d, "e300.h5"), os.path.join(d, "e300r.h5")
    run(base + ["--passage", long_text, "--quiet", "--soft", "-o", e300])
    run(base + ["--passage", long_text, "--quiet", "--soft", "-o", e300r], ranks=2)
    with h5py.File(e300) as g:
        nwin = len(set(g["/prompts/text"][()]))
    check(nwin > 256, f"the long passage has {nwin} distinct windows (more than one piece)")
    check(filecmp.cmp(e300, e300r, shallow=False), "a long passage: 1 and 2 ranks write the same bytes")
    with h5py.File(evd) as g:
        eh, ec, em = g["/hellinger"][()], read_counts(g), g["/model/probs"][()]
    worst = 0.0
    for p in range(len(eh)):
        h = hell(sum(WTS[b] * ec[p, b].astype(np.float64) for b in range(Lh)), em[p].astype(np.float64))
        worst = max(worst, abs(h - float(eh[p])))
    check(worst <= 1e-12, f"--eval-text H equals H from its counts ({worst:.3g})")

    # ---- refusals ----
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", txt, "-o", char])
    for name, args in (("index", ["index", "--model", char, "--corpus", c, "-o", os.path.join(d, "x.h5")]),
                       ("explain", ["explain", "--index", ix, "--corpus", c, "--model", char, "the"])):
        r = run(args, ok=False)
        lines = [ln for ln in r.stderr.strip().split("\n") if ln.startswith("corpuslens")]
        check(r.returncode != 0 and len(lines) == 1 and "GPT-2 BPE corpus but" in lines[0]
              and "Sanitizer" not in r.stderr, f"{name}: a char model with a BPE corpus refused: {r.stderr.strip()!r}")
    check(not os.path.exists(os.path.join(d, "x.h5")), "no index written on refusal")
    f.close(), f2.close()
    shutil.rmtree(d, ignore_errors=True)
    finish()


def test_serve(d, m, c, ix, enc, txt):
    import serve_test as sv
    text = "First Citizen: hear me speak, the"
    opts = ["--thresholds", ",".join(map(str, THR)), "--weights", ",".join(map(str, WTS))]
    pp = os.path.join(d, "p.h5")
    # the reference: the dense arrays (today's lists come from them); the server gives sparse results
    run(["explain", "--index", ix, "--corpus", c, "--model", m, "--top", "5", "--passage", text, "-o", pp] + opts,
        env=DENSE)
    with h5py.File(pp) as g:
        ref = {k: g[k][()] for k in ("/passage/tokens", "/hellinger", "/blocks/n_matches", "/matches/substring",
                                     "/matches/similarity", "/model/probs", "/ngram/hellinger", "/approx",
                                     "/lens/probs", "/lens/hellinger")}
    ids = enc.encode(text)
    check(list(ref["/passage/tokens"]) == ids, "explain --passage tokens are the oracle's encoding")
    srv = sv.Server(m, c, ix, extra=opts)
    try:
        srv.wait_ready()
        stc, _, data = srv.explain({"text": text, "top": 5})
        check(stc == 200, f"/api/explain status {stc}: {data[:300]!r}")
        api = json.loads(data) if stc == 200 else {"positions": []}
        pos = api["positions"]
        check(len(pos) == len(ids), f"{len(pos)} positions for {len(ids)} tokens")
        bad = []
        for i, p in enumerate(pos[:len(ids)]):
            want = enc.decode([ids[i]]).decode("utf-8", "replace")
            nxt = enc.decode([ids[i + 1]]).decode("utf-8", "replace") if i + 1 < len(ids) else None
            if p["char"] != want or p["next"] != nxt:
                bad.append(f"{i}: token text {p['char']!r}/{p['next']!r} vs {want!r}/{nxt!r}")
            h = sv.hnull(p["hellinger"])
            if not (h == ref["/hellinger"][i]):
                bad.append(f"{i}: H {h!r} vs explain {ref['/hellinger'][i]!r}")
            if not (sv.hnull(p["ngram_hellinger"]) == ref["/ngram/hellinger"][i]):
                bad.append(f"{i}: n-gram H")
            # the top lists (serve's top_chars of the dense rows: ties to the lower id, positive only)
            def want_top(x, k):
                ids_ = top_ids(x, k)
                return [(enc.decode([t]).decode("utf-8", "replace"), float(x[t])) for t in ids_]
            if [(e["char"], e["p"]) for e in p["model"]] != want_top(ref["/model/probs"][i], 10):
                bad.append(f"{i}: model top tokens")
            if p["hellinger"] is not None and \
                    [(e["char"], e["p"]) for e in p["approx"]] != want_top(ref["/approx"][i], 10):
                bad.append(f"{i}: approximation top tokens")
            for ln in p["lens"]:
                lb = ln["block"]
                if [(e["char"], e["p"]) for e in ln["top"]] != want_top(ref["/lens/probs"][i, lb], 3) or \
                        ln["hellinger"] != ref["/lens/hellinger"][i, lb]:
                    bad.append(f"{i} lens {lb}: top tokens or H")
            for b, blk in enumerate(p["blocks"]):
                subs = [int(x) for x in ref["/matches/substring"][i, b] if x >= 0]
                if blk["matches"] != ref["/blocks/n_matches"][i, b] or [s["substring"] for s in blk["similar"]] != subs:
                    bad.append(f"{i} block {b}: matches or similar strings")
                for k, s_ in enumerate(blk["similar"][:len(subs)]):
                    if float(s_["similarity"]) != float(ref["/matches/similarity"][i, b, k]):
                        bad.append(f"{i} block {b}: similarity {k}")
        check(not bad, f"/api/explain equals explain --passage -o: {bad[:5]}")
        check(any(p["hellinger"] is not None for p in pos), "some position has an approximation")
        sub = next((s_["substring"] for p in pos for blk in p["blocks"] for s_ in blk["similar"]), None)
        if sub is not None:
            stl, _, data = srv.get(f"/api/locate?substring={sub}")
            loc = json.loads(data) if stl == 200 else {}
            check(stl == 200 and loc.get("total", 0) >= 1, f"/api/locate of a similar string: {stl} {data[:200]!r}")
            with h5py.File(c) as g:
                row = g["/substrings/tokens"][sub]
            want = enc.decode(row).decode("utf-8", "replace")
            check(loc.get("text") == want, f"/api/locate text {loc.get('text')!r} vs {want!r}")
    finally:
        srv.stop()
    char = os.path.join(d, "char.h5")
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", txt, "-o", char])
    r = run(["serve", "--index", ix, "--corpus", c, "--model", char, "--port", "0"], ok=False)
    check(r.returncode != 0 and "GPT-2 BPE corpus but" in r.stderr and "Sanitizer" not in r.stderr,
          f"serve: a char model with a BPE corpus refused: {r.stderr.strip()[-300:]!r}")


def finish():
    import serve_test as sv
    st.FAIL.extend(sv.FAIL)
    if st.FAIL:
        print(f"{len(st.FAIL)} failure(s)")
        sys.exit(1)
    print("explain_bpe: ok")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""scan + reduce on a BPE corpus against a naive numpy oracle (issue 25 item 3).

A tiny GPT-2-format tokenizer (tiny_tokenizer.py), a 2-layer GPT over its V
(train --tokenizer, one step from random weights), a BPE corpus of 4-token
n-grams (prepare). The oracle takes the corpus's token stream (/text/tokens;
prepare_bpe checks it against the reference encoder), finds the unique
n-grams and their next-token counts naively, runs a float64 forward of every
n-gram and prompt (scan_test.py's), the brute-force cosine per block and bins
every pair: the scan's CSR counts (/freq/next) equal the oracle's in every bin
no pair within 1e-5 of an edge can touch, n_matches likewise; the model side
(no [P, V] dataset; scan_support_check.py): supports == the naive union,
probabilities within 1e-5, /prompts/next == the oracle's counts, and on a
prefilter-0.97 scan the followers of the last token are needed and there;
1 and 2 ranks write the same CSR and model side; the file holds 4 +
4 bytes per nonzero; reduce's H equals H computed naively from the scan's
counts (1e-12) and from the oracle's counts and probabilities (1e-5) for the
prompts with no pair near an edge; reduce's ∞-gram and backoff n-gram (the
corpus's token suffix array) equal a naive suffix search of the stream (1e-12;
negative control: the backoff row is not the ∞-gram), and a scan whose
/prompts/index is not its prompts is refused; a scan stopped after 2 shards and resumed
on 2 ranks writes the same CSR; the peak RSS of a scan with 10,000 bins grows
by less than 1/8 of its dense accumulator's size over 20 bins. Refusals: a BPE model with a char corpus,
another tokenizer's corpus, --next-layout dense, --index-out. Negative
control: a changed count changes H.
Environment: CORPUSLENS, TESTDATA."""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import scan_test as st  # noqa: E402
from scan_test import check, run  # noqa: E402
from tiny_tokenizer import MERGES, tiny_bpe_model, write_tokenizer  # noqa: E402
from ngram_oracle import hell, naive_ngrams, naive_suffix_counts  # noqa: E402
from scan_support_check import NEW, check_csr_model  # noqa: E402

TOL = 1e-5
THR = [0.75, 0.8]  # reduce's thresholds (one per block)


def csr_dense(f):
    P, Lb, NB, V = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins", "vocab_size"))
    ind, tok, cnt = (f["/freq/next/" + k][()] for k in ("indptr", "token", "count"))
    out = np.zeros((P * Lb * NB, V), np.int64)
    for r in range(P * Lb * NB):
        out[r, tok[ind[r]:ind[r + 1]]] = cnt[ind[r]:ind[r + 1]]
    return out.reshape(P, Lb, NB, V)


def main():
    d = tempfile.mkdtemp(prefix="cl_scanbpe_")
    tok, V, txt, m = tiny_bpe_model(d, run, st.TESTDATA)
    c, s, s2 = (os.path.join(d, n) for n in ("c.h5", "s.h5", "s2.h5"))
    L = 4
    run(["prepare", txt, "--len", str(L), "--prompts", "16", "--seed", "3", "--vocab-from", m, "-o", c])
    pf, bw = 0.5, 0.05
    scan = ["scan", "--model", m, "--corpus", c, "--prefilter", str(pf), "--bin-width", str(bw), "--batch", "97"]
    run(scan + ["-o", s])
    run(scan + ["-o", s2], ranks=2, env=dict(st.ENV, CORPUSLENS_SCAN_IO_SLICE="3000"))
    # ---- the naive oracle ----
    with h5py.File(c) as f:
        stream = f["/text/tokens"][()].astype(np.int64)
        ctoks = f["/substrings/tokens"][()]
        pidx = f["/prompts/index"][()]
    toks, dense = naive_ngrams(stream, L, V)
    check(toks.shape == ctoks.shape and (toks == ctoks).all(), "the corpus's n-grams are the naive ones")
    N = len(toks)
    cfg, w = st.load_model(m)
    check(int(cfg["vocab_size"]) == V, f"model V {cfg['vocab_size']} == tokenizer V {V}")
    act = st.forward(cfg, w, toks)
    vecs = np.stack(act["mlp_out"])
    Lh = vecs.shape[0]
    nrm = vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-300)
    P = len(pidx)
    f = h5py.File(s, "r")
    lay = f.attrs["next_layout"]
    lay = lay.decode() if isinstance(lay, bytes) else lay
    tt = f.attrs["token_type"]
    tt = tt.decode() if isinstance(tt, bytes) else tt
    check(lay == "csr" and tt == "gpt2-bpe", f"attributes next_layout {lay}, token_type {tt}")
    check("/freq/counts" not in f and "/vocab" not in f, "no dense counts, no /vocab")
    NB = int(f.attrs["n_bins"])
    lower = f["/freq/bin_lower"][()]
    counts = csr_dense(f)
    nm = f["/freq/n_matches"][()]
    pa = st.forward(cfg, w, toks[pidx])
    qo = st.softmax(pa["logits"])
    # the model side: no [P, V] dataset; supports, probabilities (1e-5 of the
    # oracle), mass, /prompts/next (the oracle's counts), unigram H; 1 == 2 ranks
    with h5py.File(s2) as g:
        check_csr_model(f, c, "BPE scan", q_oracle=qo, next_dense=dense[pidx], f2=g, controls=("top",))
    # a strict prefilter: few counts, so that the followers of the last token show
    sx = os.path.join(d, "strict.h5")
    run(["scan", "--model", m, "--corpus", c, "--prefilter", "0.97", "--bin-width", "0.01", "-o", sx])
    with h5py.File(sx) as g:
        check_csr_model(g, c, "BPE scan, prefilter 0.97", q_oracle=qo, next_dense=dense[pidx])
    sup = [(f["/model/support/token"][()], f["/model/support/prob"][()].astype(np.float64))]
    si, mass = f["/model/support/indptr"][()], f["/model/mass"][()]

    def hell_file(a, p):
        """H(a, the scan's model) from the file's support (h5schema.h's formula):
        a must lie on prompt p's support; -1 when a is empty."""
        t, q = sup[0][0][si[p]:si[p + 1]], sup[0][1][si[p]:si[p + 1]]
        a = np.asarray(a, np.float64)
        off = np.ones(len(a), bool)
        off[t] = False
        check(not a[off].any(), f"prompt {p}: a distribution off the support")
        sa, sq, rest = a.sum(), mass[p, 0], mass[p, 1]
        if not (sa > 0 and sq > 0):
            return -1.0
        acc = np.sum((np.sqrt(a[t] / sa) - np.sqrt(np.where(q > 0, q, 0) / sq)) ** 2) + rest / sq
        return min(1.0, float(np.sqrt(acc) / np.sqrt(2)))
    ptext = f["/prompts/text"][()]
    with h5py.File(c) as g:
        want_text = g["/prompts/text"][()]
    check([bytes(x) for x in ptext] == [bytes(x) for x in want_text], "prompt texts are the corpus's (decoded)")
    ref_all = np.zeros((P, Lh, NB, V), np.int64)
    exact = np.ones(P, bool)
    near_total = 0
    for b in range(Lh):
        sim = nrm[b][pidx] @ nrm[b].T
        sim[np.arange(P), pidx] = 1.0
        edges = np.concatenate([lower, [lower[-1] + bw]])
        for p in range(P):
            row = sim[p]
            near = np.zeros(N, bool)
            for e in edges:
                near |= np.abs(row - e) < TOL
            near[pidx[p]] = False
            above = row > pf
            k = np.clip(np.ceil((row - pf) / bw).astype(int) - 1, 0, NB - 1)
            k[pidx[p]] = NB - 1
            refn = np.zeros(NB, np.int64)
            for i in np.nonzero(above)[0]:
                ref_all[p, b, k[i]] += dense[i]
                refn[k[i]] += 1
            nn = int(near.sum())
            near_total += nn
            # the approximation sums the bins above a threshold: only a pair near that edge can change it
            for t in THR:
                if (np.abs(row - t) < TOL).any():
                    exact[p] = False
            ok = np.ones(NB, bool)
            for i in np.nonzero(near)[0]:
                ok[max(k[i] - 1, 0):k[i] + 2] = False
            check((counts[p, b][ok] == ref_all[p, b][ok]).all() and (nm[p, b][ok] == refn[ok]).all(),
                  f"counts p={p} b={b}")
    nnz = int((counts != 0).sum())
    check(counts.sum() > 0 and len(f["/freq/next/token"]) == nnz, f"nnz {nnz} stored")
    stor = f["/freq/next/token"].id.get_storage_size() + f["/freq/next/count"].id.get_storage_size()
    check(stor == 8 * nnz, f"token + count storage {stor} bytes == 8 x {nnz} nonzeros")
    print(f"BPE scan: V={V} P={P} N={N} Lh={Lh} NB={NB}: {nnz} nonzeros ({stor} bytes) instead of "
          f"{P * Lh * NB * V} dense cells ({4 * P * Lh * NB * V} bytes); pairs within {TOL} of an edge: {near_total}; "
          f"exact prompts {int(exact.sum())}/{P}")
    with h5py.File(s2) as g:
        for k in ("/freq/next/indptr", "/freq/next/token", "/freq/next/count", "/freq/n_matches", "/prompts/text"):
            check(np.array_equal(f[k][()], g[k][()]), f"1 rank == 2 ranks: {k}")
    f.close()
    # ---- resume: stopped after 2 shards on 1 rank, finished on 2: the same CSR ----
    s3 = os.path.join(d, "s3.h5")
    p1 = run(scan + ["-o", s3], env=dict(st.ENV, CORPUSLENS_SCAN_STOP_AFTER="2"), ok=False)
    check(not os.path.exists(s3) and os.path.isdir(s3 + ".state"), f"stopped scan left a state ({p1.returncode})")
    run(scan + ["-o", s3], ranks=2)
    with h5py.File(s) as f1, h5py.File(s3) as g:
        for k in ("/freq/next/indptr", "/freq/next/token", "/freq/next/count", "/freq/n_matches") + NEW:
            check(f1[k][()].tobytes() == g[k][()].tobytes(), f"stopped + resumed on 2 ranks == one run: {k}")
    # ---- memory follows the nonzeros, not P x blocks x bins x V ----
    # The same scan with 10,000 bins and with 20: the dense accumulator of the
    # first is P x Lh x 10000 x V x 4 bytes (~683 MB at P 32); the sparse one
    # grows by 16 bytes per row plus the nonzeros. Peak RSS (getrusage of the
    # child) of the two must differ by less than 1/8 of the dense size (the
    # dense accumulator touched ~1/4 of it here, and the dense writer a 64 MB slice).
    c32 = os.path.join(d, "c32.h5")
    run(["prepare", txt, "--len", str(L), "--prompts", "32", "--seed", "4", "--vocab-from", m, "-o", c32])
    meter = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stderr.buffer.write(r.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")

    def peak_kb(bw, out):
        p = subprocess.run([sys.executable, "-c", meter, st.EXE, "scan", "--model", m, "--corpus", c32,
                            "--prefilter", "0", "--bin-width", str(bw), "-o", out],
                           capture_output=True, text=True, env=st.ENV)
        if p.returncode != 0:
            print(p.stderr)
        check(p.returncode == 0, f"scan --bin-width {bw} ran")
        return int(p.stdout.split()[-1]) if p.returncode == 0 else 0
    big, small = os.path.join(d, "big.h5"), os.path.join(d, "small.h5")
    rss_big, rss_small = peak_kb(0.0001, big), peak_kb(0.05, small)
    with h5py.File(big) as g:
        nb, lb = int(g.attrs["n_bins"]), int(g.attrs["n_hook_blocks"])
        nnz_big = len(g["/freq/next/token"])
    dense = 32 * lb * nb * V * 4
    grow = (rss_big - rss_small) * 1024
    print(f"memory: {nb} bins: peak RSS {rss_big} kB, 20 bins: {rss_small} kB; growth {grow / 1e6:.1f} MB for "
          f"{nnz_big} nonzeros; the dense accumulator would be {dense / 1e6:.0f} MB")
    check(nb >= 9999 and grow < dense / 8, f"RSS growth {grow / 1e6:.1f} MB < 1/8 of the dense {dense / 1e6:.0f} MB")
    # ---- refusals ----
    def refuse(label, args, want):
        out = os.path.join(d, "r.h5")
        p = run(args + ["-o", out], ok=False)
        err = p.stderr.strip()
        check(p.returncode != 0 and want in err and not os.path.exists(out), f"{label}: {err!r}")
        print(f"refusal ok ({label}): {err.splitlines()[-1] if err else ''}")
    cchar = os.path.join(d, "cchar.h5")
    run(["prepare", txt, "--len", "4", "--prompts", "8", "-o", cchar])
    refuse("BPE model, char corpus", ["scan", "--model", m, "--corpus", cchar], "is a char corpus")
    tok2 = os.path.join(d, "tok2")
    write_tokenizer(tok2, merges=MERGES[:5])
    m2 = os.path.join(d, "m2.h5")
    run(["train", "--corpus", txt, "--tokenizer", tok2, "--config", "n_layer=2,n_head=4,n_embd=32,block_size=16",
         "--steps", "1", "--batch", "2", "--ctx", "8", "--eval-batches", "1", "-o", m2])
    refuse("another tokenizer's corpus", ["scan", "--model", m2, "--corpus", c], "tokenizer differs")
    refuse("--next-layout dense", scan + ["--next-layout", "dense"], "csr layout only")
    refuse("--index-out", scan + ["--index-out", os.path.join(d, "ix.h5")], "--index-out does not support")
    # ---- reduce (reads the csr model side: needs the reader of the reduce
    # branch, issue 25 item 3; last, so that the scan's checks above run first) ----
    thr, wts = THR, [1.0, 2.0]
    rep = os.path.join(d, "rep")
    run(["reduce", s, "--thresholds", ",".join(map(str, thr)), "--weights", ",".join(map(str, wts)), "-o", rep])
    with h5py.File(os.path.join(rep, "report.h5")) as g:
        H = g["/hellinger"][()]
    kb = [int(np.argmax(lower >= t - 1e-9)) for t in thr]

    def approx(cnt, p):
        return sum(wts[b] * cnt[p, b, kb[b]:].sum(0) for b in range(Lh))
    dh_file = max(abs(H[p] - hell_file(approx(counts, p), p)) for p in range(P))
    check(dh_file <= 1e-12, f"reduce H == naive H of the scan's counts (max diff {dh_file:.3g})")
    dh_or = max([abs(H[p] - hell(approx(ref_all, p), qo[p])) for p in range(P) if exact[p]], default=0.0)
    check(exact.sum() >= P // 2 and dh_or <= TOL, f"reduce H == the oracle's H ({int(exact.sum())} prompts, {dh_or:.3g})")
    check((H >= 0).sum() == P, "every prompt has a distribution (the self pair)")
    # report.h5's approximation of a csr scan: its nonzero entries as CSR, equal to the naive one (1e-12)
    with h5py.File(os.path.join(rep, "report.h5")) as g:
        ai, at, ap = g["/approx/indptr"][()], g["/approx/token"][()], g["/approx/prob"][()]
    da, same_tok = 0.0, ai[0] == 0 and len(ai) == P + 1
    for p in range(P):
        a = approx(counts, p)
        nz = np.nonzero(a)[0]
        same_tok = same_tok and np.array_equal(at[ai[p]:ai[p + 1]], nz)
        if same_tok:
            da = max(da, float(np.abs(ap[ai[p]:ai[p + 1]] - a[nz] / a.sum()).max(initial=0)))
    check(same_tok and da <= 1e-12, f"report.h5 /approx CSR == the naive approximation's nonzeros (max diff {da:.3g})")
    check(not (max(da, 1e-9) <= 1e-12), "negative control: a difference of 1e-9 fails the 1e-12 comparison")
    print(f"reduce: H mean {H.mean():.4f}; |H - naive H from the file| <= {dh_file:.3g}; "
          f"|H - oracle H| <= {dh_or:.3g} on {int(exact.sum())} prompts")
    # the ∞-gram and the backoff n-gram (K = 10, reduce's default) of each
    # prompt from the corpus's token suffix array: H to the scan's model
    # probabilities equals the naive oracle's over the token stream (1e-12)
    with h5py.File(os.path.join(rep, "report.h5")) as g:
        check("/baselines/infgram" in g and "/baselines/backoff" in g,
              "reduce writes the ∞-gram and backoff rows for a BPE corpus")
        bh = {n: g[f"/baselines/{n}/hellinger"][()] for n in ("infgram", "backoff")}
    oh = {}
    for n, K in (("infgram", 1), ("backoff", 10)):
        o = [naive_suffix_counts(stream, toks[pidx[p]], K, V) for p in range(P)]
        oh[n] = np.array([-1.0 if c is None else hell_file(c.astype(np.float64), p) for p, c in enumerate(o)])
        dh = float(np.abs(bh[n] - oh[n]).max())
        check(dh <= 1e-12, f"reduce {n} H == the naive oracle's (max diff {dh:.3g})")
    backs = int((oh["infgram"] != oh["backoff"]).sum())
    check(backs > 0, f"the backoff backs off on {backs} of {P} prompts")
    # negative control: the oracle's ∞-gram is not reduce's backoff row
    dneg = float(np.abs(bh["backoff"] - oh["infgram"]).max())
    check(dneg > 1e-12, f"negative control: backoff vs the oracle's ∞-gram differ ({dneg:.3g})")
    print(f"reduce: ∞-gram H mean {bh['infgram'].mean():.4f}, backoff H mean {bh['backoff'].mean():.4f} "
          f"(backs off on {backs} of {P} prompts): both == the naive oracle")
    # a scan whose /prompts/index is not its prompts (another row, a row
    # outside the corpus): reduce refuses it with one message, no report
    for name, val, want in (("another row", 1, "is not the corpus's substring"),
                            ("out of range", 10 ** 9, "is not a substring of the corpus")):
        hx = os.path.join(d, "hidx.h5")
        shutil.copy(s, hx)
        with h5py.File(hx, "r+") as g:
            idx = g["/prompts/index"][()]
            idx[0] = (idx[0] + val) % (N if val < N else 1 << 62)
            g["/prompts/index"][...] = idx
        r = run(["reduce", hx, "--thresholds", "0.75,0.8", "--weights", "1,2", "-o", rep + "x"], ok=False)
        msgs = [x for x in r.stderr.splitlines() if x.startswith("corpuslens")]
        check(r.returncode != 0 and len(msgs) == 1 and want in msgs[0] and "Sanitizer" not in r.stderr
              and not os.path.exists(os.path.join(rep + "x", "report.h5")),
              f"reduce refuses a scan whose /prompts/index is {name}: rc {r.returncode}, {r.stderr.strip()!r}")
        print(f"reduce, /prompts/index {name}: {msgs[0] if msgs else r.stderr.strip()!r}")
    # negative control: a changed count changes H
    neg = os.path.join(d, "neg.h5")
    shutil.copy(s, neg)
    with h5py.File(neg, "r+") as g:
        ind, cnt = g["/freq/next/indptr"][()], g["/freq/next/count"][()]
        p = int(np.argmax([(approx(counts, q) > 0).sum() >= 2 for q in range(P)]))
        r = p * Lh * NB + 1 * NB + NB - 1
        check(ind[r + 1] > ind[r], "negative control row is counted")
        cnt[ind[r]] += 5
        g["/freq/next/count"][...] = cnt
    run(["reduce", neg, "--thresholds", "0.75,0.8", "--weights", "1,2", "-o", rep + "n"])
    with h5py.File(os.path.join(rep + "n", "report.h5")) as g:
        check(np.abs(g["/hellinger"][()] - H).max() > 1e-12, "negative control: a changed count changes H")
    shutil.rmtree(d)
    if st.FAIL:
        print(f"{len(st.FAIL)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()

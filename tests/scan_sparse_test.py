#!/usr/bin/python3
"""scan --next-layout csr (issue 25 item 3): the binned next-token
counts as CSR (/freq/next/{indptr,token,count}) equal the dense /freq/counts
of the same scan on a char model; the csr file's model side (no [P, V]
dataset: /prompts/next, /model/support, /model/mass, /unigram/hellinger,
/lens/hellinger) equals the dense scan's rows (csr_model_side,
scan_support_check.py); 1 and 2 ranks (many reduce slices) write the
same CSR; the file's CSR storage is 4 bytes per nonzero for tokens and counts;
reduce (H, approximation) and tune give the same numbers from either layout
(H to 1e-12); auto keeps dense for a char model; hostile CSR files are refused
by reduce with one message and no report; a changed count changes H (negative
control of the comparison). tune and tune --soft on a csr scan with the model
on each prompt's support (format.md, built from the dense scan by
model_sparse.model_side, the tests' one builder: checked against plain Python
and, byte for byte, against scan's own writer) give the dense scan's
numbers, and tune --soft's peak RSS at V = 100,000 follows the supports; a
count token outside its model support is refused.
Environment: CORPUSLENS, TESTDATA (scan_test.py's)."""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

import model_sparse as ms
import scan_test as st
from scan_support_check import NEW, check_csr_model, text_attr
from scan_test import check, run

TOL = 1e-12


def dense_from_csr(f):
    P, Lb, NB, V = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins", "vocab_size"))
    ind, tok, cnt = f["/freq/next/indptr"][()], f["/freq/next/token"][()], f["/freq/next/count"][()]
    out = np.zeros((P * Lb * NB, V), np.int64)
    for r in range(P * Lb * NB):
        out[r, tok[ind[r]:ind[r + 1]]] = cnt[ind[r]:ind[r + 1]]
    return out.reshape(P, Lb, NB, V), ind, tok, cnt


def report(d, scan, name, ok=True):
    rep = os.path.join(d, name)
    p = run(["reduce", scan, "--thresholds", "0.75,0.8", "--weights", "1,2", "-o", rep], ok=ok)
    if not ok:
        return p, rep
    with h5py.File(os.path.join(rep, "report.h5")) as f:
        return f["/hellinger"][()], approx_dense(f, len(f["/vocab"]))[0]


def split_sum(attrs, which):
    """n_train * train mean + n_test * held-out mean of tune.h5 (no empty prompt)."""
    return float(attrs["n_train"]) * float(attrs[which + "_train_mean"]) + \
        float(attrs["n_test"]) * float(attrs[which + "_test_mean"])


def tune_reference(d, sc):
    """tune --thresholds/--weights: the reference values are a start and are
    reported beside the fit (tune.h5 paper_thresholds/paper_weights, reduce's
    report row); for both the fitted and the reference values the two splits'
    means add up to reduce's H over all prompts (the dense reducer, to 1e-12):
    the sparse tune computes the H of the dense path."""
    rt, rw = "0.75,0.8", "1,2"
    for k in ("dense", "csr"):
        out = os.path.join(d, "tref_" + k + ".h5")
        p = run(["tune", sc[k], "--seed", "5", "--restarts", "1", "--thresholds", rt, "--weights", rw, "--h5", out])
        check("reference, held-out" in p.stdout and "support cells" in p.stdout, f"tune prints the reference: {p.stdout}")
        with h5py.File(out) as f:
            at = dict(f.attrs)
        check(np.allclose(at["paper_thresholds"], [0.75, 0.8], atol=1e-12) and np.allclose(at["paper_weights"], [1, 2]),
              f"tune.h5 records the reference values {at.get('paper_thresholds')} {at.get('paper_weights')}")
        P = int(at["n_train"]) + int(at["n_test"])
        for which, t, w in (("paper", rt, rw),
                            ("fitted", ",".join(f"{x:.17g}" for x in at["thresholds"]),
                             ",".join(f"{x:.17g}" for x in at["weights"]))):
            rep = os.path.join(d, f"rref_{k}_{which}")
            run(["reduce", sc["dense"], "--thresholds", t, "--weights", w, "-o", rep])
            with h5py.File(os.path.join(rep, "report.h5")) as f:
                h = f["/hellinger"][()]
            check(len(h) == P and (h >= 0).all(), f"{which}: every prompt has an approximation (the sums need it)")
            got, want = split_sum(at, which), float(h.sum())
            check(abs(got - want) <= TOL * P, f"tune ({k}) {which}: splits' sum {got!r} vs reduce {want!r}")
            # negative control: one prompt's H changed by 1e-9 is seen
            check(not (abs(got - (want + 1e-9)) <= TOL * P), "negative control of the 1e-12 comparison")
        rep = os.path.join(d, "rref_" + k)
        run(["reduce", sc[k], "--thresholds", rt, "--weights", rw, "--tuned", out, "-o", rep])
        md = open(os.path.join(rep, "report.md"), encoding="utf-8").read()
        row = f"| reference | 0.75, 0.8 | 1, 2 | {at['paper_train_mean']:.4f} | {at['paper_test_mean']:.4f} |"
        check(row in md, f"report.md has the reference row {row!r}")
        # a hostile tune.h5: a list longer than the blocks (64 + 36 values) or of the wrong length is refused
        for attr, n in (("weights", 100), ("paper_thresholds", 1), ("paper_weights", 100)):
            bad = os.path.join(d, "tbad.h5")
            shutil.copy(out, bad)
            with h5py.File(bad, "r+") as f:
                del f.attrs[attr]
                f.attrs[attr] = np.full(n, 0.8)
            p = run(["reduce", sc[k], "--thresholds", rt, "--weights", rw, "--tuned", bad, "-o",
                     os.path.join(d, "rtbad")], ok=False)
            err = p.stderr.strip()
            check(p.returncode != 0 and f"bad {attr}" in err and len(err.splitlines()) == 1
                  and not os.path.exists(os.path.join(d, "rtbad", "report.h5")), f"tune.h5 {attr}[{n}] refused: {err!r}")
    print("tune --thresholds/--weights: reference recorded; both splits add up to reduce's H (1e-12)")
    p = run(["tune", sc["csr"], "--thresholds", "0.75", "--weights", "1,2"], ok=False)
    err = p.stderr.strip()
    check(p.returncode != 0 and "one per block" in err and len(err.splitlines()) == 1, f"one threshold refused: {err!r}")


def model_sparse_scan(dense, csr, out):
    """A copy of the csr scan with the model side of format.md built by
    ms.model_side from the dense scan's /model/probs and /prompts/next_counts
    (the same scan), without the followers (model_support "counts+next+top")."""
    shutil.copy(csr, out)
    with h5py.File(dense) as fd:
        q, nc, uni = fd["/model/probs"][()], fd["/prompts/next_counts"][()], fd["/corpus/unigram"][()]
    with h5py.File(out, "r+") as f:
        ms.write_model_side(f, ms.model_side(q, ms.count_tokens_of(f), ms.next_rows_of(nc), uni))


def tune_lines(p):
    return [l for l in p.stdout.splitlines() if "wrote" not in l]


def tune_model_sparse(d, m, c):
    """tune and tune --soft on a csr scan without [P, V] datasets (the model
    on each prompt's support, format.md; prefilter 0.9, so that the supports
    are smaller than V) == on the dense scan: tune.h5's
    numbers to 1e-12, the printed fit (temperatures, soft weights, held-out
    statistics) equal; a changed model probability changes them (negative
    control); a count token missing from its prompt's model support is
    refused with one message and no output."""
    sc = {}
    for k in ("dense", "csr"):
        sc[k] = os.path.join(d, "hi_" + k + ".h5")
        run(["scan", "--model", m, "--corpus", c, "--prefilter", "0.9", "--bin-width", "0.01", "--batch", "200",
             "--next-layout", k, "-o", sc[k]])
    msp = os.path.join(d, "ms.h5")
    model_sparse_scan(sc["dense"], sc["csr"], msp)
    with h5py.File(msp) as f:
        check("/model/probs" not in f and "/prompts/next_counts" not in f and "/model/support/prob" in f,
              "the model-sparse scan has no [P, V] dataset")
        n_sup, P, V = len(f["/model/support/token"]), int(f.attrs["n_prompts"]), int(f.attrs["vocab_size"])
        rest = f["/model/mass"][:, 1]
    check(n_sup < P * V * 0.9 and (rest > 0).sum() > P // 2, f"the supports are smaller than V ({n_sup} of {P * V})")
    print(f"model-sparse scan: {n_sup} support entries for {P} prompts x V {V}")

    def tune(path, name, ok=True):
        out = os.path.join(d, name + ".h5")
        p = run(["tune", path, "--seed", "2", "--restarts", "2", "--soft", "--h5", out], ok=ok)
        return p, out

    def numbers(out):
        with h5py.File(out) as f:
            return {k: np.asarray(v, np.float64) for k, v in f.attrs.items()
                    if np.asarray(v).dtype.kind in "fiu"}

    pd, od = tune(sc["dense"], "tms_dense")
    a = numbers(od)
    with h5py.File(sc["csr"]) as f:
        scan_kind = "scan's csr, " + ("model on its support" if "/model/support/prob" in f else "with /model/probs")
    for label, path in (("model-sparse (numpy)", msp), (scan_kind, sc["csr"])):
        pm, om = tune(path, "tms_sparse")
        b = numbers(om)
        worst = max(float(np.max(np.abs(a[k] - b[k]))) if a[k].shape == b[k].shape else np.inf for k in a)
        check(sorted(a) == sorted(b) and len(a) > 5 and worst <= TOL, f"tune.h5 dense vs {label}: max diff {worst}")
        check(tune_lines(pd) == tune_lines(pm) and any("tune --soft" in l for l in tune_lines(pm)),
              f"tune --soft prints the same fit ({label}):\n{pd.stdout}\nvs\n{pm.stdout}")
        print(f"tune / tune --soft: dense == {label} ({len(a)} tune.h5 numbers, max diff {worst:.3g}; "
              "printed fit equal)")
    # negative control: the largest probability of one prompt halved (its mass follows) changes the numbers
    neg = os.path.join(d, "ms_neg.h5")
    shutil.copy(msp, neg)
    with h5py.File(neg, "r+") as f:
        ind, prob, mass = f["/model/support/indptr"][()], f["/model/support/prob"][()], f["/model/mass"][()]
        for p in range(P):
            e = ind[p] + int(np.argmax(prob[ind[p]:ind[p + 1]]))
            mass[p, 0] -= prob[e] / 2
            prob[e] /= 2
        f["/model/support/prob"][...] = prob
        f["/model/mass"][...] = mass
    pn, on = tune(neg, "tms_neg")
    c = numbers(on)
    check(max(float(np.max(np.abs(a[k] - c[k]))) for k in a) > TOL and tune_lines(pn) != tune_lines(pd),
          "negative control: changed model probabilities change tune's numbers")
    # tampered: a count token of prompt 1 taken out of its support (its mass moved off the support)
    bad = os.path.join(d, "ms_bad.h5")
    shutil.copy(msp, bad)
    with h5py.File(bad, "r+") as f:
        Lb, NB = int(f.attrs["n_hook_blocks"]), int(f.attrs["n_bins"])
        fi, ft = f["/freq/next/indptr"][()], f["/freq/next/token"][()]
        p = 1
        t = int(ft[fi[p * Lb * NB]:fi[(p + 1) * Lb * NB]].min())
        ind, tok, prob, mass = (f[k][()] for k in ("/model/support/indptr", "/model/support/token",
                                                   "/model/support/prob", "/model/mass"))
        e = ind[p] + int(np.nonzero(tok[ind[p]:ind[p + 1]] == t)[0][0])
        mass[p, 1] += prob[e]
        tok, prob = np.delete(tok, e), np.delete(prob, e)
        ind[p + 1:] -= 1
        for k, v in (("/model/support/indptr", ind), ("/model/support/token", tok), ("/model/support/prob", prob)):
            del f[k]
            f[k] = v
        f["/model/mass"][...] = mass
    for extra in ([], ["--soft"]):
        out = os.path.join(d, "tms_bad.h5")
        p = run(["tune", bad, "--seed", "2", "--h5", out] + extra, ok=False)
        err = p.stderr.strip()
        check(p.returncode != 0 and "not in its model support" in err and "prompt 1" in err
              and len(err.splitlines()) == 1 and not os.path.exists(out),
              f"tune {extra}: a count token missing from the model support refused ({err!r})")
    print(f"refusal ok (count token outside the model support): {err}")


def synthetic_csr_scan(path, rng, P, Lb, NB, V, pool=48, model_sparse=False):
    """A scan file (token_type gpt2-bpe, next_layout csr) with a large V:
    prompt p's counts lie on `pool` tokens of its own. Returns (counts as
    {(p, b, k): (tokens, counts)}, model probabilities [P, V]). model_sparse:
    the model on each prompt's support (format.md), no [P, V] dataset."""
    rows, tok, cnt, ind, owns = {}, [], [], [0], []
    for p in range(P):
        own = np.sort(rng.choice(V, pool, replace=False))
        owns.append(own)
        for b in range(Lb):
            for k in range(NB):
                t = np.sort(rng.choice(own, int(rng.integers(0, 6)), replace=False))
                c = rng.integers(1, 9, len(t))
                rows[p, b, k] = (t, c)
                tok += list(t)
                cnt += list(c)
                ind.append(len(tok))
    q = rng.random((P, V)).astype(np.float32) ** 8
    q /= q.sum(1, keepdims=True)
    with h5py.File(path, "w") as f:
        a = f.attrs
        a["format"], a["format_version"], a["complete"] = "corpuslens-scan", 1, 1
        a["n_layer"], a["n_hook_blocks"], a["hook_first_block"] = Lb, Lb, 0
        a["vocab_size"], a["n_bins"], a["n_prompts"], a["L"] = V, NB, P, 3
        a["prefilter"], a["bin_width"], a["n_substrings"] = 0.5, 0.0125, 1000
        a["hook"], a["token_type"], a["next_layout"] = "mlp_out", "gpt2-bpe", "csr"
        f["/prompts/text"] = np.array([b"p%d" % p for p in range(P)])
        f["/prompts/next_counts"] = np.zeros((P, V), np.int32)
        f["/corpus/unigram"] = np.ones(V, np.int64)
        f["/model/probs"] = q
        f["/lens/hellinger"] = np.zeros((P, Lb))
        f["/freq/n_matches"] = np.ones((P, Lb, NB), np.int64)
        f["/freq/bin_lower"] = 0.5 + 0.0125 * np.arange(NB)
        f["/freq/next/indptr"] = np.array(ind, np.int64)
        f["/freq/next/token"] = np.array(tok, np.int32)
        f["/freq/next/count"] = np.array(cnt, np.int32)
        if model_sparse:
            empty = (np.zeros(0, np.int32), np.zeros(0, np.int32))
            ms.write_model_side(f, ms.model_side(q, owns, [empty] * P, np.ones(V, np.int64)))
    return rows, q


def tune_soft_large_v(d):
    """tune --soft's memory follows the supports, not V: on a synthetic scan
    with V = 100,000 and the model on each prompt's support (no [P, V]
    dataset), the old fit's [n_fit, blocks, bins, V] int32 counts alone would
    be 977 MB (the old binary peaked at 1,140 MB on the same scan with /model/probs);
    the peak RSS stays far below it. The fit and the held-out statistics equal
    those of the same scan with dense /model/probs (printed lines)."""
    P, Lb, NB, V = 64, 2, 40, 100000
    out = {}
    for k, sparse in (("dense", False), ("sparse", True)):
        path = os.path.join(d, f"largev_soft_{k}.h5")
        synthetic_csr_scan(path, np.random.default_rng(11), P, Lb, NB, V, model_sparse=sparse)
        probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
        p = subprocess.run([sys.executable, "-c", probe, st.EXE, "tune", path, "--seed", "1", "--restarts", "0",
                            "--thresholds", "0.6,0.75", "--weights", "1,0.5", "--soft"],
                           capture_output=True, text=True, env=st.ENV)
        check(p.returncode == 0, f"tune --soft on V = {V} ({k}): {p.stderr[-400:]}")
        if p.returncode:
            return
        lines = p.stdout.splitlines()
        out[k] = (lines[:-1], int(lines[-1]) / 1024)
    with h5py.File(os.path.join(d, "largev_soft_sparse.h5")) as f:
        check("/model/probs" not in f, "the large-V scan has no /model/probs")
    rss_mb = out["sparse"][1]
    dense_mb = (P // 2) * Lb * NB * V * 4 / 2**20
    check(rss_mb < dense_mb / 3, f"tune --soft peak RSS {rss_mb:.0f} MB, the dense fit counts alone {dense_mb:.0f} MB")
    check(out["dense"][0] == out["sparse"][0] and any("tune --soft" in l for l in out["sparse"][0]),
          "tune --soft at large V: the model on its support gives the printed fit of the dense rows:\n"
          + "\n".join(out["dense"][0]) + "\nvs\n" + "\n".join(out["sparse"][0]))
    print(f"tune --soft at V = {V}: peak RSS {rss_mb:.0f} MB (dense /model/probs: {out['dense'][1]:.0f} MB; "
          f"the old fit's counts alone {dense_mb:.0f} MB); same fit")


def tune_large_v(d):
    """tune's memory follows the nonzero counts, not V: on a synthetic scan
    with V = 100,000 the dense train tensor would be n_train x blocks x bins x
    V x 4 B = 1.0 GB; tune's peak RSS stays far below it. Its H equals a numpy
    Hellinger over the full V (the splits' sums, 1e-12)."""
    P, Lb, NB, V = 64, 2, 40, 100000
    path = os.path.join(d, "largev.h5")
    rows, q = synthetic_csr_scan(path, np.random.default_rng(7), P, Lb, NB, V)
    out = os.path.join(d, "tlargev.h5")
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", probe, st.EXE, "tune", path, "--seed", "1", "--restarts", "0",
                        "--thresholds", "0.6,0.75", "--weights", "1,0.5", "--h5", out],
                       capture_output=True, text=True, env=st.ENV)
    check(p.returncode == 0, f"tune on V = {V}: {p.stderr[-400:]}")
    if p.returncode:
        return
    rss_mb = int(p.stdout.split()[-1]) / 1024
    dense_mb = (P // 2) * Lb * NB * V * 4 / 2**20
    check(rss_mb < dense_mb / 3, f"tune peak RSS {rss_mb:.0f} MB, the dense train tensor alone {dense_mb:.0f} MB")
    print(f"tune at V = {V}: peak RSS {rss_mb:.0f} MB (the dense train tensor would be {dense_mb:.0f} MB)")
    with h5py.File(out) as f:
        at = dict(f.attrs)
    for which, thr, w in (("paper", at["paper_thresholds"], at["paper_weights"]),
                          ("fitted", at["thresholds"], at["weights"])):
        kb = [int(round((t - 0.5) / 0.0125)) for t in thr]
        hs = []
        for pi in range(P):
            a = np.zeros(V)
            for b in range(Lb):
                for k in range(kb[b], NB):
                    t, c = rows[pi, b, k]
                    a[t] += w[b] * c
            hs.append(np.sqrt(0.5 * np.sum((np.sqrt(a / a.sum()) - np.sqrt(q[pi].astype(np.float64) / q[pi].sum(dtype=np.float64))) ** 2))
                      if a.sum() > 0 else -1.0)
        hs = np.array(hs)
        check((hs >= 0).all(), f"{which}: every synthetic prompt has counts above its thresholds")
        got, want = split_sum(at, which), float(hs.sum())
        check(abs(got - want) <= TOL * P, f"tune at V = {V}, {which}: splits' sum {got!r} vs numpy {want!r}")
        check(not (abs(got - (want + 1e-9)) <= TOL * P), "negative control of the 1e-12 comparison")


def setds(name, fn):
    """An edit of a hostile file: dataset `name` read, changed in place by fn, written back."""
    def e(f):
        a = f[name][()]
        fn(a)
        f[name][...] = a
    return e


def refused(label, src, bad, edit, want, rep, reduce_fn):
    """src copied to bad and edited: reduce_fn(bad) exits nonzero with one line naming `want`, no report.h5."""
    shutil.copy(src, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    p = reduce_fn(bad)
    err = p.stderr.strip()
    check(p.returncode != 0 and want in err and len(err.splitlines()) == 1
          and not os.path.exists(os.path.join(rep, "report.h5")), f"{label}: refused ({err!r})")
    print(f"refusal ok ({label}): {err}")


def h_close(x, y):
    """Every H equal to TOL, NaN-strict, and the same empty prompts (-1)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return x.shape == y.shape and np.array_equal(x == -1, y == -1) and not (np.max(np.abs(x - y), initial=0) > TOL) \
        and not np.isnan(x).any() and not np.isnan(y).any()


def approx_dense(f, V):
    """report.h5's approximation as [P, V]: /approx of a dense reduction, or its CSR."""
    if isinstance(f["/approx"], h5py.Dataset):
        return f["/approx"][()], None
    ind, tok, pr = f["/approx/indptr"][()], f["/approx/token"][()], f["/approx/prob"][()]
    out = np.zeros((len(ind) - 1, V))
    for p in range(len(ind) - 1):
        out[p, tok[ind[p]:ind[p + 1]]] = pr[ind[p]:ind[p + 1]]
    return out, (ind, tok, pr)


def md_body(path):
    """report.md without its Scan: line (the file name and its sha256)."""
    return [l for l in open(path, encoding="utf-8").read().splitlines() if not l.startswith("Scan: ")]


def model_sparse_reduce(d, sc, corpus):
    """A model_sparse scan (no /model/probs, no /prompts/next_counts: the model
    on each prompt's support, tests/model_sparse.py until scan writes it):
    reduce gives the dense scan's numbers (every H to 1e-12, the same empty
    prompts, the approximation to 1e-12 as CSR of its nonzero entries) and
    report.md's tables identical for every prompt, at thresholds that leave
    approximations of under 5 tokens and empty ones; without the followers in
    the supports the ∞-gram and backoff rows are left out with a line;
    --compare-model is refused on 1 and 2 ranks; `similar` prints the dense
    scan's table and H; tampered files are refused with one message and no
    report. Negative controls: an H moved by 1e-9 fails the comparison; a
    changed support probability changes H and report.md."""
    # prefilter 0.85: fewer counts, so that the supports leave tokens out
    sc = {}
    for k in ("dense", "csr"):
        sc[k] = os.path.join(d, "ms_" + k + ".h5")
        run(["scan", "--model", st_model(d), "--corpus", corpus, "--prefilter", "0.85", "--bin-width", "0.05",
             "--batch", "200", "--next-layout", k, "-o", sc[k]])
    sp, spnf = os.path.join(d, "msp.h5"), os.path.join(d, "mspnf.h5")
    ms.convert(sc["dense"], sc["csr"], corpus, sp)
    ms.convert(sc["dense"], sc["csr"], corpus, spnf, followers=False)
    with h5py.File(sp) as f:
        P, V = int(f.attrs["n_prompts"]), int(f.attrs["vocab_size"])
        check("/model/probs" not in f and "/prompts/next_counts" not in f and "/model/support/indptr" in f,
              "the model_sparse file has no [P, V] dataset")
        nsup = len(f["/model/support/token"])
    check(nsup < P * V, f"the supports leave tokens out ({nsup} of {P * V})")
    print(f"model_sparse: {nsup} support entries for {P} prompts (dense rows: {P * V})")
    ex = ",".join(str(p) for p in range(P))
    n_small = 0
    for t, w in (("0.85,0.9", "1,2"), ("0.95,0.95", "1,1"), ("0.9,0.95", "0,1")):
        out = {}
        for k, scan in (("dense", sc["dense"]), ("sparse", sp)):
            rep = os.path.join(d, f"msr_{k}")
            shutil.rmtree(rep, ignore_errors=True)
            p = run(["reduce", scan, "--thresholds", t, "--weights", w, "--examples", ex, "-o", rep])
            with h5py.File(os.path.join(rep, "report.h5")) as f:
                names = sorted(f["/baselines"])
                out[k] = dict(h=f["/hellinger"][()], e=f["/empty"][()], bl={n: f[f"/baselines/{n}/hellinger"][()]
                                                                          for n in names},
                              a=approx_dense(f, V), md=md_body(os.path.join(rep, "report.md")), out=p.stdout)
        a, b = out["dense"], out["sparse"]
        check(sorted(a["bl"]) == sorted(b["bl"]) and "infgram" in b["bl"] and "backoff" in b["bl"],
              f"({t}) the same baselines: {sorted(a['bl'])} vs {sorted(b['bl'])}")
        check(h_close(a["h"], b["h"]) and np.array_equal(a["e"], b["e"]), f"({t}) approximation H dense == sparse")
        for n in a["bl"]:
            check(n in b["bl"] and h_close(a["bl"][n], b["bl"][n]), f"({t}) baseline {n}: H dense == sparse")
        check(not h_close(a["h"], a["h"] + 1e-9 * (a["h"] >= 0)), "negative control: H moved by 1e-9 is seen")
        ad, (ind, tok, pr) = a["a"][0], b["a"][1]
        check(not (np.max(np.abs(ad - b["a"][0])) > TOL), f"({t}) the approximation dense == CSR")
        check(ind[0] == 0 and (pr > 0).all() and len(tok) == int((ad != 0).sum()) and
              all((np.diff(tok[ind[p]:ind[p + 1]]) > 0).all() for p in range(P)),
              f"({t}) /approx CSR: its nonzero entries, tokens increasing")
        check(a["md"] == b["md"], f"({t}) report.md identical (every prompt's table): " +
              str([(x, y) for x, y in zip(a["md"], b["md"]) if x != y][:3]))
        n_small += int(((np.diff(ind) > 0) & (np.diff(ind) < 5)).sum())
    check(n_small > 0, f"the tables cover approximations of 1..4 tokens ({n_small})")
    print(f"reduce on a model_sparse scan == the dense scan (every H to {TOL}, approximation, report.md; "
          f"{n_small} tables with fewer than 5 tokens)")
    # negative control: one support probability changed (its mass kept consistent) changes H and report.md
    neg = os.path.join(d, "mspneg.h5")
    shutil.copy(sp, neg)
    with h5py.File(neg, "r+") as f:
        ind, pr, mass = f["/model/support/indptr"][()], f["/model/support/prob"][()], f["/model/mass"][()]
        e = ind[0] + int(np.argmax(pr[ind[0]:ind[1]]))
        pr[e] *= np.float32(0.5)
        mass[0, 0] -= float(pr[e])
        f["/model/support/prob"][...] = pr
        f["/model/mass"][...] = mass
    for k, scan in (("dense", sp), ("neg", neg)):
        run(["reduce", scan, "--thresholds", "0.85,0.9", "--weights", "1,2", "--examples", "0", "-o",
             os.path.join(d, "msn_" + k)])
    with h5py.File(os.path.join(d, "msn_dense", "report.h5")) as x, h5py.File(os.path.join(d, "msn_neg", "report.h5")) as y:
        check(abs(x["/hellinger"][0] - y["/hellinger"][0]) > TOL, "negative control: a changed probability changes H")
    check(md_body(os.path.join(d, "msn_dense", "report.md")) != md_body(os.path.join(d, "msn_neg", "report.md")),
          "negative control: ... and report.md")
    # no followers in the supports: the ∞-gram and backoff rows left out, the rest the same
    p = run(["reduce", spnf, "--thresholds", "0.85,0.9", "--weights", "1,2", "-o", os.path.join(d, "msnf")])
    with h5py.File(os.path.join(d, "msnf", "report.h5")) as f, \
            h5py.File(os.path.join(d, "msn_dense", "report.h5")) as g:
        check("infgram" not in f["/baselines"] and "backoff" not in f["/baselines"] and
              "∞-gram and backoff n-gram left out: the scan's model supports do not hold" in p.stdout,
              f"counts+next+top: the suffix rows left out with a line: {p.stdout!r}")
        check(h_close(f["/hellinger"][()], g["/hellinger"][()]) and
              h_close(f["/baselines/ngram/hellinger"][()], g["/baselines/ngram/hellinger"][()]),
              "counts+next+top: the approximation and the n-gram as with the followers")
    # --compare-model: refused, on 1 and 2 ranks, one line, no report
    for ranks in (None, 2):
        rep = os.path.join(d, "mscmp")
        p = run(["reduce", sp, "--thresholds", "0.85,0.9", "--weights", "1,2", "--compare-model", st_model(d),
                 "-o", rep], ranks=ranks, ok=False)
        err = p.stderr.strip()
        ours = [l for l in err.splitlines() if l.startswith("corpuslens")]  # mpirun adds its own lines
        check(p.returncode != 0 and "--compare-model needs the model's whole distribution" in err and
              "--next-layout dense" in err and len(ours) == 1 and (ranks or len(err.splitlines()) == 1)
              and not os.path.exists(rep),
              f"--compare-model on a model_sparse scan ({ranks or 1} ranks) refused: {err!r}")
    # similar: the dense scan's table and H (top 10 < CL_SCAN_MODEL_TOP)
    sim = ["--corpus", corpus, "--prompt-index", "3", "--blocks", "all", "--thresholds", "0.9,0.95", "--weights",
           "1,2", "--show", "0"]
    x, y = run(["similar", sc["dense"]] + sim).stdout, run(["similar", sp] + sim).stdout
    check(x == y and "Hellinger distance: " in y, f"similar on a model_sparse scan == dense:\n{x}\n{y}")
    y2 = run(["similar", sp] + sim + ["--top", "20"]).stdout
    check("stops at its 16 most probable" in y2 and y2.split("Hellinger")[-1] == x.split("Hellinger")[-1],
          "similar --top 20: the model column stops at 16, the same H")
    model_sparse_hostile(d, sp, corpus)


def st_model(d):
    return os.path.join(d, "m.h5")


def model_sparse_hostile(d, sp, corpus):
    """Tampered model_sparse files: one message naming the dataset, nonzero
    exit, no report.h5. The untampered file reduces (the control)."""
    with h5py.File(sp) as f:
        P, Lb, NB, V = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins", "vocab_size"))
        sind, stok, spr = f["/model/support/indptr"][()], f["/model/support/token"][()], f["/model/support/prob"][()]
        find, ftok = f["/freq/next/indptr"][()], f["/freq/next/token"][()]
        nind, ntok = f["/prompts/next/indptr"][()], f["/prompts/next/token"][()]
        top = {p: set(np.lexsort((stok[sind[p]:sind[p + 1]], -spr[sind[p]:sind[p + 1]].astype(np.float64)))[:16]
                      + sind[p]) for p in range(P)}
    rep = os.path.join(d, "msbad")
    p = run(["reduce", sp, "--thresholds", "0.85,0.9", "--weights", "1,2", "-o", rep], ok=False)
    check(p.returncode == 0 and os.path.exists(os.path.join(rep, "report.h5")), "control: the untampered file reduces")

    def drop_entry(f, e):
        """Support entry e removed (its probability moved to the mass off the support)."""
        p = int(np.searchsorted(sind, e, side="right") - 1)
        ind = sind.copy()
        ind[p + 1:] -= 1
        mass = f["/model/mass"][()]
        mass[p, 1] += float(spr[e])
        for k, a in (("/model/support/indptr", ind), ("/model/support/token", np.delete(stok, e)),
                     ("/model/support/prob", np.delete(spr, e)), ("/model/mass", mass)):
            del f[k]
            f[k] = a

    def hostile(label, edit, want):
        shutil.rmtree(rep, ignore_errors=True)
        refused("model_sparse " + label, sp, os.path.join(d, "msbad.h5"), edit, want, rep,
                lambda bad: run(["reduce", bad, "--thresholds", "0.85,0.9", "--weights", "1,2", "-o", rep], ok=False))

    hostile("support token = V", setds("/model/support/token", lambda a: a.__setitem__(sind[1] - 1, V)), "not in 0..")
    hostile("support tokens not increasing", setds("/model/support/token", lambda a: a.__setitem__(1, a[0])),
            "/model/support/token")
    hostile("support indptr past the end", setds("/model/support/indptr", lambda a: a.__setitem__(-1, a[-1] + 3)),
            "/model/support/indptr")
    hostile("probability 1.5", setds("/model/support/prob", lambda a: a.__setitem__(0, 1.5)), "not a probability")
    hostile("mass off by 0.01", setds("/model/mass", lambda a: a.__setitem__((2, 1), a[2, 1] + 0.01)), "/model/mass")
    hostile("mass NaN", setds("/model/mass", lambda a: a.__setitem__((2, 0), np.nan)), "/model/mass")
    hostile("unigram H 1.5", setds("/unigram/hellinger", lambda a: a.__setitem__(4, 1.5)), "/unigram/hellinger")
    hostile("unigram H NaN", setds("/unigram/hellinger", lambda a: a.__setitem__(4, np.nan)), "/unigram/hellinger")
    hostile("n-gram token = V", setds("/prompts/next/token", lambda a: a.__setitem__(0, V)), "/prompts/next")
    # the supports must promise the model's 16 most probable tokens (report.md's top 5 and similar's model
    # column come from them): fewer, or no promise, is refused
    hostile("model_top_k 4", lambda f: f.attrs.__setitem__("model_top_k", 4), "model_top_k")
    hostile("model_top_k missing", lambda f: f.attrs.__delitem__("model_top_k"), "model_top_k")
    hostile("model_support a number", lambda f: f.attrs.__setitem__("model_support", 7),
            "'model_support' is not a string")
    # a count token of prompt p (not among its model's top 16) removed from p's support
    p = next(p for p in range(P) if any(sind[p] + np.searchsorted(stok[sind[p]:sind[p + 1]], t) not in top[p]
                                         for t in ftok[find[p * Lb * NB]:find[(p + 1) * Lb * NB]]))
    t = next(t for t in ftok[find[p * Lb * NB]:find[(p + 1) * Lb * NB]]
             if sind[p] + np.searchsorted(stok[sind[p]:sind[p + 1]], t) not in top[p])
    hostile("count token off the support", lambda f: drop_entry(f, sind[p] + int(np.searchsorted(stok[sind[p]:sind[p + 1]], t))),
            f"token {t} of prompt {p}")
    # similar on such a file: a follower of the strings above a bin's lower edge (> prefilter) that the
    # support lacks is refused; the untampered file shows the prompt (the control)
    with h5py.File(sp) as f:
        lower = f["/freq/bin_lower"][()]
    p, b, k, t = next((p, b, k, int(t)) for p in range(P) for b in range(Lb) for k in range(1, NB)
                      for t in ftok[find[(p * Lb + b) * NB + k]:find[(p * Lb + b) * NB + k + 1]]
                      if sind[p] + np.searchsorted(stok[sind[p]:sind[p + 1]], t) not in top[p])
    bad = os.path.join(d, "msbad.h5")
    shutil.copy(sp, bad)
    with h5py.File(bad, "r+") as f:
        drop_entry(f, sind[p] + int(np.searchsorted(stok[sind[p]:sind[p + 1]], t)))
    sim = ["--corpus", corpus, "--prompt-index", str(p), "--block", str(b), "--threshold", f"{lower[k]:.17g}"]
    check(run(["similar", sp] + sim, ok=False).returncode == 0, "control: similar on the untampered file")
    r = run(["similar", bad] + sim, ok=False)
    err = [x for x in r.stderr.splitlines() if not x.startswith("corpuslens similar: warning")]
    check(r.returncode != 0 and len(err) == 1 and f"prompt {p}: token {t} of the similar strings' followers" in err[0],
          f"similar refuses a follower off the support: {r.stderr.strip()!r}")
    # an n-gram row of one token replaced by a token off the prompt's support
    p = next(p for p in range(P) if nind[p + 1] - nind[p] == 1 and sind[p + 1] - sind[p] < V)
    t = int(np.setdiff1d(np.arange(V), stok[sind[p]:sind[p + 1]])[0])
    hostile("n-gram token off the support", setds("/prompts/next/token", lambda a: a.__setitem__(nind[p], t)),
            f"/prompts/next/token: token {t} of prompt {p}")
    # a follower of the last token off the support (taken out of the counts too, and not an n-gram or top-16
    # token): the counts pass, the ∞-gram refuses
    with h5py.File(sp) as f, h5py.File(corpus) as g:
        text = g["/text/tokens"][()]
        win = g["/substrings/tokens"][()][f["/prompts/index"][()]]

    def backoff_followers(w, K=10):
        """The followers of the longest suffix of w with K occurrences followed by a token (reduce's default)."""
        for k in range(len(w), 0, -1):
            at = np.nonzero((np.lib.stride_tricks.sliding_window_view(text[:-1], k) == w[-k:]).all(1))[0]
            if len(at) >= K:
                return np.unique(text[at + k])
        return []
    cand = [(p, int(t)) for p in range(P) for t in backoff_followers(win[p])
            if t not in set(ntok[nind[p]:nind[p + 1]])
            and sind[p] + np.searchsorted(stok[sind[p]:sind[p + 1]], t) not in top[p]]
    check(len(cand) > 0, "some backoff follower is neither an n-gram nor a top-16 token")

    def drop_follower(f):
        r0, r1 = p * Lb * NB, (p + 1) * Lb * NB
        cnt = f["/freq/next/count"][()]
        gone = np.zeros(len(ftok), bool)
        gone[find[r0]:find[r1]] = ftok[find[r0]:find[r1]] == t
        rows = np.repeat(np.arange(len(find) - 1), np.diff(find))
        ind = np.concatenate([[0], np.cumsum(np.bincount(rows[~gone], minlength=len(find) - 1))]).astype(np.int64)
        for k, a in (("/freq/next/indptr", ind), ("/freq/next/token", ftok[~gone]), ("/freq/next/count", cnt[~gone])):
            del f[k]
            f[k] = a
        drop_entry(f, sind[p] + int(np.searchsorted(stok[sind[p]:sind[p + 1]], t)))
    if cand:
        p, t = cand[0]
        hostile("follower off the support", drop_follower, f"prompt {p}: the corpus's follower {t}")


def model_side_unit():
    """ms.model_side (the tests' one builder of the csr model side) against
    plain Python on made-up rows where every ingredient counts (the char scans
    above never need the followers): prompt p's support == the set union of
    its count tokens, next tokens, followers (or none) and the 16 most probable
    (sorted by (-q, id): ties of equal probabilities by the lower id); prob ==
    q's bits there; mass == (sum, off-support sum) of the positive finite q
    (math.fsum, 1e-12); /prompts/next the rows given; /unigram/hellinger ==
    the textbook formula (1e-12; an empty side -1). Controls: without the
    followers, the supports differ; a prompt of zeros gets H -1."""
    import math
    rng = np.random.default_rng(3)
    P, V = 6, 60
    q = (rng.integers(0, 5, (P, V)) / 7).astype(np.float32)  # many ties
    q[1, 7], q[2, 3], q[2, 9] = np.nan, np.inf, -1.0
    q[5] = 0
    uni = rng.integers(0, 4, V)
    cnt = [rng.choice(V, int(rng.integers(0, 5)), replace=False) for _ in range(P)]
    nxt = [(np.sort(rng.choice(V, k, replace=False)), rng.integers(1, 9, k)) for k in rng.integers(0, 4, P)]
    fol = [rng.choice(V, int(rng.integers(1, 6)), replace=False) for _ in range(P)]
    for followers in (fol, None):
        data, attrs = ms.model_side(q, cnt, nxt, uni, followers)
        si, stok, spr, mass = (data[k] for k in ("/model/support/indptr", "/model/support/token",
                                                  "/model/support/prob", "/model/mass"))
        bad = []
        for p in range(P):
            top = sorted(range(V), key=lambda j: (-float(q[p, j]) if not math.isnan(q[p, j]) else math.inf, j))[:16]
            want = set(int(x) for x in cnt[p]) | set(int(x) for x in nxt[p][0]) | set(top)
            want |= set(int(x) for x in followers[p]) if followers is not None else set()
            sup = stok[si[p]:si[p + 1]]
            pos = [float(x) if math.isfinite(x) and x > 0 else 0.0 for x in q[p]]
            ok = (list(sup) == sorted(want) and spr[si[p]:si[p + 1]].tobytes() == q[p, sorted(want)].tobytes()
                  and not (abs(mass[p, 0] - math.fsum(pos)) > 1e-12)
                  and not (abs(mass[p, 1] - math.fsum(pos[j] for j in range(V) if j not in want)) > 1e-12))
            su, sq = sum(int(x) for x in uni), math.fsum(pos)
            h = -1.0 if not (su > 0 and sq > 0) else min(1.0, math.sqrt(math.fsum(
                (math.sqrt(int(uni[j]) / su) - math.sqrt(pos[j] / sq)) ** 2 for j in range(V)) / 2))
            ok = ok and not (abs(data["/unigram/hellinger"][p] - h) > 1e-12)
            ni, nt, nc = (data["/prompts/next/" + k] for k in ("indptr", "token", "count"))
            ok = ok and nt[ni[p]:ni[p + 1]].tolist() == nxt[p][0].tolist() and nc[ni[p]:ni[p + 1]].tolist() == \
                nxt[p][1].tolist()
            bad += [p] if not ok else []
        label = "with followers" if followers is not None else "without followers"
        check(not bad and attrs["model_top_k"] == 16 and attrs["model_support"] ==
              ("counts+next+top" if followers is None else "counts+next+followers+top"),
              f"ms.model_side ({label}) == plain Python; prompts differing: {bad}")
        if followers is not None:
            with_fol = stok
    check(len(with_fol) > len(stok) and data["/unigram/hellinger"][5] == -1,
          "controls: the followers add support entries; a prompt of zeros has H -1")
    print(f"ms.model_side == plain Python on {P} made-up prompts ({len(with_fol)} support entries with the "
          f"followers, {len(stok)} without)")


def csr_model_side(d, m, c, sc):
    """The csr file's model side (no [P, V] dataset; scan_support_check.py)
    against the dense scan of the same char model, bit for bit: the scans
    above (prefilter 0.5: every prompt's counts cover the whole V) and a
    stricter pair (prefilter 0.9: supports of 17 to 41 of V = 52, the top 16
    needed). The followers of a char are always among the counts here (the
    BPE test needs them). The tests' builder (model_sparse.model_side, from
    the dense scan, with and without the followers) writes the same bytes as
    scan and passes the same checks. A checker control: one token dropped from
    a support row of a copy is seen."""
    with h5py.File(sc["csr"]) as fc, h5py.File(sc["dense"]) as fd, h5py.File(sc["csr2"]) as f2:
        check_csr_model(fc, c, "csr, prefilter 0.5", q=fd["/model/probs"][()], next_dense=fd["/prompts/next_counts"][()],
                        lens=fd["/lens/probs"][()], f2=f2, controls=())
    strict = ["scan", "--model", m, "--corpus", c, "--prefilter", "0.9", "--bin-width", "0.01", "--batch", "200"]
    hs = {k: os.path.join(d, "strict_" + k + ".h5") for k in ("dense", "csr", "csr2")}
    run(strict + ["--next-layout", "dense", "-o", hs["dense"]])
    run(strict + ["--next-layout", "csr", "-o", hs["csr"]])
    run(strict + ["--next-layout", "csr", "-o", hs["csr2"]], ranks=2, env=dict(st.ENV, CORPUSLENS_SCAN_IO_SLICE="300"))
    with h5py.File(hs["csr"]) as fc, h5py.File(hs["dense"]) as fd, h5py.File(hs["csr2"]) as f2:
        q, nd, lens = fd["/model/probs"][()], fd["/prompts/next_counts"][()], fd["/lens/probs"][()]
        check_csr_model(fc, c, "csr, prefilter 0.9", q=q, next_dense=nd, lens=lens, f2=f2, controls=("top",))
        sizes = {k: fc[k].id.get_storage_size() for k in NEW}
        V, P = int(fc.attrs["vocab_size"]), int(fc.attrs["n_prompts"])
        print(f"csr model side: {sum(sizes.values())} bytes ({sizes}); dense /model/probs + /prompts/next_counts "
              f"{fd['/model/probs'].id.get_storage_size() + fd['/prompts/next_counts'].id.get_storage_size()} bytes")
    # the write-time forward of the prompts (scan_prompt_probs) in other pieces: shards of 7 (the
    # forward's pieces), 3 rows of logits at a time, on 3 ranks: the same bytes of the model side
    hs["pieces"] = os.path.join(d, "strict_pieces.h5")
    run(strict[:-2] + ["--batch", "7", "--next-layout", "csr", "-o", hs["pieces"]], ranks=3,
        env=dict(st.ENV, CORPUSLENS_SCAN_LENS_ROWS="3"))
    with h5py.File(hs["csr"]) as fc, h5py.File(hs["pieces"]) as g:
        for k in NEW:
            check(fc[k][()].tobytes() == g[k][()].tobytes(), f"shards of 7, 3 logit rows, 3 ranks: the same bytes of {k}")
    # a corpus without /text (the datasets removed from a copy): model_support "counts+next+top", no followers
    c_nt, s_nt = os.path.join(d, "c_notext.h5"), os.path.join(d, "strict_notext.h5")
    shutil.copy(c, c_nt)
    with h5py.File(c_nt, "r+") as f:
        del f["/text"]
    run(["scan", "--model", m, "--corpus", c_nt] + strict[5:] + ["--next-layout", "csr", "-o", s_nt])
    with h5py.File(s_nt) as g:
        check_csr_model(g, c_nt, "csr, corpus without /text", q=q, next_dense=nd, lens=lens, controls=("top",))
    # the tests' builder (model_sparse.model_side, from the dense scan) == scan's writer, byte for byte,
    # with the followers and without (the corpus without /text), and the oracle passes it
    n_diff = 0
    for label, fol, ref, corpus in (("followers", True, hs["csr"], c), ("no followers", False, s_nt, c_nt)):
        built = os.path.join(d, "built_" + label.replace(" ", "_") + ".h5")
        ms.convert(hs["dense"], hs["csr"], corpus, built, followers=fol, rebuild=True)
        with h5py.File(built) as fb, h5py.File(ref) as fr:
            diff = [k for k in NEW if fb[k].dtype != fr[k].dtype or fb[k][()].tobytes() != fr[k][()].tobytes()]
            diff += [k for k in ("model_top_k", "model_support") if text_attr(fb, k) != text_attr(fr, k)]
            check(not diff, f"model_sparse.model_side ({label}) == scan's writer, bytes; differing: {diff}")
            n_diff += len(diff)
            check_csr_model(fb, corpus, f"model_sparse.model_side ({label})", q=q, next_dense=nd, lens=lens,
                            controls=("top",))
    print(f"model_sparse.model_side vs scan's csr model side (with and without the followers): "
          f"{n_diff} datasets or attributes differ")
    # checker control: a support row without one of its tokens (prob and indptr kept consistent) fails
    bad = os.path.join(d, "support_bad.h5")
    shutil.copy(hs["csr"], bad)
    with h5py.File(bad, "r+") as f:
        si, t, pr = (f["/model/support/" + k][()] for k in ("indptr", "token", "prob"))
        keep = np.ones(len(t), bool)
        keep[si[3]] = False
        si2 = si.copy()
        si2[4:] -= 1
        for k, v in (("indptr", si2), ("token", t[keep]), ("prob", pr[keep])):
            del f["/model/support/" + k]
            f["/model/support/" + k] = v
    n0 = len(st.FAIL)
    with h5py.File(bad) as fc:
        check_csr_model(fc, c, "checker control, meant to fail (a token dropped)", q=q, next_dense=nd, controls=())
    seen = len(st.FAIL) - n0
    del st.FAIL[n0:]
    check(seen > 0, "checker control: a support without one of its tokens is seen")
    print(f"checker control: a dropped support token gives {seen} failure(s), as it should")


def main():
    d = tempfile.mkdtemp(prefix="cl_sparse_")
    m, c = st.setup(d, nchars=3000, L=6, prompts=24)
    sc = {}
    base = ["scan", "--model", m, "--corpus", c, "--prefilter", "0.5", "--bin-width", "0.05", "--batch", "200"]
    for name, extra, ranks, env in (("auto", [], None, None), ("dense", ["--next-layout", "dense"], None, None),
                                    ("csr", ["--next-layout", "csr"], None, None),
                                    ("csr2", ["--next-layout", "csr"], 2,
                                     dict(st.ENV, CORPUSLENS_SCAN_IO_SLICE="500"))):
        sc[name] = os.path.join(d, name + ".h5")
        run(base + extra + ["-o", sc[name]], ranks=ranks, env=env)
    with h5py.File(sc["auto"]) as fa, h5py.File(sc["dense"]) as fd, h5py.File(sc["csr"]) as fc, \
            h5py.File(sc["csr2"]) as f2:
        lay = [str(f.attrs["next_layout"].decode() if isinstance(f.attrs["next_layout"], bytes) else
                   f.attrs["next_layout"]) for f in (fa, fd, fc, f2)]
        check(lay == ["dense", "dense", "csr", "csr"], f"next_layout attributes (auto, dense, csr, csr2): {lay}")
        check(np.array_equal(fa["/freq/counts"][()], fd["/freq/counts"][()]), "auto == dense")
        check("/freq/counts" not in fc and "/freq/next/indptr" in fc, "the csr file has no dense counts")
        dense = fd["/freq/counts"][()].astype(np.int64)
        got, ind, tok, cnt = dense_from_csr(fc)
        check(dense.sum() > 0, "the scan counted something")
        check(np.array_equal(got, dense), "CSR counts == dense counts")
        nnz = int((dense != 0).sum())
        check(len(tok) == nnz and ind[0] == 0 and ind[-1] == nnz and (cnt > 0).all(),
              f"nnz {len(tok)} == nonzeros of the dense tensor {nnz}, counts > 0")
        rows_inc = all((np.diff(tok[ind[r]:ind[r + 1]]) > 0).all() for r in range(len(ind) - 1))
        check(rows_inc, "tokens increase within a row")
        st_tok = fc["/freq/next/token"].id.get_storage_size()
        st_cnt = fc["/freq/next/count"].id.get_storage_size()
        check(st_tok == 4 * nnz and st_cnt == 4 * nnz, f"CSR storage {st_tok}+{st_cnt} bytes for {nnz} nonzeros")
        print(f"dense /freq/counts {dense.size} elements ({fd['/freq/counts'].id.get_storage_size()} bytes gzip), "
              f"CSR {nnz} nonzeros ({st_tok + st_cnt} + {fc['/freq/next/indptr'].id.get_storage_size()} bytes)")
        for k in ("/freq/next/indptr", "/freq/next/token", "/freq/next/count", "/freq/n_matches", "/matches/substring"):
            check(np.array_equal(fc[k][()], f2[k][()]), f"1 rank == 2 ranks (many slices): {k}")
    model_side_unit()
    csr_model_side(d, m, c, sc)
    # the csr file stores the lens as H scalars [P, n_layer], not [P, n_layer, V] probabilities
    with h5py.File(sc["csr"]) as fc, h5py.File(sc["dense"]) as fd:
        NL, P, V = int(fc.attrs["n_layer"]), int(fc.attrs["n_prompts"]), int(fc.attrs["vocab_size"])
        check("/lens/probs" not in fc and fc["/lens/hellinger"].shape == (P, NL) and fd["/lens/probs"].shape == (P, NL, V),
              f"csr: /lens/hellinger {fc['/lens/hellinger'].shape if '/lens/hellinger' in fc else None}, no /lens/probs")
        lh = fc["/lens/hellinger"][()]
    # ---- from here on reduce and tune read the csr scan: they need the reader of
    # the csr model side (the reduce branch of issue 25 item 3) ----
    # reduce: same H and approximation from either layout, and the same logit-lens rows
    hd, ad = report(d, sc["dense"], "rd")
    hc, ac = report(d, sc["csr"], "rc")
    for l in range(NL):
        with h5py.File(os.path.join(d, "rd", "report.h5")) as a, h5py.File(os.path.join(d, "rc", "report.h5")) as b:
            x, y = a[f"/baselines/lens_{l}/hellinger"][()], b[f"/baselines/lens_{l}/hellinger"][()]
        dl = float(np.max(np.abs(x - y)))
        check(dl <= TOL and float(np.max(np.abs(x - lh[:, l]))) <= TOL and (x[:, None] >= 0).all(),
              f"lens {l}: reduce's H dense vs csr differ by {dl}")
    check(float(np.max(np.abs(lh[:, 0] - lh[:, NL - 1]))) > TOL, "negative control: the lens of block 0 is not the model")
    diff = float(np.max(np.abs(hd - hc)))
    check(diff <= TOL and np.max(np.abs(ad - ac)) <= TOL, f"reduce: H dense vs csr differ by {diff}")
    check((hd >= 0).sum() > 0, "some prompt has a distribution")
    print(f"reduce: max |H dense - H csr| = {diff:.3g} over {len(hd)} prompts")
    # tune from either layout
    tn = {}
    for k in ("dense", "csr"):
        tn[k] = os.path.join(d, "t" + k + ".h5")
        run(["tune", sc[k], "--seed", "2", "--restarts", "2", "--h5", tn[k]])
    with h5py.File(tn["dense"]) as a, h5py.File(tn["csr"]) as b:
        keys = [k for k in a.attrs if "file" not in k and "sha256" not in k]
        check(len(keys) > 5 and sorted(a.attrs) == sorted(b.attrs), f"tune wrote its attributes: {sorted(a.attrs)}")
        for k in keys:
            x, y = np.asarray(a.attrs[k]), np.asarray(b.attrs[k])
            same = np.array_equal(x, y) if x.dtype.kind != "f" else \
                (x.shape == y.shape and not (np.max(np.abs(x - y), initial=0) > TOL))
            check(same, f"tune: {k} dense {x} vs csr {y}")
        print(f"tune: {len(keys)} attributes equal, fitted_test_mean {float(a.attrs['fitted_test_mean']):.6f}")
    model_sparse_reduce(d, sc, c)
    tune_reference(d, sc)
    tune_large_v(d)
    tune_model_sparse(d, m, c)
    tune_soft_large_v(d)
    # negative control: one count changed changes H
    neg = os.path.join(d, "neg.h5")
    shutil.copy(sc["csr"], neg)
    with h5py.File(neg, "r+") as f:
        h, a = report(d, sc["csr"], "rc")
        cnt = f["/freq/next/count"][()]
        # the largest stored count of a prompt whose H is defined, bumped
        ind = f["/freq/next/indptr"][()]
        P, Lb, NB = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins"))
        # a prompt whose approximation has two tokens or more, its last bin of block 1 (weight 2)
        p = int(np.argmax((h >= 0) & ((a > 0).sum(1) >= 2)))
        r = p * Lb * NB + 1 * NB + NB - 1
        check(h[p] >= 0 and ind[r + 1] > ind[r], "negative control: the changed row is counted")
        e = ind[r]
        cnt[e] += 5
        f["/freq/next/count"][...] = cnt
    hn, _ = report(d, neg, "rn")
    check(np.max(np.abs(hn - hc)) > TOL, "negative control: a changed count changes H")
    # hostile CSR files: one message, nonzero exit, no report
    def hostile(label, edit, want):
        refused(label, sc["csr"], os.path.join(d, "bad.h5"), edit, want, os.path.join(d, "rbad"),
                lambda bad: report(d, bad, "rbad", ok=False)[0])

    V = 0
    with h5py.File(sc["csr"]) as f:
        V = int(f.attrs["vocab_size"])
    hostile("token >= V", setds("/freq/next/token", lambda a: a.__setitem__(0, V)), "not in 0..")
    hostile("negative token", setds("/freq/next/token", lambda a: a.__setitem__(0, -1)), "not in 0..")
    hostile("count 0", setds("/freq/next/count", lambda a: a.__setitem__(0, 0)), "outside [1,")
    hostile("huge count", setds("/freq/next/count", lambda a: a.__setitem__(0, 1 << 30)), "outside [1,")
    hostile("indptr past the end", setds("/freq/next/indptr", lambda a: a.__setitem__(-1, a[-1] + 7)), "/freq/next/indptr")
    hostile("indptr decreasing", setds("/freq/next/indptr", lambda a: a.__setitem__(1, a[2] + 1)), "/freq/next/indptr")

    hostile("lens H above 1", setds("/lens/hellinger", lambda a: a.__setitem__((0, 0), 1.5)),
            "not a Hellinger distance")
    hostile("lens H NaN", setds("/lens/hellinger", lambda a: a.__setitem__((1, 0), np.nan)), "not a Hellinger distance")

    def lens_shape(f):
        a = f["/lens/hellinger"][()]
        del f["/lens/hellinger"]
        f["/lens/hellinger"] = a[:, :1]
    hostile("lens H of one block", lens_shape, "/lens/hellinger")

    def unknown_layout(f):
        f.attrs["next_layout"] = "coo"
    hostile("unknown next_layout", unknown_layout, "next_layout 'coo'")

    def short_indptr(f):
        a = f["/freq/next/indptr"][()]
        del f["/freq/next/indptr"]
        f["/freq/next/indptr"] = a[:-1]
    hostile("short indptr", short_indptr, "/freq/next/indptr")

    def count_shape(f):
        a = f["/freq/next/count"][()]
        del f["/freq/next/count"]
        f["/freq/next/count"] = a[:-1]
    hostile("count shorter than token", count_shape, "/freq/next/count")
    shutil.rmtree(d)
    if st.FAIL:
        print(f"{len(st.FAIL)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()

"""Checks of a csr scan.h5's model side (issue 25 item 3, h5schema.h): no
[P, V] dataset; /prompts/next/{indptr,token,count} equal the dense
/prompts/next_counts; every /model/support row equals the naive union (the
prompt's /freq/next tokens, every block and bin; its /prompts/next row; the
followers of its last token in the corpus's /text/tokens; the model's 16 most
probable tokens, ties by the lower id); /model/support/prob equals the model's
probabilities there; /model/mass equals the naive sums (1e-12);
/unigram/hellinger and /lens/hellinger equal numpy's Hellinger of the dense
rows. Used by scan_sparse_test.py (against a dense scan of the same char
model: bit for bit) and bpe/scan_bpe.py (against the float64 oracle: 1e-5).
Negative controls: the union without the followers, or without the top 16,
differs from the file's support (each ingredient is seen; where the test's
data lets it: asked for by `controls`)."""
import h5py
import numpy as np

from scan_test import check

TOP = 16
NEW = ("/prompts/next/indptr", "/prompts/next/token", "/prompts/next/count", "/model/support/indptr",
       "/model/support/token", "/model/support/prob", "/model/mass", "/unigram/hellinger", "/lens/hellinger")


def text_attr(f, k):
    v = f.attrs[k]
    return v.decode() if isinstance(v, bytes) else str(v)


def hellinger(a, q):
    """cl_hellinger_df in numpy (float64): -1 when either side sums to 0."""
    a = np.where(np.isfinite(a) & (a > 0), a, 0).astype(np.float64)
    q = np.where(np.isfinite(q) & (q > 0), q, 0).astype(np.float64)
    sa, sq = a.sum(), q.sum()
    if not (sa > 0 and sq > 0):
        return -1.0
    return min(1.0, float(np.sqrt(np.sum((np.sqrt(a / sa) - np.sqrt(q / sq)) ** 2)) / np.sqrt(2)))


def top_k(q, k=TOP):
    """The k most probable tokens, ties by the lower id."""
    return np.lexsort((np.arange(len(q)), -q.astype(np.float64)))[:k]


def naive_parts(f, corpus):
    """Per prompt: (counts tokens, next tokens, followers of the last token)."""
    P, Lb, NB = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins"))
    ind, tok = f["/freq/next/indptr"][()], f["/freq/next/token"][()]
    pidx = f["/prompts/index"][()]
    with h5py.File(corpus) as c:
        last = c["/substrings/tokens"][()][pidx, -1]
        stream = c["/text/tokens"][()] if "/text/tokens" in c else None
    parts = []
    for p in range(P):
        cnt = np.unique(tok[ind[p * Lb * NB]:ind[(p + 1) * Lb * NB]])
        fol = np.unique(stream[1:][stream[:-1] == last[p]]) if stream is not None else np.zeros(0, np.int64)
        parts.append((cnt, fol))
    return parts


def check_csr_model(f, corpus, label, q=None, next_dense=None, lens=None, q_oracle=None, f2=None,
                    controls=("followers", "top")):
    """f: the csr scan (h5py File); corpus: its corpus.h5; q [P, V] float32: the
    dense scan's /model/probs (bit-exact checks), or q_oracle [P, V] float64
    (checks to 1e-5); next_dense [P, V]: the dense /prompts/next_counts (or
    the oracle's); lens [P, n_layer, V]: the dense /lens/probs (optional);
    f2: the same scan on 2 ranks (byte-equal datasets)."""
    P, V, NL = (int(f.attrs[k]) for k in ("n_prompts", "vocab_size", "n_layer"))
    check(all(k not in f for k in ("/model/probs", "/prompts/next_counts", "/lens/probs", "/freq/counts")),
          f"{label}: the csr file holds no [P, V] dataset")
    check(all(k in f for k in NEW), f"{label}: the csr file has {[k for k in NEW if k not in f]}")
    if not all(k in f for k in NEW):
        return
    with h5py.File(corpus) as c:
        has_text = "/text/tokens" in c
    want_sup = "counts+next+followers+top" if has_text else "counts+next+top"
    check(int(f.attrs["model_top_k"]) == TOP and text_attr(f, "model_support") == want_sup,
          f"{label}: model_top_k {f.attrs.get('model_top_k')}, model_support {f.attrs.get('model_support')}")
    # /prompts/next
    ni, nt, nc = (f["/prompts/next/" + k][()] for k in ("indptr", "token", "count"))
    check(ni.shape == (P + 1,) and ni[0] == 0 and ni[-1] == len(nt) == len(nc) and (np.diff(ni) >= 0).all(),
          f"{label}: /prompts/next/indptr")
    nd = np.zeros((P, V), np.int64)
    for p in range(P):
        t = nt[ni[p]:ni[p + 1]]
        check((np.diff(t) > 0).all() and (nc[ni[p]:ni[p + 1]] > 0).all(), f"{label}: /prompts/next row {p} increasing, > 0")
        nd[p, t] = nc[ni[p]:ni[p + 1]]
    if next_dense is not None:
        check(np.array_equal(nd, np.asarray(next_dense, np.int64)), f"{label}: /prompts/next == the dense next counts")
    # /model/support: the naive union
    si, stok, sprob = (f["/model/support/" + k][()] for k in ("indptr", "token", "prob"))
    mass = f["/model/mass"][()]
    check(si.shape == (P + 1,) and si[0] == 0 and si[-1] == len(stok) == len(sprob) and (np.diff(si) > 0).all()
          and mass.shape == (P, 2), f"{label}: /model/support/indptr and /model/mass shapes")
    parts = naive_parts(f, corpus)
    bad, bad_prob, dm, no_fol, no_top = [], [], 0.0, 0, 0
    for p in range(P):
        cnt, fol = parts[p]
        nxt = nt[ni[p]:ni[p + 1]]
        sup = stok[si[p]:si[p + 1]]
        pr = sprob[si[p]:si[p + 1]]
        if q is not None:
            top = top_k(q[p])
            want = np.union1d(np.union1d(cnt, nxt), np.union1d(fol, top))
            if not np.array_equal(sup, want):
                bad.append(p)
                continue
            if not np.array_equal(pr.view(np.uint32), q[p][sup].view(np.uint32)):
                bad_prob.append(p)
            qa = np.where(np.isfinite(q[p]) & (q[p] > 0), q[p], 0).astype(np.float64)
            off = np.ones(V, bool)
            off[sup] = False
            d = max(abs(mass[p, 0] - qa.sum()), abs(mass[p, 1] - qa[off].sum()))
            dm = max(dm, d)
            no_fol += not np.array_equal(sup, np.union1d(np.union1d(cnt, nxt), top))
            no_top += not np.array_equal(sup, np.union1d(np.union1d(cnt, nxt), fol))
        else:  # the oracle's float64 probabilities: the top 16 up to near-ties
            qo = q_oracle[p]
            base = np.union1d(np.union1d(cnt, nxt), fol)
            extra = np.setdiff1d(sup, base)
            order = top_k(qo, V)
            t16 = qo[order[TOP - 1]]
            sure = order[:TOP][qo[order[:TOP]] > t16 + 1e-5]
            ok = (np.isin(base, sup).all() and len(extra) <= TOP and np.isin(sure, sup).all()
                  and (qo[extra] >= t16 - 1e-5).all() and (np.diff(sup) > 0).all())
            if not ok:
                bad.append(p)
                continue
            if not (np.abs(pr - qo[sup]) < 1e-5).all():
                bad_prob.append(p)
            if not (abs(mass[p, 0] - 1.0) < 1e-5):  # the softmax sums to 1 (float32 rounding)
                bad_prob.append(p)
            no_fol += not np.isin(fol, np.union1d(np.union1d(cnt, nxt), top_k(qo))).all()
            no_top += not np.isin(top_k(qo)[:1], np.union1d(np.union1d(cnt, nxt), fol)).all()
        # sum over the support + the rest == the whole sum (the file's own numbers)
        ins = float(np.sum(np.where(pr > 0, pr, 0).astype(np.float64)))
        if not (abs(ins + mass[p, 1] - mass[p, 0]) <= 1e-9 and 0 <= mass[p, 1] <= mass[p, 0] + 1e-6):
            bad_prob.append(p)
    check(not bad, f"{label}: /model/support == the naive union (counts, next, followers, top {TOP}); "
                   f"prompts differing: {bad[:8]}")
    check(not bad_prob, f"{label}: /model/support/prob == the model's probabilities, mass consistent; "
                        f"prompts differing: {bad_prob[:8]}")
    check(not (dm > 1e-12), f"{label}: /model/mass == the naive sums (max diff {dm:.3g})")
    # negative controls: each ingredient shows
    if has_text and "followers" in controls:
        check(no_fol > 0, f"{label}: negative control: the union without the followers differs for some prompt")
    if "top" in controls:
        check(no_top > 0, f"{label}: negative control: the union without the top {TOP} differs for some prompt")
    # /unigram/hellinger and /lens/hellinger
    uni = f["/corpus/unigram"][()]
    uh = f["/unigram/hellinger"][()]
    qq = q if q is not None else q_oracle
    tol = 1e-12 if q is not None else 1e-5
    du = max(abs(uh[p] - hellinger(uni, qq[p])) for p in range(P))
    check(not (du > tol), f"{label}: /unigram/hellinger == numpy's H of the dense rows (max diff {du:.3g})")
    lh = f["/lens/hellinger"][()]
    check(lh.shape == (P, NL) and (((lh >= 0) & (lh <= 1)) | (lh == -1)).all(), f"{label}: /lens/hellinger shape, range")
    if lens is not None:
        dl = max(abs(lh[p, l] - hellinger(lens[p, l], q[p])) for p in range(P) for l in range(NL))
        check(not (dl > 1e-12), f"{label}: /lens/hellinger == numpy's H of the dense lens rows (max diff {dl:.3g})")
    if f2 is not None:
        for k in NEW:
            a, b = f[k][()], f2[k][()]
            check(a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{label}: 1 rank == 2 ranks, bytes of {k}")
    n_sup = int(si[-1])
    print(f"{label}: support {n_sup} entries for {P} prompts (mean {n_sup / P:.1f} of V = {V}); "
          f"{no_fol} prompts need the followers, {no_top} the top {TOP}; mass diff {dm:.3g}")

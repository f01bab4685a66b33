"""A model_sparse scan.h5 (the csr scan without [P, V] datasets, h5schema.h:
/prompts/next, /model/support, /model/mass, /unigram/hellinger) built in
numpy from a csr scan and its dense twin (same model, corpus, prompts), for
the reduce tests whether `scan` writes the file itself or not: a csr scan that
already has /model/support is copied as it is. The support follows the
contract: the tokens of the prompt's /freq/next rows and of its n-gram row,
the corpus followers (/text/tokens) of its last token (followers=True), and
the model's top CL_SCAN_MODEL_TOP (ties: the lower id)."""
import shutil

import h5py
import numpy as np

TOP = 16  # CL_SCAN_MODEL_TOP


def hellinger_dense(a, q):
    """cl_hellinger_df in numpy (float64): -1 when either side is empty."""
    a = np.where(np.isfinite(a) & (a > 0), a, 0).astype(np.float64)
    q = np.where(np.isfinite(q) & (q > 0), q, 0).astype(np.float64)
    sa, sq = a.sum(), q.sum()
    if not (sa > 0) or not (sq > 0):
        return -1.0
    return min(1.0, float(np.sqrt(np.sum((np.sqrt(a / sa) - np.sqrt(q / sq)) ** 2)) / np.sqrt(2)))


def seq_sum(x):
    """A sum in token order, as the C loops add (np.sum pairs)."""
    x = np.asarray(x, np.float64)
    return float(np.cumsum(x)[-1]) if len(x) else 0.0


def followers_of(corpus):
    """{token: sorted array of the tokens that follow it in /text/tokens}, or None without /text."""
    with h5py.File(corpus) as g:
        if "/text/tokens" not in g:
            return None
        t = g["/text/tokens"][()].astype(np.int64)
    out = {}
    for a in np.unique(t[:-1]):
        out[int(a)] = np.unique(t[1:][t[:-1] == a])
    return out


def convert(dense, csr, corpus, out, followers=True):
    """out: csr with the model_sparse datasets instead of /model/probs and
    /prompts/next_counts (read from `dense`, the same scan's dense twin)."""
    with h5py.File(csr) as f:
        done = "/model/support/indptr" in f
    if done:  # scan wrote it: as it is; followers=False says the supports lack them (reduce's other branch)
        shutil.copy(csr, out)
        if not followers:
            with h5py.File(out, "r+") as f:
                f.attrs["model_support"] = "counts+next+top"
        return
    shutil.copy(csr, out)
    fol = followers_of(corpus) if followers else None
    with h5py.File(dense) as fd, h5py.File(out, "r+") as f, h5py.File(corpus) as g:
        P, Lb, NB, V = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins", "vocab_size"))
        q_all = fd["/model/probs"][()]
        nxt = fd["/prompts/next_counts"][()]
        uni = f["/corpus/unigram"][()].astype(np.float64)
        ind, tok = f["/freq/next/indptr"][()], f["/freq/next/token"][()]
        last = g["/substrings/tokens"][()][f["/prompts/index"][()], -1]
        s_ind, s_tok, s_prob, mass, n_ind, n_tok, n_cnt, uh = [0], [], [], [], [0], [], [], []
        for p in range(P):
            q = q_all[p]
            r0, r1 = p * Lb * NB, (p + 1) * Lb * NB
            nz = np.nonzero(nxt[p])[0]
            top = np.lexsort((np.arange(V), -q.astype(np.float64)))[:TOP]
            parts = [tok[ind[r0]:ind[r1]], nz, top]
            if fol is not None:
                parts.append(fol.get(int(last[p]), np.zeros(0, np.int64)))
            sup = np.unique(np.concatenate([np.asarray(x, np.int64) for x in parts]))
            s_tok += list(sup)
            s_prob += list(q[sup])
            s_ind.append(len(s_tok))
            pos = np.where(np.isfinite(q) & (q > 0), q, 0)
            off = np.ones(V, bool)
            off[sup] = False
            mass.append((seq_sum(pos), seq_sum(pos[off])))
            n_tok += list(nz)
            n_cnt += list(nxt[p][nz])
            n_ind.append(len(n_tok))
            uh.append(hellinger_dense(uni, q))
        for k in ("/model/probs", "/prompts/next_counts"):
            del f[k]
        f["/model/support/indptr"] = np.array(s_ind, np.int64)
        f["/model/support/token"] = np.array(s_tok, np.int32)
        f["/model/support/prob"] = np.array(s_prob, np.float32)
        f["/model/mass"] = np.array(mass, np.float64).reshape(P, 2)
        f["/prompts/next/indptr"] = np.array(n_ind, np.int64)
        f["/prompts/next/token"] = np.array(n_tok, np.int32)
        f["/prompts/next/count"] = np.array(n_cnt, np.int32)
        f["/unigram/hellinger"] = np.array(uh, np.float64)
        f.attrs["model_top_k"] = TOP
        f.attrs["model_support"] = "counts+next+followers+top" if fol is not None else "counts+next+top"

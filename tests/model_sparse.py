"""The csr scan's model side without [P, V] datasets (format.md, h5schema.h:
/prompts/next, /model/support, /model/mass, /unigram/hellinger) built in
numpy from dense probabilities: the one builder of the tests (model_side,
write_model_side). Used by scan_sparse_test.py for the reduce and tune tests
(convert, model_sparse_scan, the synthetic large-V scan) and checked there
against scan's own writer (the same bytes) and against the independent oracle
tests/scan_support_check.py (which keeps its own naive loops, so that the
builder and the oracle do not share a mistake). The support follows the
contract: the tokens of the prompt's /freq/next rows and of its n-gram row,
the corpus followers (/text/tokens) of its last token (when given), and the
model's top CL_SCAN_MODEL_TOP (ties: the lower id)."""
import shutil

import h5py
import numpy as np

TOP = 16  # CL_SCAN_MODEL_TOP
# what write_model_side replaces (the dense datasets) or rewrites
DATASETS = ("/model/probs", "/prompts/next_counts", "/model/support", "/model/mass", "/prompts/next",
            "/unigram/hellinger")


def seq_sum(x):
    """A sum in token order, as the C loops add (np.sum pairs)."""
    x = np.asarray(x, np.float64)
    return float(np.cumsum(x)[-1]) if len(x) else 0.0


def positive(x):
    """x in float64 with its non-finite and non-positive entries 0 (stats.c's pos)."""
    x = np.asarray(x, np.float64)
    return np.where(np.isfinite(x) & (x > 0), x, 0.0)


def hellinger_dense(a, q):
    """cl_hellinger_df in numpy, summed in token order as stats.c does:
    -1 (CL_H_EMPTY) when either side is empty or its sum not finite."""
    a, q = positive(a), positive(q)
    sa, sq = seq_sum(a), seq_sum(q)
    if not (sa > 0 and sq > 0 and np.isfinite(sa) and np.isfinite(sq)):
        return -1.0
    return min(1.0, float(np.sqrt(seq_sum((np.sqrt(a / sa) - np.sqrt(q / sq)) ** 2)) / np.sqrt(2.0)))


def top_k(q, k=TOP):
    """The k most probable tokens, ties by the lower id."""
    return np.lexsort((np.arange(len(q)), -np.asarray(q, np.float64)))[:k]


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


def count_tokens_of(f):
    """Per prompt of the scan f: the tokens of its /freq/next rows (every block and bin)."""
    P, Lb, NB = (int(f.attrs[k]) for k in ("n_prompts", "n_hook_blocks", "n_bins"))
    ind, tok = f["/freq/next/indptr"][()], f["/freq/next/token"][()]
    return [np.unique(tok[ind[p * Lb * NB]:ind[(p + 1) * Lb * NB]]) for p in range(P)]


def next_rows_of(counts):
    """Per prompt: (tokens, counts) of the nonzero entries of dense next counts [P, V]."""
    return [(np.nonzero(c)[0], c[np.nonzero(c)[0]]) for c in np.asarray(counts)]


def prompt_followers(f, corpus):
    """Per prompt of the scan f: the followers of its last token in the corpus
    text, or None when the corpus has no /text."""
    fol = followers_of(corpus)
    if fol is None:
        return None
    with h5py.File(corpus) as g:
        last = g["/substrings/tokens"][()][f["/prompts/index"][()], -1]
    return [fol.get(int(t), np.zeros(0, np.int64)) for t in last]


def model_side(q, count_tokens, next_rows, unigram, followers=None, top=TOP):
    """The model side of format.md for P prompts, from dense probabilities q
    [P, V] float32: prompt p's support is count_tokens[p] | the tokens of
    next_rows[p] = (tokens, counts > 0) | followers[p] (followers None: no
    /text, model_support "counts+next+top") | the top `top` of q[p] (ties: the
    lower id); prob the bits of q there; /model/mass (the positive finite sum,
    the part off the support), both in token order; /unigram/hellinger the
    dense H(unigram, q[p]). Returns ({dataset: array}, {attribute: value})."""
    q = np.asarray(q)
    P, V = q.shape
    s_ind, s_tok, s_prob, mass, n_ind, n_tok, n_cnt, uh = [0], [], [], [], [0], [], [], []
    for p in range(P):
        nt, nc = next_rows[p]
        parts = [count_tokens[p], nt, top_k(q[p], top)]
        if followers is not None:
            parts.append(followers[p])
        sup = np.unique(np.concatenate([np.asarray(x, np.int64) for x in parts]))
        s_tok += list(sup)
        s_prob += list(q[p][sup])
        s_ind.append(len(s_tok))
        pos = positive(q[p])
        off = np.ones(V, bool)
        off[sup] = False
        mass.append((seq_sum(pos), seq_sum(pos[off])))
        n_tok += list(nt)
        n_cnt += list(nc)
        n_ind.append(len(n_tok))
        uh.append(hellinger_dense(unigram, q[p]))
    data = {"/model/support/indptr": np.array(s_ind, np.int64),
            "/model/support/token": np.array(s_tok, np.int32),
            "/model/support/prob": np.array(s_prob, np.float32),
            "/model/mass": np.array(mass, np.float64).reshape(P, 2),
            "/prompts/next/indptr": np.array(n_ind, np.int64),
            "/prompts/next/token": np.array(n_tok, np.int32),
            "/prompts/next/count": np.array(n_cnt, np.int32),
            "/unigram/hellinger": np.array(uh, np.float64)}
    attrs = {"model_top_k": top,
             "model_support": "counts+next+top" if followers is None else "counts+next+followers+top"}
    return data, attrs


def write_model_side(f, side):
    """Writes model_side's datasets and attributes into the scan f (open r+),
    instead of its dense /model/probs and /prompts/next_counts and any model
    side it had."""
    data, attrs = side
    for k in DATASETS:
        if k in f:
            del f[k]
    for k, v in data.items():
        f[k] = v
    for k, v in attrs.items():
        f.attrs[k] = v


def convert(dense, csr, corpus, out, followers=True, rebuild=False):
    """out: csr with the model_sparse datasets instead of /model/probs and
    /prompts/next_counts. A csr scan that has its model side (scan wrote it)
    is copied as it is, unless rebuild; followers=False then only says the
    supports lack them (model_support "counts+next+top": reduce's other
    branch). Otherwise (or rebuild) the model side is built by model_side from
    `dense`, the same scan's dense twin (same model, corpus, prompts)."""
    shutil.copy(csr, out)
    with h5py.File(out, "r+") as f:
        if "/model/support/indptr" in f and not rebuild:
            if not followers:
                f.attrs["model_support"] = "counts+next+top"
            return
        with h5py.File(dense) as fd:
            q, nxt = fd["/model/probs"][()], fd["/prompts/next_counts"][()]
        fol = prompt_followers(f, corpus) if followers else None
        write_model_side(f, model_side(q, count_tokens_of(f), next_rows_of(nxt), f["/corpus/unigram"][()], fol))

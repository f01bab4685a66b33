"""The naive n-gram counts of the BPE tests' oracles (scan_bpe, explain_bpe):
the unique n-grams of L tokens of a token stream in order of first occurrence,
and the counts of the token after each occurrence, dense [N, V]; the ∞-gram
and backoff n-gram (suffix) counts of a text (scan_bpe's reduce); reduce's H
of raw counts against probabilities."""
import numpy as np


def hell(a, q):
    """reduce's H: a raw counts, q probabilities (normalised as cl_sqrt_probs);
    -1 for no counts."""
    if a.sum() <= 0:
        return -1.0
    p = a / a.sum()
    q = np.where(q > 0, q, 0).astype(np.float64)
    q = q / q.sum()
    return float(np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum()) / np.sqrt(2))


def naive_ngrams(stream, L, V):
    """(toks [N, L] int64, dense [N, V] int64) of the stream's L-grams."""
    grams, nxt = {}, []
    for i in range(len(stream) - L + 1):
        g = tuple(stream[i:i + L])
        if g not in grams:
            grams[g] = len(grams)
            nxt.append({})
        if i + L < len(stream):
            t = int(stream[i + L])
            nxt[grams[g]][t] = nxt[grams[g]].get(t, 0) + 1
    toks = np.array(list(grams.keys()), np.int64)
    dense = np.zeros((len(toks), V), np.int64)
    for i, dct in enumerate(nxt):
        for t, n in dct.items():
            dense[i, t] = n
    return toks, dense


def naive_suffix_counts(stream, w, min_occ, V):
    """The ∞-gram (min_occ 1) / backoff n-gram (min_occ K) of w over the
    stream, naively: the longest suffix of w (at most len(stream) - 1 tokens)
    with at least min_occ occurrences followed by a token, and the dense [V]
    counts of those followers; None when no suffix qualifies."""
    stream = [int(t) for t in stream]
    w = [int(t) for t in w]
    best = None
    for k in range(1, min(len(w), len(stream) - 1) + 1):
        s = w[len(w) - k:]
        fol = [stream[i + k] for i in range(len(stream) - k) if stream[i:i + k] == s]
        if len(fol) < min_occ:
            break
        best = fol
    if best is None:
        return None
    return np.bincount(np.array(best, np.int64), minlength=V)

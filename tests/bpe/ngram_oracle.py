"""The naive n-gram count of the BPE tests' oracles (scan_bpe, explain_bpe):
the unique n-grams of L tokens of a token stream in order of first occurrence,
and the counts of the token after each occurrence, dense [N, V]."""
import numpy as np


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

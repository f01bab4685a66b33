#!/usr/bin/python3
"""A tiny GPT-2-format byte-level BPE tokenizer for the tests: GPT-2's
byte-to-unicode table, the 256 byte tokens and a few merges, written as
vocab.json + merges.txt. usage: tiny_tokenizer.py DIR (prints V)."""
import json
import os
import sys


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


B2U = bytes_to_unicode()
MERGES = ["t h", "th e", "\u0120 t", "h e", "\u0120t he", "e r", "i n", "o u", "\u0120 a", "a n", "an d"]


def write_tokenizer(d, merges=MERGES, drop_byte=None, extra=()):
    os.makedirs(d, exist_ok=True)
    toks = [B2U[b] for b in range(256) if b != drop_byte]
    for m in list(merges) + list(extra):
        a, b = m.split(" ")
        if a + b not in toks:
            toks.append(a + b)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(toks)}, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(list(merges) + list(extra)) + "\n")
    return len(toks)



def tiny_bpe_model(d, run, testdata):
    """In folder d: the tiny tokenizer (tok/), the first 3,000 characters of
    TinyShakespeare (t.txt) and a 2-layer BPE model trained one step on them
    (m.h5) with run (scan_test.run). Returns (tok, V, txt, model)."""
    tok = os.path.join(d, "tok")
    V = write_tokenizer(tok)
    with open(os.path.join(testdata, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()[:3000]
    txt = os.path.join(d, "t.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(text)
    m = os.path.join(d, "m.h5")
    run(["train", "--corpus", txt, "--tokenizer", tok, "--config", "n_layer=2,n_head=4,n_embd=32,block_size=16",
         "--steps", "1", "--batch", "2", "--ctx", "8", "--eval-batches", "1", "--seed", "5", "-o", m])
    return tok, V, txt, m


if __name__ == "__main__":
    print(write_tokenizer(sys.argv[1]))

#!/usr/bin/python3
"""Refusals around GPT-2 BPE training and BPE corpora (issue 25 items 1-2).
Needs no npm: a tiny byte-level BPE tokenizer (GPT-2's byte-to-unicode table,
256 byte tokens and a few merges) is written here.

Positive controls first: train --tokenizer (and --resume of its output with
the same tokenizer) and prepare --vocab-from work on the tiny tokenizer, corpus-check (cl_corpus_load_any) reads the BPE corpus,
and a char corpus without the new attributes (as written before) still loads.
Then each refusal must exit nonzero with one "corpuslens: ..." line naming the
problem, and leave no output file:
  train: a tokenizer folder without files, a corrupt vocab.json, a merge of an
  unknown token, a vocabulary without every byte, --init of a char model or of
  a BPE model with another tokenizer, --config vocab_size other than V, a
  corpus that is not UTF-8 (byte-level BPE encodes every byte sequence of valid
  UTF-8; the encoder refuses invalid UTF-8, naming the byte);
  prepare: invalid UTF-8, --len beyond block_size;
  scan with a char model on a BPE corpus: "scan: ... has BPE token n-grams
  (sparse counts); scan does not support them yet";
  ablate --corpus, lens --prompts: a char model with a BPE corpus, a BPE model
  with a char corpus or a BPE corpus of another tokenizer;
  index, explain and serve with a char model on a BPE corpus: "... is a GPT-2 BPE
  corpus but ... is a character-level model";
  hostile BPE corpus files (ids out of range in every id dataset, a tokenizer
  whose size disagrees with vocab_size, an unknown token_type or next_layout,
  a /prompts/text that is not the decoded prompts, a merge of an unknown token):
  corpus-check refuses each with a message.
Environment: CORPUSLENS, BUILD."""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EXE = os.environ["CORPUSLENS"]
TOOL = os.path.join(os.environ.get("BUILD", "build"), "bpe_tool")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
for k in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
    ENV.pop(k, None)


from tiny_tokenizer import write_tokenizer  # noqa: E402


FAILS = []


def run(args, **kw):
    return subprocess.run([EXE] + args, capture_output=True, text=True, env=ENV, **kw)


def expect_ok(name, args):
    r = run(args)
    good = r.returncode == 0
    print(f"  ok?     {name:58s} {'ok' if good else 'FAILED: ' + r.stderr.strip()}")
    if not good:
        FAILS.append(name)
    return r


def refuse(name, args, want, out=None, cmd=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120) if cmd else run(args, timeout=120)
    # the message lines; serve's progress line ("loading the model, ...") comes before its refusal
    lines = [ln for ln in r.stderr.strip().split("\n") if (ln.startswith("corpuslens") or ln.startswith("bpe_tool"))
             and "loading the model, corpus and index" not in ln]
    good = r.returncode != 0 and len(lines) == 1 and want in lines[0] and "Sanitizer" not in r.stderr
    if out and os.path.exists(out):
        good = False
    print(f"  refuse  {name:58s} {'ok' if good else 'FAILED'}: {lines[0] if lines else r.stderr.strip()!r}")
    if not good:
        print(f"          wanted {want!r}, rc {r.returncode}, stderr:\n{r.stderr}")
        FAILS.append(name)


def main():
    d = tempfile.mkdtemp()
    try:
        tok = os.path.join(d, "tok")
        V = write_tokenizer(tok)
        text = ("First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n"
                "And the others in the house, and the rest.\n") * 12
        corpus = os.path.join(d, "c.txt")
        with open(corpus, "w") as f:
            f.write(text)
        bad = os.path.join(d, "bad.txt")
        with open(bad, "wb") as f:
            f.write(text.encode()[:300] + b"\xff\xfe" + text.encode()[300:])
        cfg = ["--config", "n_layer=1,n_head=2,n_embd=16,block_size=16"]
        small = ["--steps", "2", "--batch", "2", "--ctx", "8", "--eval-batches", "1"]
        bpe = os.path.join(d, "bpe.h5")
        print(f"tiny tokenizer: V = {V}")
        expect_ok("train --tokenizer (tiny tokenizer)", ["train", "--corpus", corpus, "--tokenizer", tok] + cfg + small + ["-o", bpe])
        char = os.path.join(d, "char.h5")
        expect_ok("train (char model)", ["train", "--corpus", corpus] + cfg + small + ["-o", char])
        cbpe = os.path.join(d, "cbpe.h5")
        expect_ok("prepare --vocab-from BPE model", ["prepare", corpus, "--len", "4", "--prompts", "10", "--vocab-from", bpe,
                                                      "--holdout-fraction", "0.1", "-o", cbpe])
        cchar = os.path.join(d, "cchar.h5")
        expect_ok("prepare (char)", ["prepare", corpus, "--len", "4", "--prompts", "10", "-o", cchar])
        r = subprocess.run([TOOL, "corpus-check", cbpe], capture_output=True, text=True)
        good = r.returncode == 0 and "gpt2-bpe" in r.stdout
        print(f"  ok?     {'corpus-check reads the BPE corpus':58s} {'ok' if good else 'FAILED ' + r.stderr}")
        if not good:
            FAILS.append("corpus-check bpe")
        old = os.path.join(d, "old.h5")
        shutil.copy(cchar, old)
        with h5py.File(old, "a") as f:
            del f.attrs["token_type"]
            del f.attrs["next_layout"]
        r = subprocess.run([TOOL, "corpus-check", old], capture_output=True, text=True)
        good = r.returncode == 0 and "char" in r.stdout
        print(f"  ok?     {'a char corpus without token_type/next_layout loads':58s} {'ok' if good else 'FAILED ' + r.stderr}")
        if not good:
            FAILS.append("old char corpus")

        o = os.path.join(d, "out.h5")
        tr = ["train", "--corpus", corpus] + small + ["-o", o]
        refuse("train: tokenizer folder without its files", tr + ["--tokenizer", os.path.join(d, "nothing")] + cfg,
               "are missing", o)
        t2 = os.path.join(d, "tok-json")
        write_tokenizer(t2)
        with open(os.path.join(t2, "vocab.json"), "r+") as f:
            s = f.read()
            f.seek(0)
            f.truncate()
            f.write(s[: len(s) // 2])
        refuse("train: corrupt vocab.json", tr + ["--tokenizer", t2] + cfg, "invalid JSON", o)
        t3 = os.path.join(d, "tok-merge")
        write_tokenizer(t3)
        with open(os.path.join(t3, "merges.txt"), "a") as f:
            f.write("zz qq\n")
        refuse("train: a merge of unknown tokens", tr + ["--tokenizer", t3] + cfg, "zz", o)
        t4 = os.path.join(d, "tok-byte")
        write_tokenizer(t4, drop_byte=0x41)
        refuse("train: a vocabulary without every byte", tr + ["--tokenizer", t4] + cfg, "byte", o)
        refuse("train --init CHAR.h5 --tokenizer", tr + ["--tokenizer", tok, "--init", char],
               "does not match the tokenizer", o)
        t5 = os.path.join(d, "tok-other")
        write_tokenizer(t5, extra=["o n"])
        refuse("train --init BPE.h5 --tokenizer OTHER", tr + ["--tokenizer", t5, "--init", bpe], "does not match", o)
        refuse("train --resume BPE.h5 --tokenizer OTHER", ["train", "--resume", bpe, "--tokenizer", t5, "--steps", "4",
                                                          "-o", o], "does not match", o)
        expect_ok("train --resume BPE.h5 --tokenizer (the same)", ["train", "--resume", bpe, "--tokenizer", tok,
                                                                   "--steps", "4", "-o", os.path.join(d, "bpe4.h5")])
        refuse("train --tokenizer --config vocab_size=300", tr + ["--tokenizer", tok, "--config", "vocab_size=300"],
               "vocab_size=300", o)
        refuse("train --tokenizer on invalid UTF-8", ["train", "--corpus", bad, "--tokenizer", tok] + cfg + small + ["-o", o],
               "UTF-8", o)
        refuse("prepare --vocab-from BPE on invalid UTF-8",
               ["prepare", bad, "--len", "4", "--prompts", "5", "--vocab-from", bpe, "-o", o], "UTF-8", o)
        refuse("prepare --vocab-from BPE --len > block_size",
               ["prepare", corpus, "--len", "17", "--prompts", "5", "--vocab-from", bpe, "-o", o], "block_size", o)

        refuse("import --vocab-from BPE.h5", ["import", os.path.join(d, "none.pt"), "--vocab-from", bpe, "-o", o],
               f"corpuslens import: {bpe} is a GPT-2 BPE model", o)
        # index and explain take a BPE corpus with its BPE model (explain_bpe); a char model is refused
        refuse("index: a char model with a BPE corpus", ["index", "--model", char, "--corpus", cbpe, "-o", o],
               f"{cbpe} is a GPT-2 BPE corpus but {char} is a character-level model", o)
        refuse("explain: a char model with a BPE corpus",
               ["explain", "--index", os.path.join(d, "none.h5"), "--corpus", cbpe, "--model", char, "-o", o, "the"],
               f"{cbpe} is a GPT-2 BPE corpus but {char} is a character-level model", o)
        refuse("serve: a char model with a BPE corpus",
               ["serve", "--index", os.path.join(d, "none.h5"), "--corpus", cbpe, "--model", char, "--port", "0"],
               f"{cbpe} is a GPT-2 BPE corpus but {char} is a character-level model", o)
        refuse("scan: a char model with a BPE corpus", ["scan", "--model", char, "--corpus", cbpe, "-o", o],
               f"corpuslens scan: {cbpe} has BPE token n-grams (sparse counts); scan does not support them yet", o)
        # ablate --corpus and lens --prompts take a BPE corpus with its BPE model
        # (ablate_lens_bpe); a char model, a char corpus for a BPE model, and a
        # corpus of another tokenizer are refused
        bpe5 = os.path.join(d, "bpe5.h5")
        expect_ok("train --tokenizer OTHER", ["train", "--corpus", corpus, "--tokenizer", t5] + cfg + small + ["-o", bpe5])
        c5 = os.path.join(d, "c5.h5")
        expect_ok("prepare --vocab-from BPE model of OTHER",
                  ["prepare", corpus, "--len", "4", "--prompts", "10", "--vocab-from", bpe5, "-o", c5])
        for cmd, args in (("ablate", ["ablate", "--model", "M", "--corpus", "C", "-o", o]),
                          ("lens", ["lens", "--model", "M", "--prompts", "C"])):
            sub = lambda mm, cc: [mm if x == "M" else cc if x == "C" else x for x in args]
            refuse(f"{cmd}: a char model with a BPE corpus", sub(char, cbpe),
                   f"corpuslens {cmd}: {cbpe} is a GPT-2 BPE corpus; the model is char-level", o)
            refuse(f"{cmd}: a BPE model with a char corpus", sub(bpe, cchar),
                   f"corpuslens {cmd}: {cchar} is a char-level corpus; the model is GPT-2 BPE", o)
            refuse(f"{cmd}: a BPE corpus of another tokenizer", sub(bpe, c5),
                   f"corpuslens {cmd}: {c5}: its tokenizer", o)

        def hostile(name, edit, want):
            h = os.path.join(d, "hostile.h5")
            shutil.copy(cbpe, h)
            with h5py.File(h, "a") as f:
                edit(f)
            refuse(f"corpus-check: {name}", None, want, cmd=[TOOL, "corpus-check", h])

        def setv(path, idx, v):
            def e(f):
                a = f[path][()]
                a.reshape(-1)[idx] = v
                f[path][...] = a
            return e
        hostile("/substrings/tokens id = V", setv("substrings/tokens", 5, V), "outside the vocabulary")
        hostile("/substrings/next/token id = V", setv("substrings/next/token", 0, V), "invalid token")
        hostile("/text/tokens id = -1", setv("text/tokens", 3, -1), "outside the vocabulary")
        hostile("/holdout/tokens id = V", setv("holdout/tokens", 2, V), "outside the vocabulary")

        def attr(k, v):
            def e(f):
                f.attrs[k] = v
            return e
        hostile("vocab_size != tokenizer's V", attr("vocab_size", np.int64(V + 1)), "vocab_size")
        hostile("token_type 'wordpiece'", attr("token_type", "wordpiece"), "token_type")
        hostile("next_layout 'dense'", attr("next_layout", "dense"), "next_layout")

        def prompt_text(f):
            a = f["prompts/text"][()]
            a[0] = b"xyz"
            f["prompts/text"][...] = a
        hostile("/prompts/text not the decoded prompt", prompt_text, "/prompts/text")

        def merge(f):
            m = f["tokenizer/merges"][()]
            del f["tokenizer/merges"]
            m = list(m) + [b"zz qq"]
            f.create_dataset("tokenizer/merges", data=m, dtype=f["tokenizer/tokens"].dtype)
        hostile("/tokenizer/merges with an unknown token", merge, "zz")

        def no_tok(f):
            del f["tokenizer"]
        hostile("no /tokenizer", no_tok, "no /tokenizer group")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("BPE refusals", "OK" if not FAILS else f"FAILED: {FAILS}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

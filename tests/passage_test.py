#!/usr/bin/python3
"""Tests of `corpuslens explain --passage` (include/corpuslens/scan/passage.h, docs/passage.md)
and of the batched sketch search behind it (explain.c: sketch_batch).

usage: passage_test.py MODE
  search   what the search controls, bit for bit, on a small float16 index with a
           sketch: passage.h5 with the batched sketch equals the full pass over
           every row (CORPUSLENS_SKETCH=0) and the 2-rank run, byte for byte, for
           several thresholds, the soft kernel, top lists of 0, 7 and 300 (past
           the 256 seeded rows); its per-window datasets equal `explain
           --prompt-file` of the same windows (one batch, the same forward);
           each window SHORTER than L (a forward of its own in both runs) equals
           that window explained alone (`explain TEXT -o`, one prompt: the
           sketch's row-by-row path), every field; a prompt file of 9+ texts with
           the sketch equals the full pass. Negative control: a sketch with
           understated residual norms loses matches in the batched path.
  alone    every window of length L explained alone equals its position in the
           passage, every field. Exit 77 (skip, with the count) while the forward
           pass itself is batch-dependent (the model's probabilities differ: issue
           21 defect 7, nn/gemm.h), after checking every position whose forward
           agrees.
  cli      the presenters: the table has one row per position with the
           characters, next characters and H of passage.h5; the mean H printed =
           the attribute = numpy's mean of the non-empty H; the n-gram counts =
           the corpus text's next characters after each occurrence of the window;
           the lens H = numpy's Hellinger; --passage-file FILE and - (stdin) equal
           --passage; refusals: a character outside the vocabulary names its
           position (no output file), an empty passage and --passage with a TEXT
           are usage errors (exit 2), --at outside the passage.
Environment: CORPUSLENS (binary), TESTDATA (tests/data). Works in a temporary directory.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EXE = os.environ.get("CORPUSLENS", "corpuslens")
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
MPIRUN = shutil.which("mpirun") or "mpirun"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
FAIL = []
L = 6
# in the corpus, then new text, 42 characters: windows of 1..6 characters
PASSAGE = "First Citizen:\nBefore we zebra quux, speak"
WINDOW_KEYS = ["model/probs", "lens/probs", "approx", "hellinger", "blocks/counts", "blocks/n_matches",
               "blocks/near_threshold", "matches/substring", "matches/similarity", "soft/approx", "soft/hellinger",
               "ngram/counts", "ngram/hellinger", "prompts/text"]


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg)


def run(args, ranks=None, ok=True, env=None, stdin=None):
    cmd = ([MPIRUN, "-n", str(ranks), "--oversubscribe"] if ranks else []) + [EXE] + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, input=stdin)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("command failed: " + " ".join(cmd))
    return p


def setup(d):
    with open(os.path.join(TESTDATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        t = f.read()[:20000]
    txt = os.path.join(d, "small.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(t)
    m, c, ix = (os.path.join(d, x) for x in ("m.h5", "c.h5", "i.h5"))
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", txt, "--seed", "7",
         "-o", m])
    run(["prepare", txt, "--len", str(L), "--prompts", "5", "--seed", "3", "--vocab-from", m, "-o", c])
    run(["index", "--model", m, "--corpus", c, "--batch", "256", "--sketch-dim", "8", "-o", ix])
    return m, c, ix, t


def windows(text):
    return [text[max(0, i + 1 - L):i + 1] for i in range(len(text))]


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a.shape == b.shape and np.array_equal(a, b)


def pruned_fraction(stderr):
    """the per-block percentages of computed (position, row) pairs the passage run printed"""
    line = [x for x in stderr.splitlines() if "pairs computed per block" in x]
    return [float(x.rstrip("%")) for x in line[0].split("per block")[1].split()] if line else None


SETTINGS = [["--thresholds", "0.8,0.9", "--weights", "1,1", "--top", "7"],
            ["--thresholds", "0.9,0.95", "--weights", "1,2", "--top", "300"],
            ["--thresholds", "0.8,0.9", "--weights", "1,1", "--soft", "--soft-floor", "0.6", "--top", "3"],
            ["--thresholds", "0.97,0.99", "--weights", "1,1", "--top", "0"]]


def test_search():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, _ = setup(d)
        base = ["explain", "--index", ix, "--corpus", c, "--model", m, "--quiet"]
        wins = windows(PASSAGE)
        pf = os.path.join(d, "w.txt")
        with open(pf, "w", encoding="utf-8") as f:
            f.write("".join(escape(w) + "\n" for w in wins))
        pruned = 0
        for si, st in enumerate(SETTINGS):
            p1, p0, p2, pw = (os.path.join(d, f"p{si}{x}.h5") for x in "a0bw")
            r1 = run(base + st + ["--passage", PASSAGE, "-o", p1])
            run(base + st + ["--passage", PASSAGE, "-o", p0], env=dict(ENV, CORPUSLENS_SKETCH="0"))
            run(base + st + ["--passage", PASSAGE, "-o", p2], ranks=2)
            fr = pruned_fraction(r1.stderr)
            check(fr is not None, f"setting {si}: the batched sketch was not used: {r1.stderr[-300:]}")
            pruned += fr is not None and any(x < 100 for x in fr)
            b1 = open(p1, "rb").read()
            check(b1 == open(p0, "rb").read(), f"setting {si}: passage.h5 with the sketch differs from the full pass")
            check(b1 == open(p2, "rb").read(), f"setting {si}: passage.h5 on 2 ranks differs from 1 rank")
            # the same windows as one prompt file: the same batches, so every field equal
            run(base + st + ["--prompt-file", pf, "-o", pw])
            with h5py.File(p1) as f, h5py.File(pw) as g:
                for k in WINDOW_KEYS:
                    if k in f or k in g:
                        check(k in f and k in g and same(f[k][()], g[k][()]),
                              f"setting {si}: {k} differs from explain --prompt-file of the windows")
                # windows shorter than L: alone, every field (the one-prompt row-by-row sketch path)
                for i in range(L - 1):
                    pa = os.path.join(d, f"a{si}_{i}.h5")
                    run(base + st + ["-o", pa, "--", wins[i]])
                    with h5py.File(pa) as a:
                        for k in WINDOW_KEYS:
                            if k in a:
                                check(same(f[k][i], a[k][0]), f"setting {si}: position {i} ({wins[i]!r}): {k} "
                                      "differs from the window explained alone")
        check(pruned >= 2, f"the batched sketch skipped pairs in only {pruned} settings")
        # a prompt file of more than 8 texts: the batched sketch equals the full pass
        e1, e0 = os.path.join(d, "e1.h5"), os.path.join(d, "e0.h5")
        run(base + SETTINGS[0] + ["--prompt-file", pf, "-o", e1])
        run(base + SETTINGS[0] + ["--prompt-file", pf, "-o", e0], env=dict(ENV, CORPUSLENS_SKETCH="0"))
        check(open(e1, "rb").read() == open(e0, "rb").read(), "explain of the 42 windows as texts: the sketch differs from the full pass")
        # negative control: residual norms understated -> the batched path loses true matches
        bad = os.path.join(d, "bad.h5")
        shutil.copy(ix, bad)
        with h5py.File(bad, "a") as f:
            f["/sketch/resid"][...] = f["/sketch/resid"][()] * 0.3
            # a consistent checksum, so that the bound itself is what goes wrong (sketch.h)
            import hashlib
            h = hashlib.sha256()
            h.update(f["/sketch/proj"][()].astype("<f8").tobytes())
            h.update(f["/sketch/coords"][()].astype("<f2").tobytes())
            h.update(f["/sketch/resid"][()].astype("<f4").tobytes())
            del f["/sketch"].attrs["sha256"]
            f["/sketch"].attrs["sha256"] = np.bytes_(h.hexdigest())
        pb = os.path.join(d, "pbad.h5")
        run(["explain", "--index", bad, "--corpus", c, "--model", m, "--quiet", "--passage", PASSAGE, "-o", pb]
            + SETTINGS[0])
        with h5py.File(pb) as f, h5py.File(os.path.join(d, "p0a.h5")) as g:
            check(not np.array_equal(f["/blocks/counts"][()], g["/blocks/counts"][()]),
                  "negative control: a wrong sketch gave the same counts (the comparison cannot fail)")


def test_alone():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, _ = setup(d)
        base = ["explain", "--index", ix, "--corpus", c, "--model", m, "--quiet"] + SETTINGS[2]
        p = os.path.join(d, "p.h5")
        run(base + ["--passage", PASSAGE, "-o", p])
        wins = windows(PASSAGE)
        forward_differs = []
        with h5py.File(p) as f:
            for i in range(len(PASSAGE)):
                pa = os.path.join(d, f"a{i}.h5")
                run(base + ["-o", pa, "--", wins[i]])
                with h5py.File(pa) as a:
                    if not (same(f["model/probs"][i], a["model/probs"][0]) and
                            same(f["lens/probs"][i], a["lens/probs"][0])):
                        forward_differs.append(i)
                        continue
                    for k in WINDOW_KEYS:
                        if k in a:
                            check(same(f[k][i], a[k][0]),
                                  f"position {i} ({wins[i]!r}): {k} differs from the window explained alone")
        check(len(forward_differs) < len(PASSAGE), "no position has the forward pass of its window alone")
        if forward_differs and not FAIL:
            print(f"SKIP: the forward pass of {len(forward_differs)} of {len(PASSAGE)} windows differs from the "
                  f"window alone (positions {forward_differs[:8]}...): the forward pass depends on its batch (issue 21 "
                  "defect 7, nn/gemm.h); every other position equals its window alone in every field")
            sys.exit(77)


def test_cli():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix, text = setup(d)
        base = ["explain", "--index", ix, "--corpus", c, "--model", m] + SETTINGS[0]
        p = os.path.join(d, "p.h5")
        r = run(base + ["--passage", PASSAGE, "--at", "3,-1", "--show", "2", "-o", p])
        n = len(PASSAGE)
        with h5py.File(p) as f:
            check(f.attrs["format"] in ("corpuslens-passage", b"corpuslens-passage"), "format attribute")
            h = f["hellinger"][()]
            nx = f["passage/next"][()]
            toks = f["passage/tokens"][()]
            check(h.shape == (n,) and toks.shape == (n,), f"shapes {h.shape} {toks.shape} for {n} positions")
            ok = h[h != -1]
            mean = float(f.attrs["mean_hellinger"])
            check(len(ok) > 0 and abs(mean - ok.mean()) <= 1e-12, f"mean_hellinger {mean} != numpy {ok.mean()}")
            check(int(f.attrs["n_empty"]) == int((h == -1).sum()), "n_empty")
            check(int(nx[-1]) == -1 and np.array_equal(nx[:-1], toks[1:]), "/passage/next is not the next token")
            check(list(f["passage/win_start"][()]) == [max(0, i + 1 - L) for i in range(n)], "window starts")
            # the lens H from the stored probabilities
            mp, lp, lh = f["model/probs"][()].astype(np.float64), f["lens/probs"][()].astype(np.float64), \
                f["lens/hellinger"][()]

            def hell(a, b):
                a, b = np.maximum(a, 0), np.maximum(b, 0)
                return np.sqrt(((np.sqrt(a / a.sum()) - np.sqrt(b / b.sum())) ** 2).sum()) / np.sqrt(2)
            worst = max(abs(hell(lp[i, l], mp[i]) - lh[i, l]) for i in range(n) for l in range(lp.shape[1]))
            check(worst <= 1e-12, f"lens H differs from numpy's by {worst}")
            # n-gram: the next characters after each occurrence of the window in the corpus text
            found = 0
            for i in range(L - 1, n):
                w = PASSAGE[i + 1 - L:i + 1]
                occ = [k for k in range(len(text) - L + 1) if text.startswith(w, k)]
                cnt = f["ngram/counts"][i]
                sub = int(f["ngram/substring"][i])
                if not occ:
                    check(sub == -1 and cnt.sum() == 0 and f["ngram/hellinger"][i] == -1, f"position {i}: n-gram of "
                          f"{w!r} found but the text has no occurrence")
                    continue
                found += 1
                nexts = [text[k + L] for k in occ if k + L < len(text)]
                check(sub >= 0 and int(cnt.sum()) == len(nexts), f"position {i}: n-gram of {w!r} counts "
                      f"{int(cnt.sum())}, the text has {len(nexts)} followers")
            check(found >= 5, f"only {found} windows of the passage occur in the corpus")
        # the table: one row per position, its H and next character
        table = [x for x in r.stdout.splitlines() if x[:6].strip().isdigit() and "|" in x]
        check(len(table) == n, f"the table has {len(table)} rows for {n} positions")
        for i, row in enumerate(table[:n]):
            cols = [x.strip() for x in row.split("|")]
            hs = "empty" if h[i] == -1 else f"{h[i]:.6f}"
            check(cols[3] == hs, f"row {i}: H column {cols[3]!r}, passage.h5 {hs}")
            nxt = "-" if i == n - 1 else "'" + escape(PASSAGE[i + 1]) + "'"
            check(cols[0].split()[-1] == nxt or (nxt == "' '" and cols[0].endswith("' '")),
                  f"row {i}: next column in {cols[0]!r}, expected {nxt}")
        check(f"mean H over {len(ok)} positions: {mean:.6f}" in r.stdout, "the printed mean H is not the file's")
        check("position 3 (window of 4 characters)" in r.stdout and f"position {n - 1} (window of {L}" in r.stdout,
              "--at 3,-1 did not print those positions' details")
        # --passage-file FILE and stdin equal --passage
        pfile = os.path.join(d, "passage.txt")
        with open(pfile, "w", encoding="utf-8") as fo:
            fo.write(PASSAGE)
        pf1, pf2 = os.path.join(d, "pf1.h5"), os.path.join(d, "pf2.h5")
        run(base + ["--quiet", "--passage-file", pfile, "-o", pf1])
        run(base + ["--quiet", "--passage-file", "-", "-o", pf2], stdin=PASSAGE)
        for x in (pf1, pf2):
            check(open(x, "rb").read() == open(p, "rb").read(), f"{os.path.basename(x)} differs from --passage")
        # refusals
        e = os.path.join(d, "e.h5")
        q = run(base + ["--passage", "First \u00e9t\u00e9", "-o", e], ok=False)
        check(q.returncode not in (0, 2) and "position 6" in q.stderr and "not in the model's vocabulary" in q.stderr
              and len(q.stderr.strip().splitlines()) == 1 and not os.path.exists(e),
              f"unknown character: rc {q.returncode}: {q.stderr.strip()[-200:]}")
        for args, words in ((["--passage", ""], "the passage is empty"),
                            (["--passage-file", "-"], "the passage is empty"),
                            (["--passage", "abc", "def"], "exactly one"),
                            (["--at", "2", "abc"], "--at goes with")):
            q = run(base + args + ["-o", e], ok=False, stdin="")
            check(q.returncode == 2 and words in q.stderr and not os.path.exists(e),
                  f"{args}: expected a usage error with {words!r}, got rc {q.returncode}: {q.stderr.strip()[-200:]}")
        q = run(base + ["--passage", "First", "--at", "5", "-o", e], ok=False)
        check(q.returncode != 0 and "--at: position 5 is outside" in q.stderr and not os.path.exists(e),
              f"--at 5: rc {q.returncode}: {q.stderr.strip()[-200:]}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    tests = {"search": test_search, "alone": test_alone, "cli": test_cli}
    if mode not in tests:
        raise SystemExit(__doc__)
    tests[mode]()
    if FAIL:
        print(f"{len(FAIL)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""explain with a vocabulary larger than 4096 characters (issue 21, defect 3:
the logit lens was kept in a fixed double[4096], read past its end for V > 4096).
A text of 5000 distinct CJK characters; the logit lens's Hellinger distance that
explain prints per block must equal the one computed here from explain's own
-o output (lens and model probabilities), to the printed 3 decimals. Negative
control: the same comparison against a lens cut to 4096 entries (what the old
buffer held) disagrees, so the check can fail. V > 4096 gives sparse results
(scan/explain.h): the lens and model rows come from the same run with
CORPUSLENS_EXPLAIN_COUNTS=dense, and the sparse file's /lens/hellinger must
equal H computed from them (1e-12).
Also index --sketch-dim (defect 8): 32 means 32 dimensions, not the default.
Environment: CORPUSLENS (binary)."""
import os
import random
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EXE = os.environ.get("CORPUSLENS", "corpuslens")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", CORPUSLENS_HASH_CACHE="0")
FAIL = []


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg, flush=True)


def run(args, env=None):
    p = subprocess.run([EXE] + args, capture_output=True, text=True, env=env or ENV)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("command failed (rc %d): %s" % (p.returncode, " ".join(args)))
    return p


def hellinger(p, q):
    p = np.maximum(p.astype(np.float64), 0)
    q = np.maximum(q.astype(np.float64), 0)
    p, q = p / p.sum(), q / q.sum()
    return min(1.0, float(np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum()) / np.sqrt(2)))


def main():
    V = 5000
    chars = [chr(0x4E00 + i) for i in range(V)]
    rng = random.Random(5)
    seq = chars[:] + [rng.choice(chars[:300]) for _ in range(6000)]
    rng.shuffle(seq)
    with tempfile.TemporaryDirectory() as d:
        txt, m, c, ix, e = (os.path.join(d, x) for x in ("cjk.txt", "m.h5", "c.h5", "i.h5", "e.h5"))
        with open(txt, "w", encoding="utf-8") as f:
            f.write("".join(seq))
        run(["init", "--config", "n_layer=2,n_embd=16,n_head=2,block_size=8", "--vocab-from", txt, "--seed", "3",
             "-o", m])
        run(["prepare", txt, "--len", "3", "--prompts", "4", "--seed", "1", "--vocab-from", m, "-o", c])
        run(["index", "--model", m, "--corpus", c, "--batch", "512", "--sketch-dim", "0", "-o", ix])
        with h5py.File(ix) as f:
            check(int(f.attrs["vocab_size"]) == V, f"vocab_size {f.attrs['vocab_size']}, expected {V}")
        # prompts whose characters include ids past 4096
        texts = ["".join(seq[10:13]), chars[4999] + chars[4500] + chars[1]]
        args = ["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", "0.5,0.6", "--weights", "1,1"]
        p = run(args + ["-o", e] + texts)
        ed = os.path.join(d, "ed.h5")  # the dense rows of the same texts
        pd_ = run(args + ["-o", ed] + texts, env=dict(ENV, CORPUSLENS_EXPLAIN_COUNTS="dense"))
        check(p.stdout == pd_.stdout, "sparse results print what the dense ones print")
        lines = [x for x in p.stdout.splitlines() if "logit lens:" in x]
        check(len(lines) == len(texts), f"{len(lines)} logit-lens lines for {len(texts)} texts: {p.stdout[-500:]}")
        with h5py.File(e) as f:
            check("/lens/probs" not in f and "/model/probs" not in f, "V > 4096: sparse results, no [P, V] arrays")
            lh = f["/lens/hellinger"][()]
        with h5py.File(ed) as f:
            lens, model = f["/lens/probs"][()], f["/model/probs"][()]
        dl = max(abs(float(lh[i, b]) - hellinger(lens[i, b], model[i]))
                 for i in range(lens.shape[0]) for b in range(lens.shape[1]))
        check(dl <= 1e-12, f"/lens/hellinger equals H of the dense rows ({dl:.3g})")
        check(lens.shape[2] == V, f"lens has {lens.shape[2]} entries, expected {V}")
        n_ok = n_cut_bad = 0
        for i, line in enumerate(lines):
            printed = [float(x) for x in re.findall(r"block \d+(?: \(= the model\))? H ([0-9.]+)", line)]
            check(len(printed) == lens.shape[1], f"text {i}: {len(printed)} blocks in {line!r}")
            for b, h in enumerate(printed):
                ref = hellinger(lens[i, b], model[i])
                cut = np.concatenate([lens[i, b, :4096], np.zeros(V - 4096)])
                ref_cut = hellinger(cut, model[i])
                good = abs(h - ref) <= 5.001e-4
                check(good, f"text {i} block {b}: printed H {h} but the lens gives {ref:.6f}")
                n_ok += good
                n_cut_bad += not (abs(h - ref_cut) <= 5.001e-4)
        check(n_ok > 0, "no logit-lens value compared")
        check(n_cut_bad > 0, "negative control: a lens cut to 4096 entries gives the same printed H")
        # defect 8: --sketch-dim 32 on n_embd 32 is 32 dimensions; no option is the default min(32, n_embd / 4)
        txt2 = os.path.join(d, "ab.txt")
        with open(txt2, "w", encoding="utf-8") as f:
            f.write("".join(rng.choice("abcdefgh ") for _ in range(3000)))
        m2, c2, i1, i2 = (os.path.join(d, x) for x in ("m2.h5", "c2.h5", "k32.h5", "kdef.h5"))
        run(["init", "--config", "n_layer=1,n_embd=32,n_head=4,block_size=8", "--vocab-from", txt2, "--seed", "3",
             "-o", m2])
        run(["prepare", txt2, "--len", "4", "--prompts", "4", "--seed", "1", "--vocab-from", m2, "-o", c2])
        run(["index", "--model", m2, "--corpus", c2, "--sketch-dim", "32", "-o", i1])
        run(["index", "--model", m2, "--corpus", c2, "-o", i2])
        with h5py.File(i1) as f1, h5py.File(i2) as f2:
            k1, k2 = int(f1["/sketch"].attrs["k"]), int(f2["/sketch"].attrs["k"])
        check(k1 == 32, f"--sketch-dim 32 wrote a sketch of {k1} dimensions")
        check(k2 == 8, f"the default sketch of n_embd 32 has {k2} dimensions, expected 8")
    if FAIL:
        print(f"{len(FAIL)} failure(s)")
        return 1
    print("explain_vocab: logit lens for V = 5000 and --sketch-dim 32 as given")
    return 0


if __name__ == "__main__":
    sys.exit(main())

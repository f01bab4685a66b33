"""corpuslens similar against a naive numpy recomputation on a synthetic
scan.h5 written here by h5py (layout: include/corpuslens/h5/h5schema.h), plus its
refusals. Needs CORPUSLENS and /usr/bin/python3 with h5py and numpy."""
import math
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nanstrict  # noqa: E402

CL = os.environ["CORPUSLENS"]
FAILS = []


def run(*args, ok=True):
    p = subprocess.run([CL, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(args)}\n{p.stdout}{p.stderr}")
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 3


def write_scan(path, corpus, rng, Lb=3, P=6, complete=1, match_thr=(0.8, 0.75, 0.9), prefilter=0.7, cap=0):
    with h5py.File(corpus, "r") as f:
        N = f["substrings/tokens"].shape[0]
        L = f["substrings/tokens"].shape[1]
        vocab = f["vocab"][()]
        pidx = f["prompts/index"][()][:P]
        ptext = f["prompts/text"][()][:P]
    V = len(vocab)
    subs, sims, index = [], [], np.zeros((P, Lb, 2), np.int64)
    for p in range(P):
        for b in range(Lb):
            k = rng.integers(0, 12)
            cand = rng.choice(N, size=k, replace=False)
            s = rng.uniform(match_thr[b], 1.0, size=k).astype(np.float32)
            cand = [c for c in cand if c != pidx[p]]
            s = s[:len(cand)]
            if (p + b) % 2 == 0:  # the prompt itself, sometimes stored, sometimes not
                cand = list(cand) + [pidx[p]]
                s = np.append(s, np.float32(0.99999))
            order = sorted(range(len(cand)), key=lambda i: (-s[i], cand[i]))
            index[p, b] = (len(subs), len(order))
            subs += [int(cand[i]) for i in order]
            sims += [float(s[i]) for i in order]
    probs = rng.dirichlet(np.ones(V) * 0.3, size=P).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "corpuslens-scan"
        f.attrs["format_version"] = np.int32(1)
        if complete is not None:
            f.attrs["complete"] = np.int32(complete)
        for k, v in dict(n_layer=Lb, vocab_size=V, n_prompts=P, n_substrings=N, L=L, match_cap=cap).items():
            f.attrs[k] = np.int64(v)
        f.attrs["prefilter"] = float(prefilter)
        f.attrs["match_thresholds"] = np.array(match_thr, np.float64)
        f.attrs["hook"] = "mlp_out"
        f.create_dataset("vocab", data=vocab)
        f.create_dataset("prompts/index", data=pidx.astype(np.int64))
        f.create_dataset("prompts/text", data=ptext)
        f.create_dataset("model/probs", data=probs)
        f.create_dataset("matches/index", data=index)
        f.create_dataset("matches/substring", data=np.array(subs, np.int64))
        f.create_dataset("matches/similarity", data=np.array(sims, np.float32))
    return dict(N=N, V=V, pidx=pidx, ptext=ptext, probs=probs, index=index, subs=np.array(subs),
                sims=np.array(sims, np.float32))


def naive(scan, corpus, p, thr, w):
    with h5py.File(corpus, "r") as f:
        indptr, tok, cnt = (f["substrings/next/" + k][()] for k in ("indptr", "token", "count"))
    counts = np.zeros(scan["V"])
    for b, (t, wb) in enumerate(zip(thr, w)):
        if wb == 0:
            continue
        s0, n = scan["index"][p, b]
        chosen = {int(i) for i, s in zip(scan["subs"][s0:s0 + n], scan["sims"][s0:s0 + n]) if s > t}
        chosen.add(int(scan["pidx"][p]))
        for i in chosen:
            for j in range(indptr[i], indptr[i + 1]):
                counts[tok[j]] += wb * cnt[j]
    q = counts / counts.sum()
    m = scan["probs"][p].astype(np.float64)
    H = math.sqrt(((np.sqrt(m) - np.sqrt(q)) ** 2).sum() / 2)
    return q, H


def parse(out):
    H = float(re.search(r"Hellinger distance: ([0-9.]+)", out).group(1))
    rows = re.findall(r"^'(.*?)' ([0-9.]+)\s+'(.*?)' ([0-9.]+)$", out, re.M)
    return H, rows


def main():
    nanstrict.control()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as d:
        txt = os.path.join(d, "c.txt")
        open(txt, "w").write(TEXT)
        corpus, scan = os.path.join(d, "c.h5"), os.path.join(d, "scan.h5")
        run("prepare", txt, "--len", "6", "--prompts", "8", "--seed", "3", "-o", corpus)
        sc = write_scan(scan, corpus, rng)
        # one block, by index and by text
        for p in range(6):
            for b, t in ((0, 0.8), (1, 0.9), (2, 0.95)):
                out = run("similar", scan, "--corpus", corpus, "--prompt-index", str(p), "--block", str(b),
                          "--threshold", str(t), "--top", "65").stdout
                H, rows = parse(out)
                w = [0.0] * 3
                w[b] = 1.0
                thr = [t] * 3
                q, Href = naive(sc, corpus, p, thr, w)
                check(abs(H - Href) < 2e-6, f"prompt {p} block {b} > {t}: H {H:.6f} vs numpy {Href:.6f}")
                approx = {r[2]: float(r[3]) for r in rows}
                top = sorted(approx.values(), reverse=True)[:3]
                ref = sorted(q, reverse=True)[:3]
                check(np.allclose(top, ref[:len(top)], atol=1e-4), f"prompt {p} block {b}: top approximation probabilities")
        text = bytes(sc["ptext"][2]).rstrip(b"\0").decode()
        a = run("similar", scan, "--corpus", corpus, "--prompt", text, "--block", "1", "--threshold", "0.8").stdout
        b = run("similar", scan, "--corpus", corpus, "--prompt-index", "2", "--block", "1", "--threshold", "0.8").stdout
        check(a == b, "--prompt TEXT finds the same prompt as --prompt-index")
        # all blocks with given thresholds and weights
        thr, w = [0.85, 0.8, 0.92], [0.5, 2.0, 1.0]
        for p in range(6):
            out = run("similar", scan, "--corpus", corpus, "--prompt-index", str(p), "--blocks", "all",
                      "--thresholds", ",".join(map(str, thr)), "--weights", ",".join(map(str, w))).stdout
            H, _ = parse(out)
            _, Href = naive(sc, corpus, p, thr, w)
            check(abs(H - Href) < 2e-6, f"prompt {p} all blocks: H {H:.6f} vs numpy {Href:.6f}")
        # refusals
        def refuse(args, pattern, what):
            p = run(*args, ok=False)
            check(p.returncode != 0 and re.search(pattern, p.stderr), f"refuses {what}: {p.stderr.strip()[:160]}")
        base = ["similar", scan, "--corpus", corpus, "--prompt-index", "0"]
        refuse(base + ["--block", "0", "--threshold", "0.7"], r"not > the scan's prefilter 0\.7", "threshold = prefilter")
        refuse(base + ["--block", "0", "--threshold", "0.5"], r"not > the scan's prefilter", "threshold < prefilter")
        refuse(base + ["--block", "2", "--threshold", "0.85"], r"below 0\.9, above which the scan stored", "threshold below match_thresholds")
        refuse(base + ["--block", "3", "--threshold", "0.95"], r"blocks 0\.\.2", "block out of range")
        refuse(["similar", scan, "--corpus", corpus, "--prompt", "zzzzzz", "--block", "0", "--threshold", "0.9"],
               r"not among the 6 prompts", "unknown prompt text")
        refuse(base + ["--blocks", "all"], r"paper's thresholds and weights are for 6", "paper weights on 3 blocks")
        refuse(base + ["--blocks", "all", "--thresholds", "0.9,0.9", "--weights", "1,1,1"], r"--thresholds", "short list")
        refuse(base[:-1] + ["9", "--block", "0", "--threshold", "0.9"], r"prompts 0\.\.5", "prompt index out of range")
        refuse(base + ["--block", "0"], r"--threshold", "missing threshold")
        inc = os.path.join(d, "inc.h5")
        write_scan(inc, corpus, rng, complete=0)
        refuse(["similar", inc, "--corpus", corpus, "--prompt-index", "0", "--block", "0", "--threshold", "0.9"],
               r"incomplete", "incomplete scan")
        other = os.path.join(d, "o.h5")
        run("prepare", txt, "--len", "5", "--prompts", "8", "-o", other)
        refuse(base[:2] + ["--corpus", other, "--prompt-index", "0", "--block", "0", "--threshold", "0.9"],
               r"not the scan's corpus", "another corpus")
        p = run("similar", "--help")
        check(p.returncode == 0 and "usage: corpuslens similar" in p.stdout, "--help")
    print("FAILED: %d" % len(FAILS) if FAILS else "all ok")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""explain under mpirun reads a share of the corpus (issue 26 item 1).

On R > 1 ranks `explain` leaves the next-token counts in corpus.h5
(cl_corpus_open_rows): each rank reads the counts of its own index rows (the
dense search), rank 0 those of the matches gathered (the sparse counts), of
the strings it prints and of the texts' n-grams. Checked here:
  - the same stdout (texts, top lists with their followers, baselines,
    summary with the unigram) and the same explain.h5 bytes on 1, 2 and 4
    ranks, for the dense counts, the sparse counts (CORPUSLENS_EXPLAIN_COUNTS=csr)
    and --passage;
  - with CORPUSLENS_CORPUS_STATS=1, every rank of 2 and 4 reads fewer
    next-token entries than the file holds and at most its rows' share plus
    rank 0's printed rows; the ranks together read every row. Negative
    control: one process (the counts loaded whole) fails the same check;
  - a corrupt count in a row that only the last rank reads (dense) or that
    only rank 0 reads (a match, sparse counts) fails every rank: nonzero exit,
    one message naming /substrings/next, no output file.
Environment: CORPUSLENS (binary). Works in a temporary directory.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EXE = os.environ.get("CORPUSLENS", "corpuslens")
MPIRUN = shutil.which("mpirun") or "mpirun"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
FAIL = []
S = 64


def check(cond, msg):
    print(("ok    " if cond else "FAIL  ") + msg)
    if not cond:
        FAIL.append(msg)


def run(args, R=1, env=None):
    cmd = ([MPIRUN, "-n", str(R), "--oversubscribe", "-x", "CORPUSLENS_CORPUS_STATS", "-x",
            "CORPUSLENS_EXPLAIN_COUNTS"] if R > 1 else []) + [EXE] + args
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(ENV, **(env or {})), timeout=300)


def must(p, what):
    if p.returncode != 0:
        print(p.stdout[-2000:], p.stderr[-2000:])
        raise SystemExit(f"{what} failed ({p.returncode})")
    return p


def reads(stderr, R):
    """{rank: (rows, entries)}, N, nnz from the CORPUSLENS_CORPUS_STATS lines"""
    out, N, nnz = {}, None, None
    for m in re.finditer(r"explain: rank (\d+) of (\d+) read (\d+) substring rows of (\d+), (\d+) next-token "
                         r"entries of (\d+)", stderr):
        if int(m.group(2)) == R:
            out[int(m.group(1))] = (int(m.group(3)), int(m.group(5)))
            N, nnz = int(m.group(4)), int(m.group(6))
    return out, N, nnz


def main():
    d = tempfile.mkdtemp(prefix="explain_shard_reads.")
    try:
        os.chdir(d)
        must(run(["demo-corpus", "--chars", "30000", "-o", "demo.txt"]), "demo-corpus")
        must(run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", "demo.txt",
                  "--seed", "1", "-o", "m.h5"]), "init")
        must(run(["prepare", "demo.txt", "--len", "6", "--prompts", "20", "--seed", "1", "--vocab-from", "m.h5",
                  "-o", "c.h5"]), "prepare")
        must(run(["index", "--model", "m.h5", "--corpus", "c.h5", "--batch", str(S), "-o", "i.h5"]), "index")
        texts = ["ALICE: the small", "BOB: does the", "the red ball", "yes, the cat", "q"]
        with open("p.txt", "w") as f:
            f.write("\n".join(texts) + "\n")
        base = ["explain", "--index", "i.h5", "--corpus", "c.h5", "--model", "m.h5", "--thresholds", "0.6,0.7",
                "--weights", "1,2", "--top", "5", "--show", "5"]
        # 1, 2, 4 ranks: the same stdout and explain.h5 bytes
        for mode, extra, env in (("dense", ["--prompt-file", "p.txt", "--soft"], {}),
                                 ("sparse", ["--prompt-file", "p.txt", "--soft"], {"CORPUSLENS_EXPLAIN_COUNTS": "csr"}),
                                 ("passage", ["--passage", "ALICE: the small cat sees a red ball."], {})):
            outs = {}
            for R in (1, 2, 4):
                o = f"e_{mode}_{R}.h5"
                p = must(run(base + extra + ["-o", o], R, dict(env, CORPUSLENS_CORPUS_STATS="1")), f"{mode} on {R}")
                outs[R] = (p.stdout, open(o, "rb").read(), p.stderr)
            check(len(outs[1][0]) > 200 and outs[1][0] == outs[2][0] == outs[4][0],
                  f"{mode}: stdout equal on 1, 2, 4 ranks ({len(outs[1][0])} bytes)")
            check(outs[1][1] == outs[2][1] == outs[4][1], f"{mode}: explain.h5 bytes equal on 1, 2, 4 ranks")
            if mode != "dense":
                continue
            check("next:" in outs[1][0] and "unigram" in outs[1][0], "dense: stdout shows followers and the unigram")
            # the reads per rank
            with h5py.File("i.h5") as f:
                nrows = f["/substring"].shape[0]
            for R in (1, 2, 4):
                rd, N, nnz = reads(outs[R][2], R)
                if sorted(rd) != list(range(R)):
                    check(False, f"{R} ranks: stats lines from ranks {sorted(rd)}")
                    continue
                nch = (nrows + S - 1) // S
                share = -(-nch // R) * S + len(texts) * (1 + 2 * 5)  # rank 0 also prints
                good = all(rd[r][1] < nnz and rd[r][0] <= share for r in range(R)) and \
                    sum(rd[r][0] for r in range(R)) >= N
                desc = f"rows, entries per rank {[rd[r] for r in range(R)]} (N {N}, nnz {nnz}, share {share})"
                if R == 1:
                    check(not good, f"negative control: one process (counts whole) fails the check: {desc}")
                else:
                    check(good, f"{R} ranks: each rank read its share of the counts: {desc}")
        # a corrupt count read by one rank only
        with h5py.File("i.h5") as f:
            sub = f["/substring"][()]
        with h5py.File("e_dense_1.h5") as f:
            top = f["/matches/substring"][()]  # [P, Lh, K]
            nm = f["/blocks/n_matches"][()]
        N = len(sub)
        nch = (N + S - 1) // S
        last0 = (nch * 3 // 4) * S  # the first index row of rank 3 of 4
        row_of = {int(s): i for i, s in enumerate(sub)}
        # a matched substring (top list, above the threshold) whose index row is rank 3's
        cand = [int(top[p, b, k]) for p in range(top.shape[0]) for b in range(top.shape[1])
                for k in range(min(nm[p, b], top.shape[2])) if top[p, b, k] >= 0 and row_of[int(top[p, b, k])] >= last0]
        check(len(cand) > 0, f"a matched substring among rank 3's rows ({len(cand)})")
        if cand:
            bad_sub = cand[0]
            shutil.copyfile("c.h5", "bad.h5")
            with h5py.File("bad.h5", "r+") as f:
                ip = f["/substrings/next/indptr"]
                e = int(ip[bad_sub])
                if int(ip[bad_sub + 1]) > e:
                    f["/substrings/next/count"][e] = -5
            # the index names the corpus's SHA-256: a copy of it names the corrupt file's (as if built from it)
            import hashlib
            shutil.copyfile("i.h5", "ibad.h5")
            with h5py.File("ibad.h5", "r+") as f:
                f.attrs["corpus_h5_sha256"] = hashlib.sha256(open("bad.h5", "rb").read()).hexdigest()
            badargs = [a if a not in ("i.h5", "c.h5") else {"i.h5": "ibad.h5", "c.h5": "bad.h5"}[a] for a in base]
            for mode, env in (("dense", {}), ("sparse", {"CORPUSLENS_EXPLAIN_COUNTS": "csr"})):
                o = f"bad_{mode}.h5"
                p = run(badargs + ["--prompt-file", "p.txt", "--quiet", "-o", o], 4, env)
                lines = [l for l in p.stderr.splitlines() if l.startswith("corpuslens")]
                good = (p.returncode not in (0,) and p.returncode < 128 and not os.path.exists(o) and
                        "/substrings/next" in p.stderr and "HDF5-DIAG" not in p.stderr and
                        "Sanitizer" not in p.stderr and len(lines) == 1)
                check(good, f"{mode}: a corrupt count on one rank fails all 4 (exit {p.returncode}): "
                      f"{lines[0][:150] if lines else p.stderr[-300:]}")
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(d, ignore_errors=True)
    print("all passed" if not FAIL else f"{len(FAIL)} failed")
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()

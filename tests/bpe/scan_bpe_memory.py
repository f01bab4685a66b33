#!/usr/bin/python3
"""scan's prompt lens buffer does not grow with the shard size times V
(issue 25 item 5, GPT-2 shapes).

scan computes the logit lens of the prompt rows of a trie forward; it held
their logits for a whole shard at once, [S, n_layer, V] floats: at GPT-2's
shapes (S = 2048, 12 x 50257) 4.9 GB per rank whatever the prompt count, and
as many bytes touched when a shard or prompt-trie piece holds many prompts.
It now holds at most 64 MiB of them (CORPUSLENS_SCAN_LENS_ROWS sets the rows).

A tiny tokenizer with 30,000 extra byte-pair merges (V ~ 30,000, no npm), a
BPE model of 8 layers x 16, a corpus of ~1,500 4-token n-grams. Under an
address-space limit of 1.5 GiB (RLIMIT_AS): a scan with shards of 64
(control: the limit leaves room for a scan) and one with a single shard of
every substring both complete (before the fix, the second asked for
N x 8 x V x 4 B ~ 1.4 GB more and failed), with the same lens and model
probabilities (1e-6, NaN-strict). The address-space limit does not combine
with AddressSanitizer's shadow memory, so a sanitized build skips those two
runs. In every build: CORPUSLENS_SCAN_LENS_ROWS=1 and =7 give the same lens
as the default (the chunked path), 1 and 2 ranks too; 0 and 'x' are refused
with one message. Negative control: a changed lens value fails the
comparison. Environment: CORPUSLENS, TESTDATA."""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import scan_test as st  # noqa: E402
from scan_test import check, run  # noqa: E402
from tiny_tokenizer import B2U, MERGES, write_tokenizer  # noqa: E402

LIMIT = 3 << 29  # 1.5 GiB of address space
NL = 8


def sanitized(exe):
    p = subprocess.run(["ldd", exe], capture_output=True, text=True)
    return "libasan" in p.stdout or "libubsan" in p.stdout


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def scan_limited(args):
    return subprocess.run([st.EXE] + args, capture_output=True, text=True, env=st.ENV, preexec_fn=limited)


def lens(path):
    with h5py.File(path, "r") as f:
        # a csr scan stores each block's lens as its H to the model (/lens/hellinger [P, n_layer])
        lens = f["/lens/hellinger"] if "/lens/hellinger" in f else f["/lens/probs"]
        if "/model/support/prob" in f:  # csr: the model's probabilities on each prompt's support
            probs = np.concatenate([f["/model/support/" + k][()].astype(np.float64) for k in ("indptr", "token", "prob")])
        else:
            probs = f["/model/probs"][()].astype(np.float64)
        return lens[()].astype(np.float64), probs


def same(a, b, what, tol=1e-6):
    d = float(np.abs(a[0] - b[0]).max()) if a[0].shape == b[0].shape else float("nan")
    e = float(np.abs(a[1] - b[1]).max()) if a[1].shape == b[1].shape else float("nan")
    ok = d <= tol and e <= tol  # NaN-strict
    return ok, f"{what}: lens max|diff| {d:.3g}, model probs {e:.3g} (tol {tol})"


def main():
    d = tempfile.mkdtemp(prefix="cl_scanbpemem_")
    tok = os.path.join(d, "tok")
    chars = [B2U[b] for b in range(256)]
    extra = [f"{a} {b}" for a in chars for b in chars if a + b not in {m.replace(" ", "") for m in MERGES}][:30000]
    V = write_tokenizer(tok, extra=extra)
    with open(os.path.join(st.TESTDATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()[:4000]
    txt = os.path.join(d, "t.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(text)
    m, c = os.path.join(d, "m.h5"), os.path.join(d, "c.h5")
    run(["train", "--corpus", txt, "--tokenizer", tok, "--config", f"n_layer={NL},n_head=2,n_embd=16,block_size=8",
         "--steps", "1", "--batch", "1", "--ctx", "4", "--eval-batches", "1", "--seed", "5", "-o", m])
    run(["prepare", txt, "--len", "4", "--prompts", "8", "--seed", "3", "--vocab-from", m, "-o", c])
    with h5py.File(c, "r") as f:
        N = int(f.attrs["n_substrings"])
    big = N * NL * V * 4
    print(f"V {V}, N {N}: a whole-shard lens buffer would be {big / 2**20:.0f} MiB; limit {LIMIT / 2**20:.0f} MiB")
    check(big > LIMIT * 0.8, f"the old buffer ({big} B) is near the limit or above it: the test can fail")
    scan = ["scan", "--model", m, "--corpus", c, "--prefilter", "0.9", "--bin-width", "0.05"]
    out = {k: os.path.join(d, f"s_{k}.h5") for k in ("small", "whole", "r1", "r7", "r2")}
    if sanitized(st.EXE):
        print("sanitized build: the RLIMIT_AS runs are skipped (ASan's shadow memory needs the address space)")
        run(scan + ["--batch", "64", "-o", out["small"]])
        run(scan + ["--batch", str(N), "-o", out["whole"]])
    else:
        p = scan_limited(scan + ["--batch", "64", "-o", out["small"]])
        check(p.returncode == 0, f"control: shards of 64 fit {LIMIT >> 20} MiB of address space (rc {p.returncode}: "
                                 f"{p.stderr.strip()[-300:]})")
        p = scan_limited(scan + ["--batch", str(N), "-o", out["whole"]])
        check(p.returncode == 0, f"one shard of all {N} substrings fits {LIMIT >> 20} MiB of address space "
                                 f"(rc {p.returncode}: {p.stderr.strip()[-300:]})")
    if not (os.path.exists(out["small"]) and os.path.exists(out["whole"])):
        check(False, "both scans wrote their files")
    else:
        ref = lens(out["small"])
        ok, msg = same(ref, lens(out["whole"]), "shards of 64 vs one shard")
        check(ok, msg)
        print(msg)
        for k, rows in (("r1", "1"), ("r7", "7")):
            run(scan + ["--batch", str(N), "-o", out[k]], env=dict(st.ENV, CORPUSLENS_SCAN_LENS_ROWS=rows))
            ok, msg = same(ref, lens(out[k]), f"CORPUSLENS_SCAN_LENS_ROWS={rows}")
            check(ok, msg)
            print(msg)
        run(scan + ["--batch", "97", "-o", out["r2"]], ranks=2, env=dict(st.ENV, CORPUSLENS_SCAN_LENS_ROWS="5"))
        ok, msg = same(ref, lens(out["r2"]), "2 ranks, CORPUSLENS_SCAN_LENS_ROWS=5")
        check(ok, msg)
        print(msg)
        bad = lens(out["r1"])
        bad[0].flat[bad[0].size // 2] += 1e-3
        ok, msg = same(ref, bad, "negative control (one lens value changed)")
        check(not ok, "the comparison catches a changed lens value: " + msg)
    for v in ("0", "x"):
        o = os.path.join(d, f"bad{v}.h5")
        p = run(scan + ["--batch", "64", "-o", o], ok=False, env=dict(st.ENV, CORPUSLENS_SCAN_LENS_ROWS=v))
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        check(p.returncode != 0 and not os.path.exists(o) and any("CORPUSLENS_SCAN_LENS_ROWS" in ln for ln in lines),
              f"CORPUSLENS_SCAN_LENS_ROWS={v} refused (rc {p.returncode}): {p.stderr.strip()}")
    shutil.rmtree(d, ignore_errors=True)
    if st.FAIL:
        print(f"{len(st.FAIL)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

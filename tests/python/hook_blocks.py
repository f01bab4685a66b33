#!/usr/bin/python3
"""Every hook that scan offers goes through reduce, tune, similar and the report.

A 3-block model on a demo-corpus text is scanned with every block
(resid_post, resid_pre), one block (blocks.2.hook_resid_post) and the embedding
(embed). Checks:
  - the one-block scan's attributes (n_hook_blocks 1, hook_first_block) and its
    /freq/counts equal the all-block scan's block 2 (embed: resid_pre block 0),
    bitwise (the same forward computation);
  - reduce of the one-block scan (threshold t, weight 1) gives the same
    Hellinger distances as reduce of the all-block scan with weight only on
    block 2 (tolerance 1e-12, NaN-strict), and logit-lens baselines for all 3
    blocks; report.md names block 2; report.h5 has hook_first_block;
  - tune writes one threshold and one weight for a one-block scan;
  - similar --block 2 prints the same as on the all-block scan; --block 0 on
    the one-block scan is refused naming the blocks it has;
  - negative control: the NaN-strict comparison fails on a NaN.
Env: CORPUSLENS. Runs in a temporary directory.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nanstrict  # noqa: E402

EXE = os.environ.get("CORPUSLENS", "corpuslens")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
FAIL = []


def check(cond, msg):
    print(("ok    " if cond else "FAIL  ") + msg)
    if not cond:
        FAIL.append(msg)


def run(args, ok=True):
    p = subprocess.run([EXE] + args, capture_output=True, text=True, env=ENV)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("command failed: corpuslens " + " ".join(args))
    return p


def close(a, b, tol):
    return nanstrict.within(nanstrict.max_abs_diff(a, b), tol)


def main():
    # negative control of the comparisons
    nanstrict.control()
    check(not close([0.1, float("nan")], [0.1, 0.2], 1e-12), "control: a NaN fails the comparison")
    check(not close([0.1], [0.1 + 1e-6], 1e-12), "control: a difference above the tolerance fails")
    d = tempfile.mkdtemp(prefix="hook_blocks_")
    j = lambda n: os.path.join(d, n)
    run(["demo-corpus", "--chars", "20000", "-o", j("demo.txt")])
    run(["init", "--config", "n_layer=3,n_embd=32,n_head=4,block_size=16", "--vocab-from", j("demo.txt"),
         "--seed", "5", "-o", j("m.h5")])
    run(["prepare", j("demo.txt"), "--len", "6", "--prompts", "16", "--seed", "2", "--vocab-from", j("m.h5"),
         "-o", j("c.h5")])
    common = ["--model", j("m.h5"), "--corpus", j("c.h5"), "--prefilter", "0.5", "--bin-width", "0.05",
              "--match-cap", "0"]
    scans = {"all": "resid_post", "b2": "blocks.2.hook_resid_post", "pre": "resid_pre", "emb": "embed"}
    for k, hook in scans.items():
        run(["scan"] + common + ["--hook", hook, "-o", j(k + ".h5")])
    F = {k: h5py.File(j(k + ".h5"), "r") for k in scans}
    for k, nb, first in (("all", 3, 0), ("b2", 1, 2), ("pre", 3, 0), ("emb", 1, 0)):
        a = F[k].attrs
        check(int(a["n_hook_blocks"]) == nb and int(a["hook_first_block"]) == first,
              f"{k}: n_hook_blocks {int(a['n_hook_blocks'])} (want {nb}), hook_first_block "
              f"{int(a['hook_first_block'])} (want {first})")
        check(F[k]["/lens/probs"].shape[1] == 3, f"{k}: /lens/probs has the model's 3 blocks")
    check(np.array_equal(F["b2"]["/freq/counts"][:, 0], F["all"]["/freq/counts"][:, 2]),
          "blocks.2 scan counts == all-block scan's block 2")
    check(np.array_equal(F["emb"]["/freq/counts"][:, 0], F["pre"]["/freq/counts"][:, 0]),
          "embed scan counts == resid_pre scan's block 0")
    check(F["b2"]["/freq/counts"][...].sum() > 0, "the one-block scan counted something")

    t = "0.8"
    run(["reduce", j("all.h5"), "--thresholds", f"{t},{t},{t}", "--weights", "0,0,1", "-o", j("r_all")])
    run(["reduce", j("b2.h5"), "--thresholds", t, "--weights", "1", "-o", j("r_b2")])
    run(["reduce", j("pre.h5"), "--thresholds", f"{t},{t},{t}", "--weights", "1,0,0", "-o", j("r_pre")])
    run(["reduce", j("emb.h5"), "--thresholds", t, "--weights", "1", "-o", j("r_emb")])
    R = {k: h5py.File(j(f"r_{k}/report.h5"), "r") for k in ("all", "b2", "pre", "emb")}
    check(close(R["b2"]["/hellinger"][...], R["all"]["/hellinger"][...], 1e-12),
          "reduce: one-block H == all-block H with weight only on block 2")
    check(close(R["emb"]["/hellinger"][...], R["pre"]["/hellinger"][...], 1e-12),
          "reduce: embed H == resid_pre H with weight only on block 0")
    check(close(R["b2"]["/baselines/block_2/hellinger"][...], R["all"]["/baselines/block_2/hellinger"][...], 1e-12),
          "reduce: baseline block_2 equal in both reports")
    for l in range(3):
        check(close(R["b2"][f"/baselines/lens_{l}/hellinger"][...], R["all"][f"/baselines/lens_{l}/hellinger"][...],
                    1e-12), f"reduce: one-block report has lens_{l}, equal to the all-block one")
    check(int(R["b2"].attrs["hook_first_block"]) == 2, "report.h5 hook_first_block 2")
    md = open(j("r_b2/report.md")).read()
    check("| block | 2 |" in md, "report.md's table names block 2")
    for k in ("b2", "emb"):
        p = run(["tune", j(k + ".h5"), "--restarts", "1", "-o", j(k + ".ini")])
        ini = open(j(k + ".ini")).read()
        lines = {l.split("=")[0].strip(): l.split("=")[1].strip() for l in ini.splitlines() if "=" in l}
        check(len(lines.get("thresholds", "").split(",")) == 1 and len(lines.get("weights", "").split(",")) == 1,
              f"tune {k}: one threshold and one weight ({lines})")
    s_all = run(["similar", j("all.h5"), "--corpus", j("c.h5"), "--prompt-index", "3", "--block", "2",
                 "--threshold", t]).stdout
    s_b2 = run(["similar", j("b2.h5"), "--corpus", j("c.h5"), "--prompt-index", "3", "--block", "2",
                "--threshold", t]).stdout
    check(s_all == s_b2 and "block 2, cosine similarity" in s_b2, "similar --block 2: same output on both scans")
    s_b2a = run(["similar", j("b2.h5"), "--corpus", j("c.h5"), "--prompt-index", "3", "--blocks", "all",
                 "--thresholds", t, "--weights", "1"]).stdout
    check(s_b2a.count("\n2 ") + s_b2a.count("\n2      ") >= 1 or "2 " in s_b2a, "similar --blocks all on one block")
    p = run(["similar", j("b2.h5"), "--corpus", j("c.h5"), "--prompt-index", "3", "--block", "0",
             "--threshold", t], ok=False)
    check(p.returncode != 0 and "the scan has blocks 2..2" in p.stderr, f"similar --block 0 refused: {p.stderr.strip()}")
    s_emb = run(["similar", j("emb.h5"), "--corpus", j("c.h5"), "--prompt-index", "3", "--block", "0",
                 "--threshold", t]).stdout
    check("block 0, cosine similarity" in s_emb, "similar on the embed scan")
    if FAIL:
        print(f"{len(FAIL)} failed")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

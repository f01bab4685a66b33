#!/usr/bin/python3
"""Tests of `corpuslens scan` against a naive numpy reference.

usage: scan_test.py MODE [args]
  reference HOOK [RANK]  (RANK: with CORPUSLENS_SCAN_PRUNE_RANK=RANK)
                   plain float64 forward of every substring (no sharing, no
                   tiling), brute-force cosine: identical frequency tensors and
                   match sets (pairs within TOL of a bin edge/threshold may
                   differ: counted and allowed), model and lens probabilities
  ranks            1, 2, 3 ranks: counts bitwise equal, match sets equal
  resume           stop after K shards (CORPUSLENS_SCAN_STOP_AFTER), rerun:
                   the same file as an uninterrupted run; other args start over
  shortcut         prompts from their shard's forward or from a prompt trie
                   (CORPUSLENS_SCAN_KEEP_SHARDS=0, 2), 1 and 2 ranks, three
                   hooks: the same file
  refusals         the documented refusals: nonzero exit, one line, no output
  prune            the pruning bound (CORPUSLENS_SCAN_PRUNE_RANK=8, 31) against
                   brute force (the default): the same counts and matches
                   except pairs within TOL of an edge (counted); the portable
                   and AVX2 dot products give the same bytes as the default
                   (AVX-512 where the CPU has it); bad ranks are refused;
                   and brute force through the AVX2 and the portable codes of
                   the GEMM (CORPUSLENS_GEMM=avx2, =portable; nn/gemm.h): the
                   same bytes as the default
Environment: CORPUSLENS (binary), TESTDATA (tests/data), PYTHON. Works in a temporary dir.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import nanstrict  # noqa: E402

EXE = os.environ.get("CORPUSLENS", "corpuslens")
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
MPIRUN = shutil.which("mpirun") or "mpirun"
TOL = 1e-5
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
FAIL = []


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg)


def run(args, ranks=None, ok=True, env=None):
    cmd = ([MPIRUN, "-n", str(ranks), "--oversubscribe"] if ranks else []) + [EXE] + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV)
    if ok and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("command failed: " + " ".join(cmd))
    return p


def setup(d, nchars=3000, L=6, prompts=24, block=16, text=None):
    src = os.path.join(TESTDATA, "tinyshakespeare.txt")
    with open(src, encoding="utf-8") as f:
        t = f.read()[:nchars] if text is None else text
    txt = os.path.join(d, "small.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(t)
    run(["init", "--config", f"n_layer=2,n_embd=32,n_head=4,block_size={block}", "--vocab-from", txt,
         "--seed", "7", "-o", os.path.join(d, "m.h5")])
    run(["prepare", txt, "--len", str(L), "--prompts", str(prompts), "--seed", "3", "--vocab-from",
         os.path.join(d, "m.h5"), "-o", os.path.join(d, "c.h5")])
    return os.path.join(d, "m.h5"), os.path.join(d, "c.h5")


# ---- numpy reference ----

def load_model(path):
    f = h5py.File(path, "r")
    cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["config"].attrs.items()}
    w = {}
    f["weights"].visititems(lambda n, o: w.__setitem__(n, o[()].astype(np.float64)) if isinstance(o, h5py.Dataset) else None)
    return cfg, w


def ln(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def forward(cfg, w, toks, zero=None):
    """toks [B, T] -> dict of per-block last-position activations and logits;
    zero = ("attn" | "mlp", block) zeroes that output at every position (ablate)."""
    B, T = toks.shape
    C, H, NL = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hs = C // H
    eps = float(cfg["ln_eps"])
    x = w["token_embedding_table.weight"][toks] + w["position_embedding_table.weight"][:T][None]
    out = {k: [] for k in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")}
    mask = np.tril(np.ones((T, T), bool))
    for l in range(NL):
        p = f"blocks.{l}."
        out["resid_pre"].append(x[:, -1].copy())
        h = ln(x, w[p + "ln1.weight"], w[p + "ln1.bias"], eps)
        qkv = h @ w[p + "sa.qkv.weight"].T
        q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
        q = q.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        k = k.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        z = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        a = z @ w[p + "sa.proj.weight"].T + w[p + "sa.proj.bias"]
        out["attn_out"].append(a[:, -1].copy())
        x = x + (0 if zero == ("attn", l) else a)
        out["resid_mid"].append(x[:, -1].copy())
        h = ln(x, w[p + "ln2.weight"], w[p + "ln2.bias"], eps)
        h = np.maximum(h @ w[p + "ffwd.net.0.weight"].T + w[p + "ffwd.net.0.bias"], 0)
        mo = h @ w[p + "ffwd.net.2.weight"].T + w[p + "ffwd.net.2.bias"]
        out["mlp_out"].append(mo[:, -1].copy())
        x = x + (0 if zero == ("mlp", l) else mo)
        out["resid_post"].append(x[:, -1].copy())
    head = lambda r: ln(r, w["ln_f.weight"], w["ln_f.bias"], eps) @ w["lm_head.weight"].T + w["lm_head.bias"]
    out["logits"] = head(x[:, -1])
    out["lens"] = np.stack([head(r) for r in out["resid_post"]], 1)
    return out


def softmax(z):
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def test_reference(hook):
    d = tempfile.mkdtemp(prefix="scanref-")
    m, c = setup(d)
    out = os.path.join(d, "s.h5")
    pf, bw = 0.5, 0.05
    run(["scan", "--model", m, "--corpus", c, "--hook", hook, "--prefilter", str(pf), "--bin-width", str(bw),
         "--batch", "97", "--match-cap", "0"] + (["--match-thresholds", "0.8,0.9"] if hook != "embed" else [])
        + ["-o", out])
    cfg, w = load_model(m)
    cf = h5py.File(c, "r")
    toks = cf["substrings/tokens"][()]
    N, L = toks.shape
    V = cfg["vocab_size"]
    indptr, ntok, ncnt = (cf["substrings/next/" + k][()] for k in ("indptr", "token", "count"))
    dense = np.zeros((N, V), np.int64)
    for i in range(N):
        for e in range(indptr[i], indptr[i + 1]):
            dense[i, ntok[e]] += ncnt[e]
    pidx = cf["prompts/index"][()]
    P = len(pidx)
    act = forward(cfg, w, toks)
    if hook == "embed":
        vecs = np.stack([act["resid_pre"][0]])
    else:
        vecs = np.stack(act[hook])
    Lh = vecs.shape[0]
    s = h5py.File(out, "r")
    check(s.attrs["complete"] == 1, "complete attribute")
    NB = int(s.attrs["n_bins"])
    check(NB == round((1 - pf) / bw), "n_bins")
    lower = s["freq/bin_lower"][()]
    counts = s["freq/counts"][()]
    nm = s["freq/n_matches"][()]
    thr = s.attrs["match_thresholds"]
    check(counts.shape == (P, Lh, NB, V), f"counts shape {counts.shape}")
    # model / lens probabilities
    pa = forward(cfg, w, toks[pidx])
    check(np.abs(s["model/probs"][()] - softmax(pa["logits"])).max() < 1e-5, "model probs")
    check(np.abs(s["lens/probs"][()] - softmax(pa["lens"])).max() < 1e-5, "lens probs")
    # brute-force cosine
    nrm = vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-300)
    idx = s["matches/index"][()]
    msub = s["matches/substring"][()]
    msim = s["matches/similarity"][()]
    near_total = exact_pb = 0
    pairs = 0
    for b in range(Lh):
        sim = nrm[b][pidx] @ nrm[b].T  # [P, N]
        sim[np.arange(P), pidx] = 1.0
        edges = np.concatenate([lower, [lower[-1] + bw], [thr[b]]])
        for p in range(P):
            row = sim[p]
            near = np.zeros(N, bool)
            for e in edges:
                near |= np.abs(row - e) < TOL
            near[pidx[p]] = False
            above = row > pf
            pairs += int(above.sum())
            k = np.clip(np.ceil((row - pf) / bw).astype(int) - 1, 0, NB - 1)
            k[pidx[p]] = NB - 1
            ref = np.zeros((NB, V), np.int64)
            refn = np.zeros(NB, np.int64)
            for i in np.nonzero(above)[0]:
                ref[k[i]] += dense[i]
                refn[k[i]] += 1
            nn = int(near.sum())
            near_total += nn
            # bins touched by a pair near an edge may differ; every other bin is exact
            ok_bins = np.ones(NB, bool)
            for i in np.nonzero(near)[0]:
                ok_bins[max(k[i] - 1, 0):k[i] + 2] = False
            if nn == 0:
                exact_pb += 1
            check((counts[p, b][ok_bins] == ref[ok_bins]).all() and (nm[p, b][ok_bins] == refn[ok_bins]).all(),
                  f"counts p={p} b={b}")
            check(abs(int(nm[p, b].sum()) - int(refn.sum())) <= nn, f"n_matches p={p} b={b} near={nn}")
            # matches: the set above the threshold, sorted by (-sim, substring)
            st, cnt = idx[p, b]
            got = msub[st:st + cnt]
            gsim = msim[st:st + cnt]
            want = set(np.nonzero(row > thr[b])[0].tolist())
            diff = set(got.tolist()) ^ want
            check(all(near[i] for i in diff), f"match set p={p} b={b}: {sorted(diff)[:5]}")
            if cnt:
                check(np.abs(gsim - row[got]).max() < 1e-5, f"match similarities p={p} b={b}")
                order = np.lexsort((got, -gsim))
                check((order == np.arange(cnt)).all(), f"match order p={p} b={b}")
    check(int(s.attrs["n_prefiltered_pairs"]) == pairs or near_total > 0, "n_prefiltered_pairs")
    print(f"reference {hook}: P={P} N={N} Lh={Lh} NB={NB} pairs={pairs} stored={len(msub)} "
          f"exact (p,b)={exact_pb}/{P * Lh} pairs within {TOL} of an edge={near_total}")
    shutil.rmtree(d)


def read_all(path):
    f = h5py.File(path, "r")
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out, dict(f.attrs)


def match_set(data):
    idx, sub, sim = data["matches/index"], data["matches/substring"], data["matches/similarity"]
    s = set()
    for p in range(idx.shape[0]):
        for b in range(idx.shape[1]):
            st, n = idx[p, b]
            for j in range(st, st + n):
                s.add((p, b, int(sub[j]), float(sim[j])))
    return s


def test_ranks():
    d = tempfile.mkdtemp(prefix="scanranks-")
    m, c = setup(d, nchars=4000, prompts=30)
    res = []
    for r in (1, 2, 3):
        out = os.path.join(d, f"s{r}.h5")
        run(["scan", "--model", m, "--corpus", c, "--prefilter", "0.3", "--bin-width", "0.05", "--batch", "50",
             "--match-cap", "7", "-o", out], ranks=r)
        res.append(read_all(out))
    base, battrs = res[0]
    for r, (data, attrs) in zip((2, 3), res[1:]):
        for k in ("freq/counts", "freq/n_matches", "model/probs", "lens/probs", "matches/index",
                  "matches/substring", "matches/similarity"):
            check(np.array_equal(base[k], data[k]), f"{k}: 1 rank vs {r} ranks")
        check(match_set(base) == match_set(data), f"match sets 1 vs {r} ranks")
        check(attrs["n_prefiltered_pairs"] == battrs["n_prefiltered_pairs"], f"pairs 1 vs {r}")
        check("ranks" not in attrs, "no ranks attribute (the file does not depend on the rank count)")
    print(f"ranks: pairs={battrs['n_prefiltered_pairs']} stored={len(base['matches/substring'])}")
    shutil.rmtree(d)


def test_resume():
    d = tempfile.mkdtemp(prefix="scanresume-")
    m, c = setup(d, nchars=4000, prompts=30)
    args = ["scan", "--model", m, "--corpus", c, "--prefilter", "0.3", "--bin-width", "0.05", "--batch", "40"]
    ref = os.path.join(d, "ref.h5")
    run(args + ["-o", ref], ranks=2)
    out = os.path.join(d, "s.h5")
    env = dict(ENV, CORPUSLENS_SCAN_STOP_AFTER="2")
    p = run(args + ["-o", out], ranks=2, ok=False, env=env)
    check(p.returncode == 3, f"stopped run exits 3 (got {p.returncode}: {p.stderr.strip()})")
    check(not os.path.exists(out), "no output after a stop")
    check(os.path.isdir(out + ".state"), "state directory kept")
    p = run(args + ["-o", out], ranks=2, ok=False, env=env)  # continues, stops again
    check("resuming" in p.stderr, "second run resumes")
    p = run(args + ["-o", out], ranks=2)
    check("resuming" in p.stderr, "third run resumes")
    a, aa = read_all(ref)
    b, ba = read_all(out)
    for k in a:
        check(np.array_equal(a[k], b[k]), f"resume: {k} differs from the uninterrupted run")
    check(aa["n_prefiltered_pairs"] == ba["n_prefiltered_pairs"], "resume: pairs")
    check(not os.path.exists(out + ".state"), "state removed after success")
    # other arguments start over
    out2 = os.path.join(d, "t.h5")
    run(args + ["-o", out2], ranks=2, ok=False, env=env)
    p = run(args[:-1] + ["39", "-o", out2], ranks=2, ok=False)
    check("starting over" in p.stderr and p.returncode == 0, "different args start over")
    # another sampled plan (CORPUSLENS_SCAN_SAMPLE_SHARDS, the benchmarks') is another
    # set of shards: a run stopped on a sample of 5 starts over on a sample of 4, and
    # writes the same file as an uninterrupted run on that sample
    out3, ref3 = os.path.join(d, "u.h5"), os.path.join(d, "ref-sample4.h5")
    run(args + ["-o", ref3], ranks=2, env=dict(ENV, CORPUSLENS_SCAN_SAMPLE_SHARDS="4"))
    run(args + ["-o", out3], ranks=2, ok=False, env=dict(env, CORPUSLENS_SCAN_SAMPLE_SHARDS="5"))
    p = run(args + ["-o", out3], ranks=2, env=dict(ENV, CORPUSLENS_SCAN_SAMPLE_SHARDS="4"))
    check("starting over" in p.stderr, f"another sample starts over ({p.stderr.strip()[-200:]!r})")
    a, _ = read_all(ref3)
    b, _ = read_all(out3)
    for k in a:
        check(np.array_equal(a[k], b[k]), f"sample of 4 after a stopped sample of 5: {k} differs")
    print("resume: ok")
    shutil.rmtree(d)


def test_shortcut():
    """Prompts take their vectors from the forward of their shard (kept
    shards) or from a trie of prompts (CORPUSLENS_SCAN_KEEP_SHARDS=0: all of
    them; =2: a few shards kept per rank): the same file whatever the split,
    on 1 and 2 ranks, and with a hook that ends before the last block (no
    shortcut)."""
    import re
    d = tempfile.mkdtemp(prefix="scanshortcut-")
    m, c = setup(d, nchars=4000, prompts=40)
    P = 40
    for hook in ("mlp_out", "resid_post", "blocks.0.hook_mlp_out"):
        args = ["scan", "--model", m, "--corpus", c, "--hook", hook, "--prefilter", "0.3", "--bin-width", "0.05",
                "--batch", "50", "--match-cap", "7"]
        base = None
        for r in (1, 2):
            for keep in (None, "0", "2"):
                env = dict(ENV) if keep is None else dict(ENV, CORPUSLENS_SCAN_KEEP_SHARDS=keep)
                out = os.path.join(d, f"s-{r}-{keep}.h5")
                p = run(args + ["-o", out], ranks=r, env=env)
                mm = re.search(r"prompts: (\d+) from the shard forward, the other (\d+) through", p.stderr)
                check(mm is not None, f"{hook} {r} ranks keep={keep}: the prompt line is printed")
                if not mm:
                    continue
                fwd, other = int(mm.group(1)), int(mm.group(2))
                check(fwd + other == P, f"{hook}: {fwd} + {other} prompts == {P}")
                if hook.startswith("blocks.0") or keep == "0":
                    check(fwd == 0, f"{hook} {r} ranks keep={keep}: no prompt from the shard forward (got {fwd})")
                elif keep is None:
                    check(fwd == P, f"{hook} {r} ranks: every prompt from the shard forward (got {fwd})")
                else:
                    check(0 < fwd < P, f"{hook} {r} ranks keep=2: some prompts from each side (got {fwd})")
                data, attrs = read_all(out)
                if base is None:
                    base = data
                    continue
                for k in base:
                    check(np.array_equal(base[k], data[k]), f"{hook} {r} ranks keep={keep}: {k} differs from 1 rank, "
                                                            "every prompt from its shard")
    # a bad value of the knob: one line, nonzero exit, no output
    out = os.path.join(d, "bad.h5")
    p = run(["scan", "--model", m, "--corpus", c, "-o", out], ranks=2, ok=False,
            env=dict(ENV, CORPUSLENS_SCAN_KEEP_SHARDS="-1"))
    check(p.returncode != 0 and "CORPUSLENS_SCAN_KEEP_SHARDS=-1" in p.stderr and not os.path.exists(out),
          f"KEEP_SHARDS=-1 refused (rc {p.returncode}: {p.stderr.strip()[-200:]})")
    print("shortcut: ok")
    shutil.rmtree(d)


def test_refusals():
    d = tempfile.mkdtemp(prefix="scanrefuse-")
    m, c = setup(d, nchars=2000, prompts=10)
    out = os.path.join(d, "s.h5")

    def refuse(args, what, needle, m_=m, c_=c):
        p = run(["scan", "--model", m_, "--corpus", c_, "-o", out] + args, ok=False)
        lines = [l for l in p.stderr.strip().splitlines() if l]
        check(p.returncode != 0, f"{what}: exit status {p.returncode}")
        check(needle in p.stderr, f"{what}: message {p.stderr.strip()!r} lacks {needle!r}")
        check(len(lines) <= 2, f"{what}: {len(lines)} lines")
        check(not os.path.exists(out) and not os.path.exists(out + ".tmp"), f"{what}: output written")
        print(f"refusal ok ({what}): {lines[0] if lines else ''}")

    refuse(["--prefilter", "1"], "prefilter 1", "outside (-1, 1)")
    refuse(["--prefilter", "-1.5"], "prefilter -1.5", "outside (-1, 1)")
    refuse(["--bin-width", "0.07"], "bin width", "whole number of bins")
    refuse(["--hook", "bogus"], "unknown hook", "valid")
    refuse(["--hook", "mlp_post"], "unsupported hook", "valid")
    # L > block_size: a model with block_size 4
    m4 = os.path.join(d, "m4.h5")
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=4", "--vocab-from", os.path.join(d, "small.txt"),
         "-o", m4])
    refuse([], "L > block_size", "block_size", m_=m4)
    # a corpus made for another model (other vocabulary)
    other = os.path.join(d, "other.txt")
    with open(other, "w") as f:
        f.write("abcabcabcabd" * 20)
    mo = os.path.join(d, "mo.h5")
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", other, "-o", mo])
    co = os.path.join(d, "co.h5")
    run(["prepare", other, "--len", "6", "--prompts", "3", "-o", co])
    refuse([], "characters not in the vocabulary", "not in the model's vocabulary", m_=mo, c_=c)
    wide = os.path.join(d, "wide.txt")
    with open(wide, "w") as f:
        f.write("abcdefgh" * 20)
    mw = os.path.join(d, "mw.h5")
    run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", wide, "-o", mw])
    refuse([], "another model's corpus", "made for another model", m_=mw, c_=co)
    # more prompts than substrings: patch a corpus file
    cp = os.path.join(d, "cp.h5")
    shutil.copy(c, cp)
    with h5py.File(cp, "r+") as f:
        n = f["substrings/tokens"].shape[0]
        if "n_prompts" in f.attrs:
            pass
        idx = np.arange(n + 1) % n
        del f["prompts/index"]
        f["prompts/index"] = idx.astype(np.int64)
        txt = f["prompts/text"][()]
        del f["prompts/text"]
        f["prompts/text"] = np.resize(txt, n + 1)
        f.attrs["n_prompts"] = n + 1
    p = run(["scan", "--model", m, "--corpus", cp, "-o", out], ok=False)
    check(p.returncode != 0 and "prompts" in p.stderr and not os.path.exists(out),
          f"more prompts than substrings refused: {p.stderr.strip()!r}")
    # counts past int32 (a corpus of more than 2^31 - 1 characters): two
    # substrings followed 2^30 times each; the control with one stays accepted
    for big, refused in ((2, True), (1, False)):
        cb = os.path.join(d, f"cb{big}.h5")
        shutil.copy(c, cb)
        with h5py.File(cb, "r+") as f:
            cnt = f["substrings/next/count"][()]
            cnt[:big] = 1 << 30
            f["substrings/next/count"][...] = cnt
        p = run(["scan", "--model", m, "--corpus", cb, "--prefilter", "0.5", "--bin-width", "0.05", "-o", out],
                ok=False)
        if refused:
            check(p.returncode != 0 and "int32 counts hold at most 2147483647" in p.stderr and not os.path.exists(out),
                  f"counts past int32 refused: {p.stderr.strip()!r}")
            print(f"refusal ok (counts past int32): {p.stderr.strip()}")
        else:
            check(p.returncode == 0, f"control: counts below 2^31 accepted ({p.stderr.strip()[-200:]!r})")
            if os.path.exists(out):
                os.remove(out)
    shutil.rmtree(d)


def prune_problems(a, b, near, ok_bins_fn, label):
    """Differences between two scans a, b (read_all dicts) that no pair near
    an edge explains: near[(p, blk)] = set of substrings within TOL of an edge;
    ok_bins_fn(p, blk) = bins no near pair can touch."""
    bad = []
    ca, cb = a["freq/counts"], b["freq/counts"]
    na, nb = a["freq/n_matches"], b["freq/n_matches"]
    if ca.shape != cb.shape or na.shape != nb.shape:
        return [f"{label}: shapes {ca.shape} {cb.shape}"]
    P, Lh = ca.shape[:2]
    for p in range(P):
        for blk in range(Lh):
            ok = ok_bins_fn(p, blk)
            if not ((ca[p, blk][ok] == cb[p, blk][ok]).all() and (na[p, blk][ok] == nb[p, blk][ok]).all()):
                bad.append(f"{label}: counts p={p} b={blk}")
            if abs(int(na[p, blk].sum()) - int(nb[p, blk].sum())) > len(near[(p, blk)]):
                bad.append(f"{label}: n_matches p={p} b={blk}")
    ma = {(p, blk, sub): sim for p, blk, sub, sim in match_set(a)}
    mb = {(p, blk, sub): sim for p, blk, sub, sim in match_set(b)}
    for k in set(ma) ^ set(mb):
        if k[2] not in near[(k[0], k[1])]:
            bad.append(f"{label}: match {k} in one scan only")
    for k in set(ma) & set(mb):
        if not (abs(ma[k] - mb[k]) <= 1e-5):
            bad.append(f"{label}: match {k} similarity {ma[k]} vs {mb[k]}")
    return bad


def test_prune():
    d = tempfile.mkdtemp(prefix="scanprune-")
    m, c = setup(d, nchars=6000, prompts=40)
    pf, bw = 0.5, 0.05
    args = ["scan", "--model", m, "--corpus", c, "--prefilter", str(pf), "--bin-width", str(bw), "--batch", "97",
            "--match-cap", "0", "--match-thresholds", "0.6,0.7"]
    outs = {}
    for name, extra in (("brute", {}), ("pruned", {"CORPUSLENS_SCAN_PRUNE_RANK": "8"}),
                        ("portable", {"CORPUSLENS_SCAN_PRUNE_RANK": "8", "CORPUSLENS_SCAN_DOT": "portable"}),
                        ("avx2", {"CORPUSLENS_SCAN_PRUNE_RANK": "8", "CORPUSLENS_SCAN_DOT": "avx2"}),
                        ("rank31", {"CORPUSLENS_SCAN_PRUNE_RANK": "31"}),
                        # brute force through the other codes of the GEMM (nn/gemm.h: the same chains)
                        ("gemm_avx2", {"CORPUSLENS_GEMM": "avx2", "CORPUSLENS_SCAN_PRUNE_RANK": "0"}),
                        ("gemm_portable", {"CORPUSLENS_GEMM": "portable", "CORPUSLENS_SCAN_PRUNE_RANK": "0"})):
        out = os.path.join(d, name + ".h5")
        p = run(args + ["-o", out], ranks=2, env=dict(ENV, **extra))
        pr = [ln for ln in p.stderr.splitlines() if "pairs pruned per block" in ln]
        pruning = extra.get("CORPUSLENS_SCAN_PRUNE_RANK", "0") != "0"
        check(len(pr) == (1 if pruning else 0),
              f"{name}: the pruned fraction is printed {'once' if pruning else 'only when pruning is on'}")
        outs[name] = (read_all(out)[0], pr[0] if pr else "")
        print(name + ":", outs[name][1])
    fr = [float(v.rstrip("%")) for v in outs["pruned"][1].split(":")[-1].split()]
    check(len(fr) == 2 and max(fr) > 0, f"the bound prunes some pairs here: {fr}")
    check(outs["brute"][1] == "", "brute force by default (no pruning line without CORPUSLENS_SCAN_PRUNE_RANK)")
    # float64 reference similarities: which pairs lie within TOL of an edge
    cfg, w = load_model(m)
    cf = h5py.File(c, "r")
    toks = cf["substrings/tokens"][()]
    pidx = cf["prompts/index"][()]
    vecs = np.stack(forward(cfg, w, toks)["mlp_out"])
    nrm = vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-300)
    brute = outs["brute"][0]
    NB = brute["freq/counts"].shape[2]
    lower = brute["freq/bin_lower"]
    edges = np.concatenate([lower, [lower[-1] + bw], [0.6, 0.7]])
    near, kb = {}, {}
    for blk in range(vecs.shape[0]):
        sim = nrm[blk][pidx] @ nrm[blk].T
        for p in range(len(pidx)):
            dist = np.min(np.abs(sim[p][:, None] - edges[None, :]), axis=1)
            nz = set(np.nonzero(dist < TOL)[0].tolist()) - {int(pidx[p])}
            near[(p, blk)] = nz
            kb[(p, blk)] = [int(np.clip(np.ceil((sim[p][i] - pf) / bw) - 1, 0, NB - 1)) for i in nz]

    def ok_bins(p, blk):
        ok = np.ones(NB, bool)
        for k in kb[(p, blk)]:
            ok[max(k - 1, 0):k + 2] = False
        return ok

    n_near = sum(len(v) for v in near.values())
    for name in ("pruned", "rank31"):
        bad = prune_problems(brute, outs[name][0], near, ok_bins, name)
        for b in bad[:10]:
            check(False, b)
        ma = {k[:3] for k in match_set(brute)}
        mb = {k[:3] for k in match_set(outs[name][0])}
        cells = int((brute["freq/n_matches"] != outs[name][0]["freq/n_matches"]).sum())
        print(f"{name} vs brute force (the bound): {len(ma ^ mb)} matches differ, {cells} (prompt, block, bin) match counts "
              f"differ; {n_near} pairs lie within {TOL} of an edge (allowed to differ)")
    # the portable and AVX2 dot products: the same bytes as the default (AVX-512 where the CPU has it)
    for name in ("portable", "avx2"):
        pa, pb = outs["pruned"][0], outs[name][0]
        check(sorted(pa) == sorted(pb) and all(np.array_equal(pa[k], pb[k]) for k in pa), f"{name} dot: same datasets")
    # the AVX2 and portable GEMM: the same bytes as the default (every code runs the same chains)
    for name in ("gemm_avx2", "gemm_portable"):
        pa, pb = outs["brute"][0], outs[name][0]
        same = sorted(pa) == sorted(pb) and all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
        check(same, f"{name}: the scan's bytes differ from the default GEMM's")
    # negative controls: the comparison sees a changed count and a lost match
    ok_cells = [(p, blk, k) for (p, blk) in near for k in np.nonzero(ok_bins(p, blk))[0]
                if brute["freq/n_matches"][p, blk, k] > 0]
    check(len(ok_cells) > 0, "negative control: a bin to change")
    if ok_cells:
        alt = dict(outs["pruned"][0])
        alt["freq/n_matches"] = alt["freq/n_matches"].copy()
        p, blk, k = ok_cells[0]
        alt["freq/n_matches"][p, blk, k] += 1
        check(len(prune_problems(brute, alt, near, ok_bins, "control")) > 0, "negative control: changed count seen")
        alt = dict(outs["pruned"][0])
        alt["matches/similarity"] = alt["matches/similarity"].copy()
        alt["matches/similarity"][0] += 1e-3
        check(len(prune_problems(brute, alt, near, ok_bins, "control")) > 0, "negative control: changed similarity seen")
    # refusals of a bad rank
    for bad in ("abc", "-1", "32"):
        p = run(args + ["-o", os.path.join(d, "bad.h5")], ranks=2, ok=False,
                env=dict(ENV, CORPUSLENS_SCAN_PRUNE_RANK=bad))
        check(p.returncode != 0 and "CORPUSLENS_SCAN_PRUNE_RANK" in p.stderr, f"rank {bad} refused: {p.stderr}")
        check(not os.path.exists(os.path.join(d, "bad.h5")), f"rank {bad}: no output")
    shutil.rmtree(d)


if __name__ == "__main__":
    nanstrict.control()
    mode = sys.argv[1]
    if mode == "reference":
        if len(sys.argv) > 3:  # reference HOOK RANK: with the pruning bound of that rank
            ENV["CORPUSLENS_SCAN_PRUNE_RANK"] = sys.argv[3]
        test_reference(sys.argv[2] if len(sys.argv) > 2 else "mlp_out")
    elif mode == "ranks":
        test_ranks()
    elif mode == "resume":
        test_resume()
    elif mode == "shortcut":
        test_shortcut()
    elif mode == "refusals":
        test_refusals()
    elif mode == "prune":
        test_prune()
    else:
        raise SystemExit("unknown mode " + mode)
    if FAIL:
        print(f"{len(FAIL)} failures")
        sys.exit(1)
    print("ok")

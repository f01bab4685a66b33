#!/usr/bin/python3
"""Tests of `corpuslens index` and `corpuslens explain` (include/corpuslens/scan/index.h,
explain.h).

usage: explain_test.py MODE
  reduce     float32 index: explain's approximation of the scan's prompts equals
             scan + reduce (same counts per block, bitwise equal approximation and
             H) except for (prompt, block) with pairs within 1e-5 of the
             threshold, which are counted; --index-out equals `index`; negative
             control: other thresholds give other numbers
  reference  prompts NOT in the corpus (and of other lengths) against a float64
             numpy reference over the whole small corpus with activations from
             the PyTorch oracle (tests/python/torch_models.py): model and lens
             probabilities, per-block counts, approximation, H, top matches, soft
             kernel; float16 index within the float16 error; negative control
  ranks      the same index bytes for 1, 2, 3 ranks; the same explain.h5 bytes for
             1, 2, 3 ranks (float16 and float32, soft kernel on)
  resume     index stopped after K shards per rank, rerun: the same bytes
  refusals   characters outside the vocabulary, a prompt longer than block_size,
             an index from another model / another corpus (SHA-256), a truncated
             or incomplete index: nonzero exit, one clear line, no output file
  sketch     the pruning sketch (include/corpuslens/scan/sketch.h): explain with the
             sketch writes the same explain.h5 bytes as the full pass over every row
             (CORPUSLENS_SKETCH=0) for several thresholds, the soft kernel and top
             lists, on 1 and 2 ranks, while skipping rows; `index --add-sketch` on an
             index built without one gives the bytes of an index built with one;
             refusals (float32 index, a sketch that is not orthonormal); negative
             control: a sketch with understated residual norms loses matches. The
             SHA-256 cache: a second run is answered from the cache, a model file
             rewritten in place is still refused (another model)
  batch      a text's explanation does not depend on the texts explained with it:
             each text alone equals its row in batches of 1, 7, 31, 32 and 100
             texts (and 31 from elsewhere in the list), bit for bit in every
             per-text dataset of explain.h5 (model and lens probabilities,
             counts, similarities, approximation, H, soft kernel, n-gram), with a
             float16 index (sketch and direct search for few texts, the product
             for many) and a float32 one; n_embd 128, so the MLP's product has
             K = 512 (past the GEMM's 384-wide k block); negative control: the
             rows of two texts differ
  holdout    prepare --holdout-fraction: training part / held-out tokens as the
             lecture splits them; explain --eval-text samples windows of the
             held-out part (checked against the same sampler in Python: the
             prompts' texts) and reports the statistics
Environment: CORPUSLENS (binary), TESTDATA (tests/data), SRC. Works in a temporary directory.
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
SRC = os.environ.get("SRC", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIRUN = shutil.which("mpirun") or "mpirun"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
NEAR = 1e-5
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


def setup(d, nchars=3000, L=6, prompts=24, block=16, layers=2, seed=7, holdout=None, embd=32, tail=""):
    src = os.path.join(TESTDATA, "tinyshakespeare.txt")
    with open(src, encoding="utf-8") as f:
        t = f.read()[:nchars] + tail
    txt = os.path.join(d, "small.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(t)
    m, c = os.path.join(d, "m.h5"), os.path.join(d, "c.h5")
    run(["init", "--config", f"n_layer={layers},n_embd={embd},n_head=4,block_size={block}", "--vocab-from", txt,
         "--seed", str(seed), "-o", m])
    extra = ["--holdout-fraction", str(holdout)] if holdout else []
    run(["prepare", txt, "--len", str(L), "--prompts", str(prompts), "--seed", "3", "--vocab-from", m,
         "-o", c] + extra)
    return m, c, t


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def write_prompts(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(escape(t) + "\n")


THR, W = "0.8,0.9", "1,2"


def test_reduce():
    with tempfile.TemporaryDirectory() as d:
        m, c, _ = setup(d, prompts=40)
        s, ix, ix2 = (os.path.join(d, x) for x in ("s.h5", "i.h5", "i2.h5"))
        run(["scan", "--model", m, "--corpus", c, "--batch", "300", "--prefilter", "0.7", "--bin-width", "0.01",
             "-o", s, "--index-out", ix, "--index-dtype", "f32"], ranks=2)
        run(["index", "--model", m, "--corpus", c, "--batch", "300", "--dtype", "f32", "-o", ix2])
        check(open(ix, "rb").read() == open(ix2, "rb").read(), "scan --index-out differs from index")
        with h5py.File(s) as f:
            texts = [x.decode() for x in f["/prompts/text"][:]]
        pf = os.path.join(d, "p.txt")
        write_prompts(pf, texts)
        rep = os.path.join(d, "rep")
        e = os.path.join(d, "e.h5")
        for thr, w in ((THR, W), ("0.7,0.95", "0.5,3"), ("0.99,0.75", "1,0")):
            run(["reduce", s, "--thresholds", thr, "--weights", w, "-o", rep])
            run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--thresholds", thr,
                 "--weights", w, "--quiet", "-o", e])
            with h5py.File(os.path.join(rep, "report.h5")) as f:
                ra, rh = f["/approx"][()], f["/hellinger"][()]
            with h5py.File(s) as f:
                counts = f["/freq/counts"][()].astype(np.int64)  # [P, Lb, NB, V]
                lower = f["/freq/bin_lower"][()]
                mp = f["/model/probs"][()]
                lens = f["/lens/probs"][()]
            with h5py.File(e) as f:
                ea, eh, ec = f["/approx"][()], f["/hellinger"][()], f["/blocks/counts"][()]
                near, emp = f["/blocks/near_threshold"][()], f["/model/probs"][()]
                elens = f["/lens/probs"][()]
            P = len(texts)
            # explain forwards its prompts through the scan's trie forward (a node's bits depend
            # only on its prefix): the model's and the lens's probabilities are the scan's bits
            dp, dl = float(np.abs(mp - emp).max()), float(np.abs(lens - elens).max())
            check(np.array_equal(mp, emp), f"model probabilities differ from the scan's (by up to {dp})")
            check(np.array_equal(lens, elens), f"logit lens differs from the scan's (by up to {dl})")
            tv = [float(x) for x in thr.split(",")]
            n_near, n_eq = 0, 0
            for p in range(P):
                if near[p].sum():
                    n_near += 1
                    continue
                for b in range(2):
                    k = int(np.argmin(np.abs(lower - tv[b])))
                    ref = counts[p, b, k:, :].sum(axis=0)
                    check(np.array_equal(ref, ec[p, b]), f"prompt {p} block {b}: counts differ from the scan's bins")
                ok = np.array_equal(ra[p], ea[p]) and np.array_equal(rh[p], eh[p])
                check(ok, f"prompt {p}: approximation/H differ from reduce ({rh[p]!r} vs {eh[p]!r})")
                n_eq += ok
            print(f"thresholds {thr}: {n_eq} prompts bitwise equal to reduce, {n_near} with pairs within {NEAR} "
                  f"of a threshold (allowed), of {P}")
            check(n_eq >= P // 2, "too few comparable prompts")
            check(not np.array_equal(rh[0], np.nextafter(eh[0], 1.0)) and not np.array_equal(mp, np.nextafter(mp, 1.0)),
                  "negative control: an H or a probability one ulp off fails the comparison")
        # soft kernel: reduce from the bins (midpoint weights) against explain's exact kernel,
        # within the bin-width bound; reduce's printed mean against the same formula in numpy
        T, sw = [0.05, 0.1], [1.0, 0.5]
        p = run(["reduce", s, "--thresholds", THR, "--weights", W, "--temperatures", "0.05,0.1", "--soft-weights",
                 "1,0.5", "-o", rep])
        line = [x for x in p.stdout.splitlines() if "soft kernel from the bins" in x]
        check(len(line) == 1, "reduce printed no soft-kernel line")
        run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--thresholds", THR,
             "--weights", W, "--temperatures", "0.05,0.1", "--soft-weights", "1,0.5", "--soft-floor", "0.7",
             "--quiet", "-o", e])
        with h5py.File(s) as f, h5py.File(e) as g:
            counts = f["/freq/counts"][()].astype(np.float64)
            lower, width = f["/freq/bin_lower"][()], float(f.attrs["bin_width"])
            mp = f["/model/probs"][()].astype(np.float64)
            exact = g["/soft/approx"][()]
        hs, worst = [], 0.0
        for p_ in range(counts.shape[0]):
            a = sum(sw[b] * (np.exp((lower + width / 2 - 1) / T[b])[:, None] * counts[p_, b]).sum(axis=0)
                    for b in range(2))
            hs.append(hellinger(a, mp[p_]))
            a = a / a.sum()
            nz = exact[p_] > 1e-9
            ratio = a[nz] / exact[p_][nz]
            worst = max(worst, float(np.abs(np.log(ratio)).max()))
        bound = width / min(T)  # each block sum within exp(+-width/2T): a ratio of two within exp(+-width/T)
        check(worst <= bound + 1e-9, f"soft kernel from the bins differs from explain's exact one by a factor "
              f"exp({worst:.4f}) > exp({bound:.4f})")
        mean_line = float(line[0].split("mean H ")[1].split(",")[0]) if line else float("nan")
        check(abs(mean_line - np.mean(hs)) <= 6e-5, f"reduce's soft mean H {mean_line} vs numpy {np.mean(hs):.6f}")
        print(f"soft kernel: bins vs exact within a factor exp({worst:.4f}) (bound exp({bound:.4f})); "
              f"mean H from the bins {np.mean(hs):.4f}")
        # negative control: other thresholds must change the numbers
        run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--thresholds", "0.75,0.9",
             "--weights", W, "--quiet", "-o", e])
        run(["reduce", s, "--thresholds", THR, "--weights", W, "-o", rep])
        with h5py.File(os.path.join(rep, "report.h5")) as f, h5py.File(e) as g:
            check(not np.array_equal(f["/approx"][()], g["/approx"][()]), "negative control: no difference")


# ---------------------------------------------------------------- reference

def torch_reference(mpath, texts):
    """float64 oracle: (mlp_out last position [Lh][B, C], resid_post last [NL][B, C], probs [B, V], lens [B, NL, V])"""
    sys.path.insert(0, os.path.join(SRC, "tests", "python"))
    import torch
    import torch_models as tm
    model, vocab, _ = tm.model_from_h5(mpath)
    model = model.double().eval()
    vocab = [v.decode("utf-8") if isinstance(v, bytes) else v for v in vocab]
    vocab = [v if isinstance(v, str) else chr(v) for v in vocab]
    stoi = {ch: i for i, ch in enumerate(vocab)}
    NL = model_layers(model)
    out = {}
    by_len = {}
    for i, t in enumerate(texts):
        by_len.setdefault(len(t), []).append(i)
    mlp = [np.zeros((len(texts), 0))] * NL
    res = {}
    for T, idx in by_len.items():
        toks = torch.tensor([[stoi[ch] for ch in texts[i]] for i in idx], dtype=torch.long)
        with torch.no_grad():
            logits, hooks = tm.run_with_hooks(model, toks)
        res[T] = (idx, logits[:, -1, :].numpy(),
                  [hooks[f"blocks.{l}.hook_mlp_out"][:, -1, :].numpy() for l in range(NL)],
                  [hooks[f"blocks.{l}.hook_resid_post"][:, -1, :].numpy() for l in range(NL)])
    B = len(texts)
    C = next(iter(res.values()))[2][0].shape[1]
    V = next(iter(res.values()))[1].shape[1]
    acts = np.zeros((NL, B, C))
    probs = np.zeros((B, V))
    lens = np.zeros((B, NL, V))
    for T, (idx, lg, mo, rp) in res.items():
        probs[idx] = softmax(lg)
        for l in range(NL):
            acts[l, idx] = mo[l]
            with torch.no_grad():
                x = torch.tensor(rp[l])
                lens[idx, l] = softmax(model.lm_head(tm._ln(x, model_lnf(model))).numpy())
    return acts, probs, lens, stoi


def model_layers(model):
    return len(model.blocks) if hasattr(model, "blocks") else len(model.transformer.h)


def model_lnf(model):
    return model.ln_f if hasattr(model, "ln_f") else model.transformer.ln_f


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def hellinger(p, q):
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return -1.0
    p, q = p / p.sum(), q / q.sum()
    return float(np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum()) / np.sqrt(2))


def test_reference():
    with tempfile.TemporaryDirectory() as d:
        m, c, text = setup(d, prompts=5)
        with h5py.File(c) as f:
            toks = f["/substrings/tokens"][()]
            indptr, ntok, ncnt = (f["/substrings/next/" + k][()] for k in ("indptr", "token", "count"))
            vocab = [x.decode("utf-8").rstrip("\x00") for x in f["/vocab"][()]]
        N, L = toks.shape
        V = len(vocab)
        subs = ["".join(vocab[i] for i in row) for row in toks]
        subset = set(subs)
        rng = np.random.default_rng(5)
        prompts = []
        while len(prompts) < 6:  # not in the corpus, lengths L, L-2, L+3
            n = [L, L - 2, L + 3][len(prompts) % 3]
            s = text[rng.integers(0, len(text) - n):][:n]
            s = "".join(ch if rng.random() > 0.3 else vocab[rng.integers(0, V)] for ch in s)
            if s not in subset and s not in text and "\\" not in s:
                prompts.append(s)
        prompts.append("e")  # one character
        acts_s, _, _, _ = torch_reference(m, subs)
        acts_p, probs, lens, _ = torch_reference(m, prompts)
        NL = acts_s.shape[0]
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
        sims = np.einsum("lpc,lnc->lpn", unit(acts_p), unit(acts_s))  # [NL, P, N]
        dense = np.zeros((N, V))
        for i in range(N):
            for e in range(indptr[i], indptr[i + 1]):
                dense[i, ntok[e]] += ncnt[e]
        thr, w = [0.8, 0.9], [1.0, 2.0]
        T, sw, floor = [0.05, 0.02], [1.0, 0.5], 0.7
        pf = os.path.join(d, "p.txt")
        write_prompts(pf, prompts)
        for dtype, stol in (("f32", 2e-6), ("f16", 1.5e-3)):
            ix, e = os.path.join(d, f"i{dtype}.h5"), os.path.join(d, f"e{dtype}.h5")
            run(["index", "--model", m, "--corpus", c, "--batch", "256", "--dtype", dtype, "-o", ix])
            run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--thresholds",
                 "0.8,0.9", "--weights", "1,2", "--temperatures", "0.05,0.02", "--soft-weights", "1,0.5", "--top", "5",
                 "-o", e])
            with h5py.File(e) as f:
                eprobs, elens, ec = f["/model/probs"][()], f["/lens/probs"][()], f["/blocks/counts"][()]
                ea, eh = f["/approx"][()], f["/hellinger"][()]
                sa, sh = f["/soft/approx"][()], f["/soft/hellinger"][()]
                tsub, tsim = f["/matches/substring"][()], f["/matches/similarity"][()]
            dp = np.abs(eprobs - probs).max()
            dl = np.abs(elens - lens).max()
            check(dp <= 1e-5, f"{dtype}: model probabilities differ from PyTorch float64 by {dp}")
            check(dl <= 1e-5, f"{dtype}: logit lens differs from PyTorch float64 by {dl}")
            worst_soft, n_cmp, n_skip = 0.0, 0, 0
            for p in range(len(prompts)):
                amb = False
                ref_counts = np.zeros((NL, V))
                soft = np.zeros(V)
                for b in range(NL):
                    s = sims[b, p]
                    amb |= bool((np.abs(s - thr[b]) <= stol).any())
                    ref_counts[b] = dense[s > thr[b]].sum(axis=0)
                    m_ = s > floor
                    soft += sw[b] * (dense[m_] * np.exp((s[m_] - 1) / T[b])[:, None]).sum(axis=0)
                    # top matches: similarities within the dtype's error, order by similarity
                    order = np.lexsort((np.arange(N), -s))[:5]
                    got = tsim[p, b]
                    ok = np.all(np.abs(np.sort(s)[::-1][:5] - got) <= stol)
                    check(ok, f"{dtype}: prompt {p} block {b}: top similarities {got} vs {np.sort(s)[::-1][:5]}")
                    refsim = s[tsub[p, b]]
                    check(np.all(np.abs(refsim - got) <= stol), f"{dtype}: prompt {p} block {b}: top matches' "
                          f"similarities do not belong to their substrings")
                if soft.sum() > 0:
                    d_ = np.abs(sa[p] - soft / soft.sum()).max()
                    worst_soft = max(worst_soft, d_) if d_ == d_ else float("nan")
                    check(d_ <= (1e-4 if dtype == "f32" else 5e-2), f"{dtype}: prompt {p}: soft kernel differs by {d_}")
                    dh = abs(sh[p] - hellinger(soft, probs[p]))
                    check(dh <= (1e-4 if dtype == "f32" else 5e-2), f"{dtype}: prompt {p}: soft H differs by {dh}")
                if amb:
                    n_skip += 1
                    continue
                n_cmp += 1
                check(np.array_equal(ec[p], ref_counts), f"{dtype}: prompt {p}: block counts differ from the reference")
                a = (np.array(w)[:, None] * ref_counts).sum(axis=0)
                ra = a / a.sum() if a.sum() > 0 else np.zeros(V)
                dd = np.abs(ea[p] - ra).max()
                check(dd <= 1e-12, f"{dtype}: prompt {p}: approximation differs by {dd}")
                rh = hellinger(a, probs[p])
                check(abs(eh[p] - rh) <= 1e-5 or (rh == -1 and eh[p] == -1), f"{dtype}: prompt {p}: H {eh[p]} vs {rh}")
            print(f"{dtype}: {n_cmp} prompts compared exactly, {n_skip} with a pair within {stol} of a threshold; "
                  f"model probs {dp:.2e}, lens {dl:.2e}, soft kernel {worst_soft:.2e}")
            check(n_cmp >= 3, f"{dtype}: too few prompts compared")
        # float16 keys: exactly numpy's round-to-nearest-even of the float32 keys
        with h5py.File(os.path.join(d, "if32.h5")) as f, h5py.File(os.path.join(d, "if16.h5")) as g:
            v32, v16 = f["/vectors"][()], g["/vectors"][()]
            check(g["/vectors"].dtype == np.float16, f"float16 index stored as {g['/vectors'].dtype}")
            check(np.array_equal(v32.astype(np.float16).view(np.uint16), v16.view(np.uint16)),
                  "float16 keys differ from numpy's rounding of the float32 keys")
            check(not np.array_equal(v32.astype(np.float16).view(np.uint16), (v32 * 1.001).astype(np.float16).view(np.uint16)),
                  "negative control: rounding comparison cannot fail")
            nrm = np.abs(np.linalg.norm(v32.astype(np.float64), axis=-1) - 1).max()
            check(nrm <= 1e-6, f"float32 keys are not unit vectors ({nrm})")
        # negative control: a reference with another threshold differs
        a_other = dense[sims[0, 0] > thr[0] - 0.1].sum(axis=0)
        with h5py.File(os.path.join(d, "ef32.h5")) as f:
            check(not np.array_equal(f["/blocks/counts"][0, 0], a_other) or a_other.sum() == 0,
                  "negative control: another threshold gives the same counts")


def test_ranks():
    with tempfile.TemporaryDirectory() as d:
        m, c, _ = setup(d, nchars=4000)
        pf = os.path.join(d, "p.txt")
        write_prompts(pf, ["First C", "zebra", "the kin", "O", "citizens, sp"])
        for dtype in ("f16", "f32"):
            outs, exps = [], []
            for R in (1, 2, 3):
                ix, e = os.path.join(d, f"i{R}{dtype}.h5"), os.path.join(d, f"e{R}{dtype}.h5")
                run(["index", "--model", m, "--corpus", c, "--batch", "200", "--dtype", dtype, "-o", ix], ranks=R)
                outs.append(open(ix, "rb").read())
            for R in (1, 2, 3):
                e = os.path.join(d, f"e{R}{dtype}.h5")
                run(["explain", "--index", os.path.join(d, f"i1{dtype}.h5"), "--corpus", c, "--model", m,
                     "--prompt-file", pf, "--thresholds", "0.7,0.8", "--weights", "1,1", "--soft", "--top", "7",
                     "--quiet", "-o", e], ranks=R)
                exps.append(open(e, "rb").read())
            check(outs[0] == outs[1] == outs[2], f"{dtype}: index bytes differ between 1, 2, 3 ranks")
            check(exps[0] == exps[1] == exps[2], f"{dtype}: explain.h5 bytes differ between 1, 2, 3 ranks")
            # the mapped float16 path (few prompts: F16C dot products on the mapped chunks) against H5Dread + sgemm,
            # on an index without the sketch (with one, explain of few prompts always takes the mapped path)
            ns, e2, e3 = (os.path.join(d, f"{x}{dtype}.h5") for x in ("inosk", "emap", "eread"))
            run(["index", "--model", m, "--corpus", c, "--batch", "200", "--dtype", dtype, "--sketch-dim", "0",
                 "-o", ns])
            args = ["explain", "--index", ns, "--corpus", c, "--model", m, "--prompt-file", pf, "--thresholds",
                    "0.7,0.8", "--weights", "1,1", "--soft", "--top", "7", "--quiet"]
            run(args + ["-o", e2], env=dict(ENV, CORPUSLENS_INDEX_MMAP="1"))
            run(args + ["-o", e3])
            with h5py.File(e3) as f, h5py.File(e2) as g:
                ds = np.abs(f["/matches/similarity"][()] - g["/matches/similarity"][()]).max()
                check(ds <= 1e-5, f"{dtype}: mapped and read paths differ in similarity by {ds}")
                same = np.array_equal(f["/blocks/counts"][()], g["/blocks/counts"][()])
                check(same or f["/blocks/near_threshold"][()].sum() > 0, f"{dtype}: mapped and read paths count differently")
            # negative control: another batch size changes the file (the comparison can fail)
            ix = os.path.join(d, f"i9{dtype}.h5")
            run(["index", "--model", m, "--corpus", c, "--batch", "100", "--dtype", dtype, "-o", ix])
            check(open(ix, "rb").read() != outs[0], "negative control: a different chunking gave the same bytes")
            print(f"{dtype}: index {len(outs[0])} bytes, explain {len(exps[0])} bytes, equal for 1, 2, 3 ranks")


def test_resume():
    with tempfile.TemporaryDirectory() as d:
        m, c, _ = setup(d, nchars=4000)
        full, part = os.path.join(d, "full.h5"), os.path.join(d, "part.h5")
        run(["index", "--model", m, "--corpus", c, "--batch", "200", "-o", full], ranks=2)
        env = dict(ENV, CORPUSLENS_INDEX_STOP_AFTER="3")
        p = run(["index", "--model", m, "--corpus", c, "--batch", "200", "-o", part], ranks=2, ok=False, env=env)
        check(p.returncode == 3, f"stop-after exit status {p.returncode}, expected 3")
        check(not os.path.exists(part), "a stopped build left an output file")
        check(os.path.isdir(part + ".parts"), "a stopped build left no parts")
        p = run(["index", "--model", m, "--corpus", c, "--batch", "200", "-o", part], ranks=2)
        check("resuming: 6 of" in p.stderr, "the rerun did not resume: " + p.stderr[-300:])
        check(open(full, "rb").read() == open(part, "rb").read(), "the resumed index differs from an uninterrupted one")
        check(not os.path.exists(part + ".parts"), "the parts were not removed")
        # scan --index-out stopped and resumed: the same index
        sc, si = os.path.join(d, "s.h5"), os.path.join(d, "si.h5")
        envs = dict(ENV, CORPUSLENS_SCAN_STOP_AFTER="2")
        p = run(["scan", "--model", m, "--corpus", c, "--batch", "200", "-o", sc, "--index-out", si], ranks=2, ok=False,
                env=envs)
        check(p.returncode == 3 and not os.path.exists(si), f"scan stop-after: rc {p.returncode}, index written early")
        run(["scan", "--model", m, "--corpus", c, "--batch", "200", "-o", sc, "--index-out", si], ranks=2)
        check(open(full, "rb").read() == open(si, "rb").read(), "a resumed scan --index-out differs from index")
        # another argument (dtype) starts over and is still right
        run(["index", "--model", m, "--corpus", c, "--batch", "200", "-o", part], ranks=2, ok=False, env=env)
        p = run(["index", "--model", m, "--corpus", c, "--batch", "200", "--dtype", "f32", "-o", part], ranks=2)
        check("resuming" not in p.stderr, "another dtype resumed from float16 parts")


def refuse(args, words, out=None, ranks=None):
    p = run(args, ok=False, ranks=ranks)
    msg = p.stderr.strip().splitlines()
    ok = p.returncode not in (0,) and any(all(w in line for w in words) for line in msg)
    check(ok, f"{args[0]} {' '.join(args[1:])[:80]}: expected a refusal with {words}, got rc {p.returncode}: "
          f"{p.stderr.strip()[-300:]}")
    if out:
        check(not os.path.exists(out), f"a refused run left {out}")


def test_refusals():
    with tempfile.TemporaryDirectory() as d:
        m, c, _ = setup(d)
        ix, e = os.path.join(d, "i.h5"), os.path.join(d, "e.h5")
        run(["index", "--model", m, "--corpus", c, "--batch", "300", "-o", ix])
        base = ["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W, "-o", e]
        refuse(base + ["First \u00e9"], ["not in the model's vocabulary", "prompt 1"], e)
        refuse(base + ["ok", "e" * 17], ["prompt 2", "17 characters", "block_size"], e)
        refuse(base[:-2] + ["--top", "-1", "abc"], ["--top"])
        # another model (same vocabulary and shape, other weights)
        m2 = os.path.join(d, "m2.h5")
        run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from",
             os.path.join(d, "small.txt"), "--seed", "8", "-o", m2])
        refuse(["explain", "--index", ix, "--corpus", c, "--model", m2, "--thresholds", THR, "--weights", W, "-o", e,
                "First"], ["another model", "model_sha256"], e)
        # another corpus file (other prompts: other SHA-256)
        c2 = os.path.join(d, "c2.h5")
        run(["prepare", os.path.join(d, "small.txt"), "--len", "6", "--prompts", "5", "--seed", "4", "--vocab-from",
             m, "-o", c2])
        refuse(["explain", "--index", ix, "--corpus", c2, "--model", m, "--thresholds", THR, "--weights", W, "-o", e,
                "First"], ["another corpus", "corpus_h5_sha256"], e)
        # truncated copy
        tr = os.path.join(d, "trunc.h5")
        data = open(ix, "rb").read()
        open(tr, "wb").write(data[: len(data) * 2 // 3])
        refuse(["explain", "--index", tr, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W, "-o", e,
                "First"], ["trunc"], e)
        # incomplete (complete = 0) and not an index
        inc = os.path.join(d, "inc.h5")
        shutil.copy(ix, inc)
        with h5py.File(inc, "a") as f:
            f.attrs["complete"] = np.int64(0)
        refuse(["explain", "--index", inc, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W, "First"],
               ["incomplete"])
        refuse(["explain", "--index", c, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W, "First"],
               ["not a corpuslens index"])
        # wrong number of thresholds, paper defaults on a 2-block index
        refuse(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", "0.8", "--weights", "1",
                "First"], ["hooked blocks"])
        refuse(["explain", "--index", ix, "--corpus", c, "--model", m, "First"], ["paper", "--thresholds"])
        # index: bad dtype, missing options; explain under 2 ranks fails together
        refuse(["index", "--model", m, "--corpus", c, "--dtype", "f8", "-o", os.path.join(d, "x.h5")], ["--dtype"])
        refuse(base + ["First \u00e9"], ["not in the model's vocabulary"], e, ranks=2)
        refuse(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
                "--eval-text", "5"], ["held-out"])


def sketch_sha256(f):
    """The checksum of an index's sketch (sketch.h): proj, coords, resid as stored (little-endian)."""
    import hashlib
    h = hashlib.sha256()
    h.update(f["/sketch/proj"][()].astype("<f8").tobytes())
    h.update(f["/sketch/coords"][()].astype("<f2").tobytes())
    h.update(f["/sketch/resid"][()].astype("<f4").tobytes())
    return h.hexdigest()


def test_sketch():
    import time
    with tempfile.TemporaryDirectory() as d:
        m, c, text = setup(d, nchars=20000, L=6, prompts=5)
        ix, ix0 = os.path.join(d, "i.h5"), os.path.join(d, "i0.h5")
        run(["index", "--model", m, "--corpus", c, "--batch", "256", "--sketch-dim", "8", "-o", ix])
        run(["index", "--model", m, "--corpus", c, "--batch", "256", "--sketch-dim", "0", "-o", ix0])
        with h5py.File(ix0) as f:
            check("sketch" not in f, "--sketch-dim 0 wrote a sketch")
        p = run(["index", "--add-sketch", ix0, "--sketch-dim", "8"])
        check("variance kept" in p.stderr, "index --add-sketch printed no summary: " + p.stderr[-200:])
        check(open(ix, "rb").read() == open(ix0, "rb").read(), "index --add-sketch differs from a build with the sketch")
        with h5py.File(ix) as f:
            P_ = f["/sketch/proj"][()]
            co, re = f["/sketch/coords"][()], f["/sketch/resid"][()]
            v = f["/vectors"][()].astype(np.float64)
            for b in range(P_.shape[0]):
                g = P_[b] @ P_[b].T
                check(np.abs(g - np.eye(g.shape[0])).max() <= 1e-12, f"block {b}: projection not orthonormal")
                ref = v[b] @ P_[b].T
                check(co.dtype == np.float16, f"coordinates stored as {co.dtype}, not float16")
                dc = np.abs(co[b].astype(np.float64) - ref) - (2.0 ** -11 * np.abs(ref) + 2.0 ** -25)
                check(bool((dc <= 1e-12).all()), f"block {b}: coordinates are not numpy's rounded to float16 "
                      f"(worst excess {dc.max():.3g})")
                r = np.sqrt(np.maximum((v[b] ** 2).sum(1) - (ref ** 2).sum(1), 0))
                check(bool((re[b] >= r * (1 - 1e-6)).all()) and np.abs(re[b] - r).max() <= 1e-5,
                      f"block {b}: residual norms are not numpy's rounded up")
        pf = os.path.join(d, "p.txt")
        write_prompts(pf, ["First C", "zebra", "the kin", "O", "citizens, sp", "What say y"])
        settings = [["--thresholds", "0.7,0.8", "--weights", "1,1", "--top", "7"],
                    ["--thresholds", "0.9,0.95", "--weights", "1,2", "--top", "10"],
                    ["--thresholds", "0.8,0.9", "--weights", "1,1", "--soft", "--soft-floor", "0.6", "--top", "3"],
                    ["--thresholds", "0.97,0.99", "--weights", "1,1", "--top", "0"]]
        pruned = 0
        for i, st in enumerate(settings):
            e1, e2, e3 = (os.path.join(d, f"e{i}{x}.h5") for x in "abc")
            base = ["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--quiet"] + st
            p1 = run(base + ["-o", e1])
            run(base + ["-o", e2], env=dict(ENV, CORPUSLENS_SKETCH="0"))
            run(base + ["-o", e3], ranks=2)
            line = [x for x in p1.stderr.splitlines() if "sketch (k = 8): rows computed per block" in x]
            check(len(line) == 1, f"setting {i}: the sketch was not used: {p1.stderr[-300:]}")
            if line:
                fr = [float(x.rstrip("%")) for x in line[0].split("per block")[1].split()]
                pruned += any(x < 100 for x in fr)
            check(open(e1, "rb").read() == open(e2, "rb").read(), f"setting {i}: explain with the sketch differs "
                  "from the full pass")
            check(open(e1, "rb").read() == open(e3, "rb").read(), f"setting {i}: the sketch on 2 ranks differs")
        check(pruned >= 2, f"the sketch skipped rows in only {pruned} settings")
        # negative control: residual norms understated -> true matches are skipped
        bad = os.path.join(d, "bad.h5")
        shutil.copy(ix, bad)
        with h5py.File(bad, "a") as f:
            check(f["/sketch"].attrs["sha256"].decode() == sketch_sha256(f), "/sketch's sha256 attribute is not "
                  "the SHA-256 of proj, coords and resid as stored (sketch.h)")
            f["/sketch/resid"][...] = f["/sketch/resid"][()] * 0.3
        p = run(["explain", "--index", bad, "--corpus", c, "--model", m, "First"] + settings[0], ok=False)
        check(p.returncode == 1 and "checksum" in p.stderr, "a sketch that does not match its sha256 was accepted: "
              f"rc {p.returncode} {p.stderr[-300:]}")
        with h5py.File(bad, "a") as f:  # the checksum of the wrong sketch: only the bound can catch it now
            del f["/sketch"].attrs["sha256"]
            f["/sketch"].attrs["sha256"] = np.bytes_(sketch_sha256(f))
        st = settings[0]
        eb, eg = os.path.join(d, "eb.h5"), os.path.join(d, "eg.h5")
        run(["explain", "--index", bad, "--corpus", c, "--model", m, "--prompt-file", pf, "--quiet", "-o", eb] + st)
        run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--quiet", "-o", eg] + st)
        with h5py.File(eb) as f, h5py.File(eg) as g:
            check(not np.array_equal(f["/blocks/counts"][()], g["/blocks/counts"][()]),
                  "negative control: a wrong sketch gave the same counts (the comparison cannot fail)")
        # refusals: a sketch that is not orthonormal; a float32 index
        with h5py.File(bad, "a") as f:
            f["/sketch/proj"][...] = f["/sketch/proj"][()] * 1.01
        refuse(["explain", "--index", bad, "--corpus", c, "--model", m, "First"] + st, ["not orthonormal"])
        i32 = os.path.join(d, "i32.h5")
        run(["index", "--model", m, "--corpus", c, "--batch", "256", "--dtype", "f32", "-o", i32])
        refuse(["index", "--add-sketch", i32], ["float16"])
        refuse(["index", "--add-sketch", ix, "--sketch-dim", "33"], ["sketch dimension"])
        # SHA-256 cache: the second run is answered from it; a model rewritten in place is refused
        hc = os.path.join(d, "hashcache")
        env = dict(ENV, CORPUSLENS_HASH_CACHE=hc)
        past = time.time() - 3600
        for fpath in (m, c, ix):
            os.utime(fpath, (past, past))
        time.sleep(3.1)  # ctime more than 2 s old: the entry is stored
        base = ["explain", "--index", ix, "--corpus", c, "--model", m, "--quiet", "First"] + st
        run(base, env=env)
        p = run(base, env=env)
        check("(cached)" in p.stderr, "the second run did not use the hash cache: " + p.stderr[-300:])
        # model and corpus SHA-256, the index's row order and its sketch's checksum
        check(len(os.listdir(hc)) == 4, f"hash cache holds {len(os.listdir(hc))} entries, expected 4")
        m2 = os.path.join(d, "m2.h5")
        run(["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from",
             os.path.join(d, "small.txt"), "--seed", "8", "-o", m2])
        with open(m2, "rb") as fi, open(m, "r+b") as fo:  # in place: the same inode
            data = fi.read()
            fo.seek(0)
            fo.write(data)
            fo.truncate()
        os.utime(m, (past, past))  # the old mtime again: only ctime tells the change
        p = run(base, ok=False, env=env)
        check(p.returncode != 0 and "another model" in p.stderr, "a model rewritten in place was accepted through "
              f"the hash cache: rc {p.returncode} {p.stderr[-300:]}")


def test_holdout():
    with tempfile.TemporaryDirectory() as d:
        m, c, text = setup(d, nchars=5000, holdout=0.1)
        with h5py.File(c) as f:
            hold = f["/holdout/tokens"][()]
            start = int(f.attrs["holdout_start"])
            vocab = [x.decode("utf-8").rstrip("\x00") for x in f["/vocab"][()]]
            toks = f["/substrings/tokens"][()]
        n = int(0.9 * len(text))
        check(start == n, f"holdout_start {start}, the lecture's split is {n}")
        check("".join(vocab[i] for i in hold) == text[n:], "/holdout/tokens is not the text after the split")
        subs = {"".join(vocab[i] for i in r) for r in toks}
        train = text[:n]
        ref = {train[i:i + 6] for i in range(len(train) - 5)}
        check(subs == ref, "the substrings are not exactly those of the training part")
        ix = os.path.join(d, "i.h5")
        run(["index", "--model", m, "--corpus", c, "-o", ix])
        e = os.path.join(d, "e.h5")
        p = run(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
                 "--eval-text", "50", "--seed", "11", "-o", e])
        check("held-out evaluation: 50 windows" in p.stdout and "exact-string n-gram" in p.stdout
              and "logit lens, block 1" in p.stdout, "the evaluation summary is missing: " + p.stdout[-400:])
        with h5py.File(e) as f:
            got = [x.decode() if isinstance(x, bytes) else x for x in f["/prompts/text"][()]]
        held = text[n:]
        check(len(got) == 50 and all(len(g) == 6 and g in held for g in got), "windows are not from the held-out text")
        # the documented sampler: cl_rng_below over the window starts (checked through a second seed differing)
        p2 = run(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
                  "--eval-text", "50", "--seed", "11", "-o", e + "2"])
        check(open(e, "rb").read() == open(e + "2", "rb").read(), "the same seed gave other windows")
        run(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
             "--eval-text", "50", "--seed", "12", "-o", e + "3"])
        with h5py.File(e + "3") as f:
            got3 = [x.decode() if isinstance(x, bytes) else x for x in f["/prompts/text"][()]]
        check(got3 != got, "another seed gave the same windows")


def infgram_ref(train, w, K):
    """naive: the longest suffix of w with >= K followed occurrences in train, its follower counts"""
    best = None
    for k in range(1, len(w) + 1):
        suf = w[len(w) - k:]
        fol = [train[p + k] for p in range(len(train) - k) if train.startswith(suf, p)]
        if len(fol) < K:
            break
        best = fol
    return best


def ref_h(fol, vocab, q):
    if not fol:
        return None
    c = np.array([fol.count(ch) for ch in vocab], dtype=np.float64)
    return hellinger(c / c.sum(), q.astype(np.float64) / q.sum())


def test_infgram():
    """issue 23: the ∞-gram and backoff n-gram rows of explain and reduce against a naive scan of the
    training text; "n/a (no match)" for an empty one; an old corpus.h5 without /text: "n/a"; reduce
    with its corpus.h5 gone: the rows left out, said so"""
    import re
    with tempfile.TemporaryDirectory() as d:
        m, c, text = setup(d, nchars=4000, holdout=0.1, prompts=30, tail="\n~ the end ~\n")
        train = text[:int(0.9 * len(text))]
        with h5py.File(c) as f:
            vocab = [x.decode("utf-8").rstrip("\x00") for x in f["/vocab"][()]]
            check(f["/text/tokens"].shape[0] == len(train), "/text/tokens is not the training text")
        absent = next(ch for ch in vocab if ch not in train)  # in the model's vocabulary, never in training
        texts = [train[100:116], text[-12:], "the king" + absent, "zzz", "ROMEO: to be", train[-9:]]
        pf = os.path.join(d, "p.txt")
        write_prompts(pf, texts)
        ix, e = os.path.join(d, "i.h5"), os.path.join(d, "e.h5")
        run(["index", "--model", m, "--corpus", c, "-o", ix])
        for K in (1, 3, 10):
            p = run(["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
                     "--prompt-file", pf, "--backoff-min", str(K), "-o", e])
            with h5py.File(e) as f:
                q = f["/model/probs"][()]
            inf = re.findall(r"    ∞-gram[^\n]*?: (n/a \(no match\)|[0-9.]+)\n", p.stdout)
            bo = re.findall(r"    backoff n-gram[^\n]*?: (n/a \(no match\)|[0-9.]+)\n", p.stdout)
            check(len(inf) == len(texts) and len(bo) == len(texts), "baseline lines missing: " + p.stdout[-600:])
            for i, t in enumerate(texts[:len(inf)]):
                for got, KK in ((inf[i], 1), (bo[i], K)):
                    want = ref_h(infgram_ref(train, t, KK), vocab, q[i])
                    if want is None:
                        check(got.startswith("n/a (no match)"), f"text {i} K {KK}: {got}, expected no match")
                    else:
                        check(not got.startswith("n/a") and abs(float(got) - want) <= 2e-6,
                              f"text {i} K {KK}: H {got}, naive {want:.6f}")
            check(inf[2].startswith("n/a"), "a text ending in a character absent from training matched")
            summ = p.stdout.split("summary")[-1]
            check("∞-gram" in summ and "backoff n-gram (K = %d)" % K in summ and "unigram" in summ,
                  "the summary has no ∞-gram, backoff or unigram row")
        # reduce: the rows in report.h5 equal the naive values on the scan's prompts
        s, rep = os.path.join(d, "s.h5"), os.path.join(d, "rep")
        run(["scan", "--model", m, "--corpus", c, "--prefilter", "0.7", "--bin-width", "0.01", "-o", s])
        p = run(["reduce", s, "--thresholds", THR, "--weights", W, "--backoff-min", "4", "-o", rep])
        with h5py.File(s) as f:
            ptexts = [x.decode() for x in f["/prompts/text"][:]]
            q = f["/model/probs"][()]
        with h5py.File(os.path.join(rep, "report.h5")) as f:
            check("infgram" in f["/baselines"] and "backoff" in f["/baselines"], "report.h5 has no ∞-gram rows")
            hi, hb = f["/baselines/infgram/hellinger"][()], f["/baselines/backoff/hellinger"][()]
        for i, t in enumerate(ptexts):
            for got, KK in ((hi[i], 1), (hb[i], 4)):
                want = ref_h(infgram_ref(train, t, KK), vocab, q[i])
                check((want is None and got == -1) or (want is not None and abs(got - want) <= 1e-9),
                      f"reduce prompt {i} K {KK}: {got}, naive {want}")
        check("∞-gram" in open(os.path.join(rep, "report.md"), encoding="utf-8").read(), "report.md has no ∞-gram row")
        # an old corpus.h5 without /text: explain says n/a; reduce with the corpus gone: left out, said so
        with h5py.File(c, "a") as f:
            del f["/text"]
        run(["index", "--model", m, "--corpus", c, "-o", ix + "2"])
        p = run(["explain", "--index", ix + "2", "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W,
                 "--prompt-file", pf])
        check("n/a (corpus.h5 has no suffix array: prepare it again)" in p.stdout, "old corpus: " + p.stdout[-400:])
        os.rename(c, c + ".gone")
        p = run(["reduce", s, "--thresholds", THR, "--weights", W, "-o", rep + "2"])
        check("left out" in p.stdout, "reduce without its corpus.h5 did not say so: " + p.stdout)
        with h5py.File(os.path.join(rep + "2", "report.h5")) as f:
            check("infgram" not in f["/baselines"], "reduce without its corpus.h5 wrote an ∞-gram row")


def per_text(path, P):
    """Every dataset of explain.h5 with one row per text: name -> array."""
    out = {}
    with h5py.File(path) as f:
        def take(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0] == P and name != "prompts/text":
                out[name] = obj[()]
        f.visititems(take)
    return out


def test_batch():
    with tempfile.TemporaryDirectory() as d:
        m, c, text = setup(d, nchars=3000, L=6, embd=128, block=16)
        ix16, ix32 = os.path.join(d, "i16.h5"), os.path.join(d, "i32.h5")
        run(["index", "--model", m, "--corpus", c, "--batch", "256", "-o", ix16])
        run(["index", "--model", m, "--corpus", c, "--batch", "256", "--dtype", "f32", "-o", ix32])
        with h5py.File(ix16) as f:
            check("sketch" in f, "the float16 index has no sketch: the sketch path is not tested")
        # 100 texts: windows of the corpus and of other text, 12 characters
        # (one forward batch), texts 40..44 of 5 (a second batch of another length)
        texts = []
        for i in range(100):
            n = 5 if 40 <= i < 45 else 12
            t = text[(i * 97) % (len(text) - 20):][:n] if i % 3 else "zebra " * 3
            texts.append(t[:n] if i % 3 else (t[i % 5:] + "the kings")[:n])
        batches = [(0, 1), (0, 7), (0, 31), (0, 32), (0, 100), (37, 68)]
        alone = [0, 5, 6, 11, 12, 30, 31, 42, 50, 67, 99]
        settings = ["--thresholds", "0.5,0.6", "--weights", "1,2", "--top", "5", "--soft", "--soft-floor", "0.3"]
        for ix in (ix16, ix32):
            def explain(lo, hi, tag):
                pf, e = os.path.join(d, f"p{tag}.txt"), os.path.join(d, f"e{tag}.h5")
                write_prompts(pf, texts[lo:hi])
                run(["explain", "--index", ix, "--corpus", c, "--model", m, "--prompt-file", pf, "--quiet",
                     "-o", e] + settings)
                return per_text(e, hi - lo)
            kind = "float16" if ix == ix16 else "float32"
            got = {b: explain(b[0], b[1], f"{b[0]}_{b[1]}") for b in batches}
            fields = sorted(got[(0, 100)])
            check(len(fields) >= 10 and "matches/similarity" in fields and "model/probs" in fields
                  and "lens/probs" in fields and "hellinger" in fields, f"{kind}: per-text datasets {fields}")
            check(bool((got[(0, 100)]["blocks/n_matches"] > 0).any()), f"{kind}: no text has a match")
            for i in alone:
                one = explain(i, i + 1, f"a{i}")
                check(sorted(one) == fields, f"{kind}: text {i} alone has datasets {sorted(one)}")
                for (lo, hi), res in got.items():
                    if not lo <= i < hi:
                        continue
                    for name in fields:
                        a, b = one[name][0], res[name][i - lo]
                        if a.tobytes() != b.tobytes():
                            diff = (np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
                                    if a.dtype.kind in "fiu" else "?")
                            check(False, f"{kind}: text {i} alone and in the batch of texts {lo}..{hi - 1}: "
                                  f"{name} differs (max |difference| {diff})")
            # negative control: the comparison sees different texts
            r = got[(0, 100)]
            check(r["model/probs"][1].tobytes() != r["model/probs"][2].tobytes()
                  and r["matches/similarity"][1].tobytes() != r["matches/similarity"][2].tobytes(),
                  f"{kind}: texts 1 and 2 give the same bytes: the comparison could not fail")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    tests = {"reduce": test_reduce, "reference": test_reference, "ranks": test_ranks, "resume": test_resume,
             "refusals": test_refusals, "holdout": test_holdout, "infgram": test_infgram, "sketch": test_sketch, "batch": test_batch}
    if mode not in tests:
        raise SystemExit(__doc__)
    tests[mode]()
    if FAIL:
        print(f"{len(FAIL)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()

"""corpuslens lens / ablate / embed-sim against PyTorch (float64) on a small
random lecture model, rank invariance of lens --prompts and ablate (1 vs 2
ranks), and the refusals. Needs CORPUSLENS, /usr/bin/python3 with torch,
h5py, numpy; mpiexec for the rank check (skipped with --no-mpi)."""
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

CL = os.environ["CORPUSLENS"]
FAILS = []
TOL = 1e-4


def run(*args, ok=True, mpi=0):
    cmd = ([os.environ.get("MPIEXEC", "mpiexec"), "-n", str(mpi), "--oversubscribe"] if mpi else []) + [CL, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def hell(p, q):
    return torch.sqrt(((p.clamp(min=0).sqrt() - q.clamp(min=0).sqrt()) ** 2).sum(-1) / 2)


def kl(p, q):
    return (p * (p.clamp(min=1e-300).log() - q.clamp(min=1e-30).log())).sum(-1)


@torch.no_grad()
def lens_ref(model, idx):
    """probs [B, L1, T, V] in float64."""
    _, hk = tm.run_with_hooks(model, idx)
    res = [hk["blocks.0.hook_resid_pre"]] + [hk[f"blocks.{i}.hook_resid_post"] for i in range(model.n_layer)]
    out = [F.softmax(model.lm_head(tm._ln(r, model.ln_f)), -1) for r in res]
    return torch.stack(out, 1)


@torch.no_grad()
def ablated_last(model, idx, kind=None, layer=-1, mean=None):
    """Softmax at the last position with blocks[layer]'s attention (kind 0) or
    feed-forward (kind 1) output replaced by 0 or `mean` [C]."""
    B, T = idx.shape
    x = model.token_embedding_table(idx) + model.position_embedding_table(torch.arange(T))
    for i, blk in enumerate(model.blocks):
        a = blk.sa(blk.ln1(x))
        if kind == 0 and i == layer:
            a = torch.zeros_like(a) if mean is None else mean.expand_as(a)
        x = x + a
        m = blk.ffwd(blk.ln2(x))
        if kind == 1 and i == layer:
            m = torch.zeros_like(m) if mean is None else mean.expand_as(m)
        x = x + m
    return F.softmax(model.lm_head(model.ln_f(x))[:, -1], -1)


def parse_table(out, ncol):
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(embed|block \d+|\d+)\s+((?:-?[0-9.]+(?:\s+\+-)?\s+){%d}-?[0-9.]+)\s*$" % (ncol - 1), line)
        if m:
            rows[m.group(1)] = [float(v) for v in m.group(2).replace("+-", " ").split()]
    return rows


TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
        "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n") * 2


def main():
    use_mpi = "--no-mpi" not in sys.argv
    vocab = tm.vocab_of(TEXT)
    V = len(vocab)
    model = tm.make_lecture(11, vocab_size=V, n_embd=32, n_head=4, n_layer=3, block_size=32)
    with tempfile.TemporaryDirectory() as d:
        mh5, txt, corpus = (os.path.join(d, n) for n in ("m.h5", "c.txt", "c.h5"))
        tm.write_model_h5(mh5, model, vocab)
        open(txt, "w").write(TEXT)
        run("prepare", txt, "--len", "8", "--prompts", "37", "--seed", "5", "--vocab-from", mh5, "-o", corpus)
        md = model.double()
        L1 = model.n_layer + 1

        # ---- lens of one text ----
        for text in ("First Citizen", "speak.\n\nAll", "You"):
            idx = tm.encode(vocab, [text])
            P = lens_ref(md, idx)[0]  # [L1, T, V]
            svg = os.path.join(d, "h.svg")
            out = run("lens", "--model", mh5, "--svg", svg, text).stdout
            rows = parse_table(out.split("distance to the final")[1], 5)
            fin = P[-1]
            top = int(fin[-1].argmax())
            for l in range(L1):
                lab = "embed" if l == 0 else f"block {l - 1}"
                ref = [hell(fin[-1], P[l, -1]).item(), kl(fin[-1], P[l, -1]).item(),
                       hell(fin, P[l]).mean().item(), kl(fin, P[l]).mean().item(),
                       1 + int((P[l, -1] > P[l, -1, top]).sum())]
                got = rows.get(lab)
                check(got is not None and np.allclose(got[:4], ref[:4], atol=TOL, rtol=TOL) and got[4] == ref[4],
                      f"lens {text!r} {lab}: {got} vs torch {[round(v, 6) for v in ref]}")
            # top-token grid (3 decimals)
            grid = out.split("\n\n")[0].splitlines()[2:]
            ok = len(grid) == L1
            for l, line in enumerate(grid):
                probs = [float(v) for v in re.findall(r" (\d\.\d{3})(?= |$)", line)]
                ref = P[l].max(-1).values.tolist()
                ok &= len(probs) == len(ref) and np.allclose(probs, ref, atol=6e-4)
            check(ok, f"lens {text!r}: top-token probability grid")
            s = open(svg).read()
            check(s.startswith("<?xml") and s.rstrip().endswith("</svg>") and s.count("<rect") >= L1 * len(text),
                  f"lens {text!r}: heatmap SVG written")

        # ---- lens over the prompts ----
        import h5py
        with h5py.File(corpus, "r") as f:
            toks = torch.from_numpy(f["substrings/tokens"][()][f["prompts/index"][()]].astype(np.int64))
        P = lens_ref(md, toks)  # [B, L1, T, V]
        fin = P[:, -1:]
        top = fin[:, 0, -1].argmax(-1)
        ref = {}
        for l in range(L1):
            Pl = P[:, l]
            rk = 1 + (Pl[:, -1] > Pl[:, -1].gather(1, top[:, None])).sum(-1)
            ref[l] = [hell(fin[:, 0, -1], Pl[:, -1]).mean().item(), kl(fin[:, 0, -1], Pl[:, -1]).mean().item(),
                      hell(fin[:, 0], Pl).mean().item(), kl(fin[:, 0], Pl).mean().item(),
                      rk.double().mean().item(), (Pl[:, -1].argmax(-1) == top).double().mean().item()]
        out1 = run("lens", "--model", mh5, "--prompts", corpus).stdout
        rows = parse_table(out1, 6)
        for l in range(L1):
            lab = "embed" if l == 0 else f"block {l - 1}"
            check(lab in rows and np.allclose(rows[lab], ref[l], atol=TOL, rtol=TOL),
                  f"lens --prompts {lab}: {rows.get(lab)} vs torch {[round(v, 6) for v in ref[l]]}")
        if use_mpi:
            out2 = run("lens", "--model", mh5, "--prompts", corpus, mpi=2).stdout
            out3 = run("lens", "--model", mh5, "--prompts", corpus, mpi=3).stdout
            strip = lambda s: re.sub(r"\d+ ranks?", "", s)  # noqa: E731
            check(strip(out1) == strip(out2) == strip(out3), "lens --prompts: same output on 1, 2 and 3 ranks")

        # ---- ablate ----
        with torch.no_grad():
            _, hk = tm.run_with_hooks(md, toks)
        base = ablated_last(md, toks)
        for mode in ("zero", "mean"):
            out1 = run("ablate", "--model", mh5, "--corpus", corpus, "--mode", mode,
                       "--svg", os.path.join(d, "b.svg")).stdout
            rows = parse_table(out1, 4)
            for l in range(model.n_layer):
                r = []
                for kind, name in ((0, "hook_attn_out"), (1, "hook_mlp_out")):
                    mean = hk[f"blocks.{l}.{name}"].mean((0, 1)) if mode == "mean" else None
                    h = hell(base, ablated_last(md, toks, kind, l, mean))
                    r += [h.mean().item(), h.std(unbiased=False).item()]
                got = rows.get(str(l))
                check(got is not None and np.allclose(got, r, atol=TOL, rtol=TOL),
                      f"ablate {mode} block {l}: {got} vs torch {[round(v, 6) for v in r]}")
            if use_mpi:
                out2 = run("ablate", "--model", mh5, "--corpus", corpus, "--mode", mode, mpi=2).stdout
                strip = lambda s: re.sub(r"\d+ ranks?", "", s)  # noqa: E731
                check(strip(out1) == strip(out2), f"ablate {mode}: same output on 1 and 2 ranks")
        out = run("ablate", "--model", mh5, "--corpus", corpus, "--max", "5").stdout
        check("over 5 prompts" in out, "ablate --max 5")

        # ---- embed-sim ----
        texts = ["First", "Citizen:", "speak", "All"]
        for hook, pool, center, dims in (("hook_embed", "mean", 0, 0), ("blocks.1.hook_mlp_out", "last", 1, 0),
                                         ("blocks.2.hook_resid_post", "mean", 1, 7), ("embed", "last", 0, 5),
                                         ("blocks.0.mlp.hook_post", "mean", 0, 0)):
            key = "blocks.0.hook_resid_pre" if hook == "embed" else hook
            X = []
            for t in texts:
                _, h = tm.run_with_hooks(md, tm.encode(vocab, [t]))
                a = h[key][0]
                X.append(a[-1] if pool == "last" else a.mean(0))
            X = torch.stack(X)
            if dims:
                X = X[:, :dims]
            if center:
                X = X - X.mean(0)
            Xn = X / X.norm(dim=1, keepdim=True)
            S = (Xn @ Xn.T).numpy()
            args = ["embed-sim", "--model", mh5, "--hook", hook, "--pool", pool] + (["--center"] if center else []) \
                + (["--dims", str(dims)] if dims else []) + texts
            out = run(*args).stdout
            got = np.array([[float(v) for v in line.split()[1:]] for line in out.splitlines()
                            if re.match(r"^\[\d+\]\s+-?\d", line)])
            check(got.shape == S.shape and np.allclose(got, S, atol=TOL), f"embed-sim {hook} {pool} center={center} dims={dims}")

        # ---- refusals ----
        def refuse(args, pattern, what):
            p = run(*args, ok=False)
            check(p.returncode != 0 and re.search(pattern, p.stderr), f"refuses {what}: {p.stderr.strip()[:150]}")
        refuse(["lens", "--model", mh5, "Firsté"], r"'é' \(U\+00E9\) at position 5", "lens: character outside the vocabulary")
        refuse(["lens", "--model", mh5, ""], r"empty", "lens: empty text")
        refuse(["lens", "--model", mh5, "e" * 40], r"block_size is 32", "lens: text longer than block_size")
        refuse(["lens", "--model", mh5, "--prompts", corpus, "--svg", "x.svg"], r"--svg", "lens: --svg with --prompts")
        refuse(["lens", "--model", mh5], r"TEXT or --prompts", "lens: nothing to do")
        refuse(["ablate", "--model", mh5, "--corpus", corpus, "--mode", "half"], r"--mode: 'half' is not one of zero, mean", "ablate: bad mode")
        refuse(["ablate", "--model", mh5], r"--corpus", "ablate: no corpus")
        other = os.path.join(d, "o.h5")
        run("prepare", txt, "--len", "4", "--prompts", "3", "-o", other)
        with h5py.File(other, "r") as f:
            same = len(f["vocab"]) == V
        if not same:
            refuse(["ablate", "--model", mh5, "--corpus", other], r"vocabulary", "ablate: corpus with another vocabulary")
        refuse(["embed-sim", "--model", mh5, "--hook", "blocks.0.hook_mlp", "a", "b"],
               r"unknown hook 'blocks.0.hook_mlp'; valid: hook_embed", "embed-sim: unknown hook lists valid names")
        refuse(["embed-sim", "--model", mh5, "--hook", "blocks.7.hook_mlp_out", "a", "b"], r"blocks 0\.\.2",
               "embed-sim: block out of range")
        refuse(["embed-sim", "--model", mh5, "--hook", "mlp_out", "a", "b"], r"names every block", "embed-sim: short name")
        refuse(["embed-sim", "--model", mh5, "--hook", "blocks.0.attn.hook_pattern", "a", "b"], r"patterns",
               "embed-sim: pattern hook")
        refuse(["embed-sim", "--model", mh5, "--hook", "hook_embed", "a", "e€"], r"text 2: .*U\+20AC\) at position 1",
               "embed-sim: character outside the vocabulary")
        refuse(["embed-sim", "--model", mh5, "--hook", "hook_embed", "a"], r"at least two", "embed-sim: one text")
        refuse(["embed-sim", "--model", mh5, "--hook", "hook_embed", "--dims", "33", "a", "b"], r"32 dimensions",
               "embed-sim: --dims > D")
        for cmd in ("lens", "ablate", "embed-sim"):
            p = run(cmd, "--help")
            check(p.returncode == 0 and f"usage:" in p.stdout and cmd in p.stdout, f"{cmd} --help")
    print("FAILED: %d" % len(FAILS) if FAILS else "all ok")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""`corpuslens import` and `inspect` against PyTorch.

Cases (tests/python/make_checkpoints.py): the lecture model and nanoGPT saved
by torch.save in the ways real checkpoints are (state dict, keep_vars,
protocol 4, file object, fp16/bf16/fp64 storages, transposed / offset / column
views, nanoGPT with and without bias, a training checkpoint with model_args,
`_orig_mod.` prefixes and optimizer state, safetensors). For each: import,
then `corpuslens capture` logits must equal the PyTorch forward of the same
weights (max |Δ| <= 1e-4), and `inspect` must count the same parameters as
PyTorch. With SHARED set: the trained lecture model must show 10,788,929
parameters and predict what PyTorch predicts.

Usage: checkpoint_import.py [--refusals-only | --cases-only] [--keep DIR]
Environment: CORPUSLENS, SHARED (optional), OPENBLAS_NUM_THREADS=1.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import nanstrict  # noqa: E402
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python"))
import make_checkpoints as mc  # noqa: E402
import torch_models as tm  # noqa: E402

TOL = 1e-4
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def exe():
    e = os.environ.get("CORPUSLENS")
    if not e:
        sys.exit("checkpoint_import.py: CORPUSLENS is not set")
    return e


def run(args):
    return subprocess.run([exe()] + args, capture_output=True, text=True)


def inspect_count(path):
    r = run(["inspect", path])
    m = re.search(r"^parameters: ([\d,]+) in", r.stdout, re.M)
    return r, (int(m.group(1).replace(",", "")) if m else None)


TEXTS = ["First Citi", "hear me sp", "Speak, spe", "All:\nBefor"]


def cases(d):
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(mc.TEXT)
    idx = tm.encode(mc.VOCAB, TEXTS)
    for c in mc.build_cases(d):
        out = os.path.join(d, c.name + ".h5")
        r = run(["import", c.path, "--corpus", corpus, "-o", out] + c.args)
        check(r.returncode == 0, f"{c.name}: import ({r.stderr.strip()})")
        if r.returncode:
            continue
        r2, n = inspect_count(c.path)
        check(n == c.n_params, f"{c.name}: inspect counts {n} parameters, PyTorch {c.n_params}")
        r3, n3 = inspect_count(out)
        check(n3 == c.n_params, f"{c.name}: inspect of the .h5 counts {n3} parameters")
        acts = os.path.join(d, c.name + ".acts.h5")
        r = run(["capture", "--model", out, "-o", acts] + TEXTS)
        check(r.returncode == 0, f"{c.name}: capture ({r.stderr.strip()})")
        if r.returncode:
            continue
        with h5py.File(acts, "r") as f:
            got = f["logits"][()]
        with torch.no_grad():
            ref = c.model.float()(idx).numpy()
        dif = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        check(dif <= TOL, f"{c.name}: logits {list(got.shape)} max|d| {dif:.3g} (<= {TOL})")
    # inspect details: buffers apart, views and the training checkpoint's extras
    r = run(["inspect", "--flat", os.path.join(d, "lecture-views.pt")])
    check("(view: offset 3, strides [39, 1])" in r.stdout, "inspect marks the column-slice view")
    check(re.search(r"^buffers \(not counted\):\n  blocks\.0\.sa\.heads\.0\.tril", r.stdout, re.M)
          is not None, "inspect lists tril buffers apart")
    r = run(["inspect", "--flat", os.path.join(d, "nano-nobias-ckpt.pt")])
    check("other tensors (not counted):" in r.stdout and "best_val_loss" in r.stdout
          and "optimizer.state.0.exp_avg" in r.stdout, "inspect lists optimizer state apart")
    check("model._orig_mod.transformer.wte.weight" in r.stdout and "nanoGPT (n_layer 2, n_head 4"
          in r.stdout, "inspect recognises the compiled nanoGPT checkpoint")
    r = run(["inspect", os.path.join(d, "lecture-fileobj.pt")])
    check("folder 'archive'" in r.stdout, "file-object save has folder 'archive'")
    r = run(["inspect", os.path.join(d, "lecture-p4.pt")])
    check("pickle protocol 4" in r.stdout, "protocol 4 recognised")
    r = run(["inspect", "--flat", os.path.join(d, "nano-bias.pt")])
    check("(same data as transformer.wte.weight)" in r.stdout, "inspect shows the tied head")
    r = run(["inspect", os.path.join(d, "nano-bias.pt")])
    check(re.search(r"^\s+weight .*\(same data as transformer\.wte\.weight\)", r.stdout, re.M)
          is not None, "inspect's tree shows the tied head")


def refusals(d):
    for rf in mc.build_refusals(d):
        args = list(rf.args)
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            f.write(mc.TEXT)
        if args[:1] == ["--corpus-text"]:
            corpus = os.path.join(d, "corpus-other.txt")
            with open(corpus, "w") as f:
                f.write(args[1])
            args = args[2:]
        out = os.path.join(d, "refused.h5")
        r = run(["import", rf.path, "--corpus", corpus, "-o", out] + args)
        msg = r.stderr.strip()
        check(r.returncode == 1 and rf.message in msg and msg.count("\n") == 0
              and msg.startswith("corpuslens import: "),
              f"refuses {rf.name}: rc {r.returncode}: {msg}")
        check(not os.path.exists(out) and not os.path.exists(out + ".tmp"),
              f"{rf.name}: no output file left behind")
        if "vocab" in rf.name or "n_head" in rf.name or "tensor" in rf.name or "shape" in rf.name \
                or "weight" in rf.name or "head" in rf.name:
            continue
        r = run(["inspect", rf.path])
        if "global" in rf.name:
            # inspect lists what import refuses, without calling it (issue 17)
            name = rf.message.split()[-1]
            check(r.returncode == 0 and name in r.stdout,
                  f"inspect lists {rf.name} as an opaque object ({r.stderr.strip()})")
            continue
        check(r.returncode == 1 and rf.message in r.stderr, f"inspect refuses {rf.name} too")


def shared_model(d):
    shared = os.environ.get("SHARED")
    pt = os.path.join(shared or "", "models", "lecture-tinyshakespeare-s1337.pt")
    corpus = os.path.join(shared or "", "data", "tinyshakespeare.txt")
    if not shared or not os.path.exists(pt):
        print(f"skip: the trained model {pt} is not there (SHARED names ../shared; a clone without it "
              "skips this check)")
        return False
    r, n = inspect_count(pt)
    check(n == 10788929, f"shared model: inspect reports {n} parameters (want 10,788,929)")
    check("10,788,929" in r.stdout, "shared model: count printed as 10,788,929")
    out = os.path.join(d, "shared.h5")
    r = run(["import", pt, "--corpus", corpus, "-o", out])
    check(r.returncode == 0, f"shared model: import ({r.stderr.strip()})")
    text = open(corpus, encoding="utf-8").read()
    vocab = tm.vocab_of(text)
    model = tm.LectureGPT(vocab_size=len(vocab)).eval()
    model.load_state_dict(torch.load(pt, map_location="cpu"))
    for prompt in ("And only l", "my most gr"):
        r = run(["predict", "--model", out, "--top", "5", prompt])
        with torch.no_grad():
            p = torch.softmax(model(tm.encode(vocab, [prompt]))[0, -1].double(), -1)
        top = torch.topk(p, 5)
        lines = r.stdout.strip().split("\n")
        ok = r.returncode == 0 and len(lines) == 5
        dmax = 0.0
        for line, pr, i in zip(lines, top.values.tolist(), top.indices.tolist()):
            f = line.split("\t")
            ok &= int(f[1]) == i
            dmax = nanstrict.worst([dmax, abs(float(f[0]) - pr)])
        check(ok and dmax <= 1e-5, f"shared model: predict {prompt!r} top-5 ids equal, "
              f"max|dp| {dmax:.2g}")
    return True


def main():
    nanstrict.control()
    ap = argparse.ArgumentParser()
    ap.add_argument("--refusals-only", action="store_true")
    ap.add_argument("--cases-only", action="store_true")
    ap.add_argument("--shared-only", action="store_true", help="only the trained model of ../shared (77: absent)")
    ap.add_argument("--keep")
    a = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or tmp
        os.makedirs(d, exist_ok=True)
        if a.shared_only:
            if not shared_model(d):
                return 77  # CTest SKIP_RETURN_CODE: the reason is printed
        else:
            if not a.refusals_only:
                cases(d)
            if not a.cases_only:
                refusals(d)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

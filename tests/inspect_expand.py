#!/usr/bin/python3
"""`corpuslens inspect --tensor/--dump` on views that repeat their storage
(issue 21, defect 11): torch.zeros(1).expand(2**26), saved, is a file of a
few hundred bytes whose one tensor has 67,108,864 elements (stride 0). Checked:
  - --dump and --tensor refuse it: nonzero exit, one line on stderr naming
    the cap and --force, no output file (nor its .tmp);
  - a view just above the cap (3 elements repeated 2**19 times: [2**19, 3],
    strides [0, 1]) is refused the same way, and with --force it is dumped
    and its statistics printed: the values equal torch's (NaN-strict, with a
    negative control);
  - a view below the cap (a storage of 1 element expanded 1,000 times) needs
    no --force;
  - --force without --tensor or --dump is a usage error.
The other readers of untrusted tensors are bounded by the file's size too:
  - embed-sim --checkpoint on a [2, 2**27] view of one stored element refuses it
    (it would allocate 2 GB from a file of a few hundred bytes); a genuine
    [2, 64] table is the control;
  - import of a Hugging Face folder whose config.json asks for a model of
    1.6 G parameters over a weights file of a few bytes refuses before
    allocating.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(args):
    return subprocess.run([os.environ["CORPUSLENS"]] + args, capture_output=True, text=True)


def refused(what, r, outs):
    lines = r.stderr.strip().splitlines()
    check(r.returncode != 0, f"{what}: nonzero exit ({r.returncode})")
    check(len(lines) == 1 and "cap" in lines[0] and "--force" in lines[0] and "Sanitizer" not in r.stderr,
          f"{what}: one line naming the cap and --force ({r.stderr.strip()[:300]!r})")
    for o in outs:
        check(not os.path.exists(o) and not os.path.exists(o + ".tmp"), f"{what}: no {os.path.basename(o)}")


def stats_of(text):
    d = {}
    for ln in text.splitlines():
        k, _, v = ln.partition(" ")
        d[k] = v.strip()
    return d


def main():
    with tempfile.TemporaryDirectory() as d:
        huge = os.path.join(d, "huge.pt")
        torch.save({"x": torch.zeros(1).expand(2 ** 26)}, huge)
        print(f"huge.pt: {os.path.getsize(huge)} bytes, shape [2**26], stride [0]")
        out = os.path.join(d, "huge.h5")
        refused("huge --dump", run(["inspect", huge, "--dump", "x", "-o", out]), [out])
        refused("huge --tensor", run(["inspect", huge, "--tensor", "x"]), [])

        above = os.path.join(d, "above.pt")
        base = torch.tensor([1.5, -2.0, 0.25])
        view = base.expand(2 ** 19, 3)
        torch.save({"v": view}, above)
        out = os.path.join(d, "above.h5")
        refused("above --dump", run(["inspect", above, "--dump", "v", "-o", out]), [out])
        refused("above --tensor", run(["inspect", above, "--tensor", "v"]), [])

        r = run(["inspect", above, "--dump", "v", "-o", out, "--force"])
        check(r.returncode == 0 and os.path.exists(out), f"above --dump --force: written ({r.stderr[:200]!r})")
        if r.returncode == 0:
            with h5py.File(out, "r") as f:
                got = f["/tensor"][...]
            ref = view.numpy().astype(np.float32)
            check(got.shape == ref.shape and np.array_equal(got, ref),
                  f"above --dump --force: {got.shape} values equal torch's")
            bad = got.copy()
            bad[-1, -1] = np.nan
            check(not np.array_equal(bad, ref), "negative control: one NaN in the dump is caught")

        r = run(["inspect", above, "--tensor", "v", "--force"])
        check(r.returncode == 0, f"above --tensor --force: exit 0 ({r.stderr[:200]!r})")
        s = stats_of(r.stdout)
        v64 = view.double()
        ref = {"numel": float(v64.numel()), "mean": v64.mean().item(), "std": v64.std().item(),
               "min": v64.min().item(), "max": v64.max().item(), "norm": v64.norm().item()}
        for k, want in ref.items():
            try:
                g = float(s.get(k, "nan"))
            except ValueError:
                g = math.nan
            err = abs(g - want)
            check(err <= 1e-8 * (1 + abs(want)), f"above --tensor --force: {k} {g} vs torch {want}")
        err = abs((ref["mean"] + 1e-3) - ref["mean"])
        check(not (err <= 1e-8 * (1 + abs(ref["mean"]))), "negative control: a mean off by 1e-3 is caught")

        small = os.path.join(d, "small.pt")
        torch.save({"s": torch.full((1,), 3.0).expand(1000)}, small)
        out = os.path.join(d, "small.h5")
        r = run(["inspect", small, "--dump", "s", "-o", out])
        ok = r.returncode == 0 and os.path.exists(out)
        if ok:
            with h5py.File(out, "r") as f:
                ok = np.array_equal(f["/tensor"][...], np.full(1000, 3.0, np.float32))
        check(ok, f"small view (1,000 x 1 element): dumped without --force ({r.stderr[:200]!r})")

        r = run(["inspect", small, "--force"])
        check(r.returncode != 0 and "--force" in r.stderr, f"--force alone: usage error ({r.stderr.strip()[:200]!r})")
        # embed-sim: a table that repeats one stored element
        words = os.path.join(d, "words.txt")
        with open(words, "w") as f:
            f.write("a\nb\n")
        big = os.path.join(d, "emb-view.pt")
        torch.save({"E": torch.randn(1, 1).expand(2, 2 ** 27)}, big)
        r = run(["embed-sim", "--checkpoint", big, "--tensor", "E", "--vocab", words, "a", "b"])
        check(r.returncode != 0 and "refusing" in r.stderr and "Sanitizer" not in r.stderr,
              f"embed-sim on a [2, 2**27] view: refused ({r.stderr.strip()[:200]!r})")
        good = os.path.join(d, "emb.pt")
        torch.save({"E": torch.randn(2, 64)}, good)
        r = run(["embed-sim", "--checkpoint", good, "--tensor", "E", "--vocab", words, "a", "b"])
        check(r.returncode == 0, f"control: embed-sim on a genuine [2, 64] table ({r.stderr.strip()[:200]!r})")

        # import of a Hugging Face folder: config.json's shapes against the weights file's size
        hf = os.path.join(d, "hf")
        os.mkdir(hf)
        with open(os.path.join(hf, "config.json"), "w") as f:
            json.dump({"model_type": "gpt2", "n_layer": 8, "n_head": 32, "n_embd": 4096, "vocab_size": 256,
                       "n_positions": 64}, f)
        # GPT-2's byte-to-unicode table: the printable bytes stand for themselves, the rest map above 255
        keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        extra = [b for b in range(256) if b not in keep]
        char_of = {b: chr(b) for b in keep}
        char_of.update({b: chr(256 + i) for i, b in enumerate(extra)})
        byte_tokens = {char_of[b]: b for b in range(256)}
        with open(os.path.join(hf, "vocab.json"), "w") as f:
            json.dump(byte_tokens, f)
        with open(os.path.join(hf, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
        hdr = b'{"__metadata__":{"format":"pt"}}'
        with open(os.path.join(hf, "model.safetensors"), "wb") as f:
            f.write(len(hdr).to_bytes(8, "little") + hdr)
        out = os.path.join(d, "hf.h5")
        r = run(["import", hf, "-o", out])
        check(r.returncode != 0 and "refusing" in r.stderr and not os.path.exists(out),
              f"import of a 1.6 G-parameter config over an empty weights file: refused ({r.stderr.strip()[:300]!r})")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

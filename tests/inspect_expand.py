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
"""
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
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

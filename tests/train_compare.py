#!/usr/bin/python3
"""Compare the /weights of two corpuslens model files.
usage: train_compare.py A.h5 B.h5 ATOL [--same-train]
ATOL 0 means bitwise. --same-train also requires identical /train/adam_m,
/train/adam_v, /train/step and /train/rng_state. Prints the largest
difference per tensor that differs; exit 1 when any exceeds ATOL."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import nanstrict  # noqa: E402


def main():
    a, b, atol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    same_train = "--same-train" in sys.argv[4:]
    nanstrict.control()
    ok = True
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        na, nb = set(fa["weights"]), set(fb["weights"])
        if na != nb:
            print("tensor names differ:", sorted(na ^ nb))
            return 1
        ds = []
        for n in sorted(na):
            x, y = fa["weights"][n][()], fb["weights"][n][()]
            d = nanstrict.max_abs_diff(x, y)
            ds.append(d)
            if not nanstrict.within(d, atol) or (atol == 0 and not np.array_equal(x.view(np.uint32), y.view(np.uint32))):
                print(f"  {n:40s} max|d| {d:.3g} > {atol:g}")
                ok = False
        print(f"weights: {len(na)} tensors, max|d| {nanstrict.worst(ds):.3g} (allowed {atol:g})")
        if same_train:
            for n in ("adam_m", "adam_v", "step", "rng_state"):
                x, y = fa["train"][n][()], fb["train"][n][()]
                if not np.array_equal(x, y):
                    print(f"  /train/{n} differs")
                    ok = False
            print("training state (adam_m, adam_v, step, rng_state):", "identical" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

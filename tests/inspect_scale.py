#!/usr/bin/python3
"""`corpuslens inspect` on big checkpoints (issue 21, defect 6): its tree
(every dotted path, each tensor's "same data as", and the element and tensor
totals of every subtree, shared data counted once) equals a reference that
PyTorch computes from the same file, independently of corpuslens.

The files (made here with torch):
  many.pt   20,000 tensors: 19,000 siblings in one dict, some of them views of
            a tensor listed earlier (the same storage, offset, shape and
            strides), some aliasing only part of a storage (not the same
            data), and 1,000 under nested dicts;
  alias.pt  a pickle whose 20,000 entries are the one tensor (memoised: the
            file is small), spread over a root dict and 40 sub-dicts, with
            other tensors in between.
With --make DIR the files are written to DIR and nothing is checked (the
benchmark tests/bench/inspect_bench.sh uses them).

The reference: torch.load, walk the object (dict keys and list indices joined
by '.'), group tensors by (storage, offset, dtype, shape, strides), and for
each node of the path tree count each group once. The tree printed by
`inspect` (text) must carry the same totals; a negative control checks that
a wrong total would be caught.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def make_many(path):
    torch.manual_seed(0)
    big = {}
    prev = None
    for i in range(19000):
        if i % 97 == 5 and prev is not None:
            t = prev.view(prev.shape)          # the same data as the one before
        elif i % 89 == 7 and prev is not None:
            t = prev[1:]                       # same storage, other offset: other data
        else:
            t = torch.randn(3, dtype=torch.float32)
        big[f"w{i}"] = t
        prev = t
    nested = {f"block{b}": {f"layer{k}": {"weight": torch.ones(2, 2), "bias": torch.zeros(2)}
                            for k in range(25)} for b in range(20)}
    nested["block0"]["layer0"]["tied"] = nested["block3"]["layer7"]["weight"]
    torch.save({"model": big, "extra": nested, "step": 7}, path)


def make_alias(path):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    root = {}
    for i in range(10000):
        root[f"a{i}"] = t
    for g in range(40):
        root[f"g{g}"] = {f"b{i}": t for i in range(250)}
        root[f"g{g}"]["own"] = torch.full((4,), float(g))
    torch.save(root, path)


def reference(path):
    """{dotted path: (numel, n_tensors)} for every node above a tensor, and
    {tensor path: first path with the same data} (None for itself)."""
    obj = torch.load(path, weights_only=True)
    tensors = []  # (path, key) in file order

    def walk(v, p):
        if isinstance(v, torch.Tensor):
            st = v.untyped_storage() if hasattr(v, "untyped_storage") else v.storage()
            key = (st.data_ptr(), v.storage_offset(), v.dtype,
                   tuple(v.shape), tuple(v.stride()))
            tensors.append((p, key, v.numel()))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{p}.{k}" if p else str(k))
        elif isinstance(v, (list, tuple)):
            for k, x in enumerate(v):
                walk(x, f"{p}.{k}" if p else str(k))

    walk(obj, "")
    first = {}
    same = {}
    groups = {}  # node path -> set of keys
    numel_of = {}
    for p, key, n in tensors:
        same[p] = first.get(key)
        first.setdefault(key, p)
        numel_of[key] = n
        parts = p.split(".")
        for d in range(len(parts) + 1):
            groups.setdefault(".".join(parts[:d]), set()).add(key)
    totals = {node: (sum(numel_of[k] for k in ks), len(ks)) for node, ks in groups.items()}
    return totals, same


def parse_tree(text):
    """The text tree of `inspect`: {dotted path: (numel, n_tensors)} for the
    nodes that print a total, and {tensor path: same-data-as path or None}."""
    lines = text.splitlines()
    start = lines.index("tree: tensor elements per subtree (shared data counted once)") + 1
    totals, same, stack = {}, {}, []
    for ln in lines[start:]:
        if ln.startswith("parameters:"):
            break
        label, desc = ln[:52].rstrip(), ln[53:]
        if label == "(root)":
            path = ""
        else:
            depth = (len(label) - len(label.lstrip(" "))) // 2
            del stack[depth:]
            stack.append(label.strip())
            path = ".".join(stack)
        if re.match(r"(float32|float64|int64) ", desc):
            m = re.search(r"\(same data as (.*)\)$", desc)
            same[path] = m.group(1) if m else None
        else:
            m = re.search(r"([0-9,]+) in ([0-9]+) tensors?$", desc)
            if m:
                totals[path] = (int(m.group(1).replace(",", "")), int(m.group(2)))
    return totals, same


def reference_differs_from(got, ref, same):
    return any(p not in same and got.get(p) != t for p, t in ref.items())


def compare(name, path, binary):
    r = subprocess.run([binary, "inspect", path], capture_output=True, text=True)
    check(r.returncode == 0 and not r.stderr, f"{name}: inspect exits 0 quietly ({r.returncode} {r.stderr[:200]!r})")
    if r.returncode:
        return
    got_tot, got_same = parse_tree(r.stdout)
    ref_tot, ref_same = reference(path)
    check(got_same == ref_same, f"{name}: 'same data as' of all {len(ref_same)} tensors equals torch's grouping")
    # every node above a tensor: the same totals (tensor leaves: their own numel, 1)
    bad = [(p, got_tot.get(p), t) for p, t in ref_tot.items()
           if p not in ref_same and got_tot.get(p) != t]
    bad += [(p, t, None) for p, t in got_tot.items() if p not in ref_tot]
    check(not bad, f"{name}: element and tensor totals of all {len(ref_tot) - len(ref_same)} "
                   f"subtrees equal torch's (first differences: {bad[:3]})")
    # negative control: a total off by one element is caught
    p = "" if "" in ref_tot else next(iter(ref_tot))
    wrong = dict(got_tot)
    wrong[p] = (wrong[p][0] + 1, wrong[p][1])
    check(reference_differs_from(wrong, ref_tot, ref_same) and
          not reference_differs_from(got_tot, ref_tot, ref_same),
          f"{name}: negative control: a wrong root total is caught")
    # the JSON tree carries the same totals
    r = subprocess.run([binary, "inspect", path, "--json"], capture_output=True, text=True)
    jt = {}

    def jwalk(n):
        jt[n["path"]] = (n["numel"], n["n_tensors"])
        for c in n.get("children", []):
            jwalk(c)

    try:
        jwalk(json.loads(r.stdout)["tree"])
    except (ValueError, KeyError) as e:
        check(False, f"{name}: --json parses ({e})")
        return
    bad = [(p, jt.get(p), t) for p, t in ref_tot.items() if jt.get(p) != t]
    bad += [(p, t, (0, 0)) for p, t in jt.items() if p not in ref_tot and t != (0, 0)]
    check(not bad, f"{name}: --json totals of all {len(ref_tot)} nodes equal torch's ({bad[:3]})")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--make":
        make_many(os.path.join(sys.argv[2], "many.pt"))
        make_alias(os.path.join(sys.argv[2], "alias.pt"))
        return 0
    binary = os.environ["CORPUSLENS"]
    with tempfile.TemporaryDirectory() as d:
        for name, make in (("many.pt", make_many), ("alias.pt", make_alias)):
            p = os.path.join(d, name)
            make(p)
            compare(name, p, binary)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

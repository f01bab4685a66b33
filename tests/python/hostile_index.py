#!/usr/bin/python3
"""Hostile index.h5 files (issue 21, "trust no file"): a small real index is
built, then each attribute and dataset is tampered with in turn (h5py), and
`corpuslens explain` must refuse every one with one clear message on stderr
(the expected words), a nonzero exit status below 128 (no signal), no
sanitizer report, no HDF5 error stack and no output file. A few tamperings
that must be harmless (an interrupted sketch is ignored) are checked to give
the untampered result. The "huge" cases (a tiny file whose attributes and
sparse datasets claim 2^26 rows) must also stay within a small memory budget
(max RSS of the child, measured with wait4).

Layout of the file and what the reader promises: include/corpuslens/scan/index.h,
docs/index-integrity.md.
Environment: CORPUSLENS (binary), TESTDATA (tests/data). Exit 0 when every case
passes, 1 otherwise.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EXE = os.environ.get("CORPUSLENS", "corpuslens")
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", CORPUSLENS_HASH_CACHE="0")
FAIL = []
THR, W = "0.8,0.9", "1,2"


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg, flush=True)


def run_rss(args):
    """As run, with the child's own max RSS (wait4)."""
    outf, errf = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(outf.fileno(), 1)
        os.dup2(errf.fileno(), 2)
        os.execvpe(EXE, [EXE] + args, ENV)
    _, status, ru = os.wait4(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    outf.seek(0), errf.seek(0)
    return rc, outf.read().decode(errors="replace"), errf.read().decode(errors="replace"), ru.ru_maxrss


def setup(d):
    src = os.path.join(TESTDATA, "tinyshakespeare.txt")
    with open(src, encoding="utf-8") as f:
        t = f.read()[:3000]
    txt = os.path.join(d, "small.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(t)
    m, c, ix = (os.path.join(d, x) for x in ("m.h5", "c.h5", "i.h5"))
    for args in (["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", txt, "--seed", "7",
                  "-o", m],
                 ["prepare", txt, "--len", "6", "--prompts", "8", "--seed", "3", "--vocab-from", m, "-o", c],
                 ["index", "--model", m, "--corpus", c, "--batch", "100", "-o", ix]):
        rc, out, err, _ = run_rss(args)
        if rc != 0:
            print(out, err)
            raise SystemExit("setup failed: " + " ".join(args))
    return m, c, ix


def explain_args(ix, c, m, out):
    return ["explain", "--index", ix, "--corpus", c, "--model", m, "--thresholds", THR, "--weights", W, "-o", out,
            "First", "to be or"]


BAD_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "HDF5-DIAG", "Segmentation", "Aborted")


def expect_refusal(name, path, c, m, d, words, rss_kib=None):
    out = os.path.join(d, "e.h5")
    if os.path.exists(out):
        os.remove(out)
    rc, so, se, rss = run_rss(explain_args(path, c, m, out))
    lines = [x for x in se.splitlines() if x.strip()]
    ok = 0 < rc < 128 and not any(b in se for b in BAD_WORDS) and 1 <= len(lines) <= 2 and \
        all(w.lower() in se.lower() for w in words) and not os.path.exists(out) and \
        not os.path.exists(out + ".tmp")
    check(ok, f"{name}: expected one message with {words}, rc in 1..127, no output; got rc {rc}, stderr: {se[-600:]!r}")
    if rss_kib is not None:
        check(rss <= rss_kib, f"{name}: max RSS {rss} KiB exceeds {rss_kib} KiB before the refusal")
    print(f"{name}: rc {rc}, {rss} KiB: {lines[-1] if lines else ''}", flush=True)


def tamper(src, dst, fn):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)


def set_attr(name, value):
    def fn(f):
        del f.attrs[name]
        f.attrs[name] = value
    return fn


def set_str(name, value):
    return set_attr(name, np.bytes_(value))


def poke(path, idx, value):
    def fn(f):
        a = f[path][()]
        a[idx] = value
        f[path][...] = a
    return fn


def replace_ds(path, data, dtype=None, **kw):
    def fn(f):
        del f[path]
        f.create_dataset(path, data=np.asarray(data, dtype=dtype) if dtype else data, **kw)
    return fn


def swap_rows(f):
    s = f["/substring"][()]
    s[[2, 9]] = s[[9, 2]]
    f["/substring"][...] = s


def dup_id(f):
    s = f["/substring"][()]
    s[7] = s[8]
    f["/substring"][...] = s


def sketch_scale_resid(f):
    r = f["/sketch/resid"][()]
    f["/sketch/resid"][...] = r * np.float32(0.5)


def sketch_coords(f):
    co = f["/sketch/coords"][()]
    co[0, 5, 0] = np.float16(co[0, 5, 0]) + np.float16(0.25)
    f["/sketch/coords"][...] = co


def sketch_swap_proj(f):
    p = f["/sketch/proj"][()]
    p[0, [0, 1]] = p[0, [1, 0]]  # still orthonormal; the coordinates no longer match it
    f["/sketch/proj"][...] = p


def huge(f, n=1 << 26):
    """Attributes and sparse chunked datasets that claim n rows in a small file."""
    lh, C, S = int(f.attrs["n_hook_blocks"]), int(f.attrs["n_embd"]), int(f.attrs["shard_size"])
    ft = f["/vectors"].dtype
    for p in ("/substring", "/vectors"):
        del f[p]
    if "sketch" in f:
        del f["sketch"]
    f.create_dataset("/substring", shape=(n,), dtype="<i4", chunks=(1 << 16,))
    v = f.create_dataset("/vectors", shape=(lh, n, C), dtype=ft, chunks=(1, S, C))
    v[0, :S, :] = 0.5
    del f.attrs["n_substrings"]
    f.attrs["n_substrings"] = np.int64(n)


def huge_vectors_only(f, n=1 << 26):
    """n_substrings and /vectors as claimed; /substring sparse too, as a gzip dataset."""
    huge(f, n)
    del f["/substring"]
    f.create_dataset("/substring", shape=(n,), dtype="<i4", chunks=(1 << 16,), compression="gzip")


def main():
    with tempfile.TemporaryDirectory() as d:
        m, c, ix = setup(d)
        with h5py.File(ix) as f:
            N = int(f.attrs["n_substrings"])
            V = int(f.attrs["vocab_size"])
            C = int(f.attrs["n_embd"])
            has_sketch = "sketch" in f
        check(has_sketch, "the float16 test index has no sketch (the sketch cases need one)")
        # the untampered index: accepted (a control for every refusal below)
        e0 = os.path.join(d, "e0.h5")
        rc, so, se, rss0 = run_rss(explain_args(ix, c, m, e0))
        check(rc == 0, f"the untampered index is refused: {se}")
        base_rss = rss0
        cases = [
            # row ids (defect 1)
            ("id past N", poke("/substring", 0, N), ["/substring", "outside"]),
            ("id 2^31-1", poke("/substring", 3, 2**31 - 1), ["/substring", "outside"]),
            ("negative id", poke("/substring", 5, -1), ["/substring", "outside"]),
            ("duplicate id", dup_id, ["/substring", "twice"]),
            ("rows out of order", swap_rows, ["order"]),
            ("/substring float64", replace_ds("/substring", None), ["/substring"]),
            ("/substring shorter", None, ["/substring"]),
            ("/substring missing", lambda f: f.__delitem__("/substring"), ["/substring"]),
            # the hook (defect 2)
            ("hook mlp_pre", set_str("hook", "mlp_pre"), ["hook", "mlp_pre"]),
            ("hook bogus", set_str("hook", "bogus"), ["hook", "bogus"]),
            ("hook attn pattern", set_str("hook", "blocks.0.attn.hook_pattern"), ["hook", "hook_pattern"]),
            ("hook of block 7", set_str("hook", "blocks.7.hook_mlp_out"), ["hook"]),
            ("hook of one block for 2", set_str("hook", "blocks.1.hook_mlp_out"), ["hook", "block"]),
            ("hook empty", set_str("hook", ""), ["hook"]),
            ("hook_first_block 1", set_attr("hook_first_block", np.int64(1)), ["hook"]),
            # shapes and attributes
            ("n_embd 64", set_attr("n_embd", np.int64(64)), ["bytes"]),
            ("n_embd 16", set_attr("n_embd", np.int64(16)), ["vectors"]),
            ("n_layer 1", set_attr("n_layer", np.int64(1)), ["n_layer"]),
            ("n_hook_blocks 64", set_attr("n_hook_blocks", np.int64(64)), ["blocks"]),
            ("n_substrings N-1", set_attr("n_substrings", np.int64(N - 1)), ["/substring"]),
            ("n_substrings 0", set_attr("n_substrings", np.int64(0)), ["n_substrings"]),
            ("n_substrings string", set_str("n_substrings", "12"), ["n_substrings"]),
            ("n_substrings 2^26, datasets unchanged", set_attr("n_substrings", np.int64(1 << 26)), ["bytes"]),
            ("shard_size 7", set_attr("shard_size", np.int64(7)), ["chunk"]),
            ("shard_size 2^20", set_attr("shard_size", np.int64(1 << 20)), ["chunk"]),
            ("L 5", set_attr("L", np.int64(5)), ["tokens", "L"]),
            ("vocab_size V+1", set_attr("vocab_size", np.int64(V + 1)), ["vocab"]),
            ("dtype float32", set_str("dtype", "float32"), ["bytes"]),
            ("dtype bfloat16", set_str("dtype", "bfloat16"), ["dtype"]),
            ("format_version 2", set_attr("format_version", np.int64(2)), ["format_version"]),
            ("complete 0", set_attr("complete", np.int64(0)), ["incomplete"]),
            ("/vocab other character", None, ["/vocab"]),
            ("/vocab longer", None, ["vocab"]),
            ("/vectors float64", None, ["/vectors"]),
            ("/vectors [Lh, N+1, C]", None, ["/vectors"]),
            ("/vectors gzip", None, ["/vectors"]),
            ("/vectors missing", lambda f: f.__delitem__("/vectors"), ["/vectors"]),
            # a tiny file that claims 2^26 rows (defect 10): refused before allocating
            ("2^26 rows in a tiny file", huge, ["bytes"]),
            ("2^26 rows, gzip /substring", huge_vectors_only, ["bytes"]),
            # the sketch (integrity: its SHA-256)
            ("sketch resid halved", sketch_scale_resid, ["sketch", "checksum"]),
            ("sketch coords changed", sketch_coords, ["sketch", "checksum"]),
            ("sketch proj rows swapped", sketch_swap_proj, ["sketch", "checksum"]),
            ("sketch checksum removed", lambda f: f["/sketch"].attrs.__delitem__("sha256"), ["sketch", "sha256"]),
            ("sketch k 9", lambda f: set_attr("k", np.int64(9))(f["/sketch"]), ["sketch"]),
            ("sketch k 0", lambda f: set_attr("k", np.int64(0))(f["/sketch"]), ["sketch"]),
        ]
        with h5py.File(ix) as f:
            sub = f["/substring"][()]
            vocab = f["/vocab"][()]
            vec = f["/vectors"][()]
        special = {
            "/substring float64": replace_ds("/substring", sub.astype(np.float64)),
            "/substring shorter": replace_ds("/substring", sub[:-1]),
            "/vocab other character": lambda f: f["/vocab"].__setitem__(0, vocab[1]),
            "/vocab longer": replace_ds("/vocab", np.concatenate([vocab, vocab[:1]])),
            "/vectors float64": replace_ds("/vectors", vec.astype(np.float64), chunks=(1, 100, C)),
            "/vectors [Lh, N+1, C]": replace_ds("/vectors", np.concatenate([vec, vec[:, :1]], axis=1),
                                                chunks=(1, 100, C)),
            "/vectors gzip": replace_ds("/vectors", vec, chunks=(1, 100, C), compression="gzip"),
        }
        for i, (name, fn, words) in enumerate(cases):
            fn = special.get(name, fn)
            p = os.path.join(d, f"h{i}.h5")
            try:
                tamper(ix, p, fn)
            except Exception as ex:  # a tampering h5py cannot do is a bug in this test
                check(False, f"{name}: cannot tamper: {ex}")
                continue
            budget = base_rss + 64 * 1024 if name.startswith(("2^26", "n_substrings 2^26")) else None
            expect_refusal(name, p, c, m, d, words, budget)
            os.remove(p)
        # harmless: an interrupted --add-sketch (complete 0) is ignored: the same results as the full pass
        p = os.path.join(d, "ok.h5")
        tamper(ix, p, lambda f: set_attr("complete", np.int64(0))(f["/sketch"]))
        e1 = os.path.join(d, "e1.h5")
        rc, so, se, _ = run_rss(explain_args(p, c, m, e1))
        check(rc == 0, f"an incomplete sketch is not ignored: rc {rc} {se}")
        if rc == 0:
            with h5py.File(e0) as f0, h5py.File(e1) as f1:
                check(np.array_equal(f0["/approx"][()], f1["/approx"][()]) and
                      np.array_equal(f0["/matches/substring"][()], f1["/matches/substring"][()]),
                      "an ignored sketch changes the result")
    if FAIL:
        print(f"{len(FAIL)} failure(s)")
        return 1
    print("hostile_index: every tampered index refused cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())

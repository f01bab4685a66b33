#!/usr/bin/python3
"""Hostile files (issue 21): tamper with each attribute and each dataset of a
REAL model.h5, corpus.h5 and scan.h5 in turn and run the commands that read
them. Every tampered file must be met with one clear message on stderr
("corpuslens: ..."), a nonzero exit below 128 (no signal, no sanitizer
report, no HDF5 error stack), within a time limit, at a bounded peak RSS, and
without an output file that looks complete. A tampering that leaves the file
meaningful (an informational attribute) may be accepted, but must not crash.

The real files come from the tool itself: `init` (a 2-layer model), `prepare`
(a 1,500-character slice of tests/data/tinyshakespeare.txt) and `scan`. Each
command is first run on the untouched files (the control: it must succeed).

usage: hostile_files.py [--kind model|corpus|scan]... [--only SUBSTRING]
                        [--list] [--keep DIR] [-v]
Env: CORPUSLENS (binary), TESTDATA (tests/data). Exit 0: every case passed.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

CL = os.environ.get("CORPUSLENS")
TESTDATA = os.environ.get("TESTDATA", os.path.join(os.path.dirname(__file__), "..", "data"))
TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", "60"))
SAN = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", "HDF5-DIAG",
       "Segmentation fault", "Aborted", "core dumped")


# ---------------------------------------------------------------- running

def run(argv, cwd, timeout=TIMEOUT):
    """(exit status or -signal, stdout, stderr, peak RSS in MiB, timed out)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        p = subprocess.Popen([CL] + argv, cwd=cwd, stdout=so, stderr=se, env=env, start_new_session=True)
        t0, status, ru, timed_out = time.time(), None, None, False
        while status is None:
            pid, st, ru_ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                status, ru = st, ru_
                break
            if time.time() - t0 > timeout:
                timed_out = True
                os.killpg(p.pid, 9)
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        p.returncode = 0  # reaped above
        so.seek(0), se.seek(0)
        out = so.read().decode("utf-8", "replace")
        err = se.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    return code, out, err, ru.ru_maxrss / 1024.0, timed_out


# ---------------------------------------------------------------- fixtures

def build_fixtures(d, kinds):
    text = open(os.path.join(TESTDATA, "tinyshakespeare.txt"), encoding="utf-8").read()[:1500]
    with open(os.path.join(d, "c.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    steps = [
        ["init", "--config", "n_layer=2,n_embd=32,n_head=4,block_size=16", "--vocab-from", "c.txt", "--seed", "1",
         "-o", "m.h5"],
        ["prepare", "c.txt", "--len", "5", "--prompts", "8", "--seed", "1", "--vocab-from", "m.h5", "-o", "c.h5"],
        ["scan", "--model", "m.h5", "--corpus", "c.h5", "--prefilter", "0.5", "--bin-width", "0.1", "-o", "s.h5"],
        ["index", "--model", "m.h5", "--corpus", "c.h5", "-o", "i.h5"],
    ]
    need = {"m.h5", "c.h5"} | ({"s.h5"} if "scan" in kinds else set()) | ({"i.h5"} if "corpus" in kinds else set())
    for a in steps:
        if a[-1] not in need:
            continue
        code, out, err, _, _ = run(a, d, 600)
        if code != 0:
            sys.exit("hostile_files: fixture step failed: %s\n%s" % (" ".join(a), err))


# The commands that read each kind; {F} is the tampered file, {O} an output.
THR = ["--thresholds", "0.8,0.8", "--weights", "1,1"]
COMMANDS = {
    "model": [
        ("predict", ["predict", "--model", "{F}", "First"], None),
        ("generate", ["generate", "--model", "{F}", "--prompt", "First", "-n", "4", "--seed", "1"], None),
        ("inspect", ["inspect", "{F}"], None),
    ],
    "corpus": [
        ("explain", ["explain", "--index", "i.h5", "--corpus", "{F}", "--model", "m.h5"] + THR +
         ["--quiet", "-o", "{O}", "First"], "{O}"),
        ("scan", ["scan", "--model", "m.h5", "--corpus", "{F}", "--prefilter", "0.5", "--bin-width", "0.1",
                  "-o", "{O}"], "{O}"),
        ("index", ["index", "--model", "m.h5", "--corpus", "{F}", "-o", "{O}"], "{O}"),
    ],
    "scan": [
        ("reduce", ["reduce", "{F}"] + THR + ["-o", "{O}"], "{O}/report.h5"),
        ("tune", ["tune", "{F}", "--seed", "1", "-o", "{O}"], "{O}"),
    ],
}
# commands run on every case of a kind; the others on the attribute cases
# and a few datasets (they share the opener with the first)
# (predict: the mapped tensors, inspect: the read ones; explain: the lazy
# corpus opener, scan: the eager one; reduce and tune read scan.h5 apart)
SECONDARY_ALL = {"model": {"predict", "inspect"}, "corpus": {"explain", "scan"}, "scan": {"reduce", "tune"}}
FIXTURE = {"model": "m.h5", "corpus": "c.h5", "scan": "s.h5"}

# Attributes that only inform (provenance, timings): a change may be accepted.
INFORMATIONAL = {
    "corpus": {"corpus_file", "corpus_sha256", "corpus_bytes", "corpus_chars", "vocab_source", "vocab_sha256",
               "prompt_source", "seed", "sampler", "prompt_file", "prompt_file_sha256"},
    "scan": {"model_file", "model_sha256", "corpus_file", "corpus_sha256", "corpus_h5_file", "corpus_h5_sha256",
             "hook", "hook_first", "match_rule", "match_cap", "shard_size", "n_trie_nodes", "wall_seconds", "flops",
             "n_prefiltered_pairs", "n_stored_matches", "match_thresholds", "L"},
    "model": set(),
}
# Attributes used only as an upper bound: a larger (or slightly smaller)
# value cannot be told from the truth; their type and sign are checked.
LOOSE = {"scan": {"n_substrings"}, "corpus": set(), "model": set()}
# Datasets whose values a command never reads (their shape, type and storage
# are checked at open by every command; a changed value may be accepted).
VALUES_UNREAD_BY = {"tune": {"/freq/n_matches", "/lens/probs", "/prompts/next_counts", "/prompts/text"},
                   # explain checks the order is a permutation, not its order (it reads rows on demand)
                   "explain": {"/substrings/sorted"}}
# Datasets a file may lack (written before them): "missing" is accepted
# (/substrings/sorted: the shard order of issue 26; without it the corpus is
# loaded whole and sorted in memory).
OPTIONAL_DSETS = {"corpus": {"/substrings/sorted"}}
VALUE_CHANGES = {"nan", "inf", "minus-inf", "negative", "above-one", "minus-one", "max", "min", "not-utf8",
                 "swap-two", "zero"}
# Datasets that a command does not read (a change may be accepted by it).
UNREAD = {
    "scan": {"/prompts/index", "/matches/index", "/matches/substring", "/matches/similarity"},
    "corpus": set(),
    "model": set(),
}


# ---------------------------------------------------------------- tampering

def items(path):
    """[(object path, attribute name, value)], [dataset paths] of an HDF5 file."""
    attrs, dsets = [], []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            p = "/" + name
            for a in obj.attrs:
                attrs.append((p, a))
            if isinstance(obj, h5py.Dataset):
                dsets.append(p)
        for a in f.attrs:
            attrs.append(("/", a))
        f.visititems(visit)
    return attrs, dsets


def set_attr(f, obj, name, value, dtype=None):
    o = f[obj]
    if name in o.attrs:
        del o.attrs[name]
    if dtype is not None:
        o.attrs.create(name, value, dtype=dtype)
    else:
        o.attrs[name] = value


def attr_cases(kind, obj, name, value):
    """(label, mutator(f), must_refuse)"""
    info = obj == "/" and name in INFORMATIONAL[kind]
    # scan.h5 files older than one-block scans lack it (every block hooked)
    # (token_type, next_layout: absent in corpus files written before BPE corpora = char, csr;
    #  in scan files written before the CSR layout = char, dense)
    optional = (kind == "scan" and name in ("n_hook_blocks", "next_layout", "token_type")) or \
        (kind == "corpus" and name in ("token_type", "next_layout"))
    cases = [("missing", lambda f: f[obj].attrs.__delitem__(name), not info and not optional)]
    v = np.asarray(value)
    if v.dtype.kind in "SUO":  # a string
        cases += [
            ("bogus-string", lambda f: set_attr(f, obj, name, "bogus"), not info),
            ("empty-string", lambda f: set_attr(f, obj, name, ""), not info),
            ("not-utf8", lambda f: set_attr(f, obj, name, np.bytes_(b"\xff\xfe\x80"), dtype="S3"), not info),
            ("int-not-string", lambda f: set_attr(f, obj, name, np.int64(7)), not info),
            ("long-string", lambda f: set_attr(f, obj, name, "x" * 100000), not info),
        ]
    elif v.dtype.kind in "iu":
        x = int(v.reshape(-1)[0])
        loose = obj == "/" and name in LOOSE[kind]  # a bound: its type and sign are checked
        if loose:
            cases[0] = ("missing", cases[0][1], True)
        cases += [
            ("negative", lambda f: set_attr(f, obj, name, np.int64(-1)), not info or loose),
            ("zero", lambda f: set_attr(f, obj, name, np.int64(0)), (not info or loose) and x != 0),
            ("string-not-int", lambda f: set_attr(f, obj, name, "12"), not info or loose),
            ("float-not-int", lambda f: set_attr(f, obj, name, np.float64(x + 0.5)), not info or loose),
            ("array-not-scalar", lambda f: set_attr(f, obj, name, np.array([x, x], dtype=np.int64)),
             not info or loose),
            ("plus-one", lambda f: set_attr(f, obj, name, np.int64(x + 1)), not info and not loose),
            ("minus-one", lambda f: set_attr(f, obj, name, np.int64(x - 1)),
             not info and not loose and x != 0 and x != 1),
            ("huge-2^40", lambda f: set_attr(f, obj, name, np.int64(1 << 40)), not info and not loose),
            ("max-int64", lambda f: set_attr(f, obj, name, np.int64(2**63 - 1)), not info and not loose),
            ("big-2^24", lambda f: set_attr(f, obj, name, np.int64(1 << 24)), not info and not loose),
        ]
    elif v.dtype.kind == "f":
        x = v.reshape(-1)
        def fl(val):
            return lambda f: set_attr(f, obj, name, np.full(x.shape, val) if v.ndim else np.float64(val))
        cases += [
            ("nan", fl(np.nan), not info),
            ("inf", fl(np.inf), not info),
            ("minus-inf", fl(-np.inf), not info),
            ("negative", fl(-1.0), not info),
            ("huge", fl(1e300), not info),
            ("string-not-number", lambda f: set_attr(f, obj, name, "0.5"), not info),
        ]
        if v.ndim:
            cases += [("short-array", lambda f: set_attr(f, obj, name, x[:-1] if len(x) > 1 else x[:0]),
                       not info)]
    return cases


def replace_dset(f, path, data=None, shape=None, dtype=None, chunks=None, maxshape=None, fillvalue=None):
    old = f[path]
    if dtype is None:
        dtype = old.dtype
    attrs = dict(old.attrs)
    del f[path]
    if data is not None:
        d = f.create_dataset(path, data=data, dtype=dtype, chunks=chunks)
    else:
        d = f.create_dataset(path, shape=shape, dtype=dtype, chunks=chunks, maxshape=maxshape, fillvalue=fillvalue)
    for k, v in attrs.items():
        d.attrs[k] = v


def dset_cases(kind, path, ds):
    """(label, mutator(f), must_refuse) for one dataset."""
    unread = path in UNREAD[kind]
    shape, dt = ds.shape, ds.dtype
    cases = [("missing", lambda f: f.__delitem__(path), not unread and path not in OPTIONAL_DSETS.get(kind, ()))]
    if dt.kind in "SO":  # strings: vocab, prompt texts, tokenizer
        data = ds[()]
        if path == "/vocab":
            def dup(f):
                a = f[path][()].copy()
                a[1] = a[0]
                replace_dset(f, path, data=a)
            def bad(f):
                a = f[path][()].copy()
                a[len(a) // 2] = b"\xff\xfe"
                replace_dset(f, path, data=a)
            def two(f):
                a = f[path][()].copy()
                a[len(a) // 2] = b"ab"
                replace_dset(f, path, data=a)
            def nul(f):
                a = f[path][()].copy()
                a[0] = b""
                a[1] = b""
                replace_dset(f, path, data=a)
            cases += [("duplicate", dup, True), ("not-utf8", bad, True), ("two-chars", two, True),
                      ("two-nuls", nul, True),
                      ("int-not-string", lambda f: replace_dset(f, path, data=np.arange(len(data)), dtype="<i4"),
                       True),
                      ("one-short", lambda f: replace_dset(f, path, data=data[:-1]), True),
                      ("one-long", lambda f: replace_dset(f, path, data=np.append(data, data[:1])), True)]
        else:
            def bad(f):
                a = f[path][()].copy()
                a[0] = b"\xff\xfe\xfd"
                replace_dset(f, path, data=a)
            cases += [("not-utf8", bad, not unread),
                      ("one-short", lambda f: replace_dset(f, path, data=data[:-1]), not unread),
                      ("int-not-string", lambda f: replace_dset(f, path, data=np.zeros(len(data), dtype="<i4"), dtype="<i4"),
                       not unread)]
        return cases
    if len(shape) == 0:
        return cases
    n0 = shape[0]

    def reshape_to(new_shape):
        return lambda f: replace_dset(f, path, data=np.zeros(new_shape, dtype=dt))

    cases += [
        ("float64-not-" + dt.name if dt.kind != "f" else "int32-not-float",
         (lambda f: replace_dset(f, path, data=f[path][()].astype(np.float64), dtype=np.float64))
         if dt.kind != "f" else
         (lambda f: replace_dset(f, path, data=f[path][()].astype(np.int32), dtype=np.int32)), not unread),
        ("string-not-number", lambda f: replace_dset(f, path, data=np.full(shape, b"ab", dtype="S2"), dtype="S2"),
         not unread),
        ("one-row-short", reshape_to((n0 - 1,) + shape[1:]) if n0 > 0 else reshape_to((1,) + shape[1:]),
         not unread),
        ("one-row-long", reshape_to((n0 + 1,) + shape[1:]), not unread),
        ("extra-dim", reshape_to(shape + (1,)), not unread),
        ("flattened" if len(shape) > 1 else "as-column",
         reshape_to((int(np.prod(shape)),)) if len(shape) > 1 else reshape_to((n0, 1)), not unread),
        ("empty", reshape_to((0,) + shape[1:]), not unread and n0 > 0),
        # the right shape x 2^20 rows, chunked, nothing written: a tiny file
        ("huge-unwritten", lambda f: replace_dset(f, path, shape=(max(n0, 1) << 20,) + shape[1:], dtype=dt,
                                                  chunks=(1,) + shape[1:] if len(shape) > 1 else (4096,),
                                                  maxshape=(None,) + shape[1:]), not unread),
        # the right shape, chunked, nothing written: reads as fill values
        ("unwritten", lambda f: replace_dset(f, path, shape=shape, dtype=dt,
                                             chunks=tuple(max(1, min(s, 64)) for s in shape),
                                             fillvalue=None), not unread and n0 > 0),
    ]
    if n0 == 0:
        return cases

    def poke(vals):
        def m(f):
            a = f[path][()].copy()
            flat = a.reshape(-1)
            for i, x in vals(flat):
                flat[i] = x
            replace_dset(f, path, data=a)
        return m

    mid = lambda flat: len(flat) // 2
    if dt.kind == "f":
        cases += [
            ("nan", poke(lambda a: [(mid(a), np.nan)]), not unread),
            ("inf", poke(lambda a: [(mid(a), np.inf)]), not unread),
            ("minus-inf", poke(lambda a: [(0, -np.inf)]), not unread),
        ]
        if kind == "scan" and path in ("/model/probs", "/lens/probs", "/freq/bin_lower"):
            cases += [("negative", poke(lambda a: [(mid(a), -0.25)]), True),
                      ("above-one", poke(lambda a: [(mid(a), 7.0)]), True)]
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        cases += [
            ("minus-one", poke(lambda a: [(mid(a), -1)]), not unread),
            ("max", poke(lambda a: [(mid(a), info.max)]), not unread),
            ("min", poke(lambda a: [(len(a) - 1, info.min)]), not unread),
        ]
        if len(shape) == 1 and n0 > 2:
            def swap(f):
                a = f[path][()].copy()
                i = len(a) // 2
                if a[i] == a[i + 1]:
                    a[i + 1] += 3
                a[i], a[i + 1] = a[i + 1], a[i]
                replace_dset(f, path, data=a)
            cases += [("swap-two", swap, not unread and path not in NOT_ORDERED)]
        if path in ZERO_REFUSED:
            cases += [("zero", poke(lambda a: [(int(np.flatnonzero(a)[0]) if np.any(a) else 0, 0)]), True)]
    return cases


# 1-D integer datasets whose swap leaves a valid file (no order to check; no
# checksum in the format, so a swap there cannot be told from other data)
NOT_ORDERED = {"/prompts/index", "/corpus/unigram", "/holdout/tokens", "/substrings/next/count",
               "/substrings/next/token",
               # the training text and its suffix array: two entries swapped are still valid
               # ids and still a permutation (the readers check those in O(n), not the order)
               "/text/tokens", "/text/suffix_array"}
# counts whose zero is invalid
ZERO_REFUSED = {"/substrings/next/count"}


def file_cases(kind, fixture):
    cases = []
    attrs, dsets = items(fixture)
    with h5py.File(fixture, "r") as f:
        for obj, name in attrs:
            for label, m, refuse in attr_cases(kind, obj, name, f[obj].attrs[name]):
                cases.append(("attr %s%s%s %s" % (obj, "" if obj == "/" else "/", name, label), m, refuse, True))
        for p in dsets:
            # the per-layer weights: layer 0's only (the others share the code)
            if kind == "model" and p.startswith("/weights/blocks.") and not p.startswith("/weights/blocks.0."):
                continue
            for label, m, refuse in dset_cases(kind, p, f[p]):
                cases.append(("dset %s %s" % (p, label), m, refuse, label == "missing"))
    cases += special_cases(kind)
    return cases


def truncate_to(frac):
    def m(path):
        n = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(int(n * frac) if frac < 1 else n - 1)
    return m


def special_cases(kind):
    """File-level and cross-item cases: (label, mutator, refuse, run every command)."""
    out = []
    for frac in (0.0, 0.001, 0.25, 0.5, 0.9, 1.0):
        out.append(("file truncated to %s" % ("size-1" if frac == 1 else "%g" % frac),
                    ("raw", truncate_to(frac)), True, True))

    def flip_middle(path):
        n = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(n // 2)
            b = f.read(64)
            f.seek(n // 2)
            f.write(bytes((x ^ 0xA5) for x in b))
    out.append(("file 64 bytes flipped in the middle", ("raw", flip_middle), None, True))
    if kind == "model":
        def big_config(f):  # within every range check, 100s of GB of weights
            g = f["/config"]
            for k, v in (("n_layer", 256), ("n_embd", 16384), ("n_head", 16), ("vocab_size", 1 << 21),
                         ("block_size", 65536)):
                g.attrs[k] = np.int64(v)
        out.append(("config huge but in range (n_layer 256, n_embd 16384, V 2^21)", big_config, True, True))

        def tied_extra(f):
            f["/config"].attrs["tied_head"] = np.int64(1)
        out.append(("config tied_head=1 with lm_head.weight still stored", tied_extra, True, True))

        def extra_tensor(f):
            f.create_dataset("/weights/blocks.7.ln1.weight", data=np.ones(32, dtype=np.float32))
        out.append(("dset /weights/blocks.7.ln1.weight stray tensor", extra_tensor, True, True))

        def bias_two(f):
            f["/config"].attrs["bias"] = np.int64(2)
        out.append(("attr /config/bias is 2", bias_two, True, True))
    if kind == "corpus":
        def huge_consistent(f):  # n_substrings 2^24 and every N-sized dataset unwritten
            N = 1 << 24
            L = int(f.attrs["L"])
            f.attrs["n_substrings"] = np.int64(N)
            replace_dset(f, "/substrings/tokens", shape=(N, L), dtype="<i4", chunks=(65536, L))
            replace_dset(f, "/substrings/first_offset", shape=(N,), dtype="<i8", chunks=(65536,))
            replace_dset(f, "/substrings/next/indptr", shape=(N + 1,), dtype="<i8", chunks=(65536,))
        out.append(("n_substrings 2^24 with unwritten datasets of that size", huge_consistent, True, True))

        def nnz_big(f):
            f.attrs["nnz"] = np.int64(1 << 40)
        out.append(("attr nnz 2^40 (allocation before the shape check)", nnz_big, True, True))

        def indptr_desc(f):
            a = f["/substrings/next/indptr"][()].copy()
            a[1], a[2] = a[2], a[1]
            replace_dset(f, "/substrings/next/indptr", data=a)
        out.append(("dset indptr rows 1,2 swapped", indptr_desc, True, True))

        def token_unsorted(f):
            ind = f["/substrings/next/indptr"][()]
            tok = f["/substrings/next/token"][()].copy()
            i = int(np.flatnonzero(np.diff(ind) >= 2)[0])
            a = int(ind[i])
            tok[a], tok[a + 1] = tok[a + 1], tok[a]
            replace_dset(f, "/substrings/next/token", data=tok)
        out.append(("dset next/token unsorted within a row", token_unsorted, True, True))

        def holdout_bad(f):
            f.create_dataset("/holdout/tokens", data=np.array([1, 2, 9999], dtype=np.int32))
        out.append(("dset /holdout/tokens id past V", holdout_bad, True, True))

        def dup_rows(f):
            t = f["/substrings/tokens"][()].copy()
            t[1] = t[0]
            replace_dset(f, "/substrings/tokens", data=t)
        # not detected: uniqueness of the rows would cost a hash of every
        # substring at each load; asked only not to crash
        out.append(("dset /substrings/tokens rows 0 and 1 equal", dup_rows, False, True))
    if kind == "scan":
        def huge_consistent(f):  # n_prompts 2^22, every P-sized dataset unwritten
            P = 1 << 22
            f.attrs["n_prompts"] = np.int64(P)
            for p in ("/prompts/next_counts", "/model/probs", "/lens/probs", "/freq/counts", "/freq/n_matches",
                      "/prompts/text", "/prompts/index", "/matches/index"):
                d = f[p]
                replace_dset(f, p, shape=(P,) + d.shape[1:], dtype=d.dtype, chunks=(1,) + d.shape[1:])
        out.append(("n_prompts 2^22 with unwritten datasets of that size", huge_consistent, True, True))

        def blocks_more(f):
            f.attrs["n_layer"] = np.int64(3)
        out.append(("attr n_layer 3 with 2-block datasets", blocks_more, True, True))

        def complete0(f):
            f.attrs["complete"] = np.int64(0)
        out.append(("attr complete 0", complete0, True, True))
    return out


# ---------------------------------------------------------------- checking

def check(code, out, err, rss, timed_out, must_refuse, outpath, limit_rss):
    """'' when fine, else why not."""
    if timed_out:
        return "timed out after %gs" % TIMEOUT
    for s in SAN:
        if s in err:
            return "crash/sanitizer/HDF5 report (%s): %s" % (s, tail(err))
    if code < 0 or code >= 128:
        return "killed or crashed (exit %d): %s" % (code, tail(err))
    if rss > limit_rss:
        return "peak RSS %.0f MiB > %.0f MiB" % (rss, limit_rss)
    if code == 0:
        if must_refuse:
            return "accepted (exit 0)"
        return ""
    lines = [l for l in err.splitlines() if l.strip()]
    msgs = [l for l in lines if l.startswith("corpuslens")]
    if not msgs:
        return "exit %d without a 'corpuslens: ...' message: %s" % (code, tail(err))
    if "out of memory" in err or "cannot allocate" in err:
        return "refused only for want of memory: %s" % tail(err)
    if outpath and os.path.exists(outpath):
        return "refused but left %s" % os.path.basename(outpath)
    return ""


def tail(s, n=300):
    s = s.strip().replace("\n", " | ")
    return s[-n:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", action="append", choices=["model", "corpus", "scan"])
    ap.add_argument("--only", action="append", help="run cases whose label contains this")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--stride", type=int, default=1,
                    help="run every N-th case only (the sanitizer build: every case runs in Release)")
    ap.add_argument("--keep")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if not CL:
        sys.exit("hostile_files: set CORPUSLENS")
    kinds = a.kind or ["model", "corpus", "scan"]
    d = a.keep or tempfile.mkdtemp(prefix="hostile.")
    os.makedirs(d, exist_ok=True)
    failures, total = [], 0
    try:
        build_fixtures(d, kinds)
        for kind in kinds:
            fixture = os.path.join(d, FIXTURE[kind])
            cases = file_cases(kind, fixture)
            if a.only:
                cases = [c for c in cases if any(o in c[0] for o in a.only)]
            cases = cases[::max(1, a.stride)]
            if a.list:
                for c in cases:
                    print(kind, c[0], "refuse" if c[2] else "tolerate")
                continue
            # controls: every command succeeds on the untouched file; its RSS
            rss0 = {}
            for name, argv, outp in COMMANDS[kind]:
                shutil.copy(fixture, os.path.join(d, "t.h5"))
                o = os.path.join(d, "out_" + name)
                shutil.rmtree(o, ignore_errors=True)
                if os.path.exists(o):
                    os.remove(o)
                args = [x.replace("{F}", "t.h5").replace("{O}", "out_" + name) for x in argv]
                code, out, err, rss, to = run(args, d)
                if code != 0:
                    failures.append("%s control %s: exit %d: %s" % (kind, name, code, tail(err)))
                rss0[name] = rss
                shutil.rmtree(o, ignore_errors=True) if os.path.isdir(o) else (os.path.exists(o) and os.remove(o))
            for label, mut, refuse, every in cases:
                t = os.path.join(d, "t.h5")
                shutil.copy(fixture, t)
                try:
                    if isinstance(mut, tuple):
                        mut[1](t)
                    else:
                        with h5py.File(t, "r+") as f:
                            mut(f)
                except Exception as e:  # the generator's own limits
                    failures.append("%s %s: cannot build the case: %r" % (kind, label, e))
                    print("FAIL " + failures[-1], flush=True)
                    continue
                for name, argv, outp in COMMANDS[kind]:
                    if not every and name not in SECONDARY_ALL[kind] and not label.startswith("attr") \
                            and label.startswith("dset"):
                        continue
                    o = os.path.join(d, "out_" + name)
                    if os.path.isdir(o):
                        shutil.rmtree(o)
                    elif os.path.exists(o):
                        os.remove(o)
                    args = [x.replace("{F}", "t.h5").replace("{O}", "out_" + name) for x in argv]
                    code, out, err, rss, to = run(args, d)
                    total += 1
                    want = refuse
                    if want is None:
                        want = False  # a flip may hit slack bytes: no crash asked, not a refusal
                    words = label.split()
                    if words[0] == "dset" and words[-1] in VALUE_CHANGES and \
                            words[1] in VALUES_UNREAD_BY.get(name, ()):
                        want = False
                    op = os.path.join(d, outp.replace("{O}", "out_" + name)) if outp else None
                    why = check(code, out, err, rss, to, want, op, max(2.5 * rss0[name], rss0[name] + 150))
                    line = "%s %-58s %-8s exit %3d rss %5.0f MiB  %s" % (kind, label, name, code, rss,
                                                                         why or "ok")
                    if why:
                        failures.append(line)
                    if a.verbose or why:
                        print(("FAIL " if why else "ok   ") + line, flush=True)
                        if a.verbose and code:
                            print("      " + tail(err, 200), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    if a.list:
        return 0
    print("hostile_files: %d runs, %d failed" % (total, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

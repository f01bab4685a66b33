#!/usr/bin/python3
"""Refusals of the model loader and of the text encoder, and bad `init` configs.

Each check runs the corpuslens binary (env CORPUSLENS) on a broken input and
requires a nonzero exit status and a stderr message that names what is wrong
(the file, the tensor and its shapes, the character and its position, the
config field). One line per check; exit 1 if any check fails.
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

TEXT = "hello world, said the fox.\n"
VOCAB = tm.vocab_of(TEXT)
DIMS = dict(vocab_size=len(VOCAB), n_embd=32, n_head=4, n_layer=2, block_size=16)

failures = []


def run(args):
    exe = os.environ.get("CORPUSLENS")
    if not exe:
        sys.exit("bad_model.py: CORPUSLENS (path of the corpuslens binary) is not set")
    r = subprocess.run([exe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def expect_refusal(label, args, must=(), regex=(), exit_codes=None):
    """args must fail (exit != 0; in exit_codes if given); stderr must contain each
    string of `must` and match each pattern of `regex`."""
    rc, out, err = run(args)
    problems = []
    if rc == 0:
        problems.append("exit status 0")
    elif exit_codes and rc not in exit_codes:
        problems.append(f"exit status {rc}, expected one of {exit_codes}")
    if rc < 0 or rc >= 128:
        problems.append(f"killed by a signal / crashed (status {rc})")
    for s in must:
        if s not in err:
            problems.append(f"stderr lacks {s!r}")
    for p in regex:
        if not re.search(p, err):
            problems.append(f"stderr does not match /{p}/")
    if "Sanitizer" in err or "runtime error:" in err:
        problems.append("sanitizer report")
    msg = err.strip().replace("\n", " | ")
    if problems:
        failures.append(label)
        print(f"FAIL {label}: {'; '.join(problems)}\n     exit {rc}, stderr: {msg}")
    else:
        print(f"ok   {label}: exit {rc}: {msg}")


def expect_ok(label, args):
    rc, out, err = run(args)
    if rc != 0:
        failures.append(label)
        print(f"FAIL {label}: exit {rc}, stderr: {err.strip()}")
    else:
        print(f"ok   {label}")
    return out


def write_good(path, **kw):
    m = tm.make_lecture(5, **DIMS)
    tm.write_model_h5(path, m, VOCAB, **kw)
    return m


def main():
    d = tempfile.mkdtemp(prefix="cl-bad-")
    good = os.path.join(d, "good.h5")
    write_good(good)
    expect_ok("a good model predicts", ["predict", "--model", good, "--top", "3", "hello"])

    # --- files that are not corpuslens models
    p = os.path.join(d, "text.h5")
    with open(p, "w") as f:
        f.write("this is not HDF5\n")
    expect_refusal("not an HDF5 file", ["predict", "--model", p, "hello"],
                   must=[p], regex=[r"(?i)not an hdf5 file"])
    p = os.path.join(d, "nonexistent.h5")
    expect_refusal("missing file", ["predict", "--model", p, "hello"], must=[p])
    p = os.path.join(d, "empty.h5")
    with h5py.File(p, "w") as f:
        f["x"] = np.zeros(3, np.float32)
    expect_refusal("HDF5 without /config", ["predict", "--model", p, "hello"],
                   must=[p], regex=[r"(?i)not a corpuslens model"])
    p = os.path.join(d, "format.h5")
    write_good(p, config_overrides={"format": "some-other-model"})
    expect_refusal("/config format is not corpuslens-model", ["predict", "--model", p, "hello"],
                   must=[p], regex=[r"(?i)not a corpuslens model"])
    p = os.path.join(d, "version.h5")
    write_good(p, config_overrides={"format_version": 2})
    expect_refusal("unsupported format_version", ["predict", "--model", p, "hello"],
                   must=[p], regex=[r"(?i)version"])

    # --- bad config attributes
    p = os.path.join(d, "noattr.h5")
    write_good(p)
    with h5py.File(p, "a") as f:
        del f["config"].attrs["n_head"]
    expect_refusal("/config lacks n_head", ["predict", "--model", p, "hello"], must=[p, "n_head"])
    p = os.path.join(d, "divis.h5")
    write_good(p, config_overrides={"n_head": 5})
    expect_refusal("n_head does not divide n_embd", ["predict", "--model", p, "hello"],
                   must=[p, "n_head"])
    p = os.path.join(d, "act.h5")
    write_good(p, config_overrides={"activation": "tanh"})
    expect_refusal("activation tanh", ["predict", "--model", p, "hello"], must=[p, "activation"])
    p = os.path.join(d, "scale.h5")
    write_good(p, config_overrides={"attn_scale": "sqrt"})
    expect_refusal("attn_scale sqrt", ["predict", "--model", p, "hello"], must=[p, "attn_scale"])

    # --- vocabulary
    p = os.path.join(d, "vocablen.h5")
    write_good(p)
    with h5py.File(p, "a") as f:
        v = f["vocab"][()]
        del f["vocab"]
        f.create_dataset("vocab", data=v[:-1], dtype=tm.vocab_dtype())
    expect_refusal("/vocab shorter than vocab_size", ["predict", "--model", p, "hello"],
                   must=[p], regex=[r"(?i)vocab"])

    # --- tensors
    p = os.path.join(d, "missing.h5")
    write_good(p, tensors={"blocks.1.ffwd.net.2.weight": None})
    expect_refusal("missing tensor", ["predict", "--model", p, "hello"],
                   must=[p, "blocks.1.ffwd.net.2.weight"], regex=[r"(?i)missing"])
    p = os.path.join(d, "missingbias.h5")
    write_good(p, tensors={"lm_head.bias": None})
    expect_refusal("missing head bias (head_bias=1)", ["predict", "--model", p, "hello"],
                   must=[p, "lm_head.bias"])
    C = DIMS["n_embd"]
    p = os.path.join(d, "shape.h5")
    write_good(p, tensors={"blocks.0.sa.qkv.weight": np.zeros((3 * C, C + 1), np.float32)})
    expect_refusal("wrong shape", ["predict", "--model", p, "hello"],
                   must=[p, "blocks.0.sa.qkv.weight"],
                   regex=[rf"\b{3 * C}\D{{1,3}}{C + 1}\b", rf"\b{3 * C}\D{{1,3}}{C}\b"])
    p = os.path.join(d, "rank.h5")
    write_good(p, tensors={"ln_f.bias": np.zeros((1, C), np.float32)})
    expect_refusal("wrong rank", ["predict", "--model", p, "hello"], must=[p, "ln_f.bias"])

    # --- texts
    expect_refusal("character outside the vocabulary",
                   ["predict", "--model", good, "he\u00e9Qo"],  # 'é' at character 2, byte 2..3
                   must=["U+00E9"], regex=[r"\bposition 2\b|\bcharacter 2\b|\b3rd\b"])
    expect_refusal("4-byte character outside the vocabulary",
                   ["predict", "--model", good, "hello \U0001D11E"],
                   must=["U+1D11E"], regex=[r"\b6\b"])
    expect_refusal("invalid UTF-8", ["predict", "--model", good,
                                     b"hel\xfflo".decode("utf-8", "surrogateescape")],
                   regex=[r"(?i)utf-?8"])
    expect_refusal("text longer than block_size",
                   ["predict", "--model", good, "hello world, said the fox"],
                   regex=[r"(?i)block_size|block size|too long|16"])
    acts = os.path.join(d, "acts.h5")
    expect_refusal("capture texts of different lengths",
                   ["capture", "--model", good, "-o", acts, "--all-hooks", "hello", "hell"],
                   regex=[r"(?i)length"])
    if os.path.exists(acts):
        failures.append("capture left an output after an error")
        print("FAIL capture left", acts, "after an error")
    expect_refusal("capture an unknown hook",
                   ["capture", "--model", good, "-o", acts, "--hook", "blocks.0.hook_nonsense", "hello"],
                   must=["blocks.0.hook_nonsense"])
    expect_refusal("capture a hook of a layer that does not exist",
                   ["capture", "--model", good, "-o", acts, "--hook", "blocks.7.hook_mlp_out", "hello"],
                   must=["blocks.7"])

    # --- init with bad --config values
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(TEXT)
    out = os.path.join(d, "init.h5")

    def init(spec):
        return ["init", "--config", spec, "--vocab-from", corpus, "--seed", "1", "-o", out]
    expect_ok("init with a good config", init("n_layer=1,n_head=2,n_embd=16,block_size=8"))
    expect_ok("the initialised model predicts", ["predict", "--model", out, "--top", "2", "hello"])
    os.unlink(out)
    for spec, names in [
        ("n_layer=0", ["n_layer"]),
        ("n_layer=abc", ["n_layer"]),
        ("n_embd=-8", ["n_embd"]),
        ("n_embd=64,n_head=5", ["n_head"]),
        ("block_size=0", ["block_size"]),
        ("activation=tanh", ["activation"]),
        ("attn_scale=sqrt", ["attn_scale"]),
        ("ln_eps=0", ["ln_eps"]),
        ("bias=2", ["bias"]),
        ("colour=blue", ["colour"]),
        ("n_layer", ["n_layer"]),
    ]:
        expect_refusal(f"init --config {spec}", init(spec), must=names)
        if os.path.exists(out) or os.path.exists(out + ".tmp"):
            failures.append(f"init --config {spec} left a file")
            print(f"FAIL init --config {spec} left {out}")
            for q in (out, out + ".tmp"):
                if os.path.exists(q):
                    os.unlink(q)
    expect_refusal("init --vocab-from a missing file",
                   ["init", "--vocab-from", os.path.join(d, "nope.txt"), "-o", out],
                   must=["nope.txt"])

    import shutil
    shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"bad_model: {len(failures)} check(s) failed: {failures}")
        return 1
    print("bad_model: all refusals as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())

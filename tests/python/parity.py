#!/usr/bin/python3
"""Parity of the C forward pass with PyTorch (the oracle).

For each case: build a model in PyTorch (tests/python/torch_models.py), write
it as a corpuslens model file, run `corpuslens capture --all-hooks` on a batch of
strings, and compare the logits and every hook point at every layer with the
PyTorch forward. One line per tensor (llm.c style): name, shape, max |Δ|,
max |ref|. The test fails (exit 1) if any max |Δ| exceeds the tolerance
(1e-4 absolute) or a shape or a hook is missing.

Reference precision: by default the PyTorch forward runs in float64 on the
exact float32 weights written to the file, so the C float32 result is compared
with the (nearly) exact result, not with another float32 computation that
shares its rounding: the stricter oracle. --ref float32 compares with
PyTorch float32 instead.

Also checks: `capture --last` (last position of each hook, and logits),
`capture --hook NAME` (only the named hooks are written), and
`predict --top 5` against torch's softmax top-5 (1e-5).

Environment: CORPUSLENS (the binary), SHARED (../shared: corpus and trained
model, optional). Usage: parity.py [--case NAME]... [--ref float64|float32]
[--keep DIR] [--list]
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nanstrict  # noqa: E402
import torch_models as tm  # noqa: E402

TOL = 1e-4          # max |Δ| allowed for every activation and the logits
PRED_TOL = 1e-5     # predict: printed probability vs torch softmax

# A small text whose vocabulary covers escapes and 1..4-byte UTF-8 characters.
SMALL_TEXT = ('First Citizen:\nBefore we proceed any further, hear me speak.\n'
              'All:\t"Speak, speak." \\ é—ü 𝄞 Zoë\n')


def corpuslens():
    exe = os.environ.get("CORPUSLENS")
    if not exe:
        sys.exit("parity.py: CORPUSLENS (path of the corpuslens binary) is not set")
    return exe


def run_c(args, check=True):
    r = subprocess.run([corpuslens()] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if check and r.returncode != 0:
        raise RuntimeError(f"corpuslens {' '.join(args[:1])} failed (exit {r.returncode}):\n{err}")
    return r.returncode, out, err


def sample_texts(alphabet_text, B, T, seed, natural=None):
    """B strings of T characters: slices of `natural` (if long enough) first,
    then random strings over the characters of alphabet_text."""
    rng = random.Random(seed)
    out = []
    if natural and len(natural) > T:
        for _ in range(B // 2):
            s = rng.randrange(0, len(natural) - T)
            out.append(natural[s:s + T])
    chars = tm.vocab_of(alphabet_text)
    while len(out) < B:
        out.append("".join(rng.choice(chars) for _ in range(T)))
    return out


class Table:
    def __init__(self, title):
        self.rows, self.fail, self.title = [], [], title
        print(f"\n== {title}")
        print(f"{'tensor':40s} {'shape':>18s} {'max|Δ|':>10s} {'max|ref|':>10s}")

    def check(self, name, c, ref, tol=TOL):
        ref = ref.detach().cpu().numpy() if torch.is_tensor(ref) else np.asarray(ref)
        shape = "x".join(map(str, ref.shape))
        if c is None:
            print(f"{name:40s} {shape:>18s} {'MISSING':>10s}")
            self.fail.append(f"{name}: missing in the C output")
            return
        c = np.asarray(c)
        if c.shape != ref.shape:
            print(f"{name:40s} {shape:>18s} {'SHAPE':>10s}  C has {c.shape}")
            self.fail.append(f"{name}: C shape {c.shape} != reference {ref.shape}")
            return
        d = np.abs(c.astype(np.float64) - ref.astype(np.float64))
        md = float(d.max()) if d.size else 0.0
        if not np.isfinite(c).all():
            md = float("inf")
        mr = float(np.abs(ref).max()) if ref.size else 0.0
        bad = not (md <= tol)
        print(f"{name:40s} {shape:>18s} {md:10.3e} {mr:10.3e}{'  FAIL' if bad else ''}")
        self.rows.append((name, md))
        if bad:
            at = np.unravel_index(int(np.argmax(d)), d.shape)
            self.fail.append(f"{name}: max|Δ| {md:.3e} > {tol:g} at {tuple(int(i) for i in at)} "
                             f"(C {float(c[at]):.7g}, ref {float(ref[at]):.7g})")

    def note_fail(self, msg):
        print("  FAIL: " + msg)
        self.fail.append(msg)


def read_capture(path, with_tokens=False):
    with h5py.File(path, "r") as f:
        logits = f["logits"][()] if "logits" in f else None
        tokens = f["tokens"][()] if "tokens" in f else None
        hooks = {}
        if "hooks" in f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    hooks[name] = obj[()]
            f["hooks"].visititems(visit)
    return (logits, hooks, tokens) if with_tokens else (logits, hooks)


def last_of(name, ref):
    """The --last view of a full reference activation."""
    if name.endswith("attn.hook_pattern"):
        return ref[:, :, -1, :]      # [B, H, T]
    return ref[:, -1, :]             # [B, D]


def c_escape(ch):
    """cl_token_escape: \\n \\t \\\\ \\" , \\xNN for other controls, UTF-8 otherwise."""
    table = {"\n": "\\n", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
    if ch in table:
        return table[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return "\\x%02x" % ord(ch)
    return ch


def check_predict(tab, model_path, model, vocab, text, k=5):
    idx = tm.encode(vocab, [text])
    with torch.no_grad():
        probs = torch.softmax(model.double()(idx)[0, -1], dim=-1)
        model.float()
    rc, out, err = run_c(["predict", "--model", model_path, "--top", str(k), text], check=False)
    label = f"predict --top {k} {text!r}"
    if rc != 0:
        tab.note_fail(f"{label}: exit {rc}: {err.strip()}")
        return
    lines = out.rstrip("\n").split("\n")
    if len(lines) != k:
        tab.note_fail(f"{label}: {len(lines)} lines, expected {k}:\n{out}")
        return
    kth = float(torch.topk(probs, k).values[-1])
    prev, worst = 2.0, 0.0
    for ln in lines:
        parts = ln.split("\t")
        if len(parts) != 3:
            tab.note_fail(f"{label}: bad line {ln!r}")
            return
        p, i, tok = float(parts[0]), int(parts[1]), parts[2]
        if len(parts[0].split(".")[-1]) != 6:
            tab.note_fail(f"{label}: probability {parts[0]!r} is not printed with 6 decimals")
        if not 0 <= i < len(vocab):
            tab.note_fail(f"{label}: id {i} out of range")
            return
        worst = max(worst, abs(p - float(probs[i])))
        if tok != c_escape(vocab[i]):
            tab.note_fail(f"{label}: token of id {i} printed {tok!r}, expected {c_escape(vocab[i])!r}")
        if p > prev + 1e-12:
            tab.note_fail(f"{label}: not sorted by probability ({p} after {prev})")
        if float(probs[i]) < kth - PRED_TOL:
            tab.note_fail(f"{label}: id {i} (p {float(probs[i]):.6f}) is not in torch's top {k}")
        prev = p
    bad = worst > PRED_TOL
    print(f"{label[:40]:40s} {'top%d' % k:>18s} {worst:10.3e} {float(probs.max()):10.3e}"
          f"{'  FAIL' if bad else ''}")
    if bad:
        tab.note_fail(f"{label}: probability differs from torch by {worst:.3e} > {PRED_TOL:g}")


def run_case(case, workdir, ref_dtype):
    name = case["name"]
    model, vocab = case["build"]()
    tab = Table(f"{name}: {case['desc']}  (reference: torch {str(ref_dtype).split('.')[-1]})")
    path = os.path.join(workdir, name + ".h5")
    tm.write_model_h5(path, model, vocab)
    ref_model = model.to(ref_dtype)
    for bi, texts in enumerate(case["batches"]):
        idx = tm.encode(vocab, texts)
        B, T = idx.shape
        logits, hooks = tm.run_with_hooks(ref_model, idx)
        acts = os.path.join(workdir, f"{name}.acts{bi}.h5")
        rc, out, err = run_c(["capture", "--model", path, "-o", acts, "--all-hooks"] + texts,
                             check=False)
        print(f"-- batch {bi}: B={B} T={T}, capture --all-hooks")
        if rc != 0:
            tab.note_fail(f"capture failed (exit {rc}): {err.strip()}")
            continue
        c_logits, c_hooks, c_tokens = read_capture(acts, with_tokens=True)
        if c_tokens is None or c_tokens.shape != tuple(idx.shape) or (c_tokens != idx.numpy()).any():
            tab.note_fail("/tokens differs from the PyTorch encoding of the texts")
        for hn in tm.hook_names(model.n_layer):
            tab.check(hn, c_hooks.get(hn), hooks[hn])
        tab.check("logits", c_logits, logits)
        extra = sorted(set(c_hooks) - set(hooks))
        if extra:
            tab.note_fail(f"capture wrote unexpected datasets: {extra[:5]}")
        if bi == 0 and case.get("extras"):
            # --last with named hooks (a short name expands to every block):
            # only those are written, last position only
            # ("embed" is the block-0 input residual, written as blocks.0.hook_resid_pre;
            # ln_final with --last takes the forward's last-position-only final LayerNorm)
            asked = [f"blocks.{model.n_layer - 1}.hook_mlp_out", "blocks.0.attn.hook_pattern",
                     "hook_pos_embed", "ln_final.hook_normalized", "resid_mid", "embed"]
            sel = (asked[:4] + [f"blocks.{i}.hook_resid_mid" for i in range(model.n_layer)]
                   + ["blocks.0.hook_resid_pre"])
            acts2 = os.path.join(workdir, f"{name}.last.h5")
            args = ["capture", "--model", path, "-o", acts2, "--last"]
            for s in asked:
                args += ["--hook", s]
            rc, out, err = run_c(args + texts, check=False)
            print(f"-- batch {bi}: capture --last --hook {' --hook '.join(asked)}")
            if rc != 0:
                tab.note_fail(f"capture --last failed (exit {rc}): {err.strip()}")
            else:
                c_logits, c_hooks = read_capture(acts2)
                for s in sel:
                    tab.check(s + " [last]", c_hooks.get(s), last_of(s, hooks[s]))
                if c_logits is not None and c_logits.ndim == 2:
                    tab.check("logits [last]", c_logits, logits[:, -1, :])
                else:
                    tab.check("logits [last]", c_logits if c_logits is None else c_logits[:, -1, :],
                              logits[:, -1, :])
                if set(c_hooks) != set(sel):
                    tab.note_fail(f"capture --hook wrote {sorted(c_hooks)}, asked for {sel}")
    model.float()
    for text in case.get("predict", []):
        check_predict(tab, path, model, vocab, text)
    if case.get("predict_all"):  # every token: all escapes, the whole distribution
        check_predict(tab, path, model, vocab, case["predict_all"], k=len(vocab))
    return tab


def negative_controls(workdir, ref_dtype):
    """The comparison must see small errors: files that differ from the PyTorch
    model in one setting or one number must fail, first at the expected tensor."""
    tab = Table("negative-controls: deliberately wrong files must be caught")
    vocab = tm.vocab_of(SMALL_TEXT)
    dims = dict(vocab_size=len(vocab), n_embd=64, n_head=4, n_layer=2, block_size=32)
    model = tm.make_lecture(16, **dims)
    texts = sample_texts(SMALL_TEXT, 3, 12, 16, SMALL_TEXT)
    idx = tm.encode(vocab, texts)
    logits, hooks = tm.run_with_hooks(model.to(ref_dtype), idx)
    model.float()
    ln2b = tm.canonical_tensors(model)["blocks.1.ln2.bias"].copy()
    ln2b[3] += 2e-4
    controls = [
        ("attn_scale flipped", dict(config_overrides={"attn_scale": "n_embd"}),
         "blocks.0.attn.hook_pattern"),
        ("blocks.1.ln2.bias[3] + 2e-4", dict(tensors={"blocks.1.ln2.bias": ln2b}),
         "blocks.1.ln2.hook_normalized"),
    ]
    for label, kw, first in controls:
        path = os.path.join(workdir, "negative.h5")
        tm.write_model_h5(path, model, vocab, **kw)
        acts = os.path.join(workdir, "negative.acts.h5")
        rc, out, err = run_c(["capture", "--model", path, "-o", acts, "--all-hooks"] + texts,
                             check=False)
        if rc != 0:
            tab.note_fail(f"{label}: capture failed (exit {rc}): {err.strip()}")
            continue
        c_logits, c_hooks = read_capture(acts)
        got = None
        for hn in tm.hook_names(model.n_layer) + ["logits"]:
            c = c_logits if hn == "logits" else c_hooks.get(hn)
            r = (logits if hn == "logits" else hooks[hn]).numpy()
            if c is None or c.shape != r.shape or np.abs(c - r).max() > TOL:
                got = hn
                break
        ok = got == first
        print(f"{label:40s} first tensor over {TOL:g}: {got}{'' if ok else '  FAIL (expected ' + first + ')'}")
        tab.controls = getattr(tab, "controls", 0) + 1
        if not ok:
            tab.note_fail(f"{label}: first tensor over the tolerance is {got}, expected {first}")
    return tab


def shared_dir():
    d = os.environ.get("SHARED", "")
    return d if d and os.path.isdir(d) else None


def shakespeare():
    d = shared_dir()
    if not d:
        return None
    p = os.path.join(d, "data", "tinyshakespeare.txt")
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return f.read()


def small_case(name, desc, family, seed, predict=("Zoë 𝄞\n\t\"\\",), predict_all=None, **kw):
    vocab = tm.vocab_of(SMALL_TEXT)
    dims = dict(vocab_size=len(vocab), n_embd=64, n_head=4, n_layer=2, block_size=32)

    def build():
        if family == "lecture":
            return tm.make_lecture(seed, **dims, **kw), vocab
        return tm.make_nanogpt(seed, **dims, **kw), vocab
    return dict(name=name, desc=desc, build=build,
                batches=[sample_texts(SMALL_TEXT, 5, 17, seed, SMALL_TEXT),
                         sample_texts(SMALL_TEXT, 2, 32, seed + 100, SMALL_TEXT)],
                extras=True, predict=list(predict), predict_all=predict_all)


def cases():
    cs = [
        small_case("lecture-small", "lecture model 2x64, 4 heads, block 32, relu, 1/sqrt(hs)",
                   "lecture", 11, predict=("Before we proceed", "Zoë 𝄞\n\t\"\\", "F"),
                   predict_all="hear me"),
        small_case("lecture-small-nembd", "lecture model 2x64, attention scale 1/sqrt(n_embd)",
                   "lecture", 12, attn_scale="n_embd"),
        small_case("lecture-small-gelu", "lecture model 2x64 with GELU (untied head + gelu)",
                   "lecture", 13, activation="gelu"),
        small_case("nanogpt-small-bias", "nanoGPT 2x64, bias=True (gelu, tied head, qkv bias)",
                   "nanogpt", 14, bias=True),
        small_case("nanogpt-small-nobias", "nanoGPT 2x64, bias=False (no biases at all)",
                   "nanogpt", 15, bias=False),
    ]
    text = shakespeare()
    # without ../shared: TinyShakespeare's 65 characters
    big_vocab_text = text or "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def build_big():
        vocab = tm.vocab_of(big_vocab_text)
        return tm.make_lecture(21, vocab_size=len(vocab)), vocab
    cs.append(dict(name="lecture-6x384", desc="lecture model 6x384, 6 heads, block 256, random weights",
                   build=build_big,
                   batches=[sample_texts(big_vocab_text, 4, 64, 21, text),
                            sample_texts(big_vocab_text, 8, 10, 22, text)],
                   extras=True, predict=["my most gr"]))

    def build_nano_big():
        vocab = tm.vocab_of(big_vocab_text)
        return tm.make_nanogpt(22, vocab_size=len(vocab), n_layer=6, n_head=6, n_embd=384,
                               block_size=256, bias=True), vocab
    cs.append(dict(name="nanogpt-6x384", desc="nanoGPT 6x384, bias=True, random weights",
                   build=build_nano_big,
                   batches=[sample_texts(big_vocab_text, 4, 48, 23, text)]))
    d = shared_dir()
    pt = os.path.join(d, "models", "lecture-tinyshakespeare-s1337.pt") if d else None

    def build_trained():
        m = tm.LectureGPT()
        m.load_state_dict(torch.load(pt, map_location="cpu"))
        return m.eval(), tm.vocab_of(text)
    have = pt and os.path.exists(pt) and text
    cs.append(dict(name="lecture-trained", desc="the trained lecture model (shared/models)",
                   build=build_trained,
                   skip=None if have else "SHARED lacks models/lecture-tinyshakespeare-s1337.pt "
                                          "or data/tinyshakespeare.txt",
                   batches=[["And only l", "my most gr", "hing tremb", "med me Aut"],
                            sample_texts(text or "x", 4, 64, 31, text)],
                   predict=["And only l", "my most gr"]))
    return cs


def main():
    nanstrict.control()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", help="case name (repeatable; default all)")
    ap.add_argument("--ref", choices=["float64", "float32"], default="float64")
    ap.add_argument("--keep", help="write the model and capture files here and keep them")
    ap.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--negative", action="store_true",
                    help="also run the negative controls (wrong files must fail)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    all_cases = cases()
    if a.list:
        for c in all_cases:
            print(f"{c['name']:22s} {c['desc']}")
        return 0
    chosen = all_cases
    if a.case:
        known = {c["name"]: c for c in all_cases}
        unknown = [n for n in a.case if n not in known]
        if unknown:
            print(f"parity.py: unknown case(s) {unknown}; --list shows them", file=sys.stderr)
            return 2
        chosen = [known[n] for n in a.case]
    ref_dtype = torch.float64 if a.ref == "float64" else torch.float32
    tabs = []
    with tempfile.TemporaryDirectory(prefix="cl-parity-") as tmp:
        wd = a.keep or tmp
        os.makedirs(wd, exist_ok=True)
        if chosen and all(c.get("skip") for c in chosen) and not a.negative:
            for c in chosen:
                print(f"skip: {c['name']}: {c['skip']}")
            return 77  # CTest SKIP_RETURN_CODE
        for c in chosen:
            if c.get("skip"):
                print(f"\n== {c['name']}: SKIPPED ({c['skip']})")
                continue
            try:
                tabs.append(run_case(c, wd, ref_dtype))
            except Exception as e:  # a crash of the oracle side is a failure too
                t = Table(c["name"])
                t.note_fail(f"{type(e).__name__}: {e}")
                tabs.append(t)
        if a.negative:
            tabs.append(negative_controls(wd, ref_dtype))
    print("\n== summary")
    nfail = 0
    for t in tabs:
        status = "OK" if not t.fail else f"FAIL ({len(t.fail)})"
        if hasattr(t, "controls"):
            print(f"{t.title.split(':')[0]:24s} controls {t.controls:3d}  (each caught at the expected tensor)  {status}")
        else:
            worst = max((md for _, md in t.rows), default=float("nan"))
            print(f"{t.title.split(':')[0]:24s} tensors {len(t.rows):4d}  worst max|Δ| {worst:.3e}  {status}")
        for m in t.fail:
            print("   " + m)
        nfail += len(t.fail)
    if nfail:
        print(f"parity: {nfail} failure(s) (tolerance {TOL:g})")
        return 1
    print(f"parity: all tensors within {TOL:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Checkpoint fixtures for `corpuslens import` / `inspect`, written by PyTorch
at test time (never committed): small lecture gpt.py and nanoGPT models saved
the ways real checkpoints are saved, plus hostile and unsupported files.

build_cases(dir) -> list of Case (file, import options, the PyTorch model
whose float32 weights equal what the file holds, expected parameter count).
build_refusals(dir) -> list of Refusal (file, import options, expected
message fragment). Run directly (`make_checkpoints.py DIR`) to write them all
and print a listing (used to make the fuzzers' seed corpus).

Models come from torch_models.py (the same lecture and nanoGPT definitions
the forward-pass parity test uses). Only /usr/bin/python3 (python3-torch).
"""
import collections
import copy
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n"
        "All:\nSpeak, speak.\n")
VOCAB = tm.vocab_of(TEXT)
V = len(VOCAB)
SMALL = dict(vocab_size=V, n_embd=32, n_head=4, n_layer=2, block_size=16)

Case = collections.namedtuple("Case", "name path args model n_params")
Refusal = collections.namedtuple("Refusal", "name path args message")


def n_params(model):
    """Parameters counted once (tied tensors once), buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def as_dtype(model, dtype):
    """The float32 model whose weights are model's rounded to dtype."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return m


def write_safetensors(path, tensors, metadata=None):
    """safetensors by hand (the package may be missing): 8-byte LE header
    length, JSON header, contiguous little-endian data."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def nano_model_args(m):
    return dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd,
                block_size=m.block_size, bias=m.bias, vocab_size=m.vocab_size,
                dropout=0.0)


def build_cases(d):
    cases = []
    lec = tm.make_lecture(11, **SMALL)
    lec_n = tm.make_lecture(12, attn_scale="n_embd", **SMALL)
    nano_b = tm.make_nanogpt(13, bias=True, **SMALL)
    nano_nb = tm.make_nanogpt(14, bias=False, **SMALL)
    nano_3h = tm.make_nanogpt(15, bias=True, **dict(SMALL, n_head=2))

    def add(name, model, args, saver):
        path = os.path.join(d, name)
        saver(path)
        cases.append(Case(name, path, args, model, n_params(model)))

    # the lecture model: a plain state dict, protocol 2 (torch's default)
    add("lecture.pt", lec, [], lambda p: torch.save(lec.state_dict(), p))
    # keep_vars=True: Parameters (torch._utils._rebuild_parameter)
    add("lecture-keepvars.pt", lec, [],
        lambda p: torch.save(lec.state_dict(keep_vars=True), p))
    # protocol 4: FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL
    add("lecture-p4.pt", lec, [], lambda p: torch.save(lec.state_dict(), p, pickle_protocol=4))

    # saved to a file object: the archive's folder is "archive"
    def to_fileobj(p):
        buf = io.BytesIO()
        torch.save(lec.state_dict(), buf)
        with open(p, "wb") as f:
            f.write(buf.getvalue())
    add("lecture-fileobj.pt", lec, [], to_fileobj)
    # lecture-era attention scale 1/sqrt(n_embd)
    add("lecture-nembd.pt", lec_n, ["--attn-scale", "n_embd"],
        lambda p: torch.save(lec_n.state_dict(), p))
    # half / bfloat16 / double storages
    for dt, tag in ((torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.float64, "f64")):
        sd = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in lec.state_dict().items()}
        add(f"lecture-{tag}.pt", as_dtype(lec, dt), [], lambda p, sd=sd: torch.save(sd, p))

    # views: a transposed (non-contiguous) tensor, a slice with a storage
    # offset, and a column slice (offset + row stride larger than its width)
    def views(p):
        sd = collections.OrderedDict(lec.state_dict())
        w = sd["blocks.0.ffwd.net.0.weight"]
        sd["blocks.0.ffwd.net.0.weight"] = w.t().contiguous().t()  # strides (1, rows)
        b = sd["blocks.1.ffwd.net.2.weight"]
        big = torch.cat([torch.randn(37), b.flatten(), torch.randn(5)])
        sd["blocks.1.ffwd.net.2.weight"] = big[37:37 + b.numel()].view(b.shape)
        h = sd["lm_head.weight"]
        wide = torch.randn(h.shape[0], h.shape[1] + 7)
        wide[:, 3:3 + h.shape[1]] = h
        sd["lm_head.weight"] = wide[:, 3:3 + h.shape[1]]
        assert not sd["lm_head.weight"].is_contiguous()
        torch.save(sd, p)
    add("lecture-views.pt", lec, [], views)

    # nanoGPT state dicts: bias on (n_head given), bias off in a training
    # checkpoint with model_args, the compiled prefix and optimizer state
    add("nano-bias.pt", nano_b, ["--n-head", "4"], lambda p: torch.save(nano_b.state_dict(), p))

    def train_ckpt(p):
        opt = torch.optim.AdamW(nano_nb.parameters(), lr=1e-3)
        sd = collections.OrderedDict(("_orig_mod." + k, v) for k, v in nano_nb.state_dict().items())
        # one optimizer step's state on a copy (the saved model stays as is)
        m2 = copy.deepcopy(nano_nb).train()
        opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
        loss = m2(torch.zeros(1, 4, dtype=torch.long)).sum()
        loss.backward()
        opt2.step()
        ck = {"model": sd, "optimizer": opt2.state_dict(), "model_args": nano_model_args(nano_nb),
              "iter_num": 250, "best_val_loss": torch.tensor(1.4697),
              "config": {"batch_size": 12, "learning_rate": 1e-3, "dataset": "shakespeare_char",
                         "compile": True, "decay_lr": False, "betas": (0.9, 0.99)}}
        del opt
        torch.save(ck, p)
    add("nano-nobias-ckpt.pt", nano_nb, [], train_ckpt)
    add("nano-2head-f16.pt", as_dtype(nano_3h, torch.float16), ["--n-head", "2"],
        lambda p: torch.save(copy.deepcopy(nano_3h).half().state_dict(), p))  # still tied

    # safetensors: lecture in float32 (tril buffers kept), nanoGPT in bf16
    # without the tied lm_head (as safetensors' save_model writes it)
    add("lecture.safetensors", lec, [],
        lambda p: write_safetensors(p, lec.state_dict(), {"format": "pt"}))
    add("nano-bias-bf16.safetensors", as_dtype(nano_b, torch.bfloat16), ["--n-head", "4"],
        lambda p: write_safetensors(p, {k: v.to(torch.bfloat16) for k, v in
                                        nano_b.state_dict().items()
                                        if k != "lm_head.weight" and not k.endswith(".attn.bias")}))
    return cases


# ---------------------------------------------------------------------------
# files that must be refused

def _patch_central(data, entry_suffix, field_off, value, fmt="<I"):
    """Patch a field of the central-directory header of the entry whose name
    ends with entry_suffix."""
    data = bytearray(data)
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            raise ValueError("entry not found: " + entry_suffix)
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        name = bytes(data[pos + 46:pos + 46 + nlen]).decode()
        if name.endswith(entry_suffix):
            struct.pack_into(fmt, data, pos + field_off, value)
            return bytes(data)
        pos += 4


def _zip_with(path, entries, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, data in entries:
            z.writestr(name, data)


def build_refusals(d):
    out = []
    lec = tm.make_lecture(21, **SMALL)
    good = os.path.join(d, "ok-lecture.pt")
    torch.save(lec.state_dict(), good)
    raw = open(good, "rb").read()

    def put(name, data):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    out.append(Refusal("truncated zip", put("truncated.pt", raw[:len(raw) // 2]), [],
                       "truncated"))
    # the storage entry data/0 claims more bytes than the file holds
    big = _patch_central(_patch_central(raw, "/data/0", 20, 0x7FFFFFF0), "/data/0", 24, 0x7FFFFFF0)
    out.append(Refusal("entry past the end", put("past-end.pt", big), [], "past the end of the file"))
    # local header offset outside the file
    far = _patch_central(raw, "/data/1", 42, 0x7FFFFFF0)
    out.append(Refusal("local header outside", put("far-header.pt", far), [], "outside the file"))
    # a pickle that would call os.system
    evil = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."
    p = os.path.join(d, "evil.pt")
    _zip_with(p, [("evil/data.pkl", evil), ("evil/version", b"3\n")])
    out.append(Refusal("os.system global", p, [], "refusing pickle global os.system"))
    # the same through protocol 4's STACK_GLOBAL, and builtins.eval via pickle
    evil4 = pickle.dumps(eval, protocol=4)  # noqa: S301 (bytes only, never loaded)
    p = os.path.join(d, "evil4.pt")
    _zip_with(p, [("evil4/data.pkl", evil4), ("evil4/version", b"3\n")])
    out.append(Refusal("builtins.eval global", p, [], "refusing pickle global builtins.eval"))
    # TorchScript archive
    p = os.path.join(d, "scripted.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), p)
    out.append(Refusal("TorchScript archive", p, [], "TorchScript"))
    # legacy (pre-1.6) serialization
    p = os.path.join(d, "legacy.pt")
    torch.save(lec.state_dict(), p, _use_new_zipfile_serialization=False)
    out.append(Refusal("legacy file", p, [], "legacy (pre-1.6"))
    # a deflated archive (re-zipped)
    p = os.path.join(d, "deflated.pt")
    with zipfile.ZipFile(good) as zin:
        _zip_with(p, [(i.filename, zin.read(i.filename)) for i in zin.infolist()],
                  zipfile.ZIP_DEFLATED)
    out.append(Refusal("compressed entry", p, [], "compressed (method 8)"))
    # vocabulary size mismatch (corpus with one character fewer)
    out.append(Refusal("vocab mismatch", good, ["--corpus-text", TEXT.replace("z", "")],
                       "has vocab size"))
    # a missing tensor
    sd = lec.state_dict()
    del sd["blocks.1.ffwd.net.2.bias"]
    p = os.path.join(d, "missing.pt")
    torch.save(sd, p)
    out.append(Refusal("missing tensor", p, [], "missing tensor 'blocks.1.ffwd.net.2.bias'"))
    # a missing head of the fused q,k,v
    sd = lec.state_dict()
    del sd["blocks.0.sa.heads.2.value.weight"]
    p = os.path.join(d, "missing-head.pt")
    torch.save(sd, p)
    out.append(Refusal("missing head", p, [], "missing tensor 'blocks.0.sa.heads.2.value.weight'"))
    # an unexpected tensor
    sd = lec.state_dict()
    sd["blocks.1.extra.weight"] = torch.zeros(3)
    p = os.path.join(d, "extra.pt")
    torch.save(sd, p)
    out.append(Refusal("unexpected tensor", p, [], "unexpected tensor 'blocks.1.extra.weight'"))
    # a wrong shape
    sd = lec.state_dict()
    sd["blocks.0.ffwd.net.0.bias"] = torch.zeros(5)
    p = os.path.join(d, "shape.pt")
    torch.save(sd, p)
    out.append(Refusal("wrong shape", p, [], "'blocks.0.ffwd.net.0.bias' has shape [5]"))
    # an integer weight
    sd = lec.state_dict()
    sd["ln_f.weight"] = torch.ones(sd["ln_f.weight"].shape, dtype=torch.long)
    p = os.path.join(d, "int.pt")
    torch.save(sd, p)
    out.append(Refusal("integer weight", p, [], "dtype int64"))
    # nanoGPT state dict without model_args and without --n-head
    nano = tm.make_nanogpt(22, bias=False, **SMALL)
    p = os.path.join(d, "nano-nohead.pt")
    torch.save(nano.state_dict(), p)
    out.append(Refusal("nanoGPT needs n_head", p, [], "pass --n-head N"))
    # safetensors whose header runs past the end, and whose tensor does
    p = os.path.join(d, "trunc.safetensors")
    write_safetensors(p, {"token_embedding_table.weight": torch.zeros(V, 32)})
    st = open(p, "rb").read()
    out.append(Refusal("safetensors truncated", put("trunc.safetensors", st[:len(st) - 9]), [],
                       "truncated"))
    hdr = struct.pack("<Q", 10**12) + b"{}"
    out.append(Refusal("safetensors huge header", put("huge.safetensors", hdr), [],
                       "exceeds 100,000,000"))
    return out


def build_fuzz_seeds(ckpt_dir, pickle_dir):
    """Tiny checkpoints (a few KB) for the fuzzers' seed corpora: whole files
    for the checkpoint harness, their data.pkl for the pickle harness."""
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(pickle_dir, exist_ok=True)
    tiny = dict(vocab_size=5, n_embd=4, n_head=2, n_layer=1, block_size=3)
    lec = tm.make_lecture(31, **tiny)
    nano = tm.make_nanogpt(32, bias=True, **tiny)
    files = []

    def save(name, obj, **kw):
        p = os.path.join(ckpt_dir, name)
        torch.save(obj, p, **kw)
        files.append(p)

    save("lecture.pt", lec.state_dict())
    save("lecture-p4.pt", lec.state_dict(), pickle_protocol=4)
    save("lecture-keepvars.pt", lec.state_dict(keep_vars=True))
    save("lecture-f16.pt", {k: v.half() for k, v in lec.state_dict().items()})
    sd = collections.OrderedDict(lec.state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"].t().contiguous().t()
    sd["ln_f.bias"] = torch.cat([torch.zeros(2), sd["ln_f.bias"]])[2:]
    save("lecture-views.pt", sd)
    opt = torch.optim.AdamW(nano.parameters())
    nano(torch.zeros(1, 2, dtype=torch.long)).sum().backward()
    opt.step()
    save("nano-ckpt.pt", {"model": {"_orig_mod." + k: v for k, v in nano.state_dict().items()},
                          "optimizer": opt.state_dict(), "model_args": nano_model_args(nano),
                          "iter_num": 1, "best_val_loss": torch.tensor(2.5),
                          "config": {"lr": 1e-3, "compile": True, "betas": (0.9, 0.99)}})
    # objects of other classes, for inspect's opaque reader: NEWOBJ + BUILD
    # (Namespace), REDUCE + SETITEMS on a dict subclass (defaultdict,
    # Counter), sets, bytes, a big integer
    import argparse
    others = {"model": lec.state_dict(), "opt": argparse.Namespace(lr=1e-3, layers=[2, 3], name="x"),
              "counts": collections.Counter("abracadabra"),
              "dd": collections.defaultdict(list, {"a": [torch.ones(2)]}),
              "s": {1, 2}, "fs": frozenset({"a"}), "b": b"\x00\xff", "big": 2 ** 80}
    save("objects.pt", others)
    save("objects-p4.pt", others, pickle_protocol=4)
    buf = io.BytesIO()
    torch.save(lec.state_dict(), buf)
    with open(os.path.join(ckpt_dir, "fileobj.pt"), "wb") as f:
        f.write(buf.getvalue())
    write_safetensors(os.path.join(ckpt_dir, "lecture.safetensors"), lec.state_dict(),
                      {"format": "pt", "note": "caf\u00e9 \"q\""})
    write_safetensors(os.path.join(ckpt_dir, "nano-bf16.safetensors"),
                      {k: v.to(torch.bfloat16) for k, v in nano.state_dict().items()
                       if not k.endswith(".attn.bias") and k != "lm_head.weight"})
    for p in files:
        with zipfile.ZipFile(p) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            with open(os.path.join(pickle_dir, os.path.basename(p) + ".pkl"), "wb") as f:
                f.write(z.read(pkl))
    with open(os.path.join(pickle_dir, "evil.pkl"), "wb") as f:
        f.write(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--fuzz-seeds":
        build_fuzz_seeds(sys.argv[2], sys.argv[3])
        return
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(d, exist_ok=True)
    for c in build_cases(d):
        print(f"case    {c.name:32s} {c.n_params:8d} params  {' '.join(c.args)}")
    for r in build_refusals(d):
        print(f"refusal {os.path.basename(r.path):32s} {r.name}: {r.message}")
    with open(os.path.join(d, "corpus.txt"), "w") as f:
        f.write(TEXT)


if __name__ == "__main__":
    main()

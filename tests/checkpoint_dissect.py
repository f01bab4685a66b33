#!/usr/bin/python3
"""`corpuslens inspect` and `embed-sim --checkpoint` on any torch.save file.

PyTorch writes an OpenNMT-py-shaped checkpoint here: the module and parameter
names of OpenNMT-py's Transformer encoder and decoder (the decoder's word
embedding shared with the generator, as -share_decoder_embeddings does), an
argparse.Namespace of options, a vocabulary object of a small class of a
module named like OpenNMT's, and the optimizer state. Checked:
  - the tree lists every tensor of the state dict, the generator and the
    optimizer with PyTorch's dtype and shape, and the objects by class name;
  - element totals per subtree (model, model.encoder, model.decoder,
    generator, optim, the root) equal PyTorch's own numbers (parameters() +
    buffers() of the modules, unique storages of the optimizer state);
  - --tensor statistics equal torch's float64 mean/std/min/max/norm;
  - --dump writes the tensor bit for bit;
  - embed-sim --checkpoint: the cosine table and --nearest equal numpy's;
  - no code runs: objects whose __reduce__ would write a file (builtins.open,
    os.system) are listed and the files are never written; `import` refuses
    the checkpoint by the class name.
Each numeric check is NaN-strict and has a negative control.
"""
import argparse
import collections
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import types

import h5py
import numpy as np
import torch
from torch import nn

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(args):
    return subprocess.run([os.environ["CORPUSLENS"]] + args, capture_output=True, text=True)


# ---- OpenNMT-py's Transformer module names (onmt/encoders/transformer.py,
# onmt/decoders/transformer.py, onmt/modules/{embeddings,multi_headed_attn,
# position_ffn}.py) ----

class MultiHeadedAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.linear_keys = nn.Linear(d, d)
        self.linear_values = nn.Linear(d, d)
        self.linear_query = nn.Linear(d, d)
        self.final_linear = nn.Linear(d, d)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.w_1 = nn.Linear(d, ff)
        self.w_2 = nn.Linear(ff, d)
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)


class PositionalEncoding(nn.Module):
    def __init__(self, d, max_len=16):
        super().__init__()
        pe = torch.zeros(max_len, d)
        pos = torch.arange(0, max_len).unsqueeze(1).float()
        div = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe.unsqueeze(1))


class Elementwise(nn.ModuleList):
    pass


class Embeddings(nn.Module):
    def __init__(self, d, vocab):
        super().__init__()
        self.make_embedding = nn.Sequential(collections.OrderedDict(
            [("emb_luts", Elementwise([nn.Embedding(vocab, d, padding_idx=1)])),
             ("pe", PositionalEncoding(d))]))

    @property
    def word_lut(self):
        return self.make_embedding.emb_luts[0]


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.self_attn = MultiHeadedAttention(d)
        self.feed_forward = PositionwiseFeedForward(d, ff)
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.self_attn = MultiHeadedAttention(d)
        self.context_attn = MultiHeadedAttention(d)
        self.feed_forward = PositionwiseFeedForward(d, ff)
        self.layer_norm_1 = nn.LayerNorm(d, eps=1e-6)
        self.layer_norm_2 = nn.LayerNorm(d, eps=1e-6)


class TransformerEncoder(nn.Module):
    def __init__(self, layers, d, ff, vocab):
        super().__init__()
        self.embeddings = Embeddings(d, vocab)
        self.transformer = nn.ModuleList([TransformerEncoderLayer(d, ff) for _ in range(layers)])
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)


class TransformerDecoder(nn.Module):
    def __init__(self, layers, d, ff, vocab):
        super().__init__()
        self.embeddings = Embeddings(d, vocab)
        self.transformer_layers = nn.ModuleList([TransformerDecoderLayer(d, ff) for _ in range(layers)])
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)


class NMTModel(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


# the vocabulary object: a class of a module named like OpenNMT's
for _name in ("onmt", "onmt.inputters", "onmt.inputters.vocab"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
vocab_mod = sys.modules["onmt.inputters.vocab"]


class Vocab:
    def __init__(self, words):
        self.itos = list(words)
        self.stoi = {w: i for i, w in enumerate(words)}
        self.specials = ["<unk>", "<blank>", "<s>", "</s>"]
        self.freqs = torch.arange(len(words), dtype=torch.long) * 3


Vocab.__module__ = "onmt.inputters.vocab"
Vocab.__qualname__ = "Vocab"
vocab_mod.Vocab = Vocab


class WritesFile:
    """Unpickling this would create `path` (open(path, 'w'), pickled as io.open)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class RunsShell:
    """Unpickling this would run `touch path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ("touch " + self.path,))


WORDS = ["<unk>", "<blank>", "<s>", "</s>", "king", "queen", "man", "woman", "apple", "pear",
         "the", "a", "of", "and", "to", "in"]


def build(d):
    torch.manual_seed(7)
    V, D, FF = len(WORDS), 16, 32
    enc = TransformerEncoder(2, D, FF, V)
    dec = TransformerDecoder(2, D, FF, V)
    model = NMTModel(enc, dec)
    generator = nn.Sequential(nn.Linear(D, V), nn.LogSoftmax(dim=-1))
    generator[0].weight = dec.embeddings.word_lut.weight  # share_decoder_embeddings
    params = list(model.parameters()) + [generator[0].bias]
    adam = torch.optim.Adam(params, lr=2.0)
    x = torch.randint(0, V, (3, 5))
    emb = enc.embeddings.word_lut(x)
    loss = generator(dec.layer_norm(enc.layer_norm(emb))).sum()
    for layer in list(enc.transformer) + list(dec.transformer_layers):
        for p in layer.parameters():
            loss = loss + 1e-3 * (p ** 2).sum()
    loss.backward()
    adam.step()
    opt = argparse.Namespace(enc_layers=2, dec_layers=2, heads=2, hidden_size=D,
                             transformer_ff=FF, model_type="text", share_decoder_embeddings=True,
                             dropout=[0.1], optim="adam", learning_rate=2.0, seed=7)
    model_sd = model.state_dict()
    gen_sd = generator.state_dict()
    ckpt = {"model": model_sd, "generator": gen_sd, "vocab": Vocab(WORDS), "opt": opt,
            "optim": {"training_step": 1, "decay_step": 1, "optimizer": adam.state_dict()}}
    path = os.path.join(d, "onmt.pt")
    torch.save(ckpt, path)

    def numel(tensors):
        seen, total = set(), 0
        for t in tensors:
            key = (t.untyped_storage().data_ptr() if hasattr(t, "untyped_storage") else
                   t.storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
            if key not in seen:
                seen.add(key)
                total += t.numel()
        return total, len(seen)

    def module_total(m):
        return numel(list(m.parameters()) + list(m.buffers()))

    optim_tensors = [v for st in adam.state_dict()["state"].values() for v in st.values()
                     if torch.is_tensor(v)]
    vocab_tensors = [ckpt["vocab"].freqs]
    expect = {
        "model": module_total(model),
        "model.encoder": module_total(enc),
        "model.decoder": module_total(dec),
        "model.encoder.transformer.1": module_total(enc.transformer[1]),
        "model.decoder.transformer_layers.0.context_attn": module_total(dec.transformer_layers[0].context_attn),
        "generator": module_total(generator),
        "optim": numel(optim_tensors),
        "vocab": numel(vocab_tensors),
        "": numel(list(model.parameters()) + list(model.buffers()) + list(generator.parameters())
                  + optim_tensors + vocab_tensors),
    }
    return path, ckpt, expect, model_sd


def tree_index(node, out):
    out[node["path"]] = node
    for c in node.get("children", []):
        tree_index(c, out)
    return out


def tree_and_totals(d):
    path, ckpt, expect, model_sd = build(d)
    r = run(["inspect", path, "--json"])
    check(r.returncode == 0, f"inspect --json exits 0 ({r.stderr.strip()})")
    if r.returncode:
        return path, ckpt
    doc = json.loads(r.stdout)
    nodes = tree_index(doc["tree"], {})
    # every tensor, with PyTorch's dtype and shape
    want = {}
    for k, v in ckpt["model"].items():
        want["model." + k] = v
    for k, v in ckpt["generator"].items():
        want["generator." + k] = v
    for pid, st in ckpt["optim"]["optimizer"]["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                want[f"optim.optimizer.state.{pid}.{k}"] = v
    want["vocab.freqs"] = ckpt["vocab"].freqs
    got = {p: n for p, n in nodes.items() if n["kind"] == "tensor"}
    check(set(got) == set(want), f"the tree lists the {len(want)} tensors "
          f"(missing {sorted(set(want) - set(got))[:3]}, extra {sorted(set(got) - set(want))[:3]})")
    bad = [p for p in want if p in got and (got[p]["shape"] != list(want[p].shape)
                                            or got[p]["dtype"] != str(want[p].dtype).replace("torch.", ""))]
    check(not bad, f"dtype and shape of every tensor as PyTorch's (wrong: {bad[:3]})")
    check(doc["n_tensors"] == len(want), f"n_tensors {doc['n_tensors']} == {len(want)}")
    # OpenNMT-py layer names are in the tree
    for p in ["model.encoder.transformer.0.self_attn.linear_keys.weight",
              "model.decoder.transformer_layers.1.context_attn.final_linear.bias",
              "model.decoder.transformer_layers.0.layer_norm_2.weight",
              "model.encoder.embeddings.make_embedding.emb_luts.0.weight",
              "model.encoder.embeddings.make_embedding.pe.pe", "generator.0.weight"]:
        check(p in got, f"tree has {p}")
    # totals per subtree against PyTorch's own numbers
    for prefix, (total, count) in expect.items():
        n = nodes.get(prefix)
        ok = n is not None and n["numel"] == total and n["n_tensors"] == count
        check(ok, f"subtree '{prefix or '(root)'}': {n and n['numel']} elements in "
              f"{n and n['n_tensors']} tensors, PyTorch {total} in {count}")
    # negative control: the shared embedding makes root < sum of the parts
    parts = sum(nodes[p]["numel"] for p in ["model", "generator", "optim", "vocab"])
    check(nodes[""]["numel"] < parts, f"control: root {nodes['']['numel']} counts the tied "
          f"generator weight once (parts sum to {parts})")
    check(got["generator.0.weight"].get("same_data_as") ==
          "model.decoder.embeddings.make_embedding.emb_luts.0.weight",
          "generator.0.weight is shown as the decoder embedding's data")
    # objects: by class name and state, never imported
    check(nodes["vocab"]["kind"] == "object" and nodes["vocab"]["type"] == "onmt.inputters.vocab.Vocab",
          f"vocab is an opaque onmt.inputters.vocab.Vocab ({nodes.get('vocab')})")
    check(nodes.get("vocab.itos", {}).get("text", "").startswith("['<unk>', '<blank>'"),
          f"vocab.itos shown from its state ({nodes.get('vocab.itos', {}).get('text')})")
    check(nodes["opt"]["type"] == "argparse.Namespace", "opt is an argparse.Namespace")
    check(nodes.get("opt.enc_layers", {}).get("text") == "2"
          and nodes.get("opt.model_type", {}).get("text") == "'text'"
          and nodes.get("opt.learning_rate", {}).get("text") == "2",
          "opt's fields are listed with their values")
    check(doc["n_objects"] == 2, f"two objects of other classes ({doc['n_objects']})")
    # text tree: indentation and totals
    r = run(["inspect", path])
    check(r.returncode == 0 and "onmt.inputters.vocab.Vocab" in r.stdout
          and re.search(r"^  encoder\s.*" + f"{expect['model.encoder'][0]:,}", r.stdout, re.M) is not None,
          "text tree shows the encoder subtree with its total")
    r = run(["inspect", path, "--depth", "1"])
    check(r.returncode == 0 and "\n  encoder" not in r.stdout and "\nmodel " in r.stdout,
          "--depth 1 stops at the top level")
    return path, ckpt


def stats_and_dump(d, path, ckpt):
    name = "model.encoder.transformer.0.self_attn.linear_keys.weight"
    other = ckpt["model"]["decoder.transformer_layers.1.feed_forward.w_2.weight"].double()
    t = ckpt["model"]["encoder.transformer.0.self_attn.linear_keys.weight"].double()
    r = run(["inspect", path, "--tensor", name])
    check(r.returncode == 0, f"inspect --tensor ({r.stderr.strip()})")
    got = dict(re.findall(r"^(\w+)\s+(\S+)$", r.stdout, re.M))
    ref = {"mean": t.mean().item(), "std": t.std().item(), "min": t.min().item(),
           "max": t.max().item(), "norm": t.norm().item()}
    ctl = {"mean": other.mean().item(), "std": other.std().item(), "min": other.min().item(),
           "max": other.max().item(), "norm": other.norm().item()}
    for k, v in ref.items():
        g = float(got.get(k, "nan"))
        dif = abs(g - v)
        check(dif <= 1e-7 * max(1.0, abs(v)), f"--tensor {k} {g:.9g} vs torch {v:.9g} (|d| {dif:.2g})")
    check(any(not (abs(float(got.get(k, "nan")) - ctl[k]) <= 1e-7 * max(1.0, abs(ctl[k])))
              for k in ctl), "control: another tensor's statistics do not match")
    r = run(["inspect", path, "--tensor", "vocab.freqs"])
    check(r.returncode == 0 and "dtype   int64" in r.stdout
          and float(dict(re.findall(r"^(\w+)\s+(\S+)$", r.stdout, re.M)).get("max", "nan"))
          == float(ckpt["vocab"].freqs.max()), "--tensor on an int64 tensor inside an object")
    r = run(["inspect", path, "--tensor", "model.nope"])
    check(r.returncode == 1 and "no tensor 'model.nope'" in r.stderr, "--tensor of a missing name refused")
    out = os.path.join(d, "t.h5")
    r = run(["inspect", path, "--dump", name, "-o", out])
    check(r.returncode == 0 and os.path.exists(out), f"--dump writes {out} ({r.stderr.strip()})")
    if os.path.exists(out):
        with h5py.File(out, "r") as f:
            a = f["tensor"][()]
            nm = f["tensor"].attrs["name"]
        want = ckpt["model"]["encoder.transformer.0.self_attn.linear_keys.weight"].numpy()
        check(a.dtype == np.float32 and a.shape == want.shape and np.array_equal(a, want)
              and (nm.decode() if isinstance(nm, bytes) else nm) == name, "--dump is bit for bit")
        check(not np.array_equal(a, other.float().numpy()[:a.shape[0], :a.shape[1]]),
              "control: the dump differs from another tensor")
    out2 = os.path.join(d, "f.h5")
    r = run(["inspect", path, "--dump", "vocab.freqs", "-o", out2])
    if r.returncode == 0:
        with h5py.File(out2, "r") as f:
            check(np.array_equal(f["tensor"][()], ckpt["vocab"].freqs.numpy()), "--dump of int64")
    else:
        check(False, f"--dump of int64 ({r.stderr.strip()})")
    bad = os.path.join(d, "bad.h5")
    r = run(["inspect", path, "--dump", "nope", "-o", bad])
    check(r.returncode == 1 and not os.path.exists(bad) and not os.path.exists(bad + ".tmp"),
          "--dump of a missing tensor leaves no file")


def embed_sim(d, path, ckpt):
    words = os.path.join(d, "words.txt")
    with open(words, "w") as f:
        f.write("".join(f"{w}\t{i}\n" for i, w in enumerate(WORDS)))
    name = "model.encoder.embeddings.make_embedding.emb_luts.0.weight"
    E = ckpt["model"]["encoder.embeddings.make_embedding.emb_luts.0.weight"].double().numpy()
    q = ["king", "queen", "apple", "the"]
    r = run(["embed-sim", "--checkpoint", path, "--tensor", name, "--vocab", words,
             "--nearest", "3"] + q)
    check(r.returncode == 0, f"embed-sim --checkpoint ({r.stderr.strip()})")
    rows = [WORDS.index(w) for w in q]
    X = E[rows]
    nrm = np.linalg.norm(X, axis=1)
    S = (X @ X.T) / np.outer(nrm, nrm)
    lines = [ln for ln in r.stdout.splitlines() if re.match(r"^\[\d+\]\s+-?\d", ln)]
    got = np.array([[float(x) for x in ln.split()[1:]] for ln in lines]) if lines else np.zeros(0)
    dif = float(np.abs(got - S).max()) if got.shape == S.shape else float("inf")
    check(dif <= 1e-6, f"cosine table vs numpy: max|d| {dif:.2g}")
    check(not (np.abs(got - np.eye(len(q))).max() <= 1e-6) if got.shape == S.shape else False,
          "control: the table is not the identity")
    with np.errstate(invalid="ignore"):
        En = E / np.linalg.norm(E, axis=1, keepdims=True)
    for w in q:
        i = WORDS.index(w)
        s = En @ En[i]
        s[i] = -np.inf
        s[np.isnan(s)] = -np.inf  # the zero padding row has no direction
        top = [WORDS[j] for j in np.argsort(-s, kind="stable")[:3]]
        m = re.search(rf"^nearest to {re.escape(w)}:(.*)$", r.stdout, re.M)
        gotw = m.group(1).split()[0::2] if m else []
        check(gotw == top, f"--nearest 3 of {w}: {gotw} (numpy {top})")
    r = run(["embed-sim", "--checkpoint", path, "--tensor", name, "--vocab", words, "kingz"])
    check(r.returncode == 1 and "'kingz' is not in" in r.stderr, "unknown word refused")
    short = os.path.join(d, "short.txt")
    with open(short, "w") as f:
        f.write("\n".join(WORDS[:5]) + "\n")
    r = run(["embed-sim", "--checkpoint", path, "--tensor", name, "--vocab", short, "king"])
    check(r.returncode == 1 and "has 5 lines but tensor" in r.stderr, "vocabulary of the wrong size refused")


def no_code_runs(d):
    sd = {"w": torch.ones(2, 3)}
    target1 = os.path.join(d, "written-by-open")
    target2 = os.path.join(d, "written-by-system")
    path = os.path.join(d, "payload.pt")
    torch.save({"model": sd, "payload": WritesFile(target1), "shell": [RunsShell(target2)]}, path)
    for args in (["inspect", path], ["inspect", path, "--json"], ["inspect", path, "--tensor", "model.w"]):
        r = run(args)
        check(r.returncode == 0, f"{' '.join(args[:1] + args[2:])} reads the payload checkpoint ({r.stderr.strip()})")
    r = run(["inspect", path])
    check("io.open(" in r.stdout and target1 in r.stdout, "the io.open object is listed with its argument")
    check("posix.system(" in r.stdout or "os.system(" in r.stdout, "the os.system object is listed")
    check(not os.path.exists(target1) and not os.path.exists(target2), "no file was written by the payloads")
    corpus = os.path.join(d, "c.txt")
    with open(corpus, "w") as f:
        f.write("abc")
    out = os.path.join(d, "x.h5")
    r = run(["import", path, "--corpus", corpus, "-o", out])
    check(r.returncode == 1 and "refusing pickle global io.open" in r.stderr and not os.path.exists(out),
          f"import refuses it by name ({r.stderr.strip()})")
    # control: the same pickle, loaded by PyTorch itself, does write the file
    torch.load(path)
    check(os.path.exists(target1), "control: torch.load(weights_only=False) would have written the file")


def main():
    if not os.environ.get("CORPUSLENS"):
        sys.exit("checkpoint_dissect.py: CORPUSLENS is not set")
    with tempfile.TemporaryDirectory() as d:
        path, ckpt = tree_and_totals(d)
        stats_and_dump(d, path, ckpt)
        embed_sim(d, path, ckpt)
        no_code_runs(d)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()

"""PyTorch oracles for corpuslens: the two model families, a hooked forward pass,
and a writer for the corpuslens HDF5 model file (include/corpuslens/model/model.h).

(a) LectureGPT: the "Let's build GPT" lecture model (gpt.py). Per-head
    key/query/value Linear(C, hs, bias=False) with a `tril` buffer, scale
    hs**-0.5 (or C**-0.5, lecture-era), MultiHeadAttention.proj with bias,
    FeedForward net = [Linear(C,4C), ReLU, Linear(4C,C), Dropout], pre-LN
    blocks, ln_f, lm_head Linear(C, V) with bias. Module and parameter names
    equal the lecture's, so its state_dict loads into this class (210 keys for
    6 x 384).
(b) NanoGPT: nanoGPT model.py GPT (transformer.wte/wpe/h.i.{ln_1, attn.c_attn,
    attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}/ln_f, exact GELU, LayerNorm with
    optional bias, `bias` flag on every Linear, lm_head tied to wte, no bias).

Dimension legend as in model.h: L n_layer, C n_embd, H n_head, hs = C/H,
F = 4C, V vocab, B batch rows, T positions.

Every model is used in eval mode (dropout inactive). run_with_hooks() records
every hook point with the TransformerLens names of include/corpuslens/nn/forward.h,
computed by an explicit forward written out here (no module hooks), and returns
the logits [B, T, V]; plain_forward() is the modules' own forward, used to check
that the explicit one is the same computation.

Only /usr/bin/python3 (Debian: python3-torch, python3-h5py, python3-numpy).
"""
import math

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

# ---------------------------------------------------------------------------
# (a) the lecture model, as in gpt.py


class Head(nn.Module):
    """One head of self-attention (gpt.py)."""

    def __init__(self, n_embd, head_size, block_size, dropout, scale_by):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)
        self.scale_by = scale_by  # "head_size" | "n_embd"

    def scale(self, x):
        # gpt.py: k.shape[-1]**-0.5 (head size); lecture-era: C**-0.5 with C = n_embd
        d = self.key.out_features if self.scale_by == "head_size" else x.shape[-1]
        return d ** -0.5

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)  # (B,T,hs)
        q = self.query(x)  # (B,T,hs)
        wei = q @ k.transpose(-2, -1) * self.scale(x)  # (B,T,T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)
        return wei @ v


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd, num_heads, head_size, block_size, dropout, scale_by):
        super().__init__()
        self.heads = nn.ModuleList(
            [Head(n_embd, head_size, block_size, dropout, scale_by) for _ in range(num_heads)])
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))


class FeedForward(nn.Module):
    def __init__(self, n_embd, dropout, activation="relu"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU() if activation == "relu" else nn.GELU(),  # gelu: a test variant
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout, scale_by, activation="relu"):
        super().__init__()
        head_size = n_embd // n_head
        self.sa = MultiHeadAttention(n_embd, n_head, head_size, block_size, dropout, scale_by)
        self.ffwd = FeedForward(n_embd, dropout, activation)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        x = x + self.ffwd(self.ln2(x))
        return x


class LectureGPT(nn.Module):
    kind = "lecture"

    def __init__(self, vocab_size=65, n_embd=384, n_head=6, n_layer=6, block_size=256,
                 dropout=0.2, attn_scale="head_size", activation="relu"):
        super().__init__()
        assert n_embd % n_head == 0
        assert attn_scale in ("head_size", "n_embd") and activation in ("relu", "gelu")
        self.activation = activation
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.block_size, self.vocab_size = block_size, vocab_size
        self.attn_scale = attn_scale
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(
            *[Block(n_embd, n_head, block_size, dropout, attn_scale, activation)
              for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))
        x = tok_emb + pos_emb
        x = self.blocks(x)
        x = self.ln_f(x)
        return self.lm_head(x)

    def config(self):
        return dict(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                    block_size=self.block_size, vocab_size=self.vocab_size,
                    activation=self.activation, bias=1, qkv_bias=0, head_bias=1, tied_head=0,
                    attn_scale=self.attn_scale, ln_eps=float(self.ln_f.eps))


# ---------------------------------------------------------------------------
# (b) nanoGPT, as in model.py


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = 1e-5

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, bias, dropout):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd = n_head, n_embd
        # the mask buffer of torch < 2 nanoGPT (named "bias", not a bias)
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, bias, dropout):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()  # exact (erf)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class NanoBlock(nn.Module):
    def __init__(self, n_embd, n_head, block_size, bias, dropout):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, bias, dropout)
        self.ln_2 = LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class NanoGPT(nn.Module):
    kind = "nanogpt"

    def __init__(self, vocab_size=65, n_embd=384, n_head=6, n_layer=6, block_size=256,
                 bias=True, dropout=0.0):
        super().__init__()
        assert n_embd % n_head == 0
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.block_size, self.vocab_size, self.bias = block_size, vocab_size, bias
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([NanoBlock(n_embd, n_head, block_size, bias, dropout)
                             for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # all positions (model.py keeps the last one at inference)

    def config(self):
        b = 1 if self.bias else 0
        return dict(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                    block_size=self.block_size, vocab_size=self.vocab_size,
                    activation="gelu", bias=b, qkv_bias=b, head_bias=0, tied_head=1,
                    attn_scale="head_size", ln_eps=float(self.transformer.ln_f.eps))


# ---------------------------------------------------------------------------
# Random weights that make every tensor matter


@torch.no_grad()
def randomize(model, seed):
    """Deterministic non-trivial weights: Linear weights normal(0, 1/sqrt(in))
    (activations O(1), attention logits O(1) so patterns are far from uniform),
    embeddings normal(0, 1) (0.2 when the head is tied to wte, which keeps the
    logits O(10) where float32 still resolves 1e-4), every bias normal(0, 0.1), LayerNorm weights
    1 + normal(0, 0.2) and biases normal(0, 0.1). Buffers (masks) untouched."""
    g = torch.Generator().manual_seed(seed)
    emb_std = 0.2 if isinstance(model, NanoGPT) else 1.0
    seen = set()
    for name, p in model.named_parameters():  # shared (tied) tensors come once
        if id(p) in seen:
            continue
        seen.add(id(p))
        leaf = name.rsplit(".", 1)[-1]
        is_ln = any(s in name for s in ("ln1.", "ln2.", "ln_1.", "ln_2.", "ln_f."))
        if is_ln and leaf == "weight":
            v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
        elif leaf == "bias":
            v = 0.1 * torch.randn(p.shape, generator=g)
        elif p.dim() == 2 and ("embedding" in name or "wte" in name or "wpe" in name):
            v = emb_std * torch.randn(p.shape, generator=g)
        elif p.dim() == 2:
            v = torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1])
        else:
            raise ValueError(f"randomize: unexpected parameter {name} {tuple(p.shape)}")
        p.copy_(v.to(p.dtype))
    return model


def make_lecture(seed=1, **kw):
    torch.manual_seed(seed)
    return randomize(LectureGPT(**kw), seed).eval()


def make_nanogpt(seed=2, **kw):
    torch.manual_seed(seed)
    return randomize(NanoGPT(**kw), seed).eval()


# ---------------------------------------------------------------------------
# Explicit forward with every hook point


def _ln(x, ln):
    return F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)


def _attention(q, k, v, H, scale, mask):
    """q,k,v [B,T,C] heads concatenated -> (z [B,T,C], pattern [B,H,T,T])."""
    B, T, C = q.shape
    hs = C // H
    qh = q.view(B, T, H, hs).transpose(1, 2)
    kh = k.view(B, T, H, hs).transpose(1, 2)
    vh = v.view(B, T, H, hs).transpose(1, 2)
    att = (qh @ kh.transpose(-2, -1)) * scale
    att = att.masked_fill(mask[:T, :T] == 0, float("-inf"))
    att = F.softmax(att, dim=-1)
    z = (att @ vh).transpose(1, 2).contiguous().view(B, T, C)
    return z, att


@torch.no_grad()
def run_with_hooks(model, idx):
    """Run `model` (eval) on idx [B, T] (LongTensor). Returns (logits [B,T,V],
    hooks: dict full hook name -> tensor, shapes as in forward.h)."""
    assert not model.training, "oracles run in eval mode"
    B, T = idx.shape
    hooks = {}
    pos = torch.arange(T, device=idx.device)
    if isinstance(model, LectureGPT):
        wte, wpe = model.token_embedding_table, model.position_embedding_table
        blocks, ln_f = list(model.blocks), model.ln_f
    elif isinstance(model, NanoGPT):
        wte, wpe = model.transformer.wte, model.transformer.wpe
        blocks, ln_f = list(model.transformer.h), model.transformer.ln_f
    else:
        raise TypeError(type(model))
    tok = wte(idx)
    pe = wpe(pos).unsqueeze(0).expand(B, T, -1)
    hooks["hook_embed"] = tok
    hooks["hook_pos_embed"] = pe
    x = tok + pe
    H, C = model.n_head, model.n_embd
    for i, blk in enumerate(blocks):
        p = f"blocks.{i}."
        hooks[p + "hook_resid_pre"] = x
        if isinstance(model, LectureGPT):
            ln1, ln2 = blk.ln1, blk.ln2
            heads = blk.sa.heads
            h1 = _ln(x, ln1)
            q = torch.cat([h.query(h1) for h in heads], dim=-1)
            k = torch.cat([h.key(h1) for h in heads], dim=-1)
            v = torch.cat([h.value(h1) for h in heads], dim=-1)
            scale = heads[0].scale(h1)
            mask = heads[0].tril
            proj = blk.sa.proj
            fc, act, fcp = blk.ffwd.net[0], blk.ffwd.net[1], blk.ffwd.net[2]
        else:
            ln1, ln2 = blk.ln_1, blk.ln_2
            h1 = _ln(x, ln1)
            q, k, v = blk.attn.c_attn(h1).split(C, dim=2)
            scale = 1.0 / math.sqrt(C // H)
            mask = blk.attn.bias[0, 0]
            proj = blk.attn.c_proj
            fc, act, fcp = blk.mlp.c_fc, blk.mlp.gelu, blk.mlp.c_proj
        hooks[p + "ln1.hook_normalized"] = h1
        hooks[p + "attn.hook_q"] = q
        hooks[p + "attn.hook_k"] = k
        hooks[p + "attn.hook_v"] = v
        z, att = _attention(q, k, v, H, scale, mask)
        hooks[p + "attn.hook_pattern"] = att
        hooks[p + "attn.hook_z"] = z
        a = proj(z)
        hooks[p + "hook_attn_out"] = a
        x = x + a
        hooks[p + "hook_resid_mid"] = x
        h2 = _ln(x, ln2)
        hooks[p + "ln2.hook_normalized"] = h2
        pre = fc(h2)
        hooks[p + "mlp.hook_pre"] = pre
        post = act(pre)
        hooks[p + "mlp.hook_post"] = post
        m = fcp(post)
        hooks[p + "hook_mlp_out"] = m
        x = x + m
        hooks[p + "hook_resid_post"] = x
    xf = _ln(x, ln_f)
    hooks["ln_final.hook_normalized"] = xf
    logits = model.lm_head(xf)
    return logits, hooks


def hook_names(n_layer):
    """Every hook point name, in forward order."""
    names = ["hook_embed", "hook_pos_embed"]
    for i in range(n_layer):
        p = f"blocks.{i}."
        names += [p + s for s in (
            "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
            "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
            "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post",
            "hook_mlp_out", "hook_resid_post")]
    names.append("ln_final.hook_normalized")
    return names


@torch.no_grad()
def plain_forward(model, idx):
    return model(idx)


# ---------------------------------------------------------------------------
# Vocabulary and encoding


def vocab_of(text):
    """The lecture's vocabulary: sorted unique characters (code points)."""
    return sorted(set(text))


def encode(vocab, texts):
    """Strings of equal length -> LongTensor [B, T]."""
    stoi = {ch: i for i, ch in enumerate(vocab)}
    T = len(texts[0])
    assert all(len(t) == T for t in texts)
    return torch.tensor([[stoi[c] for c in t] for t in texts], dtype=torch.long)


# ---------------------------------------------------------------------------
# The corpuslens HDF5 model file


def canonical_tensors(model):
    """Ordered dict canonical name -> float32 numpy array (only tensors that the
    config has: absent biases and a tied head are not listed)."""
    import collections
    cfg = model.config()
    out = collections.OrderedDict()

    def put(name, t):
        out[name] = t.detach().to(torch.float32).cpu().contiguous().numpy()

    if isinstance(model, LectureGPT):
        put("token_embedding_table.weight", model.token_embedding_table.weight)
        put("position_embedding_table.weight", model.position_embedding_table.weight)
        for i, blk in enumerate(model.blocks):
            p = f"blocks.{i}."
            hs = blk.sa.heads
            qkv = torch.cat([h.query.weight for h in hs] + [h.key.weight for h in hs]
                            + [h.value.weight for h in hs], dim=0)
            put(p + "ln1.weight", blk.ln1.weight)
            put(p + "ln1.bias", blk.ln1.bias)
            put(p + "sa.qkv.weight", qkv)
            put(p + "sa.proj.weight", blk.sa.proj.weight)
            put(p + "sa.proj.bias", blk.sa.proj.bias)
            put(p + "ln2.weight", blk.ln2.weight)
            put(p + "ln2.bias", blk.ln2.bias)
            put(p + "ffwd.net.0.weight", blk.ffwd.net[0].weight)
            put(p + "ffwd.net.0.bias", blk.ffwd.net[0].bias)
            put(p + "ffwd.net.2.weight", blk.ffwd.net[2].weight)
            put(p + "ffwd.net.2.bias", blk.ffwd.net[2].bias)
        put("ln_f.weight", model.ln_f.weight)
        put("ln_f.bias", model.ln_f.bias)
        put("lm_head.weight", model.lm_head.weight)
        put("lm_head.bias", model.lm_head.bias)
    elif isinstance(model, NanoGPT):
        tr = model.transformer
        b = cfg["bias"]
        put("token_embedding_table.weight", tr.wte.weight)
        put("position_embedding_table.weight", tr.wpe.weight)
        for i, blk in enumerate(tr.h):
            p = f"blocks.{i}."
            put(p + "ln1.weight", blk.ln_1.weight)
            if b:
                put(p + "ln1.bias", blk.ln_1.bias)
            put(p + "sa.qkv.weight", blk.attn.c_attn.weight)
            if cfg["qkv_bias"]:
                put(p + "sa.qkv.bias", blk.attn.c_attn.bias)
            put(p + "sa.proj.weight", blk.attn.c_proj.weight)
            if b:
                put(p + "sa.proj.bias", blk.attn.c_proj.bias)
            put(p + "ln2.weight", blk.ln_2.weight)
            if b:
                put(p + "ln2.bias", blk.ln_2.bias)
            put(p + "ffwd.net.0.weight", blk.mlp.c_fc.weight)
            if b:
                put(p + "ffwd.net.0.bias", blk.mlp.c_fc.bias)
            put(p + "ffwd.net.2.weight", blk.mlp.c_proj.weight)
            if b:
                put(p + "ffwd.net.2.bias", blk.mlp.c_proj.bias)
        put("ln_f.weight", tr.ln_f.weight)
        if b:
            put("ln_f.bias", tr.ln_f.bias)
        # tied head: no lm_head.weight; no head bias
    else:
        raise TypeError(type(model))
    return out


def vocab_dtype():
    import h5py
    return h5py.string_dtype("utf-8", 4)


def write_model_h5(path, model, vocab, config_overrides=None, tensors=None):
    """Write `model` as a corpuslens model file. vocab: list of V one-character
    strings (id order). config_overrides / tensors let tests write broken files
    (tensors: name -> array, or None to drop a tensor)."""
    import h5py
    cfg = dict(model.config())
    cfg.update(config_overrides or {})
    assert len(vocab) == model.vocab_size, (len(vocab), model.vocab_size)
    ts = canonical_tensors(model)
    for name, arr in (tensors or {}).items():
        if arr is None:
            ts.pop(name, None)
        else:
            ts[name] = np.asarray(arr, dtype=np.float32)
    with h5py.File(path, "w") as f:
        g = f.create_group("config")
        for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                    "bias", "qkv_bias", "head_bias", "tied_head"):
            g.attrs.create(key, int(cfg[key]), dtype=np.int32)
        for key in ("activation", "attn_scale"):
            g.attrs[key] = str(cfg[key])
        g.attrs.create("ln_eps", float(cfg["ln_eps"]), dtype=np.float64)
        g.attrs["format"] = cfg.get("format", "corpuslens-model")
        g.attrs.create("format_version", int(cfg.get("format_version", 1)), dtype=np.int32)
        enc = []
        for ch in vocab:
            b = ch.encode("utf-8")
            assert len(ch) == 1 and len(b) <= 4, repr(ch)
            enc.append(b)
        f.create_dataset("vocab", data=np.array(enc, dtype=vocab_dtype()), dtype=vocab_dtype())
        w = f.create_group("weights")
        for name, arr in ts.items():
            w.create_dataset(name, data=arr, dtype=np.float32)
    return cfg


def read_model_h5(path):
    """(config dict, vocab list, tensors dict) from a corpuslens model file."""
    import h5py
    with h5py.File(path, "r") as f:
        cfg = {}
        for k, v in f["config"].attrs.items():
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, np.generic):
                v = v.item()
            cfg[k] = v
        vocab = [bytes(b).rstrip(b"\0").decode("utf-8") for b in f["vocab"][()]]
        ts = {k: d[()] for k, d in f["weights"].items()}
    return cfg, vocab, ts


def model_from_h5(path):
    """Rebuild a PyTorch model (lecture or nanoGPT family) from a corpuslens
    model file written by write_model_h5 (used to check the writer round-trips)."""
    cfg, vocab, ts = read_model_h5(path)
    common = dict(vocab_size=cfg["vocab_size"], n_embd=cfg["n_embd"], n_head=cfg["n_head"],
                  n_layer=cfg["n_layer"], block_size=cfg["block_size"])
    C, H = cfg["n_embd"], cfg["n_head"]
    hs = C // H
    t = lambda n: torch.from_numpy(ts[n])  # noqa: E731
    with torch.no_grad():
        if not cfg["tied_head"]:
            m = LectureGPT(attn_scale=cfg["attn_scale"], activation=cfg["activation"], **common)
            sd = {"token_embedding_table.weight": t("token_embedding_table.weight"),
                  "position_embedding_table.weight": t("position_embedding_table.weight"),
                  "ln_f.weight": t("ln_f.weight"), "ln_f.bias": t("ln_f.bias"),
                  "lm_head.weight": t("lm_head.weight"), "lm_head.bias": t("lm_head.bias")}
            for i in range(cfg["n_layer"]):
                p = f"blocks.{i}."
                qkv = t(p + "sa.qkv.weight")
                for h in range(H):
                    for j, nm in enumerate(("query", "key", "value")):
                        sd[p + f"sa.heads.{h}.{nm}.weight"] = qkv[j * C + h * hs: j * C + (h + 1) * hs]
                    sd[p + f"sa.heads.{h}.tril"] = torch.tril(torch.ones(cfg["block_size"], cfg["block_size"]))
                for a in ("ln1.weight", "ln1.bias", "sa.proj.weight", "sa.proj.bias",
                          "ln2.weight", "ln2.bias", "ffwd.net.0.weight", "ffwd.net.0.bias",
                          "ffwd.net.2.weight", "ffwd.net.2.bias"):
                    sd[p + a] = t(p + a)
            m.load_state_dict(sd)
        else:
            m = NanoGPT(bias=bool(cfg["bias"]), **common)
            sd = {"transformer.wte.weight": t("token_embedding_table.weight"),
                  "transformer.wpe.weight": t("position_embedding_table.weight"),
                  "transformer.ln_f.weight": t("ln_f.weight"),
                  "lm_head.weight": t("token_embedding_table.weight")}
            if cfg["bias"]:
                sd["transformer.ln_f.bias"] = t("ln_f.bias")
            for i in range(cfg["n_layer"]):
                p, q = f"blocks.{i}.", f"transformer.h.{i}."
                names = [("ln1.weight", "ln_1.weight"), ("sa.qkv.weight", "attn.c_attn.weight"),
                         ("sa.proj.weight", "attn.c_proj.weight"), ("ln2.weight", "ln_2.weight"),
                         ("ffwd.net.0.weight", "mlp.c_fc.weight"),
                         ("ffwd.net.2.weight", "mlp.c_proj.weight")]
                if cfg["bias"]:
                    names += [("ln1.bias", "ln_1.bias"), ("sa.qkv.bias", "attn.c_attn.bias"),
                              ("sa.proj.bias", "attn.c_proj.bias"), ("ln2.bias", "ln_2.bias"),
                              ("ffwd.net.0.bias", "mlp.c_fc.bias"),
                              ("ffwd.net.2.bias", "mlp.c_proj.bias")]
                for a, b in names:
                    sd[q + b] = t(p + a)
                sd[q + "attn.bias"] = torch.tril(torch.ones(cfg["block_size"], cfg["block_size"])).view(
                    1, 1, cfg["block_size"], cfg["block_size"])
            m.load_state_dict(sd)
    return m.eval(), vocab, cfg


# ---------------------------------------------------------------------------
# Self-check: python3 torch_models.py


def _selfcheck():
    import os
    import tempfile
    text = "First Citizen:\nBefore we proceed any further, hear me speak. é—ü"
    vocab = vocab_of(text)
    V = len(vocab)
    cases = [
        ("lecture", make_lecture(3, vocab_size=V, n_embd=64, n_head=4, n_layer=2, block_size=32)),
        ("lecture-nembd", make_lecture(4, vocab_size=V, n_embd=64, n_head=4, n_layer=2,
                                       block_size=32, attn_scale="n_embd")),
        ("lecture-gelu", make_lecture(7, vocab_size=V, n_embd=64, n_head=4, n_layer=2,
                                      block_size=32, activation="gelu")),
        ("nanogpt-bias", make_nanogpt(5, vocab_size=V, n_embd=64, n_head=4, n_layer=2,
                                      block_size=32, bias=True)),
        ("nanogpt-nobias", make_nanogpt(6, vocab_size=V, n_embd=64, n_head=4, n_layer=2,
                                        block_size=32, bias=False)),
    ]
    idx = encode(vocab, ["First Citizen:", "hear me speak.", "é—ü Before we."])
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for name, m in cases:
            for dt in (torch.float32, torch.float64):
                mm = m.to(dt)
                ref = plain_forward(mm, idx)
                lg, hk = run_with_hooks(mm, idx)
                dif = (ref - lg).abs().max().item()
                assert set(hk) == set(hook_names(m.n_layer)), set(hk) ^ set(hook_names(m.n_layer))
                pat = hk["blocks.0.attn.hook_pattern"]
                upper = torch.triu(torch.ones(idx.shape[1], idx.shape[1]), 1).bool()
                assert (pat[..., upper] == 0).all()
                print(f"{name:16s} {str(dt):14s} explicit vs module forward max|d| {dif:.3g}")
                ok &= dif < (1e-5 if dt == torch.float32 else 1e-12)
            m.float()
            path = os.path.join(d, name + ".h5")
            write_model_h5(path, m, vocab)
            m2, vocab2, _ = model_from_h5(path)
            assert vocab2 == vocab
            d2 = (plain_forward(m, idx) - plain_forward(m2, idx)).abs().max().item()
            print(f"{name:16s} round trip through {os.path.basename(path)}: max|d| {d2:.3g}")
            ok &= d2 == 0.0
    print("selfcheck", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(_selfcheck())

/* Checkpoint import: the lecture and nanoGPT layouts -> cl_model. */
#include "corpuslens/model/import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"

const char *cl_ckpt_layout_name(cl_ckpt_layout l) {
    return l == CL_LAYOUT_LECTURE ? "lecture" : l == CL_LAYOUT_NANOGPT ? "nanoGPT" : "unknown";
}


/* ---- layouts ---- */

static const cl_ckpt_tensor *findf(const cl_ckpt *ck, const char *fmt, int a, int b) {
    char k[256];
    snprintf(k, sizeof k, fmt, a, b);
    return cl_ckpt_find(ck, k);
}

static int need_2d(const cl_ckpt *ck, const cl_ckpt_tensor *t, const char *key) {
    if (!t) return cl_error("%s: missing tensor '%s'", cl_ckpt_label(ck), key);
    if (t->ndim != 2 || t->shape[0] == 0 || t->shape[1] == 0 || t->shape[0] > (1u << 24) ||
        t->shape[1] > (1u << 24))
        return cl_error("%s: tensor '%s' should be a non-empty matrix", cl_ckpt_label(ck), key);
    return 0;
}

int cl_ckpt_config(const cl_ckpt *ck, const cl_import_opts *opts, cl_ckpt_layout *layout,
                   cl_config *cfg) {
    cl_import_opts none = {0};
    if (!opts) opts = &none;
    memset(cfg, 0, sizeof *cfg);
    cfg->ln_eps = 1e-5f;
    cfg->attn_scale = opts->attn_scale_set ? opts->attn_scale : CL_SCALE_HEAD_SIZE;
    const cl_ckpt_tensor *wte, *wpe, *head;
    const size_t max_layers = 256;
    if ((wte = cl_ckpt_find(ck, "token_embedding_table.weight"))) {
        *layout = CL_LAYOUT_LECTURE;
        wpe = cl_ckpt_find(ck, "position_embedding_table.weight");
        if (need_2d(ck, wte, "token_embedding_table.weight") ||
            need_2d(ck, wpe, "position_embedding_table.weight"))
            return -1;
        int L = 0, H = 0;
        while ((size_t)L < max_layers && findf(ck, "blocks.%d.ln1.weight", L, 0)) L++;
        while ((size_t)H < 16384 && findf(ck, "blocks.0.sa.heads.%d.key.weight", H, 0)) H++;
        if (L == 0) return cl_error("%s: missing tensor 'blocks.0.ln1.weight'", cl_ckpt_label(ck));
        if (H == 0) return cl_error("%s: missing tensor 'blocks.0.sa.heads.0.key.weight'", cl_ckpt_label(ck));
        const cl_ckpt_tensor *k0 = findf(ck, "blocks.0.sa.heads.0.key.weight", 0, 0);
        if (k0->ndim != 2 || k0->shape[1] != wte->shape[1] || k0->shape[0] * (size_t)H != wte->shape[1])
            return cl_error("%s: %d heads of 'blocks.0.sa.heads.0.key.weight' shape [%zu, %zu] do "
                            "not make n_embd %zu",
                            cl_ckpt_label(ck), H, k0->shape[0], k0->ndim > 1 ? k0->shape[1] : 0, wte->shape[1]);
        if (opts->n_head && opts->n_head != H)
            return cl_error("%s: --n-head %d disagrees with the %d heads found in the checkpoint",
                            cl_ckpt_label(ck), opts->n_head, H);
        cfg->n_layer = L;
        cfg->n_head = H;
        cfg->activation = CL_ACT_RELU;
        cfg->bias = cl_ckpt_find(ck, "blocks.0.ln1.bias") != NULL;
        cfg->qkv_bias = cl_ckpt_find(ck, "blocks.0.sa.heads.0.key.bias") != NULL;
    } else if ((wte = cl_ckpt_find(ck, "transformer.wte.weight"))) {
        *layout = CL_LAYOUT_NANOGPT;
        wpe = cl_ckpt_find(ck, "transformer.wpe.weight");
        if (need_2d(ck, wte, "transformer.wte.weight") || need_2d(ck, wpe, "transformer.wpe.weight"))
            return -1;
        int L = 0;
        while ((size_t)L < max_layers && findf(ck, "transformer.h.%d.ln_1.weight", L, 0)) L++;
        if (L == 0) return cl_error("%s: missing tensor 'transformer.h.0.ln_1.weight'", cl_ckpt_label(ck));
        long long h = 0;
        int have = cl_ckpt_get_int(ck, "model_args.n_head", &h);
        if (have && (h < 1 || h > 16384))
            return cl_error("%s: model_args n_head %lld is out of range", cl_ckpt_label(ck), h);
        if (opts->n_head && have && opts->n_head != h)
            return cl_error("%s: --n-head %d disagrees with the checkpoint's model_args n_head %lld",
                            cl_ckpt_label(ck), opts->n_head, h);
        if (opts->n_head) h = opts->n_head;
        else if (!have)
            return cl_error("%s: n_head cannot be derived from a nanoGPT state dict (no model_args "
                            "in the file): pass --n-head N",
                            cl_ckpt_label(ck));
        long long l2;
        if (cl_ckpt_get_int(ck, "model_args.n_layer", &l2) && l2 != L)
            return cl_error("%s: model_args n_layer %lld but %d layers of tensors", cl_ckpt_label(ck), l2, L);
        cfg->n_layer = L;
        cfg->n_head = (int)h;
        cfg->activation = CL_ACT_GELU;
        cfg->bias = cl_ckpt_find(ck, "transformer.h.0.ln_1.bias") != NULL;
        cfg->qkv_bias = cl_ckpt_find(ck, "transformer.h.0.attn.c_attn.bias") != NULL;
    } else {
        *layout = CL_LAYOUT_UNKNOWN;
        return cl_error("%s: unrecognised layout: neither 'token_embedding_table.weight' (lecture "
                        "gpt.py) nor 'transformer.wte.weight' (nanoGPT) is in the state dict",
                        cl_ckpt_label(ck));
    }
    if (wpe->shape[1] != wte->shape[1])
        return cl_error("%s: position table width %zu differs from token table width %zu",
                        cl_ckpt_label(ck), wpe->shape[1], wte->shape[1]);
    cfg->vocab_size = (int)wte->shape[0];
    cfg->n_embd = (int)wte->shape[1];
    cfg->block_size = (int)wpe->shape[0];
    head = cl_ckpt_find(ck, "lm_head.weight");
    cfg->tied_head = !head || cl_ckpt_same_data(head, wte);
    cfg->head_bias = cl_ckpt_find(ck, "lm_head.bias") != NULL;
    if (cl_config_validate(cfg)) return cl_error_prefix("%s: derived config: ", cl_ckpt_label(ck));
    return 0;
}

/* Source of (part of) a canonical tensor: rows [row0, row0 + rows) of it. */
typedef struct {
    char key[160];
    size_t row0;
} source;

/* nanoGPT names of the per-layer canonical suffixes. */
static const char *const nano_map[][2] = {
    {"ln1.weight", "ln_1.weight"},           {"ln1.bias", "ln_1.bias"},
    {"sa.qkv.weight", "attn.c_attn.weight"}, {"sa.qkv.bias", "attn.c_attn.bias"},
    {"sa.proj.weight", "attn.c_proj.weight"}, {"sa.proj.bias", "attn.c_proj.bias"},
    {"ln2.weight", "ln_2.weight"},           {"ln2.bias", "ln_2.bias"},
    {"ffwd.net.0.weight", "mlp.c_fc.weight"}, {"ffwd.net.0.bias", "mlp.c_fc.bias"},
    {"ffwd.net.2.weight", "mlp.c_proj.weight"}, {"ffwd.net.2.bias", "mlp.c_proj.bias"},
};

/* Fill src[] for canonical tensor `info`; returns the number of sources. */
static size_t sources_for(cl_ckpt_layout lay, const cl_config *c, const cl_tensor_info *info,
                          source *src) {
    const char *nm = info->name;
    if (info->layer < 0) {
        if (lay == CL_LAYOUT_NANOGPT) {
            if (!strcmp(nm, "token_embedding_table.weight")) nm = "transformer.wte.weight";
            else if (!strcmp(nm, "position_embedding_table.weight")) nm = "transformer.wpe.weight";
            else if (!strcmp(nm, "ln_f.weight")) nm = "transformer.ln_f.weight";
            else if (!strcmp(nm, "ln_f.bias")) nm = "transformer.ln_f.bias";
        }
        snprintf(src[0].key, sizeof src[0].key, "%s", nm);
        src[0].row0 = 0;
        return 1;
    }
    char pre[32];
    snprintf(pre, sizeof pre, "blocks.%d.", info->layer);
    const char *suffix = nm + strlen(pre);
    if (lay == CL_LAYOUT_NANOGPT) {
        for (size_t i = 0; i < sizeof nano_map / sizeof *nano_map; i++)
            if (!strcmp(suffix, nano_map[i][0])) {
                snprintf(src[0].key, sizeof src[0].key, "transformer.h.%d.%s", info->layer,
                         nano_map[i][1]);
                src[0].row0 = 0;
                return 1;
            }
        snprintf(src[0].key, sizeof src[0].key, "%s", nm);
        return 1;
    }
    int is_w = !strcmp(suffix, "sa.qkv.weight"), is_b = !strcmp(suffix, "sa.qkv.bias");
    if (!is_w && !is_b) {
        snprintf(src[0].key, sizeof src[0].key, "%s", nm);
        src[0].row0 = 0;
        return 1;
    }
    /* lecture: rows q (heads in order), then k, then v */
    static const char *const part[3] = {"query", "key", "value"};
    size_t hs = (size_t)c->n_embd / (size_t)c->n_head, n = 0;
    for (int p = 0; p < 3; p++)
        for (int h = 0; h < c->n_head; h++) {
            snprintf(src[n].key, sizeof src[n].key, "blocks.%d.sa.heads.%d.%s.%s", info->layer, h,
                     part[p], is_w ? "weight" : "bias");
            src[n].row0 = ((size_t)p * (size_t)c->n_head + (size_t)h) * hs;
            n++;
        }
    return n;
}

static void shape_str(char *buf, size_t n, int nd, const size_t *s) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%zu", i ? ", " : "", s[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

cl_model *cl_ckpt_import(const cl_ckpt *ck, const cl_import_opts *opts, const uint32_t *vocab,
                         int V) {
    cl_ckpt_layout lay;
    cl_config cfg;
    if (cl_ckpt_config(ck, opts, &lay, &cfg)) return NULL;
    if (V != cfg.vocab_size) {
        cl_error("the vocabulary has %d characters but the checkpoint's vocab size is %d "
                 "(%s has %d rows)",
                 V, cfg.vocab_size,
                 lay == CL_LAYOUT_LECTURE ? "token_embedding_table.weight" : "transformer.wte.weight",
                 cfg.vocab_size);
        return NULL;
    }
    /* allocation bound: never more parameters than bytes in the file */
    size_t want = cl_model_num_params(&cfg);
    if (want > cl_ckpt_file_size(ck)) {
        cl_error("%s: the derived model has %zu parameters but the file has only %zu bytes: "
                 "refusing (corrupt or hostile shapes)",
                 cl_ckpt_label(ck), want, cl_ckpt_file_size(ck));
        return NULL;
    }
    unsigned char *used = cl_trycalloc(cl_ckpt_num_tensors(ck) ? cl_ckpt_num_tensors(ck) : 1, 1, "tensor flags");
    if (!used) return NULL;
    source *src = cl_trymalloc(3 * (size_t)cfg.n_head, sizeof *src, "tensor sources");
    cl_model *m = src ? cl_model_create(&cfg) : NULL;
    if (!m) goto fail;
    memcpy(m->vocab, vocab, (size_t)V * sizeof *vocab);
    size_t nt = cl_model_tensor_count(&cfg);
    for (size_t i = 0; i < nt; i++) {
        cl_tensor_info info;
        cl_model_tensor(&cfg, m->mem, i, &info);
        if (!info.present) continue;
        size_t ns = sources_for(lay, &cfg, &info, src);
        size_t cols = info.ndim == 2 ? info.shape[1] : 1;
        size_t part_rows = info.shape[0] / ns;
        for (size_t s = 0; s < ns; s++) {
            const cl_ckpt_tensor *t = cl_ckpt_find(ck, src[s].key);
            if (!t) {
                if (ns > 1)
                    cl_error("%s: missing tensor '%s' (part of %s)", cl_ckpt_label(ck), src[s].key, info.name);
                else
                    cl_error("%s: missing tensor '%s'%s%s%s", cl_ckpt_label(ck), src[s].key,
                             strcmp(src[s].key, info.name) ? " (" : "",
                             strcmp(src[s].key, info.name) ? info.name : "",
                             strcmp(src[s].key, info.name) ? ")" : "");
                goto fail;
            }
            size_t want_shape[2] = {part_rows, info.ndim == 2 ? info.shape[1] : 0};
            int ok = t->ndim == info.ndim && t->shape[0] == want_shape[0] &&
                     (info.ndim == 1 || t->shape[1] == want_shape[1]);
            if (!ok) {
                char got[96], exp[64];
                shape_str(got, sizeof got, t->ndim, t->shape);
                shape_str(exp, sizeof exp, info.ndim, want_shape);
                cl_error("%s: tensor '%s' has shape %s, expected %s for %s n_layer %d n_head %d "
                         "n_embd %d",
                         cl_ckpt_label(ck), src[s].key, got, exp, cl_ckpt_layout_name(lay), cfg.n_layer,
                         cfg.n_head, cfg.n_embd);
                goto fail;
            }
            if (cl_ckpt_tensor_to_f32(t, info.data + src[s].row0 * cols)) {
                cl_error_prefix("%s: ", cl_ckpt_label(ck));
                goto fail;
            }
            cl_ckpt_release(ck, t);
            used[t - cl_ckpt_tensor_at(ck, 0)] = 1;
        }
    }
    if (cfg.tied_head) {
        const cl_ckpt_tensor *h = cl_ckpt_find(ck, "lm_head.weight");
        if (h) used[h - cl_ckpt_tensor_at(ck, 0)] = 1;
    }
    for (size_t i = 0; i < cl_ckpt_num_tensors(ck); i++) {
        const cl_ckpt_tensor *t = cl_ckpt_tensor_at(ck, i);
        if (t->role == CL_ROLE_PARAM && !used[i]) {
            cl_error("%s: unexpected tensor '%s' in a %s checkpoint with n_layer %d n_head %d (not "
                     "part of the model)",
                     cl_ckpt_label(ck), t->key, cl_ckpt_layout_name(lay), cfg.n_layer, cfg.n_head);
            goto fail;
        }
    }
    free(used);
    free(src);
    return m;
fail:
    free(used);
    free(src);
    cl_model_free(m);
    return NULL;
}

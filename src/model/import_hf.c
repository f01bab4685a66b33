/* Import of a Hugging Face GPT-2 model folder (config.json, model.safetensors
 * or pytorch_model.bin, vocab.json + merges.txt) into a cl_model with its BPE
 * tokenizer. Conv1D weights are [in, out]: transposed into the [out, in]
 * layout of the model file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "corpuslens/base/error.h"
#include "corpuslens/model/import.h"
#include "corpuslens/model/tokenizer.h"

int cl_hf_is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cfg_int(json_t *root, const char *path, const char *key, const char *alt, int lo, int hi, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v && alt) v = json_object_get(root, alt), key = alt;
    if (!v) return cl_error("%s: no \"%s\"", path, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return cl_error("%s: \"%s\" must be an integer in [%d, %d]", path, key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

/* config.json -> config; *tied from tie_word_embeddings (default true). */
static int read_hf_config(const char *path, cl_config *c, int *tied) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return cl_error("%s: %s (line %d)", path, je.text, je.line);
    int rc = -1;
    if (!json_is_object(root)) {
        cl_error("%s: not a JSON object", path);
        goto out;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "gpt2"))) {
        cl_error("%s: model_type is \"%s\"; only \"gpt2\" models are supported", path,
                 json_is_string(mt) ? json_string_value(mt) : "?");
        goto out;
    }
    memset(c, 0, sizeof *c);
    if (cfg_int(root, path, "n_layer", NULL, 1, 256, &c->n_layer) ||
        cfg_int(root, path, "n_head", NULL, 1, 16384, &c->n_head) ||
        cfg_int(root, path, "n_embd", NULL, 1, 16384, &c->n_embd) ||
        cfg_int(root, path, "vocab_size", NULL, 256, 1 << 21, &c->vocab_size) ||
        cfg_int(root, path, "n_positions", "n_ctx", 1, 65536, &c->block_size))
        goto out;
    json_t *v = json_object_get(root, "layer_norm_epsilon");
    c->ln_eps = 1e-5f;
    if (v) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) < 1)) {
            cl_error("%s: layer_norm_epsilon must be a number in (0, 1)", path);
            goto out;
        }
        c->ln_eps = (float)json_number_value(v);
    }
    const char *act = "gelu_new";
    if ((v = json_object_get(root, "activation_function"))) act = json_is_string(v) ? json_string_value(v) : "?";
    if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_fast"))
        c->activation = CL_ACT_GELU_TANH;
    else if (!strcmp(act, "gelu")) c->activation = CL_ACT_GELU;
    else if (!strcmp(act, "relu")) c->activation = CL_ACT_RELU;
    else {
        cl_error("%s: activation_function \"%s\" is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu)", path, act);
        goto out;
    }
    if ((v = json_object_get(root, "n_inner")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 4 * (json_int_t)c->n_embd)) {
        cl_error("%s: n_inner must be null or 4 * n_embd (%d)", path, 4 * c->n_embd);
        goto out;
    }
    if ((v = json_object_get(root, "scale_attn_weights")) && !json_is_true(v)) {
        cl_error("%s: scale_attn_weights false is not supported", path);
        goto out;
    }
    if ((v = json_object_get(root, "scale_attn_by_inverse_layer_idx")) && json_is_true(v)) {
        cl_error("%s: scale_attn_by_inverse_layer_idx is not supported", path);
        goto out;
    }
    *tied = !((v = json_object_get(root, "tie_word_embeddings")) && json_is_false(v));
    c->bias = 1;
    c->qkv_bias = 1;
    c->head_bias = 0;
    c->tied_head = *tied;
    c->attn_scale = CL_SCALE_HEAD_SIZE;
    if (cl_config_validate(c)) {
        cl_error_prefix("%s: ", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* Hugging Face suffix of a canonical tensor, and whether it is a Conv1D
 * weight ([in, out], transposed on import). */
static const struct {
    const char *canon, *hf;
    int conv;
} names[] = {
    {"token_embedding_table.weight", "wte.weight", 0}, {"position_embedding_table.weight", "wpe.weight", 0},
    {"ln1.weight", "ln_1.weight", 0},                 {"ln1.bias", "ln_1.bias", 0},
    {"sa.qkv.weight", "attn.c_attn.weight", 1},       {"sa.qkv.bias", "attn.c_attn.bias", 0},
    {"sa.proj.weight", "attn.c_proj.weight", 1},      {"sa.proj.bias", "attn.c_proj.bias", 0},
    {"ln2.weight", "ln_2.weight", 0},                 {"ln2.bias", "ln_2.bias", 0},
    {"ffwd.net.0.weight", "mlp.c_fc.weight", 1},      {"ffwd.net.0.bias", "mlp.c_fc.bias", 0},
    {"ffwd.net.2.weight", "mlp.c_proj.weight", 1},    {"ffwd.net.2.bias", "mlp.c_proj.bias", 0},
    {"ln_f.weight", "ln_f.weight", 0},                {"ln_f.bias", "ln_f.bias", 0},
};

/* The attention mask buffers of GPT2Attention, not parameters. */
static int is_mask_buffer(const char *key) {
    const char *p = strstr(key, ".attn.");
    return p && (!strcmp(p, ".attn.bias") || !strcmp(p, ".attn.masked_bias"));
}

cl_model *cl_hf_import(const char *dir, cl_hf_info *info) {
    char path[4096], p2[4096];
    cl_config cfg;
    int tied = 1;
    memset(info, 0, sizeof *info);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path)) {
        cl_error("%s: no config.json: not a Hugging Face model folder", dir);
        return NULL;
    }
    if (read_hf_config(path, &cfg, &tied)) return NULL;
    /* the tokenizer: vocab.json + merges.txt (or GPT-2's encoder.json + vocab.bpe) */
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", dir);
    if (!file_exists(path) && !file_exists(p2)) {
        snprintf(path, sizeof path, "%s/encoder.json", dir);
        snprintf(p2, sizeof p2, "%s/vocab.bpe", dir);
    }
    if (!file_exists(path) || !file_exists(p2)) {
        cl_error("%s: the tokenizer files vocab.json and merges.txt (or encoder.json and vocab.bpe) are missing", dir);
        return NULL;
    }
    cl_bpe *bpe = cl_bpe_from_files(path, p2);
    if (!bpe) return NULL;
    if (cl_bpe_vocab_size(bpe) != cfg.vocab_size) {
        cl_error("%s: the tokenizer has %d tokens but config.json says vocab_size %d", dir, cl_bpe_vocab_size(bpe),
                 cfg.vocab_size);
        cl_bpe_free(bpe);
        return NULL;
    }
    snprintf(info->weights, sizeof info->weights, "%s/model.safetensors", dir);
    if (!file_exists(info->weights)) snprintf(info->weights, sizeof info->weights, "%s/pytorch_model.bin", dir);
    if (!file_exists(info->weights)) {
        cl_error("%s: neither model.safetensors nor pytorch_model.bin is there", dir);
        cl_bpe_free(bpe);
        return NULL;
    }
    cl_ckpt *ck = cl_ckpt_open(info->weights);
    if (!ck) {
        cl_bpe_free(bpe);
        return NULL;
    }
    const char *pre = cl_ckpt_find(ck, "transformer.wte.weight") ? "transformer." : "";
    const char *lab = cl_ckpt_label(ck);
    size_t nt = cl_ckpt_num_tensors(ck);
    /* allocation bound, as for .pt imports: config.json's shapes never ask for
     * more parameters than the weights file has bytes (a hostile config, or
     * stride-0 views, cannot make a small file allocate gigabytes) */
    if (cl_model_num_params(&cfg) > cl_ckpt_file_size(ck)) {
        cl_error("%s: config.json's model has %zu parameters but %s has only %zu bytes: refusing (corrupt or "
                 "hostile shapes)",
                 dir, cl_model_num_params(&cfg), lab, cl_ckpt_file_size(ck));
        cl_ckpt_close(ck);
        cl_bpe_free(bpe);
        return NULL;
    }
    unsigned char *used = cl_trycalloc(nt + 1, 1, "tensor flags");
    size_t C = cfg.n_embd;
    float *tmp = used ? cl_trymalloc(4 * C * C, sizeof(float), "transpose buffer") : NULL;
    cl_model *m = tmp ? cl_model_create(&cfg) : NULL;
    if (!m) goto fail;
    m->bpe = bpe;
    bpe = NULL;
    size_t n = cl_model_tensor_count(&cfg);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&cfg, m->mem, i, &t);
        if (!t.present) continue;
        const char *suffix = t.name;
        char lpre[32] = "";
        if (t.layer >= 0) {
            snprintf(lpre, sizeof lpre, "h.%d.", t.layer);
            suffix = strchr(strchr(t.name, '.') + 1, '.') + 1; /* after "blocks.N." */
        }
        size_t k;
        for (k = 0; k < sizeof names / sizeof *names; k++)
            if (!strcmp(names[k].canon, suffix)) break;
        char key[256];
        int conv = 0;
        if (k < sizeof names / sizeof *names) {
            snprintf(key, sizeof key, "%s%s%s", pre, lpre, names[k].hf);
            conv = names[k].conv;
        } else {
            snprintf(key, sizeof key, "%s", t.name); /* lm_head.weight of an untied model */
        }
        const cl_ckpt_tensor *s = cl_ckpt_find(ck, key);
        if (!s) {
            cl_error("%s: missing tensor '%s'", lab, key);
            goto fail;
        }
        size_t want0 = conv ? (t.ndim == 2 ? t.shape[1] : 0) : t.shape[0];
        size_t want1 = conv ? t.shape[0] : (t.ndim == 2 ? t.shape[1] : 0);
        if (s->ndim != t.ndim || s->shape[0] != want0 || (t.ndim == 2 && s->shape[1] != want1)) {
            cl_error("%s: tensor '%s' has %d dimensions [%zu, %zu], expected [%zu%s%zu]%s for n_layer %d n_embd %d "
                     "vocab_size %d n_positions %d", lab, key, s->ndim, s->shape[0], s->ndim > 1 ? s->shape[1] : 0,
                     want0, t.ndim == 2 ? ", " : "", t.ndim == 2 ? want1 : 0, conv ? " (Conv1D: [in, out])" : "",
                     cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.block_size);
            goto fail;
        }
        if (conv) {
            size_t rows = t.shape[0], cols = t.shape[1]; /* dest [rows, cols] = src^T, src [cols, rows] */
            if (cl_ckpt_tensor_to_f32(s, tmp)) goto fail_prefix;
            for (size_t a = 0; a < cols; a++)
                for (size_t b2 = 0; b2 < rows; b2++) t.data[b2 * cols + a] = tmp[a * rows + b2];
        } else if (cl_ckpt_tensor_to_f32(s, t.data)) {
            goto fail_prefix;
        }
        cl_ckpt_release(ck, s);
        used[s - cl_ckpt_tensor_at(ck, 0)] = 1;
    }
    const cl_ckpt_tensor *head = cl_ckpt_find(ck, "lm_head.weight");
    if (tied && head) {
        /* tied in the module; a file may still hold a copy: it must be wte */
        char wk[64];
        snprintf(wk, sizeof wk, "%swte.weight", pre);
        const cl_ckpt_tensor *wte = cl_ckpt_find(ck, wk);
        if (!cl_ckpt_same_data(head, wte)) {
            if (head->ndim != 2 || head->shape[0] != (size_t)cfg.vocab_size || head->shape[1] != C) {
                cl_error("%s: lm_head.weight should be [%d, %zu]", lab, cfg.vocab_size, C);
                goto fail;
            }
            for (size_t r = 0; r < (size_t)cfg.vocab_size; r += 4 * C) { /* compare in slices */
                size_t rows = (size_t)cfg.vocab_size - r < 4 * C ? (size_t)cfg.vocab_size - r : 4 * C;
                cl_ckpt_tensor slice = *head;
                slice.offset = head->offset + r * head->stride[0];
                slice.shape[0] = rows;
                slice.numel = rows * C;
                if (cl_ckpt_tensor_to_f32(&slice, tmp)) goto fail_prefix;
                if (memcmp(tmp, m->p.wte + r * C, rows * C * sizeof(float))) {
                    cl_error("%s: lm_head.weight differs from wte.weight but config.json ties them "
                             "(tie_word_embeddings)", lab);
                    goto fail;
                }
            }
            cl_ckpt_release(ck, head);
        }
        used[head - cl_ckpt_tensor_at(ck, 0)] = 1;
    }
    for (size_t i = 0; i < nt; i++) {
        const cl_ckpt_tensor *t = cl_ckpt_tensor_at(ck, i);
        const char *key = t->key ? t->key : t->name;
        if (used[i] || t->role == CL_ROLE_OTHER || is_mask_buffer(key)) continue;
        cl_error("%s: unexpected tensor '%s' in a GPT-2 checkpoint with n_layer %d (not part of the model)", lab, key,
                 cfg.n_layer);
        goto fail;
    }
    info->n_params_ckpt = cl_ckpt_num_params(ck);
    free(used);
    free(tmp);
    cl_ckpt_close(ck);
    return m;
fail_prefix:
    cl_error_prefix("%s: ", lab);
fail:
    free(used);
    free(tmp);
    cl_ckpt_close(ck);
    cl_model_free(m);
    cl_bpe_free(bpe);
    return NULL;
}

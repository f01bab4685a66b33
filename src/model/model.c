#include "corpuslens/model/model.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef MAP_POPULATE
#define MAP_POPULATE 0 /* not Linux: the pages are mapped on first use */
#endif

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/model/tokenizer.h"

cl_config cl_config_lecture(void) {
    cl_config c = {.n_layer = 6, .n_head = 6, .n_embd = 384, .block_size = 256, .vocab_size = 65,
                   .activation = CL_ACT_RELU, .bias = 1, .qkv_bias = 0, .head_bias = 1,
                   .tied_head = 0, .attn_scale = CL_SCALE_HEAD_SIZE, .ln_eps = 1e-5f};
    return c;
}

int cl_config_validate(const cl_config *c) {
    if (c->n_layer < 1 || c->n_layer > 256) return cl_error("n_layer must be in [1, 256], got %d", c->n_layer);
    if (c->n_embd < 1 || c->n_embd > 16384) return cl_error("n_embd must be in [1, 16384], got %d", c->n_embd);
    if (c->n_head < 1 || c->n_embd % c->n_head)
        return cl_error("n_head must be >= 1 and divide n_embd (%d), got %d", c->n_embd, c->n_head);
    if (c->block_size < 1 || c->block_size > 65536)
        return cl_error("block_size must be in [1, 65536], got %d", c->block_size);
    if (c->vocab_size < 1 || c->vocab_size > (1 << 21))
        return cl_error("vocab_size must be in [1, 2097152], got %d", c->vocab_size);
    if (c->activation != CL_ACT_RELU && c->activation != CL_ACT_GELU && c->activation != CL_ACT_GELU_TANH)
        return cl_error("activation must be relu, gelu or gelu_tanh");
    if (c->attn_scale != CL_SCALE_HEAD_SIZE && c->attn_scale != CL_SCALE_N_EMBD)
        return cl_error("attn_scale must be head_size or n_embd");
    if (!(c->ln_eps > 0.0f && c->ln_eps < 1.0f)) return cl_error("ln_eps must be in (0, 1), got %g", c->ln_eps);
    if (c->n_classes < 0 || c->n_classes > 65536) return cl_error("n_classes must be in [0, 65536], got %d", c->n_classes);
    if (c->n_classes && c->tied_head) return cl_error("a classifier (n_classes > 0) cannot have a tied head");
    if (c->mask_pad && (c->pad_id < 0 || c->pad_id >= c->vocab_size))
        return cl_error("pad_id must be a token id in [0, %d), got %d", c->vocab_size, c->pad_id);
    if (c->trained_ctx < 0 || c->trained_ctx > c->block_size)
        return cl_error("trained_ctx must be in [0, block_size = %d] (0: unknown), got %d", c->block_size,
                        c->trained_ctx);
    if (c->tied_head && c->head_bias) {
        /* allowed: a tied head with its own bias */
    }
    struct { const char *name; int v; } flags[] = {{"bias", c->bias}, {"qkv_bias", c->qkv_bias},
        {"head_bias", c->head_bias}, {"tied_head", c->tied_head}, {"causal", !c->bidirectional},
        {"sinusoidal", c->sinusoidal}, {"mask_pad", c->mask_pad}};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        if (flags[i].v != 0 && flags[i].v != 1) return cl_error("%s must be 0 or 1, got %d", flags[i].name, flags[i].v);
    return 0;
}

static int parse_int(const char *key, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return cl_error("config: %s=%s is not an integer in [%d, %d]", key, v, lo, hi);
    *out = (int)x;
    return 0;
}

int cl_config_parse(cl_config *c, const char *spec) {
    char *s = strdup(spec ? spec : "");
    if (!s) return cl_error("out of memory");
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = cl_error("config: '%s' is not key=value", tok);
            break;
        }
        *eq = '\0';
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "n_layer")) rc = parse_int(k, v, 1, 256, &c->n_layer);
        else if (!strcmp(k, "n_head")) rc = parse_int(k, v, 1, 16384, &c->n_head);
        else if (!strcmp(k, "n_embd")) rc = parse_int(k, v, 1, 16384, &c->n_embd);
        else if (!strcmp(k, "block_size")) rc = parse_int(k, v, 1, 65536, &c->block_size);
        else if (!strcmp(k, "vocab_size")) rc = parse_int(k, v, 1, 1 << 21, &c->vocab_size);
        else if (!strcmp(k, "bias")) rc = parse_int(k, v, 0, 1, &c->bias);
        else if (!strcmp(k, "qkv_bias")) rc = parse_int(k, v, 0, 1, &c->qkv_bias);
        else if (!strcmp(k, "head_bias")) rc = parse_int(k, v, 0, 1, &c->head_bias);
        else if (!strcmp(k, "tied_head")) rc = parse_int(k, v, 0, 1, &c->tied_head);
        else if (!strcmp(k, "activation")) {
            if (!strcmp(v, "relu")) c->activation = CL_ACT_RELU;
            else if (!strcmp(v, "gelu")) c->activation = CL_ACT_GELU;
            else if (!strcmp(v, "gelu_tanh")) c->activation = CL_ACT_GELU_TANH;
            else rc = cl_error("config: activation=%s: expected relu, gelu or gelu_tanh", v);
        } else if (!strcmp(k, "attn_scale")) {
            if (!strcmp(v, "head_size")) c->attn_scale = CL_SCALE_HEAD_SIZE;
            else if (!strcmp(v, "n_embd")) c->attn_scale = CL_SCALE_N_EMBD;
            else rc = cl_error("config: attn_scale=%s: expected head_size or n_embd", v);
        } else if (!strcmp(k, "causal")) {
            int v01 = 1;
            rc = parse_int(k, v, 0, 1, &v01);
            c->bidirectional = !v01;
        } else if (!strcmp(k, "pos")) {
            if (!strcmp(v, "learned")) c->sinusoidal = 0;
            else if (!strcmp(v, "sinusoidal")) c->sinusoidal = 1;
            else rc = cl_error("config: pos=%s: expected learned or sinusoidal", v);
        } else if (!strcmp(k, "n_classes")) rc = parse_int(k, v, 0, 65536, &c->n_classes);
        else if (!strcmp(k, "pad_id")) {
            rc = parse_int(k, v, 0, 1 << 21, &c->pad_id);
            c->mask_pad = 1;
        } else if (!strcmp(k, "ln_eps")) {
            char *end;
            errno = 0;
            double x = strtod(v, &end);
            if (!*v || *end || errno || !(x > 0 && x < 1)) rc = cl_error("config: ln_eps=%s is not in (0, 1)", v);
            else c->ln_eps = (float)x;
        } else {
            rc = cl_error("config: unknown key '%s' (known: n_layer n_head n_embd block_size vocab_size "
                          "activation bias qkv_bias head_bias tied_head attn_scale ln_eps causal pos n_classes pad_id)", k);
        }
    }
    free(s);
    return rc;
}

int cl_model_n_out(const cl_config *c) { return c->n_classes > 0 ? c->n_classes : c->vocab_size; }

void cl_sinusoidal_positions(float *out, int T, int C) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i += 2) {
            double freq = pow(10000.0, -(double)i / C);
            out[(size_t)t * C + i] = (float)sin(t * freq);
            if (i + 1 < C) out[(size_t)t * C + i + 1] = (float)cos(t * freq);
        }
}

/* ---- tensor table ---- */

enum { K_WTE, K_WPE, K_LN1W, K_LN1B, K_QKVW, K_QKVB, K_PROJW, K_PROJB, K_LN2W, K_LN2B,
       K_FCW, K_FCB, K_FCPW, K_FCPB, K_LNFW, K_LNFB, K_HEADW, K_HEADB };

typedef struct {
    const char *fmt;
    int per_layer;
} kind_info;

static const kind_info kinds[CL_NUM_PARAM_KINDS] = {
    {"token_embedding_table.weight", 0}, {"position_embedding_table.weight", 0},
    {"blocks.%d.ln1.weight", 1},         {"blocks.%d.ln1.bias", 1},
    {"blocks.%d.sa.qkv.weight", 1},      {"blocks.%d.sa.qkv.bias", 1},
    {"blocks.%d.sa.proj.weight", 1},     {"blocks.%d.sa.proj.bias", 1},
    {"blocks.%d.ln2.weight", 1},         {"blocks.%d.ln2.bias", 1},
    {"blocks.%d.ffwd.net.0.weight", 1},  {"blocks.%d.ffwd.net.0.bias", 1},
    {"blocks.%d.ffwd.net.2.weight", 1},  {"blocks.%d.ffwd.net.2.bias", 1},
    {"ln_f.weight", 0},                  {"ln_f.bias", 0},
    {"lm_head.weight", 0},               {"lm_head.bias", 0},
};

/* Shape of one tensor (one layer's slice for per-layer kinds). */
static int kind_shape(const cl_config *c, int k, size_t shape[2]) {
    size_t C = c->n_embd, F = 4 * C, V = c->vocab_size, T = c->block_size;
    switch (k) {
    case K_WTE: shape[0] = V; shape[1] = C; return 2;
    case K_HEADW: shape[0] = (size_t)cl_model_n_out(c); shape[1] = C; return 2;
    case K_WPE: shape[0] = T; shape[1] = C; return 2;
    case K_QKVW: shape[0] = 3 * C; shape[1] = C; return 2;
    case K_QKVB: shape[0] = 3 * C; return 1;
    case K_PROJW: shape[0] = C; shape[1] = C; return 2;
    case K_FCW: shape[0] = F; shape[1] = C; return 2;
    case K_FCB: shape[0] = F; return 1;
    case K_FCPW: shape[0] = C; shape[1] = F; return 2;
    case K_HEADB: shape[0] = (size_t)cl_model_n_out(c); return 1;
    default: shape[0] = C; return 1; /* LayerNorm weights/biases, proj/fcp biases */
    }
}

static int kind_present(const cl_config *c, int k) {
    switch (k) {
    case K_LN1B: case K_PROJB: case K_LN2B: case K_FCB: case K_FCPB: case K_LNFB: return c->bias;
    case K_QKVB: return c->qkv_bias;
    case K_HEADW: return !c->tied_head;
    case K_WPE: return !c->sinusoidal;
    case K_HEADB: return c->head_bias;
    default: return 1;
    }
}

static size_t kind_numel(const cl_config *c, int k) {
    size_t s[2];
    int nd = kind_shape(c, k, s);
    return nd == 2 ? s[0] * s[1] : s[0];
}

size_t cl_params_layout(const cl_config *c, float *base, cl_params *p) {
    float **ptrs[CL_NUM_PARAM_KINDS] = {&p->wte, &p->wpe, &p->ln1_w, &p->ln1_b, &p->qkv_w, &p->qkv_b,
                                        &p->proj_w, &p->proj_b, &p->ln2_w, &p->ln2_b, &p->fc_w, &p->fc_b,
                                        &p->fcp_w, &p->fcp_b, &p->lnf_w, &p->lnf_b, &p->head_w, &p->head_b};
    size_t off = 0;
    for (int k = 0; k < CL_NUM_PARAM_KINDS; k++) {
        if (k == K_HEADW && c->tied_head) {
            *ptrs[k] = base ? p->wte : NULL;
            continue;
        }
        *ptrs[k] = base ? base + off : NULL;
        off += kind_numel(c, k) * (kinds[k].per_layer ? (size_t)c->n_layer : 1);
    }
    return off;
}

size_t cl_model_tensor_count(const cl_config *c) { return 2 + 12 * (size_t)c->n_layer + 4; }

static void index_to_kind(const cl_config *c, size_t i, int *k, int *layer) {
    if (i < 2) {
        *k = (int)i;
        *layer = -1;
    } else if (i < 2 + 12 * (size_t)c->n_layer) {
        *layer = (int)((i - 2) / 12);
        *k = 2 + (int)((i - 2) % 12);
    } else {
        *k = K_LNFW + (int)(i - 2 - 12 * (size_t)c->n_layer);
        *layer = -1;
    }
}

void cl_model_tensor(const cl_config *c, float *base, size_t i, cl_tensor_info *out) {
    int k, layer;
    index_to_kind(c, i, &k, &layer);
    cl_params p;
    cl_params_layout(c, base, &p);
    float *starts[CL_NUM_PARAM_KINDS] = {p.wte, p.wpe, p.ln1_w, p.ln1_b, p.qkv_w, p.qkv_b, p.proj_w, p.proj_b,
                                         p.ln2_w, p.ln2_b, p.fc_w, p.fc_b, p.fcp_w, p.fcp_b, p.lnf_w, p.lnf_b,
                                         p.head_w, p.head_b};
    memset(out, 0, sizeof *out);
    out->kind = k;
    out->layer = layer;
    out->ndim = kind_shape(c, k, out->shape);
    out->numel = kind_numel(c, k);
    out->present = kind_present(c, k);
    if (kinds[k].per_layer) snprintf(out->name, sizeof out->name, kinds[k].fmt, layer);
    else snprintf(out->name, sizeof out->name, "%s", kinds[k].fmt);
    out->data = starts[k] ? starts[k] + (layer > 0 ? (size_t)layer * out->numel : 0) : NULL;
}

static size_t kind_index(const cl_config *c, int k, int layer) {
    if (k < K_LN1W) return (size_t)k;
    if (kinds[k].per_layer) return 2 + 12 * (size_t)layer + (size_t)(k - K_LN1W);
    return 2 + 12 * (size_t)c->n_layer + (size_t)(k - K_LNFW);
}

const float *cl_model_data(const cl_model *m, size_t i) {
    if (m->data) return m->data[i];
    cl_tensor_info t;
    cl_model_tensor(&m->cfg, m->mem, i, &t);
    return t.data;
}

void cl_model_weights(const cl_model *m, int layer, cl_weights *w) {
    const float **out[CL_NUM_PARAM_KINDS] = {&w->wte, &w->wpe, &w->ln1_w, &w->ln1_b, &w->qkv_w, &w->qkv_b,
                                             &w->proj_w, &w->proj_b, &w->ln2_w, &w->ln2_b, &w->fc_w, &w->fc_b,
                                             &w->fcp_w, &w->fcp_b, &w->lnf_w, &w->lnf_b, &w->head_w, &w->head_b};
    const cl_params *p = &m->p;
    const float *stacked[CL_NUM_PARAM_KINDS] = {p->wte, p->wpe, p->ln1_w, p->ln1_b, p->qkv_w, p->qkv_b,
                                                p->proj_w, p->proj_b, p->ln2_w, p->ln2_b, p->fc_w, p->fc_b,
                                                p->fcp_w, p->fcp_b, p->lnf_w, p->lnf_b, p->head_w, p->head_b};
    for (int k = 0; k < CL_NUM_PARAM_KINDS; k++) {
        if (m->data) *out[k] = m->data[kind_index(&m->cfg, k, layer)];
        else *out[k] = stacked[k] + (kinds[k].per_layer ? (size_t)layer * kind_numel(&m->cfg, k) : 0);
    }
}

long cl_model_tensor_find(const cl_config *c, const char *name) {
    size_t n = cl_model_tensor_count(c);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, NULL, i, &t);
        if (!strcmp(t.name, name)) return (long)i;
    }
    return -1;
}

size_t cl_model_num_params(const cl_config *c) {
    size_t n = 0, count = cl_model_tensor_count(c);
    for (size_t i = 0; i < count; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, NULL, i, &t);
        if (t.present) n += t.numel;
    }
    return n;
}

cl_model *cl_model_create(const cl_config *c) {
    if (cl_config_validate(c)) return NULL;
    cl_model *m = cl_trycalloc(1, sizeof *m, "model");
    if (!m) return NULL;
    m->cfg = *c;
    m->n_floats = cl_params_layout(c, NULL, &m->p);
    m->mem = cl_trycalloc(m->n_floats, sizeof(float), "model weights");
    m->vocab = cl_trymalloc((size_t)c->vocab_size, sizeof *m->vocab, "vocabulary");
    if (!m->mem || !m->vocab) {
        cl_model_free(m);
        return NULL;
    }
    cl_params_layout(c, m->mem, &m->p);
    for (int i = 0; i < c->vocab_size; i++) m->vocab[i] = (uint32_t)i;
    if (c->sinusoidal) cl_sinusoidal_positions(m->p.wpe, c->block_size, c->n_embd);
    return m;
}

void cl_model_free(cl_model *m) {
    if (!m) return;
    if (m->map) munmap(m->map, m->map_len);
    free(m->data);
    free(m->mem);
    free(m->vocab);
    cl_bpe_free(m->bpe);
    free(m);
}

void cl_model_init_random(cl_model *m, uint64_t seed) {
    cl_rng r;
    cl_rng_seed(&r, seed);
    size_t n = cl_model_tensor_count(&m->cfg);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&m->cfg, m->mem, i, &t);
        if (!t.present) continue;
        int k = t.kind;
        if (k == K_LN1W || k == K_LN2W || k == K_LNFW) {
            for (size_t j = 0; j < t.numel; j++) t.data[j] = 1.0f;
        } else if (t.ndim == 2) {
            for (size_t j = 0; j < t.numel; j++) t.data[j] = (float)cl_rng_normal(&r, 0.0, 0.02);
        } else {
            memset(t.data, 0, t.numel * sizeof(float));
        }
    }
}

/* ---- HDF5 file ---- */

static const char *act_name(cl_activation a) {
    return a == CL_ACT_GELU ? "gelu" : a == CL_ACT_GELU_TANH ? "gelu_tanh" : "relu";
}
static const char *scale_name(cl_attn_scale s) { return s == CL_SCALE_N_EMBD ? "n_embd" : "head_size"; }

static int read_config(hid_t f, const char *path, cl_config *c) {
    if (!cl_h5_exists(f, "/config"))
        return cl_error("%s is not a corpuslens model file (no /config group)", path);
    hid_t g = H5Gopen2(f, "/config", H5P_DEFAULT);
    if (g < 0) return cl_error("%s: /config is not a group", path);
    char fmt[64] = "";
    long long v;
    int rc = 0;
    if (cl_h5_attr_read_str(g, "format", fmt, sizeof fmt) || strcmp(fmt, CL_MODEL_FORMAT)) {
        rc = cl_error("%s is not a corpuslens model file (/config format is not '%s')", path, CL_MODEL_FORMAT);
        goto out;
    }
    if (cl_h5_attr_read_int(g, "format_version", &v) || v != CL_MODEL_FORMAT_VERSION) {
        rc = cl_error("%s: model format version %lld is not supported (expected %d)", path, v, CL_MODEL_FORMAT_VERSION);
        goto out;
    }
    struct { const char *name; int *dst; } ints[] = {
        {"n_layer", &c->n_layer}, {"n_head", &c->n_head}, {"n_embd", &c->n_embd},
        {"block_size", &c->block_size}, {"vocab_size", &c->vocab_size}, {"bias", &c->bias},
        {"qkv_bias", &c->qkv_bias}, {"head_bias", &c->head_bias}, {"tied_head", &c->tied_head}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (cl_h5_attr_read_int(g, ints[i].name, &v) || v < 0 || v > (1 << 22)) {
            rc = cl_error("%s: /config attribute %s is missing or invalid", path, ints[i].name);
            goto out;
        }
        *ints[i].dst = (int)v;
    }
    char s[32];
    if (cl_h5_attr_read_str(g, "activation", s, sizeof s) ||
        (strcmp(s, "relu") && strcmp(s, "gelu") && strcmp(s, "gelu_tanh"))) {
        rc = cl_error("%s: /config activation must be 'relu', 'gelu' or 'gelu_tanh'", path);
        goto out;
    }
    c->activation = !strcmp(s, "gelu") ? CL_ACT_GELU : !strcmp(s, "gelu_tanh") ? CL_ACT_GELU_TANH : CL_ACT_RELU;
    if (cl_h5_attr_read_str(g, "attn_scale", s, sizeof s) || (strcmp(s, "head_size") && strcmp(s, "n_embd"))) {
        rc = cl_error("%s: /config attn_scale must be 'head_size' or 'n_embd'", path);
        goto out;
    }
    c->attn_scale = strcmp(s, "n_embd") ? CL_SCALE_HEAD_SIZE : CL_SCALE_N_EMBD;
    double eps;
    if (cl_h5_attr_read_double(g, "ln_eps", &eps)) {
        rc = cl_error("%s: /config attribute ln_eps is missing", path);
        goto out;
    }
    c->ln_eps = (float)eps;
    /* encoder / classifier options: absent in files of causal language models */
    struct { const char *name; int *dst; int dflt; } opt[] = {
        {"causal", &c->bidirectional, 1}, {"sinusoidal", &c->sinusoidal, 0},
        {"n_classes", &c->n_classes, 0}, {"mask_pad", &c->mask_pad, 0}, {"pad_id", &c->pad_id, 0}};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++) {
        v = opt[i].dflt;
        if (cl_h5_attr_exists(g, opt[i].name) && (cl_h5_attr_read_int(g, opt[i].name, &v) || v < 0 || v > (1 << 22))) {
            rc = cl_error("%s: /config attribute %s is invalid", path, opt[i].name);
            goto out;
        }
        *opt[i].dst = (int)v;
    }
    c->bidirectional = !c->bidirectional; /* stored as causal */
    v = 0; /* the trained context: optional metadata (absent in older files) */
    if (cl_h5_attr_exists(g, "trained_ctx") && (cl_h5_attr_read_int(g, "trained_ctx", &v) || v < 0 || v > (1 << 22))) {
        rc = cl_error("%s: /config attribute trained_ctx is invalid", path);
        goto out;
    }
    c->trained_ctx = (int)v;
    if (cl_config_validate(c)) rc = cl_error_prefix("%s: ", path);
out:
    H5Gclose(g);
    return rc;
}


static int read_tokenizer(hid_t f, const char *path, cl_model *m) {
    cl_bpe *b = cl_bpe_read_h5(f, path);
    if (!b) return -1;
    if (cl_bpe_vocab_size(b) != m->cfg.vocab_size) {
        cl_error("%s: /tokenizer/tokens has %d entries but vocab_size is %d", path, cl_bpe_vocab_size(b),
                 m->cfg.vocab_size);
        cl_bpe_free(b);
        return -1;
    }
    m->bpe = b;
    return 0;
}

static int write_tokenizer(hid_t f, const cl_model *m) {
    if (cl_bpe_vocab_size(m->bpe) != m->cfg.vocab_size)
        return cl_error("the tokenizer has %d tokens but vocab_size is %d", cl_bpe_vocab_size(m->bpe),
                        m->cfg.vocab_size);
    return cl_bpe_write_h5(f, m->bpe);
}

/* AnonHugePages of this process in kB (/proc/self/smaps_rollup), -1 if unknown. */
static long anon_huge_kb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* The whole file in private memory on transparent huge pages (2 MiB), read
 * with pread, or NULL (THP off, no huge page to be had, no memory, a read
 * error: the caller maps the file instead). On the development VM a 4 KiB
 * page costs ~2 us at its first touch in every process, even after
 * MAP_POPULATE (43 MB: ~20 ms), a huge page the same once; reading the page
 * cache into huge pages costs less. The
 * mapping is trimmed to whole 4 KiB pages after len, so munmap(p, len) frees
 * it all. */
static void *read_huge(int fd, size_t len) {
    const size_t huge = (size_t)2 << 20, small = 4096;
    char mode[128] = "";
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!thp) return NULL;
    size_t got_mode = fread(mode, 1, sizeof mode - 1, thp);
    fclose(thp);
    mode[got_mode] = '\0';
    if (!got_mode || strstr(mode, "[never]")) return NULL;
    size_t span = (len + huge - 1) & ~(huge - 1);
    char *raw = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    munmap(p + span, (size_t)(raw + span + huge - (p + span)));
    size_t keep = (len + small - 1) & ~(small - 1);
    /* Probe the first 2 MiB: where the kernel has no huge page to give (memory
     * fragmented), 4 KiB anonymous pages cost more than the mapped file. */
    long before = anon_huge_kb();
    if (before < 0 || madvise(p, span, MADV_HUGEPAGE)) {
        munmap(p, span);
        return NULL;
    }
    p[0] = 0;
    if (anon_huge_kb() - before < (long)(huge >> 10)) {
        munmap(p, span);
        return NULL;
    }
    if (cl_pread_exact(fd, p, len, 0)) {
        munmap(p, span);
        return NULL;
    }
    if (keep < span) munmap(p + keep, span - keep);
    mprotect(p, keep, PROT_READ);
    return p;
}

/* Map the whole model file read-only into m->map (page tables filled up
 * front: the forward pass reads every page). Where that fails m->map stays
 * NULL and every tensor is read. A file with a user block is not mapped
 * (dataset offsets would not be file offsets). copy: read it into huge
 * pages instead (read_huge) where that works. */
static void map_file(cl_model *m, hid_t f, const char *path, int copy) {
    hid_t fcpl = H5Fget_create_plist(f);
    hsize_t ub = 1;
    if (fcpl >= 0) {
        if (H5Pget_userblock(fcpl, &ub) < 0) ub = 1;
        H5Pclose(fcpl);
    }
    if (ub != 0) return;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    struct stat st;
    if (!fstat(fd, &st) && st.st_size > 0) {
        void *p = copy ? read_huge(fd, (size_t)st.st_size) : NULL;
        if (!p) p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p != MAP_FAILED) {
            m->map = p;
            m->map_len = (size_t)st.st_size;
        }
    }
    close(fd);
}

/* Address of tensor t's data inside the mapped file, or NULL when it is not
 * stored there as t.numel native floats, contiguous and unfiltered, at an
 * aligned offset (then it is read, and the read reports what is wrong). */
static const float *mapped_tensor(const cl_model *m, hid_t f, const char *dpath, const cl_tensor_info *t) {
    hid_t d = H5Dopen2(f, dpath, H5P_DEFAULT); /* opened once: the shape from this handle */
    if (d < 0) {
        H5Eclear2(H5E_DEFAULT);
        return NULL;
    }
    hsize_t dims[8] = {0, 0};
    hid_t space = H5Dget_space(d);
    int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (r >= 1 && r <= 8) H5Sget_simple_extent_dims(space, dims, NULL);
    if (space >= 0) H5Sclose(space);
    if (r != t->ndim || dims[0] != t->shape[0] || (r == 2 && dims[1] != t->shape[1])) {
        H5Dclose(d);
        return NULL;
    }
    const float *out = NULL;
    hid_t type = H5Dget_type(d), dcpl = H5Dget_create_plist(d);
    size_t bytes = t->numel * sizeof(float);
    if (type >= 0 && dcpl >= 0 && H5Tequal(type, H5T_NATIVE_FLOAT) > 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
        H5Pget_nfilters(dcpl) == 0 && H5Dget_storage_size(d) == bytes) {
        haddr_t off = H5Dget_offset(d);
        if (off != HADDR_UNDEF && off % sizeof(float) == 0 && off <= m->map_len && bytes <= m->map_len - off)
            out = (const float *)((const char *)m->map + off);
    }
    if (type >= 0) H5Tclose(type);
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Dclose(d);
    return out;
}

/* p's stacked field of every kind that has a mapped tensor becomes NULL (mem
 * holds zeros there), so that code reading p instead of cl_model_weights fails
 * loudly instead of computing with zeros. */
static void unlink_mapped_kinds(cl_model *m) {
    cl_params *p = &m->p;
    float **ptrs[CL_NUM_PARAM_KINDS] = {&p->wte, &p->wpe, &p->ln1_w, &p->ln1_b, &p->qkv_w, &p->qkv_b,
                                        &p->proj_w, &p->proj_b, &p->ln2_w, &p->ln2_b, &p->fc_w, &p->fc_b,
                                        &p->fcp_w, &p->fcp_b, &p->lnf_w, &p->lnf_b, &p->head_w, &p->head_b};
    const char *lo = m->map, *hi = lo + m->map_len;
    size_t n = cl_model_tensor_count(&m->cfg);
    for (size_t i = 0; i < n; i++) {
        const char *d = (const char *)m->data[i];
        if (d < lo || d >= hi) continue;
        int k, layer;
        index_to_kind(&m->cfg, i, &k, &layer);
        *ptrs[k] = NULL;
    }
    if (m->cfg.tied_head) p->head_w = p->wte;
}

/* Before anything is allocated by the config: every tensor it implies is
 * stored in the file with its shape (cl_h5_check_data: a float class, every
 * byte stored), and /weights holds nothing else (a tensor the config does
 * not use means the config and the weights disagree). */
static int check_tensors(hid_t f, const char *path, const cl_config *c) {
    size_t n = cl_model_tensor_count(c), present = 0;
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, NULL, i, &t);
        if (!t.present) continue;
        present++;
        char dpath[128];
        snprintf(dpath, sizeof dpath, "/weights/%s", t.name);
        if (!cl_h5_exists(f, dpath)) return cl_error("%s: tensor %s is missing", path, t.name);
        hsize_t dims[2] = {t.shape[0], t.shape[1]};
        if (cl_h5_check_data(f, dpath, H5T_NATIVE_FLOAT, t.ndim, dims))
            return cl_error_prefix("%s: tensor %s: ", path, t.name);
    }
    H5G_info_t gi;
    hid_t g = H5Gopen2(f, "/weights", H5P_DEFAULT);
    int ok = g >= 0 && H5Gget_info(g, &gi) >= 0;
    if (ok && gi.nlinks != present) {
        char name[256] = "";
        for (hsize_t k = 0; k < gi.nlinks; k++) {
            if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT) < 0) break;
            long j = cl_model_tensor_find(c, name);
            cl_tensor_info t;
            if (j >= 0) cl_model_tensor(c, NULL, (size_t)j, &t);
            if (j < 0 || !t.present) break;
            name[0] = '\0';
        }
        H5Gclose(g);
        return cl_error("%s: /weights holds %llu entries but the config implies %zu tensors%s%s%s", path,
                        (unsigned long long)gi.nlinks, present, name[0] ? " (" : "", name,
                        name[0] ? " is not one of them)" : "");
    }
    if (g >= 0) H5Gclose(g);
    if (!ok) return cl_error("%s: /weights is not a group", path);
    return 0;
}

/* The first non-finite value of n floats, or -1. */
static long first_nonfinite(const float *x, size_t n) {
    const size_t B = 4096;
    for (size_t i0 = 0; i0 < n; i0 += B) {
        size_t e = i0 + B < n ? i0 + B : n;
        uint32_t bad = 0;
        for (size_t i = i0; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i, 4);
            bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            for (size_t i = i0; i < e; i++)
                if (!isfinite(x[i])) return (long)i;
    }
    return -1;
}

static cl_model *load(const char *path, int map) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return NULL;
    cl_config c;
    cl_model *m = NULL;
    if (read_config(f, path, &c)) goto fail;
    if (check_tensors(f, path, &c)) goto fail;
    m = cl_model_create(&c);
    if (!m) goto fail;
    if (map) {
        m->data = cl_trycalloc(cl_model_tensor_count(&c), sizeof *m->data, "tensor table");
        if (!m->data) goto fail;
        map_file(m, f, path, map == 2);
    }
    if (cl_h5_exists(f, "/tokenizer")) {
        if (read_tokenizer(f, path, m)) goto fail;
    } else {
        free(m->vocab);
        m->vocab = NULL;
        int V;
        if (cl_h5_read_vocab(f, "/vocab", &m->vocab, &V)) {
            cl_error_prefix("%s: ", path);
            goto fail;
        }
        if (V != c.vocab_size) {
            cl_error("%s: /vocab has %d entries but vocab_size is %d", path, V, c.vocab_size);
            goto fail;
        }
    }
    size_t n = cl_model_tensor_count(&c);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&c, m->mem, i, &t);
        if (!t.present) continue;
        char dpath[128];
        snprintf(dpath, sizeof dpath, "/weights/%s", t.name);
        if (!cl_h5_exists(f, dpath)) {
            cl_error("%s: tensor %s is missing", path, t.name);
            goto fail;
        }
        if (m->map && (m->data[i] = mapped_tensor(m, f, dpath, &t))) continue;
        hsize_t dims[2] = {t.shape[0], t.shape[1]};
        if (cl_h5_read_exact(f, dpath, H5T_NATIVE_FLOAT, t.ndim, dims, t.data)) {
            cl_error_prefix("%s: tensor %s: ", path, t.name);
            goto fail;
        }
    }
    if (m->data) {
        for (size_t i = 0; i < n; i++) { /* read, absent (zeros, sinusoidal) and aliased tensors: in mem */
            cl_tensor_info t;
            cl_model_tensor(&c, m->mem, i, &t);
            if (!m->data[i]) m->data[i] = t.data;
        }
        if (c.tied_head) m->data[kind_index(&c, K_HEADW, -1)] = m->data[kind_index(&c, K_WTE, -1)];
        if (m->map) unlink_mapped_kinds(m);
    }
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&c, m->mem, i, &t);
        long bad = t.present ? first_nonfinite(cl_model_data(m, i), t.numel) : -1;
        if (bad >= 0) {
            cl_error("%s: tensor %s has a non-finite value (%g at element %ld)", path, t.name,
                     (double)cl_model_data(m, i)[bad], bad);
            goto fail;
        }
    }
    H5Fclose(f);
    return m;
fail:
    cl_model_free(m);
    H5Fclose(f);
    return NULL;
}

cl_model *cl_model_load(const char *path) { return load(path, 0); }
cl_model *cl_model_map(const char *path) { return load(path, 1); }
cl_model *cl_model_map_copy(const char *path) { return load(path, 2); }

int cl_model_save(const cl_model *m, const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    const cl_config *c = &m->cfg;
    int rc = 0;
    hid_t g = H5Gcreate2(f, "/config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= cl_h5_attr_write_str(g, "format", CL_MODEL_FORMAT);
    rc |= cl_h5_attr_write_int(g, "format_version", CL_MODEL_FORMAT_VERSION);
    rc |= cl_h5_attr_write_int(g, "n_layer", c->n_layer);
    rc |= cl_h5_attr_write_int(g, "n_head", c->n_head);
    rc |= cl_h5_attr_write_int(g, "n_embd", c->n_embd);
    rc |= cl_h5_attr_write_int(g, "block_size", c->block_size);
    rc |= cl_h5_attr_write_int(g, "vocab_size", c->vocab_size);
    rc |= cl_h5_attr_write_str(g, "activation", act_name(c->activation));
    rc |= cl_h5_attr_write_int(g, "bias", c->bias);
    rc |= cl_h5_attr_write_int(g, "qkv_bias", c->qkv_bias);
    rc |= cl_h5_attr_write_int(g, "head_bias", c->head_bias);
    rc |= cl_h5_attr_write_int(g, "tied_head", c->tied_head);
    rc |= cl_h5_attr_write_str(g, "attn_scale", scale_name(c->attn_scale));
    rc |= cl_h5_attr_write_double(g, "ln_eps", c->ln_eps);
    if (c->bidirectional || c->sinusoidal || c->n_classes || c->mask_pad) {
        rc |= cl_h5_attr_write_int(g, "causal", !c->bidirectional);
        rc |= cl_h5_attr_write_int(g, "sinusoidal", c->sinusoidal);
        rc |= cl_h5_attr_write_int(g, "n_classes", c->n_classes);
        rc |= cl_h5_attr_write_int(g, "mask_pad", c->mask_pad);
        rc |= cl_h5_attr_write_int(g, "pad_id", c->pad_id);
    }
    if (c->trained_ctx > 0) rc |= cl_h5_attr_write_int(g, "trained_ctx", c->trained_ctx);
    if (g < 0 || H5Gclose(g) < 0) rc = rc ? rc : cl_h5_error_in(f, "cannot write /config");
    if (!rc) rc = m->bpe ? write_tokenizer(f, m) : cl_h5_write_vocab(f, "/vocab", m->vocab, c->vocab_size);
    size_t n = cl_model_tensor_count(c);
    for (size_t i = 0; i < n && !rc; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, m->mem, i, &t);
        if (!t.present) continue;
        char dpath[128];
        snprintf(dpath, sizeof dpath, "/weights/%s", t.name);
        hsize_t dims[2] = {t.shape[0], t.shape[1]};
        rc = cl_h5_write(f, dpath, H5T_NATIVE_FLOAT, t.ndim, dims, cl_model_data(m, i));
    }
    if (cl_h5_finish(f, tmp, rc != 0)) rc = -1;
    if (rc) {
        remove(tmp);
        return cl_error_prefix("%s: ", path);
    }
    return cl_commit_file(tmp, path); /* fsync, rename, fsync the directory */
}

int cl_model_fingerprint(const cl_model *m, char out[65]) {
    /* Hash of a canonical text of the config, the vocabulary and every present
     * tensor's bytes (name, then data). */
    const cl_config *c = &m->cfg;
    char head[512];
    int hn = snprintf(head, sizeof head, "%d %d %d %d %d %s %d %d %d %d %s %.9g|", c->n_layer, c->n_head,
                      c->n_embd, c->block_size, c->vocab_size, act_name(c->activation), c->bias, c->qkv_bias,
                      c->head_bias, c->tied_head, scale_name(c->attn_scale), c->ln_eps);
    if (c->bidirectional || c->sinusoidal || c->n_classes || c->mask_pad)
        hn += snprintf(head + hn, sizeof head - (size_t)hn, "enc %d %d %d %d %d|", c->bidirectional,
                       c->sinusoidal, c->n_classes, c->mask_pad, c->pad_id);
    size_t total = (size_t)hn + (size_t)c->vocab_size * 4;
    size_t n = cl_model_tensor_count(c);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, m->mem, i, &t);
        if (t.present) total += strlen(t.name) + t.numel * sizeof(float);
    }
    unsigned char *buf = cl_trymalloc(total, 1, "fingerprint buffer");
    if (!buf) return -1;
    size_t off = 0;
    memcpy(buf, head, hn);
    off += hn;
    if (m->vocab) memcpy(buf + off, m->vocab, (size_t)c->vocab_size * 4);
    else memset(buf + off, 0, (size_t)c->vocab_size * 4); /* a loaded BPE model has no code points */
    off += (size_t)c->vocab_size * 4;
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, m->mem, i, &t);
        if (!t.present) continue;
        memcpy(buf + off, t.name, strlen(t.name));
        off += strlen(t.name);
        memcpy(buf + off, cl_model_data(m, i), t.numel * sizeof(float));
        off += t.numel * sizeof(float);
    }
    cl_sha256_mem(buf, off, out);
    free(buf);
    return 0;
}

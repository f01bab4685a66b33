/* The batched forward pass with hook points. Dimensions as in model.h;
 * N = B*T rows. One layer's activations at a time. */
#include "corpuslens/nn/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/kernels.h"

struct cl_forward {
    const cl_model *m;
    int max_B, max_T;
    float *x;      /* [N, C] residual stream */
    float *ln;     /* [N, C] LayerNorm output; also the position embeddings */
    float *qkv;    /* [N, 3C] */
    float *att;    /* [B, H, T, T] */
    float *z;      /* [N, C] head outputs */
    float *tmp;    /* [N, C] attn_out / mlp_out / token embeddings */
    float *h;      /* [N, F] feed-forward hidden */
    float *scratch;/* [N, C] contiguous copy for callbacks on q/k/v views */
    unsigned char *keep; /* [N] key mask (mask_pad: 0 at padding) */
};

static const char *point_names[CL_NUM_HOOK_POINTS] = {
    "hook_embed",       "hook_pos_embed",       "hook_resid_pre", "ln1.hook_normalized",
    "attn.hook_q",      "attn.hook_k",          "attn.hook_v",    "attn.hook_pattern",
    "attn.hook_z",      "hook_attn_out",        "hook_resid_mid", "ln2.hook_normalized",
    "mlp.hook_pre",     "mlp.hook_post",        "hook_mlp_out",   "hook_resid_post",
    "ln_final.hook_normalized"};

int cl_hook_is_per_layer(cl_hook_point p) {
    return p != CL_HOOK_EMBED && p != CL_HOOK_POS_EMBED && p != CL_HOOK_LN_FINAL_NORMALIZED;
}

void cl_hook_name(cl_hook_point p, int layer, char *buf, size_t n) {
    if ((int)p < 0 || p >= CL_NUM_HOOK_POINTS) {
        snprintf(buf, n, "?");
        return;
    }
    if (cl_hook_is_per_layer(p)) snprintf(buf, n, "blocks.%d.%s", layer, point_names[p]);
    else snprintf(buf, n, "%s", point_names[p]);
}

static const struct {
    const char *name;
    cl_hook_point p;
} short_names[] = {{"mlp_out", CL_HOOK_MLP_OUT},     {"attn_out", CL_HOOK_ATTN_OUT},
                   {"resid_pre", CL_HOOK_RESID_PRE}, {"resid_mid", CL_HOOK_RESID_MID},
                   {"resid_post", CL_HOOK_RESID_POST}, {"mlp_post", CL_HOOK_MLP_POST},
                   {"mlp_pre", CL_HOOK_MLP_PRE},     {"attn_z", CL_HOOK_Z}};

int cl_hook_parse(const char *name, int n_layer, cl_hook_point *point, int *layer) {
    for (size_t i = 0; i < sizeof short_names / sizeof *short_names; i++)
        if (!strcmp(name, short_names[i].name)) {
            *point = short_names[i].p;
            *layer = -1;
            return 0;
        }
    if (!strcmp(name, "embed")) {
        /* The block-0 input residual: hook_embed + hook_pos_embed. */
        *point = CL_HOOK_RESID_PRE;
        *layer = 0;
        return 0;
    }
    for (int p = 0; p < CL_NUM_HOOK_POINTS; p++)
        if (!cl_hook_is_per_layer(p) && !strcmp(name, point_names[p])) {
            *point = (cl_hook_point)p;
            *layer = -1;
            return 0;
        }
    int l, off = 0;
    if (sscanf(name, "blocks.%d.%n", &l, &off) == 1 && off > 0) {
        for (int p = 0; p < CL_NUM_HOOK_POINTS; p++)
            if (cl_hook_is_per_layer(p) && !strcmp(name + off, point_names[p])) {
                if (l < 0 || l >= n_layer)
                    return cl_error("hook '%s': block %d does not exist (the model has blocks 0..%d)", name, l,
                                    n_layer - 1);
                *point = (cl_hook_point)p;
                *layer = l;
                return 0;
            }
    }
    return cl_error("unknown hook '%s'; valid: hook_embed, hook_pos_embed, blocks.{i}.hook_resid_pre, "
                    "blocks.{i}.ln1.hook_normalized, blocks.{i}.attn.hook_q|hook_k|hook_v|hook_pattern|hook_z, "
                    "blocks.{i}.hook_attn_out, blocks.{i}.hook_resid_mid, blocks.{i}.ln2.hook_normalized, "
                    "blocks.{i}.mlp.hook_pre|hook_post, blocks.{i}.hook_mlp_out, blocks.{i}.hook_resid_post, "
                    "ln_final.hook_normalized, or the short names mlp_out attn_out resid_pre resid_mid "
                    "resid_post mlp_pre mlp_post attn_z embed (every block)",
                    name);
}

int cl_hook_width(const cl_config *c, cl_hook_point p) {
    if (p == CL_HOOK_MLP_PRE || p == CL_HOOK_MLP_POST) return 4 * c->n_embd;
    if (p == CL_HOOK_PATTERN) return -1; /* depends on T */
    return c->n_embd;
}

size_t cl_hook_capture_size(const cl_config *c, cl_hook_point p, cl_hook_mode mode, int B, int T) {
    if (p == CL_HOOK_PATTERN) {
        size_t n = (size_t)B * c->n_head * T;
        return mode == CL_HOOK_CAPTURE_LAST ? n : n * T;
    }
    size_t d = (size_t)cl_hook_width(c, p);
    return mode == CL_HOOK_CAPTURE_LAST ? (size_t)B * d : (size_t)B * T * d;
}

cl_forward *cl_forward_create(const cl_model *m, int max_B, int max_T) {
    const cl_config *c = &m->cfg;
    if (max_B < 1 || max_T < 1 || max_T > c->block_size) {
        cl_error("forward workspace: batch %d x %d positions is invalid (block_size %d)", max_B, max_T,
                 c->block_size);
        return NULL;
    }
    cl_forward *f = cl_trycalloc(1, sizeof *f, "forward workspace");
    if (!f) return NULL;
    f->m = m;
    f->max_B = max_B;
    f->max_T = max_T;
    size_t N = (size_t)max_B * max_T, C = c->n_embd;
    f->x = cl_trymalloc(N * C, sizeof(float), "residual stream");
    f->ln = f->x ? cl_trymalloc(N * C, sizeof(float), "layernorm buffer") : NULL;
    f->qkv = f->ln ? cl_trymalloc(N * 3 * C, sizeof(float), "qkv buffer") : NULL;
    f->att = f->qkv ? cl_trymalloc((size_t)max_B * c->n_head * max_T * max_T, sizeof(float), "attention") : NULL;
    f->z = f->att ? cl_trymalloc(N * C, sizeof(float), "attention output") : NULL;
    f->tmp = f->z ? cl_trymalloc(N * C, sizeof(float), "block output") : NULL;
    f->h = f->tmp ? cl_trymalloc(N * 4 * C, sizeof(float), "feed-forward buffer") : NULL;
    f->scratch = f->h ? cl_trymalloc(N * C, sizeof(float), "hook scratch") : NULL;
    f->keep = f->scratch ? cl_trymalloc(N, 1, "key mask") : NULL;
    if (!f->keep) {
        cl_forward_free(f);
        return NULL;
    }
    return f;
}

void cl_forward_free(cl_forward *f) {
    if (!f) return;
    free(f->x);
    free(f->ln);
    free(f->qkv);
    free(f->att);
    free(f->z);
    free(f->tmp);
    free(f->h);
    free(f->scratch);
    free(f->keep);
    free(f);
}

/* A view of an activation: G groups of R rows of D floats, rows `stride`
 * floats apart (groups are consecutive rows). Normal points: G = B, R = T;
 * the pattern: G = B*H, R = T, D = T. */
typedef struct {
    float *p;
    int G, R, D;
    size_t stride;
} view;

static int run_hooks(cl_forward *f, const cl_hook *hooks, int n_hooks, cl_hook_point point, int layer, view v,
                     int B, int T) {
    const cl_config *c = &f->m->cfg;
    int per_layer = cl_hook_is_per_layer(point);
    for (int i = 0; i < n_hooks; i++) {
        const cl_hook *hk = &hooks[i];
        if (hk->point != point) continue;
        if (per_layer && hk->layer != -1 && hk->layer != layer) continue;
        int all_layers = per_layer && hk->layer == -1;
        size_t rows = (size_t)v.G * v.R;
        switch (hk->mode) {
        case CL_HOOK_CAPTURE: {
            float *out = hk->out + (all_layers ? (size_t)layer * rows * v.D : 0);
            for (size_t r = 0; r < rows; r++) memcpy(out + r * v.D, v.p + r * v.stride, (size_t)v.D * sizeof(float));
            break;
        }
        case CL_HOOK_CAPTURE_LAST: {
            float *out = hk->out + (all_layers ? (size_t)layer * v.G * v.D : 0);
            for (size_t g = 0; g < (size_t)v.G; g++)
                memcpy(out + g * v.D, v.p + (g * v.R + v.R - 1) * v.stride, (size_t)v.D * sizeof(float));
            break;
        }
        case CL_HOOK_ZERO:
            for (size_t r = 0; r < rows; r++) memset(v.p + r * v.stride, 0, (size_t)v.D * sizeof(float));
            break;
        case CL_HOOK_MEAN: {
            if (!hk->mean) return cl_error("mean-ablation hook without a mean vector");
            const float *mean = hk->mean + (all_layers ? (size_t)layer * v.D : 0);
            for (size_t r = 0; r < rows; r++) memcpy(v.p + r * v.stride, mean, (size_t)v.D * sizeof(float));
            break;
        }
        case CL_HOOK_CALLBACK: {
            if (!hk->fn) return cl_error("callback hook without a function");
            cl_hook_shape sh = {B, T, v.D, c->n_head};
            float *act = v.p;
            int strided = v.stride != (size_t)v.D;
            if (strided) {
                act = f->scratch;
                for (size_t r = 0; r < rows; r++) memcpy(act + r * v.D, v.p + r * v.stride, (size_t)v.D * sizeof(float));
            }
            if (hk->fn(hk->user, point, per_layer ? layer : -1, act, &sh)) {
                char name[96];
                cl_hook_name(point, layer, name, sizeof name);
                if (!cl_last_error()[0]) cl_error("hook callback at %s failed", name);
                return -1;
            }
            if (strided)
                for (size_t r = 0; r < rows; r++) memcpy(v.p + r * v.stride, act + r * v.D, (size_t)v.D * sizeof(float));
            break;
        }
        default:
            return cl_error("unknown hook mode %d", (int)hk->mode);
        }
    }
    return 0;
}

static int wants_point(const cl_hook *hooks, int n_hooks, cl_hook_point p, int mode_full_only) {
    for (int i = 0; i < n_hooks; i++)
        if (hooks[i].point == p && (!mode_full_only || hooks[i].mode != CL_HOOK_CAPTURE_LAST)) return 1;
    return 0;
}

#define HOOK(point, layer, vw)                                                    \
    do {                                                                          \
        if (n_hooks && run_hooks(f, hooks, n_hooks, point, layer, vw, B, T)) return -1; \
    } while (0)

/* out[N, OC] = inp @ W^T + bias; every row the same bits whatever N and the
 * other rows (gemm.h), so a prompt's result does not depend on its batch. */
static void mm(const cl_forward *f, float *out, const float *inp, const float *W, const float *bias, size_t N,
               int IC, int OC) {
    (void)f;
    matmul_forward(out, inp, W, bias, N, IC, OC);
}

int cl_forward_run(cl_forward *f, const int32_t *tokens, int B, int T, const cl_hook *hooks, int n_hooks,
                   cl_logits_mode lmode, float *logits) {
    const cl_model *m = f->m;
    const cl_config *c = &m->cfg;
    cl_weights w; /* the global tensors, and block l's inside the loop */
    cl_model_weights(m, 0, &w);
    if (B < 1 || T < 1 || B > f->max_B || T > f->max_T)
        return cl_error("forward: batch %d x %d exceeds the workspace (%d x %d)", B, T, f->max_B, f->max_T);
    if (lmode != CL_LOGITS_NONE && !logits) return cl_error("forward: logits requested without a buffer");
    for (int i = 0; i < n_hooks; i++) {
        if ((int)hooks[i].point < 0 || hooks[i].point >= CL_NUM_HOOK_POINTS) return cl_error("forward: bad hook point");
        if (hooks[i].layer < -1 || hooks[i].layer >= c->n_layer)
            return cl_error("forward: hook layer %d out of range (0..%d)", hooks[i].layer, c->n_layer - 1);
        if ((hooks[i].mode == CL_HOOK_CAPTURE || hooks[i].mode == CL_HOOK_CAPTURE_LAST) && !hooks[i].out)
            return cl_error("forward: capture hook without an output buffer");
    }
    const size_t C = c->n_embd, F = 4 * C, V = c->vocab_size, N = (size_t)B * T;
    const size_t NO = (size_t)cl_model_n_out(c); /* head outputs */
    const int H = c->n_head;
    /* readout position of CL_LOGITS_LAST: [start] (0) for a classifier */
    const size_t RP = c->n_classes > 0 ? 0 : (size_t)T - 1;
    const int encoder = c->bidirectional || c->mask_pad;
    if (c->mask_pad)
        for (size_t i = 0; i < N; i++) f->keep[i] = tokens[i] != c->pad_id;
    const float scale = c->attn_scale == CL_SCALE_N_EMBD ? 1.0f / sqrtf((float)C) : 1.0f / sqrtf((float)(C / H));
    view full = {NULL, B, T, (int)C, C};

    /* Embeddings: tmp = wte[token], ln = wpe[t]; x = tmp + ln. */
    for (size_t i = 0; i < N; i++) {
        int32_t tok = tokens[i];
        if (tok < 0 || (size_t)tok >= V)
            return cl_error("forward: token id %d at row %zu position %zu is outside the vocabulary (0..%zu)",
                            tok, i / T, i % T, V - 1);
        memcpy(f->tmp + i * C, w.wte + (size_t)tok * C, C * sizeof(float));
        memcpy(f->ln + i * C, w.wpe + (i % T) * C, C * sizeof(float));
    }
    full.p = f->tmp;
    HOOK(CL_HOOK_EMBED, -1, full);
    full.p = f->ln;
    HOOK(CL_HOOK_POS_EMBED, -1, full);
    for (size_t i = 0; i < N * C; i++) f->x[i] = f->tmp[i] + f->ln[i];

    for (int l = 0; l < c->n_layer; l++) {
        cl_model_weights(m, l, &w);
        const float *ln1_b = c->bias ? w.ln1_b : NULL, *ln2_b = c->bias ? w.ln2_b : NULL;
        full.p = f->x;
        HOOK(CL_HOOK_RESID_PRE, l, full);
        layernorm_forward(f->ln, NULL, NULL, f->x, w.ln1_w, ln1_b, N, (int)C, c->ln_eps);
        full.p = f->ln;
        HOOK(CL_HOOK_LN1_NORMALIZED, l, full);
        mm(f, f->qkv, f->ln, w.qkv_w, c->qkv_bias ? w.qkv_b : NULL, N,
                       (int)C, (int)(3 * C));
        if (n_hooks) {
            view q = {f->qkv, B, T, (int)C, 3 * C};
            HOOK(CL_HOOK_Q, l, q);
            q.p = f->qkv + C;
            HOOK(CL_HOOK_K, l, q);
            q.p = f->qkv + 2 * C;
            HOOK(CL_HOOK_V, l, q);
        }
        if (encoder)
            attention_pattern_forward_masked(f->att, f->qkv, c->mask_pad ? f->keep : NULL, B, T, (int)C, H, scale,
                                             !c->bidirectional);
        else attention_pattern_forward(f->att, f->qkv, B, T, (int)C, H, scale);
        view pv = {f->att, B * H, T, T, (size_t)T};
        HOOK(CL_HOOK_PATTERN, l, pv);
        if (encoder) attention_mix_forward_full(f->z, f->att, f->qkv, B, T, (int)C, H);
        else attention_mix_forward(f->z, f->att, f->qkv, B, T, (int)C, H);
        full.p = f->z;
        HOOK(CL_HOOK_Z, l, full);
        mm(f, f->tmp, f->z, w.proj_w, c->bias ? w.proj_b : NULL, N, (int)C, (int)C);
        full.p = f->tmp;
        HOOK(CL_HOOK_ATTN_OUT, l, full);
        residual_add(f->x, f->tmp, N * C);
        full.p = f->x;
        HOOK(CL_HOOK_RESID_MID, l, full);
        layernorm_forward(f->ln, NULL, NULL, f->x, w.ln2_w, ln2_b, N, (int)C, c->ln_eps);
        full.p = f->ln;
        HOOK(CL_HOOK_LN2_NORMALIZED, l, full);
        mm(f, f->h, f->ln, w.fc_w, c->bias ? w.fc_b : NULL, N, (int)C, (int)F);
        view hv = {f->h, B, T, (int)F, F};
        HOOK(CL_HOOK_MLP_PRE, l, hv);
        if (c->activation == CL_ACT_GELU) gelu_forward(f->h, f->h, N * F);
        else if (c->activation == CL_ACT_GELU_TANH) gelu_tanh_forward(f->h, f->h, N * F);
        else relu_forward(f->h, f->h, N * F);
        HOOK(CL_HOOK_MLP_POST, l, hv);
        mm(f, f->tmp, f->h, w.fcp_w, c->bias ? w.fcp_b : NULL, N, (int)F, (int)C);
        full.p = f->tmp;
        HOOK(CL_HOOK_MLP_OUT, l, full);
        residual_add(f->x, f->tmp, N * C);
        full.p = f->x;
        HOOK(CL_HOOK_RESID_POST, l, full);
    }

    /* Final LayerNorm and head: all positions when asked for, else last only. */
    int need_all = lmode == CL_LOGITS_ALL || wants_point(hooks, n_hooks, CL_HOOK_LN_FINAL_NORMALIZED, 1);
    int need_last = lmode == CL_LOGITS_LAST || wants_point(hooks, n_hooks, CL_HOOK_LN_FINAL_NORMALIZED, 0);
    if (!need_all && !need_last) return 0;
    const float *lnf_b = c->bias ? w.lnf_b : NULL;
    const float *head_b = c->head_bias ? w.head_b : NULL;
    if (need_all) {
        layernorm_forward(f->ln, NULL, NULL, f->x, w.lnf_w, lnf_b, N, (int)C, c->ln_eps);
        full.p = f->ln;
        HOOK(CL_HOOK_LN_FINAL_NORMALIZED, -1, full);
        if (lmode == CL_LOGITS_ALL) mm(f, logits, f->ln, w.head_w, head_b, N, (int)C, (int)NO);
        else if (lmode == CL_LOGITS_LAST) {
            for (int b = 0; b < B; b++) memcpy(f->z + (size_t)b * C, f->ln + ((size_t)b * T + RP) * C, C * sizeof(float));
            mm(f, logits, f->z, w.head_w, head_b, (size_t)B, (int)C, (int)NO);
        }
        return 0;
    }
    /* Readout position only (the last; [start] for a classifier): rows of
     * length 1 (capture-last hooks see [B, C]). */
    for (int b = 0; b < B; b++) memcpy(f->z + (size_t)b * C, f->x + ((size_t)b * T + RP) * C, C * sizeof(float));
    layernorm_forward(f->ln, NULL, NULL, f->z, w.lnf_w, lnf_b, (size_t)B, (int)C, c->ln_eps);
    view lv = {f->ln, B, 1, (int)C, C};
    if (n_hooks && run_hooks(f, hooks, n_hooks, CL_HOOK_LN_FINAL_NORMALIZED, -1, lv, B, 1)) return -1;
    if (lmode == CL_LOGITS_LAST) mm(f, logits, f->ln, w.head_w, head_b, (size_t)B, (int)C, (int)NO);
    return 0;
}

void cl_unembed(const cl_model *m, const float *in, size_t N, float *out) {
    const cl_config *c = &m->cfg;
    size_t C = c->n_embd;
    cl_weights w;
    cl_model_weights(m, 0, &w);
    float *ln = malloc(N * C * sizeof(float));
    if (!ln) { /* fall back row by row */
        float row[16384];
        for (size_t i = 0; i < N; i++) {
            layernorm_forward(row, NULL, NULL, in + i * C, w.lnf_w, c->bias ? w.lnf_b : NULL, 1, (int)C, c->ln_eps);
            matmul_forward(out + i * cl_model_n_out(c), row, w.head_w, c->head_bias ? w.head_b : NULL, 1,
                           (int)C, cl_model_n_out(c));
        }
        return;
    }
    layernorm_forward(ln, NULL, NULL, in, w.lnf_w, c->bias ? w.lnf_b : NULL, N, (int)C, c->ln_eps);
    matmul_forward(out, ln, w.head_w, c->head_bias ? w.head_b : NULL, N, (int)C, cl_model_n_out(c));
    free(ln);
}

void cl_softmax_rows(float *x, size_t N, int V) { softmax_forward(x, N, V); }

double cl_forward_flops(const cl_config *c, int B, int T) {
    double C = c->n_embd, F = 4.0 * C, V = c->vocab_size, N = (double)B * T, L = c->n_layer;
    double per_layer = 2.0 * N * (C * 3 * C + C * C + C * F + F * C) /* matmuls */
                       + 2.0 * 2.0 * B * (T * (T + 1) / 2.0) * C;      /* q.k and att.v (causal) */
    return L * per_layer + 2.0 * N * C * V;
}

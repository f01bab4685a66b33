/* Training forward/backward with every layer's activations kept, AdamW, data
 * windows. Dimensions as in model.h; Bl rows on this rank, N = Bl*T rows,
 * F = 4C. See include/corpuslens/train/train.h for the determinism contract. */
#include "corpuslens/train/train.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/par/par.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/nn/kernels_backward.h"
#include "corpuslens/nn/kernels_train.h"

/* Activations of the training forward pass, one allocation (llm.c style). */
typedef struct {
    float *resid;    /* [L+1, N, C] residual stream entering block l (resid[L]: after the last) */
    float *ln1;      /* [L, N, C] */
    float *ln1_mean; /* [L, N] */
    float *ln1_rstd; /* [L, N] */
    float *qkv;      /* [L, N, 3C] */
    float *att;      /* [L, Bl, H, T, T] softmax pattern */
    float *attd;     /* [L, Bl, H, T, T] pattern after dropout (used by the mix) */
    float *attmask;  /* [L, Bl, H, T, T] dropout factors */
    float *z;        /* [L, N, C] head outputs (input of sa.proj) */
    float *projmask; /* [L, N, C] */
    float *resmid;   /* [L, N, C] residual after attention */
    float *ln2;      /* [L, N, C] */
    float *ln2_mean; /* [L, N] */
    float *ln2_rstd; /* [L, N] */
    float *fch;      /* [L, N, F] pre-activation */
    float *fcha;     /* [L, N, F] post-activation */
    float *ffmask;   /* [L, N, C] */
    float *lnf;      /* [N, C] */
    float *lnf_mean; /* [N] */
    float *lnf_rstd; /* [N] */
    float *logits;   /* [N, V] logits, then probabilities, then dlogits */
    float *tmp;      /* [N, C] scratch (sa.proj / ffwd output before the residual) */
    /* backward scratch */
    float *dres;     /* [N, C] gradient of the residual stream */
    float *dln;      /* [N, C] */
    float *dtmp;     /* [N, C] */
    float *dz;       /* [N, C] */
    float *dqkv;     /* [N, 3C] */
    float *dfch;     /* [N, F] */
    float *attbuf;   /* [threads, T, T] attention backward scratch */
} acts;

#define NUM_ACTS 29

struct cl_trainer {
    cl_model *m;
    int max_B, T;
    int threads; /* OpenMP threads the activations have scratch for */
    float *grads, *adam_m, *adam_v; /* like model->mem */
    cl_params g;                    /* pointers into grads */
    acts a;
    float *act_mem;
    int32_t *inputs, *targets; /* [N] (a classifier: targets[b] is row b's label) */
    unsigned char *keep;       /* [N] key mask (mask_pad) */
};

static size_t acts_layout(const cl_config *c, int B, int T, int threads, float *base, acts *a) {
    size_t L = c->n_layer, C = c->n_embd, F = 4 * C, V = c->vocab_size, H = c->n_head;
    size_t N = (size_t)B * T, AT = (size_t)B * H * T * T;
    size_t sizes[NUM_ACTS] = {(L + 1) * N * C, L * N * C, L * N, L * N, L * N * 3 * C, L * AT, L * AT, L * AT,
                              L * N * C, L * N * C, L * N * C, L * N * C, L * N, L * N, L * N * F, L * N * F,
                              L * N * C, N * C, N, N, N * V, N * C,
                              N * C, N * C, N * C, N * C, N * 3 * C, N * F, (size_t)threads * T * T};
    float **ptrs[NUM_ACTS] = {&a->resid, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->attd,
                              &a->attmask, &a->z, &a->projmask, &a->resmid, &a->ln2, &a->ln2_mean,
                              &a->ln2_rstd, &a->fch, &a->fcha, &a->ffmask, &a->lnf, &a->lnf_mean,
                              &a->lnf_rstd, &a->logits, &a->tmp, &a->dres, &a->dln, &a->dtmp, &a->dz,
                              &a->dqkv, &a->dfch, &a->attbuf};
    size_t off = 0;
    for (int i = 0; i < NUM_ACTS; i++) {
        *ptrs[i] = base ? base + off : NULL;
        off += sizes[i];
    }
    return off;
}

cl_adamw cl_adamw_defaults(void) {
    cl_adamw h = {3e-4f, 0.9f, 0.999f, 1e-8f, 0.01f};
    return h;
}

cl_trainer *cl_trainer_create(cl_model *m, int max_B, int T) {
    const cl_config *c = &m->cfg;
    if (max_B < 1) {
        cl_error("trainer: batch rows %d must be >= 1", max_B);
        return NULL;
    }
    if (c->activation == CL_ACT_GELU_TANH) {
        cl_error("trainer: training supports models with relu or gelu (this model has activation gelu_tanh)");
        return NULL;
    }
    if (T < 1 || T > c->block_size) {
        cl_error("trainer: context %d is outside 1..block_size (%d)", T, c->block_size);
        return NULL;
    }
    cl_trainer *tr = cl_trycalloc(1, sizeof *tr, "trainer");
    if (!tr) return NULL;
    tr->m = m;
    tr->max_B = max_B;
    tr->T = T;
    size_t n = m->n_floats, N = (size_t)max_B * T;
    tr->grads = cl_trycalloc(n, sizeof(float), "gradients");
    tr->adam_m = tr->grads ? cl_trycalloc(n, sizeof(float), "AdamW first moments") : NULL;
    tr->adam_v = tr->adam_m ? cl_trycalloc(n, sizeof(float), "AdamW second moments") : NULL;
    tr->threads = omp_get_max_threads();
    size_t na = acts_layout(c, max_B, T, tr->threads, NULL, &tr->a);
    tr->act_mem = tr->adam_v ? cl_trycalloc(na, sizeof(float), "training activations") : NULL;
    tr->inputs = tr->act_mem ? cl_trymalloc(N, sizeof(int32_t), "batch inputs") : NULL;
    tr->targets = tr->inputs ? cl_trymalloc(N, sizeof(int32_t), "batch targets") : NULL;
    tr->keep = tr->targets ? cl_trymalloc(N, 1, "key mask") : NULL;
    if (!tr->keep) {
        cl_trainer_free(tr);
        return NULL;
    }
    cl_params_layout(c, tr->grads, &tr->g);
    acts_layout(c, max_B, T, tr->threads, tr->act_mem, &tr->a);
    return tr;
}

void cl_trainer_free(cl_trainer *tr) {
    if (!tr) return;
    free(tr->grads);
    free(tr->adam_m);
    free(tr->adam_v);
    free(tr->act_mem);
    free(tr->inputs);
    free(tr->targets);
    free(tr->keep);
    free(tr);
}

float *cl_trainer_grads(cl_trainer *tr) { return tr->grads; }
float *cl_trainer_adam_m(cl_trainer *tr) { return tr->adam_m; }
float *cl_trainer_adam_v(cl_trainer *tr) { return tr->adam_v; }
size_t cl_trainer_n_floats(const cl_trainer *tr) { return tr->m->n_floats; }

/* splitmix64 finaliser: the dropout seeds. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Dropout factors for `rows` rows of `width` floats starting at global row
 * row0: 0 with probability p, else 1/(1-p). */
static void dropout_mask(float *mask, size_t rows, size_t width, float p, uint64_t seed, long step, int layer,
                         int site, size_t row0) {
    float keep = 1.0f / (1.0f - p);
    uint64_t base = mix64(mix64(mix64(seed) ^ (uint64_t)step) ^ (uint64_t)(layer * 4 + site));
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        cl_rng rng;
        cl_rng_seed(&rng, mix64(base ^ (uint64_t)(row0 + r)));
        float *mk = mask + r * width;
        for (size_t j = 0; j < width; j++) mk[j] = cl_rng_uniform(&rng) < p ? 0.0f : keep;
    }
}

static float attn_scale(const cl_config *c) {
    return c->attn_scale == CL_SCALE_N_EMBD ? 1.0f / sqrtf((float)c->n_embd)
                                           : 1.0f / sqrtf((float)(c->n_embd / c->n_head));
}

/* The forward pass over tr->inputs (Bl rows); returns the loss sum over
 * tr->targets; probabilities left in a.logits. p = 0: no dropout. */
static double train_forward(cl_trainer *tr, int Bl, float p, uint64_t seed, long step, size_t row0) {
    const cl_config *c = &tr->m->cfg;
    const cl_params *w = &tr->m->p;
    acts *a = &tr->a;
    const int T = tr->T, H = c->n_head;
    const size_t C = c->n_embd, F = 4 * C, V = c->vocab_size, N = (size_t)Bl * T;
    const size_t AT = (size_t)Bl * H * T * T;
    const float scale = attn_scale(c);
    const int encoder = c->bidirectional || c->mask_pad;
    if (c->mask_pad)
        for (size_t i = 0; i < N; i++) tr->keep[i] = tr->inputs[i] != c->pad_id;
    /* embeddings */
    for (size_t i = 0; i < N; i++) {
        const float *te = w->wte + (size_t)tr->inputs[i] * C, *pe = w->wpe + (i % (size_t)T) * C;
        float *x = a->resid + i * C;
        for (size_t j = 0; j < C; j++) x[j] = te[j] + pe[j];
    }
    for (int l = 0; l < c->n_layer; l++) {
        size_t lNC = (size_t)l * N * C;
        const float *xin = a->resid + lNC;
        float *ln1 = a->ln1 + lNC, *qkv = a->qkv + (size_t)l * N * 3 * C;
        float *att = a->att + (size_t)l * AT, *attd = a->attd + (size_t)l * AT;
        float *z = a->z + lNC, *resmid = a->resmid + lNC, *ln2 = a->ln2 + lNC;
        float *fch = a->fch + (size_t)l * N * F, *fcha = a->fcha + (size_t)l * N * F;
        float *xout = a->resid + lNC + N * C;
        tk_layernorm_forward(ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, xin, w->ln1_w + l * C,
                          c->bias ? w->ln1_b + l * C : NULL, N, (int)C, c->ln_eps);
        tk_matmul_forward(qkv, ln1, w->qkv_w + l * 3 * C * C, c->qkv_bias ? w->qkv_b + l * 3 * C : NULL, N, (int)C,
                       (int)(3 * C));
        if (encoder)
            attention_pattern_forward_masked(att, qkv, c->mask_pad ? tr->keep : NULL, Bl, T, (int)C, H, scale,
                                             !c->bidirectional);
        else tk_attention_pattern_forward(att, qkv, Bl, T, (int)C, H, scale);
        const float *mixatt = att;
        if (p > 0.0f) {
            float *mk = a->attmask + (size_t)l * AT;
            dropout_mask(mk, (size_t)Bl, (size_t)H * T * T, p, seed, step, l, 0, row0);
            tk_dropout_apply(attd, att, mk, AT);
            mixatt = attd;
        }
        if (encoder) attention_mix_forward_full(z, mixatt, qkv, Bl, T, (int)C, H);
        else tk_attention_mix_forward(z, mixatt, qkv, Bl, T, (int)C, H);
        tk_matmul_forward(a->tmp, z, w->proj_w + l * C * C, c->bias ? w->proj_b + l * C : NULL, N, (int)C, (int)C);
        if (p > 0.0f) {
            float *mk = a->projmask + lNC;
            dropout_mask(mk, (size_t)Bl, (size_t)T * C, p, seed, step, l, 1, row0);
            tk_dropout_apply(a->tmp, a->tmp, mk, N * C);
        }
        tk_add(resmid, xin, a->tmp, N * C);
        tk_layernorm_forward(ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, resmid, w->ln2_w + l * C,
                          c->bias ? w->ln2_b + l * C : NULL, N, (int)C, c->ln_eps);
        tk_matmul_forward(fch, ln2, w->fc_w + l * F * C, c->bias ? w->fc_b + l * F : NULL, N, (int)C, (int)F);
        if (c->activation == CL_ACT_GELU) tk_gelu_forward(fcha, fch, N * F);
        else tk_relu_forward(fcha, fch, N * F);
        tk_matmul_forward(a->tmp, fcha, w->fcp_w + l * C * F, c->bias ? w->fcp_b + l * C : NULL, N, (int)F, (int)C);
        if (p > 0.0f) {
            float *mk = a->ffmask + lNC;
            dropout_mask(mk, (size_t)Bl, (size_t)T * C, p, seed, step, l, 2, row0);
            tk_dropout_apply(a->tmp, a->tmp, mk, N * C);
        }
        tk_add(xout, resmid, a->tmp, N * C);
    }
    const float *xL = a->resid + (size_t)c->n_layer * N * C;
    tk_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, xL, w->lnf_w, c->bias ? w->lnf_b : NULL, N, (int)C,
                      c->ln_eps);
    if (c->n_classes > 0) {
        /* classifier: the head reads position 0 ([start]) of each row */
        const size_t K = (size_t)c->n_classes;
        for (int b = 0; b < Bl; b++) memcpy(a->tmp + (size_t)b * C, a->lnf + (size_t)b * T * C, C * sizeof(float));
        tk_matmul_forward(a->logits, a->tmp, w->head_w, c->head_bias ? w->head_b : NULL, (size_t)Bl, (int)C, (int)K);
        return softmax_crossentropy_forward(a->logits, NULL, a->logits, tr->targets, (size_t)Bl, (int)K);
    }
    tk_matmul_forward(a->logits, a->lnf, w->head_w, c->head_bias ? w->head_b : NULL, N, (int)C, (int)V);
    return softmax_crossentropy_forward(a->logits, NULL, a->logits, tr->targets, N, (int)V);
}

static int load_rows(cl_trainer *tr, const int32_t *windows, int Bl) {
    const int T = tr->T, V = tr->m->cfg.vocab_size, K = tr->m->cfg.n_classes;
    if (Bl < 1 || Bl > tr->max_B) return cl_error("trainer: %d rows outside 1..%d", Bl, tr->max_B);
    if (K > 0) { /* a classifier: T tokens, then the label */
        for (size_t b = 0; b < (size_t)Bl; b++) {
            for (size_t t = 0; t < (size_t)T; t++) {
                int32_t tok = windows[b * (T + 1) + t];
                if (tok < 0 || tok >= V)
                    return cl_error("trainer: token id %d in row %zu position %zu is outside the vocabulary (0..%d)",
                                    tok, b, t, V - 1);
                tr->inputs[b * T + t] = tok;
            }
            int32_t y = windows[b * (T + 1) + T];
            if (y < 0 || y >= K) return cl_error("trainer: label %d of row %zu is outside 0..%d", y, b, K - 1);
            tr->targets[b] = y;
        }
        return 0;
    }
    for (size_t b = 0; b < (size_t)Bl; b++)
        for (size_t t = 0; t <= (size_t)T; t++) {
            int32_t tok = windows[b * (T + 1) + t];
            if (tok < 0 || tok >= V)
                return cl_error("trainer: token id %d in row %zu position %zu is outside the vocabulary (0..%d)",
                                tok, b, t, V - 1);
            if (t < (size_t)T) tr->inputs[b * T + t] = tok;
            if (t > 0) tr->targets[b * T + t - 1] = tok;
        }
    return 0;
}

/* One thread pool for a step (kernels_train.h), at most tr->threads wide
 * (the attention scratch is sized for that many). */
static cl_thread_state threads_begin(const cl_trainer *tr) {
    cl_thread_state s = cl_train_threads_begin();
    if (omp_get_max_threads() > tr->threads) omp_set_num_threads(tr->threads);
    return s;
}

int cl_train_loss(cl_trainer *tr, const int32_t *windows, int Bl, double *loss_sum) {
    if (load_rows(tr, windows, Bl)) return -1;
    cl_thread_state ts = threads_begin(tr);
    *loss_sum = train_forward(tr, Bl, 0.0f, 0, 0, 0);
    cl_train_threads_end(ts);
    return 0;
}

int cl_train_forward_backward(cl_trainer *tr, const int32_t *windows, int Bl, size_t row0, size_t global_rows,
                              float p, uint64_t seed, long step, double *loss_sum) {
    if (!(p >= 0.0f && p < 1.0f)) return cl_error("trainer: dropout %g outside [0, 1)", (double)p);
    if (global_rows < (size_t)Bl) return cl_error("trainer: global batch smaller than the local rows");
    if (load_rows(tr, windows, Bl)) return -1;
    cl_thread_state ts = threads_begin(tr);
    *loss_sum = train_forward(tr, Bl, p, seed, step, row0);

    const cl_config *c = &tr->m->cfg;
    const cl_params *w = &tr->m->p;
    const cl_params *g = &tr->g;
    acts *a = &tr->a;
    const int T = tr->T, H = c->n_head;
    const size_t C = c->n_embd, F = 4 * C, V = c->vocab_size, N = (size_t)Bl * T;
    const size_t AT = (size_t)Bl * H * T * T;
    const float scale = attn_scale(c);
    memset(tr->grads, 0, tr->m->n_floats * sizeof(float));

    if (c->n_classes > 0) {
        /* classifier: mean over rows; only position 0 feeds the head */
        const size_t K = (size_t)c->n_classes;
        softmax_crossentropy_backward(a->logits, a->logits, tr->targets, (size_t)Bl, (int)K,
                                      (float)(1.0 / (double)global_rows));
        for (int b = 0; b < Bl; b++) memcpy(a->tmp + (size_t)b * C, a->lnf + (size_t)b * T * C, C * sizeof(float));
        tk_matmul_backward(a->dtmp, g->head_w, c->head_bias ? g->head_b : NULL, a->logits, a->tmp, w->head_w,
                           (size_t)Bl, (int)C, (int)K);
        memset(a->dln, 0, N * C * sizeof(float));
        for (int b = 0; b < Bl; b++) memcpy(a->dln + (size_t)b * T * C, a->dtmp + (size_t)b * C, C * sizeof(float));
    } else {
        softmax_crossentropy_backward(a->logits, a->logits, tr->targets, N, (int)V,
                                      (float)(1.0 / ((double)global_rows * T)));
        tk_matmul_backward(a->dln, g->head_w, c->head_bias ? g->head_b : NULL, a->logits, a->lnf, w->head_w, N,
                           (int)C, (int)V);
    }
    const int encoder = c->bidirectional || c->mask_pad;
    memset(a->dres, 0, N * C * sizeof(float));
    tk_layernorm_backward(a->dres, g->lnf_w, c->bias ? g->lnf_b : NULL, a->dln, a->resid + (size_t)c->n_layer * N * C,
                       w->lnf_w, a->lnf_mean, a->lnf_rstd, N, (int)C);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        size_t lNC = (size_t)l * N * C;
        const float *xin = a->resid + lNC;
        const float *ln1 = a->ln1 + lNC, *qkv = a->qkv + (size_t)l * N * 3 * C;
        const float *att = a->att + (size_t)l * AT;
        const float *z = a->z + lNC, *resmid = a->resmid + lNC, *ln2 = a->ln2 + lNC;
        const float *fch = a->fch + (size_t)l * N * F, *fcha = a->fcha + (size_t)l * N * F;
        /* feed-forward: xout = resmid + drop(fcp(act(fc(ln2(resmid))))) */
        const float *d = a->dres;
        if (p > 0.0f) {
            tk_dropout_apply(a->dtmp, a->dres, a->ffmask + lNC, N * C);
            d = a->dtmp;
        }
        tk_matmul_backward(a->dfch, g->fcp_w + l * C * F, c->bias ? g->fcp_b + l * C : NULL, d, fcha,
                        w->fcp_w + l * C * F, N, (int)F, (int)C);
        if (c->activation == CL_ACT_GELU) tk_gelu_backward(a->dfch, a->dfch, fch, N * F);
        else tk_relu_backward(a->dfch, a->dfch, fch, N * F);
        tk_matmul_backward(a->dln, g->fc_w + l * F * C, c->bias ? g->fc_b + l * F : NULL, a->dfch, ln2,
                        w->fc_w + l * F * C, N, (int)C, (int)F);
        tk_layernorm_backward(a->dres, g->ln2_w + l * C, c->bias ? g->ln2_b + l * C : NULL, a->dln, resmid,
                           w->ln2_w + l * C, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, N, (int)C);
        /* attention: resmid = xin + drop(proj(attn(ln1(xin)))) */
        d = a->dres;
        if (p > 0.0f) {
            tk_dropout_apply(a->dtmp, a->dres, a->projmask + lNC, N * C);
            d = a->dtmp;
        }
        tk_matmul_backward(a->dz, g->proj_w + l * C * C, c->bias ? g->proj_b + l * C : NULL, d, z,
                        w->proj_w + l * C * C, N, (int)C, (int)C);
        if (encoder)
            attention_backward_full(a->dqkv, a->dz, qkv, att, p > 0.0f ? a->attd + (size_t)l * AT : att,
                                    p > 0.0f ? a->attmask + (size_t)l * AT : NULL, Bl, T, (int)C, H, scale);
        else if (p > 0.0f)
            tk_attention_backward(a->dqkv, a->dz, qkv, att, a->attd + (size_t)l * AT, a->attmask + (size_t)l * AT,
                                  Bl, T, (int)C, H, scale, a->attbuf);
        else tk_attention_backward(a->dqkv, a->dz, qkv, att, att, NULL, Bl, T, (int)C, H, scale, a->attbuf);
        tk_matmul_backward(a->dln, g->qkv_w + l * 3 * C * C, c->qkv_bias ? g->qkv_b + l * 3 * C : NULL, a->dqkv, ln1,
                        w->qkv_w + l * 3 * C * C, N, (int)C, (int)(3 * C));
        tk_layernorm_backward(a->dres, g->ln1_w + l * C, c->bias ? g->ln1_b + l * C : NULL, a->dln, xin,
                           w->ln1_w + l * C, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, N, (int)C);
    }
    encoder_backward(g->wte, g->wpe, a->dres, tr->inputs, N, T, (int)C);
    cl_train_threads_end(ts);
    return 0;
}

int cl_train_allreduce_grads(cl_trainer *tr, MPI_Comm comm) {
    int size = 1;
    cl_par_comm_size(comm, &size);
    if (size == 1) return 0;
    size_t n = tr->m->n_floats, chunk = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        if (cl_par_allreduce(MPI_IN_PLACE, tr->grads + off, (int)k, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS)
            return cl_error("MPI_Allreduce of the gradients failed");
    }
    return 0;
}

void cl_train_adamw_step(cl_trainer *tr, const cl_adamw *hp, long step) {
    const cl_config *c = &tr->m->cfg;
    double bc1 = 1.0 - pow((double)hp->beta1, (double)step), bc2 = 1.0 - pow((double)hp->beta2, (double)step);
    float step_size = (float)((double)hp->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - hp->lr * hp->weight_decay;
    float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    size_t count = cl_model_tensor_count(c);
    for (size_t i = 0; i < count; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, tr->m->mem, i, &t);
        if (!t.present) continue;
        size_t off = (size_t)(t.data - tr->m->mem);
        float *pw = t.data, *gw = tr->grads + off, *m = tr->adam_m + off, *v = tr->adam_v + off;
#pragma omp parallel for schedule(static) if (t.numel > 65536)
        for (size_t j = 0; j < t.numel; j++) {
            float gj = gw[j];
            pw[j] *= decay;
            m[j] = m[j] * b1 + (1.0f - b1) * gj;
            v[j] = v[j] * b2 + (1.0f - b2) * gj * gj;
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            pw[j] -= step_size * (m[j] / denom);
        }
    }
}

/* ---- data ---- */

int cl_train_data_load(cl_train_data *d, const char *path, const cl_model *m, int T) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) return cl_error("cannot open corpus %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return cl_error("out of memory reading %s", path);
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return cl_error("cannot read corpus %s", path);
    }
    int enc;
    if (m->bpe) { /* GPT-2 BPE: the whole text at once, as nanoGPT's prepare.py (invalid UTF-8 is refused) */
        enc = cl_bpe_encode(m->bpe, buf, len, &d->tokens, &d->n);
    } else {
        d->tokens = cl_trymalloc(len ? len : 1, sizeof(int32_t), "encoded corpus");
        if (!d->tokens) {
            free(buf);
            return -1;
        }
        enc = cl_vocab_encode(m->vocab, m->cfg.vocab_size, buf, len, d->tokens, len, &d->n);
    }
    free(buf);
    if (enc) {
        cl_train_data_free(d);
        return cl_error_prefix("%s: ", path);
    }
    d->n_train = (size_t)(0.9 * (double)d->n);
    if (d->n_train < (size_t)T + 1 || d->n - d->n_train < (size_t)T + 1) {
        size_t nt = d->n_train, nv = d->n - d->n_train;
        cl_train_data_free(d);
        return cl_error("corpus %s is too short for --ctx %d: the training split has %zu %s and the "
                        "validation split %zu; each needs at least T+1 = %d",
                        path, T, nt, m->bpe ? "tokens" : "characters", nv, T + 1);
    }
    return 0;
}

void cl_train_data_free(cl_train_data *d) {
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

void cl_train_draw(const cl_train_data *d, int split, cl_rng *rng, int B, int T, int r0, int r1,
                   int32_t *windows) {
    const int32_t *base = split ? d->tokens + d->n_train : d->tokens;
    size_t n = split ? d->n - d->n_train : d->n_train;
    for (int b = 0; b < B; b++) {
        size_t start = (size_t)cl_rng_below(rng, (uint64_t)(n - (size_t)T));
        if (b >= r0 && b < r1) memcpy(windows + (size_t)(b - r0) * (T + 1), base + start, (size_t)(T + 1) * sizeof(int32_t));
    }
}

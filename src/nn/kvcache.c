/* Incremental decoding with a key/value cache (include/corpuslens/nn/kvcache.h). */
#include "corpuslens/nn/kvcache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kernels.h"

struct cl_kvcache {
    const cl_model *m;
    int max_T, n;
    float *k, *v;          /* [L, max_T, C] keys and values of every cached position */
    const float **kp, **vp;/* [max_T] row pointers of one layer, for attention_one_forward */
    float *x, *ln, *qkv, *z, *tmp, *h; /* one position: [C] [C] [3C] [C] [C] [F] */
    cl_forward *fw;        /* cl_kv_prime's batched forward (made at its first use) */
    float *pk, *pv;        /* [L, max_T, C] its captured keys and values */
};

void cl_kv_free(cl_kvcache *kv) {
    if (!kv) return;
    free(kv->k), free(kv->v), free(kv->kp), free(kv->vp);
    free(kv->x), free(kv->ln), free(kv->qkv), free(kv->z), free(kv->tmp), free(kv->h);
    cl_forward_free(kv->fw);
    free(kv->pk), free(kv->pv);
    free(kv);
}

cl_kvcache *cl_kv_create(const cl_model *m, int max_T) {
    const cl_config *c = &m->cfg;
    if (c->bidirectional || c->mask_pad || c->n_classes > 0) {
        cl_error("the key/value cache is for causal language models (this model is an encoder or a classifier)");
        return NULL;
    }
    if (max_T < 1 || max_T > c->block_size) {
        cl_error("key/value cache: %d positions is outside 1..block_size (%d)", max_T, c->block_size);
        return NULL;
    }
    cl_kvcache *kv = cl_trycalloc(1, sizeof *kv, "key/value cache");
    if (!kv) return NULL;
    const size_t C = c->n_embd, L = c->n_layer;
    kv->m = m, kv->max_T = max_T;
    if (!(kv->k = cl_trymalloc(L * max_T * C, sizeof(float), "key cache")) ||
        !(kv->v = cl_trymalloc(L * max_T * C, sizeof(float), "value cache")) ||
        !(kv->kp = cl_trymalloc((size_t)max_T, sizeof *kv->kp, "key cache")) ||
        !(kv->vp = cl_trymalloc((size_t)max_T, sizeof *kv->vp, "value cache")) ||
        !(kv->x = cl_trymalloc(C, sizeof(float), "decoder state")) ||
        !(kv->ln = cl_trymalloc(C, sizeof(float), "decoder state")) ||
        !(kv->qkv = cl_trymalloc(3 * C, sizeof(float), "decoder state")) ||
        !(kv->z = cl_trymalloc(C, sizeof(float), "decoder state")) ||
        !(kv->tmp = cl_trymalloc(C, sizeof(float), "decoder state")) ||
        !(kv->h = cl_trymalloc(4 * C, sizeof(float), "decoder state"))) {
        cl_kv_free(kv);
        return NULL;
    }
    return kv;
}

void cl_kv_reset(cl_kvcache *kv) { kv->n = 0; }
int cl_kv_len(const cl_kvcache *kv) { return kv->n; }

int cl_kv_step(cl_kvcache *kv, int32_t token, float *logits) {
    const cl_model *m = kv->m;
    const cl_config *c = &m->cfg;
    const size_t C = c->n_embd, F = 4 * C, V = c->vocab_size;
    const int H = c->n_head, t = kv->n;
    if (t >= kv->max_T) return cl_error("key/value cache: all %d positions are used", kv->max_T);
    if (token < 0 || (size_t)token >= V) return cl_error("token id %d is outside the vocabulary (0..%zu)", token, V - 1);
    const float scale = c->attn_scale == CL_SCALE_N_EMBD ? 1.0f / sqrtf((float)C) : 1.0f / sqrtf((float)(C / H));
    cl_weights w;
    cl_model_weights(m, 0, &w);
    for (size_t i = 0; i < C; i++) kv->x[i] = w.wte[(size_t)token * C + i] + w.wpe[(size_t)t * C + i];
    for (int l = 0; l < c->n_layer; l++) {
        cl_model_weights(m, l, &w);
        float *K = kv->k + ((size_t)l * kv->max_T) * C, *Vc = kv->v + ((size_t)l * kv->max_T) * C;
        layernorm_forward(kv->ln, NULL, NULL, kv->x, w.ln1_w, c->bias ? w.ln1_b : NULL, 1, (int)C, c->ln_eps);
        matmul_forward(kv->qkv, kv->ln, w.qkv_w, c->qkv_bias ? w.qkv_b : NULL, 1, (int)C, (int)(3 * C));
        memcpy(K + (size_t)t * C, kv->qkv + C, C * sizeof(float));
        memcpy(Vc + (size_t)t * C, kv->qkv + 2 * C, C * sizeof(float));
        for (int j = 0; j <= t; j++) kv->kp[j] = K + (size_t)j * C, kv->vp[j] = Vc + (size_t)j * C;
        attention_one_forward(kv->z, NULL, kv->qkv, kv->kp, kv->vp, t + 1, (int)C, H, scale);
        matmul_forward(kv->tmp, kv->z, w.proj_w, c->bias ? w.proj_b : NULL, 1, (int)C, (int)C);
        residual_add(kv->x, kv->tmp, C);
        layernorm_forward(kv->ln, NULL, NULL, kv->x, w.ln2_w, c->bias ? w.ln2_b : NULL, 1, (int)C, c->ln_eps);
        matmul_forward(kv->h, kv->ln, w.fc_w, c->bias ? w.fc_b : NULL, 1, (int)C, (int)F);
        if (c->activation == CL_ACT_GELU) gelu_forward(kv->h, kv->h, F);
        else if (c->activation == CL_ACT_GELU_TANH) gelu_tanh_forward(kv->h, kv->h, F);
        else relu_forward(kv->h, kv->h, F);
        matmul_forward(kv->tmp, kv->h, w.fcp_w, c->bias ? w.fcp_b : NULL, 1, (int)F, (int)C);
        residual_add(kv->x, kv->tmp, C);
    }
    layernorm_forward(kv->ln, NULL, NULL, kv->x, w.lnf_w, c->bias ? w.lnf_b : NULL, 1, (int)C, c->ln_eps);
    matmul_forward(logits, kv->ln, w.head_w, c->head_bias ? w.head_b : NULL, 1, (int)C, (int)V);
    kv->n = t + 1;
    return 0;
}

int cl_kv_prime(cl_kvcache *kv, const int32_t *tokens, int n, float *logits) {
    const cl_config *c = &kv->m->cfg;
    const size_t C = c->n_embd, L = c->n_layer;
    if (n < 1 || n > kv->max_T) return cl_error("key/value cache: %d positions is outside 1..%d", n, kv->max_T);
    if (!kv->fw) {
        kv->fw = cl_forward_create(kv->m, 1, kv->max_T);
        kv->pk = kv->fw ? cl_trymalloc(L * kv->max_T * C, sizeof(float), "key cache") : NULL;
        kv->pv = kv->pk ? cl_trymalloc(L * kv->max_T * C, sizeof(float), "value cache") : NULL;
        if (!kv->pv) return -1;
    }
    /* keys and values of every block: [L, n, C] each */
    cl_hook hooks[2] = {{.point = CL_HOOK_K, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = kv->pk},
                        {.point = CL_HOOK_V, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = kv->pv}};
    if (cl_forward_run(kv->fw, tokens, 1, n, hooks, 2, CL_LOGITS_LAST, logits)) return -1;
    for (size_t l = 0; l < L; l++) {
        memcpy(kv->k + l * kv->max_T * C, kv->pk + l * (size_t)n * C, (size_t)n * C * sizeof(float));
        memcpy(kv->v + l * kv->max_T * C, kv->pv + l * (size_t)n * C, (size_t)n * C * sizeof(float));
    }
    kv->n = n;
    return 0;
}

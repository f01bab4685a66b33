/* Lexicographic shard order and the prefix-sharing (trie) forward pass.
 * Dimensions: S substrings, L length, M trie nodes, C channels, F = 4C. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/scan/scan.h"

/* The order is the corpus's (cl_corpus_sort; prepare stores it as
 * /substrings/sorted). */
int64_t *cl_scan_sort(const cl_corpus *c) { return cl_corpus_sort(c); }

#define MLP_ROWS 2048

struct cl_trie_fwd {
    const cl_model *m;
    int L;
    size_t max_S, max_M;
    int32_t *parent;  /* [M] parent node, -1 at depth 0 */
    int32_t *depth;   /* [M] */
    int32_t *tok;     /* [M] the node's last token */
    int32_t *leaf;    /* [S] node of each substring */
    float *x;         /* [M, C] residual */
    float *ln;        /* [M, C] */
    float *qkv;       /* [M, 3C] */
    float *z;         /* [M, C] */
    float *tmp;       /* [M, C] */
    float *h;         /* [MLP_ROWS, F] */
};

void cl_trie_fwd_free(cl_trie_fwd *t) {
    if (!t) return;
    free(t->parent), free(t->depth), free(t->tok), free(t->leaf);
    free(t->x), free(t->ln), free(t->qkv), free(t->z), free(t->tmp), free(t->h);
    free(t);
}

cl_trie_fwd *cl_trie_fwd_create(const cl_model *m, int L, size_t max_S) {
    const cl_config *c = &m->cfg;
    if (L < 1 || L > c->block_size) {
        cl_error("substring length %d is outside 1..block_size (%d)", L, c->block_size);
        return NULL;
    }
    if (max_S < 1) {
        cl_error("trie forward: empty shard size");
        return NULL;
    }
    cl_trie_fwd *t = cl_trycalloc(1, sizeof *t, "trie forward");
    if (!t) return NULL;
    size_t C = c->n_embd, M = max_S * (size_t)L;
    t->m = m, t->L = L, t->max_S = max_S, t->max_M = M;
    if (!(t->parent = cl_trymalloc(M, sizeof(int32_t), "trie parents")) ||
        !(t->depth = cl_trymalloc(M, sizeof(int32_t), "trie depths")) ||
        !(t->tok = cl_trymalloc(M, sizeof(int32_t), "trie tokens")) ||
        !(t->leaf = cl_trymalloc(max_S, sizeof(int32_t), "trie leaves")) ||
        !(t->x = cl_trymalloc(M * C, sizeof(float), "trie residual")) ||
        !(t->ln = cl_trymalloc(M * C, sizeof(float), "trie layernorm")) ||
        !(t->qkv = cl_trymalloc(M * 3 * C, sizeof(float), "trie qkv")) ||
        !(t->z = cl_trymalloc(M * C, sizeof(float), "trie attention")) ||
        !(t->tmp = cl_trymalloc(M * C, sizeof(float), "trie scratch")) ||
        !(t->h = cl_trymalloc((size_t)MLP_ROWS * 4 * C, sizeof(float), "trie mlp"))) {
        cl_trie_fwd_free(t);
        return NULL;
    }
    return t;
}

/* Copy the leaf rows of act[M, C] into out[S, C]. */
static void gather_leaves(const cl_trie_fwd *t, const float *act, size_t S, size_t C, float *out) {
    for (size_t s = 0; s < S; s++) memcpy(out + s * C, act + (size_t)t->leaf[s] * C, C * sizeof(float));
}

int cl_trie_fwd_run(cl_trie_fwd *t, const int32_t *tokens, size_t S, int point, int lo, int hi, float *out,
                    size_t *n_nodes) {
    return cl_trie_fwd_run_res(t, tokens, S, point, lo, hi, out, NULL, 0, NULL, n_nodes);
}

int cl_trie_fwd_run_res(cl_trie_fwd *t, const int32_t *tokens, size_t S, int point, int lo, int hi, float *out,
                        const int32_t *sel, size_t nsel, float *res, size_t *n_nodes) {
    const cl_model *m = t->m;
    const cl_config *c = &m->cfg;
    const cl_params *p = &m->p;
    const int L = t->L, H = c->n_head;
    const size_t C = c->n_embd, F = 4 * C, V = c->vocab_size;
    if (S > t->max_S) return cl_error("trie forward: %zu substrings exceed the workspace (%zu)", S, t->max_S);
    if (point != CL_HOOK_RESID_PRE && point != CL_HOOK_ATTN_OUT && point != CL_HOOK_RESID_MID &&
        point != CL_HOOK_MLP_OUT && point != CL_HOOK_RESID_POST)
        return cl_error("trie forward: hook point not supported (resid_pre, attn_out, resid_mid, mlp_out, resid_post)");
    if (lo < 0 || hi < lo || hi >= c->n_layer) return cl_error("trie forward: bad block range %d..%d", lo, hi);
    for (size_t k = 0; res && k < nsel; k++)
        if (sel[k] < 0 || (size_t)sel[k] >= S) return cl_error("trie forward: row %d outside the %zu substrings", sel[k], S);
    /* the last block run: hi, or every block when the residuals are wanted */
    const int last = res ? c->n_layer - 1 : hi;
    const int NL = c->n_layer;

    /* Build the trie: substring s shares nodes at depths < lcp(s-1, s). */
    size_t M = 0;
    int32_t path[CL_CORPUS_MAX_LEN > 4096 ? CL_CORPUS_MAX_LEN : 4096];
    if (L > 4096) return cl_error("trie forward: L too large");
    for (size_t s = 0; s < S; s++) {
        const int32_t *tk = tokens + s * L;
        int lcp = 0;
        if (s > 0) {
            const int32_t *pv = tk - L;
            while (lcp < L && pv[lcp] == tk[lcp]) lcp++;
            if (lcp == L) lcp = L - 1; /* duplicate: give it its own leaf */
        }
        for (int d = lcp; d < L; d++) {
            if (tk[d] < 0 || (size_t)tk[d] >= V)
                return cl_error("trie forward: token id %d outside the vocabulary", tk[d]);
            t->parent[M] = d == 0 ? -1 : path[d - 1];
            t->depth[M] = d;
            t->tok[M] = tk[d];
            path[d] = (int32_t)M++;
        }
        t->leaf[s] = path[L - 1];
    }
    if (n_nodes) *n_nodes = M;

    const float scale = c->attn_scale == CL_SCALE_N_EMBD ? 1.0f / sqrtf((float)C) : 1.0f / sqrtf((float)(C / H));
    for (size_t i = 0; i < M; i++) {
        const float *te = p->wte + (size_t)t->tok[i] * C, *pe = p->wpe + (size_t)t->depth[i] * C;
        float *xi = t->x + i * C;
        for (size_t j = 0; j < C; j++) xi[j] = te[j] + pe[j];
    }
    const float *keys[4096], *vals[4096];
    for (int l = 0; l <= last; l++) {
        float *cap = out + (size_t)(l - lo) * S * C;
        int want = l >= lo && l <= hi;
        if (want && point == CL_HOOK_RESID_PRE) gather_leaves(t, t->x, S, C, cap);
        if (point == CL_HOOK_RESID_PRE && l == last && !res) break;
        const float *ln1_b = c->bias ? p->ln1_b + l * C : NULL, *ln2_b = c->bias ? p->ln2_b + l * C : NULL;
        layernorm_forward(t->ln, NULL, NULL, t->x, p->ln1_w + l * C, ln1_b, M, (int)C, c->ln_eps);
        matmul_forward(t->qkv, t->ln, p->qkv_w + l * 3 * C * C, c->qkv_bias ? p->qkv_b + l * 3 * C : NULL, M, (int)C,
                       (int)(3 * C));
        for (size_t i = 0; i < M; i++) {
            int d = t->depth[i];
            int32_t a = (int32_t)i;
            for (int j = d; j >= 0; j--) {
                keys[j] = t->qkv + (size_t)a * 3 * C + C;
                vals[j] = t->qkv + (size_t)a * 3 * C + 2 * C;
                a = t->parent[a];
            }
            attention_one_forward(t->z + i * C, NULL, t->qkv + i * 3 * C, keys, vals, d + 1, (int)C, H, scale);
        }
        if (l == last) {
            /* Last block needed: only the leaves go on (attention above needed
             * every node's k,v; proj and the MLP only the leaves' rows). */
            for (size_t s2 = 0; s2 < S; s2++) {
                memmove(t->ln + s2 * C, t->z + (size_t)t->leaf[s2] * C, C * sizeof(float));
                memmove(t->tmp + s2 * C, t->x + (size_t)t->leaf[s2] * C, C * sizeof(float));
            }
            memcpy(t->z, t->ln, S * C * sizeof(float));
            memcpy(t->x, t->tmp, S * C * sizeof(float));
            for (size_t s2 = 0; s2 < S; s2++) t->leaf[s2] = (int32_t)s2;
            M = S;
        }
        matmul_forward(t->tmp, t->z, p->proj_w + l * C * C, c->bias ? p->proj_b + l * C : NULL, M, (int)C, (int)C);
        if (want && point == CL_HOOK_ATTN_OUT) gather_leaves(t, t->tmp, S, C, cap);
        residual_add(t->x, t->tmp, M * C);
        if (want && point == CL_HOOK_RESID_MID) gather_leaves(t, t->x, S, C, cap);
        if (!res && l == hi && (point == CL_HOOK_ATTN_OUT || point == CL_HOOK_RESID_MID)) break;
        layernorm_forward(t->ln, NULL, NULL, t->x, p->ln2_w + l * C, ln2_b, M, (int)C, c->ln_eps);
        for (size_t r0 = 0; r0 < M; r0 += MLP_ROWS) {
            size_t nr = M - r0 < MLP_ROWS ? M - r0 : MLP_ROWS;
            matmul_forward(t->h, t->ln + r0 * C, p->fc_w + l * F * C, c->bias ? p->fc_b + l * F : NULL, nr, (int)C,
                           (int)F);
            if (c->activation == CL_ACT_GELU) gelu_forward(t->h, t->h, nr * F);
            else if (c->activation == CL_ACT_GELU_TANH) gelu_tanh_forward(t->h, t->h, nr * F);
            else relu_forward(t->h, t->h, nr * F);
            matmul_forward(t->tmp + r0 * C, t->h, p->fcp_w + l * C * F, c->bias ? p->fcp_b + l * C : NULL, nr,
                           (int)F, (int)C);
        }
        if (want && point == CL_HOOK_MLP_OUT) gather_leaves(t, t->tmp, S, C, cap);
        residual_add(t->x, t->tmp, M * C);
        if (want && point == CL_HOOK_RESID_POST) gather_leaves(t, t->x, S, C, cap);
        for (size_t k = 0; res && k < nsel; k++)
            memcpy(res + (k * NL + (size_t)l) * C, t->x + (size_t)t->leaf[sel[k]] * C, C * sizeof(float));
    }
    return 0;
}

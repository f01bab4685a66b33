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
    /* the trie computes a node once for every string it begins: right only
       when a position's values depend on its prefix alone (causal attention,
       no masked keys) and the head is the LM's */
    if (c->bidirectional || c->mask_pad || c->n_classes > 0) {
        cl_error("the model is not a causal language model (%s): scan, index and explain need one, "
                 "since a substring's vectors must depend on its prefix only",
                 c->n_classes > 0 ? "a classifier" : c->bidirectional ? "causal=0" : "pad_id masks keys");
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

/* The forward of the trie t->parent/depth/tok[0..M) with the strings' nodes
 * t->leaf[0..S): `point` of blocks lo..hi at each string's node into
 * out[hi-lo+1, S, C], and with res the residual after every block of the
 * strings sel[0..nsel) (sel NULL: every string, nsel = S) into
 * res[nsel, n_layer, C]. Checked by the callers: point, lo..hi, sel. */
static void trie_forward(cl_trie_fwd *t, size_t M, size_t S, int point, int lo, int hi, float *out,
                         const int32_t *sel, size_t nsel, float *res) {
    const cl_model *m = t->m;
    const cl_config *c = &m->cfg;
    cl_weights w; /* the global tensors, and block l's inside the loop (a mapped model too) */
    cl_model_weights(m, 0, &w);
    const int H = c->n_head;
    const size_t C = c->n_embd, F = 4 * C;
    /* the last block run: hi, or every block when the residuals are wanted */
    const int last = res ? c->n_layer - 1 : hi;
    const int NL = c->n_layer;
    const float scale = c->attn_scale == CL_SCALE_N_EMBD ? 1.0f / sqrtf((float)C) : 1.0f / sqrtf((float)(C / H));
    for (size_t i = 0; i < M; i++) {
        const float *te = w.wte + (size_t)t->tok[i] * C, *pe = w.wpe + (size_t)t->depth[i] * C;
        float *xi = t->x + i * C;
        for (size_t j = 0; j < C; j++) xi[j] = te[j] + pe[j];
    }
    const float *keys[4096], *vals[4096];
    for (int l = 0; l <= last; l++) {
        float *cap = out + (size_t)(l - lo) * S * C;
        int want = l >= lo && l <= hi;
        if (want && point == CL_HOOK_RESID_PRE) gather_leaves(t, t->x, S, C, cap);
        if (point == CL_HOOK_RESID_PRE && l == last && !res) break;
        cl_model_weights(m, l, &w);
        const float *ln1_b = c->bias ? w.ln1_b : NULL, *ln2_b = c->bias ? w.ln2_b : NULL;
        layernorm_forward(t->ln, NULL, NULL, t->x, w.ln1_w, ln1_b, M, (int)C, c->ln_eps);
        matmul_forward(t->qkv, t->ln, w.qkv_w, c->qkv_bias ? w.qkv_b : NULL, M, (int)C,
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
        matmul_forward(t->tmp, t->z, w.proj_w, c->bias ? w.proj_b : NULL, M, (int)C, (int)C);
        if (want && point == CL_HOOK_ATTN_OUT) gather_leaves(t, t->tmp, S, C, cap);
        residual_add(t->x, t->tmp, M * C);
        if (want && point == CL_HOOK_RESID_MID) gather_leaves(t, t->x, S, C, cap);
        if (!res && l == hi && (point == CL_HOOK_ATTN_OUT || point == CL_HOOK_RESID_MID)) break;
        layernorm_forward(t->ln, NULL, NULL, t->x, w.ln2_w, ln2_b, M, (int)C, c->ln_eps);
        for (size_t r0 = 0; r0 < M; r0 += MLP_ROWS) {
            size_t nr = M - r0 < MLP_ROWS ? M - r0 : MLP_ROWS;
            matmul_forward(t->h, t->ln + r0 * C, w.fc_w, c->bias ? w.fc_b : NULL, nr, (int)C,
                           (int)F);
            if (c->activation == CL_ACT_GELU) gelu_forward(t->h, t->h, nr * F);
            else if (c->activation == CL_ACT_GELU_TANH) gelu_tanh_forward(t->h, t->h, nr * F);
            else relu_forward(t->h, t->h, nr * F);
            matmul_forward(t->tmp + r0 * C, t->h, w.fcp_w, c->bias ? w.fcp_b : NULL, nr,
                           (int)F, (int)C);
        }
        if (want && point == CL_HOOK_MLP_OUT) gather_leaves(t, t->tmp, S, C, cap);
        residual_add(t->x, t->tmp, M * C);
        if (want && point == CL_HOOK_RESID_POST) gather_leaves(t, t->x, S, C, cap);
        for (size_t k = 0; res && k < nsel; k++)
            memcpy(res + (k * NL + (size_t)l) * C, t->x + (size_t)t->leaf[sel ? (size_t)sel[k] : k] * C, C * sizeof(float));
    }
}

static int check_hook(const cl_config *c, int point, int lo, int hi) {
    if (point != CL_HOOK_RESID_PRE && point != CL_HOOK_ATTN_OUT && point != CL_HOOK_RESID_MID &&
        point != CL_HOOK_MLP_OUT && point != CL_HOOK_RESID_POST)
        return cl_error("trie forward: hook point not supported (resid_pre, attn_out, resid_mid, mlp_out, resid_post)");
    if (lo < 0 || hi < lo || hi >= c->n_layer) return cl_error("trie forward: bad block range %d..%d", lo, hi);
    return 0;
}

int cl_trie_fwd_run_res(cl_trie_fwd *t, const int32_t *tokens, size_t S, int point, int lo, int hi, float *out,
                        const int32_t *sel, size_t nsel, float *res, size_t *n_nodes) {
    const cl_config *c = &t->m->cfg;
    const int L = t->L;
    const size_t V = c->vocab_size;
    if (S > t->max_S) return cl_error("trie forward: %zu substrings exceed the workspace (%zu)", S, t->max_S);
    if (check_hook(c, point, lo, hi)) return -1;
    for (size_t k = 0; res && k < nsel; k++)
        if (sel[k] < 0 || (size_t)sel[k] >= S) return cl_error("trie forward: row %d outside the %zu substrings", sel[k], S);

    /* Build the trie: substring s shares nodes at depths < lcp(s-1, s). */
    size_t M = 0;
    int32_t path[4096];
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
    trie_forward(t, M, S, point, lo, hi, out, res ? sel : NULL, res ? nsel : 0, res);
    return 0;
}

int cl_trie_fwd_run_var(cl_trie_fwd *t, const int32_t *tokens, const size_t *off, size_t S, int point, int lo,
                        int hi, float *out, float *res, size_t *n_nodes) {
    const cl_config *c = &t->m->cfg;
    const size_t V = c->vocab_size;
    if (S > t->max_S) return cl_error("trie forward: %zu strings exceed the workspace (%zu)", S, t->max_S);
    if (check_hook(c, point, lo, hi)) return -1;
    if (t->L > 4096) return cl_error("trie forward: L too large");
    /* Build the trie: string s shares its first lcp(s-1, s) nodes with the
       string before it (its path), and is one of them when it is a prefix
       of that string (or equal to it). */
    size_t M = 0, prev_len = 0;
    int32_t path[4096];
    for (size_t s = 0; s < S; s++) {
        const int32_t *tk = tokens + off[s];
        if (off[s + 1] < off[s] || off[s + 1] - off[s] < 1 || off[s + 1] - off[s] > (size_t)t->L)
            return cl_error("trie forward: string %zu has %zu tokens, outside 1..%d", s,
                            off[s + 1] < off[s] ? (size_t)0 : off[s + 1] - off[s], t->L);
        const size_t len = off[s + 1] - off[s];
        size_t lcp = 0;
        if (s > 0) {
            const int32_t *pv = tokens + off[s - 1];
            while (lcp < len && lcp < prev_len && pv[lcp] == tk[lcp]) lcp++;
        }
        for (size_t d = lcp; d < len; d++) {
            if (tk[d] < 0 || (size_t)tk[d] >= V)
                return cl_error("trie forward: token id %d outside the vocabulary", tk[d]);
            if (M >= t->max_M) return cl_error("trie forward: more than %zu nodes", t->max_M);
            t->parent[M] = d == 0 ? -1 : path[d - 1];
            t->depth[M] = (int32_t)d;
            t->tok[M] = tk[d];
            path[d] = (int32_t)M++;
        }
        t->leaf[s] = path[len - 1];
        prev_len = len;
    }
    if (n_nodes) *n_nodes = M;
    trie_forward(t, M, S, point, lo, hi, out, NULL, res ? S : 0, res);
    return 0;
}

/* Analyses around the method: logit lens, block ablation, similar-string
 * distributions, cosine similarity of hooked vectors. Dimensions as in
 * analysis.h. */
#include "corpuslens/analysis/analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"

double cl_prob_hellinger(const float *p, const float *q, size_t V) {
    double s = 0;
    for (size_t i = 0; i < V; i++) {
        double a = p[i] > 0 ? sqrt((double)p[i]) : 0, b = q[i] > 0 ? sqrt((double)q[i]) : 0;
        s += (a - b) * (a - b);
    }
    double h = sqrt(s / 2);
    return h > 1 ? 1 : h;
}

double cl_prob_kl(const float *p, const float *q, size_t V) {
    double s = 0;
    for (size_t i = 0; i < V; i++) {
        if (!(p[i] > 0)) continue;
        double qi = q[i] > 1e-30 ? q[i] : 1e-30;
        s += p[i] * log(p[i] / qi);
    }
    return s;
}

size_t cl_prob_argmax(const float *p, size_t V) {
    size_t best = 0;
    for (size_t i = 1; i < V; i++)
        if (p[i] > p[best]) best = i;
    return best;
}

size_t cl_prob_rank(const float *p, size_t V, size_t id) {
    size_t r = 1;
    for (size_t i = 0; i < V; i++)
        if (p[i] > p[id]) r++;
    return r;
}

/* ---- logit lens ---- */

int cl_logit_lens(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, float *probs) {
    const cl_config *c = &m->cfg;
    size_t L = c->n_layer, C = c->n_embd, V = c->vocab_size, N = (size_t)B * T;
    float *res = cl_trymalloc((L + 1) * N * C, sizeof(float), "logit lens residuals");
    float *lg = res ? cl_trymalloc(N * V, sizeof(float), "logit lens logits") : NULL;
    if (!lg) {
        free(res);
        return -1;
    }
    /* res [L1, B, T, C]: layer 0 = block-0 input, layer l = block l-1 output. */
    cl_hook hooks[2] = {
        {.point = CL_HOOK_RESID_PRE, .layer = 0, .mode = CL_HOOK_CAPTURE, .out = res},
        {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = res + N * C},
    };
    int rc = cl_forward_run(f, tokens, B, T, hooks, 2, CL_LOGITS_NONE, NULL);
    for (size_t l = 0; rc == 0 && l <= L; l++) {
        cl_unembed(m, res + l * N * C, N, lg);
        cl_softmax_rows(lg, N, (int)V);
        for (size_t b = 0; b < (size_t)B; b++)
            memcpy(probs + ((b * (L + 1) + l) * T) * V, lg + b * T * V, (size_t)T * V * sizeof(float));
    }
    free(res);
    free(lg);
    return rc;
}

int cl_logit_lens_text(cl_forward *f, const cl_model *m, const int32_t *tokens, int T, int32_t *top_id,
                       float *top_p, const cl_lens_stats *out) {
    const cl_config *c = &m->cfg;
    size_t L = c->n_layer, C = c->n_embd, V = c->vocab_size, Tz = (size_t)T;
    float *res = cl_trymalloc((L + 1) * Tz * C, sizeof(float), "logit lens residuals");
    float *fin = res ? cl_trymalloc(Tz * V, sizeof(float), "logit lens final distribution") : NULL;
    float *pl = fin ? cl_trymalloc(Tz * V, sizeof(float), "logit lens distribution") : NULL;
    if (!pl) {
        free(res);
        free(fin);
        return -1;
    }
    cl_hook hooks[2] = {
        {.point = CL_HOOK_RESID_PRE, .layer = 0, .mode = CL_HOOK_CAPTURE, .out = res},
        {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = res + Tz * C},
    };
    int rc = cl_forward_run(f, tokens, 1, T, hooks, 2, CL_LOGITS_NONE, NULL);
    if (rc == 0) {
        cl_unembed(m, res + L * Tz * C, Tz, fin);
        cl_softmax_rows(fin, Tz, (int)V);
    }
    size_t top = rc == 0 ? cl_prob_argmax(fin + (Tz - 1) * V, V) : 0;
    for (size_t l = 0; rc == 0 && l <= L; l++) {
        float *p = pl;
        if (l == L) p = fin;
        else {
            cl_unembed(m, res + l * Tz * C, Tz, pl);
            cl_softmax_rows(pl, Tz, (int)V);
        }
        double hs = 0, ks = 0;
        for (size_t t = 0; t < Tz; t++) {
            hs += cl_prob_hellinger(fin + t * V, p + t * V, V);
            ks += cl_prob_kl(fin + t * V, p + t * V, V);
            size_t k = cl_prob_argmax(p + t * V, V);
            top_id[l * Tz + t] = (int32_t)k;
            top_p[l * Tz + t] = p[t * V + k];
        }
        const float *last = p + (Tz - 1) * V, *flast = fin + (Tz - 1) * V;
        out->h_last[l] = cl_prob_hellinger(flast, last, V);
        out->kl_last[l] = cl_prob_kl(flast, last, V);
        out->h_mean[l] = hs / T;
        out->kl_mean[l] = ks / T;
        out->rank_last[l] = (double)cl_prob_rank(last, V, top);
        out->agree_last[l] = cl_prob_argmax(last, V) == top ? 1.0 : 0.0;
    }
    free(res);
    free(fin);
    free(pl);
    return rc;
}

void cl_lens_stats_compute(const float *probs, int L1, int T, int V, const cl_lens_stats *out) {
    size_t Tz = T, Vz = V;
    const float *fin = probs + (size_t)(L1 - 1) * Tz * Vz; /* [T, V] */
    size_t top = cl_prob_argmax(fin + (Tz - 1) * Vz, Vz);
    for (size_t l = 0; l < (size_t)L1; l++) {
        const float *pl = probs + l * Tz * Vz;
        double hs = 0, ks = 0;
        for (size_t t = 0; t < Tz; t++) {
            hs += cl_prob_hellinger(fin + t * Vz, pl + t * Vz, Vz);
            ks += cl_prob_kl(fin + t * Vz, pl + t * Vz, Vz);
        }
        const float *last = pl + (Tz - 1) * Vz, *flast = fin + (Tz - 1) * Vz;
        out->h_last[l] = cl_prob_hellinger(flast, last, Vz);
        out->kl_last[l] = cl_prob_kl(flast, last, Vz);
        out->h_mean[l] = hs / T;
        out->kl_mean[l] = ks / T;
        out->rank_last[l] = (double)cl_prob_rank(last, Vz, top);
        out->agree_last[l] = cl_prob_argmax(last, Vz) == top ? 1.0 : 0.0;
    }
}

/* ---- ablation ---- */

int cl_ablate_accumulate(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, int64_t *acc) {
    const cl_config *c = &m->cfg;
    size_t L = c->n_layer, C = c->n_embd, N = (size_t)B * T;
    float *buf = cl_trymalloc(2 * L * N * C, sizeof(float), "ablation means");
    if (!buf) return -1;
    cl_hook hooks[2] = {
        {.point = CL_HOOK_ATTN_OUT, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = buf},
        {.point = CL_HOOK_MLP_OUT, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = buf + L * N * C},
    };
    if (cl_forward_run(f, tokens, B, T, hooks, 2, CL_LOGITS_NONE, NULL)) {
        free(buf);
        return -1;
    }
    const double lim = 1099511627776.0; /* 2^40 */
    for (size_t k = 0; k < 2 * L; k++)     /* k = kind * L + layer, as acc */
        for (size_t r = 0; r < N; r++)
            for (size_t d = 0; d < C; d++) {
                double v = buf[(k * N + r) * C + d];
                if (!(fabs(v) < lim)) {
                    free(buf);
                    return cl_error("ablation mean: activation %g out of range (block %zu, %s)", v, k % L,
                                    k < L ? "hook_attn_out" : "hook_mlp_out");
                }
                acc[k * C + d] += (int64_t)llround(v * CL_ABLATE_FIXED_SCALE);
            }
    free(buf);
    return 0;
}

int cl_ablate_run(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, cl_ablate_mode mode,
                  const float *mean, double *h_attn, double *h_ffwd) {
    const cl_config *c = &m->cfg;
    size_t L = c->n_layer, C = c->n_embd, V = c->vocab_size;
    if (mode == CL_ABLATE_MEAN && !mean) return cl_error("mean-ablation needs the mean activations");
    float *p0 = cl_trymalloc((size_t)B * V, sizeof(float), "ablation logits");
    float *p1 = p0 ? cl_trymalloc((size_t)B * V, sizeof(float), "ablation logits") : NULL;
    if (!p1) {
        free(p0);
        return -1;
    }
    int rc = cl_forward_run(f, tokens, B, T, NULL, 0, CL_LOGITS_LAST, p0);
    if (rc == 0) cl_softmax_rows(p0, B, (int)V);
    for (size_t kind = 0; kind < 2 && rc == 0; kind++)
        for (size_t l = 0; l < L && rc == 0; l++) {
            cl_hook hk = {.point = kind == 0 ? CL_HOOK_ATTN_OUT : CL_HOOK_MLP_OUT,
                          .layer = (int)l,
                          .mode = mode == CL_ABLATE_ZERO ? CL_HOOK_ZERO : CL_HOOK_MEAN,
                          .mean = mode == CL_ABLATE_MEAN ? mean + (kind * L + l) * C : NULL};
            rc = cl_forward_run(f, tokens, B, T, &hk, 1, CL_LOGITS_LAST, p1);
            if (rc) break;
            cl_softmax_rows(p1, B, (int)V);
            double *h = kind == 0 ? h_attn : h_ffwd;
            for (size_t b = 0; b < (size_t)B; b++) h[b * L + l] = cl_prob_hellinger(p0 + b * V, p1 + b * V, V);
        }
    free(p0);
    free(p1);
    return rc;
}

/* ---- similar strings ---- */

int cl_similar_accumulate(const int64_t *idx, const float *sim, size_t n, double threshold, double weight,
                          const int64_t *indptr, const int32_t *token, const int32_t *count, size_t N, int V,
                          double *counts) {
    for (size_t k = 0; k < n; k++) {
        if (!((double)sim[k] > threshold)) continue;
        if (idx[k] < 0 || (uint64_t)idx[k] >= N)
            return cl_error("match %zu names substring %lld; the corpus has %zu", k, (long long)idx[k], N);
        for (int64_t j = indptr[idx[k]]; j < indptr[idx[k] + 1]; j++) {
            if (token[j] < 0 || token[j] >= V) return cl_error("next-token id %d out of range", token[j]);
            counts[token[j]] += weight * count[j];
        }
    }
    return 0;
}

/* ---- cosine ---- */

void cl_pool_rows(const float *act, int T, int D, int last, double *out) {
    size_t Dz = D;
    if (last) {
        for (size_t d = 0; d < Dz; d++) out[d] = act[(size_t)(T - 1) * Dz + d];
        return;
    }
    for (size_t d = 0; d < Dz; d++) out[d] = 0;
    for (size_t t = 0; t < (size_t)T; t++)
        for (size_t d = 0; d < Dz; d++) out[d] += act[t * Dz + d];
    for (size_t d = 0; d < Dz; d++) out[d] /= T;
}

int cl_cosine_matrix(const double *X, size_t n, size_t D, size_t k, int center, double *out) {
    if (k > D || n == 0) return cl_error("cosine matrix: %zu dimensions of %zu, %zu vectors", k, D, n);
    double *mu = cl_trycalloc(k ? k : 1, sizeof(double), "mean vector");
    if (!mu) return -1;
    if (center) {
        for (size_t i = 0; i < n; i++)
            for (size_t d = 0; d < k; d++) mu[d] += X[i * D + d];
        for (size_t d = 0; d < k; d++) mu[d] /= n;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double dot = 0, ni = 0, nj = 0;
            for (size_t d = 0; d < k; d++) {
                double a = X[i * D + d] - mu[d], b = X[j * D + d] - mu[d];
                dot += a * b, ni += a * a, nj += b * b;
            }
            out[i * n + j] = ni > 0 && nj > 0 ? dot / sqrt(ni * nj) : NAN;
        }
    free(mu);
    return 0;
}

int cl_cosine_nearest(const double *E, size_t N, size_t D, size_t q, size_t K, size_t *idx,
                      double *sim) {
    if (q >= N || K == 0 || K >= N) return cl_error("nearest rows: row %zu of %zu, K = %zu (want 1..%zu)", q, N, K, N ? N - 1 : 0);
    double nq = 0;
    for (size_t d = 0; d < D; d++) nq += E[q * D + d] * E[q * D + d];
    size_t have = 0;
    for (size_t r = 0; r < N; r++) {
        if (r == q) continue;
        double dot = 0, nr = 0;
        for (size_t d = 0; d < D; d++) {
            dot += E[q * D + d] * E[r * D + d];
            nr += E[r * D + d] * E[r * D + d];
        }
        double s = nq > 0 && nr > 0 ? dot / sqrt(nq * nr) : NAN;
        if (isnan(s)) continue; /* a zero row has no direction */
        /* insertion into the sorted top K (ties: lower row first) */
        if (have == K && !(s > sim[K - 1])) continue;
        size_t at = have < K ? have++ : K - 1;
        while (at > 0 && s > sim[at - 1]) {
            sim[at] = sim[at - 1];
            idx[at] = idx[at - 1];
            at--;
        }
        sim[at] = s;
        idx[at] = r;
    }
    for (size_t i = have; i < K; i++) idx[i] = (size_t)-1, sim[i] = NAN;
    return 0;
}

/* Layer kernels. Dimensions: N rows, C channels, B batch, T positions,
 * H heads, hs = C/H head size, V vocab. */
#include "corpuslens/nn/kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "corpuslens/nn/gemm.h"
#include "kernels_rows.h"

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, size_t N, int C, float eps) {
#pragma omp parallel for schedule(static) if (N * (size_t)C > 65536)
    for (size_t i = 0; i < N; i++) {
        float mf, s;
        layernorm_row(out + i * C, &mf, &s, inp + i * C, w, b, C, eps);
        if (mean) mean[i] = mf;
        if (rstd) rstd[i] = s;
    }
}

void matmul_forward(float *out, const float *inp, const float *W, const float *bias, size_t N, int IC,
                    int OC) {
    if (N == 0) return;
    float beta = 0.0f;
    if (bias) {
        for (size_t i = 0; i < N; i++) memcpy(out + i * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cl_sgemm_nt(N, (size_t)OC, (size_t)IC, inp, (size_t)IC, W, (size_t)IC, out, (size_t)OC, beta != 0.0f);
}

void attention_pattern_forward(float *att, const float *qkv, int B, int T, int C, int H, float scale) {
    attention_pattern_forward_masked(att, qkv, NULL, B, T, C, H, scale, 1); /* the same sums, in the same order */
}

/* out[B, T, C] = att @ v per head; causal: keys 0..t of row t, else every key
 * with a nonzero weight (masked keys have weight 0). */
static void attention_mix(float *out, const float *att, const float *qkv, int B, int T, int C, int H, int causal) {
    int hs = C / H;
    size_t C3 = 3 * (size_t)C;
#pragma omp parallel for schedule(static) if ((size_t)B * T * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            memset(o, 0, (size_t)C * sizeof(float));
            int last = causal ? t : T - 1;
            for (int h = 0; h < H; h++) {
                const float *row = att + (((size_t)b * H + h) * T + t) * T;
                float *oh = o + (size_t)h * hs;
                for (int t2 = 0; t2 <= last; t2++) {
                    float a = row[t2];
                    if (!causal && a == 0.0f) continue;
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) oh[i] += a * v[i];
                }
            }
        }
}

void attention_mix_forward(float *out, const float *att, const float *qkv, int B, int T, int C, int H) {
    attention_mix(out, att, qkv, B, T, C, H, 1);
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H, float scale) {
    attention_pattern_forward(att, qkv, B, T, C, H, scale);
    attention_mix_forward(out, att, qkv, B, T, C, H);
}

void attention_one_forward(float *out, float *att, const float *q, const float *const *keys,
                           const float *const *vals, int n, int C, int H, float scale) {
    int hs = C / H;
    static _Thread_local float w[65536]; /* n <= block_size <= 65536 */
    memset(out, 0, (size_t)C * sizeof(float));
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hs;
        float mx = -FLT_MAX;
        for (int j = 0; j < n; j++) {
            const float *k = keys[j] + (size_t)h * hs;
            float d = 0.0f;
            /* vector partial sums: a dependent chain of hs adds was ~6 % of
               the scan's trie forward */
#pragma omp simd reduction(+ : d)
            for (int i = 0; i < hs; i++) d += qh[i] * k[i];
            d *= scale;
            w[j] = d;
            if (d > mx) mx = d;
        }
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            float e = expf(w[j] - mx);
            w[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        float *oh = out + (size_t)h * hs;
        for (int j = 0; j < n; j++) {
            float a = w[j] * inv;
            if (att) att[(size_t)h * n + j] = a;
            const float *v = vals[j] + (size_t)h * hs;
            for (int i = 0; i < hs; i++) oh[i] += a * v[i];
        }
    }
}

void relu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 262144)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(inp[i]);
}

void gelu_tanh_forward(float *out, const float *inp, size_t n) {
    const float s = 0.7978845608028654f; /* sqrt(2 / pi) */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(s * (x + 0.044715f * x * x * x)));
    }
}

void residual_add(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 262144)
    for (size_t i = 0; i < n; i++) out[i] += inp[i];
}

void softmax_forward(float *x, size_t N, int V) {
    for (size_t i = 0; i < N; i++) {
        float *r = x + i * V;
        float mx = -FLT_MAX;
        for (int j = 0; j < V; j++)
            if (r[j] > mx) mx = r[j];
        double sum = 0.0;
        for (int j = 0; j < V; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < V; j++) r[j] *= inv;
    }
}

void l2normalize_rows(float *x, size_t N, int C) {
    for (size_t i = 0; i < N; i++) {
        float *r = x + i * C;
        double s = 0.0;
        for (int j = 0; j < C; j++) s += (double)r[j] * r[j];
        if (s <= 0.0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < C; j++) r[j] *= inv;
    }
}

/* ---- encoder attention: every key (bidirectional) and/or a key mask ---- */

void attention_pattern_forward_masked(float *att, const float *qkv, const unsigned char *keep, int B, int T,
                                      int C, int H, float scale, int causal) {
    int hs = C / H;
    size_t C3 = 3 * (size_t)C;
#pragma omp parallel for schedule(static) if ((size_t)B * T * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float *row = att + (((size_t)b * H + h) * T + t) * T;
                int last = causal ? t : T - 1;
                float mx = -FLT_MAX;
                int any = 0;
                for (int t2 = 0; t2 <= last; t2++) {
                    if (keep && !keep[(size_t)b * T + t2]) continue;
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) d += q[i] * k[i];
                    d *= scale;
                    row[t2] = d;
                    if (d > mx) mx = d;
                    any = 1;
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 < T; t2++) {
                    if (t2 > last || (keep && !keep[(size_t)b * T + t2]) || !any) {
                        row[t2] = 0.0f;
                        continue;
                    }
                    row[t2] = expf(row[t2] - mx);
                    sum += row[t2];
                }
                if (any) {
                    float inv = 1.0f / sum;
                    for (int t2 = 0; t2 <= last; t2++) row[t2] *= inv;
                }
            }
}

void attention_mix_forward_full(float *out, const float *att, const float *qkv, int B, int T, int C, int H) {
    attention_mix(out, att, qkv, B, T, C, H, 0);
}

/* Layer kernels. Dimensions: N rows, C channels, B batch, T positions,
 * H heads, hs = C/H head size, V vocab. */
#include "corpuslens/nn/kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "corpuslens/nn/gemm.h"
#include "kernels_rows.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h> /* matmul_forward_few's AVX2 path, chosen at run time */
#endif

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

/* matmul_forward_few: out[r, o] = dot(inp[r], W[o]) + bias[o], W read once
 * straight from where it lies (no packing: sgemm copies all of W into its
 * panels first, which for a few rows costs more than the products). Each dot
 * product is summed in 8 lanes (k = j mod 8), the lanes added pairwise, then
 * the tail k >= IC - IC % 8, then the bias: the same order for every row and
 * every N, so a row's result does not depend on the rows beside it. */
#define FEW_ROWS 4
static float lanes_sum(const float l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static float few_tail(float s, const float *a, const float *w, int k0, int IC, const float *bias, int o) {
    for (int k = k0; k < IC; k++) s += a[k] * w[k];
    return bias ? s + bias[o] : s;
}

#if defined(__GNUC__) && defined(__x86_64__)
/* lanes_sum of v, in vector registers: (l0+l4, l1+l5, l2+l6, l3+l7), then
 * ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7)), then their sum: the same order. */
__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps(b, b, 1)));
}

/* Two rows of W (o, o + 1) against four input rows: eight independent sums,
 * enough to keep both FMA pipes busy. */
__attribute__((target("avx2,fma"))) static void few_avx2(float *out, const float *inp, const float *W,
                                                          const float *bias, size_t N, int IC, int OC) {
    const int K8 = IC & ~7;
    for (int o = 0; o < OC; o += 2) {
        const int o2 = o + 1 < OC ? o + 1 : o; /* an odd last row pairs with itself; dropped */
        const float *w0 = W + (size_t)o * IC, *w1 = W + (size_t)o2 * IC;
        for (size_t r0 = 0; r0 < N; r0 += FEW_ROWS) {
            const float *a[FEW_ROWS]; /* rows past N repeat the last row; their sums are dropped */
            for (int i = 0; i < FEW_ROWS; i++) a[i] = inp + (r0 + i < N ? r0 + i : N - 1) * (size_t)IC;
            __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s03 = s00;
            __m256 s10 = s00, s11 = s00, s12 = s00, s13 = s00;
            for (int k = 0; k < K8; k += 8) {
                __m256 x0 = _mm256_loadu_ps(a[0] + k), x1 = _mm256_loadu_ps(a[1] + k);
                __m256 x2 = _mm256_loadu_ps(a[2] + k), x3 = _mm256_loadu_ps(a[3] + k);
                __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
                s00 = _mm256_fmadd_ps(x0, v0, s00);
                s01 = _mm256_fmadd_ps(x1, v0, s01);
                s02 = _mm256_fmadd_ps(x2, v0, s02);
                s03 = _mm256_fmadd_ps(x3, v0, s03);
                s10 = _mm256_fmadd_ps(x0, v1, s10);
                s11 = _mm256_fmadd_ps(x1, v1, s11);
                s12 = _mm256_fmadd_ps(x2, v1, s12);
                s13 = _mm256_fmadd_ps(x3, v1, s13);
            }
            const float l0[FEW_ROWS] = {hsum8(s00), hsum8(s01), hsum8(s02), hsum8(s03)};
            const float l1[FEW_ROWS] = {hsum8(s10), hsum8(s11), hsum8(s12), hsum8(s13)};
            for (int i = 0; i < FEW_ROWS && r0 + i < N; i++) {
                out[(r0 + i) * OC + o] = few_tail(l0[i], a[i], w0, K8, IC, bias, o);
                if (o2 != o) out[(r0 + i) * OC + o2] = few_tail(l1[i], a[i], w1, K8, IC, bias, o2);
            }
        }
    }
}
#endif

static void few_plain(float *out, const float *inp, const float *W, const float *bias, size_t N, int IC, int OC) {
    const int K8 = IC & ~7;
    for (int o = 0; o < OC; o++) {
        const float *w = W + (size_t)o * IC;
        for (size_t r = 0; r < N; r++) {
            const float *a = inp + r * IC;
            float l[8] = {0};
            for (int k = 0; k < K8; k += 8)
                for (int j = 0; j < 8; j++) l[j] += a[k + j] * w[k + j];
            out[r * OC + o] = few_tail(lanes_sum(l), a, w, K8, IC, bias, o);
        }
    }
}

void matmul_forward_few(float *out, const float *inp, const float *W, const float *bias, size_t N, int IC,
                        int OC) {
    if (N == 0) return;
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        few_avx2(out, inp, W, bias, N, IC, OC);
        return;
    }
#endif
    few_plain(out, inp, W, bias, N, IC, OC);
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

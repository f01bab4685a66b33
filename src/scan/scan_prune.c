/* The scan's exact pruning bound (scan_internal.h): a low-rank projection of
 * the unit vectors plus a Cauchy-Schwarz bound on the remainder.
 *
 * With U [r, C] orthonormal rows, a = U p, b = U s and the remainders
 * p' = p - U^T a, s' = s - U^T b (orthogonal to U's rows):
 *     p . s = a . b + p' . s'  <=  a . b + |p'| |s'|.
 * scan_prune_project stores [a, |p'|] as a row of r + 1 floats, so one sgemm
 * of K = r + 1 gives the bound of every pair. A pair whose bound is at most
 * prefilter - SCAN_PRUNE_MARGIN cannot pass the prefilter; every other pair
 * (a candidate) gets its exact float32 dot product (scan_dot). U only decides
 * how many pairs are pruned, never which pairs are kept: any orthonormal U
 * gives the same output. It is the top-r principal directions of the prompt
 * vectors of a block (subspace iteration on their Gram matrix, in double). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "corpuslens/base/error.h"
#include "scan/scan_internal.h"

int scan_prune_basis(const float *v, size_t n, int C, int r, float *U) {
    if (r < 1 || r > C) return cl_error("pruning rank %d outside 1..%d", r, C);
    double *G = cl_trycalloc((size_t)C * C, sizeof(double), "prune Gram matrix");
    double *P = cl_trymalloc((size_t)C * r, sizeof(double), "prune basis");
    double *row = cl_trymalloc((size_t)SCAN_PRUNE_CHUNK * C, sizeof(double), "prune rows");
    int rc = -1;
    if (!G || !P || !row) goto done;
    for (size_t i0 = 0; i0 < n; i0 += SCAN_PRUNE_CHUNK) {
        size_t m = n - i0 < SCAN_PRUNE_CHUNK ? n - i0 : SCAN_PRUNE_CHUNK;
        for (size_t k = 0; k < m * C; k++) row[k] = v[i0 * C + k];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, C, (blasint)m, 1.0, row, C, 1.0, G, C);
    }
    for (int i = 0; i < C; i++)
        for (int j = 0; j < i; j++) G[(size_t)i * C + j] = G[(size_t)j * C + i];
    if (scan_top_subspace(G, C, r, P, NULL)) goto done;
    for (size_t i = 0; i < (size_t)r * C; i++) U[i] = (float)P[i];
    rc = 0;
done:
    free(G), free(P), free(row);
    return rc;
}

int scan_prune_project(const float *U, int r, const float *v, size_t n, int C, float *out, float *tmp) {
    const int K = r + 1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)r, (blasint)C, 1.0f, v, (blasint)C, U,
                (blasint)C, 0.0f, out, (blasint)K);
    /* remainders v - (U v) U, SCAN_PRUNE_CHUNK rows at a time; their float
       rounding (about sqrt(C) * 1e-7 in the norm) is far below the margin */
    for (size_t i0 = 0; i0 < n; i0 += SCAN_PRUNE_CHUNK) {
        size_t m = n - i0 < SCAN_PRUNE_CHUNK ? n - i0 : SCAN_PRUNE_CHUNK;
        memcpy(tmp, v + i0 * C, m * C * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)C, (blasint)r, -1.0f,
                    out + i0 * K, (blasint)K, U, (blasint)C, 1.0f, tmp, (blasint)C);
        for (size_t i = 0; i < m; i++) {
            double s2 = 0;
            for (int j = 0; j < C; j++) s2 += (double)tmp[i * C + j] * tmp[i * C + j];
            /* rounded up: the bound must not shrink by a rounding */
            out[(i0 + i) * K + r] = nextafterf((float)sqrt(s2), INFINITY);
        }
    }
    return 0;
}

/* ---- the exact dot products of the candidates ----
 * 32 lanes (lane l sums the products of elements l, l + 32, l + 64, ...),
 * multiply then add (never fused), the lanes then summed as a tree (16, 8, 4,
 * 2, 1; lanes_sum): the portable, AVX2 and AVX-512 versions give the same
 * bits. The vector versions sum the tree in registers. */

__attribute__((optimize("fp-contract=off"))) static float lanes_sum(float *acc, const float *a, const float *b, int i, int C) {
    for (int l = 0; i < C; i++, l++) {
        float t = a[i] * b[i];
        acc[l] = acc[l] + t;
    }
    for (int w = 16; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    return acc[0];
}

__attribute__((optimize("fp-contract=off"))) static float dot_portable(const float *a, const float *b, int C) {
    float acc[32] = {0};
    int i = 0;
    for (; i + 32 <= C; i += 32)
        for (int l = 0; l < 32; l++) {
            float t = a[i + l] * b[i + l];
            acc[l] = acc[l] + t;
        }
    return lanes_sum(acc, a, b, i, C);
}

static void dot8_portable(const float *a, const float *const *b, int C, float *out) {
    for (int q = 0; q < 8; q++) out[q] = dot_portable(a, b[q], C);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* lanes_sum's tree over s0..s3 (lanes 0-7, 8-15, 16-23, 24-31) */
__attribute__((target("avx2"), optimize("fp-contract=off"))) static inline float tree_avx2(__m256 s0, __m256 s1, __m256 s2,
                                                                                          __m256 s3) {
    __m256 u = _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3)); /* w = 16, then 8 */
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)); /* 4 */
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));                                       /* 2 */
    v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));                                   /* 1 */
    return _mm_cvtss_f32(v);
}

/* Four dot products of a with b[0..3] at once (more loads in flight). */
__attribute__((target("avx2"), optimize("fp-contract=off"))) static void dot4_avx2(const float *a, const float *const *b,
                                                                                  int C, float *out) {
    __m256 s[4][4];
    for (int q = 0; q < 4; q++)
        for (int u = 0; u < 4; u++) s[q][u] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= C; i += 32)
        for (int u = 0; u < 4; u++) {
            __m256 av = _mm256_loadu_ps(a + i + 8 * u);
            for (int q = 0; q < 4; q++) s[q][u] = _mm256_add_ps(s[q][u], _mm256_mul_ps(av, _mm256_loadu_ps(b[q] + i + 8 * u)));
        }
    for (int q = 0; q < 4; q++) {
        if (i == C) {
            out[q] = tree_avx2(s[q][0], s[q][1], s[q][2], s[q][3]);
            continue;
        }
        float acc[32]; /* C not a multiple of 32: the tail lane by lane */
        for (int u = 0; u < 4; u++) _mm256_storeu_ps(acc + 8 * u, s[q][u]);
        out[q] = lanes_sum(acc, a, b[q], i, C);
    }
}

static void dot8_avx2(const float *a, const float *const *b, int C, float *out) {
    dot4_avx2(a, b, C, out);
    dot4_avx2(a, b + 4, C, out + 4);
}

/* lanes_sum's tree over z0, z1 (lanes 0-15, 16-31) */
__attribute__((target("avx512f"), optimize("fp-contract=off"))) static inline float tree_avx512(__m512 z0, __m512 z1) {
    __m512 t = _mm512_add_ps(z0, z1); /* w = 16 */
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(t),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))); /* 8 */
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));          /* 4 */
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));                                                  /* 2 */
    v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));                                              /* 1 */
    return _mm_cvtss_f32(v);
}

/* Eight dot products of a with b[0..7] at once: 16 accumulators of 16 lanes. */
__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void dot8_avx512(const float *a,
                                                                                       const float *const *b, int C,
                                                                                       float *out) {
    __m512 s[8][2];
    for (int q = 0; q < 8; q++) s[q][0] = s[q][1] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= C; i += 32) {
        __m512 a0 = _mm512_loadu_ps(a + i), a1 = _mm512_loadu_ps(a + i + 16);
        for (int q = 0; q < 8; q++) {
            s[q][0] = _mm512_add_ps(s[q][0], _mm512_mul_ps(a0, _mm512_loadu_ps(b[q] + i)));
            s[q][1] = _mm512_add_ps(s[q][1], _mm512_mul_ps(a1, _mm512_loadu_ps(b[q] + i + 16)));
        }
    }
    for (int q = 0; q < 8; q++) {
        if (i == C) {
            out[q] = tree_avx512(s[q][0], s[q][1]);
            continue;
        }
        float acc[32];
        _mm512_storeu_ps(acc, s[q][0]);
        _mm512_storeu_ps(acc + 16, s[q][1]);
        out[q] = lanes_sum(acc, a, b[q], i, C);
    }
}
#endif

/* AVX-512 where the CPU has it, else AVX2, else portable;
 * CORPUSLENS_SCAN_DOT=portable or avx2 picks a lower one (tests). */
scan_dot8_fn scan_dot8_pick(void) {
    const char *e = getenv("CORPUSLENS_SCAN_DOT");
    if (e && !strcmp(e, "portable")) return dot8_portable;
#if defined(__x86_64__) && defined(__GNUC__)
    if (!(e && !strcmp(e, "avx2")) && __builtin_cpu_supports("avx512f")) return dot8_avx512;
    if (__builtin_cpu_supports("avx2")) return dot8_avx2;
#endif
    return dot8_portable;
}

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
    if (r < 1 || r > C) return cl_error("scan: pruning rank %d outside 1..%d", r, C);
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

/* ---- the exact dot product of a candidate ----
 * 32 lanes summed in a fixed order, multiply then add (never fused): the
 * AVX2 and the portable versions give the same bits. */

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

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static float dot_avx2(const float *a, const float *b, int C) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= C; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24)));
    }
    float acc[32];
    _mm256_storeu_ps(acc, s0);
    _mm256_storeu_ps(acc + 8, s1);
    _mm256_storeu_ps(acc + 16, s2);
    _mm256_storeu_ps(acc + 24, s3);
    return lanes_sum(acc, a, b, i, C);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
/* Four dot products of a with b[0..3] at once (more loads in flight), each
 * summed exactly as dot_avx2. */
__attribute__((target("avx2"))) static void dot4_avx2(const float *a, const float *const *b, int C, float *out) {
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
        float acc[32];
        for (int u = 0; u < 4; u++) _mm256_storeu_ps(acc + 8 * u, s[q][u]);
        out[q] = lanes_sum(acc, a, b[q], i, C);
    }
}
#endif

static void dot4_portable(const float *a, const float *const *b, int C, float *out) {
    for (int q = 0; q < 4; q++) out[q] = dot_portable(a, b[q], C);
}

scan_dot4_fn scan_dot4_pick(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!getenv("CORPUSLENS_SCAN_DOT_PORTABLE") && __builtin_cpu_supports("avx2")) return dot4_avx2;
#endif
    return dot4_portable;
}

scan_dot_fn scan_dot_pick(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!getenv("CORPUSLENS_SCAN_DOT_PORTABLE") && __builtin_cpu_supports("avx2")) return dot_avx2;
#endif
    return dot_portable;
}

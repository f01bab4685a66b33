/* Kernels against naive double-precision loops. Tolerance per tensor:
 * |got - ref| <= atol + rtol * |ref| with atol 1e-5, rtol 1e-4 (float32
 * kernels, sums of <= 64 terms of O(1) values). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/nn/kernels.h"
#include "corpuslens/base/rng.h"

static void fill(float *x, size_t n, uint64_t seed, double scale) {
    cl_rng r;
    cl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)cl_rng_normal(&r, 0.0, scale);
}

/* NaN-strict: the first element where |got - ref| <= atol + rtol |ref| does
 * not hold (a NaN never satisfies it), or n when every element does. */
static size_t first_far(const float *got, const double *ref, size_t n, double atol, double rtol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= atol + rtol * fabs(ref[i]))) return i;
    return n;
}

static void expect_close(const float *got, const double *ref, size_t n, double atol, double rtol, const char *what) {
    size_t at = first_far(got, ref, n, atol, rtol);
    cr_expect(at == n, "%s: element %zu differs: got %.8g, reference %.8g", what, at, at < n ? got[at] : 0.0,
              at < n ? ref[at] : 0.0);
}

/* Negative control: a NaN (in the result or in the reference) fails. */
Test(kernels, comparison_fails_on_nan) {
    float got[4] = {1, 2, 3, 4};
    double ref[4] = {1, 2, 3, 4};
    cr_expect(first_far(got, ref, 4, 1e-6, 1e-6) == 4, "equal arrays pass");
    got[2] = NAN;
    cr_expect(first_far(got, ref, 4, 1e-6, 1e-6) == 2, "a NaN result is caught at its index");
    got[2] = 3;
    ref[3] = NAN;
    cr_expect(first_far(got, ref, 4, 1e-6, 1e-6) == 3, "a NaN reference is caught at its index");
}

Test(kernels, layernorm_matches_naive) {
    enum { N = 7, C = 33 };
    float x[N * C], w[C], b[C], out[N * C], mean[N], rstd[N];
    double ref[N * C];
    fill(x, N * C, 1, 2.0);
    fill(w, C, 2, 1.0);
    fill(b, C, 3, 1.0);
    x[0] += 100.0f; /* an offset row */
    layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
    for (int i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < C; j++) m += x[i * C + j];
        m /= C;
        for (int j = 0; j < C; j++) v += (x[i * C + j] - m) * (x[i * C + j] - m);
        v /= C;
        for (int j = 0; j < C; j++) ref[i * C + j] = (x[i * C + j] - m) / sqrt(v + 1e-5) * w[j] + b[j];
        cr_expect(fabs(mean[i] - m) <= 1e-5 * (1 + fabs(m)), "mean row %d", i);
        cr_expect(fabs(rstd[i] - 1 / sqrt(v + 1e-5)) <= 1e-5 / sqrt(v + 1e-5), "rstd row %d", i);
    }
    expect_close(out, ref, N * C, 1e-5, 1e-4, "layernorm");
    /* without bias */
    layernorm_forward(out, NULL, NULL, x, w, NULL, N, C, 1e-5f);
    for (int i = 0; i < N * C; i++) ref[i] -= b[i % C];
    expect_close(out, ref, N * C, 1e-5, 1e-4, "layernorm (no bias)");
}

/* ref[N, OC] = x[N, IC] . W[OC, IC]^T + bias, in double */
static void matmul_ref(double *ref, const float *x, const float *W, const float *bias, int N, int IC, int OC) {
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = bias[o];
            for (int k = 0; k < IC; k++) s += (double)x[i * IC + k] * W[o * IC + k];
            ref[i * OC + o] = s;
        }
}

Test(kernels, matmul_matches_naive) {
    enum { N = 13, IC = 21, OC = 17 };
    float x[N * IC], W[OC * IC], bias[OC], out[N * OC];
    double ref[N * OC];
    fill(x, N * IC, 4, 1.0);
    fill(W, OC * IC, 5, 1.0);
    fill(bias, OC, 6, 1.0);
    matmul_forward(out, x, W, bias, N, IC, OC);
    matmul_ref(ref, x, W, bias, N, IC, OC);
    expect_close(out, ref, N * OC, 1e-5, 1e-4, "matmul");
    matmul_forward(out, x, W, NULL, N, IC, OC);
    for (int i = 0; i < N * OC; i++) ref[i] -= bias[i % OC];
    expect_close(out, ref, N * OC, 1e-5, 1e-4, "matmul (no bias)");
}

/* Naive causal attention in double. */
static void attention_ref(double *out, double *att, const float *qkv, int B, int T, int C, int H, double scale) {
    int hs = C / H;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double s[64], mx = -1e300, sum = 0;
                for (int u = 0; u < T; u++) {
                    if (u > t) {
                        s[u] = 0;
                        continue;
                    }
                    double d = 0;
                    for (int i = 0; i < hs; i++)
                        d += (double)qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + u) * 3 * C + C + h * hs + i];
                    s[u] = d * scale;
                    if (s[u] > mx) mx = s[u];
                }
                for (int u = 0; u <= t; u++) sum += s[u] = exp(s[u] - mx);
                for (int u = 0; u < T; u++) att[((b * H + h) * T + t) * T + u] = u <= t ? s[u] / sum : 0.0;
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int u = 0; u <= t; u++) o += att[((b * H + h) * T + t) * T + u] * qkv[(b * T + u) * 3 * C + 2 * C + h * hs + i];
                    out[(b * T + t) * C + h * hs + i] = o;
                }
            }
}

Test(kernels, causal_attention_matches_naive) {
    enum { B = 3, T = 9, C = 24, H = 4 };
    float *qkv = malloc(sizeof(float) * B * T * 3 * C), *out = malloc(sizeof(float) * B * T * C),
          *att = malloc(sizeof(float) * B * H * T * T);
    double *rout = malloc(sizeof(double) * B * T * C), *ratt = malloc(sizeof(double) * B * H * T * T);
    fill(qkv, (size_t)B * T * 3 * C, 7, 1.0);
    float scale = 1.0f / sqrtf(C / H);
    attention_forward(out, att, qkv, B, T, C, H, scale);
    attention_ref(rout, ratt, qkv, B, T, C, H, scale);
    expect_close(att, ratt, (size_t)B * H * T * T, 1e-6, 1e-4, "attention pattern");
    expect_close(out, rout, (size_t)B * T * C, 1e-5, 1e-4, "attention output");
    /* Causality: changing the last position must not change earlier outputs. */
    float *out2 = malloc(sizeof(float) * B * T * C);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < 3 * C; j++) qkv[(b * T + T - 1) * 3 * C + j] += 5.0f;
    attention_forward(out2, att, qkv, B, T, C, H, scale);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T - 1; t++)
            cr_expect(memcmp(out + (b * T + t) * C, out2 + (b * T + t) * C, sizeof(float) * C) == 0,
                      "position %d of row %d saw the future", t, b);
    free(qkv), free(out), free(out2), free(att), free(rout), free(ratt);
}

Test(kernels, attention_one_equals_batched_last_row) {
    enum { T = 6, C = 16, H = 2 };
    float qkv[T * 3 * C], out[T * C], att[H * T * T], one[C], one_att[H * T];
    fill(qkv, T * 3 * C, 8, 1.0);
    float scale = 1.0f / sqrtf(C / H);
    attention_forward(out, att, qkv, 1, T, C, H, scale);
    const float *keys[T], *vals[T];
    for (int u = 0; u < T; u++) keys[u] = qkv + u * 3 * C + C, vals[u] = qkv + u * 3 * C + 2 * C;
    attention_one_forward(one, one_att, qkv + (T - 1) * 3 * C, keys, vals, T, C, H, scale);
    double ref[C];
    for (int i = 0; i < C; i++) ref[i] = out[(T - 1) * C + i];
    expect_close(one, ref, C, 1e-6, 1e-5, "attention_one_forward");
    for (int h = 0; h < H; h++)
        for (int u = 0; u < T; u++)
            cr_expect(fabsf(one_att[h * T + u] - att[(h * T + T - 1) * T + u]) < 1e-6, "pattern head %d key %d", h, u);
}

Test(kernels, softmax_matches_naive_and_survives_large_logits) {
    enum { N = 4, V = 65 };
    float x[N * V];
    double ref[N * V];
    fill(x, N * V, 9, 3.0);
    x[V] = 1000.0f; /* would overflow a naive exp */
    float in[N * V];
    memcpy(in, x, sizeof x);
    softmax_forward(x, N, V);
    for (int i = 0; i < N; i++) {
        double mx = -1e300, s = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, in[i * V + j]);
        for (int j = 0; j < V; j++) s += exp(in[i * V + j] - mx);
        for (int j = 0; j < V; j++) ref[i * V + j] = exp(in[i * V + j] - mx) / s;
    }
    expect_close(x, ref, N * V, 1e-7, 1e-5, "softmax");
}

Test(kernels, gelu_and_relu_match_definitions) {
    enum { n = 101 };
    float x[n], g[n], r[n];
    double rg[n], rr[n];
    for (int i = 0; i < n; i++) x[i] = -6.0f + 0.12f * i;
    gelu_forward(g, x, n);
    relu_forward(r, x, n);
    for (int i = 0; i < n; i++) {
        rg[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
        rr[i] = x[i] > 0 ? x[i] : 0;
    }
    expect_close(g, rg, n, 1e-6, 1e-5, "gelu");
    expect_close(r, rr, n, 0, 0, "relu");
}

Test(kernels, l2normalize_rows_unit_norm_and_zero_row) {
    float x[3 * 5];
    fill(x, 15, 10, 4.0);
    memset(x + 5, 0, 5 * sizeof(float));
    l2normalize_rows(x, 3, 5);
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int j = 0; j < 5; j++) s += (double)x[i * 5 + j] * x[i * 5 + j];
        if (i == 1) cr_expect(s == 0.0, "zero row stays zero");
        else cr_expect(fabs(s - 1.0) < 1e-6, "row %d norm^2 %g", i, s);
    }
}

/* cl_sgemm_nt (gemm.h) against double loops, on shapes around its blocking:
 * M across the 12-row tile and the skinny / tiled switch, N across
 * the 32-column panel and the 448-row block, K across the 384-wide k block;
 * with and without accumulating into C. Tolerance per element: float32
 * partial sums round at about 6e-8 of their size, and their size is at most
 * sum_k |a_k b_k| (+ |C|): |got - ref| <= 1e-6 (1 + sum |terms|), ~16 units of
 * rounding of the largest partial sum; an index or packing error is O(1). */
#include "corpuslens/nn/gemm.h"

static void gemm_case(size_t M, size_t N, size_t K, int accumulate) {
    size_t lda = K + 3, ldb = K + 5, ldc = N + 7; /* strides wider than the rows */
    float *A = malloc(M * lda * sizeof(float)), *B = malloc(N * ldb * sizeof(float));
    float *C = malloc(M * ldc * sizeof(float));
    double *ref = malloc(M * N * sizeof(double)), *mag = malloc(M * N * sizeof(double));
    float *got = malloc(M * N * sizeof(float));
    fill(A, M * lda, 11 + M, 1.0);
    fill(B, N * ldb, 13 + N, 1.0);
    fill(C, M * ldc, 17 + K, 1.0);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = accumulate ? C[i * ldc + j] : 0.0, m = fabs(s);
            for (size_t k = 0; k < K; k++) {
                double t = (double)A[i * lda + k] * B[j * ldb + k];
                s += t, m += fabs(t);
            }
            ref[i * N + j] = s, mag[i * N + j] = m;
        }
    float pad = C[N]; /* a float beyond row 0's N columns: must stay */
    cl_sgemm_nt(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    for (size_t i = 0; i < M; i++) memcpy(got + i * N, C + i * ldc, N * sizeof(float));
    char what[128];
    snprintf(what, sizeof what, "gemm %zux%zux%zu%s (%s)", M, N, K, accumulate ? " +C" : "", cl_gemm_kernel_name());
    size_t bad = M * N;
    for (size_t e = 0; e < M * N && bad == M * N; e++)
        if (!(fabs(got[e] - ref[e]) <= 1e-6 * (1.0 + mag[e]))) bad = e;
    cr_expect(bad == M * N, "%s: element %zu differs: got %.8g, reference %.8g (sum of |terms| %.3g)", what, bad,
              bad < M * N ? got[bad] : 0.0, bad < M * N ? ref[bad] : 0.0, bad < M * N ? mag[bad] : 0.0);
    cr_expect(C[N] == pad || (C[N] != C[N] && pad != pad), "%s: wrote past the row's N columns", what);
    free(A), free(B), free(C), free(ref), free(mag), free(got);
}

/* The codes this CPU runs (gemm.h: the same arithmetic in each). */
static const char *gemm_kernels[] = {"avx512", "avx2", "portable"};

Test(kernels, gemm_nt_shapes) {
    const size_t Ms[] = {1, 16, 17, 31, 32, 33, 100}, Ns[] = {1, 17, 32, 65, 460}, Ks[] = {1, 40, 384, 400, 800};
    for (size_t g = 0; g < 3; g++) {
        if (cl_gemm_use(gemm_kernels[g])) continue;
        for (size_t a = 0; a < 7; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 5; c++) gemm_case(Ms[a], Ns[b], Ks[c], (a + b + c) % 2);
    }
}

/* Negative control: the comparison catches one wrong element of a product. */
Test(kernels, gemm_nt_catches_a_wrong_element) {
    size_t M = 40, N = 40, K = 50;
    float *A = malloc(M * K * sizeof(float)), *B = malloc(N * K * sizeof(float)), *C = malloc(M * N * sizeof(float));
    double *ref = malloc(M * N * sizeof(double));
    fill(A, M * K, 1, 1.0), fill(B, N * K, 2, 1.0);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t k = 0; k < K; k++) s += (double)A[i * K + k] * B[j * K + k];
            ref[i * N + j] = s;
        }
    cl_sgemm_nt(M, N, K, A, K, B, K, C, N, 0);
    cr_expect(first_far(C, ref, M * N, 1e-5, 1e-4) == M * N, "the product passes");
    C[5 * N + 33] += 1e-2f;
    cr_expect(first_far(C, ref, M * N, 1e-5, 1e-4) == 5 * N + 33, "a changed element is caught");
    free(A), free(B), free(C), free(ref);
}

/* The chain of gemm.h, element by element: c = fma(a_k, b_k, c), k increasing. */
static float chain(const float *a, const float *b, size_t K, float c) {
    for (size_t k = 0; k < K; k++) c = fmaf(a[k], b[k], c);
    return c;
}

/* First element of C[M, N] (ldc) that is not the chain of A's and B's rows
 * (from init[i * N + j], or 0 when init is NULL); M * N when all are. */
static size_t first_not_chain(const float *C, size_t ldc, const float *A, const float *B, const float *init, size_t M,
                              size_t N, size_t K) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            float want = chain(A + i * K, B + j * K, K, init ? init[i * N + j] : 0.0f);
            if (memcmp(&want, C + i * ldc + j, sizeof want)) return i * N + j;
        }
    return M * N;
}

/* A row of the product is the same bits whatever the number of rows beside it
 * (M = 1 .. 130, across the skinny / tiled switch and the 12-row tiles) and
 * wherever it lies in A, for K below and above the 384-wide k block, with
 * and without accumulating; and every element is the chain of gemm.h (so the
 * codes agree with each other: the same bits on every CPU). */
Test(kernels, gemm_nt_rows_independent_of_m) {
    enum { MMAX = 130, N = 40 };
    const size_t Ks[] = {40, 500};
    int ran = 0;
    for (size_t g = 0; g < 3; g++) {
        if (cl_gemm_use(gemm_kernels[g])) continue;
        ran++;
        for (size_t kk = 0; kk < 2; kk++) {
            size_t K = Ks[kk];
            float *A = malloc(MMAX * K * sizeof(float)), *B = malloc(N * K * sizeof(float));
            float *full = malloc(MMAX * N * sizeof(float)), *part = malloc(MMAX * N * sizeof(float));
            float *init = malloc(MMAX * N * sizeof(float));
            fill(A, MMAX * K, 3 + K, 1.0), fill(B, N * K, 4 + K, 1.0), fill(init, MMAX * N, 5, 1.0);
            cl_sgemm_nt(MMAX, N, K, A, K, B, K, full, N, 0);
            size_t e = first_not_chain(full, N, A, B, NULL, MMAX, N, K);
            cr_expect(e == MMAX * N, "%s, K = %zu: element %zu is not the chain of fused multiply-adds",
                      gemm_kernels[g], K, e);
            size_t bad = 0;
            for (size_t M = 1; M <= MMAX; M++) {
                size_t o = (M * 37) % (MMAX - M + 1); /* rows o .. o+M of A */
                cl_sgemm_nt(M, N, K, A + o * K, K, B, K, part, N, 0);
                if (memcmp(part, full + o * N, M * N * sizeof(float))) {
                    if (!bad++)
                        cr_expect(0, "%s, K = %zu: rows %zu..%zu computed as a product of %zu rows differ from the "
                                  "same rows of a product of %d", gemm_kernels[g], K, o, o + M - 1, M, MMAX);
                }
            }
            /* accumulating: the chains start from the old C */
            memcpy(full, init, MMAX * N * sizeof(float));
            cl_sgemm_nt(MMAX, N, K, A, K, B, K, full, N, 1);
            e = first_not_chain(full, N, A, B, init, MMAX, N, K);
            cr_expect(e == MMAX * N, "%s, K = %zu, accumulating: element %zu is not the chain", gemm_kernels[g], K, e);
            for (size_t M = 1; M <= MMAX; M += 3) {
                memcpy(part, init + (MMAX - M) * N, M * N * sizeof(float));
                cl_sgemm_nt(M, N, K, A + (MMAX - M) * K, K, B, K, part, N, 1);
                cr_expect(!memcmp(part, full + (MMAX - M) * N, M * N * sizeof(float)),
                          "%s, K = %zu, accumulating: the last %zu rows alone differ", gemm_kernels[g], K, M);
            }
            free(A), free(B), free(full), free(part), free(init);
        }
    }
    cr_expect(ran >= 2, "only %d code(s) ran: the portable one runs everywhere, and one vector code", ran);
}

/* Negative control of the bitwise checks: one changed last bit is seen. */
Test(kernels, gemm_nt_bitwise_check_sees_one_ulp) {
    enum { M = 20, N = 9, K = 450 };
    float *A = malloc(M * K * sizeof(float)), *B = malloc(N * K * sizeof(float)), C[M * N];
    fill(A, M * K, 6, 1.0), fill(B, N * K, 7, 1.0);
    cl_sgemm_nt(M, N, K, A, K, B, K, C, N, 0);
    cr_expect(first_not_chain(C, N, A, B, NULL, M, N, K) == M * N, "the product is the chain");
    C[7 * N + 4] = nextafterf(C[7 * N + 4], INFINITY);
    cr_expect(first_not_chain(C, N, A, B, NULL, M, N, K) == 7 * N + 4, "a one-ulp change is caught");
    /* the sum of two 384-wide blocks (the former kernel's order) is not the chain somewhere */
    size_t differ = 0;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            float lo = chain(A + i * K, B + j * K, 384, 0.0f), hi = chain(A + i * K + 384, B + j * K + 384, K - 384, 0.0f);
            differ += lo + hi != chain(A + i * K, B + j * K, K, 0.0f);
        }
    cr_expect(differ > 0, "blocked sums equal the chain everywhere: the check could not see a blocked order");
    free(A), free(B);
}

/* IEEE half -> float (test side): h = sign, 5-bit exponent, 10-bit mantissa. */
static float half_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(1024 + m), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* The float16 variant: the same bits as the float product of the widened rows. */
Test(kernels, gemm_nt_f16_equals_widened_rows) {
    const size_t Ms[] = {1, 3, 8, 17, 40}, Ns[] = {1, 5, 64, 65, 130}, K = 392;
    for (size_t g = 0; g < 3; g++) {
        if (cl_gemm_use(gemm_kernels[g])) continue;
        for (size_t a = 0; a < 5; a++)
            for (size_t b = 0; b < 5; b++) {
                size_t M = Ms[a], N = Ns[b];
                float *A = malloc(M * K * sizeof(float)), *W = malloc(N * K * sizeof(float));
                float *C1 = malloc(M * N * sizeof(float)), *C2 = malloc(M * N * sizeof(float));
                uint16_t *H = malloc(N * K * sizeof(uint16_t));
                fill(A, M * K, 8, 1.0);
                for (size_t i = 0; i < N * K; i++) {
                    /* finite halves of every exponent, subnormals and signed zeros included */
                    uint16_t h = (uint16_t)((i * 2654435761u) >> 7);
                    if (((h >> 10) & 31) == 31) h &= 0xBFFF;
                    H[i] = h, W[i] = half_value(h);
                }
                cl_sgemm_nt_f16(M, N, K, A, K, H, K, C1, N);
                cl_sgemm_nt(M, N, K, A, K, W, K, C2, N, 0);
                cr_expect(!memcmp(C1, C2, M * N * sizeof(float)), "%s: float16 %zux%zux%zu differs from the widened rows",
                          gemm_kernels[g], M, N, K);
                free(A), free(W), free(C1), free(C2), free(H);
            }
    }
}

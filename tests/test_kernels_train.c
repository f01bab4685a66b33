/* The threaded training kernels (kernels_train.h) against the plain loop
 * kernels of kernels.c / kernels_backward.c (themselves checked against
 * PyTorch by train_parity): random inputs, T = 16 (one attention block) and
 * T = 150 (three blocks, the last partial), 1 and 3 threads, attention with
 * and without a dropout mask. Tolerance |a - b| <= 2e-5 + 1e-4 |b| (float32
 * sums in a different order), NaN-strict; a negative control checks that
 * the comparison catches one changed element. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/rng.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/nn/kernels_backward.h"
#include "corpuslens/nn/kernels_train.h"

static float *rnd(size_t n, cl_rng *r, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    cr_assert(x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)cl_rng_uniform(r);
    return x;
}

static float *zeros(size_t n) {
    float *x = calloc(n, sizeof(float));
    cr_assert(x);
    return x;
}

/* index of the first element out of tolerance, or -1 */
static long first_bad(const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= 2e-5 + 1e-4 * fabs((double)ref[i]))) return (long)i;
    }
    return -1;
}

static void expect_close(const char *what, const float *got, const float *ref, size_t n, int T, int threads) {
    long i = first_bad(got, ref, n);
    cr_expect(i < 0, "%s (T=%d, %d threads): element %ld: %g vs %g", what, T, threads, i, i >= 0 ? got[i] : 0.0,
              i >= 0 ? ref[i] : 0.0);
}

static void attention_case(int T, int threads, int with_mask) {
    const int B = 2, C = 48, H = 3;
    const size_t N = (size_t)B * T, AT = (size_t)B * H * T * T;
    const float scale = 1.0f / sqrtf((float)(C / H));
    cl_rng r;
    cl_rng_seed(&r, (uint64_t)(T * 10 + threads + 100 * with_mask));
    float *qkv = rnd(N * 3 * C, &r, -1.5f, 1.5f), *dz = rnd(N * C, &r, -1.0f, 1.0f);
    float *mask = NULL;
    if (with_mask) {
        mask = zeros(AT);
        for (size_t i = 0; i < AT; i++) mask[i] = cl_rng_uniform(&r) < 0.2 ? 0.0f : 1.25f;
    }
    float *att_ref = zeros(AT), *att = zeros(AT), *attd = zeros(AT);
    float *z_ref = zeros(N * C), *z = zeros(N * C);
    float *dqkv_ref = zeros(N * 3 * C), *dqkv = rnd(N * 3 * C, &r, 5.0f, 6.0f); /* garbage: must be overwritten */
    float *scratch = zeros((size_t)threads * T * T);

    attention_pattern_forward(att_ref, qkv, B, T, C, H, scale);
    const float *mix_ref = att_ref;
    float *attd_ref = NULL;
    if (mask) {
        attd_ref = zeros(AT);
        dropout_apply(attd_ref, att_ref, mask, AT);
        mix_ref = attd_ref;
    }
    attention_mix_forward(z_ref, mix_ref, qkv, B, T, C, H);
    attention_backward(dqkv_ref, dz, qkv, att_ref, mix_ref, mask, B, T, C, H, scale);

    cl_thread_state ts = cl_train_threads_begin();
    omp_set_num_threads(threads);
    tk_attention_pattern_forward(att, qkv, B, T, C, H, scale);
    const float *mix = att;
    if (mask) {
        tk_dropout_apply(attd, att, mask, AT);
        mix = attd;
    }
    tk_attention_mix_forward(z, mix, qkv, B, T, C, H);
    tk_attention_backward(dqkv, dz, qkv, att, mix, mask, B, T, C, H, scale, scratch);
    cl_train_threads_end(ts);

    expect_close("pattern", att, att_ref, AT, T, threads);
    expect_close("mix", z, z_ref, N * C, T, threads);
    expect_close(mask ? "backward (mask)" : "backward", dqkv, dqkv_ref, N * 3 * C, T, threads);
    /* negative control: one changed gradient element is caught */
    dqkv[N * 3 * C / 2] += 1e-3f;
    cr_expect(first_bad(dqkv, dqkv_ref, N * 3 * C) >= 0, "the comparison missed a changed element");
    free(qkv), free(dz), free(mask), free(att_ref), free(att), free(attd), free(attd_ref), free(z_ref), free(z);
    free(dqkv_ref), free(dqkv), free(scratch);
}

Test(kernels_train, attention_matches_loops) {
    int Ts[] = {16, 150}, nts[] = {1, 3};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int m = 0; m < 2; m++) attention_case(Ts[i], nts[j], m);
}

static void dense_case(int threads) {
    const size_t N = 150;
    const int IC = 40, OC = 72;
    cl_rng r;
    cl_rng_seed(&r, (uint64_t)threads + 7);
    float *x = rnd(N * IC, &r, -1, 1), *W = rnd((size_t)OC * IC, &r, -1, 1), *bias = rnd(OC, &r, -1, 1);
    float *dout = rnd(N * OC, &r, -1, 1), *lw = rnd(IC, &r, 0.5f, 1.5f), *lb = rnd(IC, &r, -1, 1);
    float *y_ref = zeros(N * OC), *y = zeros(N * OC);
    float *dx_ref = zeros(N * IC), *dx = zeros(N * IC), *dW_ref = rnd((size_t)OC * IC, &r, -1, 1);
    float *dW = malloc((size_t)OC * IC * sizeof(float)), *db_ref = rnd(OC, &r, -1, 1), *db = malloc(OC * sizeof(float));
    memcpy(dW, dW_ref, (size_t)OC * IC * sizeof(float)); /* accumulation (+=) from the same start */
    memcpy(db, db_ref, OC * sizeof(float));
    float *ln_ref = zeros(N * IC), *ln = zeros(N * IC), *mean = zeros(N), *rstd = zeros(N), *mean2 = zeros(N),
          *rstd2 = zeros(N);
    float *dl = rnd(N * IC, &r, -1, 1), *dlx_ref = rnd(N * IC, &r, -1, 1), *dlx = malloc(N * IC * sizeof(float));
    memcpy(dlx, dlx_ref, N * IC * sizeof(float));
    float *dlw_ref = zeros(IC), *dlw = zeros(IC), *dlb_ref = zeros(IC), *dlb = zeros(IC);

    matmul_forward(y_ref, x, W, bias, N, IC, OC);
    matmul_backward(dx_ref, dW_ref, db_ref, dout, x, W, N, IC, OC);
    layernorm_forward(ln_ref, mean, rstd, x, lw, lb, N, IC, 1e-5f);
    layernorm_backward(dlx_ref, dlw_ref, dlb_ref, dl, x, lw, mean, rstd, N, IC);

    cl_thread_state ts = cl_train_threads_begin();
    omp_set_num_threads(threads);
    tk_matmul_forward(y, x, W, bias, N, IC, OC);
    tk_matmul_backward(dx, dW, db, dout, x, W, N, IC, OC);
    tk_layernorm_forward(ln, mean2, rstd2, x, lw, lb, N, IC, 1e-5f);
    tk_layernorm_backward(dlx, dlw, dlb, dl, x, lw, mean2, rstd2, N, IC);
    cl_train_threads_end(ts);

    expect_close("matmul forward", y, y_ref, N * OC, 0, threads);
    expect_close("matmul dinp", dx, dx_ref, N * IC, 0, threads);
    expect_close("matmul dW", dW, dW_ref, (size_t)OC * IC, 0, threads);
    expect_close("matmul dbias", db, db_ref, OC, 0, threads);
    expect_close("layernorm forward", ln, ln_ref, N * IC, 0, threads);
    expect_close("layernorm dinp", dlx, dlx_ref, N * IC, 0, threads);
    expect_close("layernorm dw", dlw, dlw_ref, IC, 0, threads);
    expect_close("layernorm db", dlb, dlb_ref, IC, 0, threads);
    free(x), free(W), free(bias), free(dout), free(lw), free(lb), free(y_ref), free(y), free(dx_ref), free(dx);
    free(dW_ref), free(dW), free(db_ref), free(db), free(ln_ref), free(ln), free(mean), free(rstd), free(mean2);
    free(rstd2), free(dl), free(dlx_ref), free(dlx), free(dlw_ref), free(dlw), free(dlb_ref), free(dlb);
}

Test(kernels_train, dense_matches_loops) {
    dense_case(1);
    dense_case(3);
}

Test(kernels_train, threads_restored) {
    int b0 = openblas_get_num_threads(), o0 = omp_get_max_threads();
    cl_thread_state ts = cl_train_threads_begin();
    cr_expect_eq(openblas_get_num_threads(), 1);
    cl_train_threads_end(ts);
    cr_expect_eq(openblas_get_num_threads(), b0);
    cr_expect_eq(omp_get_max_threads(), o0);
}

/* The fused softmax + cross-entropy (vectorized exp) against double loops:
 * rows of V = 50,257 (GPT-2's vocabulary: the 4-lane tail path) and V = 7,
 * logits up to +-40, one at -1e30 and one at -200 (exp 0 in float), the
 * probabilities within 1e-7 + 1e-5 |p| and the summed loss within 1e-6
 * relative (NaN-strict), in place (probs == logits, as the trainer calls it);
 * a negative control: one probability changed by 1e-4 relative is caught. */
static void xent_case(int V, size_t N) {
    cl_rng r;
    cl_rng_seed(&r, 42 + (uint64_t)V);
    float *x = rnd(N * V, &r, -40.0f, 40.0f);
    x[3 % V] = -1e30f;
    x[(size_t)V + 1] = -200.0f;
    int32_t *t = malloc(N * sizeof(int32_t));
    double *ref = malloc(N * V * sizeof(double));
    cr_assert(t && ref);
    double lref = 0.0;
    for (size_t i = 0; i < N; i++) {
        t[i] = (int32_t)((i * 7919 + 1) % (size_t)V);
        const float *xi = x + i * V;
        double mx = -INFINITY, s = 0.0;
        for (int j = 0; j < V; j++) mx = xi[j] > mx ? xi[j] : mx;
        for (int j = 0; j < V; j++) s += exp((double)xi[j] - mx);
        for (int j = 0; j < V; j++) ref[i * V + j] = exp((double)xi[j] - mx) / s;
        lref += log(s) - ((double)xi[t[i]] - mx);
    }
    double loss = softmax_crossentropy_forward(x, NULL, x, t, N, V);
    cr_expect(fabs(loss - lref) <= 1e-6 * fabs(lref), "V %d: loss %.10g, reference %.10g", V, loss, lref);
    size_t bad = N * V;
    for (size_t k = 0; k < N * V && bad == N * V; k++)
        if (!(fabs(x[k] - ref[k]) <= 1e-7 + 1e-5 * ref[k])) bad = k;
    cr_expect(bad == N * V, "V %d: probability %zu is %.8g, reference %.8g", V, bad, bad < N * V ? x[bad] : 0.0,
              bad < N * V ? ref[bad] : 0.0);
    size_t big = 0; /* negative control on the largest probability */
    for (size_t k = 0; k < N * V; k++) big = ref[k] > ref[big] ? k : big;
    x[big] *= 1.0001f;
    cr_expect(!(fabs(x[big] - ref[big]) <= 1e-7 + 1e-5 * ref[big]), "V %d: the check misses a changed element", V);
    free(x), free(t), free(ref);
}

Test(kernels_train, softmax_crossentropy_matches_double) {
    xent_case(50257, 3);
    xent_case(7, 5);
}

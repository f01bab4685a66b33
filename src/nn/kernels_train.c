/* Threaded training kernels (see kernels_train.h). Dimensions as in
 * kernels.c: N rows, C channels, B batch, T positions, H heads, hs = C/H,
 * IC/OC matmul input/output channels. */
#include "corpuslens/nn/kernels_train.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels_rows.h"

/* Query/key rows per attention block: block i of queries meets keys 0..end of
 * block i only. */
#define ATT_BLOCK 64

cl_thread_state cl_train_threads_begin(void) {
    cl_thread_state s = {openblas_get_num_threads(), omp_get_max_threads()};
    int n = s.omp < s.blas ? s.omp : s.blas;
    omp_set_num_threads(n > 0 ? n : 1);
    openblas_set_num_threads(1);
    return s;
}

void cl_train_threads_end(cl_thread_state s) {
    openblas_set_num_threads(s.blas);
    omp_set_num_threads(s.omp);
}

/* [lo, hi) of n items for thread `id` of `nt`, in multiples of `align`. */
static void part(size_t n, int id, int nt, size_t align, size_t *lo, size_t *hi) {
    size_t units = (n + align - 1) / align, per = units / nt, extra = units % nt;
    size_t u0 = id * per + ((size_t)id < extra ? (size_t)id : extra);
    size_t u1 = u0 + per + ((size_t)id < extra ? 1 : 0);
    *lo = u0 * align < n ? u0 * align : n;
    *hi = u1 * align < n ? u1 * align : n;
}

void tk_matmul_forward(float *out, const float *inp, const float *W, const float *bias, size_t N, int IC, int OC) {
    if (N == 0) return;
#pragma omp parallel
    {
        size_t lo, hi;
        part(N, omp_get_thread_num(), omp_get_num_threads(), 16, &lo, &hi);
        if (hi > lo) {
            float beta = 0.0f;
            if (bias) {
                for (size_t i = lo; i < hi; i++) memcpy(out + i * OC, bias, (size_t)OC * sizeof(float));
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)(hi - lo), OC, IC, 1.0f, inp + lo * IC,
                        IC, W, IC, beta, out + lo * OC, OC);
        }
    }
}

void tk_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const float *W,
                        size_t N, int IC, int OC) {
    if (N == 0) return;
#pragma omp parallel
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo, hi;
        if (dinp) {
            part(N, id, nt, 16, &lo, &hi);
            if (hi > lo)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)(hi - lo), IC, OC, 1.0f,
                            dout + lo * OC, OC, W, IC, 0.0f, dinp + lo * IC, IC);
        }
        part((size_t)OC, id, nt, 8, &lo, &hi);
        if (hi > lo) {
            if (dW)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)(hi - lo), IC, (blasint)N, 1.0f,
                            dout + lo, OC, inp, IC, 1.0f, dW + lo * IC, IC);
            if (dbias)
                for (size_t i = 0; i < N; i++) {
                    const float *d = dout + i * OC;
                    for (size_t o = lo; o < hi; o++) dbias[o] += d[o];
                }
        }
    }
}

void tk_attention_pattern_forward(float *att, const float *qkv, int B, int T, int C, int H, float scale) {
    const int hs = C / H;
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C;
        float *a = att + (size_t)bh * T * T;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
            /* a[r0:r1, 0:r1] = scale * q[r0:r1] k[0:r1]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, scale, q + (size_t)r0 * C3,
                        (blasint)C3, k, (blasint)C3, 0.0f, a + (size_t)r0 * T, T);
            for (int t = r0; t < r1; t++) {
                float *row = a + (size_t)t * T;
                float mx = -FLT_MAX;
                for (int j = 0; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                for (int j = 0; j <= t; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j <= t; j++) row[j] *= inv;
                for (int j = t + 1; j < T; j++) row[j] = 0.0f;
            }
        }
    }
}

void tk_attention_mix_forward(float *out, const float *att, const float *qkv, int B, int T, int C, int H) {
    const int hs = C / H;
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        const float *v = qkv + (size_t)b * T * C3 + 2 * (size_t)C + (size_t)h * hs;
        const float *a = att + (size_t)bh * T * T;
        float *o = out + (size_t)b * T * C + (size_t)h * hs;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
            /* o[r0:r1] = a[r0:r1, 0:r1] v[0:r1] (a is 0 above the diagonal) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f, a + (size_t)r0 * T, T, v,
                        (blasint)C3, 0.0f, o + (size_t)r0 * C, C);
        }
    }
}

size_t tk_attention_scratch_floats(int T) { return (size_t)omp_get_max_threads() * T * T; }

void tk_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const float *attd,
                           const float *mask, int B, int T, int C, int H, float scale, float *scratch) {
    const int hs = C / H;
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel
    {
        float *da = scratch + (size_t)omp_get_thread_num() * T * T; /* [T, T] */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t ro = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + ro, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + ro, *dk = dq + C, *dv = dq + 2 * C;
            const float *dz = dout + (size_t)b * T * C + (size_t)h * hs;
            const float *a = att + (size_t)bh * T * T, *ad = attd + (size_t)bh * T * T;
            const float *mk = mask ? mask + (size_t)bh * T * T : NULL;
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                /* d(attd)[r0:r1, 0:r1] = dz[r0:r1] v[0:r1]^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, 1.0f, dz + (size_t)r0 * C, C,
                            v, (blasint)C3, 0.0f, da + (size_t)r0 * T, T);
                /* dv[r0:r1] = attd[r0:T, r0:r1]^T dz[r0:T] (attd is 0 above the diagonal) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, hs, T - r0, 1.0f,
                            ad + (size_t)r0 * T + r0, T, dz + (size_t)r0 * C, C, 0.0f, dv + (size_t)r0 * C3,
                            (blasint)C3);
                /* softmax: dpre = a * (datt - sum a*datt) * scale; 0 above the diagonal */
                for (int t = r0; t < r1; t++) {
                    float *d = da + (size_t)t * T;
                    const float *at = a + (size_t)t * T;
                    if (mk)
                        for (int j = 0; j <= t; j++) d[j] *= mk[(size_t)t * T + j];
                    float dot = 0.0f;
                    for (int j = 0; j <= t; j++) dot += at[j] * d[j];
                    for (int j = 0; j <= t; j++) d[j] = at[j] * (d[j] - dot) * scale;
                    for (int j = t + 1; j < r1; j++) d[j] = 0.0f;
                }
                /* dq[r0:r1] = dpre[r0:r1, 0:r1] k[0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f, da + (size_t)r0 * T, T,
                            k, (blasint)C3, 0.0f, dq + (size_t)r0 * C3, (blasint)C3);
            }
            /* dk[c0:c1] = dpre[c0:T, c0:c1]^T q[c0:T]: needs every row block at or below c0 */
            for (int c0 = 0; c0 < T; c0 += ATT_BLOCK) {
                int c1 = c0 + ATT_BLOCK < T ? c0 + ATT_BLOCK : T;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hs, T - c0, 1.0f,
                            da + (size_t)c0 * T + c0, T, q + (size_t)c0 * C3, (blasint)C3, 0.0f,
                            dk + (size_t)c0 * C3, (blasint)C3);
            }
        }
    }
}

void tk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                          size_t N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        float mf, s;
        layernorm_row(out + i * C, &mf, &s, inp + i * C, w, b, C, eps);
        if (mean) mean[i] = mf;
        if (rstd) rstd[i] = s;
    }
}

void tk_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, size_t N, int C) {
#pragma omp parallel
    {
        /* rows: dinp */
#pragma omp for schedule(static)
        for (size_t i = 0; i < N; i++)
            layernorm_row_backward(dinp + i * C, dout + i * C, inp + i * C, w, mean[i], rstd[i], C);
        /* columns: dw, db (the sum over rows in row order, in one thread) */
        size_t lo, hi;
        part((size_t)C, omp_get_thread_num(), omp_get_num_threads(), 16, &lo, &hi);
        for (size_t i = 0; i < N; i++) {
            const float *d = dout + i * C, *x = inp + i * C;
            float m = mean[i], s = rstd[i];
            for (size_t j = lo; j < hi; j++) {
                dw[j] += d[j] * ((x[j] - m) * s);
                if (db) db[j] += d[j];
            }
        }
    }
}

void tk_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void tk_relu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void tk_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(inp[i]);
}

void tk_relu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

void tk_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_grad(inp[i]);
}

void tk_dropout_apply(float *out, const float *inp, const float *mask, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * mask[i];
}

/* Backward kernels (the twins of kernels.c). Dimensions: N rows, C channels,
 * B batch, T positions, H heads, hs = C/H head size, V vocab, IC/OC matmul
 * input/output channels. Parameter gradients accumulate (+=), see the header. */
#include "corpuslens/nn/kernels_backward.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels_rows.h"

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, size_t N, int T,
                      int C) {
    for (size_t i = 0; i < N; i++) {
        const float *d = dout + i * C;
        float *we = dwte + (size_t)tokens[i] * C;
        float *pe = dwpe + (i % (size_t)T) * C;
        for (int j = 0; j < C; j++) {
            we[j] += d[j];
            pe[j] += d[j];
        }
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, int C) {
    for (size_t i = 0; i < N; i++) {
        const float *d = dout + i * C, *x = inp + i * C;
        float m = mean[i], s = rstd[i];
        layernorm_row_backward(dinp + i * C, d, x, w, m, s, C);
        for (int j = 0; j < C; j++) {
            dw[j] += d[j] * ((x[j] - m) * s);
            if (db) db[j] += d[j];
        }
    }
}

void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, size_t N, int IC, int OC) {
    if (N == 0) return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, IC, OC, 1.0f, dout, OC, W, IC, 0.0f,
                    dinp, IC);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, (blasint)N, 1.0f, dout, OC, inp, IC, 1.0f,
                    dW, IC);
    if (dbias)
        for (size_t i = 0; i < N; i++) {
            const float *d = dout + i * OC;
            for (int o = 0; o < OC; o++) dbias[o] += d[o];
        }
}

/* causal: keys 0..t of row t; else every key, masked keys (weight 0) giving
 * and getting no gradient. */
static void attention_grad(float *dqkv, const float *dout, const float *qkv, const float *att, const float *attd,
                           const float *mask, int B, int T, int C, int H, float scale, int causal) {
    int hs = C / H;
    size_t C3 = 3 * (size_t)C;
    float datt[T > 0 ? T : 1];
    memset(dqkv, 0, (size_t)B * T * C3 * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                size_t row = (((size_t)b * H + h) * T + t) * T;
                const float *a = att + row, *ad = attd + row;
                const float *mk = mask ? mask + row : NULL;
                const float *dz = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                int last = causal ? t : T - 1;
                /* mix: z_t = sum_t2 attd[t2] v_t2 */
                for (int t2 = 0; t2 <= last; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float *dv = dqkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float s = 0.0f, w = ad[t2];
                    for (int i = 0; i < hs; i++) {
                        s += dz[i] * v[i];
                        dv[i] += w * dz[i];
                    }
                    datt[t2] = mk ? s * mk[t2] : s;
                }
                /* softmax: dpre = a * (datt - sum a*datt) */
                float dot = 0.0f;
                for (int t2 = 0; t2 <= last; t2++) dot += a[t2] * datt[t2];
                for (int t2 = 0; t2 <= last; t2++) {
                    if (!causal && a[t2] == 0.0f) continue;
                    float dp = a[t2] * (datt[t2] - dot) * scale;
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float *dk = dqkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dp * k[i];
                        dk[i] += dp * q[i];
                    }
                }
            }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                        const float *attd, const float *mask, int B, int T, int C, int H, float scale) {
    attention_grad(dqkv, dout, qkv, att, attd, mask, B, T, C, H, scale, 1);
}

void relu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_grad(inp[i]);
}

void dropout_apply(float *out, const float *inp, const float *mask, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * mask[i];
}

/* exp(x) for x <= 0, four at a time in GCC/Clang vector types (libm's expf is
 * a call per element: a third of a training step at V = 50,257; GCC -O2 does
 * not vectorize a scalar version under -ftrapping-math). Cephes' expf:
 * n = round(x log2 e), r = x - n ln 2 (in two parts), a degree-5 polynomial for
 * e^r on |r| <= ln 2 / 2, times 2^n built in the exponent bits. Within 2 ulp of
 * expf; below -87 (where expf is subnormal or 0) it gives 0, which changes
 * no sum of at least exp(0) = 1 by an ulp. */
typedef float cl_v4f __attribute__((vector_size(16)));
typedef int32_t cl_v4i __attribute__((vector_size(16)));
#define V4(c) ((cl_v4f){(c), (c), (c), (c)})

static inline cl_v4f exp_nonpos4(cl_v4f x) {
    const cl_v4f big = V4(12582912.0f), lim = V4(-87.0f); /* big = 1.5 * 2^23: adding it rounds */
    cl_v4i under = x < lim;                               /* -1 where x < -87 */
    cl_v4f xc = (cl_v4f)(((cl_v4i)x & ~under) | ((cl_v4i)lim & under));
    cl_v4f n = (xc * V4(1.44269504088896341f) + big) - big;
    cl_v4f r = xc - n * V4(0.693359375f);
    r = r - n * V4(-2.12194440e-4f);
    cl_v4f y = V4(1.9875691500e-4f);
    y = y * r + V4(1.3981999507e-3f);
    y = y * r + V4(8.3334519073e-3f);
    y = y * r + V4(4.1665795894e-2f);
    y = y * r + V4(1.6666665459e-1f);
    y = y * r + V4(5.0000001201e-1f);
    y = y * (r * r) + r + V4(1.0f);
    cl_v4i e = (__builtin_convertvector(n, cl_v4i) + 127) << 23;
    y = y * (cl_v4f)e;
    return (cl_v4f)((cl_v4i)y & ~under);
}

double softmax_crossentropy_forward(float *probs, float *losses, const float *logits, const int32_t *targets,
                                    size_t N, int V) {
    double total = 0.0;
    for (size_t i = 0; i < N; i++) {
        const float *x = logits + i * V;
        float *p = probs + i * V;
        float mx = -FLT_MAX;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        float xt = x[targets[i]];
        /* p = exp(x - mx), summed in 4 float lanes over blocks of 256 terms
         * (at most 64 terms per lane), the blocks in double */
        const cl_v4f vmx = V4(mx);
        double sum = 0.0;
        for (int j0 = 0; j0 < V; j0 += 256) {
            int j1 = V - j0 < 256 ? V : j0 + 256, j = j0;
            cl_v4f acc = V4(0.0f);
            for (; j + 4 <= j1; j += 4) {
                cl_v4f v;
                memcpy(&v, x + j, sizeof v);
                v = exp_nonpos4(v - vmx);
                memcpy(p + j, &v, sizeof v);
                acc += v;
            }
            if (j < j1) { /* the last 1..3 terms of a row, padded with -inf (exp 0) */
                cl_v4f v = V4(0.0f);
                memcpy(&v, x + j, (size_t)(j1 - j) * sizeof(float));
                v -= vmx;
                for (int k = j1 - j; k < 4; k++) v[k] = -INFINITY;
                v = exp_nonpos4(v);
                memcpy(p + j, &v, (size_t)(j1 - j) * sizeof(float));
                acc += v;
            }
            sum += (double)((acc[0] + acc[1]) + (acc[2] + acc[3]));
        }
        float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int j = 0; j < V; j++) p[j] *= inv;
        double l = log(sum) - ((double)xt - mx);
        if (losses) losses[i] = (float)l;
        total += l;
    }
    return total;
}

void softmax_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, size_t N, int V,
                                   float dloss) {
    for (size_t i = 0; i < N; i++) {
        const float *p = probs + i * V;
        float *d = dlogits + i * V;
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] = p[j] * dloss;
        d[targets[i]] -= dloss;
    }
}

void attention_backward_full(float *dqkv, const float *dout, const float *qkv, const float *att,
                             const float *attd, const float *mask, int B, int T, int C, int H, float scale) {
    attention_grad(dqkv, dout, qkv, att, attd, mask, B, T, C, H, scale, 0);
}

/* Row kernels shared by the loop kernels (kernels.c, kernels_backward.c) and
 * the threaded training kernels (kernels_train.c): one definition of each
 * row's arithmetic, so both give the same numbers. Internal to src/nn/. */
#ifndef CORPUSLENS_NN_KERNELS_ROWS_H
#define CORPUSLENS_NN_KERNELS_ROWS_H

#include <math.h>

/* o[C] = (x - mean) * rstd * w (+ b, when b is not NULL); the row's mean and
 * rstd = 1 / sqrt(var + eps) (float) into *mean, *rstd. */
static inline void layernorm_row(float *o, float *mean, float *rstd, const float *x, const float *w,
                                 const float *b, int C, float eps) {
    double m = 0.0;
    for (int j = 0; j < C; j++) m += x[j];
    m /= C;
    double v = 0.0;
    for (int j = 0; j < C; j++) {
        double d = x[j] - m;
        v += d * d;
    }
    v /= C;
    float s = (float)(1.0 / sqrt(v + eps));
    float mf = (float)m;
    if (b) {
        for (int j = 0; j < C; j++) o[j] = (x[j] - mf) * s * w[j] + b[j];
    } else {
        for (int j = 0; j < C; j++) o[j] = (x[j] - mf) * s * w[j];
    }
    *mean = mf;
    *rstd = s;
}

/* The input gradient of one LayerNorm row: dx[C] += (w*d - mean(w*d) -
 * norm * mean(w*d*norm)) * rstd, with norm = (x - m) * s. */
static inline void layernorm_row_backward(float *dx, const float *d, const float *x, const float *w, float m,
                                          float s, int C) {
    double a = 0.0, b = 0.0; /* two reductions: mean(w*d) and mean(w*d*norm) */
    for (int j = 0; j < C; j++) {
        float norm = (x[j] - m) * s;
        float wd = w[j] * d[j];
        a += wd;
        b += (double)wd * norm;
    }
    float ma = (float)(a / C), mb = (float)(b / C);
    for (int j = 0; j < C; j++) {
        float norm = (x[j] - m) * s;
        dx[j] += (w[j] * d[j] - ma - norm * mb) * s;
    }
}

/* GELU (exact, erf) and its derivative at x. */
static inline float gelu_value(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_grad(float x) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

#endif

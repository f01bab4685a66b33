/* corpuslens layer kernels: one function per layer, name_forward(out..., in...,
 * dims), llm.c style. Dimensions as in model.h; N = rows (B*T flattened).
 * All buffers are caller-owned, row-major, float32; `size_t` indexes.
 * Backward twins (for training) live beside them as name_backward().
 */
#ifndef CORPUSLENS_KERNELS_H
#define CORPUSLENS_KERNELS_H

#include <stddef.h>

/* out[N, C] = LayerNorm(inp[N, C]) * w + b (b may be NULL).
 * mean/rstd [N] may be NULL (saved for backward when given). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, size_t N, int C, float eps);

/* out[N, OC] = inp[N, IC] @ W[OC, IC]^T + bias[OC] (bias may be NULL):
 * cl_sgemm_nt (gemm.h), each output the chain bias, + inp[r][0] W[o][0], ...
 * of fused multiply-adds, so a row's result does not depend on N or on the
 * rows beside it. */
void matmul_forward(float *out, const float *inp, const float *W, const float *bias, size_t N,
                    int IC, int OC);

/* Causal self-attention over qkv[B, T, 3C] (q | k | v, heads of hs = C/H in
 * order inside each). out[B, T, C] = concatenated head outputs (before proj).
 * att[B, H, T, T] receives the softmax weights (row t, cols 0..t; the rest 0).
 * scale multiplies q.k (1/sqrt(hs) or 1/sqrt(C)). */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H,
                       float scale);

/* The two halves of attention_forward, so hooks can read or change the
 * pattern between them: att[B, H, T, T] from q, k; then out[B, T, C] = att @ v. */
void attention_pattern_forward(float *att, const float *qkv, int B, int T, int C, int H, float scale);
void attention_mix_forward(float *out, const float *att, const float *qkv, int B, int T, int C, int H);

/* One query position attending to n keys/values (prefix sharing, KV caches):
 * q[C] (heads concatenated), keys[j] / vals[j] point to C floats each (j < n),
 * out[C], att[H, n] (may be NULL). */
void attention_one_forward(float *out, float *att, const float *q, const float *const *keys,
                           const float *const *vals, int n, int C, int H, float scale);

/* Encoder attention: like attention_pattern_forward, but with causal = 0
 * every position attends to every key, and keep[B, T] (may be NULL) masks
 * keys out (keep 0: weight 0, e.g. padding). A row without any key is 0. */
void attention_pattern_forward_masked(float *att, const float *qkv, const unsigned char *keep, int B, int T,
                                      int C, int H, float scale, int causal);
/* out[B, T, C] = att @ v over all T keys (any pattern; zeros skipped). */
void attention_mix_forward_full(float *out, const float *att, const float *qkv, int B, int T, int C, int H);
void relu_forward(float *out, const float *inp, size_t n);
/* Exact GELU: 0.5 x (1 + erf(x / sqrt 2)). */
void gelu_forward(float *out, const float *inp, size_t n);
/* Tanh GELU (GPT-2's gelu_new, PyTorch approximate='tanh'):
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void gelu_tanh_forward(float *out, const float *inp, size_t n);

/* out[n] += inp[n] */
void residual_add(float *out, const float *inp, size_t n);

/* Row softmax in place: x[N, V]. Max-subtracted, double-precision sum. */
void softmax_forward(float *x, size_t N, int V);

/* Row L2 normalisation in place: x[N, C] /= ||x|| (rows of norm 0 stay 0). */
void l2normalize_rows(float *x, size_t N, int C);

#endif

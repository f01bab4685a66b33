/* corpuslens backward kernels: the twins of the forward kernels in kernels.h,
 * used by training (train.h). llm.c style: name_backward(d_inputs..., d_params...,
 * d_out, saved inputs..., dims). Dimensions as in model.h; N = rows (B*T).
 *
 * Conventions (every function):
 *   - gradients of PARAMETERS (dW, dbias, dw, db) are ACCUMULATED (+=), so a
 *     tied tensor (lm_head.weight == wte) collects both contributions; zero them
 *     once per step. A NULL parameter gradient means "tensor absent": skipped.
 *   - gradients of ACTIVATIONS are overwritten unless the comment says "+=".
 *   - buffers are caller-owned, row-major float32, `size_t` indexes.
 */
#ifndef CORPUSLENS_KERNELS_BACKWARD_H
#define CORPUSLENS_KERNELS_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

/* Embedding: dwte[tokens[i]] += dout[i], dwpe[i % T] += dout[i] for the N = B*T
 * rows of dout[N, C]. */
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, size_t N, int T,
                      int C);

/* LayerNorm: dinp[N, C] += d/dinp, dw[C] += sum dout*norm, db[C] += sum dout
 * (db may be NULL). mean/rstd [N] as saved by layernorm_forward. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, size_t N, int C);

/* out[N, OC] = inp[N, IC] @ W[OC, IC]^T + bias:
 * dinp[N, IC] = dout @ W (overwritten; may be NULL: not needed),
 * dW[OC, IC] += dout^T @ inp, dbias[OC] += column sums of dout (may be NULL). sgemm. */
void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, size_t N, int IC, int OC);

/* Causal self-attention (attention_forward with optional dropout on the
 * pattern): att[B, H, T, T] is the softmax pattern, attd the pattern the mix
 * used (att * mask; == att without dropout), mask[B, H, T, T] the dropout
 * factors (0 or 1/(1-p); NULL without dropout). dout[B, T, C] -> dqkv[B, T, 3C]
 * (overwritten). scale as in attention_forward. */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                        const float *attd, const float *mask, int B, int T, int C, int H, float scale);
/* The same over all T keys, for any pattern (bidirectional, key-masked):
 * keys with att 0 get no gradient through the softmax. */
void attention_backward_full(float *dqkv, const float *dout, const float *qkv, const float *att,
                             const float *attd, const float *mask, int B, int T, int C, int H, float scale);

/* dinp[n] = dout[n] * (inp[n] > 0) (dinp may equal dout). */
void relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* Exact GELU derivative: 0.5 (1 + erf(x/sqrt 2)) + x exp(-x^2/2) / sqrt(2 pi). */
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Dropout by a precomputed mask of factors (0 or 1/(1-p)): out[n] = inp[n] * mask[n]
 * (in place allowed). The same function is its own backward (dinp = dout * mask). */
void dropout_apply(float *out, const float *inp, const float *mask, size_t n);

/* Fused softmax + cross-entropy over logits[N, V] with targets[N]:
 * probs[N, V] = softmax(logits) (probs may equal logits), losses[N] = -log p[target]
 * (may be NULL). Returns the sum of the losses (double). */
double softmax_crossentropy_forward(float *probs, float *losses, const float *logits, const int32_t *targets,
                                    size_t N, int V);
/* dlogits[N, V] = (probs - onehot(target)) * dloss (dloss = 1 / (rows in the
 * mean)); dlogits may equal probs. */
void softmax_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, size_t N, int V,
                                   float dloss);

#endif

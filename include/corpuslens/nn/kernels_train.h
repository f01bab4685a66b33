/* corpuslens training kernels: threaded twins of kernels.h / kernels_backward.h
 * for the causal training path (train.c). Same arguments and conventions as
 * their namesakes (parameter gradients accumulate, activation gradients are
 * overwritten), with two differences:
 *
 *   - ONE thread pool does all the work: each function splits its work over
 *     OpenMP threads (static partitions, so results are deterministic for a
 *     given thread count) and calls cblas_sgemm single-threaded inside. Wrap a
 *     training step in cl_train_threads_begin / _end so OpenBLAS
 *     does not start its own threads beside OpenMP's (two pools on the same
 *     cores spin against each other: a quarter of a step went to sched_yield).
 *   - causal attention runs as sgemm per (row, head) on 64-row blocks: block i
 *     of queries only multiplies keys 0..end of block i, so the masked half of
 *     Q K^T is (mostly) never computed.
 *
 * Matmul rows (forward, dinp) are split over threads; each row's result is
 * the same sgemm whatever the split. dW, dbias, dw, db are split over output
 * columns with the full sum over rows inside one thread, so they do not depend
 * on the thread count either.
 */
#ifndef CORPUSLENS_KERNELS_TRAIN_H
#define CORPUSLENS_KERNELS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

/* Around a training step: OpenBLAS single-threaded, and the OpenMP team
 * size min(omp_get_max_threads(), OpenBLAS threads) (so OPENBLAS_NUM_THREADS=1
 * under mpirun still means one thread per rank). end restores both. Call from
 * one thread, outside parallel regions. */
typedef struct {
    int blas, omp;
} cl_thread_state;
cl_thread_state cl_train_threads_begin(void);
void cl_train_threads_end(cl_thread_state previous);

/* As matmul_forward / matmul_backward (kernels.h, kernels_backward.h). */
void tk_matmul_forward(float *out, const float *inp, const float *W, const float *bias, size_t N, int IC, int OC);
void tk_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const float *W,
                        size_t N, int IC, int OC);

/* As attention_pattern_forward / attention_mix_forward (causal). */
void tk_attention_pattern_forward(float *att, const float *qkv, int B, int T, int C, int H, float scale);
void tk_attention_mix_forward(float *out, const float *att, const float *qkv, int B, int T, int C, int H);

/* As attention_backward (causal). scratch: tk_attention_scratch_floats(T) floats. */
size_t tk_attention_scratch_floats(int T);
void tk_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const float *attd,
                           const float *mask, int B, int T, int C, int H, float scale, float *scratch);

/* As layernorm_forward / layernorm_backward. */
void tk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                          size_t N, int C, float eps);
void tk_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, size_t N, int C);

/* Element-wise, threaded: out = a + b; as relu/gelu_forward/backward, dropout_apply. */
void tk_add(float *out, const float *a, const float *b, size_t n);
void tk_relu_forward(float *out, const float *inp, size_t n);
void tk_gelu_forward(float *out, const float *inp, size_t n);
void tk_relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void tk_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void tk_dropout_apply(float *out, const float *inp, const float *mask, size_t n);

#endif

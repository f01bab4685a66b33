/* The one matrix product of the forward pass and the similarity searches
 * (scan, explain): C = A B^T, with A's and B's rows of the same length K
 * (activations times a weight matrix stored [out, in]; prompt vectors times
 * substring vectors).
 *
 * One arithmetic for every shape: element (i, j) is the chain
 *     c = init;  c = fma(A[i][k], B[j][k], c)  for k = 0, 1, ..., K-1
 * in that order (init 0, or the old C[i][j] when accumulating), each fused
 * multiply-add rounded once. So a row of C is the same bits whatever M, N
 * and the other rows of A, whatever the blocking, the thread count and the
 * code that runs it: a prompt's result does not depend on its batch, nor a
 * shard's on the rank. The codes (gemm.c) differ only in which chains they
 * run side by side: on AVX-512 a kernel with a 12 x 32 register tile over
 * packed panels (M > CL_GEMM_SKINNY_AVX512) or, for a few rows, one that
 * reads B where it lies; the same pair with AVX2 + FMA; elsewhere plain C
 * (fmaf). CORPUSLENS_GEMM=avx2 or =portable picks a lower one (tests: the
 * same bytes). OpenBLAS is not used here: its sums follow its tiling and its
 * small-matrix kernels, so a row's last bits would depend on the batch. */
#ifndef CORPUSLENS_NN_GEMM_H
#define CORPUSLENS_NN_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Up to these many rows of A the code without B's packing is used. */
#define CL_GEMM_SKINNY_AVX512 64
#define CL_GEMM_SKINNY_AVX2 16

/* C[M, N] (row stride ldc) = A[M, K] (lda) . B[N, K]^T (ldb), plus the old C
 * when accumulate is nonzero. Parallel over OpenMP threads for large sizes. */
void cl_sgemm_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                 size_t ldc, int accumulate);

/* C[M, N] = A[M, K] . B[N, K]^T with B's rows in IEEE half precision (a
 * float16 index): the same bits as cl_sgemm_nt on B widened to float
 * (widening is exact). */
void cl_sgemm_nt_f16(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint16_t *B, size_t ldb,
                     float *C, size_t ldc);

/* "avx512", "avx2" or "portable": which code cl_sgemm_nt uses. */
const char *cl_gemm_kernel_name(void);

/* Tests: use the code of that name from now on (NULL: the best the CPU has).
 * 0, or -1 when this CPU cannot run it (nothing changes). Not thread-safe:
 * call it before any product. */
int cl_gemm_use(const char *name);

#endif

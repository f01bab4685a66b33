/* The one matrix product of the forward pass and the scan's similarity search:
 * C = A B^T, with A's and B's rows of the same length K (activations times a
 * weight matrix stored [out, in]; prompt vectors times substring vectors).
 *
 * Debian 12's OpenBLAS runs its AVX2 kernels on the CPUs this project is
 * measured on (machines there set OPENBLAS_CORETYPE, since that OpenBLAS
 * computes wrong results with its own AVX-512 kernels on some of them). Where
 * the CPU has AVX-512 F, cl_sgemm_nt uses a kernel of its own instead
 * (gemm.c: packed panels, a 12 x 32 register tile): about twice OpenBLAS's
 * AVX2 speed there. Elsewhere, for small products (M < CL_GEMM_MIN_ROWS), and
 * with CORPUSLENS_GEMM=blas, it calls cblas_sgemm.
 *
 * Every element is summed over k in increasing order, by fused multiply-adds,
 * whatever M, N and the blocking: a row of C does not depend on which other
 * rows are computed with it (so shards and ranks do not change results). */
#ifndef CORPUSLENS_NN_GEMM_H
#define CORPUSLENS_NN_GEMM_H

#include <stddef.h>

#define CL_GEMM_MIN_ROWS 32

/* C[M, N] (row stride ldc) = A[M, K] (lda) . B[N, K]^T (ldb), plus the old C
 * when accumulate is nonzero. Parallel over OpenMP threads for large sizes. */
void cl_sgemm_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                 size_t ldc, int accumulate);

/* "avx512" or "blas": which code cl_sgemm_nt uses for large products. */
const char *cl_gemm_kernel_name(void);

#endif

/* C = A B^T (gemm.h): an AVX-512 kernel of our own where the CPU has it,
 * cblas_sgemm elsewhere.
 *
 * Blocking (the BLIS scheme, with B's rows as the vector operand): for each
 * block of KC columns of k and NB rows of B, B's block is packed into panels
 * of NR = 32 rows, k-major (NB x KC floats, ~690 KB: stays in L2). Then for
 * each MR = 12 rows of A, those rows are packed k-major (12 x KC floats: L1)
 * and multiplied with every panel of the block: a 12 x 32 tile of C held in
 * 24 zmm registers, 24 fused multiply-adds per k. Edges are zero-padded in
 * the packed panels and masked on store. */
#include "corpuslens/nn/gemm.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CL_GEMM_X86 1
#endif

#define MR 12
#define NR 32
#define KC 384
#define NB (NR * 14)

static void blas_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                    size_t ldc, int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N, (blasint)K, 1.0f, A, (blasint)lda, B,
                (blasint)ldb, accumulate ? 1.0f : 0.0f, C, (blasint)ldc);
}

#ifdef CL_GEMM_X86

/* B[n0 .. n0+nb, k0 .. k0+kc] -> panels of NR rows: panel p holds, for each
 * k, the NR values B[n0 + p*NR + j][k0 + k] (zero past row n0+nb). */
static void pack_b(float *dst, const float *B, size_t ldb, size_t nb, size_t kc) {
    for (size_t p = 0; p * NR < nb; p++) {
        float *d = dst + p * NR * kc;
        size_t rows = nb - p * NR < NR ? nb - p * NR : NR;
        for (size_t j = 0; j < rows; j++) {
            const float *src = B + (p * NR + j) * ldb;
            for (size_t k = 0; k < kc; k++) d[k * NR + j] = src[k];
        }
        for (size_t j = rows; j < NR; j++)
            for (size_t k = 0; k < kc; k++) d[k * NR + j] = 0.0f;
    }
}

/* A[m0 .. m0+mr, k0 .. k0+kc] -> k-major MR-wide (zero past row mr). */
static void pack_a(float *dst, const float *A, size_t lda, size_t mr, size_t kc) {
    for (size_t i = 0; i < mr; i++) {
        const float *src = A + i * lda;
        for (size_t k = 0; k < kc; k++) dst[k * MR + i] = src[k];
    }
    for (size_t i = mr; i < MR; i++)
        for (size_t k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
}

/* C[0..mr, 0..nr] (+)= Ap (kc x MR) . Bp (kc x NR) */
__attribute__((target("avx512f"))) static void ukernel(size_t kc, const float *Ap, const float *Bp, float *C,
                                                       size_t ldc, size_t mr, size_t nr, int acc) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c[i][0] = _mm512_setzero_ps(), c[i][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp + k * NR), b1 = _mm512_load_ps(Bp + k * NR + 16);
        const float *a = Ap + k * MR;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if ((size_t)i >= mr) break;
        float *row = C + (size_t)i * ldc;
        __m512 v0 = c[i][0], v1 = c[i][1];
        if (acc) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row + 16), v1);
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row + 16, m1, v1);
    }
}

static _Thread_local float *bbuf;

static int own_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                  size_t ldc, int accumulate) {
    if (!bbuf && !(bbuf = aligned_alloc(64, (size_t)NB * KC * sizeof(float)))) return -1;
    float *bp = bbuf;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        int acc = accumulate || k0 > 0;
        for (size_t n0 = 0; n0 < N; n0 += NB) {
            size_t nb = N - n0 < NB ? N - n0 : NB;
            pack_b(bp, B + n0 * ldb + k0, ldb, nb, kc);
            long panels = (long)((M + MR - 1) / MR);
#pragma omp parallel for schedule(static) if (M * nb * kc > (size_t)1 << 22)
            for (long ip = 0; ip < panels; ip++) {
                float ap[MR * KC] __attribute__((aligned(64)));
                size_t m0 = (size_t)ip * MR, mr = M - m0 < MR ? M - m0 : MR;
                pack_a(ap, A + m0 * lda + k0, lda, mr, kc);
                for (size_t j0 = 0; j0 < nb; j0 += NR) {
                    size_t nr = nb - j0 < NR ? nb - j0 : NR;
                    ukernel(kc, ap, bp + j0 * kc, C + m0 * ldc + n0 + j0, ldc, mr, nr, acc);
                }
            }
        }
    }
    return 0;
}

static int pick(void) {
    static int own = -1;
    if (own < 0) {
        const char *e = getenv("CORPUSLENS_GEMM");
        __builtin_cpu_init();
        own = (!e || strcmp(e, "blas")) && __builtin_cpu_supports("avx512f");
    }
    return own;
}

#else
static int pick(void) { return 0; }
static int own_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                  size_t ldc, int accumulate) {
    return -1;
}
#endif

const char *cl_gemm_kernel_name(void) { return pick() ? "avx512" : "blas"; }

void cl_sgemm_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                 size_t ldc, int accumulate) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (size_t i = 0; i < M; i++) memset(C + i * ldc, 0, N * sizeof(float));
        return;
    }
    if (M >= CL_GEMM_MIN_ROWS && pick() && !own_nt(M, N, K, A, lda, B, ldb, C, ldc, accumulate)) return;
    blas_nt(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

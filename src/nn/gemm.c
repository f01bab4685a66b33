/* C = A B^T (gemm.h): one arithmetic, several codes.
 *
 * Every element is the chain c = init; c = fma(A[i][k], B[j][k], c) for
 * k = 0, 1, ..., K-1 (init 0, or the old C[i][j]). A fused multiply-add
 * rounds once and the product is commutative, so every code below that runs
 * this chain gives the same bits; they differ only in which elements they
 * compute side by side:
 *
 * - tiled (M > SKINNY rows): the BLIS scheme with B's rows as the vector
 *   operand. For each block of KC columns of k and NB rows of B, B's block
 *   is packed into panels of NR rows, k-major; then for each MR rows of A,
 *   those rows are packed k-major and multiplied with every panel: an MR x NR
 *   tile of C held in registers (AVX-512: 12 x 32 in 24 zmm; AVX2: 6 x 16 in
 *   12 ymm). The next k block starts its chains from the stored partial
 *   results, so KC changes nothing. Edges are zero-padded in the packed
 *   panels and masked on store.
 * - skinny (M <= SKINNY rows: one prompt, predict, the readout rows): A's
 *   rows are the vector lanes (packed k-major once), B is read where it lies
 *   (each B[j][k] broadcast): no packing of B, which for a few rows costs more
 *   than the products. Groups of NS rows of B give NS independent chains.
 * - portable (no AVX2 + FMA, or CORPUSLENS_GEMM=portable): the chain in C
 *   with fmaf, element by element. */
#include "corpuslens/nn/gemm.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CL_GEMM_X86 1
#endif

#define KC 384      /* columns of k per packed block */
#define NB 448      /* rows of B per packed block (a multiple of every NR) */
#define MR_MAX 12
#define PAR_MIN ((size_t)1 << 22) /* M * N * K from which OpenMP threads share a product */

enum { GEMM_PORTABLE, GEMM_AVX2, GEMM_AVX512 };

static void portable_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
                        float *C, size_t ldc, int accumulate) {
#pragma omp parallel for schedule(static) if (M * N * K > PAR_MIN)
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            const float *a = A + i * lda, *b = B + j * ldb;
            float c = accumulate ? C[i * ldc + j] : 0.0f;
            for (size_t k = 0; k < K; k++) c = fmaf(a[k], b[k], c);
            C[i * ldc + j] = c;
        }
}

#ifdef CL_GEMM_X86

/* B[0 .. nb, 0 .. kc] -> panels of nr_ rows: panel p holds, for each k, the
 * nr_ values B[p*nr_ + j][k] (zero past row nb). */
static void pack_b(float *dst, const float *B, size_t ldb, size_t nb, size_t kc, size_t nr_) {
    for (size_t p = 0; p * nr_ < nb; p++) {
        float *d = dst + p * nr_ * kc;
        size_t rows = nb - p * nr_ < nr_ ? nb - p * nr_ : nr_;
        for (size_t j = 0; j < rows; j++) {
            const float *src = B + (p * nr_ + j) * ldb;
            for (size_t k = 0; k < kc; k++) d[k * nr_ + j] = src[k];
        }
        for (size_t j = rows; j < nr_; j++)
            for (size_t k = 0; k < kc; k++) d[k * nr_ + j] = 0.0f;
    }
}

/* A[0 .. mr, 0 .. kc] -> k-major, w lanes wide (zero past row mr). */
static void pack_a(float *dst, const float *A, size_t lda, size_t mr, size_t kc, size_t w) {
    for (size_t i = 0; i < mr; i++) {
        const float *src = A + i * lda;
        for (size_t k = 0; k < kc; k++) dst[k * w + i] = src[k];
    }
    for (size_t i = mr; i < w; i++)
        for (size_t k = 0; k < kc; k++) dst[k * w + i] = 0.0f;
}

/* ---- AVX-512: 12 x 32 tile; skinny: 16 or 32 lanes x 12 rows of B ---- */

/* C[0..mr, 0..nr] = chain from (acc ? C : 0) over Ap (kc x 12) . Bp (kc x 32) */
__attribute__((target("avx512f"))) static void tile512(size_t kc, const float *Ap, const float *Bp, float *C,
                                                       size_t ldc, size_t mr, size_t nr, int acc) {
    enum { MR = 12, NR = 32 };
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (acc && (size_t)i < mr) {
            c[i][0] = _mm512_maskz_loadu_ps(m0, C + (size_t)i * ldc);
            c[i][1] = _mm512_maskz_loadu_ps(m1, C + (size_t)i * ldc + 16);
        } else c[i][0] = _mm512_setzero_ps(), c[i][1] = _mm512_setzero_ps();
    }
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
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if ((size_t)i >= mr) break;
        float *row = C + (size_t)i * ldc;
        _mm512_mask_storeu_ps(row, m0, c[i][0]);
        _mm512_mask_storeu_ps(row + 16, m1, c[i][1]);
    }
}

/* The chains of C[0..M, j0 .. j0+nj] (nj <= NS, M <= 16 * G) with A packed
 * k-major G*16 lanes wide (At) and B's rows read in place: G * NS zmm
 * accumulators (<= 24), G + NS loads per k. */
__attribute__((target("avx512f"), always_inline)) static inline void skinny512_group(
    const int G, const int NS, size_t M, size_t K, const float *At, const float *B, size_t ldb, float *C, size_t ldc,
    size_t j0, size_t nj, int acc) {
    __m512 c[12][4];
    const float *b[12];
    float t[64] __attribute__((aligned(64)));
    const size_t W = 16 * (size_t)G;
#pragma GCC unroll 12
    for (int jj = 0; jj < NS; jj++) {
        size_t j = j0 + ((size_t)jj < nj ? (size_t)jj : 0); /* past nj: a copy of row j0, dropped */
        b[jj] = B + j * ldb;
        if (acc && (size_t)jj < nj) {
            for (size_t i = 0; i < W; i++) t[i] = i < M ? C[i * ldc + j] : 0.0f;
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) c[jj][g] = _mm512_load_ps(t + 16 * g);
        } else {
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) c[jj][g] = _mm512_setzero_ps();
        }
    }
    for (size_t k = 0; k < K; k++) {
        __m512 a[4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) a[g] = _mm512_load_ps(At + k * W + 16 * g);
#pragma GCC unroll 12
        for (int jj = 0; jj < NS; jj++) {
            __m512 bj = _mm512_set1_ps(b[jj][k]);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) c[jj][g] = _mm512_fmadd_ps(a[g], bj, c[jj][g]);
        }
    }
    for (size_t jj = 0; jj < nj; jj++) {
        for (int g = 0; g < G; g++) _mm512_store_ps(t + 16 * g, c[jj][g]);
        for (size_t i = 0; i < M; i++) C[i * ldc + j0 + jj] = t[i];
    }
}

__attribute__((target("avx512f"))) static void skinny512(size_t M, size_t N, size_t K, const float *At,
                                                         const float *B, size_t ldb, float *C, size_t ldc, int acc) {
    const size_t ns = M <= 32 ? 12 : M <= 48 ? 8 : 6; /* rows of B per group */
    long groups = (long)((N + ns - 1) / ns);
#pragma omp parallel for schedule(static) if (M * N * K > PAR_MIN)
    for (long g = 0; g < groups; g++) {
        size_t j0 = (size_t)g * ns, nj = N - j0 < ns ? N - j0 : ns;
        if (M <= 16) skinny512_group(1, 12, M, K, At, B, ldb, C, ldc, j0, nj, acc);
        else if (M <= 32) skinny512_group(2, 12, M, K, At, B, ldb, C, ldc, j0, nj, acc);
        else if (M <= 48) skinny512_group(3, 8, M, K, At, B, ldb, C, ldc, j0, nj, acc);
        else skinny512_group(4, 6, M, K, At, B, ldb, C, ldc, j0, nj, acc);
    }
}

/* ---- AVX2 + FMA: 6 x 16 tile; skinny: 8 or 16 lanes x 6 rows of B ---- */

__attribute__((target("avx2,fma"))) static void tile256(size_t kc, const float *Ap, const float *Bp, float *C,
                                                        size_t ldc, size_t mr, size_t nr, int acc) {
    enum { MR = 6, NR = 16 };
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lane);
    __m256 c[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (acc && (size_t)i < mr) {
            c[i][0] = _mm256_maskload_ps(C + (size_t)i * ldc, m0);
            c[i][1] = _mm256_maskload_ps(C + (size_t)i * ldc + 8, m1);
        } else c[i][0] = _mm256_setzero_ps(), c[i][1] = _mm256_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(Bp + k * NR), b1 = _mm256_load_ps(Bp + k * NR + 8);
        const float *a = Ap + k * MR;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if ((size_t)i >= mr) break;
        _mm256_maskstore_ps(C + (size_t)i * ldc, m0, c[i][0]);
        _mm256_maskstore_ps(C + (size_t)i * ldc + 8, m1, c[i][1]);
    }
}

__attribute__((target("avx2,fma"), always_inline)) static inline void skinny256_group(
    int G, size_t M, size_t K, const float *At, const float *B, size_t ldb, float *C, size_t ldc, size_t j0,
    size_t nj, int acc) {
    enum { NS = 6 };
    __m256 c[NS][2];
    const float *b[NS];
    float t[16] __attribute__((aligned(32)));
    for (int jj = 0; jj < NS; jj++) {
        size_t j = j0 + ((size_t)jj < nj ? (size_t)jj : 0);
        b[jj] = B + j * ldb;
        if (acc && (size_t)jj < nj) {
            for (size_t i = 0; i < 16; i++) t[i] = i < M ? C[i * ldc + j] : 0.0f;
            c[jj][0] = _mm256_load_ps(t), c[jj][1] = _mm256_load_ps(t + 8);
        } else c[jj][0] = _mm256_setzero_ps(), c[jj][1] = _mm256_setzero_ps();
    }
    if (G == 1) {
        for (size_t k = 0; k < K; k++) {
            __m256 a0 = _mm256_load_ps(At + k * 8);
#pragma GCC unroll 6
            for (int jj = 0; jj < NS; jj++) c[jj][0] = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(b[jj] + k), c[jj][0]);
        }
    } else {
        for (size_t k = 0; k < K; k++) {
            __m256 a0 = _mm256_load_ps(At + k * 16), a1 = _mm256_load_ps(At + k * 16 + 8);
#pragma GCC unroll 6
            for (int jj = 0; jj < NS; jj++) {
                __m256 bj = _mm256_broadcast_ss(b[jj] + k);
                c[jj][0] = _mm256_fmadd_ps(a0, bj, c[jj][0]);
                c[jj][1] = _mm256_fmadd_ps(a1, bj, c[jj][1]);
            }
        }
    }
    for (size_t jj = 0; jj < nj; jj++) {
        _mm256_store_ps(t, c[jj][0]);
        if (G > 1) _mm256_store_ps(t + 8, c[jj][1]);
        for (size_t i = 0; i < M; i++) C[i * ldc + j0 + jj] = t[i];
    }
}

__attribute__((target("avx2,fma"))) static void skinny256(size_t M, size_t N, size_t K, const float *At,
                                                          const float *B, size_t ldb, float *C, size_t ldc, int acc) {
    long groups = (long)((N + 5) / 6);
#pragma omp parallel for schedule(static) if (M * N * K > PAR_MIN)
    for (long g = 0; g < groups; g++) {
        size_t j0 = (size_t)g * 6, nj = N - j0 < 6 ? N - j0 : 6;
        if (M <= 8) skinny256_group(1, M, K, At, B, ldb, C, ldc, j0, nj, acc);
        else skinny256_group(2, M, K, At, B, ldb, C, ldc, j0, nj, acc);
    }
}

/* ---- the drivers ---- */

typedef void (*tile_fn)(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc, size_t mr, size_t nr,
                        int acc);

static _Thread_local float *bbuf; /* NB x KC packed floats of B (~690 KB: stays in L2) */

static int tiled_nt(tile_fn tile, size_t MR, size_t NR, size_t M, size_t N, size_t K, const float *A, size_t lda,
                    const float *B, size_t ldb, float *C, size_t ldc, int accumulate) {
    if (!bbuf && !(bbuf = aligned_alloc(64, (size_t)NB * KC * sizeof(float)))) return -1;
    float *bp = bbuf;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        int acc = accumulate || k0 > 0; /* the chains go on from the stored partial sums */
        for (size_t n0 = 0; n0 < N; n0 += NB) {
            size_t nb = N - n0 < NB ? N - n0 : NB;
            pack_b(bp, B + n0 * ldb + k0, ldb, nb, kc, NR);
            long panels = (long)((M + MR - 1) / MR);
#pragma omp parallel for schedule(static) if (M * nb * kc > PAR_MIN)
            for (long ip = 0; ip < panels; ip++) {
                float ap[MR_MAX * KC] __attribute__((aligned(64)));
                size_t m0 = (size_t)ip * MR, mr = M - m0 < MR ? M - m0 : MR;
                pack_a(ap, A + m0 * lda + k0, lda, mr, kc, MR);
                for (size_t j0 = 0; j0 < nb; j0 += NR) {
                    size_t nr = nb - j0 < NR ? nb - j0 : NR;
                    tile(kc, ap, bp + j0 * kc, C + m0 * ldc + n0 + j0, ldc, mr, nr, acc);
                }
            }
        }
    }
    return 0;
}

static int skinny_nt(int kind, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
                     float *C, size_t ldc, int accumulate) {
    size_t w = kind == GEMM_AVX512 ? (M + 15) / 16 * 16 : (M <= 8 ? 8 : 16);
    float *At = aligned_alloc(64, (K * w * sizeof(float) + 63) / 64 * 64);
    if (!At) return -1;
    pack_a(At, A, lda, M, K, w);
    if (kind == GEMM_AVX512) skinny512(M, N, K, At, B, ldb, C, ldc, accumulate);
    else skinny256(M, N, K, At, B, ldb, C, ldc, accumulate);
    free(At);
    return 0;
}

static int best_kind(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return GEMM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GEMM_AVX2;
    return GEMM_PORTABLE;
}
#else
static int best_kind(void) { return GEMM_PORTABLE; }
#endif

/* The code cl_sgemm_nt runs: the best the CPU has, or a lower one named by
 * CORPUSLENS_GEMM or cl_gemm_use (avx2, portable: for tests; the same bits). */
static int kind = -1;

static int kind_named(const char *name) {
    int best = best_kind();
    if (!strcmp(name, "portable")) return GEMM_PORTABLE;
    if (!strcmp(name, "avx2")) return best >= GEMM_AVX2 ? GEMM_AVX2 : -1;
    if (!strcmp(name, "avx512")) return best >= GEMM_AVX512 ? GEMM_AVX512 : -1;
    return -1;
}

static int pick(void) {
    if (kind < 0) {
        const char *e = getenv("CORPUSLENS_GEMM");
        int k = e ? kind_named(e) : -1;
        kind = k >= 0 ? k : best_kind();
    }
    return kind;
}

int cl_gemm_use(const char *name) {
    int k = name ? kind_named(name) : best_kind();
    if (k < 0) return -1;
    kind = k;
    return 0;
}

const char *cl_gemm_kernel_name(void) {
    int k = pick();
    return k == GEMM_AVX512 ? "avx512" : k == GEMM_AVX2 ? "avx2" : "portable";
}

void cl_sgemm_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                 size_t ldc, int accumulate) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (size_t i = 0; i < M; i++) memset(C + i * ldc, 0, N * sizeof(float));
        return;
    }
#ifdef CL_GEMM_X86
    int kind = pick();
    if (kind == GEMM_AVX512) {
        if (M <= CL_GEMM_SKINNY_AVX512 ? !skinny_nt(kind, M, N, K, A, lda, B, ldb, C, ldc, accumulate)
                                       : !tiled_nt(tile512, 12, 32, M, N, K, A, lda, B, ldb, C, ldc, accumulate))
            return;
    } else if (kind == GEMM_AVX2) {
        if (M <= CL_GEMM_SKINNY_AVX2 ? !skinny_nt(kind, M, N, K, A, lda, B, ldb, C, ldc, accumulate)
                                     : !tiled_nt(tile256, 6, 16, M, N, K, A, lda, B, ldb, C, ldc, accumulate))
            return;
    }
#endif
    /* no vector unit, or no memory for a packing buffer: the same chains */
    portable_nt(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/* IEEE binary16 -> float, exactly (every half is a float). */
static float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, u;
    if (e == 0x1F) u = s | 0x7F800000u | (m << 13); /* inf, nan */
    else if (e) u = s | ((e + 112u) << 23) | (m << 13);
    else if (!m) u = s;
    else { /* subnormal: m * 2^-24 */
        float f = ldexpf((float)m, -24);
        memcpy(&u, &f, sizeof u);
        u |= s;
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#define F16_ROWS 64 /* rows of B widened at a time */

#ifdef CL_GEMM_X86
__attribute__((target("avx,f16c"))) static void widen_f16c(float *dst, const uint16_t *src, size_t n) {
    size_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
    for (; k < n; k++) dst[k] = half_to_float(src[k]);
}
#endif

static void widen(float *dst, const uint16_t *src, size_t n) {
#ifdef CL_GEMM_X86
    static int f16c = -1;
    if (f16c < 0) {
        __builtin_cpu_init();
        f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    if (f16c) {
        widen_f16c(dst, src, n);
        return;
    }
#endif
    for (size_t k = 0; k < n; k++) dst[k] = half_to_float(src[k]);
}

void cl_sgemm_nt_f16(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint16_t *B, size_t ldb,
                     float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    size_t rows = N < F16_ROWS ? N : F16_ROWS;
    float *w = malloc((rows * K > 0 ? rows * K : 1) * sizeof(float));
    if (!w) { /* the same chains, element by element */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) {
                float c = 0.0f;
                for (size_t k = 0; k < K; k++) c = fmaf(A[i * lda + k], half_to_float(B[j * ldb + k]), c);
                C[i * ldc + j] = c;
            }
        return;
    }
    for (size_t j0 = 0; j0 < N; j0 += F16_ROWS) {
        size_t nj = N - j0 < F16_ROWS ? N - j0 : F16_ROWS;
        for (size_t j = 0; j < nj; j++) widen(w + j * K, B + (j0 + j) * ldb, K);
        cl_sgemm_nt(M, nj, K, A, lda, w, K, C + j0, ldc, 0);
    }
    free(w);
}

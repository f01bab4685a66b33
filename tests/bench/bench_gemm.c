/* cl_sgemm_nt (nn/gemm.h) beside cblas_sgemm on the shapes of the scan: the
 * trie forward's qkv, proj and MLP products, and the similarity search. The
 * two alternate, one call each per round, so a change in machine load hits
 * both alike; each figure is the best round. Both results are compared (max
 * |difference| relative to the largest |value|). A benchmark, not a test.
 * usage: bench_gemm [--rounds N] [--shape MxNxK ...]   (OPENBLAS_NUM_THREADS=1,
 * OMP_NUM_THREADS=1 for one core) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/clock.h"
#include "corpuslens/nn/gemm.h"

int main(int argc, char **argv) {
    size_t shapes[16][3] = {{7680, 1152, 384}, {7680, 384, 384}, {2048, 1536, 384}, {2048, 384, 1536}, {1024, 2048, 384}};
    int ns = 5, rounds = 5, given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && given < 16) {
            if (sscanf(argv[++i], "%zux%zux%zu", &shapes[given][0], &shapes[given][1], &shapes[given][2]) != 3) {
                fprintf(stderr, "bench_gemm: --shape wants MxNxK, got '%s'\n", argv[i]);
                return 2;
            }
            ns = ++given;
        } else {
            fprintf(stderr, "usage: bench_gemm [--rounds N] [--shape MxNxK ...]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    printf("cl_sgemm_nt kernel: %s\n", cl_gemm_kernel_name());
    for (int s = 0; s < ns; s++) {
        size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(M * K * sizeof(float)), *B = malloc(N * K * sizeof(float));
        float *C0 = malloc(M * N * sizeof(float)), *C1 = malloc(M * N * sizeof(float));
        if (!A || !B || !C0 || !C1) {
            fprintf(stderr, "bench_gemm: out of memory for %zux%zux%zu\n", M, N, K);
            return 1;
        }
        for (size_t i = 0; i < M * K; i++) A[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < N * K; i++) B[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        double best[2] = {INFINITY, INFINITY};
        for (int r = 0; r < rounds; r++) {
            double t = cl_wall_seconds();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, (blasint)N, (blasint)K, 1.0f, A,
                        (blasint)K, B, (blasint)K, 0.0f, C0, (blasint)N);
            t = cl_wall_seconds() - t;
            if (t < best[0]) best[0] = t;
            t = cl_wall_seconds();
            cl_sgemm_nt(M, N, K, A, K, B, K, C1, N, 0);
            t = cl_wall_seconds() - t;
            if (t < best[1]) best[1] = t;
        }
        double d = 0, mx = 0;
        for (size_t i = 0; i < M * N; i++) {
            double e = fabs((double)C0[i] - C1[i]);
            if (!(e <= d)) d = e; /* a NaN sticks */
            if (fabs(C0[i]) > mx) mx = fabs(C0[i]);
        }
        double fl = 2.0 * M * N * K / 1e9;
        printf("%zux%zux%zu: OpenBLAS %.1f GFLOPS, cl_sgemm_nt %.1f GFLOPS: %.2fx; max |diff| %.2g of max |C| %.3g\n",
               M, N, K, fl / best[0], fl / best[1], best[0] / best[1], d, mx);
        free(A), free(B), free(C0), free(C1);
    }
    return 0;
}

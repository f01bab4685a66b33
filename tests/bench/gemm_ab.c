/* cl_sgemm_nt of another revision (old_sgemm_nt) beside this one's, in one
 * process: each shape alternates the two, repeated to ~0.2 GFLOP per timing,
 * and keeps the best thread CPU time of R rounds (on a loaded machine the
 * wall time of bench_gemm mostly measures the other processes). Built and run
 * by gemm_ab.sh; a benchmark, not a test. usage: gemm_ab R MxNxK ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
void old_sgemm_nt(size_t, size_t, size_t, const float *, size_t, const float *, size_t, float *, size_t, int);
void cl_sgemm_nt(size_t, size_t, size_t, const float *, size_t, const float *, size_t, float *, size_t, int);
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    int R = atoi(argv[1]);
    for (int s = 2; s < argc; s++) {
        size_t M, N, K; sscanf(argv[s], "%zux%zux%zu", &M, &N, &K);
        float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C = malloc(M * N * 4);
        for (size_t i = 0; i < M * K; i++) A[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < N * K; i++) B[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        double best[2] = {1e30, 1e30};
        int reps = (int)(2e8 / (2.0 * M * N * K)) + 1;
        for (int r = 0; r < R; r++)
            for (int w = 0; w < 2; w++) {
                double t = cpu();
                for (int q = 0; q < reps; q++)
                    (w ? cl_sgemm_nt : old_sgemm_nt)(M, N, K, A, K, B, K, C, N, 0);
                t = (cpu() - t) / reps;
                if (t < best[w]) best[w] = t;
            }
        double fl = 2.0 * M * N * K / 1e9;
        printf("%-16s old %7.1f  new %7.1f GFLOPS (CPU time)  new/old %.3f\n", argv[s], fl / best[0], fl / best[1], best[0] / best[1]);
        free(A), free(B), free(C);
    }
}

/* Training-step throughput of the C trainer, and the machine's sgemm, in one
 * process (the C side of tests/bench/train_bench.sh).
 *
 *   bench_train [--config k=v,...] [--B 32] [--T 64] [--steps 6] [--warmup 2]
 *               [--dropout 0.2] [--seed 1]
 *
 * A model of the given config (lecture defaults: 6x384, 6 heads, vocab 65) is
 * initialised at random; windows are uniform random token ids (seeded). Each
 * step is cl_train_forward_backward + cl_train_adamw_step on B rows of T
 * positions (one rank), as `corpuslens train` does it; `warmup` steps are not
 * timed (thread start, first touch of the activations). Then an sgemm of the
 * feed-forward shape (M = B*T, N = 4C, K = C, C = A B^T) is timed with
 * OpenBLAS's own threads: the best a matmul of this size gets here.
 *
 * Prints `key value` lines (parsed by train_bench.sh):
 *   step_s_median, step_s_best, tokens_per_s (median step), train_gflop,
 *   train_gflops (median step), sgemm_shape, sgemm_gflops (best of 5)
 * FLOPs of a step: 3 x cl_forward_flops (the backward pass counted as twice
 * the forward; causal attention counts only the unmasked half), AdamW not
 * counted. Threads: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (the script sets 2).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/model/model.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/train/train.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_train: %s needs an integer in [%ld, %ld]\n", opt, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    long B = 32, T = 64, steps = 6, warmup = 2, seed = 1;
    double p = 0.2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 0;
        if (!strcmp(a, "--config") && v) spec = v, ok = 1;
        else if (!strcmp(a, "--B")) ok = !parse_long(a, v, 1, 1 << 16, &B);
        else if (!strcmp(a, "--T")) ok = !parse_long(a, v, 1, 1 << 16, &T);
        else if (!strcmp(a, "--steps")) ok = !parse_long(a, v, 1, 100000, &steps);
        else if (!strcmp(a, "--warmup")) ok = !parse_long(a, v, 0, 100000, &warmup);
        else if (!strcmp(a, "--seed")) ok = !parse_long(a, v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--dropout") && v) {
            char *end;
            p = strtod(v, &end);
            ok = *v && !*end && p >= 0.0 && p < 1.0;
        }
        if (!ok) {
            fprintf(stderr, "usage: bench_train [--config k=v,...] [--B N] [--T N] [--steps N] [--warmup N] "
                            "[--dropout P] [--seed S]\n");
            return 2;
        }
        i++;
    }
    cl_config c = cl_config_lecture();
    if (spec && cl_config_parse(&c, spec)) {
        fprintf(stderr, "bench_train: %s\n", cl_last_error());
        return 2;
    }
    if (T > c.block_size) c.block_size = (int)T;
    cl_model *m = cl_model_create(&c);
    if (!m) {
        fprintf(stderr, "bench_train: %s\n", cl_last_error());
        return 1;
    }
    cl_model_init_random(m, (uint64_t)seed);
    cl_trainer *tr = cl_trainer_create(m, (int)B, (int)T);
    size_t nw = (size_t)B * (size_t)(T + 1);
    int32_t *win = malloc(nw * sizeof *win);
    double *dts = malloc((size_t)steps * sizeof *dts);
    if (!tr || !win || !dts) {
        fprintf(stderr, "bench_train: %s\n", cl_last_error()[0] ? cl_last_error() : "out of memory");
        return 1;
    }
    cl_rng r;
    cl_rng_seed(&r, (uint64_t)seed + 1000);
    cl_adamw hp = cl_adamw_defaults();
    for (long s = 0; s < warmup + steps; s++) {
        for (size_t i = 0; i < nw; i++) win[i] = (int32_t)cl_rng_below(&r, (uint64_t)c.vocab_size);
        double loss, t0 = now();
        if (cl_train_forward_backward(tr, win, (int)B, 0, (size_t)B, (float)p, (uint64_t)seed, s + 1, &loss)) {
            fprintf(stderr, "bench_train: %s\n", cl_last_error());
            return 1;
        }
        cl_train_adamw_step(tr, &hp, s + 1);
        double dt = now() - t0;
        if (s >= warmup) dts[s - warmup] = dt;
    }
    qsort(dts, (size_t)steps, sizeof *dts, cmp_double);
    double med = steps % 2 ? dts[steps / 2] : 0.5 * (dts[steps / 2 - 1] + dts[steps / 2]);
    double flop = 3.0 * cl_forward_flops(&c, (int)B, (int)T);
    printf("model %dx%d heads %d vocab %d\n", c.n_layer, c.n_embd, c.n_head, c.vocab_size);
    printf("batch %ld %ld\n", B, T);
    printf("step_s_median %.6f\n", med);
    printf("step_s_best %.6f\n", dts[0]);
    printf("tokens_per_s %.1f\n", (double)B * T / med);
    printf("train_gflop %.3f\n", flop * 1e-9);
    printf("train_gflops %.2f\n", flop * 1e-9 / med);

    /* the sgemm of the feed-forward shape, OpenBLAS threads as configured */
    int M = (int)(B * T), N = 4 * c.n_embd, K = c.n_embd;
    float *A = malloc((size_t)M * K * sizeof(float)), *Bm = malloc((size_t)N * K * sizeof(float)),
          *Cm = malloc((size_t)M * N * sizeof(float));
    if (!A || !Bm || !Cm) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)cl_rng_uniform(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) Bm[i] = (float)cl_rng_uniform(&r) - 0.5f;
    double best = 1e300;
    for (int k = 0; k < 6; k++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, Bm, K, 0.0f, Cm, N);
        double dt = now() - t0;
        if (k > 0 && dt < best) best = dt;
    }
    printf("sgemm_shape %d %d %d\n", M, N, K);
    printf("sgemm_gflops %.2f\n", 2.0 * M * N * K * 1e-9 / best);
    free(A);
    free(Bm);
    free(Cm);
    free(win);
    free(dts);
    cl_trainer_free(tr);
    cl_model_free(m);
    return 0;
}

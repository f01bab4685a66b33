/* Forward throughput of the C model, and the machine's sgemm, in one process.
 *
 *   bench_forward [--model M.h5 | --config k=v,...] [--B 4096] [--T 10] [--reps 3]
 *                 [--seed 1] [--sgemm M,N,K] [--tokens-out F] [--logits-out F]
 *
 * Without --model a model of the given config (lecture defaults, vocab 65) is
 * initialised at random (normal(0, 0.02)). Tokens are uniform random ids
 * (seeded). Each repetition runs cl_forward_run on [B, T] with CL_LOGITS_LAST
 * (no hooks); the best repetition counts, after one untimed warm-up forward
 * of at most 64 rows (thread start, first touch of the workspace).
 * Then an sgemm C[M,N] = A[M,K] B[N,K]^T (the shape of the feed-forward matmul
 * at B*T rows by default: M = B*T, N = 4C, K = C) is timed the same way.
 *
 * Prints `key value` lines (parsed by forward_bench.sh):
 *   positions, forward_s, forward_tokens_per_s, forward_gflop, forward_gflops,
 *   sgemm_shape, sgemm_s, sgemm_gflops
 * --tokens-out writes the tokens (int32 [B, T], little-endian raw) and
 * --logits-out the last-position logits (float32 [B, V] raw) so that another
 * implementation can run on the same inputs and be checked against them.
 *
 * FLOPs: cl_forward_flops() counts the logits of all B*T positions; with
 * CL_LOGITS_LAST only B rows are computed, so 2*(B*T - B)*C*V is subtracted.
 * Threads: OpenBLAS reads OPENBLAS_NUM_THREADS (the script sets 2).
 */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/base/rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_forward: %s needs an integer in [%ld, %ld]\n", opt, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int write_raw(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f)) {
        fprintf(stderr, "bench_forward: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_forward [--model M.h5 | --config k=v,...] [--B N] [--T N] [--reps N]\n"
                    "                     [--seed S] [--sgemm M,N,K] [--tokens-out F] [--logits-out F]\n");
}

static int run(int argc, char **argv) {
    const char *model_path = NULL, *spec = NULL, *tokens_out = NULL, *logits_out = NULL;
    long B = 4096, T = 10, reps = 3, seed = 1, sm = 0, sn = 0, sk = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 0;
        if (!strcmp(a, "--model") && v) model_path = v, ok = 1;
        else if (!strcmp(a, "--config") && v) spec = v, ok = 1;
        else if (!strcmp(a, "--tokens-out") && v) tokens_out = v, ok = 1;
        else if (!strcmp(a, "--logits-out") && v) logits_out = v, ok = 1;
        else if (!strcmp(a, "--B")) ok = !parse_int(a, v, 1, 1 << 20, &B);
        else if (!strcmp(a, "--T")) ok = !parse_int(a, v, 1, 1 << 16, &T);
        else if (!strcmp(a, "--reps")) ok = !parse_int(a, v, 1, 1000, &reps);
        else if (!strcmp(a, "--seed")) ok = !parse_int(a, v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--sgemm") && v) {
            if (sscanf(v, "%ld,%ld,%ld", &sm, &sn, &sk) != 3 || sm < 1 || sn < 1 || sk < 1) {
                fprintf(stderr, "bench_forward: --sgemm needs M,N,K (positive)\n");
                return 2;
            }
            ok = 1;
        } else if (!strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!ok) {
            usage();
            return 2;
        }
        i++;
    }
    cl_model *m = NULL;
    if (model_path) {
        m = cl_model_load(model_path);
    } else {
        cl_config c = cl_config_lecture();
        if (spec && cl_config_parse(&c, spec)) {
            fprintf(stderr, "bench_forward: %s\n", cl_last_error());
            return 2;
        }
        m = cl_model_create(&c);
        if (m) cl_model_init_random(m, (uint64_t)seed);
    }
    if (!m) {
        fprintf(stderr, "bench_forward: %s\n", cl_last_error());
        return 1;
    }
    const cl_config *c = &m->cfg;
    if (T > c->block_size) {
        fprintf(stderr, "bench_forward: --T %ld exceeds block_size %d\n", T, c->block_size);
        cl_model_free(m);
        return 2;
    }
    int rc = 1;
    size_t N = (size_t)B * (size_t)T;
    int32_t *tokens = malloc(N * sizeof *tokens);
    float *logits = malloc((size_t)B * c->vocab_size * sizeof *logits);
    float *A = NULL, *Bm = NULL, *Cm = NULL;
    cl_forward *f = cl_forward_create(m, (int)B, (int)T);
    if (!tokens || !logits || !f) {
        fprintf(stderr, "bench_forward: %s\n", cl_last_error()[0] ? cl_last_error() : "out of memory");
        goto out;
    }
    cl_rng r;
    cl_rng_seed(&r, (uint64_t)seed + 1000);
    for (size_t i = 0; i < N; i++) tokens[i] = (int32_t)cl_rng_below(&r, (uint64_t)c->vocab_size);

    /* warm-up (thread start, first touch), then the timed repetitions */
    if (cl_forward_run(f, tokens, B < 64 ? (int)B : 64, (int)T, NULL, 0, CL_LOGITS_LAST, logits)) goto fail;
    double best = 1e300;
    for (long k = 0; k < reps; k++) {
        double t0 = now();
        if (cl_forward_run(f, tokens, (int)B, (int)T, NULL, 0, CL_LOGITS_LAST, logits)) goto fail;
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    double flop = cl_forward_flops(c, (int)B, (int)T) -
                  2.0 * ((double)N - (double)B) * c->n_embd * c->vocab_size;
    printf("model %dx%d heads %d vocab %d block %d\n", c->n_layer, c->n_embd, c->n_head, c->vocab_size,
           c->block_size);
    printf("batch %ld %ld\n", B, T);
    printf("positions %zu\n", N);
    printf("forward_s %.6f\n", best);
    printf("forward_tokens_per_s %.1f\n", (double)N / best);
    printf("forward_gflop %.3f\n", flop * 1e-9);
    printf("forward_gflops %.2f\n", flop * 1e-9 / best);
    fflush(stdout);
    if (tokens_out && write_raw(tokens_out, tokens, N * sizeof *tokens)) goto out;
    if (logits_out && write_raw(logits_out, logits, (size_t)B * c->vocab_size * sizeof *logits)) goto out;

    if (!sm) sm = (long)N, sn = 4L * c->n_embd, sk = c->n_embd;
    A = malloc((size_t)sm * sk * sizeof *A);
    Bm = malloc((size_t)sn * sk * sizeof *Bm);
    Cm = malloc((size_t)sm * sn * sizeof *Cm);
    if (!A || !Bm || !Cm) {
        fprintf(stderr, "bench_forward: out of memory for the sgemm\n");
        goto out;
    }
    for (size_t i = 0; i < (size_t)sm * sk; i++) A[i] = cl_rng_uniform(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)sn * sk; i++) Bm[i] = cl_rng_uniform(&r) - 0.5f;
    /* C[M,N] = A[M,K] @ B[N,K]^T: the layout of matmul_forward */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)sm, (int)sn, (int)sk, 1.0f, A, (int)sk, Bm,
                (int)sk, 0.0f, Cm, (int)sn);
    double sbest = 1e300;
    for (long k = 0; k < reps; k++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)sm, (int)sn, (int)sk, 1.0f, A, (int)sk, Bm,
                    (int)sk, 0.0f, Cm, (int)sn);
        double dt = now() - t0;
        if (dt < sbest) sbest = dt;
    }
    double sflop = 2.0 * (double)sm * (double)sn * (double)sk;
    printf("sgemm_shape %ldx%ldx%ld\n", sm, sn, sk);
    printf("sgemm_s %.6f\n", sbest);
    printf("sgemm_gflops %.2f\n", sflop * 1e-9 / sbest);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_forward: %s\n", cl_last_error());
out:
    free(A);
    free(Bm);
    free(Cm);
    cl_forward_free(f);
    free(tokens);
    free(logits);
    cl_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    /* corpuslens_core links parallel HDF5; initialise MPI as the CLI does. */
    MPI_Init(&argc, &argv);
    cl_h5_quiet();
    int rc = run(argc, argv);
    MPI_Finalize();
    return rc;
}

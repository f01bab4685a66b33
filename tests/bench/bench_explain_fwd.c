/* explain's prompt forward, before and after it went through the trie forward
 * (docs/scan-prompts.md, "Exactness"): the windows of a passage (each of at
 * most L tokens, as cl_passage_explain makes them) and one window, forwarded
 *   plain: cl_forward_run over windows of equal length, batches of 256 (what
 *          explain did), capturing the hook (mlp_out, every block), the
 *          residual after every block and the last logits; lens = ln_f + head
 *          of each block's residual; softmax;
 *   trie:  cl_trie_fwd_run_var over the distinct windows, sorted, pieces of 256
 *          (what explain does now); lens the same; the model = the last lens.
 * Alternated REPS times in one process; prints the CPU seconds (process CPU
 * clock) of each, best and median. A figure generator, not a test.
 * usage: bench_explain_fwd MODEL.h5 TEXT.txt [OFFSET] [CHARS] [L] [REPS]
 * Dimensions: P windows, NL n_layer, C channels, V vocab. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/scan/scan.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    const int32_t *tok;
    size_t len, p;
} ref;

static int cmp_ref(const void *a, const void *b) {
    const ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    for (size_t k = 0; k < n; k++)
        if (x->tok[k] != y->tok[k]) return x->tok[k] < y->tok[k] ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* the old path: equal-length batches of up to 256 through cl_forward_run */
static int plain(const cl_model *m, const int32_t *w, const size_t *off, size_t P, float *lens) {
    const size_t C = m->cfg.n_embd, V = m->cfg.vocab_size, NL = m->cfg.n_layer;
    size_t Tmax = 1;
    for (size_t p = 0; p < P; p++)
        if (off[p + 1] - off[p] > Tmax) Tmax = off[p + 1] - off[p];
    int Bmax = 256;
    float *cap = malloc(NL * Bmax * C * sizeof(float)), *res = malloc(NL * Bmax * C * sizeof(float));
    float *lg = malloc(Bmax * V * sizeof(float)), *logits = malloc(Bmax * V * sizeof(float));
    int32_t *tok = malloc(Bmax * Tmax * sizeof(int32_t));
    cl_forward *f = cl_forward_create(m, Bmax, (int)Tmax);
    int err = !cap || !res || !lg || !logits || !tok || !f;
    for (size_t i0 = 0; !err && i0 < P;) {
        size_t T = off[i0 + 1] - off[i0];
        int B = 1;
        while (i0 + B < P && B < Bmax && off[i0 + B + 1] - off[i0 + B] == T) B++;
        for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, w + off[i0 + b], T * sizeof(int32_t));
        cl_hook hooks[2] = {{.point = CL_HOOK_MLP_OUT, .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = cap},
                            {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = res}};
        if (cl_forward_run(f, tok, B, (int)T, hooks, 2, CL_LOGITS_LAST, logits)) err = 1;
        softmax_forward(logits, (size_t)B, (int)V);
        for (size_t l = 0; !err && l < NL; l++) {
            cl_unembed(m, res + l * B * C, (size_t)B, lg);
            softmax_forward(lg, (size_t)B, (int)V);
            for (int b = 0; b < B; b++) memcpy(lens + ((i0 + b) * NL + l) * V, lg + (size_t)b * V, V * sizeof(float));
        }
        i0 += (size_t)B;
    }
    cl_forward_free(f);
    free(cap), free(res), free(lg), free(logits), free(tok);
    return err ? -1 : 0;
}

/* the new path: explain.c's prompts_forward without MPI */
static int trie(const cl_model *m, const int32_t *w, const size_t *off, size_t P, float *lens) {
    const size_t C = m->cfg.n_embd, V = m->cfg.vocab_size, NL = m->cfg.n_layer;
    size_t Tmax = 1;
    for (size_t p = 0; p < P; p++)
        if (off[p + 1] - off[p] > Tmax) Tmax = off[p + 1] - off[p];
    ref *ord = malloc(P * sizeof *ord);
    size_t *uq = malloc((P + 1) * sizeof *uq), U = 0;
    for (size_t p = 0; p < P; p++) ord[p] = (ref){w + off[p], off[p + 1] - off[p], p};
    qsort(ord, P, sizeof *ord, cmp_ref);
    for (size_t j = 0; j < P; j++)
        if (j == 0 || ord[j].len != ord[j - 1].len || memcmp(ord[j].tok, ord[j - 1].tok, ord[j].len * 4)) uq[U++] = j;
    uq[U] = P;
    size_t Smax = 8192 / Tmax;
    if (Smax > 256) Smax = 256;
    if (Smax > U) Smax = U;
    float *cap = malloc(NL * Smax * C * sizeof(float)), *res = malloc(Smax * NL * C * sizeof(float));
    float *lg = malloc(Smax * NL * V * sizeof(float));
    int32_t *tok = malloc(Smax * Tmax * sizeof(int32_t));
    size_t *so = malloc((Smax + 1) * sizeof *so);
    cl_trie_fwd *tf = cl_trie_fwd_create(m, (int)Tmax, Smax);
    int err = !cap || !res || !lg || !tok || !so || !tf;
    for (size_t u0 = 0; !err && u0 < U; u0 += Smax) {
        size_t ns = U - u0 < Smax ? U - u0 : Smax, o = 0;
        for (size_t k = 0; k < ns; k++) {
            so[k] = o;
            memcpy(tok + o, ord[uq[u0 + k]].tok, ord[uq[u0 + k]].len * 4);
            o += ord[uq[u0 + k]].len;
        }
        so[ns] = o;
        if (cl_trie_fwd_run_var(tf, tok, so, ns, CL_HOOK_MLP_OUT, 0, (int)NL - 1, cap, res, NULL)) err = 1;
        cl_unembed(m, res, ns * NL, lg);
        softmax_forward(lg, ns * NL, (int)V);
        for (size_t k = 0; !err && k < ns; k++)
            for (size_t j = uq[u0 + k]; j < uq[u0 + k + 1]; j++)
                memcpy(lens + ord[j].p * NL * V, lg + k * NL * V, NL * V * sizeof(float));
    }
    cl_trie_fwd_free(tf);
    free(ord), free(uq), free(cap), free(res), free(lg), free(tok), free(so);
    return err ? -1 : 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.h5 TEXT.txt [OFFSET] [CHARS] [L] [REPS]\n", argv[0]);
        return 2;
    }
    long off0 = argc > 3 ? atol(argv[3]) : 500000, nch = argc > 4 ? atol(argv[4]) : 200;
    int L = argc > 5 ? atoi(argv[5]) : 10, reps = argc > 6 ? atoi(argv[6]) : 5;
    cl_model *m = cl_model_map(argv[1]);
    FILE *fp = fopen(argv[2], "rb");
    if (!m || !fp || nch < 1 || L < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_explain_fwd: %s\n", m ? "bad text or arguments" : cl_last_error());
        return 1;
    }
    /* the passage: nch characters (code points) from character off0; ids by the model's vocabulary */
    int32_t *text = malloc(nch * sizeof *text);
    long ci = 0, n = 0;
    int ch;
    while (n < nch && (ch = fgetc(fp)) != EOF) {
        uint32_t cp = (uint32_t)ch;
        int extra = ch >= 0xF0 ? 3 : ch >= 0xE0 ? 2 : ch >= 0xC0 ? 1 : 0;
        if (extra) cp = ch & (0x3F >> extra);
        for (int k = 0; k < extra; k++) cp = (cp << 6) | (fgetc(fp) & 0x3F);
        if (ci++ < off0) continue;
        int id = -1;
        for (int v = 0; v < m->cfg.vocab_size; v++)
            if (m->vocab[v] == cp) id = v;
        if (id < 0) {
            fprintf(stderr, "character U+%04X outside the vocabulary\n", cp);
            return 1;
        }
        text[n++] = id;
    }
    fclose(fp);
    size_t P = (size_t)n, tot = 0;
    size_t *wo = malloc((P + 1) * sizeof *wo);
    int32_t *w = malloc(P * L * sizeof *w);
    for (size_t i = 0; i < P; i++) {
        size_t s = i + 1 > (size_t)L ? i + 1 - L : 0;
        wo[i] = tot;
        memcpy(w + tot, text + s, (i + 1 - s) * sizeof *w);
        tot += i + 1 - s;
    }
    wo[P] = tot;
    const size_t NL = m->cfg.n_layer, V = m->cfg.vocab_size;
    float *la = malloc(P * NL * V * sizeof(float)), *lb = malloc(P * NL * V * sizeof(float));
    double *t[4];
    for (int k = 0; k < 4; k++) t[k] = malloc(reps * sizeof(double));
    size_t one[2] = {0, wo[P] - wo[P - 1]};
    double maxd = 0;
    for (int r = 0; r < reps; r++) {
        double a = cpu_now();
        if (plain(m, w, wo, P, la)) return 1;
        double b = cpu_now();
        if (trie(m, w, wo, P, lb)) return 1;
        double c = cpu_now();
        if (plain(m, w + wo[P - 1], one, 1, la)) return 1;
        double d = cpu_now();
        if (trie(m, w + wo[P - 1], one, 1, lb)) return 1;
        double e = cpu_now();
        t[0][r] = b - a, t[1][r] = c - b, t[2][r] = d - c, t[3][r] = e - d;
    }
    if (plain(m, w, wo, P, la) || trie(m, w, wo, P, lb)) return 1;
    for (size_t k = 0; k < P * NL * V; k++) {
        double dd = la[k] > lb[k] ? la[k] - lb[k] : lb[k] - la[k];
        if (!(dd <= maxd)) maxd = dd;
    }
    const char *names[4] = {"passage, plain forward", "passage, trie forward", "one window, plain", "one window, trie"};
    printf("%zu windows of at most %d tokens (%zu positions), %d rounds alternated, CPU seconds:\n", P, L, tot, reps);
    for (int k = 0; k < 4; k++) {
        qsort(t[k], reps, sizeof(double), cmp_d);
        printf("  %-24s best %.4f  median %.4f\n", names[k], t[k][0], t[k][reps / 2]);
    }
    printf("  trie / plain (medians): passage %.3f, one window %.3f; lens max |plain - trie| %.3g\n",
           t[1][reps / 2] / t[0][reps / 2], t[3][reps / 2] / t[2][reps / 2], maxd);
    return 0;
}

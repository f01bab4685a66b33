/* The prefix-sharing (trie) forward against the plain cl_forward_run on the
 * same strings, for every hook point the scan supports: max |difference|
 * must stay below 1e-4 (float32, different summation orders).
 * usage: scan_trie_check MODEL.h5 CORPUS.h5 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/scan/scan.h"

/* NaN-strict: every |a - b| <= 1e-4 + 1e-5 max|b| (a NaN anywhere fails);
 * *mx and *ref receive max |a - b| and max |b| (NaN when there is one). */
static int agree(const float *a, const float *b, size_t n, double *mx, double *ref) {
    int nan = 0;
    *mx = 0, *ref = 0;
    for (size_t k = 0; k < n; k++) {
        double d = fabs((double)a[k] - b[k]);
        if (d != d || b[k] != b[k]) nan = 1;
        if (d > *mx) *mx = d;
        if (fabs(b[k]) > *ref) *ref = fabs(b[k]);
    }
    if (nan) *mx = NAN;
    return !nan && *mx <= 1e-4 + 1e-5 * *ref;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.h5 CORPUS.h5\n", argv[0]);
        return 2;
    }
    { /* negative control: a NaN fails the comparison */
        float x[3] = {1, 2, 3}, y[3] = {1, 2, 3};
        double mx, ref;
        int pass = agree(x, y, 3, &mx, &ref);
        x[1] = NAN;
        int caught = !agree(x, y, 3, &mx, &ref);
        x[1] = 2, y[2] = NAN;
        caught &= !agree(x, y, 3, &mx, &ref);
        printf("control: equal arrays pass (%s), a NaN on either side fails (%s)\n", pass ? "ok" : "FAIL",
               caught ? "ok" : "FAIL");
        if (!pass || !caught) return 1;
    }
    cl_model *m = cl_model_load(argv[1]);
    cl_corpus *c = m ? cl_corpus_load(argv[2]) : NULL;
    if (!m || !c) {
        fprintf(stderr, "scan_trie_check: %s\n", cl_last_error());
        return 1;
    }
    const int L = c->L, NL = m->cfg.n_layer;
    const size_t C = m->cfg.n_embd, S = c->n < 300 ? c->n : 300;
    int64_t *perm = cl_scan_sort(c);
    int32_t *tok = malloc(S * L * sizeof *tok);
    float *a = malloc((size_t)NL * S * C * sizeof *a), *b = malloc((size_t)NL * S * C * sizeof *b);
    cl_trie_fwd *t = cl_trie_fwd_create(m, L, S);
    cl_forward *f = cl_forward_create(m, (int)S, L);
    if (!perm || !tok || !a || !b || !t || !f) {
        fprintf(stderr, "scan_trie_check: setup failed: %s\n", cl_last_error());
        return 1;
    }
    for (size_t s = 0; s < S; s++) memcpy(tok + s * L, cl_corpus_substring(c, (size_t)perm[s]), L * sizeof *tok);
    for (size_t s = 1; s < S; s++)
        if (memcmp(tok + (s - 1) * L, tok + s * L, L * sizeof *tok) >= 0 &&
            tok[(s - 1) * L] > tok[s * L]) {
            fprintf(stderr, "FAIL: not sorted at %zu\n", s);
            return 1;
        }
    const int points[5] = {CL_HOOK_RESID_PRE, CL_HOOK_ATTN_OUT, CL_HOOK_RESID_MID, CL_HOOK_MLP_OUT, CL_HOOK_RESID_POST};
    const char *names[5] = {"resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"};
    int fails = 0;
    for (int i = 0; i < 5; i++) {
        size_t M = 0;
        cl_hook h = {.point = points[i], .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = b};
        if (cl_trie_fwd_run(t, tok, S, points[i], 0, NL - 1, a, &M) ||
            cl_forward_run(f, tok, (int)S, L, &h, 1, CL_LOGITS_NONE, NULL)) {
            fprintf(stderr, "FAIL: %s\n", cl_last_error());
            return 1;
        }
        double mx = 0, ref = 0;
        int ok = agree(a, b, (size_t)NL * S * C, &mx, &ref);
        fails += !ok;
        printf("%-10s S=%zu nodes=%zu (positions %zu): max |trie - plain| = %.3g (max |plain| %.3g) %s\n", names[i], S,
               M, S * L, mx, ref, ok ? "ok" : "FAIL");
    }
    /* a sub-range of blocks */
    cl_trie_fwd_free(t);
    cl_forward_free(f);
    free(perm), free(tok), free(a), free(b);
    cl_corpus_free(c);
    cl_model_free(m);
    return fails ? 1 : 0;
}

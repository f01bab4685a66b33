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
    /* The scan's prompts take their vectors from the forward of the shard
     * that holds them (scan.c, prompt_vectors) or from a trie of prompts
     * alone: a substring must get the same bits in both. Sampled rows of the
     * sorted shard (with their residuals after every block) against each
     * forwarded alone and within a reversed batch of every 3rd row, for every
     * point and two block ranges; bitwise. */
    {
        size_t ns = 0;
        int32_t sel[64];
        for (size_t s = 0; s < S && ns < 64; s += 7) sel[ns++] = (int32_t)s;
        size_t nr = (S + 2) / 3;
        float *ra = malloc(ns * NL * C * sizeof *ra), *rb = malloc(nr * NL * C * sizeof *rb);
        float *a1 = malloc((size_t)NL * C * sizeof *a1), *r1 = malloc((size_t)NL * C * sizeof *r1);
        float *b3 = malloc((size_t)NL * nr * C * sizeof *b3);
        int32_t *t3 = malloc(nr * L * sizeof *t3), sel3[4096], zero = 0;
        if (!ra || !rb || !a1 || !r1 || !b3 || !t3 || nr > 4096) {
            fprintf(stderr, "scan_trie_check: out of memory\n");
            return 1;
        }
        for (size_t k = 0; k < nr; k++) {
            memcpy(t3 + k * L, tok + (S - 1 - 3 * k) * L, L * sizeof *tok); /* rows S-1, S-4, ...: reversed */
            sel3[k] = (int32_t)k;
        }
        /* negative control: one flipped bit is seen */
        float u = 1.5f, v = 1.5f;
        unsigned char *ub = (unsigned char *)&v;
        ub[0] ^= 1;
        int ctl = memcmp(&u, &v, sizeof u) != 0;
        printf("control: a flipped bit differs (%s)\n", ctl ? "ok" : "FAIL");
        fails += !ctl;
        const int ranges[2][2] = {{0, NL - 1}, {1, 1}};
        for (int i = 0; i < 5; i++)
            for (int g = 0; g < 2; g++) {
                int lo = ranges[g][0], hi = ranges[g][1], nb = hi - lo + 1;
                if (hi >= NL) continue;
                size_t M = 0;
                if (cl_trie_fwd_run_res(t, tok, S, points[i], lo, hi, a, sel, ns, ra, &M) ||
                    cl_trie_fwd_run_res(t, t3, nr, points[i], lo, hi, b3, sel3, nr, rb, NULL) ||
                    cl_trie_fwd_run(t, tok, S, points[i], lo, hi, b, NULL)) {
                    fprintf(stderr, "FAIL: %s\n", cl_last_error());
                    return 1;
                }
                /* the residuals do not change the hooked rows */
                int same = !memcmp(a, b, (size_t)nb * S * C * sizeof *a), bad = 0;
                for (size_t k = 0; k < ns; k++) {
                    size_t s = (size_t)sel[k];
                    if (cl_trie_fwd_run_res(t, tok + s * L, 1, points[i], lo, hi, a1, &zero, 1, r1, NULL)) {
                        fprintf(stderr, "FAIL: %s\n", cl_last_error());
                        return 1;
                    }
                    for (int h = 0; h < nb; h++)
                        bad += memcmp(a1 + (size_t)h * C, a + ((size_t)h * S + s) * C, C * sizeof *a) != 0;
                    bad += memcmp(r1, ra + k * NL * C, (size_t)NL * C * sizeof *r1) != 0;
                    if ((S - 1 - s) % 3 == 0) { /* also in the reversed batch, at k3 */
                        size_t k3 = (S - 1 - s) / 3;
                        for (int h = 0; h < nb; h++)
                            bad += memcmp(b3 + ((size_t)h * nr + k3) * C, a + ((size_t)h * S + s) * C, C * sizeof *a) != 0;
                        bad += memcmp(rb + k3 * NL * C, ra + k * NL * C, (size_t)NL * C * sizeof *rb) != 0;
                    }
                }
                fails += bad || !same;
                printf("%-10s blocks %d..%d: %zu rows alone and in another batch, hooked rows and residuals: %s; "
                       "with the residuals the hooked rows are unchanged: %s\n",
                       names[i], lo, hi, ns, bad ? "FAIL (bits differ)" : "same bits", same ? "ok" : "FAIL");
            }
        /* the residuals against the plain forward's resid_post (a bound, not bits:
           the attention sums run in another order) */
        cl_hook h = {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = b};
        if (cl_forward_run(f, tok, (int)S, L, &h, 1, CL_LOGITS_NONE, NULL)) {
            fprintf(stderr, "FAIL: %s\n", cl_last_error());
            return 1;
        }
        double mx = 0, ref = 0;
        int ok = 1;
        for (size_t k = 0; k < ns; k++) {
            for (int l = 0; l < NL; l++) {
                memcpy(a1 + (size_t)l * C, b + ((size_t)l * S + (size_t)sel[k]) * C, C * sizeof *a1);
                memcpy(r1 + (size_t)l * C, ra + (k * NL + (size_t)l) * C, C * sizeof *r1);
            }
            double m1, r_;
            ok &= agree(r1, a1, (size_t)NL * C, &m1, &r_);
            if (!(m1 <= mx)) mx = m1;
            if (r_ > ref) ref = r_;
        }
        fails += !ok;
        printf("residuals after every block vs plain resid_post: max |difference| %.3g (max |plain| %.3g) %s\n", mx, ref,
               ok ? "ok" : "FAIL");
        free(ra), free(rb), free(a1), free(r1), free(b3), free(t3);
    }
    cl_trie_fwd_free(t);
    cl_forward_free(f);
    free(perm), free(tok), free(a), free(b);
    cl_corpus_free(c);
    cl_model_free(m);
    return fails ? 1 : 0;
}

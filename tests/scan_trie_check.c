/* The prefix-sharing (trie) forward against the plain cl_forward_run on the
 * same strings, for every hook point the scan supports: max |difference|
 * must stay below 1e-4 (float32, different summation orders); a string's
 * bits alone, in a batch, and among strings of other lengths (the
 * variable-length trie forward explain uses) are the same.
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
    /* Strings of mixed lengths (cl_trie_fwd_run_var, what explain forwards its
     * prompts with): prefixes of sampled rows of lengths 1..L, whole rows, a
     * prefix next to the row it begins (an inner node as a string's node) and
     * a duplicate, in sorted and in reversed order, with the model loaded and
     * mapped (explain maps it): each string's hooked rows and residuals have
     * the bits of that string forwarded alone as a substring of its own
     * length (cl_trie_fwd_run_res), for every point and two block ranges. */
    {
        enum { NSTR = 48 };
        size_t off[NSTR + 1], roff[NSTR + 1], ord[NSTR], n = 0;
        int32_t ws[NSTR * 64], rws[NSTR * 64], zero = 0;
        size_t o = 0;
        for (size_t k = 0; k < NSTR - 2 && (size_t)L <= 64; k++) {
            size_t s = (k * 13) % S, len = 1 + k % (size_t)L;
            off[n++] = o;
            memcpy(ws + o, tok + s * L, len * sizeof *ws);
            o += len;
        }
        off[n] = o;
        /* a duplicate of string 5, and row 0 whole (string 0 is its 1-token prefix) */
        size_t l5 = off[6] - off[5];
        memmove(ws + o, ws + off[5], l5 * sizeof *ws), o += l5, off[++n] = o;
        memcpy(ws + o, tok, L * sizeof *ws), o += L, off[++n] = o;
        /* sorted: insertion sort of the string numbers, a prefix before what it begins */
        for (size_t i = 0; i < n; i++) {
            size_t j = i;
            ord[i] = i;
            while (j > 0) {
                size_t x = ord[j - 1], y = ord[j], lx = off[x + 1] - off[x], ly = off[y + 1] - off[y];
                size_t q = lx < ly ? lx : ly, e = 0;
                while (e < q && ws[off[x] + e] == ws[off[y] + e]) e++;
                int gt = e < q ? ws[off[x] + e] > ws[off[y] + e] : lx > ly;
                if (!gt) break;
                ord[j - 1] = y, ord[j] = x, j--;
            }
        }
        cl_model *mm = cl_model_map(argv[1]);
        cl_trie_fwd *tv = cl_trie_fwd_create(m, L, n), *tm = mm ? cl_trie_fwd_create(mm, L, n) : NULL;
        cl_trie_fwd *t1[64] = {0};
        int ok1 = 1;
        for (int len = 1; len <= L && len <= 64; len++) ok1 &= (t1[len - 1] = cl_trie_fwd_create(m, len, 1)) != NULL;
        float *ov = malloc((size_t)NL * n * C * sizeof *ov), *rv = malloc(n * NL * C * sizeof *rv);
        float *om = malloc((size_t)NL * n * C * sizeof *om), *rm = malloc(n * NL * C * sizeof *rm);
        float *a1 = malloc((size_t)NL * C * sizeof *a1), *r1 = malloc((size_t)NL * C * sizeof *r1);
        if (!mm || !tv || !tm || !ok1 || !ov || !rv || !om || !rm || !a1 || !r1) {
            fprintf(stderr, "scan_trie_check: setup of the mixed lengths failed: %s\n", cl_last_error());
            return 1;
        }
        const int ranges[2][2] = {{0, NL - 1}, {1, 1}};
        for (int dir = 0; dir < 2; dir++) {
            /* the strings in this order: sorted (dir 0) or reversed (dir 1); pos[i] = place of string i */
            size_t pos[NSTR + 1], q = 0;
            for (size_t i = 0; i < n; i++) {
                size_t x = dir ? ord[n - 1 - i] : ord[i], len = off[x + 1] - off[x];
                pos[x] = i, roff[i] = q;
                memcpy(rws + q, ws + off[x], len * sizeof *ws);
                q += len;
            }
            roff[n] = q;
            size_t M = 0;
            for (int i = 0; i < 5; i++)
                for (int g = 0; g < 2; g++) {
                    int lo = ranges[g][0], hi = ranges[g][1], nb = hi - lo + 1, bad = 0;
                    if (hi >= NL) continue;
                    if (cl_trie_fwd_run_var(tv, rws, roff, n, points[i], lo, hi, ov, rv, &M) ||
                        cl_trie_fwd_run_var(tm, rws, roff, n, points[i], lo, hi, om, rm, NULL)) {
                        fprintf(stderr, "FAIL: %s\n", cl_last_error());
                        return 1;
                    }
                    int mapped = !memcmp(ov, om, (size_t)nb * n * C * sizeof *ov) &&
                                 !memcmp(rv, rm, n * NL * C * sizeof *rv);
                    for (size_t x = 0; x < n; x++) {
                        size_t len = off[x + 1] - off[x], k = pos[x];
                        if (cl_trie_fwd_run_res(t1[len - 1], ws + off[x], 1, points[i], lo, hi, a1, &zero, 1, r1,
                                                NULL)) {
                            fprintf(stderr, "FAIL: %s\n", cl_last_error());
                            return 1;
                        }
                        for (int h = 0; h < nb; h++)
                            bad += memcmp(a1 + (size_t)h * C, ov + ((size_t)h * n + k) * C, C * sizeof *a1) != 0;
                        bad += memcmp(r1, rv + k * NL * C, (size_t)NL * C * sizeof *r1) != 0;
                    }
                    fails += bad || !mapped;
                    printf("%-10s blocks %d..%d: %zu strings of 1..%d tokens (%s, %zu nodes) against each alone: %s; "
                           "mapped model: %s\n",
                           names[i], lo, hi, n, L, dir ? "reversed" : "sorted", M,
                           bad ? "FAIL (bits differ)" : "same bits", mapped ? "same bits" : "FAIL");
                }
        }
        /* a string longer than the workspace's L is refused */
        size_t boff[2] = {0, (size_t)L + 1};
        int32_t big[65] = {0};
        int refused = L < 64 && cl_trie_fwd_run_var(tv, big, boff, 1, CL_HOOK_MLP_OUT, 0, NL - 1, ov, rv, NULL) != 0;
        printf("a string of L + 1 tokens is refused: %s\n", refused ? "ok" : "FAIL");
        fails += !refused;
        for (int len = 1; len <= L && len <= 64; len++) cl_trie_fwd_free(t1[len - 1]);
        cl_trie_fwd_free(tv), cl_trie_fwd_free(tm);
        cl_model_free(mm);
        free(ov), free(rv), free(om), free(rm), free(a1), free(r1);
    }
    cl_trie_fwd_free(t);
    cl_forward_free(f);
    free(perm), free(tok), free(a), free(b);
    cl_corpus_free(c);
    cl_model_free(m);
    return fails ? 1 : 0;
}

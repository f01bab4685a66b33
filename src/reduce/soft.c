/* The soft kernel from a scan's bins and its fit (include/corpuslens/reduce/soft.h).
 * Dimensions: P prompts, Lb blocks, NB bins, V vocab, n fit prompts, G grid. */
#include "corpuslens/reduce/soft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/h5/h5schema.h"

double cl_soft_bin_error(double width, double T) { return expm1(width / (2 * T)); }

static void kernel_weights(const cl_scan *s, double T, double *kw) {
    for (int k = 0; k < s->NB; k++) kw[k] = exp((s->bin_lower[k] + s->bin_width / 2 - 1.0) / T);
}

/* f[b * NB + k] = w_b exp((m_k - 1) / T_b): the factor of bin k of block b. */
static void soft_factors(const cl_scan *s, const double *T, const double *w, double *f) {
    for (size_t b = 0; b < (size_t)s->Lb; b++) {
        kernel_weights(s, T[b], f + b * (size_t)s->NB);
        for (size_t k = 0; k < (size_t)s->NB; k++) f[b * (size_t)s->NB + k] *= w[b];
    }
}

int cl_soft_reduce(const cl_scan *s, const double *T, const double *w, double *h) {
    size_t Lb = s->Lb, NB = s->NB;
    for (size_t b = 0; b < Lb; b++)
        if (!(T[b] > 0) || !isfinite(T[b]) || !(w[b] >= 0) || !isfinite(w[b]))
            return cl_error("soft kernel of block %zu: temperature %g must be > 0 and weight %g >= 0", b, T[b], w[b]);
    double *f = cl_trymalloc(Lb * NB, sizeof(double), "kernel");
    if (!f) return -1;
    soft_factors(s, T, w, f);
    int rc = cl_sup_hellinger_all(s, NULL, 0, f, h);
    free(f);
    return rc;
}

/* ---- the fit ---- */

/* The fit set on each prompt's count support (as cl_tune's): prompt p's
 * support is cells off[p] .. off[p + 1]; off it every count is 0, so the
 * approximation is 0 there and the model's normalised mass there is rest[p]. */
typedef struct {
    size_t n, Lb, NB;
    size_t *off;   /* [n + 1] */
    int32_t *cnt;  /* prompt p at Lb * NB * off[p]: [Lb, NB, ns] raw bin counts */
    double *sq;    /* [off[n]] sqrt of the normalised model probabilities on the support */
    double *rest;  /* [n] */
    double *A;     /* [Lb, off[n]] block sums at the current T_b */
    double *base;  /* [off[n]] */
    double *kw;    /* [NB] scratch */
} fitset;

static void block_sum(const fitset *t, const cl_scan *s, size_t b, double T, double *out) {
    double *kw = t->kw;
    kernel_weights(s, T, kw);
    size_t NB = t->NB;
    for (size_t p = 0; p < t->n; p++) {
        size_t ns = t->off[p + 1] - t->off[p];
        double *o = out + t->off[p];
        memset(o, 0, ns * sizeof *o);
        for (size_t k = 0; k < NB; k++) {
            const int32_t *ck = t->cnt + t->Lb * NB * t->off[p] + (b * NB + k) * ns;
            for (size_t j = 0; j < ns; j++) o[j] += kw[k] * ck[j];
        }
    }
}

/* mean H of base + wb * Ab (empty = 1) */
static double objective(const fitset *t, const double *Ab, double wb) {
    double tot = 0;
    for (size_t p = 0; p < t->n; p++) {
        size_t ns = t->off[p + 1] - t->off[p];
        const double *ba = t->base + t->off[p], *ab = Ab + t->off[p], *sq = t->sq + t->off[p];
        double sum = 0;
        for (size_t j = 0; j < ns; j++) sum += ba[j] + wb * ab[j];
        if (!(sum > 0)) {
            tot += 1;
            continue;
        }
        double d = t->rest[p];
        for (size_t j = 0; j < ns; j++) {
            double x = sqrt((ba[j] + wb * ab[j]) / sum) - sq[j];
            d += x * x;
        }
        tot += sqrt(d / 2);
    }
    return tot / (double)t->n;
}

static void make_base(fitset *t, const double *w, size_t skip) {
    size_t nv = t->off[t->n];
    memset(t->base, 0, nv * sizeof *t->base);
    for (size_t b = 0; b < t->Lb; b++)
        if (b != skip)
            for (size_t i = 0; i < nv; i++) t->base[i] += w[b] * t->A[b * nv + i];
}

typedef struct {
    const cl_scan *s;
    fitset *t;
    size_t cap; /* support cells allocated */
    cl_sup_scratch x;
} fit_load;

/* Append prompt p (prompt i of the chunk: count rows of c, the model's row i
 * of m) to the fit set (a cl_prompt_fn); caps grow by doubling. 0 or -1. */
static int fit_add(void *ctx, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p) {
    fit_load *L = ctx;
    fitset *t = L->t;
    size_t *cap = &L->cap;
    cl_sup_scratch *x = &L->x;
    const cl_scan *s = L->s;
    size_t RP = t->Lb * t->NB, r = t->n;
    size_t ns = cl_count_support(c, i * RP, RP, x->pos, x->sup), o = t->off[r], need = o + ns;
    int rc = -1;
    if (need > *cap || !t->cnt) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < need) nc *= 2;
        int32_t *cn = realloc(t->cnt, nc * RP * sizeof *cn);
        if (cn) t->cnt = cn;
        double *sq = cn ? realloc(t->sq, nc * sizeof *sq) : NULL;
        if (sq) t->sq = sq;
        if (!cn || !sq) {
            cl_error("out of memory for the soft fit (%zu support cells x %zu blocks x bins; tune --max-train caps it)",
                     nc, RP);
            goto done;
        }
        *cap = nc;
    }
    if (cl_model_on_support(s, m, i, p, x->sup, ns, x->pos, x->msup, t->sq + o, t->rest + r)) goto done;
    int32_t *dst = t->cnt + RP * o;
    memset(dst, 0, RP * ns * sizeof *dst);
    for (size_t q = 0; q < RP; q++)
        for (int64_t e = c->ind[i * RP + q]; e < c->ind[i * RP + q + 1]; e++)
            dst[q * ns + (size_t)x->pos[c->tok[e]]] = c->cnt[e];
    t->off[r + 1] = need;
    t->n = r + 1;
    rc = 0;
done:
    cl_support_clear(x->pos, x->sup, ns);
    return rc;
}

int cl_soft_tune(const cl_scan *s, const cl_tune_opts *o, cl_soft_tune_result *out) {
    memset(out, 0, sizeof *out);
    size_t P = s->P, Lb = s->Lb, NB = s->NB;
    if (!(o->train_fraction > 0 && o->train_fraction < 1))
        return cl_error("train fraction %g is not in (0, 1)", o->train_fraction);
    size_t n_train = (size_t)llround(o->train_fraction * (double)P);
    if (n_train == 0 || n_train >= P)
        return cl_error("train fraction %g of %zu prompts leaves an empty train or held-out split", o->train_fraction, P);
    size_t cap = o->max_train ? o->max_train : 2000, n_fit = n_train < cap ? n_train : cap;
    /* the split of cl_tune (same seed, same permutation) */
    size_t *perm = cl_trymalloc(P, sizeof *perm, "split");
    uint8_t *mask = cl_trycalloc(P, 1, "split");
    fitset t = {.Lb = Lb, .NB = NB};
    fit_load L = {.s = s, .t = &t};
    double *Ab = NULL, *hs = NULL, *hp = NULL, *fs = NULL, *fp = NULL;
    int rc = -1;
    t.off = cl_trycalloc(n_fit + 1, sizeof *t.off, "fit offsets");
    t.rest = cl_trymalloc(n_fit ? n_fit : 1, sizeof *t.rest, "fit probabilities");
    t.kw = cl_trymalloc(NB, sizeof(double), "kernel");
    size_t n_test = P - n_train;
    hs = cl_trymalloc(P, sizeof(double), "held-out H");
    hp = cl_trymalloc(P, sizeof(double), "held-out H");
    fs = cl_trymalloc(Lb * NB, sizeof(double), "kernel");
    fp = cl_trymalloc(Lb * NB, sizeof(double), "kernel");
    if (!perm || !mask || !t.off || !t.rest || !t.kw || !hs || !hp || !fs || !fp ||
        cl_sup_scratch_init(&L.x, (size_t)s->V))
        goto done;
    cl_rng rng;
    cl_rng_seed(&rng, o->seed);
    cl_tune_split(&rng, P, n_fit, n_train, perm, mask);
    if (cl_scan_each_prompt(s, mask, 1, fit_add, &L)) goto done;
    cl_sup_scratch_free(&L.x);
    size_t nv = t.off[t.n];
    t.A = cl_trymalloc(Lb * (nv ? nv : 1), sizeof(double), "block sums");
    t.base = cl_trymalloc(nv ? nv : 1, sizeof(double), "block sums");
    Ab = cl_trymalloc(nv ? nv : 1, sizeof(double), "block sums");
    if (!t.A || !t.base || !Ab) goto done;
    static const double grid[] = {0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1};
    static const double ladder[] = {0, 1e-4, 1e-3, 1e-2, 0.1, 0.25, 0.5, 0.8, 1.25, 2, 4, 10, 100, 1e3, 1e4};
    const size_t G = sizeof grid / sizeof *grid, NLd = sizeof ladder / sizeof *ladder;
    double T[64], w[64];
    static const double paper_w[6] = CL_PAPER_WEIGHTS;
    for (size_t b = 0; b < Lb; b++) T[b] = 0.05, w[b] = Lb == 6 ? paper_w[b] : 1.0;
    for (size_t b = 0; b < Lb; b++) block_sum(&t, s, b, T[b], t.A + b * nv);
    make_base(&t, w, Lb);
    double best = objective(&t, t.A, 0);
    int sweeps = 0;
    for (; sweeps < 12; sweeps++) {
        double start = best;
        for (size_t b = 0; b < Lb; b++) {
            make_base(&t, w, b);
            double bt = T[b];
            for (size_t g = 0; g < G; g++) {
                block_sum(&t, s, b, grid[g], Ab);
                double v = objective(&t, Ab, w[b]);
                if (v < best - 1e-12) best = v, bt = grid[g];
            }
            T[b] = bt;
            block_sum(&t, s, b, T[b], t.A + b * nv);
            double bw = w[b], w0 = w[b] > 0 ? w[b] : 1.0;
            for (size_t l = 0; l < NLd; l++) {
                double v = objective(&t, t.A + b * nv, w0 * ladder[l]);
                if (v < best - 1e-12) best = v, bw = w0 * ladder[l];
            }
            w[b] = bw;
        }
        if (start - best < 1e-6) {
            sweeps++;
            break;
        }
    }
    double mx = 0;
    for (size_t b = 0; b < Lb; b++) mx = w[b] > mx ? w[b] : mx;
    for (size_t b = 0; b < Lb; b++) out->T[b] = T[b], out->w[b] = mx > 0 ? w[b] / mx : w[b];
    out->fit_objective = best;
    out->sweeps = sweeps;
    out->n_fit = n_fit;
    out->n_test = n_test;
    /* held-out split: the fitted soft kernel and the paper's thresholds (from the bins, exact on the grid) */
    soft_factors(s, out->T, out->w, fs);
    static const double paper_t[6] = CL_PAPER_THRESHOLDS;
    int kb[6] = {0};
    out->have_paper = Lb == 6;
    for (size_t b = 0; out->have_paper && b < 6; b++) {
        kb[b] = -1;
        for (size_t k = 0; k < NB; k++)
            if (fabs(s->bin_lower[k] - paper_t[b]) <= CL_GRID_TOL) kb[b] = (int)k;
        if (kb[b] < 0) out->have_paper = 0;
    }
    for (size_t b = 0; out->have_paper && b < 6; b++)
        for (size_t k = 0; k < NB; k++) fp[b * NB + k] = k >= (size_t)kb[b] ? paper_w[b] : 0;
    /* H of the held-out prompts (mask 0), gathered in prompt order */
    if (cl_sup_hellinger_all(s, mask, 0, fs, hs) || (out->have_paper && cl_sup_hellinger_all(s, mask, 0, fp, hp)))
        goto done;
    size_t nh = 0;
    for (size_t p = 0; p < P; p++)
        if (mask[p] == 0) {
            hs[nh] = hs[p];
            if (out->have_paper) hp[nh] = hp[p];
            nh++;
        }
    if (cl_stats_compute(hs, nh, &out->test_soft) || (out->have_paper && cl_stats_compute(hp, nh, &out->test_paper)))
        goto done;
    rc = 0;
done:
    cl_sup_scratch_free(&L.x);
    free(perm), free(mask), free(t.off), free(t.cnt), free(t.sq), free(t.rest), free(t.A), free(t.base), free(t.kw),
        free(Ab), free(hs), free(hp), free(fs), free(fp);
    return rc;
}

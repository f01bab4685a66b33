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

int cl_soft_reduce(const cl_scan *s, const double *T, const double *w, double *h) {
    size_t P = s->P, Lb = s->Lb, NB = s->NB, V = s->V, PB = cl_scan_block_prompts(s);
    for (size_t b = 0; b < Lb; b++)
        if (!(T[b] > 0) || !isfinite(T[b]) || !(w[b] >= 0) || !isfinite(w[b]))
            return cl_error("soft kernel of block %zu: temperature %g must be > 0 and weight %g >= 0", b, T[b], w[b]);
    int32_t *c = cl_trymalloc(PB * Lb * NB * V, sizeof(int32_t), "count block");
    float *q = cl_trymalloc(PB * V, sizeof(float), "model block");
    double *kw = cl_trymalloc(Lb * NB, sizeof(double), "kernel"), *a = cl_trymalloc(V, sizeof(double), "approx");
    int rc = -1;
    if (!c || !q || !kw || !a) goto done;
    for (size_t b = 0; b < Lb; b++) kernel_weights(s, T[b], kw + b * NB);
    for (size_t p0 = 0; p0 < P; p0 += PB) {
        size_t n = P - p0 < PB ? P - p0 : PB;
        if (cl_scan_read_block(s, p0, n, c, q)) goto done;
        for (size_t i = 0; i < n; i++) {
            memset(a, 0, V * sizeof *a);
            for (size_t b = 0; b < Lb; b++)
                for (size_t k = 0; k < NB; k++) {
                    const int32_t *ck = c + ((i * Lb + b) * NB + k) * V;
                    double f = w[b] * kw[b * NB + k];
                    for (size_t v = 0; v < V; v++) a[v] += f * ck[v];
                }
            h[p0 + i] = cl_hellinger_df(a, q + i * V, V);
        }
    }
    rc = 0;
done:
    free(c), free(q), free(kw), free(a);
    return rc;
}

/* ---- the fit ---- */

typedef struct {
    size_t n, Lb, NB, V;
    int32_t *cnt;  /* [n, Lb, NB, V] raw bin counts */
    double *sq;    /* [n, V] sqrt of the normalised model probabilities */
    double *A;     /* [Lb, n, V] block sums at the current T_b */
    double *base;  /* [n, V] */
    double *kw;    /* [NB] scratch */
} fitset;

static void block_sum(const fitset *t, const cl_scan *s, size_t b, double T, double *out) {
    double *kw = t->kw;
    kernel_weights(s, T, kw);
    size_t V = t->V, NB = t->NB;
    for (size_t p = 0; p < t->n; p++) {
        double *o = out + p * V;
        memset(o, 0, V * sizeof *o);
        for (size_t k = 0; k < NB; k++) {
            const int32_t *ck = t->cnt + ((p * t->Lb + b) * NB + k) * V;
            for (size_t v = 0; v < V; v++) o[v] += kw[k] * ck[v];
        }
    }
}

/* mean H of base + wb * Ab (empty = 1) */
static double objective(const fitset *t, const double *Ab, double wb) {
    size_t V = t->V;
    double tot = 0;
    for (size_t p = 0; p < t->n; p++) {
        const double *ba = t->base + p * V, *ab = Ab + p * V, *sq = t->sq + p * V;
        double sum = 0;
        for (size_t v = 0; v < V; v++) sum += ba[v] + wb * ab[v];
        if (!(sum > 0)) {
            tot += 1;
            continue;
        }
        double d = 0;
        for (size_t v = 0; v < V; v++) {
            double x = sqrt((ba[v] + wb * ab[v]) / sum) - sq[v];
            d += x * x;
        }
        tot += sqrt(d / 2);
    }
    return tot / (double)t->n;
}

static void make_base(fitset *t, const double *w, size_t skip) {
    size_t nv = t->n * t->V;
    memset(t->base, 0, nv * sizeof *t->base);
    for (size_t b = 0; b < t->Lb; b++)
        if (b != skip)
            for (size_t i = 0; i < nv; i++) t->base[i] += w[b] * t->A[b * nv + i];
}

int cl_soft_tune(const cl_scan *s, const cl_tune_opts *o, cl_soft_tune_result *out) {
    memset(out, 0, sizeof *out);
    size_t P = s->P, Lb = s->Lb, NB = s->NB, V = s->V;
    if (!(o->train_fraction > 0 && o->train_fraction < 1))
        return cl_error("train fraction %g is not in (0, 1)", o->train_fraction);
    size_t n_train = (size_t)llround(o->train_fraction * (double)P);
    if (n_train == 0 || n_train >= P)
        return cl_error("train fraction %g of %zu prompts leaves an empty train or held-out split", o->train_fraction, P);
    size_t cap = o->max_train ? o->max_train : 2000, n_fit = n_train < cap ? n_train : cap;
    /* the split of cl_tune (same seed, same permutation) */
    size_t *perm = cl_trymalloc(P, sizeof *perm, "split");
    uint8_t *mask = cl_trycalloc(P, 1, "split");
    fitset t = {.n = n_fit, .Lb = Lb, .NB = NB, .V = V};
    size_t PB = cl_scan_block_prompts(s);
    int32_t *c = cl_trymalloc(PB * Lb * NB * V, sizeof(int32_t), "count block");
    float *q = cl_trymalloc(PB * V, sizeof(float), "model block");
    double *Ab = NULL, *hs = NULL, *hp = NULL, *a = NULL;
    int rc = -1;
    t.cnt = cl_trymalloc(n_fit * Lb * NB, V * sizeof(int32_t), "fit tensor (tune --max-train)");
    t.sq = cl_trymalloc(n_fit * V, sizeof(double), "fit probabilities");
    t.A = cl_trymalloc(Lb * n_fit * V, sizeof(double), "block sums");
    t.base = cl_trymalloc(n_fit * V, sizeof(double), "block sums");
    Ab = cl_trymalloc(n_fit * V, sizeof(double), "block sums");
    t.kw = cl_trymalloc(NB, sizeof(double), "kernel");
    size_t n_test = P - n_train;
    hs = cl_trymalloc(n_test ? n_test : 1, sizeof(double), "held-out H");
    hp = cl_trymalloc(n_test ? n_test : 1, sizeof(double), "held-out H");
    a = cl_trymalloc(V, sizeof(double), "approx");
    if (!perm || !mask || !c || !q || !t.kw || !t.cnt || !t.sq || !t.A || !t.base || !Ab || !hs || !hp || !a) goto done;
    cl_rng rng;
    cl_rng_seed(&rng, o->seed);
    cl_tune_split(&rng, P, n_fit, n_train, perm, mask);
    size_t r = 0;
    for (size_t p0 = 0; p0 < P; p0 += PB) {
        size_t n = P - p0 < PB ? P - p0 : PB;
        if (cl_scan_read_block(s, p0, n, c, q)) goto done;
        for (size_t i = 0; i < n; i++) {
            if (mask[p0 + i] != 1) continue;
            memcpy(t.cnt + r * Lb * NB * V, c + i * Lb * NB * V, Lb * NB * V * sizeof(int32_t));
            cl_sqrt_probs(q + i * V, V, t.sq + r * V);
            r++;
        }
    }
    static const double grid[] = {0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1};
    static const double ladder[] = {0, 1e-4, 1e-3, 1e-2, 0.1, 0.25, 0.5, 0.8, 1.25, 2, 4, 10, 100, 1e3, 1e4};
    const size_t G = sizeof grid / sizeof *grid, NLd = sizeof ladder / sizeof *ladder;
    double T[64], w[64];
    static const double paper_w[6] = CL_PAPER_WEIGHTS;
    for (size_t b = 0; b < Lb; b++) T[b] = 0.05, w[b] = Lb == 6 ? paper_w[b] : 1.0;
    size_t nv = n_fit * V;
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
    double *kws = cl_trymalloc(Lb * NB, sizeof(double), "kernel");
    if (!kws) goto done;
    for (size_t b = 0; b < Lb; b++) kernel_weights(s, out->T[b], kws + b * NB);
    static const double paper_t[6] = CL_PAPER_THRESHOLDS;
    int kb[6] = {0};
    out->have_paper = Lb == 6;
    for (size_t b = 0; out->have_paper && b < 6; b++) {
        kb[b] = -1;
        for (size_t k = 0; k < NB; k++)
            if (fabs(s->bin_lower[k] - paper_t[b]) <= CL_GRID_TOL) kb[b] = (int)k;
        if (kb[b] < 0) out->have_paper = 0;
    }
    size_t m = 0;
    for (size_t p0 = 0; p0 < P; p0 += PB) {
        size_t n = P - p0 < PB ? P - p0 : PB;
        if (cl_scan_read_block(s, p0, n, c, q)) {
            free(kws);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            if (mask[p0 + i] != 0) continue;
            memset(a, 0, V * sizeof *a);
            for (size_t b = 0; b < Lb; b++)
                for (size_t k = 0; k < NB; k++) {
                    double f = out->w[b] * kws[b * NB + k];
                    for (size_t v = 0; v < V; v++) a[v] += f * c[((i * Lb + b) * NB + k) * V + v];
                }
            hs[m] = cl_hellinger_df(a, q + i * V, V);
            if (out->have_paper) {
                memset(a, 0, V * sizeof *a);
                for (size_t b = 0; b < 6; b++)
                    for (size_t k = (size_t)kb[b]; k < NB; k++)
                        for (size_t v = 0; v < V; v++) a[v] += paper_w[b] * c[((i * Lb + b) * NB + k) * V + v];
                hp[m] = cl_hellinger_df(a, q + i * V, V);
            }
            m++;
        }
    }
    free(kws);
    if (cl_stats_compute(hs, m, &out->test_soft) || (out->have_paper && cl_stats_compute(hp, m, &out->test_paper)))
        goto done;
    rc = 0;
done:
    free(perm), free(mask), free(c), free(q), free(t.cnt), free(t.sq), free(t.A), free(t.base), free(t.kw), free(Ab), free(hs),
        free(hp), free(a);
    return rc;
}

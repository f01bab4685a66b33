/* Hellinger distance and summary statistics (see base/stats.h). */
#include <math.h>
#include <stdlib.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"

static double pos(double x) { return x > 0 && isfinite(x) ? x : 0; }

double cl_hellinger(const double *p, const double *q, size_t V) {
    double sp = 0, sq = 0;
    for (size_t i = 0; i < V; i++) sp += pos(p[i]), sq += pos(q[i]);
    if (!(sp > 0) || !(sq > 0) || !isfinite(sp) || !isfinite(sq)) return CL_H_EMPTY;
    double acc = 0;
    for (size_t i = 0; i < V; i++) {
        double d = sqrt(pos(p[i]) / sp) - sqrt(pos(q[i]) / sq);
        acc += d * d;
    }
    double h = sqrt(acc) / sqrt(2.0);
    return h > 1 ? 1 : h;
}

double cl_hellinger_df(const double *p, const float *q, size_t V) {
    double sp = 0, sq = 0;
    for (size_t i = 0; i < V; i++) sp += pos(p[i]), sq += pos((double)q[i]);
    if (!(sp > 0) || !(sq > 0) || !isfinite(sp) || !isfinite(sq)) return CL_H_EMPTY;
    double acc = 0;
    for (size_t i = 0; i < V; i++) {
        double d = sqrt(pos(p[i]) / sp) - sqrt(pos((double)q[i]) / sq);
        acc += d * d;
    }
    double h = sqrt(acc) / sqrt(2.0);
    return h > 1 ? 1 : h;
}

double cl_hellinger_sup(const double *p, const float *q, size_t ns, double sq, double rest) {
    double sp = 0;
    for (size_t j = 0; j < ns; j++) sp += pos(p[j]);
    if (!(sp > 0) || !(sq > 0) || !isfinite(sp) || !isfinite(sq)) return CL_H_EMPTY;
    double acc = pos(rest) / sq;
    for (size_t j = 0; j < ns; j++) {
        double d = sqrt(pos(p[j]) / sp) - sqrt(pos((double)q[j]) / sq);
        acc += d * d;
    }
    double h = sqrt(acc) / sqrt(2.0);
    return h > 1 ? 1 : h;
}

double cl_quantile_sorted(const double *y, size_t n, double q) {
    if (n == 0) return 0;
    if (q <= 0) return y[0];
    if (q >= 1) return y[n - 1];
    double h = (double)(n - 1) * q;
    size_t i = (size_t)floor(h);
    if (i + 1 >= n) return y[n - 1];
    return y[i] + (h - (double)i) * (y[i + 1] - y[i]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cl_stats_compute(const double *x, size_t n, cl_stats *out) {
    *out = (cl_stats){0};
    double *y = cl_trymalloc(n ? n : 1, sizeof *y, "statistics");
    if (!y) return -1;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] >= 0 && isfinite(x[i])) y[c++] = x[i];
        else out->n_empty++;
    }
    out->count = c;
    if (c > 0) {
        qsort(y, c, sizeof *y, cmp_double);
        double s = 0;
        for (size_t i = 0; i < c; i++) s += y[i];
        double mean = s / (double)c, v = 0;
        for (size_t i = 0; i < c; i++) v += (y[i] - mean) * (y[i] - mean);
        out->mean = mean;
        out->std = sqrt(v / (double)c);
        out->min = y[0];
        out->max = y[c - 1];
        out->p10 = cl_quantile_sorted(y, c, 0.10);
        out->p25 = cl_quantile_sorted(y, c, 0.25);
        out->median = cl_quantile_sorted(y, c, 0.50);
        out->p75 = cl_quantile_sorted(y, c, 0.75);
        out->p90 = cl_quantile_sorted(y, c, 0.90);
    }
    free(y);
    return 0;
}

static int by_p_desc(const void *a, const void *b) {
    const cl_token_p *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

void cl_token_p_sort(cl_token_p *e, size_t n) { qsort(e, n, sizeof *e, by_p_desc); }

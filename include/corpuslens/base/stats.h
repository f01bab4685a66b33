/* Hellinger distance and summary statistics, shared by reduce, tune and the
 * analyses.
 *
 * Empty distributions (an approximation or baseline with no counts) are not
 * given a Hellinger distance: their entry in a hellinger array is
 * CL_H_EMPTY (-1), their empty flag is 1, and the statistics exclude them
 * (cl_stats.n_empty counts them; cl_stats.count counts the rest).
 */
#ifndef CORPUSLENS_BASE_STATS_H
#define CORPUSLENS_BASE_STATS_H

#include <stddef.h>

#define CL_H_EMPTY (-1.0)
#define CL_GRID_TOL 1e-9

/* H between two distributions of length V. Both are normalised here by their
 * own sums (so raw counts may be passed); returns CL_H_EMPTY when either sums
 * to 0 (or is not finite). Negative entries are treated as 0. */
double cl_hellinger(const double *p, const double *q, size_t V);
/* Same, p as doubles and q as floats (the model's probabilities). */
double cl_hellinger_df(const double *p, const float *q, size_t V);
/* The same H when p and q are known only on a support of ns tokens (p is 0
 * off it): p[j] and q[j] are the values at the support's j-th token, sq the
 * sum of q's positive finite entries over the whole vocabulary and rest its
 * part off the support. The off-support terms (0 - sqrt(q_v / sq))^2 enter
 * as rest / sq: equal to cl_hellinger_df of the dense rows up to rounding
 * (~1e-15). CL_H_EMPTY as above. */
double cl_hellinger_sup(const double *p, const float *q, size_t ns, double sq, double rest);

/* Summary statistics of the values x[i] with x[i] >= 0 (entries equal to
 * CL_H_EMPTY, or any negative / non-finite value, are counted in n_empty and
 * excluded). std is the POPULATION standard deviation (divide by count, numpy's
 * default ddof=0). Quantiles use linear interpolation between order statistics
 * (numpy's default "linear" method): for sorted y[0..n-1] and q in [0, 1],
 * h = (n-1) q, y[floor h] + (h - floor h) (y[floor h + 1] - y[floor h]).
 * With count == 0 every value field is 0. Returns 0, or -1 (allocation). */
typedef struct {
    size_t count, n_empty;
    double mean, std, min, p10, p25, median, p75, p90, max;
} cl_stats;
int cl_stats_compute(const double *x, size_t n, cl_stats *out);
/* The quantile q of sorted[0..n-1] as above (n > 0). */
double cl_quantile_sorted(const double *sorted, size_t n, double q);

/* A token and its probability, for tables of the most likely tokens. */
typedef struct {
    double p;
    int id;
} cl_token_p;
/* Sort e[0..n-1] most likely first; equal probabilities by lower id. */
void cl_token_p_sort(cl_token_p *e, size_t n);

#endif

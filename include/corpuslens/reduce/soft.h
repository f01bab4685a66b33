/* The soft kernel from a scan's binned tensors (kNN-LM's weighting instead of
 * the paper's hard thresholds), and its fit (`corpuslens tune --soft`).
 *
 * Kernel: a string with similarity s > prefilter in block b contributes its
 * next-token counts times w_b * exp((s - 1) / T_b) (the same as
 * w'_b * exp(s / T_b) with w'_b = w_b exp(-1/T_b); written around s = 1 so
 * that nothing overflows). `explain --temperatures/--soft-weights` computes it
 * exactly from the index.
 *
 * From the bins (this file): bin k of block b (similarities in (lower_k,
 * lower_k + width]) is weighted at its midpoint m_k = lower_k + width / 2. A
 * pair's exact weight lies within a factor exp(+-width / (2 T_b)) of that, so
 * every block sum (and so the approximation before normalisation) is within
 * that relative error: for width 0.01, 5.1 % at T = 0.1, 10.5 % at T = 0.05,
 * 28.4 % at T = 0.02, 64.9 % at T = 0.01 (cl_soft_bin_error). The self pair of
 * a prompt (sim 1, last bin) is weighted at the last bin's midpoint too.
 *
 * Memory follows the supports, not V: a prompt's count support is the union
 * of the tokens of its bin rows (cl_count_support); off it the approximation
 * is 0 and the model's mass there is one number (cl_model_on_support). H is
 * the dense H (cl_sup_hellinger: the model as cl_scan_read_model gives it, a
 * csr scan's /model/support + /model/mass or the dense rows; a count token
 * outside the model support is refused).
 *
 * Fit: the same train/held-out split as cl_tune (same seed: a Fisher-Yates
 * permutation of the prompts), at most max_train prompts fitted (default 2000
 * when 0 is given: the fit holds n x Lb x NB x support int32 counts and
 * Lb + 2 doubles per support cell). Objective: mean H
 * over the fit prompts, empty = 1. Coordinate descent over blocks: T_b on a
 * log grid (0.005 .. 1, 15 values), then w_b on a ladder (x 1e-4 .. 1e4 and
 * 0), until a sweep improves by < 1e-6 (at most 12 sweeps); weights rescaled
 * to max 1. Start: T = 0.05 and the paper's weights (Lb == 6) or 1.
 */
#ifndef CORPUSLENS_REDUCE_SOFT_H
#define CORPUSLENS_REDUCE_SOFT_H

#include "corpuslens/reduce/reduce.h"

/* Largest relative error of a bin-midpoint weight: exp(width / (2 T)) - 1. */
double cl_soft_bin_error(double width, double T);

/* Soft-kernel H of every prompt from the bins into h[P] (CL_H_EMPTY when
 * empty). 0 or -1 (message). */
int cl_soft_reduce(const cl_scan *s, const double *T, const double *w, double *h);

typedef struct {
    double T[64], w[64];
    size_t n_fit, n_test;
    double fit_objective;
    cl_stats test_soft, test_paper; /* held-out split: the fitted soft kernel, the paper's thresholds (Lb == 6) */
    int have_paper, sweeps;
} cl_soft_tune_result;

int cl_soft_tune(const cl_scan *s, const cl_tune_opts *o, cl_soft_tune_result *out);

#endif

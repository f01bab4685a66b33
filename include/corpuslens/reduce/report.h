/* corpuslens report writers: report.md, report.h5 and hand-written SVG plots
 * from a reduction (reduce.h). Nothing here prints; errors via cl_error.
 *
 * Files written into the output folder (created if missing; each file is
 * written to "<name>.tmp" and renamed):
 *   report.md            statistics tables (approximation and every
 *                        baseline), per-block match counts, the article's
 *                        "Model Predictions / Approximation Predictions"
 *                        top-5 comparison for chosen prompts and for the
 *                        best and worst 3
 *   report.h5            the layout in h5schema.h (report section), plus
 *                        /empty per baseline, /n_matches [P, Lb] int64
 *                        (substrings above each block's threshold) and
 *                        /prompts/text
 *   hellinger_density.svg  Gaussian KDE of the Hellinger distances of the
 *                        approximation, the best single block, the best logit
 *                        lens block, the n-gram, the unigram, and the other
 *                        models pooled (the noise floor), overlaid
 *   block_matches.svg    per block, mean matched substrings per prompt above
 *                        the prefilter and above the block's threshold (log axis)
 */
#ifndef CORPUSLENS_REPORT_H
#define CORPUSLENS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "corpuslens/reduce/reduce.h"

struct cl_ablation;
struct cl_tuned;
typedef struct {
    const char *scan_path;
    char scan_sha256[65];
    const size_t *examples;   /* prompt indices to show (may be NULL) */
    size_t n_examples;
    const char *command_line; /* recorded in report.md (may be NULL) */
    const struct cl_ablation *ablation; /* "Beside the paper": ablation table (may be NULL) */
    const struct cl_tuned *tuned;       /* "Beside the paper": fitted vs paper (may be NULL) */
} cl_report_opts;

/* ---- the paper's tables beside this run's (paper_table.c) ----
 * report.md gains a section "Beside the paper" and report.h5 a group
 * /noise_floor when there are compare models (other seeds):
 *   noise floor  = mean over the compare models of each one's mean H to the
 *                  scanned model (the "mean of means"); std = the population
 *                  std of all their per-prompt H values pooled;
 *   ratio        = approximation mean H / noise floor (the paper: 0.1677 /
 *                  0.106 = 1.58).
 * /noise_floor attributes: n_models, means [n] (each model's mean H),
 * mean (of means), pooled_std, ratio. */
typedef struct {
    size_t n;          /* compare models; 0: no noise floor */
    double means[64];  /* each model's mean H */
    double mean, pooled_std, ratio;
} cl_noise_floor;
int cl_noise_floor_of(const cl_reduction *r, cl_noise_floor *nf);

/* `corpuslens ablate -o ablation.h5` (format corpuslens-ablation): per block,
 * mean and population std of H with the attention / feed-forward output
 * removed. Attributes: format, mode, prompts, n_layer; datasets
 * /attn_removed/{mean,std} [L], /ffwd_removed/{mean,std} [L] float64. */
typedef struct cl_ablation {
    int L;
    long long prompts;
    char mode[16];
    double attn_mean[64], attn_std[64], ffwd_mean[64], ffwd_std[64];
} cl_ablation;
int cl_ablation_write(const char *path, const cl_ablation *a);
int cl_ablation_read(const char *path, cl_ablation *a);

/* `corpuslens tune --h5 tune.h5` (format corpuslens-tune), attributes only:
 * thresholds, weights [Lb], train_fraction, seed, n_train, n_test,
 * fitted_{train_mean,test_mean,test_std,test_median,test_empty} and, when the
 * scan has 6 blocks or tune was given --thresholds/--weights, the reference
 * values paper_{thresholds,weights} [Lb] (absent in older files: the paper's)
 * and paper_{train_mean,test_mean,test_std,test_median,test_empty}. */
typedef struct cl_tuned {
    int Lb, have_paper;
    double thresholds[64], weights[64];
    double paper_thresholds[64], paper_weights[64];
    double train_fraction;
    long long seed, n_train, n_test;
    double fit_train_mean, fit_test_mean, fit_test_std, fit_test_median;
    double paper_train_mean, paper_test_mean, paper_test_std, paper_test_median;
    long long fit_test_empty, paper_test_empty;
} cl_tuned;
int cl_tuned_write(const char *path, const cl_tuned *t);
int cl_tuned_read(const char *path, cl_tuned *t);

/* The "Beside the paper" section of report.md (nothing when there is nothing
 * to set beside the paper: no compare models, ablation or tuning). */
void cl_report_paper_md(FILE *f, const cl_reduction *r, const cl_report_opts *o);

/* Write every file listed above into dir. texts: [P] prompt strings. */
int cl_report_write(const char *dir, const cl_scan *s, const cl_reduction *r, char **texts,
                    const cl_report_opts *o);

/* One density curve for cl_svg_density. */
typedef struct {
    const char *label;
    const double *x;   /* values; negative entries (CL_H_EMPTY) are skipped */
    size_t n;
    const char *color; /* CSS colour */
    int dashed;
} cl_svg_series;

/* Gaussian KDE (Silverman bandwidth, reflected at 0 and 1) of each series on
 * [0, 1], drawn as lines with axes, ticks, titles and a legend. Writes path
 * via tmp+rename. */
int cl_svg_density(const char *path, const char *title, const cl_svg_series *s, size_t n);

/* Grouped bars on a log10 axis: values[g * n_series + j] for group g. */
int cl_svg_bars(const char *path, const char *title, const char *ylabel, const char *const *groups,
                size_t n_groups, const char *const *series, size_t n_series, const double *values);

#endif

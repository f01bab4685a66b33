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

#include "corpuslens/reduce/reduce.h"

typedef struct {
    const char *scan_path;
    char scan_sha256[65];
    const size_t *examples;   /* prompt indices to show (may be NULL) */
    size_t n_examples;
    const char *command_line; /* recorded in report.md (may be NULL) */
} cl_report_opts;

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

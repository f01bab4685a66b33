/* The paper's tables beside this run's: the noise floor from compare models,
 * the ablation and tuning files that `ablate -o` and `tune --h5` write, and
 * the "Beside the paper" section of report.md (see report.h). */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/reduce/report.h"

/* Pather 2024: approximation over 20,000 prompts, noise floor of 3 other
 * seeds, Appendix IV ablation ranges over the 6 blocks. */
#define PAPER_APPROX_MEAN 0.1677
#define PAPER_APPROX_STD 0.1215
#define PAPER_NOISE_MEAN 0.106
#define PAPER_NOISE_STD 0.082

int cl_noise_floor_of(const cl_reduction *r, cl_noise_floor *nf) {
    memset(nf, 0, sizeof *nf);
    size_t first = r->b_compare;
    size_t n = r->n_baselines > first ? r->n_baselines - first : 0;
    if (n > 64) return cl_error("more than 64 compare models");
    nf->n = n;
    if (!n) return 0;
    double s = 0.0, sq = 0.0, tot = 0.0;
    size_t cnt = 0;
    for (size_t c = 0; c < n; c++) {
        const cl_baseline *b = &r->baselines[first + c];
        nf->means[c] = b->stats.mean;
        tot += b->stats.mean;
        for (size_t p = 0; p < r->P; p++)
            if (!b->empty[p]) s += b->hellinger[p], cnt++;
    }
    nf->mean = tot / (double)n;
    double pm = cnt ? s / (double)cnt : NAN;
    for (size_t c = 0; c < n; c++) {
        const cl_baseline *b = &r->baselines[first + c];
        for (size_t p = 0; p < r->P; p++)
            if (!b->empty[p]) sq += (b->hellinger[p] - pm) * (b->hellinger[p] - pm);
    }
    nf->pooled_std = cnt ? sqrt(sq / (double)cnt) : NAN;
    nf->ratio = r->stats.mean / nf->mean;
    return 0;
}

/* ---- files ---- */

static int finish(hid_t f, const char *tmp, const char *path, int rc) {
    if (cl_h5_commit(f, tmp, path, rc != 0)) return cl_error_prefix("%s: ", path);
    return 0;
}

int cl_ablation_write(const char *path, const cl_ablation *a) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    hsize_t dL = (hsize_t)a->L;
    int rc = cl_h5_attr_write_str(f, "format", CL_ABLATION_FORMAT) || cl_h5_attr_write_str(f, "mode", a->mode) ||
             cl_h5_attr_write_int(f, "prompts", a->prompts) || cl_h5_attr_write_int(f, "n_layer", a->L) ||
             cl_h5_write(f, "/attn_removed/mean", H5T_NATIVE_DOUBLE, 1, &dL, a->attn_mean) ||
             cl_h5_write(f, "/attn_removed/std", H5T_NATIVE_DOUBLE, 1, &dL, a->attn_std) ||
             cl_h5_write(f, "/ffwd_removed/mean", H5T_NATIVE_DOUBLE, 1, &dL, a->ffwd_mean) ||
             cl_h5_write(f, "/ffwd_removed/std", H5T_NATIVE_DOUBLE, 1, &dL, a->ffwd_std) ||
             cl_h5_attr_write_int(f, "complete", 1);
    return finish(f, tmp, path, rc ? -1 : 0);
}

static int check_format(hid_t f, const char *want, const char *path) {
    char fmt[64] = "";
    if (cl_h5_attr_read_str(f, "format", fmt, sizeof fmt) < 0 || strcmp(fmt, want))
        return cl_error("%s is not a %s file", path, want);
    return 0;
}

int cl_ablation_read(const char *path, cl_ablation *a) {
    memset(a, 0, sizeof *a);
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    long long L = 0;
    int rc = check_format(f, CL_ABLATION_FORMAT, path);
    if (!rc) rc = cl_h5_attr_read_int(f, "n_layer", &L) || cl_h5_attr_read_int(f, "prompts", &a->prompts) ||
                  cl_h5_attr_read_str(f, "mode", a->mode, sizeof a->mode);
    if (!rc && (L < 1 || L > 64)) rc = cl_error("%s: n_layer %lld outside 1..64", path, L);
    if (!rc) {
        hsize_t dL = (hsize_t)L;
        a->L = (int)L;
        rc = cl_h5_read_exact(f, "/attn_removed/mean", H5T_NATIVE_DOUBLE, 1, &dL, a->attn_mean) ||
             cl_h5_read_exact(f, "/attn_removed/std", H5T_NATIVE_DOUBLE, 1, &dL, a->attn_std) ||
             cl_h5_read_exact(f, "/ffwd_removed/mean", H5T_NATIVE_DOUBLE, 1, &dL, a->ffwd_mean) ||
             cl_h5_read_exact(f, "/ffwd_removed/std", H5T_NATIVE_DOUBLE, 1, &dL, a->ffwd_std);
    }
    H5Fclose(f);
    return rc ? cl_error_prefix("%s: ", path), -1 : 0;
}

int cl_tuned_write(const char *path, const cl_tuned *t) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    int rc = cl_h5_attr_write_str(f, "format", CL_TUNE_FORMAT) ||
             cl_h5_attr_write_doubles(f, "thresholds", t->thresholds, (size_t)t->Lb) ||
             cl_h5_attr_write_doubles(f, "weights", t->weights, (size_t)t->Lb) ||
             cl_h5_attr_write_double(f, "train_fraction", t->train_fraction) ||
             cl_h5_attr_write_int(f, "seed", t->seed) || cl_h5_attr_write_int(f, "n_train", t->n_train) ||
             cl_h5_attr_write_int(f, "n_test", t->n_test) ||
             cl_h5_attr_write_double(f, "fitted_train_mean", t->fit_train_mean) ||
             cl_h5_attr_write_double(f, "fitted_test_mean", t->fit_test_mean) ||
             cl_h5_attr_write_double(f, "fitted_test_std", t->fit_test_std) ||
             cl_h5_attr_write_double(f, "fitted_test_median", t->fit_test_median) ||
             cl_h5_attr_write_int(f, "fitted_test_empty", t->fit_test_empty);
    if (!rc && t->have_paper)
        rc = cl_h5_attr_write_doubles(f, "paper_thresholds", t->paper_thresholds, (size_t)t->Lb) ||
             cl_h5_attr_write_doubles(f, "paper_weights", t->paper_weights, (size_t)t->Lb) ||
             cl_h5_attr_write_double(f, "paper_train_mean", t->paper_train_mean) ||
             cl_h5_attr_write_double(f, "paper_test_mean", t->paper_test_mean) ||
             cl_h5_attr_write_double(f, "paper_test_std", t->paper_test_std) ||
             cl_h5_attr_write_double(f, "paper_test_median", t->paper_test_median) ||
             cl_h5_attr_write_int(f, "paper_test_empty", t->paper_test_empty);
    if (!rc) rc = cl_h5_attr_write_int(f, "complete", 1);
    return finish(f, tmp, path, rc ? -1 : 0);
}

/* Attribute `name`: exactly n doubles (n <= 64) into v. */
static int read_list(hid_t f, const char *name, int n, double *v) {
    hid_t at = H5Aopen(f, name, H5P_DEFAULT);
    hid_t sp = at >= 0 ? H5Aget_space(at) : H5I_INVALID_HID;
    hssize_t m = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = 0;
    if (m != n || n < 1 || n > 64 || H5Aread(at, H5T_NATIVE_DOUBLE, v) < 0)
        rc = cl_error("bad %s: %lld values, expected %d", name, (long long)m, n);
    if (sp >= 0) H5Sclose(sp);
    if (at >= 0) H5Aclose(at);
    return rc;
}

int cl_tuned_read(const char *path, cl_tuned *t) {
    memset(t, 0, sizeof *t);
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    int rc = check_format(f, CL_TUNE_FORMAT, path);
    if (!rc) {
        hid_t at = H5Aopen(f, "thresholds", H5P_DEFAULT);
        hid_t sp = at >= 0 ? H5Aget_space(at) : H5I_INVALID_HID;
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        if (n < 1 || n > 64 || H5Aread(at, H5T_NATIVE_DOUBLE, t->thresholds) < 0) rc = cl_error("bad thresholds");
        t->Lb = (int)n;
        if (sp >= 0) H5Sclose(sp);
        if (at >= 0) H5Aclose(at);
        if (!rc) rc = read_list(f, "weights", t->Lb, t->weights);
    }
    if (!rc)
        rc = cl_h5_attr_read_double(f, "train_fraction", &t->train_fraction) ||
             cl_h5_attr_read_int(f, "seed", &t->seed) || cl_h5_attr_read_int(f, "n_train", &t->n_train) ||
             cl_h5_attr_read_int(f, "n_test", &t->n_test) ||
             cl_h5_attr_read_double(f, "fitted_train_mean", &t->fit_train_mean) ||
             cl_h5_attr_read_double(f, "fitted_test_mean", &t->fit_test_mean) ||
             cl_h5_attr_read_double(f, "fitted_test_std", &t->fit_test_std) ||
             cl_h5_attr_read_double(f, "fitted_test_median", &t->fit_test_median) ||
             cl_h5_attr_read_int(f, "fitted_test_empty", &t->fit_test_empty);
    if (!rc && cl_h5_attr_exists(f, "paper_test_mean") > 0) {
        t->have_paper = 1;
        rc = cl_h5_attr_read_double(f, "paper_train_mean", &t->paper_train_mean) ||
             cl_h5_attr_read_double(f, "paper_test_mean", &t->paper_test_mean) ||
             cl_h5_attr_read_double(f, "paper_test_std", &t->paper_test_std) ||
             cl_h5_attr_read_double(f, "paper_test_median", &t->paper_test_median) ||
             cl_h5_attr_read_int(f, "paper_test_empty", &t->paper_test_empty);
        static const double pt[6] = CL_PAPER_THRESHOLDS, pw[6] = CL_PAPER_WEIGHTS;
        if (!rc && cl_h5_attr_exists(f, "paper_thresholds") > 0)
            rc = read_list(f, "paper_thresholds", t->Lb, t->paper_thresholds) ||
                 read_list(f, "paper_weights", t->Lb, t->paper_weights);
        else if (!rc && t->Lb == 6)
            memcpy(t->paper_thresholds, pt, sizeof pt), memcpy(t->paper_weights, pw, sizeof pw);
        else if (!rc)
            rc = cl_error("paper_test_mean without paper_thresholds for %d blocks", t->Lb);
    }
    H5Fclose(f);
    return rc ? cl_error_prefix("%s: ", path), -1 : 0;
}

/* ---- report.md ---- */

void cl_report_paper_md(FILE *f, const cl_reduction *r, const cl_report_opts *o) {
    cl_noise_floor nf;
    if (cl_noise_floor_of(r, &nf)) nf.n = 0;
    if (!nf.n && !o->ablation && !o->tuned) return;
    fprintf(f, "## Beside the paper\n\nThe paper (Pather 2024): 20,000 prompts of TinyShakespeare, the lecture "
               "model (6 blocks x 384) and 3 models trained the same way with other seeds. This run: %zu "
               "prompts, %d blocks.\n\n",
            r->P, r->Lb);
    fprintf(f, "| | paper | this run |\n|---|---:|---:|\n");
    fprintf(f, "| approximation H (mean ± std) | %.4f ± %.4f | %.4f ± %.4f |\n", PAPER_APPROX_MEAN,
            PAPER_APPROX_STD, r->stats.mean, r->stats.std);
    if (nf.n) {
        size_t first = r->b_compare;
        for (size_t c = 0; c < nf.n; c++)
            fprintf(f, "| noise floor: H(model, %s) (mean ± std) | | %.4f ± %.4f |\n", r->baselines[first + c].label,
                    r->baselines[first + c].stats.mean, r->baselines[first + c].stats.std);
        fprintf(f, "| **noise floor**: mean over the %zu other models (± pooled std) | %.3f ± %.3f | %.4f ± %.4f |\n",
                nf.n, PAPER_NOISE_MEAN, PAPER_NOISE_STD, nf.mean, nf.pooled_std);
        fprintf(f, "| **ratio** approximation / noise floor | %.2f | %.2f |\n",
                PAPER_APPROX_MEAN / PAPER_NOISE_MEAN, nf.ratio);
    }
    fprintf(f, "\n");
    if (o->ablation) {
        const cl_ablation *a = o->ablation;
        fprintf(f, "### Ablation (Appendix IV)\n\nH between the normal output and the output with one block's "
                   "attention or feed-forward output removed (%s-ablation, %lld prompts; mean ± std). The paper "
                   "gives the ranges over its 6 blocks: attention removed 0.03–0.11, feed-forward removed "
                   "0.13–0.70.\n\n| block | attention removed | feed-forward removed |\n|---:|---:|---:|\n",
                a->mode, a->prompts);
        double amin = INFINITY, amax = -INFINITY, flo = INFINITY, fhi = -INFINITY;
        for (int l = 0; l < a->L; l++) {
            fprintf(f, "| %d | %.4f ± %.4f | %.4f ± %.4f |\n", l, a->attn_mean[l], a->attn_std[l], a->ffwd_mean[l],
                    a->ffwd_std[l]);
            amin = (a->attn_mean[l] < amin ? a->attn_mean[l] : amin), amax = (a->attn_mean[l] > amax ? a->attn_mean[l] : amax);
            flo = (a->ffwd_mean[l] < flo ? a->ffwd_mean[l] : flo), fhi = (a->ffwd_mean[l] > fhi ? a->ffwd_mean[l] : fhi);
        }
        fprintf(f, "| range, this run | %.2f–%.2f | %.2f–%.2f |\n| range, paper | 0.03–0.11 | 0.13–0.70 |\n\n",
                amin, amax, flo, fhi);
    }
    if (o->tuned) {
        const cl_tuned *t = o->tuned;
        /* the paper's values as tune stores them: thresholds on the scan's bin
           grid (0.81 may read 0.8099999999999999), so equal within 1e-9 */
        static const double pt[6] = CL_PAPER_THRESHOLDS, pw[6] = CL_PAPER_WEIGHTS;
        int paper = t->Lb == 6;
        for (int b = 0; paper && b < 6; b++)
            paper = fabs(t->paper_thresholds[b] - pt[b]) <= 1e-9 && fabs(t->paper_weights[b] - pw[b]) <= 1e-9;
        fprintf(f, "### Fitted against the %s thresholds and weights, on held-out prompts\n\n`corpuslens tune`: "
                   "fitted on %lld prompts (train fraction %g, seed %lld), evaluated on the other %lld.\n\n",
                !t->have_paper || paper ? "paper's" : "reference", t->n_train, t->train_fraction, t->seed, t->n_test);
        fprintf(f, "| values | thresholds | weights | train mean H | held-out mean H | held-out std | held-out "
                   "median | held-out empty |\n|---|---|---|---:|---:|---:|---:|---:|\n| fitted | ");
        for (int b = 0; b < t->Lb; b++) fprintf(f, "%s%g", b ? ", " : "", t->thresholds[b]);
        fprintf(f, " | ");
        for (int b = 0; b < t->Lb; b++) fprintf(f, "%s%.3g", b ? ", " : "", t->weights[b]);
        fprintf(f, " | %.4f | %.4f | %.4f | %.4f | %lld |\n", t->fit_train_mean, t->fit_test_mean, t->fit_test_std,
                t->fit_test_median, t->fit_test_empty);
        if (t->have_paper) {
            fprintf(f, "| %s | ", paper ? "paper" : "reference");
            for (int b = 0; b < t->Lb; b++) fprintf(f, "%s%g", b ? ", " : "", t->paper_thresholds[b]);
            fprintf(f, " | ");
            for (int b = 0; b < t->Lb; b++) fprintf(f, "%s%g", b ? ", " : "", t->paper_weights[b]);
            fprintf(f, " | %.4f | %.4f | %.4f | %.4f | %lld |\n", t->paper_train_mean, t->paper_test_mean,
                    t->paper_test_std, t->paper_test_median, t->paper_test_empty);
        }
        fprintf(f, "\n");
    }
}

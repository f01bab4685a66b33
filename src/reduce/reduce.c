/* The reducer: scan.h5 -> approximation, Hellinger distances, baselines,
 * and the threshold/weight fit (see include/corpuslens/reduce/reduce.h).
 *
 * Dimension legend: P prompts, Lb blocks, NB bins, V vocab, PB prompts per
 * read block (hyperslab of /freq/counts).
 */
#include "corpuslens/base/clock.h"
#include "corpuslens/reduce/reduce.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/par/par.h"

#define MAX_LB 64
/* Bytes of /freq/counts read per hyperslab. */
#define READ_BLOCK_BYTES (16u << 20)

/* ---------------------------------------------------------------- scan.h5 */

void cl_scan_close(cl_scan *s) {
    if (!s) return;
    if (s->file >= 0) H5Fclose(s->file);
    free(s->bin_lower);
    free(s->vocab);
    free(s);
}

static int check_shape(hid_t f, const char *path, int rank, const hsize_t *want) {
    hsize_t d[8];
    int r = cl_h5_shape(f, path, d);
    if (r < 0) return cl_error("dataset %s is missing", path);
    int ok = r == rank;
    for (int i = 0; ok && i < rank; i++) ok = d[i] == want[i];
    if (!ok) {
        char got[160] = "", exp[160] = "";
        size_t g = 0, e = 0;
        for (int i = 0; i < r && g < sizeof got - 24; i++)
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
        for (int i = 0; i < rank && e < sizeof exp - 24; i++)
            e += (size_t)snprintf(exp + e, sizeof exp - e, "%s%llu", i ? ", " : "", (unsigned long long)want[i]);
        return cl_error("dataset %s has shape [%s], expected [%s]", path, got, exp);
    }
    return 0;
}

static int read_int_attr(hid_t f, const char *name, long long lo, long long hi, long long *v) {
    if (cl_h5_attr_read_int(f, name, v)) return -1;
    if (*v < lo || *v > hi) return cl_error("attribute %s = %lld is outside [%lld, %lld]", name, *v, lo, hi);
    return 0;
}

cl_scan *cl_scan_open(const char *path) {
    cl_scan *s = cl_trycalloc(1, sizeof *s, "scan");
    if (!s) return NULL;
    s->file = H5I_INVALID_HID;
    snprintf(s->path, sizeof s->path, "%s", path);
    hid_t f = s->file = cl_h5_open_read(path);
    if (f < 0) goto fail;
    char fmt[128];
    if (!cl_h5_attr_exists(f, "format") || cl_h5_attr_read_str(f, "format", fmt, sizeof fmt) ||
        strcmp(fmt, CL_SCAN_FORMAT)) {
        cl_error("not a corpuslens scan file (root attribute format is not \"%s\")", CL_SCAN_FORMAT);
        goto fail;
    }
    long long ver = 0, complete = 0, v;
    if (cl_h5_attr_read_int(f, "format_version", &ver)) goto fail;
    if (ver != CL_SCAN_FORMAT_VERSION) {
        cl_error("scan format_version %lld; this corpuslens reads version %d (rescan with this version)",
                 ver, CL_SCAN_FORMAT_VERSION);
        goto fail;
    }
    if (!cl_h5_attr_exists(f, "complete") || cl_h5_attr_read_int(f, "complete", &complete) ||
        complete != 1) {
        cl_error("the scan is incomplete (attribute complete is %s): it was interrupted or failed; "
                 "resume or rerun the scan",
                 cl_h5_attr_exists(f, "complete") ? "not 1" : "missing");
        goto fail;
    }
    if (read_int_attr(f, "n_layer", 1, MAX_LB, &v)) goto fail;
    s->NL = s->Lb = (int)v;
    s->first_block = 0;
    /* the hooked blocks (older scans without the attributes hooked every block) */
    if (cl_h5_attr_exists(f, "n_hook_blocks")) {
        if (read_int_attr(f, "n_hook_blocks", 1, s->NL, &v)) goto fail;
        s->Lb = (int)v;
        if (read_int_attr(f, "hook_first_block", 0, s->NL - s->Lb, &v)) goto fail;
        s->first_block = (int)v;
    }
    if (read_int_attr(f, "vocab_size", 1, 1 << 21, &v)) goto fail;
    s->V = (int)v;
    if (read_int_attr(f, "n_bins", 1, 1 << 16, &v)) goto fail;
    s->NB = (int)v;
    if (read_int_attr(f, "n_prompts", 1, 1LL << 40, &v)) goto fail;
    s->P = (size_t)v;
    s->L = 0;
    if (cl_h5_attr_exists(f, "L") && cl_h5_attr_read_int(f, "L", &v) == 0) s->L = (int)v;
    if (cl_h5_attr_read_double(f, "prefilter", &s->prefilter) ||
        cl_h5_attr_read_double(f, "bin_width", &s->bin_width))
        goto fail;
    if (read_int_attr(f, "n_substrings", 1, INT64_MAX, &v)) goto fail;
    s->n_substrings = v;
    if (!(s->prefilter >= -1 && s->prefilter < 1) || !(s->bin_width > 0 && s->bin_width <= 2)) {
        cl_error("attributes prefilter = %g, bin_width = %g are not a valid grid", s->prefilter, s->bin_width);
        goto fail;
    }
    if (cl_h5_attr_exists(f, "hook")) cl_h5_attr_read_str(f, "hook", s->hook, sizeof s->hook);
    if (cl_h5_attr_exists(f, "model_sha256"))
        cl_h5_attr_read_str(f, "model_sha256", s->model_sha256, sizeof s->model_sha256);

    size_t P = s->P;
    int Lb = s->Lb, V = s->V, NB = s->NB;
    int Vv;
    if (cl_scan_vocab_open(s, &Vv)) goto fail;
    if (Vv != V) {
        cl_error("/vocab has %d entries but vocab_size is %d", Vv, V);
        goto fail;
    }
    hsize_t dNB = (hsize_t)NB, dV = (hsize_t)V, dP = (hsize_t)P;
    hsize_t dPV[2] = {P, (hsize_t)V}, dPLV[3] = {P, (hsize_t)s->NL, (hsize_t)V};
    hsize_t dPLN[3] = {P, (hsize_t)Lb, (hsize_t)NB}, dPL[2] = {P, (hsize_t)s->NL};
    /* shapes, type classes and stored data, before anything is sized by P */
    if (cl_scan_counts_open(s)) goto fail;
    if (check_shape(f, CL_SCAN_PROMPT_TEXT, 1, &dP) ||
        cl_h5_check_data(f, CL_SCAN_PROMPT_TEXT, H5T_C_S1, 1, &dP) ||
        (!s->model_sparse && (cl_h5_check_data(f, CL_SCAN_PROMPT_NEXT, H5T_NATIVE_INT32, 2, dPV) ||
                              cl_h5_check_data(f, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, 2, dPV))) ||
        cl_h5_check_data(f, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dV) ||
        (s->csr ? cl_h5_check_data(f, CL_SCAN_LENS_HELLINGER, H5T_NATIVE_DOUBLE, 2, dPL)
                : cl_h5_check_data(f, CL_SCAN_LENS_PROBS, H5T_NATIVE_FLOAT, 3, dPLV)) ||
        cl_h5_check_data(f, CL_SCAN_FREQ_N_MATCHES, H5T_NATIVE_INT64, 3, dPLN) ||
        cl_h5_check_data(f, CL_SCAN_FREQ_BIN_LOWER, H5T_NATIVE_DOUBLE, 1, &dNB))
        goto fail;
    s->bin_lower = cl_trymalloc((size_t)NB, sizeof(double), "bin_lower");
    if (!s->bin_lower ||
        cl_h5_read_exact(f, CL_SCAN_FREQ_BIN_LOWER, H5T_NATIVE_DOUBLE, 1, &dNB, s->bin_lower))
        goto fail;
    if (!(fabs(s->bin_lower[0] - s->prefilter) <= CL_GRID_TOL)) {
        cl_error("%s[0] = %.9g differs from prefilter %.9g", CL_SCAN_FREQ_BIN_LOWER, s->bin_lower[0], s->prefilter);
        goto fail;
    }
    for (int k = 1; k < NB; k++)
        if (!(s->bin_lower[k] > s->bin_lower[k - 1]) || s->bin_lower[k] > 1) {
            cl_error("%s is not increasing within [prefilter, 1] at bin %d", CL_SCAN_FREQ_BIN_LOWER, k);
            goto fail;
        }
    /* the scan's grid: lower[k] = prefilter + k bin_width */
    for (int k = 0; k < NB; k++)
        if (!(fabs(s->bin_lower[k] - (s->prefilter + k * s->bin_width)) <= CL_GRID_TOL)) {
            cl_error("%s[%d] = %.9g is not prefilter + %d bin_width = %.9g", CL_SCAN_FREQ_BIN_LOWER, k,
                     s->bin_lower[k], k, s->prefilter + k * s->bin_width);
            goto fail;
        }
    int64_t *unig = cl_trymalloc((size_t)V, sizeof *unig, "unigram");
    if (!unig || cl_h5_read_exact(f, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dV, unig)) {
        free(unig);
        goto fail;
    }
    s->n_followers = 0;
    for (int t = 0; t < V; t++) {
        if (unig[t] < 0 || unig[t] > INT64_MAX - s->n_followers) {
            cl_error("%s: entry %d (%lld) is not a count", CL_SCAN_UNIGRAM, t, (long long)unig[t]);
            free(unig);
            goto fail;
        }
        s->n_followers += unig[t];
    }
    free(unig);
    return s;
fail:
    cl_error_prefix("%s: ", path);
    cl_scan_close(s);
    return NULL;
}

char **cl_scan_read_texts(const cl_scan *s) {
    size_t P = s->P;
    hid_t d = H5Dopen2(s->file, CL_SCAN_PROMPT_TEXT, H5P_DEFAULT);
    if (d < 0) {
        cl_error("cannot open %s", CL_SCAN_PROMPT_TEXT);
        return NULL;
    }
    hid_t ft = H5Dget_type(d);
    char **out = NULL;
    if (H5Tget_class(ft) != H5T_STRING) {
        cl_error("%s is not a string dataset", CL_SCAN_PROMPT_TEXT);
        goto done;
    }
    out = cl_trymalloc(P + 1, sizeof *out, "prompt texts");
    if (!out) goto done;
    out[P] = NULL;
    if (H5Tis_variable_str(ft) > 0) {
        char **tmp = cl_trymalloc(P, sizeof *tmp, "prompt texts");
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        herr_t st = tmp ? H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) : -1;
        size_t tot = 0;
        if (st >= 0)
            for (size_t i = 0; i < P; i++) tot += (tmp[i] ? strlen(tmp[i]) : 0) + 1;
        char *blk = st >= 0 ? cl_trymalloc(tot ? tot : 1, 1, "prompt texts") : NULL;
        if (blk) {
            char *w = blk;
            for (size_t i = 0; i < P; i++) {
                size_t n = tmp[i] ? strlen(tmp[i]) : 0;
                memcpy(w, tmp[i] ? tmp[i] : "", n);
                w[n] = '\0';
                out[i] = w;
                w += n + 1;
            }
        } else if (st < 0) {
            cl_error("cannot read %s", CL_SCAN_PROMPT_TEXT);
        }
        if (st >= 0) {
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
            H5Sclose(sp);
        }
        H5Tclose(mt);
        free(tmp);
        if (!blk) {
            free(out);
            out = NULL;
        }
    } else {
        size_t w = H5Tget_size(ft);
        char *raw = cl_trymalloc(P, w, "prompt texts");
        char *blk = cl_trymalloc(P, w + 1, "prompt texts");
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, w);
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        H5Tset_cset(mt, H5Tget_cset(ft));
        herr_t st = raw && blk ? H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) : -1;
        H5Tclose(mt);
        if (st < 0) {
            if (raw && blk) cl_error("cannot read %s", CL_SCAN_PROMPT_TEXT);
            free(blk);
            free(out);
            out = NULL;
        } else {
            for (size_t i = 0; i < P; i++) {
                char *o = blk + i * (w + 1);
                memcpy(o, raw + i * w, w);
                o[w] = '\0';
                out[i] = o;
            }
        }
        free(raw);
    }
done:
    H5Tclose(ft);
    H5Dclose(d);
    /* each text is UTF-8 (it is printed in the report and encoded again) */
    for (size_t i = 0; out && i < P; i++) {
        const unsigned char *t = (const unsigned char *)out[i];
        size_t len = strlen(out[i]);
        for (size_t k = 0; k < len;) {
            uint32_t cp;
            int nb = cl_utf8_get(t + k, len - k, &cp);
            if (nb <= 0) {
                cl_error("%s: %s: text %zu is not valid UTF-8", s->path, CL_SCAN_PROMPT_TEXT, i);
                cl_scan_texts_free(out);
                return NULL;
            }
            k += (size_t)nb;
        }
    }
    return out;
}

void cl_scan_texts_free(char **texts) {
    if (!texts) return;
    free(texts[0]);
    free(texts);
}

/* ------------------------------------------------------------- parameters */

static void grid_text(const cl_scan *s, char *buf, size_t n) {
    size_t o = 0;
    if (s->NB <= 8) {
        for (int k = 0; k < s->NB && o + 24 < n; k++)
            o += (size_t)snprintf(buf + o, n - o, "%s%g", k ? ", " : "", s->bin_lower[k]);
    } else {
        snprintf(buf, n, "%g, %g, ..., %g (%d values, step %g)", s->bin_lower[0], s->bin_lower[1],
                 s->bin_lower[s->NB - 1], s->NB, s->bin_width);
    }
}

int cl_reduce_params(const cl_scan *s, const double *thr, size_t n_thr, const double *w,
                     size_t n_w, double *thr_out, double *w_out, int *kbin_out) {
    int Lb = s->Lb;
    static const double paper_t[6] = CL_PAPER_THRESHOLDS, paper_w[6] = CL_PAPER_WEIGHTS;
    if (!thr || n_thr == 0) {
        if (Lb != 6)
            return cl_error("the scan has %d blocks: the paper's thresholds are for 6; give --thresholds "
                            "(%d values)", Lb, Lb);
        thr = paper_t;
        n_thr = 6;
    }
    if (!w || n_w == 0) {
        if (Lb != 6)
            return cl_error("the scan has %d blocks: the paper's weights are for 6; give --weights (%d values)",
                            Lb, Lb);
        w = paper_w;
        n_w = 6;
    }
    if (n_thr != (size_t)Lb)
        return cl_error("%zu thresholds given; the scan has %d blocks (one threshold per block)", n_thr, Lb);
    if (n_w != (size_t)Lb)
        return cl_error("%zu weights given; the scan has %d blocks (one weight per block)", n_w, Lb);
    char grid[256];
    grid_text(s, grid, sizeof grid);
    for (int b = 0; b < Lb; b++) {
        double t = thr[b];
        if (!isfinite(t) || t < s->prefilter - CL_GRID_TOL || t > 1 + CL_GRID_TOL)
            return cl_error("threshold %g of block %d is outside [prefilter %g, 1]", t, b, s->prefilter);
        int k = -1;
        for (int j = 0; j < s->NB; j++)
            if (fabs(t - s->bin_lower[j]) <= CL_GRID_TOL) k = j;
        if (k < 0)
            return cl_error("threshold %g of block %d is not on the scan's grid of bin lower edges: %s",
                            t, b, grid);
        thr_out[b] = s->bin_lower[k];
        kbin_out[b] = k;
    }
    double sum = 0;
    for (int b = 0; b < Lb; b++) {
        if (!isfinite(w[b]) || w[b] < 0) return cl_error("weight %g of block %d is negative", w[b], b);
        w_out[b] = w[b];
        sum += w[b];
    }
    if (!(sum > 0)) return cl_error("all weights are 0: the approximation would be empty");
    return 0;
}

/* ------------------------------------------------------------ reduction */

void cl_reduction_free(cl_reduction *r) {
    if (!r) return;
    free(r->approx);
    free(r->hellinger);
    free(r->empty);
    free(r->model_probs);
    free(r->approx_ind);
    free(r->approx_tok);
    free(r->approx_p);
    cl_scan_model_free(&r->model);
    free(r->n_matches);
    free(r->mean_matches_bin);
    for (size_t i = 0; i < r->n_baselines; i++) {
        free(r->baselines[i].hellinger);
        free(r->baselines[i].empty);
    }
    free(r->baselines);
    free(r);
}

size_t cl_scan_block_prompts(const cl_scan *s) {
    size_t row = (size_t)s->Lb * (size_t)s->NB * (size_t)s->V * sizeof(int32_t);
    size_t pb = READ_BLOCK_BYTES / (row ? row : 1);
    if (pb < 1) pb = 1;
    if (pb > s->P) pb = s->P;
    return pb;
}

void cl_tune_split(cl_rng *rng, size_t P, size_t n_fit, size_t n_train, size_t *perm, uint8_t *mask) {
    for (size_t i = 0; i < P; i++) perm[i] = i;
    for (size_t i = P - 1; i > 0; i--) {
        size_t j = (size_t)cl_rng_below(rng, i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (size_t i = 0; i < P; i++) mask[perm[i]] = i < n_fit ? 1 : i < n_train ? 2 : 0;
}

void cl_sqrt_probs(const float *q, size_t V, double *sq) {
    double sum = 0;
    for (size_t v = 0; v < V; v++) sum += q[v] > 0 ? q[v] : 0;
    for (size_t v = 0; v < V; v++) sq[v] = sum > 0 && q[v] > 0 ? sqrt(q[v] / sum) : 0;
}

/* Values read from scan.h5 (n of them, row = elements per prompt, from
 * prompt p0): counts are >= 0, probabilities finite in [0, 1]. 0 or -1 with
 * a message naming the dataset and the prompt. */
static int check_counts32(const cl_scan *s, const int32_t *x, size_t n, size_t row, size_t p0, int64_t max,
                          const char *what) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0 || x[i] > max)
            return cl_error("%s: %s: count %d at prompt %zu is outside [0, %lld]", s->path, what, (int)x[i],
                            p0 + i / row, (long long)max);
    return 0;
}
static int check_counts64(const cl_scan *s, const int64_t *x, size_t n, size_t row, size_t p0, int64_t max,
                          const char *what) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0 || x[i] > max)
            return cl_error("%s: %s: count %lld at prompt %zu is outside [0, %lld]", s->path, what, (long long)x[i],
                            p0 + i / row, (long long)max);
    return 0;
}
static int check_probs(const cl_scan *s, const float *x, size_t n, size_t row, size_t p0, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= 0 && x[i] <= 1))
            return cl_error("%s: %s: %g at prompt %zu is not a probability", s->path, what, (double)x[i], p0 + i / row);
    return 0;
}

/* Stored Hellinger distances: in [0, 1] or exactly CL_H_EMPTY. */
static int check_hellinger(const cl_scan *s, const double *x, size_t n, size_t row, size_t p0, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= 0 && x[i] <= 1) && x[i] != CL_H_EMPTY)
            return cl_error("%s: %s: %g at prompt %zu is not a Hellinger distance", s->path, what, x[i], p0 + i / row);
    return 0;
}

static double hellinger_ff(const float *p, const float *q, size_t V, double *tmp) {
    for (size_t v = 0; v < V; v++) tmp[v] = p[v];
    return cl_hellinger_df(tmp, q, V);
}

/* The baselines' names and labels, and their [P] arrays (r->n_baselines = nbl). */
static int name_baselines(const cl_scan *s, cl_reduction *r, const double *thr, const char *const *compare_labels,
                          size_t nbl) {
    size_t P = r->P, Lb = (size_t)r->Lb, NL = (size_t)r->NL;
    r->n_baselines = nbl;
    for (size_t i = 0; i < nbl; i++) {
        cl_baseline *bl = &r->baselines[i];
        bl->hellinger = cl_trymalloc(P, sizeof(double), "baseline");
        bl->empty = cl_trycalloc(P, 1, "baseline");
        if (!bl->hellinger || !bl->empty) return -1;
        if (i < Lb) {
            size_t mb = (size_t)s->first_block + i;
            snprintf(bl->name, sizeof bl->name, "block_%zu", mb);
            snprintf(bl->label, sizeof bl->label, "block %zu alone (> %g)", mb, thr[i]);
        } else if (i < r->b_ngram) {
            snprintf(bl->name, sizeof bl->name, "lens_%zu", i - Lb);
            snprintf(bl->label, sizeof bl->label, "logit lens, block %zu%s", i - Lb,
                     i - Lb == NL - 1 ? " (= the model)" : ""); /* the last block's lens is the model's head */
        } else if (i == r->b_ngram) {
            snprintf(bl->name, sizeof bl->name, "ngram");
            snprintf(bl->label, sizeof bl->label, "exact-string n-gram");
        } else if (i == r->b_unigram) {
            snprintf(bl->name, sizeof bl->name, "unigram");
            snprintf(bl->label, sizeof bl->label, "unigram");
        } else {
            size_t c = i - r->b_compare;
            snprintf(bl->name, sizeof bl->name, "compare_%zu", c);
            snprintf(bl->label, sizeof bl->label, "other model: %s",
                     compare_labels && compare_labels[c] ? compare_labels[c] : "?");
        }
    }
    return 0;
}

/* Prompts per read block of a model_sparse scan: as many as READ_BLOCK_BYTES
 * hold of the average prompt's sparse rows (counts, support, n-gram: about 16
 * bytes an entry with their offsets) and dense match counts. */
static size_t sparse_block_prompts(const cl_scan *s) {
    size_t P = s->P ? s->P : 1;
    double per = 16.0 * ((double)s->nnz + (double)s->n_support + (double)s->n_next) / (double)P +
                 (double)s->Lb * (double)s->NB * 16.0 + (double)s->NL * 8.0 + 64.0;
    double pb = (double)READ_BLOCK_BYTES / per;
    size_t n = pb < 1 ? 1 : pb > (double)P ? P : (size_t)pb;
    return n;
}

static void set_h(cl_baseline *b, size_t p, double h) {
    b->hellinger[p] = h;
    b->empty[p] = h == CL_H_EMPTY;
}

/* cl_reduce on a model_sparse scan: every distribution on its prompt's
 * support (r->model, read whole: it follows the supports), read in blocks of
 * PB prompts; nm [PB, Lb, NB] and lensh [PB, NL] scratch. 0 or -1. */
static int reduce_sparse(const cl_scan *s, cl_reduction *r, const double *w, const int *kbin, size_t PB, int64_t *nm,
                         double *lensh) {
    size_t P = s->P, Lb = (size_t)s->Lb, NB = (size_t)s->NB, NL = (size_t)s->NL;
    const cl_scan_model *m = &r->model;
    if (cl_scan_read_model(s, 0, P, &r->model)) return -1;
    size_t ns_max = 1;
    for (size_t p = 0; p < P; p++)
        if ((size_t)(m->ind[p + 1] - m->ind[p]) > ns_max) ns_max = (size_t)(m->ind[p + 1] - m->ind[p]);
    double *above = cl_trymalloc(Lb * ns_max, sizeof(double), "block sums");
    double *a = cl_trymalloc(ns_max, sizeof(double), "approximation row");
    double *uh = cl_trymalloc(PB, sizeof(double), "unigram block");
    r->approx_ind = cl_trymalloc(P + 1, sizeof(int64_t), "approximation offsets");
    size_t cap = 1024, ne = 0;
    r->approx_tok = cl_trymalloc(cap, sizeof(int32_t), "approximation");
    r->approx_p = cl_trymalloc(cap, sizeof(double), "approximation");
    cl_scan_rows c = {0}, g = {0};
    int rc = -1;
    if (!above || !a || !uh || !r->approx_ind || !r->approx_tok || !r->approx_p) goto out;
    r->approx_ind[0] = 0;
    double t0 = cl_wall_seconds();
    for (size_t p0 = 0; p0 < P; p0 += PB) {
        size_t n = P - p0 < PB ? P - p0 : PB;
        cl_scan_rows_free(&c), cl_scan_rows_free(&g);
        if (cl_scan_read_rows(s, p0, n, &c) || cl_scan_read_next(s, p0, n, &g) ||
            cl_h5_read_rows(s->file, CL_SCAN_FREQ_N_MATCHES, H5T_NATIVE_INT64, p0, n, nm) ||
            check_counts64(s, nm, n * Lb * NB, Lb * NB, p0, s->n_substrings, CL_SCAN_FREQ_N_MATCHES) ||
            cl_h5_read_rows(s->file, CL_SCAN_LENS_HELLINGER, H5T_NATIVE_DOUBLE, p0, n, lensh) ||
            check_hellinger(s, lensh, n * NL, NL, p0, CL_SCAN_LENS_HELLINGER) ||
            cl_h5_read_rows(s->file, CL_SCAN_UNIGRAM_HELLINGER, H5T_NATIVE_DOUBLE, p0, n, uh) ||
            check_hellinger(s, uh, n, 1, p0, CL_SCAN_UNIGRAM_HELLINGER))
            goto out;
        for (size_t i = 0; i < n; i++) {
            size_t p = p0 + i, ns = (size_t)(m->ind[p + 1] - m->ind[p]);
            const int32_t *st = m->tok + m->ind[p];
            const float *q = m->prob + m->ind[p];
            double sq = m->sum[p], rest = m->rest[p];
            for (size_t j = 0; j < ns; j++) a[j] = 0;
            for (size_t b = 0; b < Lb; b++) {
                double *ab = above + b * ns;
                for (size_t j = 0; j < ns; j++) ab[j] = 0;
                const int64_t *mb = nm + (i * Lb + b) * NB;
                int64_t mm = 0;
                for (size_t k = 0; k < NB; k++) {
                    r->mean_matches_bin[b * NB + k] += (double)mb[k];
                    int used = k >= (size_t)kbin[b];
                    if (used) mm += mb[k];
                    size_t row = (i * Lb + b) * NB + k;
                    /* every bin's tokens are checked, not only those above the threshold */
                    for (int64_t e = c.ind[row]; e < c.ind[row + 1]; e++) {
                        long j = cl_support_find(st, ns, c.tok[e]);
                        if (j < 0) {
                            cl_error("%s: %s: token %d of prompt %zu (block %zu, bin %zu) is not in its support "
                                     "(%s): the file is inconsistent",
                                     s->path, CL_SCAN_FREQ_NEXT_TOKEN, (int)c.tok[e], p, b, k,
                                     CL_SCAN_MODEL_SUPPORT_TOKEN);
                            goto out;
                        }
                        if (used) ab[j] += (double)c.cnt[e];
                    }
                }
                r->n_matches[p * Lb + b] = mm;
                for (size_t j = 0; j < ns; j++) a[j] += w[b] * ab[j];
                set_h(&r->baselines[b], p, cl_hellinger_sup(ab, q, ns, sq, rest));
            }
            for (size_t l = 0; l < NL; l++) set_h(&r->baselines[r->b_lens + l], p, lensh[i * NL + l]);
            double sum = 0;
            for (size_t j = 0; j < ns; j++) sum += a[j];
            double h = cl_hellinger_sup(a, q, ns, sq, rest);
            r->hellinger[p] = h;
            r->empty[p] = h == CL_H_EMPTY;
            if (ne + ns > cap) {
                while (ne + ns > cap) cap *= 2;
                int32_t *t = realloc(r->approx_tok, cap * sizeof *t);
                if (t) r->approx_tok = t;
                double *v = t ? realloc(r->approx_p, cap * sizeof *v) : NULL;
                if (v) r->approx_p = v;
                if (!t || !v) {
                    cl_error("out of memory for the approximation");
                    goto out;
                }
            }
            /* the nonzero entries (none where empty) */
            if (sum > 0)
                for (size_t j = 0; j < ns; j++)
                    if (a[j] != 0) r->approx_tok[ne] = st[j], r->approx_p[ne++] = a[j] / sum;
            r->approx_ind[p + 1] = (int64_t)ne;
            /* the n-gram on the support */
            for (size_t j = 0; j < ns; j++) a[j] = 0;
            for (int64_t e = g.ind[i]; e < g.ind[i + 1]; e++) {
                long j = cl_support_find(st, ns, g.tok[e]);
                if (j < 0) {
                    cl_error("%s: %s: token %d of prompt %zu is not in its support (%s): the file is inconsistent",
                             s->path, CL_SCAN_PROMPT_NEXT_TOKEN, (int)g.tok[e], p, CL_SCAN_MODEL_SUPPORT_TOKEN);
                    goto out;
                }
                a[j] = (double)g.cnt[e];
            }
            set_h(&r->baselines[r->b_ngram], p, cl_hellinger_sup(a, q, ns, sq, rest));
            set_h(&r->baselines[r->b_unigram], p, uh[i]);
        }
    }
    r->seconds_read = cl_wall_seconds() - t0;
    rc = 0;
out:
    cl_scan_rows_free(&c), cl_scan_rows_free(&g);
    free(above), free(a), free(uh);
    return rc;
}

cl_reduction *cl_reduce(const cl_scan *s, const double *thr, const double *w, const int *kbin,
                        const float *const *compare_probs, const char *const *compare_labels,
                        size_t n_compare) {
    size_t P = s->P, Lb = (size_t)s->Lb, V = (size_t)s->V, NB = (size_t)s->NB;
    cl_reduction *r = cl_trycalloc(1, sizeof *r, "reduction");
    if (!r) return NULL;
    r->P = P;
    r->Lb = s->Lb;
    r->V = s->V;
    r->NB = s->NB;
    r->NL = s->NL;
    r->first_block = s->first_block;
    const size_t NL = (size_t)s->NL;
    r->b_lens = Lb, r->b_ngram = Lb + NL, r->b_unigram = Lb + NL + 1, r->b_compare = Lb + NL + 2;
    for (size_t b = 0; b < Lb; b++) r->thresholds[b] = thr[b], r->weights[b] = w[b];
    size_t nbl = r->b_compare + n_compare;
    if (s->model_sparse && n_compare) {
        cl_error("%s: other models need the model's whole distribution, which a model_sparse scan does not "
                 "store", s->path);
        cl_reduction_free(r);
        return NULL;
    }
    size_t PB = cl_scan_block_prompts(s);
    int32_t *counts = NULL, *next = NULL;
    int64_t *nm = NULL, *unig = NULL;
    float *lens = NULL;
    double *above = NULL, *tmp = NULL, *unigram = NULL, *lensh = NULL;
    r->hellinger = cl_trymalloc(P, sizeof(double), "hellinger");
    r->empty = cl_trycalloc(P, 1, "empty flags");
    r->n_matches = cl_trycalloc(P * Lb, sizeof(int64_t), "match counts");
    r->mean_matches_bin = cl_trycalloc(Lb * NB, sizeof(double), "match counts");
    r->baselines = cl_trycalloc(nbl, sizeof(cl_baseline), "baselines");
    if (s->model_sparse) {
        r->sparse = 1;
        PB = sparse_block_prompts(s);
        nm = cl_trymalloc(PB * Lb * NB, sizeof(int64_t), "match-count block");
        lensh = cl_trymalloc(PB * NL, sizeof(double), "lens block");
        if (!r->hellinger || !r->empty || !r->n_matches || !r->mean_matches_bin || !r->baselines || !nm || !lensh ||
            name_baselines(s, r, thr, compare_labels, nbl) || reduce_sparse(s, r, w, kbin, PB, nm, lensh))
            goto fail;
        goto stats;
    }
    r->approx = cl_trycalloc(P * V, sizeof(double), "approximation");
    r->model_probs = cl_trymalloc(P * V, sizeof(float), "model probabilities");
    counts = cl_trymalloc(PB * Lb * NB * V, sizeof(int32_t), "count block");
    nm = cl_trymalloc(PB * Lb * NB, sizeof(int64_t), "match-count block");
    /* csr: the lens's H to the model, stored (scan computed them from the dense rows) */
    lens = s->csr ? NULL : cl_trymalloc(PB * NL * V, sizeof(float), "lens block");
    lensh = s->csr ? cl_trymalloc(PB * NL, sizeof(double), "lens block") : NULL;
    next = cl_trymalloc(PB * V, sizeof(int32_t), "n-gram block");
    unig = cl_trymalloc(V, sizeof(int64_t), "unigram");
    unigram = cl_trymalloc(V, sizeof(double), "unigram");
    above = cl_trymalloc(Lb * V, sizeof(double), "block sums");
    tmp = cl_trymalloc(V, sizeof(double), "scratch");
    if (!r->approx || !r->hellinger || !r->empty || !r->model_probs || !r->n_matches ||
        !r->mean_matches_bin || !r->baselines || !counts || !nm || !(lens || lensh) || !next || !unig ||
        !unigram || !above || !tmp || name_baselines(s, r, thr, compare_labels, nbl))
        goto fail;
    hsize_t dV = V, dPV[2] = {P, V};
    if (cl_h5_read_exact(s->file, CL_SCAN_UNIGRAM, H5T_NATIVE_INT64, 1, &dV, unig) ||
        cl_h5_read_exact(s->file, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, 2, dPV, r->model_probs) ||
        check_probs(s, r->model_probs, P * V, V, 0, CL_SCAN_MODEL_PROBS))
        goto fail;
    for (size_t v = 0; v < V; v++) unigram[v] = (double)unig[v];

    double t0 = cl_wall_seconds();
    for (size_t p0 = 0; p0 < P; p0 += PB) {
        size_t n = P - p0 < PB ? P - p0 : PB;
        if (cl_scan_read_counts(s, p0, n, counts) ||
            cl_h5_read_rows(s->file, CL_SCAN_FREQ_N_MATCHES, H5T_NATIVE_INT64, p0, n, nm) ||
            (lens ? cl_h5_read_rows(s->file, CL_SCAN_LENS_PROBS, H5T_NATIVE_FLOAT, p0, n, lens) ||
                        check_probs(s, lens, n * NL * V, NL * V, p0, CL_SCAN_LENS_PROBS)
                  : cl_h5_read_rows(s->file, CL_SCAN_LENS_HELLINGER, H5T_NATIVE_DOUBLE, p0, n, lensh) ||
                        check_hellinger(s, lensh, n * NL, NL, p0, CL_SCAN_LENS_HELLINGER)) ||
            cl_h5_read_rows(s->file, CL_SCAN_PROMPT_NEXT, H5T_NATIVE_INT32, p0, n, next) ||
            check_counts64(s, nm, n * Lb * NB, Lb * NB, p0, s->n_substrings, CL_SCAN_FREQ_N_MATCHES) ||
            check_counts32(s, next, n * V, V, p0, s->n_followers, CL_SCAN_PROMPT_NEXT))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            size_t p = p0 + i;
            const float *q = r->model_probs + p * V;
            double *a = r->approx + p * V;
            for (size_t b = 0; b < Lb; b++) {
                double *ab = above + b * V;
                for (size_t v = 0; v < V; v++) ab[v] = 0;
                const int32_t *cb = counts + ((i * Lb + b) * NB) * V;
                const int64_t *mb = nm + (i * Lb + b) * NB;
                int64_t m = 0;
                for (size_t k = 0; k < NB; k++) {
                    r->mean_matches_bin[b * NB + k] += (double)mb[k];
                    if (k < (size_t)kbin[b]) continue;
                    m += mb[k];
                    const int32_t *ck = cb + k * V;
                    for (size_t v = 0; v < V; v++) ab[v] += (double)ck[v];
                }
                r->n_matches[p * Lb + b] = m;
                for (size_t v = 0; v < V; v++) a[v] += w[b] * ab[v];
                double h = cl_hellinger_df(ab, q, V);
                r->baselines[b].hellinger[p] = h;
                r->baselines[b].empty[p] = h == CL_H_EMPTY;
            }
            for (size_t l = 0; l < NL; l++) {
                double h = lens ? hellinger_ff(lens + (i * NL + l) * V, q, V, tmp) : lensh[i * NL + l];
                r->baselines[r->b_lens + l].hellinger[p] = h;
                r->baselines[r->b_lens + l].empty[p] = h == CL_H_EMPTY;
            }
            double sum = 0;
            for (size_t v = 0; v < V; v++) sum += a[v];
            double h = cl_hellinger_df(a, q, V);
            r->hellinger[p] = h;
            r->empty[p] = h == CL_H_EMPTY;
            if (sum > 0)
                for (size_t v = 0; v < V; v++) a[v] /= sum;
            else
                for (size_t v = 0; v < V; v++) a[v] = 0;
            for (size_t v = 0; v < V; v++) tmp[v] = (double)next[i * V + v];
            h = cl_hellinger_df(tmp, q, V);
            r->baselines[r->b_ngram].hellinger[p] = h;
            r->baselines[r->b_ngram].empty[p] = h == CL_H_EMPTY;
            h = cl_hellinger_df(unigram, q, V);
            r->baselines[r->b_unigram].hellinger[p] = h;
            r->baselines[r->b_unigram].empty[p] = h == CL_H_EMPTY;
            for (size_t c = 0; c < n_compare; c++) {
                h = hellinger_ff(compare_probs[c] + p * V, q, V, tmp);
                r->baselines[r->b_compare + c].hellinger[p] = h;
                r->baselines[r->b_compare + c].empty[p] = h == CL_H_EMPTY;
            }
        }
    }
    r->seconds_read = cl_wall_seconds() - t0;
stats:
    for (size_t k = 0; k < Lb * NB; k++) r->mean_matches_bin[k] /= (double)P;
    if (cl_stats_compute(r->hellinger, P, &r->stats)) goto fail;
    for (size_t i = 0; i < nbl; i++)
        if (cl_stats_compute(r->baselines[i].hellinger, P, &r->baselines[i].stats)) goto fail;
    goto done;
fail:
    cl_reduction_free(r);
    r = NULL;
done:
    free(counts);
    free(nm);
    free(lens);
    free(lensh);
    free(next);
    free(unig);
    free(unigram);
    free(above);
    free(tmp);
    return r;
}

/* ------------------------------------------------- other models' outputs */

/* Rank q's prompts [*a, *b) of P: whole batches of `bmax` prompts, so that
 * every batch (and with it every forward pass) is the same whatever the
 * number of ranks: results do not depend on it (a different batch size can
 * change the last bits of the sgemm inside). */
static void probs_range(size_t P, size_t bmax, int q, int size, size_t *a, size_t *b) {
    size_t nb = (P + bmax - 1) / bmax;
    *a = nb * (size_t)q / (size_t)size * bmax;
    *b = nb * (size_t)(q + 1) / (size_t)size * bmax;
    if (*a > P) *a = P;
    if (*b > P) *b = P;
}

int cl_reduce_model_probs(const cl_model *m, const cl_scan *s, char **texts, MPI_Comm comm,
                          float *probs_out) {
    int rank, size;
    cl_par_comm_rank(comm, &rank);
    cl_par_comm_size(comm, &size);
    size_t P = s->P, V = (size_t)s->V;
    int err = 0;
    if (m->cfg.vocab_size != s->V || memcmp(m->vocab, s->vocab, V * sizeof(uint32_t)))
        err = cl_error("its vocabulary (%d tokens) differs from the scan's (%d tokens)",
                       m->cfg.vocab_size, s->V);
    if (!err && (P * V > 0x7fffffffu)) err = cl_error("too many prompts to gather (%zu)", P);
    const size_t BMAX = 64;
    size_t lo, hi;
    probs_range(P, BMAX, rank, size, &lo, &hi);
    size_t n = hi - lo;
    int T = m->cfg.block_size;
    float *mine = NULL;
    int32_t *tok = NULL;
    cl_forward *fw = NULL;
    if (!err) {
        mine = cl_trymalloc(n ? n * V : 1, sizeof(float), "model probabilities");
        tok = cl_trymalloc(BMAX * (size_t)T, sizeof(int32_t), "tokens");
        fw = mine && tok ? cl_forward_create(m, (int)BMAX, T) : NULL;
        if (!fw) err = -1;
    }
    /* Batches of consecutive prompts of equal length, never across a multiple of BMAX. */
    for (size_t p = lo; !err && p < hi;) {
        size_t len0 = 0, B = 0;
        while (p + B < hi && B < BMAX && (B == 0 || (p + B) % BMAX != 0)) {
            size_t nt;
            const char *t = texts[p + B];
            if (cl_vocab_encode(m->vocab, m->cfg.vocab_size, t, strlen(t), tok + B * (size_t)T,
                                (size_t)T, &nt)) {
                err = cl_error_prefix("prompt %zu: ", p + B);
                break;
            }
            if (nt == 0 || nt > (size_t)T) {
                err = cl_error("prompt %zu has %zu characters; the model takes 1..%d", p + B, nt, T);
                break;
            }
            if (B == 0) len0 = nt;
            else if (nt != len0) break;
            B++;
        }
        if (err) break;
        /* tokens of row j start at j*T; compact to [B, len0] */
        for (size_t j = 1; j < B; j++) memmove(tok + j * len0, tok + j * (size_t)T, len0 * sizeof(int32_t));
        float *out = mine + (p - lo) * V;
        if (cl_forward_run(fw, tok, (int)B, (int)len0, NULL, 0, CL_LOGITS_LAST, out)) {
            err = -1;
            break;
        }
        cl_softmax_rows(out, B, (int)V);
        p += B;
    }
    cl_forward_free(fw);
    free(tok);
    if (!err && cl_par_fault("reduce.compare", comm)) err = -1;
    if (cl_par_agree(err, comm)) {
        free(mine);
        return -1;
    }
    int *cnt = NULL, *dsp = NULL;
    if (rank == 0) {
        cnt = malloc((size_t)size * sizeof(int));
        dsp = malloc((size_t)size * sizeof(int));
        if (cnt && dsp)
            for (int q = 0; q < size; q++) {
                size_t a, b;
                probs_range(P, BMAX, q, size, &a, &b);
                cnt[q] = (int)((b - a) * V);
                dsp[q] = (int)(a * V);
            }
    }
    int ok = rank != 0 || (cnt && dsp) || cl_error("out of memory gathering the probabilities") == 0;
    int ok_all = !cl_par_agree(ok ? 0 : -1, comm);
    if (ok_all) cl_par_gatherv(mine, (int)(n * V), MPI_FLOAT, probs_out, cnt, dsp, MPI_FLOAT, 0, comm);
    free(cnt);
    free(dsp);
    free(mine);
    return ok_all ? 0 : -1;
}

/* ---------------------------------------------------------------- tuning */

/* The fit set, sparse: prompt r's support is the union of the tokens of its
 * (block, bin) count rows (sup[off[r]..off[r+1]), increasing); off it every
 * count is 0, so the approximation is 0 there and the model's mass there
 * enters H as one number, rest[r]. Memory: blocks x bins x support cells per
 * prompt, not blocks x bins x V. */
typedef struct {
    size_t n, Lb, NB;
    size_t *off;   /* [n + 1] */
    int32_t *S;    /* prompt r at Lb * NB * off[r]: [Lb, NB, ns] counts above bin k (suffix sums) */
    double *sq;    /* [off[n]] sqrt of the model's probabilities, normalised, on the support */
    double *rest;  /* [n] sum of sq^2 off the support */
    double *base;  /* [off[n]] scratch: sum over the other blocks */
} tune_set;

/* Mean over the set of H(base + wb * S[:, b, k], q), empty counted as 1. */
static double tune_eval(const tune_set *t, size_t b, size_t k, double wb) {
    double tot = 0;
    for (size_t p = 0; p < t->n; p++) {
        size_t ns = t->off[p + 1] - t->off[p];
        const double *ba = t->base + t->off[p], *sq = t->sq + t->off[p];
        const int32_t *sk = t->S + t->Lb * t->NB * t->off[p] + (b * t->NB + k) * ns;
        double sa = 0;
        for (size_t j = 0; j < ns; j++) sa += ba[j] + wb * (double)sk[j];
        if (!(sa > 0)) {
            tot += 1;
            continue;
        }
        double acc = 0, inv = 1 / sa;
        for (size_t j = 0; j < ns; j++) {
            double a = ba[j] + wb * (double)sk[j];
            double d = sqrt(a * inv) - sq[j];
            acc += d * d;
        }
        double h = sqrt(acc + t->rest[p]) / sqrt(2.0);
        tot += h > 1 ? 1 : h;
    }
    return t->n ? tot / (double)t->n : 0;
}

static void tune_base(tune_set *t, const int *kb, const double *w, size_t skip) {
    for (size_t p = 0; p < t->n; p++) {
        size_t ns = t->off[p + 1] - t->off[p];
        double *ba = t->base + t->off[p];
        for (size_t j = 0; j < ns; j++) ba[j] = 0;
        for (size_t b = 0; b < t->Lb; b++) {
            if (b == skip || w[b] == 0) continue;
            const int32_t *sk = t->S + t->Lb * t->NB * t->off[p] + (b * t->NB + (size_t)kb[b]) * ns;
            for (size_t j = 0; j < ns; j++) ba[j] += w[b] * (double)sk[j];
        }
    }
}

/* The support of one prompt's RP count rows (rows from row r0 of c): the
 * tokens, increasing, into sup (ns of them); pos[t] = its place (pos is all
 * -1 outside the support: the caller resets it with cl_support_clear). */
size_t cl_count_support(const cl_scan_rows *c, size_t r0, size_t RP, int32_t *pos, int32_t *sup) {
    size_t ns = 0;
    for (size_t r = r0; r < r0 + RP; r++)
        for (int64_t e = c->ind[r]; e < c->ind[r + 1]; e++)
            if (pos[c->tok[e]] < 0) pos[c->tok[e]] = 0, sup[ns++] = c->tok[e];
    /* increasing: a counting pass over the marks would cost V; sort the few */
    for (size_t i = 1; i < ns; i++) {
        int32_t x = sup[i];
        size_t j = i;
        if (x > sup[j - 1]) continue;
        /* binary insertion */
        size_t lo = 0, hi = i;
        while (lo < hi) {
            size_t m = (lo + hi) / 2;
            if (sup[m] < x) lo = m + 1;
            else hi = m;
        }
        memmove(sup + lo + 1, sup + lo, (i - lo) * sizeof *sup);
        sup[lo] = x;
    }
    for (size_t j = 0; j < ns; j++) pos[sup[j]] = (int32_t)j;
    return ns;
}
void cl_support_clear(int32_t *pos, const int32_t *sup, size_t ns) {
    for (size_t j = 0; j < ns; j++) pos[sup[j]] = -1;
}

/* The count support's place in the model's support of prompt i of m
 * (msup[j] = the entry of sup[j] there, from 0 at the prompt's first entry):
 * every count token must be in it (a csr scan's support holds the tokens of
 * every /freq/next row), else the file is inconsistent. 0 or -1 with a message
 * naming the dataset and the prompt. */
static int model_places(const cl_scan *s, const cl_scan_model *m, size_t i, size_t p, const int32_t *sup, size_t ns,
                        int64_t *msup) {
    const int32_t *mt = m->tok + m->ind[i];
    size_t mn = (size_t)(m->ind[i + 1] - m->ind[i]);
    for (size_t j = 0; j < ns; j++) {
        long e = cl_support_find(mt, mn, sup[j]);
        if (e < 0)
            return cl_error("%s: %s: prompt %zu: token %d of its counts (%s) is not in its model support: an "
                            "inconsistent file",
                            s->path, s->model_sparse ? CL_SCAN_MODEL_SUPPORT_TOKEN : CL_SCAN_MODEL_PROBS, p,
                            (int)sup[j],
                            s->csr ? CL_SCAN_FREQ_NEXT_TOKEN : CL_SCAN_FREQ_COUNTS);
        msup[j] = e;
    }
    return 0;
}

/* Prompts read at once by tune (sparse counts and model rows). */
#define TUNE_CHUNK 64

static void rescale_max1(double *w, size_t Lb) {
    double m = 0;
    for (size_t b = 0; b < Lb; b++) m = w[b] > m ? w[b] : m;
    if (m > 0)
        for (size_t b = 0; b < Lb; b++) w[b] /= m;
}

/* Block coordinate descent from (kb, w); returns the final objective. */
static double tune_descend(tune_set *t, int *kb, double *w, int *sweeps) {
    size_t Lb = t->Lb, NB = t->NB;
    rescale_max1(w, Lb);
    tune_base(t, kb, w, Lb);
    double obj = tune_eval(t, 0, (size_t)kb[0], 0);
    for (int sw = 0; sw < 20; sw++) {
        double start = obj;
        (*sweeps)++;
        for (size_t b = 0; b < Lb; b++) {
            tune_base(t, kb, w, b);
            /* thresholds: exhaustive over the grid */
            size_t bk = (size_t)kb[b];
            double bo = tune_eval(t, b, bk, w[b]);
            for (size_t k = 0; k < NB; k++) {
                if (k == (size_t)kb[b]) continue;
                double o = tune_eval(t, b, k, w[b]);
                if (o < bo - 1e-12) bo = o, bk = k;
            }
            kb[b] = (int)bk;
            /* weight: multiplicative ladder, then golden section in log space */
            int others = 0;
            for (size_t j = 0; j < Lb; j++) others |= j != b && w[j] > 0;
            double bw = w[b];
            if (w[b] > 0) {
                static const double f[] = {0.125, 0.25, 0.5, 2, 4, 8};
                for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
                    double o = tune_eval(t, b, bk, w[b] * f[i]);
                    if (o < bo - 1e-12) bo = o, bw = w[b] * f[i];
                }
            } else {
                static const double f[] = {1e-3, 1e-2, 1e-1, 1, 10};
                for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
                    double o = tune_eval(t, b, bk, f[i]);
                    if (o < bo - 1e-12) bo = o, bw = f[i];
                }
            }
            if (others) {
                double o = tune_eval(t, b, bk, 0);
                if (o < bo - 1e-12) bo = o, bw = 0;
            }
            if (bw > 0) {
                const double g = 0.6180339887498949;
                double lo = log(bw) - log(2.0), hi = log(bw) + log(2.0);
                double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
                double f1 = tune_eval(t, b, bk, exp(x1)), f2 = tune_eval(t, b, bk, exp(x2));
                for (int it = 0; it < 10; it++) {
                    if (f1 < f2) hi = x2, x2 = x1, f2 = f1, x1 = hi - g * (hi - lo), f1 = tune_eval(t, b, bk, exp(x1));
                    else lo = x1, x1 = x2, f1 = f2, x2 = lo + g * (hi - lo), f2 = tune_eval(t, b, bk, exp(x2));
                }
                double xm = f1 < f2 ? x1 : x2, fm = f1 < f2 ? f1 : f2;
                if (fm < bo - 1e-12) bo = fm, bw = exp(xm);
            }
            w[b] = bw;
            obj = bo;
        }
        rescale_max1(w, Lb);
        if (start - obj < 1e-6) break;
    }
    return obj;
}

int cl_sup_scratch_init(cl_sup_scratch *x, size_t V) {
    *x = (cl_sup_scratch){0};
    x->pos = cl_trymalloc(V ? V : 1, sizeof *x->pos, "support scratch");
    x->sup = cl_trymalloc(V ? V : 1, sizeof *x->sup, "support scratch");
    x->msup = cl_trymalloc(V ? V : 1, sizeof *x->msup, "support scratch");
    x->a = cl_trymalloc(V ? V : 1, sizeof *x->a, "support scratch");
    if (!x->pos || !x->sup || !x->msup || !x->a) {
        cl_sup_scratch_free(x);
        return -1;
    }
    for (size_t v = 0; v < V; v++) x->pos[v] = -1;
    return 0;
}

void cl_sup_scratch_free(cl_sup_scratch *x) {
    free(x->pos), free(x->sup), free(x->msup), free(x->a), free(x->am);
    *x = (cl_sup_scratch){0};
}

int cl_sup_hellinger(const cl_scan *s, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p,
                     const double *f, cl_sup_scratch *x, double *h) {
    const size_t RP = (size_t)s->Lb * (size_t)s->NB;
    size_t ns = cl_count_support(c, i * RP, RP, x->pos, x->sup), mn = (size_t)(m->ind[i + 1] - m->ind[i]);
    int rc = -1;
    if (model_places(s, m, i, p, x->sup, ns, x->msup)) goto done;
    if (mn > x->am_cap) {
        free(x->am);
        x->am_cap = 0;
        if (!(x->am = cl_trymalloc(mn, sizeof *x->am, "support scratch"))) goto done;
        x->am_cap = mn;
    }
    for (size_t j = 0; j < ns; j++) x->a[j] = 0;
    for (size_t r = 0; r < RP; r++) {
        if (f[r] == 0) continue;
        size_t row = i * RP + r;
        for (int64_t e = c->ind[row]; e < c->ind[row + 1]; e++) x->a[x->pos[c->tok[e]]] += f[r] * (double)c->cnt[e];
    }
    for (size_t j = 0; j < mn; j++) x->am[j] = 0;
    for (size_t j = 0; j < ns; j++) x->am[x->msup[j]] = x->a[j];
    *h = cl_hellinger_sup(x->am, m->prob + m->ind[i], mn, m->sum[i], m->rest[i]);
    rc = 0;
done:
    cl_support_clear(x->pos, x->sup, ns);
    return rc;
}

int cl_model_on_support(const cl_scan *s, const cl_scan_model *m, size_t i, size_t p, const int32_t *sup,
                        size_t ns, const int32_t *pos, int64_t *msup, double *sq, double *rest) {
    if (model_places(s, m, i, p, sup, ns, msup)) return -1;
    /* sqrt(q / sum) as cl_sqrt_probs (a dense scan: the same bits as its dense row) */
    double sum = m->sum[i], r = sum > 0 ? m->rest[i] / sum : 0;
    const float *mq = m->prob + m->ind[i];
    const int32_t *mt = m->tok + m->ind[i];
    size_t mn = (size_t)(m->ind[i + 1] - m->ind[i]);
    for (size_t e = 0; e < mn; e++)
        if (pos[mt[e]] < 0) {
            double x = sum > 0 && mq[e] > 0 ? sqrt(mq[e] / sum) : 0;
            r += x * x;
        }
    for (size_t j = 0; j < ns; j++) {
        float x = mq[msup[j]];
        sq[j] = sum > 0 && x > 0 ? sqrt(x / sum) : 0;
    }
    *rest = r;
    return 0;
}

int cl_scan_each_prompt(const cl_scan *s, const uint8_t *mask, uint8_t want, cl_prompt_fn fn, void *ctx) {
    cl_scan_rows c = {0};
    cl_scan_model m = {0};
    int rc = -1;
    for (size_t p0 = 0; p0 < s->P; p0 += TUNE_CHUNK) {
        size_t n = s->P - p0 < TUNE_CHUNK ? s->P - p0 : TUNE_CHUNK, nf = 0;
        for (size_t i = 0; i < n; i++) nf += !mask || mask[p0 + i] == want;
        if (!nf) continue;
        cl_scan_rows_free(&c);
        cl_scan_model_free(&m);
        if (cl_scan_read_rows(s, p0, n, &c) || cl_scan_read_model(s, p0, n, &m)) goto done;
        for (size_t i = 0; i < n; i++)
            if ((!mask || mask[p0 + i] == want) && fn(ctx, &c, i, &m, p0 + i)) goto done;
    }
    rc = 0;
done:
    cl_scan_rows_free(&c);
    cl_scan_model_free(&m);
    return rc;
}

typedef struct {
    const cl_scan *s;
    const double *f;
    cl_sup_scratch x;
    double *h;
} sup_h_ctx;

static int sup_h_one(void *ctx, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p) {
    sup_h_ctx *x = ctx;
    return cl_sup_hellinger(x->s, c, i, m, p, x->f, &x->x, x->h + p);
}

int cl_sup_hellinger_all(const cl_scan *s, const uint8_t *mask, uint8_t want, const double *f, double *h) {
    sup_h_ctx x = {.s = s, .f = f, .h = h};
    if (cl_sup_scratch_init(&x.x, (size_t)s->V)) return -1;
    int rc = cl_scan_each_prompt(s, mask, want, sup_h_one, &x);
    cl_sup_scratch_free(&x.x);
    return rc;
}

/* H of every prompt for (kb, w): the hard kernel's rows above each block's
 * threshold, against the model on its support (cl_sup_hellinger_all). */
static int hellinger_stream(const cl_scan *s, const int *kb, const double *w, double *h) {
    size_t Lb = (size_t)s->Lb, NB = (size_t)s->NB;
    double *f = cl_trymalloc(Lb * NB, sizeof *f, "kernel");
    if (!f) return -1;
    for (size_t b = 0; b < Lb; b++)
        for (size_t k = 0; k < NB; k++) f[b * NB + k] = k >= (size_t)kb[b] ? w[b] : 0;
    int rc = cl_sup_hellinger_all(s, NULL, 0, f, h);
    free(f);
    return rc;
}

/* Append prompt p (prompt i of the chunk: count rows from i * RP of c, the
 * model's row i of m) to the fit set (a cl_prompt_fn): sq on the count support;
 * rest = the mass the model has off its own support plus its mass on its
 * support but off the count support, normalised. Caps grow by doubling. 0 or
 * -1 (a count token outside the model support: an inconsistent file). */
typedef struct {
    const cl_scan *s;
    tune_set *t;
    size_t cap;    /* support cells allocated */
    cl_sup_scratch x;
} tune_load;

static int tune_add(void *ctx, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p) {
    tune_load *L = ctx;
    tune_set *t = L->t;
    size_t *cap = &L->cap;
    int32_t *pos = L->x.pos, *sup = L->x.sup;
    const cl_scan *s = L->s;
    size_t Lb = t->Lb, NB = t->NB, RP = Lb * NB, r = t->n;
    size_t ns = cl_count_support(c, i * RP, RP, pos, sup), o = t->off[r], need = o + ns;
    if (need > *cap || !t->S) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < need) nc *= 2;
        int32_t *S = realloc(t->S, nc * RP * sizeof *S);
        if (S) t->S = S;
        double *sq = S ? realloc(t->sq, nc * sizeof *sq) : NULL;
        if (sq) t->sq = sq;
        double *ba = sq ? realloc(t->base, nc * sizeof *ba) : NULL;
        if (ba) t->base = ba;
        if (!S || !sq || !ba) {
            cl_support_clear(pos, sup, ns);
            return cl_error("out of memory for the train tensor (%zu support cells x %zu blocks x bins; "
                            "tune --max-train caps it)", nc, RP);
        }
        *cap = nc;
    }
    if (cl_model_on_support(s, m, i, p, sup, ns, pos, L->x.msup, t->sq + o, t->rest + r)) {
        cl_support_clear(pos, sup, ns);
        return -1;
    }
    int32_t *dst = t->S + RP * o;
    memset(dst, 0, RP * ns * sizeof *dst);
    for (size_t b = 0; b < Lb; b++) {
        int32_t *db = dst + b * NB * ns;
        for (size_t k = 0; k < NB; k++) {
            size_t row = i * RP + b * NB + k;
            for (int64_t e = c->ind[row]; e < c->ind[row + 1]; e++) db[k * ns + (size_t)pos[c->tok[e]]] = c->cnt[e];
        }
        for (size_t k = NB - 1; k-- > 0;)
            for (size_t j = 0; j < ns; j++) db[k * ns + j] += db[(k + 1) * ns + j];
    }
    t->off[r + 1] = need;
    t->n = r + 1;
    cl_support_clear(pos, sup, ns);
    return 0;
}

static int stats_subset(const double *h, const uint8_t *mask, uint8_t want, size_t P, double *tmp,
                        cl_stats *out) {
    size_t n = 0;
    for (size_t p = 0; p < P; p++)
        if (mask[p] == want) tmp[n++] = h[p];
    return cl_stats_compute(tmp, n, out);
}

int cl_tune(const cl_scan *s, const cl_tune_opts *o, cl_tune_result *out) {
    memset(out, 0, sizeof *out);
    size_t P = s->P, Lb = (size_t)s->Lb, V = (size_t)s->V, NB = (size_t)s->NB;
    if (!(o->train_fraction > 0 && o->train_fraction < 1))
        return cl_error("train fraction %g is not in (0, 1)", o->train_fraction);
    size_t n_train = (size_t)llround(o->train_fraction * (double)P);
    if (n_train == 0 || n_train >= P)
        return cl_error("train fraction %g of %zu prompts leaves an empty train or held-out split",
                        o->train_fraction, P);
    size_t *perm = cl_trymalloc(P, sizeof *perm, "split");
    uint8_t *mask = cl_trycalloc(P, 1, "split");   /* 1 train, 0 held out, 2 unused */
    double *h = cl_trymalloc(P, sizeof *h, "hellinger");
    double *tmp = cl_trymalloc(P, sizeof *tmp, "hellinger");
    tune_set t = {0};
    tune_load L = {.s = s, .t = &t};
    int rc = -1;
    if (!perm || !mask || !h || !tmp) goto done;
    cl_rng rng;
    cl_rng_seed(&rng, o->seed);
    size_t n_fit = o->max_train && o->max_train < n_train ? o->max_train : n_train;
    cl_tune_split(&rng, P, n_fit, n_train, perm, mask);
    out->n_train = n_train;
    out->n_test = P - n_train;
    /* Load the fit set's suffix sums on each prompt's support. */
    t.Lb = Lb, t.NB = NB;
    t.off = cl_trycalloc(n_fit + 1, sizeof *t.off, "train offsets");
    t.rest = cl_trymalloc(n_fit, sizeof *t.rest, "train probabilities");
    if (!t.off || !t.rest || cl_sup_scratch_init(&L.x, V)) goto done;
    if (cl_scan_each_prompt(s, mask, 1, tune_add, &L)) goto done;
    out->support_cells = t.off[t.n];
    /* Starts: the reference (given, or the paper's for 6 blocks), uniform/median, random. */
    static const double paper_t[6] = CL_PAPER_THRESHOLDS, paper_w[6] = CL_PAPER_WEIGHTS;
    int paper_k[MAX_LB];
    double paper_wd[MAX_LB], paper_td[MAX_LB];
    out->have_paper = 0;
    if (o->n_ref) {
        if (cl_reduce_params(s, o->ref_thresholds, o->n_ref, o->ref_weights, o->n_ref, paper_td, paper_wd, paper_k))
            goto done;
        out->have_paper = 1;
    } else {
        if (Lb == 6 && cl_reduce_params(s, paper_t, 6, paper_w, 6, paper_td, paper_wd, paper_k) == 0)
            out->have_paper = 1;
        cl_error_clear();
    }
    double best = INFINITY;
    int best_k[MAX_LB];
    double best_w[MAX_LB];
    int n_starts = 1 + out->have_paper + (o->restarts > 0 ? o->restarts : 0);
    for (int st = 0; st < n_starts; st++) {
        int kb[MAX_LB];
        double w[MAX_LB];
        int kind = out->have_paper ? st : st + 1; /* 0 paper, 1 uniform, 2+ random */
        for (size_t b = 0; b < Lb; b++) {
            if (kind == 0) kb[b] = paper_k[b], w[b] = paper_wd[b];
            else if (kind == 1) kb[b] = (int)(NB / 2), w[b] = 1;
            else kb[b] = (int)cl_rng_below(&rng, NB), w[b] = pow(10, -2 + 3 * cl_rng_uniform_double(&rng));
        }
        double obj = tune_descend(&t, kb, w, &out->sweeps);
        if (obj < best) {
            best = obj;
            memcpy(best_k, kb, sizeof kb);
            memcpy(best_w, w, sizeof w);
        }
    }
    out->train_objective = best;
    if (out->have_paper)
        for (size_t b = 0; b < Lb; b++) out->ref_thresholds[b] = paper_td[b], out->ref_weights[b] = paper_wd[b];
    for (size_t b = 0; b < Lb; b++) {
        out->thresholds[b] = s->bin_lower[best_k[b]];
        out->weights[b] = best_w[b];
    }
    /* Statistics on both splits (unused train rows under --max-train count as train). */
    for (size_t p = 0; p < P; p++)
        if (mask[p] == 2) mask[p] = 1;
    if (hellinger_stream(s, best_k, best_w, h) || stats_subset(h, mask, 1, P, tmp, &out->train) ||
        stats_subset(h, mask, 0, P, tmp, &out->test))
        goto done;
    if (out->have_paper &&
        (hellinger_stream(s, paper_k, paper_wd, h) || stats_subset(h, mask, 1, P, tmp, &out->paper_train) ||
         stats_subset(h, mask, 0, P, tmp, &out->paper_test)))
        goto done;
    rc = 0;
done:
    free(perm);
    free(mask);
    free(h);
    free(tmp);
    free(t.off);
    free(t.S);
    free(t.sq);
    free(t.rest);
    free(t.base);
    cl_sup_scratch_free(&L.x);
    return rc;
}

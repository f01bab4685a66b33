/* corpuslens similar: the article's demo. The strings whose hooked activation
 * is cosine-similar to a prompt's (from /matches of scan.h5), the next-token
 * distribution they give (corpus.h5 counts), the model's prediction and their
 * Hellinger distance. Layout of scan.h5: h5schema.h. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/analysis/analysis.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/reduce/reduce.h"

#define CMD "similar"
#define MAX_BLOCKS 64

typedef struct {
    hid_t f;
    long long Lb, V, P, N, cap, first; /* Lb hooked blocks: the model's first .. first + Lb - 1 */
    double prefilter, match_thr[MAX_BLOCKS];
} scan_file;

static int read_attr_doubles(hid_t obj, const char *name, double *out, size_t n) {
    if (!cl_h5_attr_exists(obj, name)) return cl_error("attribute %s is missing", name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return cl_error("cannot open attribute %s", name);
    hid_t sp = H5Aget_space(a);
    hssize_t k = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = 0;
    if (k != (hssize_t)n) rc = cl_error("attribute %s has %lld values, expected %zu", name, (long long)k, n);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0) rc = cl_error("cannot read attribute %s", name);
    H5Aclose(a);
    return rc;
}

/* Read rows [start, start+count) of a 1-D dataset. */
static int read_slab(hid_t f, const char *path, hid_t mt, hsize_t start, hsize_t count, void *out) {
    if (count == 0) return 0;
    hsize_t dims[8];
    int r = cl_h5_shape(f, path, dims);
    if (r < 0) return -1;
    if (r != 1 || start + count > dims[0])
        return cl_error("%s: rows %llu..%llu are outside the dataset", path, (unsigned long long)start,
                        (unsigned long long)(start + count));
    return cl_h5_read_rows(f, path, mt, start, count, out) ? cl_error("cannot read %s", path) : 0;
}

/* Read one row of a 2-D or 3-D dataset: out = ds[i] (row floats/ints of `row` elements). */
static int read_row(hid_t f, const char *path, hid_t mt, int rank, hsize_t i, hsize_t row, void *out) {
    hsize_t dims[8];
    int r = cl_h5_shape(f, path, dims);
    if (r < 0) return -1;
    if (r != rank || i >= dims[0])
        return cl_error("%s: row %llu is outside the dataset (or its rank is not %d)", path, (unsigned long long)i, rank);
    hsize_t n = 1;
    for (int k = 1; k < rank; k++) n *= dims[k];
    if (n != row)
        return cl_error("%s: rows have %llu values, expected %llu", path, (unsigned long long)n, (unsigned long long)row);
    return cl_h5_read_rows(f, path, mt, i, 1, out) ? cl_error("cannot read %s", path) : 0;
}

static int scan_open(const char *path, scan_file *s) {
    memset(s, 0, sizeof *s);
    s->f = cl_h5_open_read(path);
    if (s->f < 0) return -1;
    char fmt[64] = "";
    long long ver = 0, complete = 0;
    if (cl_h5_attr_read_str(s->f, "format", fmt, sizeof fmt) || strcmp(fmt, CL_SCAN_FORMAT))
        return cl_error("%s is not a corpuslens scan file (format '%s')", path, fmt);
    if (cl_h5_attr_read_int(s->f, "format_version", &ver) || ver != CL_SCAN_FORMAT_VERSION)
        return cl_error("%s: format_version %lld, this corpuslens reads %d", path, ver, CL_SCAN_FORMAT_VERSION);
    if (!cl_h5_attr_exists(s->f, "complete") || cl_h5_attr_read_int(s->f, "complete", &complete) || complete != 1)
        return cl_error("%s is incomplete (the scan did not finish: attribute complete != 1)", path);
    if (cl_h5_attr_read_int(s->f, "n_layer", &s->Lb) || cl_h5_attr_read_int(s->f, "vocab_size", &s->V) ||
        cl_h5_attr_read_int(s->f, "n_prompts", &s->P) || cl_h5_attr_read_int(s->f, "n_substrings", &s->N) ||
        cl_h5_attr_read_double(s->f, "prefilter", &s->prefilter))
        return cl_error_prefix("%s: ", path);
    if (s->Lb < 1 || s->Lb > MAX_BLOCKS || s->V < 1 || s->P < 1)
        return cl_error("%s: n_layer %lld, vocab_size %lld, n_prompts %lld out of range", path, s->Lb, s->V, s->P);
    s->first = 0;
    if (cl_h5_attr_exists(s->f, "n_hook_blocks")) { /* a scan of one block (embed, blocks.i.hook_...) */
        long long nl = s->Lb;
        if (cl_h5_attr_read_int(s->f, "n_hook_blocks", &s->Lb) ||
            cl_h5_attr_read_int(s->f, "hook_first_block", &s->first))
            return cl_error_prefix("%s: ", path);
        if (s->Lb < 1 || s->first < 0 || s->first + s->Lb > nl)
            return cl_error("%s: hooked blocks %lld..%lld outside the model's %lld", path, s->first,
                            s->first + s->Lb - 1, nl);
    }
    if (cl_h5_attr_exists(s->f, "match_cap") && cl_h5_attr_read_int(s->f, "match_cap", &s->cap))
        return cl_error_prefix("%s: ", path);
    if (read_attr_doubles(s->f, "match_thresholds", s->match_thr, (size_t)s->Lb)) return cl_error_prefix("%s: ", path);
    return 0;
}

/* Find the prompt whose /prompts/text is `text`; -1 (with cl_error) if none. */
static long long find_prompt(const scan_file *s, const char *path, const char *text) {
    hid_t d = H5Dopen2(s->f, CL_SCAN_PROMPT_TEXT, H5P_DEFAULT);
    if (d < 0) return cl_error("%s: dataset %s is missing", path, CL_SCAN_PROMPT_TEXT);
    hid_t t = H5Dget_type(d);
    long long found = -1;
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0) {
        cl_error("%s: %s is not a fixed-length string dataset", path, CL_SCAN_PROMPT_TEXT);
        found = -2;
    }
    size_t w = H5Tget_size(t);
    char *buf = found == -1 ? cl_trymalloc((size_t)s->P, w, "prompt texts") : NULL;
    if (found == -1 && !buf) found = -2;
    if (buf && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        cl_error("%s: cannot read %s", path, CL_SCAN_PROMPT_TEXT);
        found = -2;
    }
    size_t len = strlen(text);
    for (long long i = 0; found == -1 && i < s->P; i++) {
        const char *p = buf + (size_t)i * w;
        if (len <= w && !memcmp(p, text, len) && (len == w || p[len] == 0)) found = i;
    }
    if (found == -1) {
        char ex[3][512] = {"", "", ""};
        for (int k = 0; k < 3 && k < s->P; k++) snprintf(ex[k], sizeof ex[k], "%.*s", (int)w, buf + (size_t)k * w);
        cl_error("prompt \"%s\" is not among the %lld prompts of %s (e.g. \"%s\", \"%s\", \"%s\"; or use "
                 "--prompt-index)",
                 text, s->P, path, ex[0], ex[1], ex[2]);
    }
    free(buf);
    H5Tclose(t);
    H5Dclose(d);
    return found < 0 ? -1 : found;
}

static int copy_list(const cli_doubles *l, double *out, int n, const char *opt) {
    if (l->n != (size_t)n) return cl_error("%s: expected %d comma-separated numbers (one per block), got %zu", opt, n, l->n);
    for (int i = 0; i < n; i++) out[i] = l->v[i];
    return 0;
}

static void display(const char *utf8, char *out, size_t n, const cl_corpus *c, size_t idx) {
    (void)utf8;
    /* C-escaped characters of substring idx */
    size_t k = 0;
    const int32_t *t = cl_corpus_substring(c, idx);
    for (int i = 0; i < c->L && k + 16 < n; i++) {
        char e[16];
        cl_token_escape(c->vocab[t[i]], e);
        size_t l = strlen(e);
        memcpy(out + k, e, l);
        k += l;
    }
    out[k] = 0;
}

typedef cl_token_p entry;

static size_t utf8_width(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static const char USAGE[] =
    "corpuslens similar SCAN.h5 --corpus CORPUS.h5 (--prompt TEXT | --prompt-index I)\n"
    "                          (--block B --threshold T | --blocks all [--thresholds LIST --weights LIST])\n"
    "                          [--top K] [--show N] [--columns C]";

static const char ABOUT[] =
    "The prompt (found by its text in /prompts/text, or by its 0-based index) and\n"
    "the corpus strings whose activation in block B has cosine similarity > T\n"
    "with it (from /matches; the prompt matches itself), shown in C columns, most\n"
    "similar first. Their next-token counts (CORPUS.h5, the corpus the scan ran\n"
    "on), summed and normalised, give the approximation; it is printed beside the\n"
    "model's prediction (/model/probs), top K rows, with the Hellinger distance\n"
    "between the two.\n";

static const char EPILOG[] =
    "--blocks all combines every block: the counts of the strings with\n"
    "similarity > threshold[b], times weight[b], summed over blocks, then\n"
    "normalised. Default thresholds and weights: the paper's (6 blocks)\n"
    "  0.95 0.94 0.85 0.76 0.81 0.89 / 0.01 0.01 0.1 1.5 6 0.01;\n"
    "--thresholds and --weights take comma-separated lists, one per block.\n"
    "\n"
    "A threshold must be > the scan's prefilter and >= the threshold above which\n"
    "the scan stored matches for that block (attribute match_thresholds);\n"
    "when a (prompt, block) reached the scan's match_cap, a warning says that\n"
    "the list is cut.\n"
    "\n"
    "B is the model's block number; a scan of one block (--hook embed or\n"
    "blocks.B.hook_...) has only that block, and --blocks all means it alone.\n";

static int run(int argc, char **argv) {
    const char *scan = NULL, *corpus = NULL, *prompt = NULL, *blocks = NULL;
    long pidx = -1, block = -1, top = 10, show = 40, cols = 4;
    double thr = NAN;
    cli_doubles *thr_l = calloc(1, sizeof *thr_l), *w_l = calloc(1, sizeof *w_l);
    const cli_option opts[] = {
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &corpus, "the corpus the scan ran on"),
        CLI_OPT_STRING("prompt", 0, "TEXT", &prompt, "the prompt, found by its text in /prompts/text"),
        CLI_OPT_INT("prompt-index", 0, "I", &pidx, 0, 1L << 40, "the prompt, by its 0-based index"),
        CLI_OPT_INT("block", 0, "B", &block, 0, MAX_BLOCKS - 1, "the block whose matches are shown"),
        CLI_OPT_DOUBLE("threshold", 0, "T", &thr, -1, 1, "cosine similarity above which a string counts"),
        CLI_OPT_CHOICE("blocks", 0, &blocks, "all", "combine every block (see below)"),
        CLI_OPT_DOUBLES("thresholds", 0, "LIST", thr_l, "with --blocks all: one threshold per block"),
        CLI_OPT_DOUBLES("weights", 0, "LIST", w_l, "with --blocks all: one weight per block"),
        CLI_OPT_INT("top", 0, "K", &top, 1, 1 << 20, "rows of the distributions"),
        CLI_OPT_INT("show", 0, "N", &show, 0, 1L << 40, "at most N strings; 0 = all"),
        CLI_OPT_INT("columns", 0, "C", &cols, 1, 16, "columns of strings"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, "SCAN.h5", 0, 1, NULL};
    if (!thr_l || !w_l) {
        free(thr_l);
        free(w_l);
        return cl_error("out of memory"), cli_fail();
    }
    int first, prc = cli_parse(&cmd, argc, argv, &first), urc = -1;
    const char *thr_s = thr_l->set ? "" : NULL, *w_s = w_l->set ? "" : NULL;
    if (prc != CLI_PARSED) urc = prc;
    else if (first == argc || !corpus) urc = cli_usage_error(CMD, "SCAN.h5 and --corpus CORPUS.h5 are required");
    else if (!prompt == (pidx < 0)) urc = cli_usage_error(CMD, "give one of --prompt TEXT and --prompt-index I");
    else if (blocks && (block >= 0 || !isnan(thr))) urc = cli_usage_error(CMD, "--blocks all does not go with --block/--threshold");
    else if (!blocks && (block < 0 || isnan(thr))) urc = cli_usage_error(CMD, "give --block B and --threshold T, or --blocks all");
    else if (!blocks && (thr_s || w_s)) urc = cli_usage_error(CMD, "--thresholds/--weights go with --blocks all");
    if (urc >= 0) {
        free(thr_l);
        free(w_l);
        return urc;
    }
    scan = argv[first];
    int all = blocks != NULL;

    int rc = 1;
    scan_file s = {.f = H5I_INVALID_HID};
    cl_corpus *c = NULL;
    uint32_t *svocab = NULL;
    int sV = 0;
    int64_t *idx = NULL, pindex = 0;
    float *sim = NULL, *model_p = NULL, *approx_f = NULL;
    uint8_t *insup = NULL;
    double *counts = NULL;
    entry *em = NULL, *ea = NULL;
    double th[MAX_BLOCKS], w[MAX_BLOCKS];
    if (scan_open(scan, &s)) goto out;
    int Lb = (int)s.Lb, V = (int)s.V, fb = (int)s.first; /* --block and the output name model blocks */
    if (!all && (block < fb || block >= fb + Lb)) {
        cl_error("--block %ld: the scan has blocks %d..%d", block, fb, fb + Lb - 1);
        goto out;
    }
    if (!all) block -= fb;
    if (all) {
        if (!thr_s || !w_s) {
            double pt[] = CL_PAPER_THRESHOLDS, pw[] = CL_PAPER_WEIGHTS;
            int n = (int)(sizeof pt / sizeof *pt);
            if (Lb != n) {
                cl_error("the scan has %d blocks; the paper's thresholds and weights are for %d: give --thresholds "
                         "and --weights",
                         Lb, n);
                goto out;
            }
            for (int b = 0; b < n; b++) th[b] = pt[b], w[b] = pw[b];
        }
        if (thr_s && copy_list(thr_l, th, Lb, "--thresholds")) goto out;
        if (w_s && copy_list(w_l, w, Lb, "--weights")) goto out;
    } else {
        for (int b = 0; b < Lb; b++) th[b] = NAN, w[b] = 0;
        th[block] = thr, w[block] = 1;
    }
    for (int b = 0; b < Lb; b++) {
        if (isnan(th[b]) || w[b] == 0) continue;
        if (!(th[b] > s.prefilter)) {
            cl_error("threshold %g for block %d is not > the scan's prefilter %g", th[b], fb + b, s.prefilter);
            goto out;
        }
        if (th[b] < s.match_thr[b]) {
            cl_error("threshold %g for block %d is below %g, above which the scan stored matches (match_thresholds)",
                     th[b], b, s.match_thr[b]);
            goto out;
        }
        if (w[b] < 0 || !isfinite(w[b])) {
            cl_error("weight %g for block %d is not a finite number >= 0", w[b], b);
            goto out;
        }
    }
    long long p = pidx;
    if (prompt) {
        p = find_prompt(&s, scan, prompt);
        if (p < 0) goto out;
    } else if (p >= s.P) {
        cl_error("--prompt-index %ld: the scan has prompts 0..%lld", pidx, s.P - 1);
        goto out;
    }
    if (cl_h5_read_vocab(s.f, "/vocab", &svocab, &sV)) goto out;
    if (!(c = cl_corpus_load(corpus))) goto out;
    if (c->V != V || sV != V || memcmp(c->vocab, svocab, (size_t)V * sizeof *svocab)) {
        cl_error("%s: its vocabulary is not the scan's (%d and %d characters)", corpus, c->V, V);
        goto out;
    }
    if ((long long)c->n != s.N) {
        cl_error("%s has %zu substrings; the scan ran on %lld: not the scan's corpus", corpus, c->n, s.N);
        goto out;
    }
    if (read_row(s.f, CL_SCAN_PROMPT_INDEX, H5T_NATIVE_INT64, 1, (hsize_t)p, 1, &pindex)) goto out;
    if (pindex < 0 || (size_t)pindex >= c->n) {
        cl_error("%s: prompt %lld names substring %lld, outside the corpus", scan, p, (long long)pindex);
        goto out;
    }
    int64_t mi[MAX_BLOCKS * 2];
    if (read_row(s.f, CL_SCAN_MATCH_INDEX, H5T_NATIVE_INT64, 3, (hsize_t)p, (hsize_t)Lb * 2, mi)) goto out;
    counts = cl_trycalloc((size_t)V, sizeof *counts, "counts");
    model_p = counts ? cl_trymalloc((size_t)V, sizeof *model_p, "model probabilities") : NULL;
    approx_f = model_p ? cl_trymalloc((size_t)V, sizeof *approx_f, "approximation") : NULL;
    if (!approx_f) goto out;
    /* a model_sparse scan (no /model/probs): the model on the prompt's support (reduce's checked reader), 0
       elsewhere; rest = its mass off the support, which enters H as one number */
    int sparse = cl_h5_exists(s.f, CL_SCAN_MODEL_SUPPORT_INDPTR) > 0;
    double rest = 0;
    if (sparse) {
        cl_scan *cs = cl_scan_open(scan);
        cl_scan_model m = {0};
        if (!cs || cl_scan_read_model(cs, (size_t)p, 1, &m)) {
            cl_scan_close(cs);
            goto out;
        }
        insup = cl_trycalloc((size_t)V, 1, "support");
        if (!insup) {
            cl_scan_model_free(&m);
            cl_scan_close(cs);
            goto out;
        }
        for (int v = 0; v < V; v++) model_p[v] = 0;
        for (int64_t e = 0; e < m.ind[1]; e++) model_p[m.tok[e]] = m.prob[e], insup[m.tok[e]] = 1;
        rest = m.rest[0];
        cl_scan_model_free(&m);
        cl_scan_close(cs);
    } else if (read_row(s.f, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, 2, (hsize_t)p, (hsize_t)V, model_p)) {
        goto out;
    }

    char text[4 * CL_CORPUS_MAX_LEN + 1], esc[16 * CL_CORPUS_MAX_LEN + 1];
    cl_corpus_substring_text(c, (size_t)pindex, text);
    display(text, esc, sizeof esc, c, (size_t)pindex);
    printf("prompt %lld \"%s\" (substring %lld)\n", p, esc, (long long)pindex);
    if (all) printf("%-6s %9s %8s %8s %12s\n", "block", "threshold", "weight", "strings", "occurrences");
    for (int b = 0; b < Lb; b++) {
        if (isnan(th[b]) || w[b] == 0) continue;
        int64_t start = mi[2 * b], n = mi[2 * b + 1];
        if (start < 0 || n < 0) {
            cl_error("%s: /matches/index[%lld, %d] = (%lld, %lld) is invalid", scan, p, b, (long long)start,
                     (long long)n);
            goto out;
        }
        free(idx);
        free(sim);
        idx = cl_trymalloc((size_t)n + 1, sizeof *idx, "matches");
        sim = idx ? cl_trymalloc((size_t)n + 1, sizeof *sim, "similarities") : NULL;
        if (!sim || read_slab(s.f, CL_SCAN_MATCH_SUBSTRING, H5T_NATIVE_INT64, (hsize_t)start, (hsize_t)n, idx) ||
            read_slab(s.f, CL_SCAN_MATCH_SIMILARITY, H5T_NATIVE_FLOAT, (hsize_t)start, (hsize_t)n, sim))
            goto out;
        /* the prompt matches itself: add it when the rounding left it out */
        size_t m = 0;
        int self = 0;
        for (int64_t k = 0; k < n; k++)
            if ((double)sim[k] > th[b]) {
                idx[m] = idx[k], sim[m] = sim[k], m++;
                if (idx[k] == pindex) self = 1;
            }
        if (!self) {
            memmove(idx + 1, idx, m * sizeof *idx);
            memmove(sim + 1, sim, m * sizeof *sim);
            idx[0] = pindex, sim[0] = 1.0f, m++;
        }
        if (s.cap > 0 && n >= s.cap)
            fprintf(stderr, "corpuslens similar: warning: block %d reached the scan's match_cap (%lld): the list "
                            "and the distribution may miss strings\n", fb + b, s.cap);
        if (cl_similar_accumulate(idx, sim, m, -2.0, w[b], c->next_indptr, c->next_token, c->next_count, c->n, V,
                                  counts))
            goto out;
        int64_t occ = 0;
        for (size_t k = 0; k < m; k++) occ += cl_corpus_next_total(c, (size_t)idx[k]);
        if (all) {
            printf("%-6d %9.4f %8.4g %8zu %12lld\n", fb + b, th[b], w[b], m, (long long)occ);
            continue;
        }
        printf("block %d, cosine similarity > %g: %zu similar string%s, %lld occurrences with a follower\n\n",
               fb + b, th[b], m, m == 1 ? "" : "s", (long long)occ);
        size_t shown = show == 0 || (size_t)show > m ? m : (size_t)show;
        size_t cw = 0;
        char cell[16 * CL_CORPUS_MAX_LEN + 32];
        for (size_t k = 0; k < shown; k++) {
            display(NULL, esc, sizeof esc, c, (size_t)idx[k]);
            snprintf(cell, sizeof cell, "\"%s\" %.3f", esc, sim[k]);
            if (utf8_width(cell) > cw) cw = utf8_width(cell);
        }
        for (size_t k = 0; k < shown; k++) {
            display(NULL, esc, sizeof esc, c, (size_t)idx[k]);
            snprintf(cell, sizeof cell, "\"%s\" %.3f", esc, sim[k]);
            fputs(cell, stdout);
            if ((k + 1) % cols == 0 || k + 1 == shown) putchar('\n');
            else
                for (size_t q = utf8_width(cell); q < cw + 3; q++) putchar(' ');
        }
        if (shown < m) printf("... and %zu more (--show 0 lists all)\n", m - shown);
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += counts[v];
    printf("\n");
    if (!(sum > 0)) {
        printf("the similar strings have no followers in the corpus: no approximation\n");
        rc = 0;
        goto out;
    }
    for (int v = 0; v < V; v++) approx_f[v] = (float)(counts[v] / sum);
    /* the support holds every token of the prompt's counts above the prefilter: these among them */
    for (int v = 0; sparse && v < V; v++)
        if (counts[v] > 0 && !insup[v]) {
            cl_error("%s: prompt %lld: token %d of the similar strings' followers is not in the prompt's support "
                     "(%s): the scan and the corpus disagree", scan, p, v, CL_SCAN_MODEL_SUPPORT_TOKEN);
            goto out;
        }
    em = cl_trymalloc((size_t)V, sizeof *em, "entries");
    ea = em ? cl_trymalloc((size_t)V, sizeof *ea, "entries") : NULL;
    if (!ea) goto out;
    for (int v = 0; v < V; v++) em[v] = (entry){model_p[v], v}, ea[v] = (entry){counts[v] / sum, v};
    cl_token_p_sort(em, (size_t)V);
    cl_token_p_sort(ea, (size_t)V);
    printf("%-20s %s\n", "Model Predictions", all ? "Approximation Predictions (all blocks)" : "Approximation Predictions");
    for (long k = 0; k < top && k < V; k++) {
        char t1[16], t2[16], l1[48] = "";
        if (sparse && k >= CL_SCAN_MODEL_TOP && !(ea[k].p > 0)) break;
        cl_token_escape(svocab[em[k].id], t1);
        cl_token_escape(svocab[ea[k].id], t2);
        if (!sparse || k < CL_SCAN_MODEL_TOP) snprintf(l1, sizeof l1, "'%s' %.4f", t1, em[k].p);
        printf("%-20s ", l1);
        if (ea[k].p > 0) printf("'%s' %.4f", t2, ea[k].p);
        printf("\n");
    }
    if (sparse && top > CL_SCAN_MODEL_TOP)
        printf("(the model's column stops at its %d most probable tokens: this scan stores the model on each "
               "prompt's support, next_layout csr)\n", CL_SCAN_MODEL_TOP);
    double h = cl_prob_hellinger(model_p, approx_f, (size_t)V);
    if (sparse) { /* cl_prob_hellinger, and the terms off the support: the model's q_v there, rest in all */
        double acc = rest;
        for (int v = 0; v < V; v++) {
            double x = model_p[v] > 0 ? sqrt((double)model_p[v]) : 0, y = approx_f[v] > 0 ? sqrt((double)approx_f[v]) : 0;
            acc += (x - y) * (x - y);
        }
        h = sqrt(acc / 2);
        if (h > 1) h = 1;
    }
    printf("\nHellinger distance: %.6f\n", h);
    rc = 0;
out:
    if (rc) cli_fail();
    if (s.f >= 0) H5Fclose(s.f);
    cl_corpus_free(c);
    free(svocab);
    free(idx);
    free(sim);
    free(model_p);
    free(insup);
    free(approx_f);
    free(counts);
    free(em);
    free(ea);
    free(thr_l);
    free(w_l);
    return rc;
}

int cmd_similar(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

/* corpuslens explain: the approximation, similar strings and logit lens of any
 * text, from an activation index (include/corpuslens/scan/explain.h). */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/par/par.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/corpus/infgram.h"
#include "corpuslens/scan/explain.h"
#include "corpuslens/scan/passage.h"
#include "corpuslens/scan/sketch.h"

static const char *CMD = "explain";

static const char USAGE[] =
    "[mpirun -n R] corpuslens explain --index INDEX.h5 --corpus CORPUS.h5 --model MODEL.h5\n"
    "                 (TEXT... | --prompt-file FILE | --eval-text N [--eval-len L] [--seed S]\n"
    "                  | --passage TEXT | --passage-file FILE [--at LIST])\n"
    "                 [--thresholds a,b,..] [--weights a,b,..] [--params FITTED.ini]\n"
    "                 [--soft] [--temperatures a,b,..] [--soft-weights a,b,..] [--soft-floor 0.7]\n"
    "                 [--top 10] [--show 8] [--quiet] [-o EXPLAIN.h5]";

static const char ABOUT[] =
    "For each TEXT (any string over the model's vocabulary, 1..block_size characters,\n"
    "in the corpus or not): the model's prediction; the paper's approximation from the\n"
    "corpus strings whose hooked activations are cosine-similar to the text's, with\n"
    "its Hellinger distance; per block the most similar strings with their similarity\n"
    "and next characters; the logit lens per block. Method: include/corpuslens/scan/explain.h.\n"
    "--passage: the same at EVERY position of one text of any length, each from the\n"
    "window of at most L (the index's string length) characters ending there, as if\n"
    "explained alone (bit for bit); a table row per position, the details of the\n"
    "positions --at, the mean H (docs/passage.md, include/corpuslens/scan/passage.h).\n";

static const char EPILOG[] =
    "Without mpirun, explain runs on one process and does not start MPI; under\n"
    "mpirun the ranks split the index rows; the results do not depend on the rank\n"
    "count. An index with a sketch (index --add-sketch) lets explain skip the rows\n"
    "that cannot reach a threshold or the top list (exact: the same results as\n"
    "reading every row; more than 8 texts, e.g. a passage's windows, share one\n"
    "bound product); CORPUSLENS_SKETCH=0 reads every row.\n"
    "The SHA-256 identity checks of the model and corpus are cached by file\n"
    "(device, inode, size, times; README, 'Identity checks'); CORPUSLENS_HASH_CACHE=0\n"
    "hashes every time.\n";

/* ---- small parsing helpers ---- */

static int parse_list(const char *opt, const char *s, double *out, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (end == s || errno || (*end && *end != ',') || *n >= 64)
            return cli_usage_error(CMD, "%s: '%s' is not a comma-separated list of numbers", opt, s), -1;
        out[(*n)++] = d;
        s = *end ? end + 1 : end;
    }
    return 0;
}

/* Decode C escapes in place; 0 or -1 (message). */
static int unescape(char *s, int line) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        case 'r': *w++ = '\r'; break;
        case '\\': *w++ = '\\'; break;
        case '"': *w++ = '"'; break;
        case '\'': *w++ = '\''; break;
        case 'x': {
            int v = 0, k = 0;
            while (k < 2 && ((r[1] >= '0' && r[1] <= '9') || ((r[1] | 32) >= 'a' && (r[1] | 32) <= 'f'))) {
                r++;
                v = v * 16 + (*r <= '9' ? *r - '0' : (*r | 32) - 'a' + 10);
                k++;
            }
            if (!k || !v) return cl_error("line %d: bad \\x escape", line);
            *w++ = (char)v;
            break;
        }
        default: return cl_error("line %d: unknown escape '\\%c'", line, *r ? *r : '0');
        }
    }
    *w = 0;
    return 0;
}

/* [reduce]/[explain] keys thresholds, weights, temperatures, soft_weights. */
static int read_params(const char *path, cl_explain_params *par, int *nt, int *nw, int *nT, int *nsw) {
    size_t len;
    char *text = cl_read_file(path, 1 << 20, &len);
    if (!text) return -1;
    int rc = 0, ln = 0;
    for (char *line = strtok(text, "\n"); line && !rc; line = strtok(NULL, "\n")) {
        ln++;
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#' || *line == ';' || *line == '[') continue;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        char *k = line, *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
        *ke = 0;
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t') v++;
        for (char *e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\r'); e--) e[-1] = 0;
        double *dst = NULL;
        int *n = NULL;
        if (!strcmp(k, "thresholds")) dst = par->thresholds, n = nt;
        else if (!strcmp(k, "weights")) dst = par->weights, n = nw;
        else if (!strcmp(k, "temperatures")) dst = par->T, n = nT;
        else if (!strcmp(k, "soft_weights")) dst = par->soft_w, n = nsw;
        else continue;
        if (parse_list(k, v, dst, n)) rc = cl_error("%s:%d: bad list for %s", path, ln, k);
    }
    free(text);
    return rc;
}

/* ---- printing ---- */

/* one token as cl_tok_display shows it (char-level: cl_token_escape of its character) */
static void put_tok(const cl_model *m, int id) {
    char e[80];
    cl_tok_display(m, id, e, sizeof e);
    printf("'%s'", e);
}

/* the text of n token ids (char-level: their characters; BPE: the decoded bytes): malloc'ed, or NULL (cl_error) */
static char *ids_text(const cl_model *m, const int32_t *ids, size_t n) {
    if (m->bpe) {
        char *t = NULL;
        size_t len;
        return cl_bpe_decode(m->bpe, ids, n, &t, &len) ? NULL : t;
    }
    char *t = cl_trymalloc(4 * n + 1, 1, "text"), *w = t;
    for (size_t i = 0; t && i < n; i++) w += cl_utf8_put(m->vocab[ids[i]], w);
    if (t) *w = 0;
    return t;
}

static void print_top(const char *title, const double *p, const float *pf, const cl_model *vocab, int V, int n) {
    int idx[8], m = n < 8 ? n : 8;
    for (int k = 0; k < m; k++) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= idx[j] == v;
            double x = p ? p[v] : pf[v];
            if (!used && (best < 0 || x > (p ? p[best] : pf[best]))) best = v;
        }
        idx[k] = best;
    }
    printf("  %-14s", title);
    for (int k = 0; k < m; k++) {
        put_tok(vocab, idx[k]);
        printf(" %.4f  ", p ? p[idx[k]] : pf[idx[k]]);
    }
    printf("\n");
}

/* print_top of sparse results: the n most probable of prompt p's support (pf: the model's, pd: an
   approximation on the support), positive ones only */
static void print_top_sup(const char *title, const cl_explain_result *r, size_t p, const float *pf, const double *pd,
                          const cl_model *vocab, int n) {
    int32_t idx[8];
    double val[8];
    const int64_t a = r->sup_indptr[p], e = r->sup_indptr[p + 1];
    int k = cl_explain_top_sparse(r->sup_token + a, pf ? pf + a : NULL, pd ? pd + a : NULL, (size_t)(e - a),
                                  n < 8 ? n : 8, idx, val);
    printf("  %-14s", title);
    for (int j = 0; j < k; j++) {
        put_tok(vocab, idx[j]);
        printf(" %.4f  ", val[j]);
    }
    printf("\n");
}

/* what a position is in the printed lines: "tokens" for a GPT-2 BPE model */
static const char *UNIT = "characters", *UNIT1 = "character";

/* set when a corpus row could not be read while printing (the command fails) */
static int cli_row_error;

static void print_string(const cl_corpus *cp, int64_t sub) {
    size_t cap = cl_corpus_text_cap(cp);
    char *buf = cl_trymalloc(cap > 2 ? cap : 2, 1, "string");
    if (!buf || cl_corpus_row_text_n(cp, (size_t)sub, buf, cap) < 0) {
        cli_row_error = 1;
        printf("\"?\"");
        free(buf);
        return;
    }
    putchar('"');
    for (char *c = buf; *c; c++) {
        if (*c == '\n') printf("\\n");
        else if (*c == '\t') printf("\\t");
        else if (*c == '"') printf("\\\"");
        else putchar(*c);
    }
    putchar('"');
    free(buf);
}

static void print_explain(const cl_explain_result *r, const cl_explain_params *par, const cl_corpus *cp,
                          const cl_model *vocab, const char *text, size_t p, int show, int first_block) {
    const int V = r->V, Lh = r->Lh, NL = r->NL, K = r->K;
    printf("prompt %zu: \"", p + 1);
    for (const char *c = text; *c; c++) {
        if (*c == '\n') printf("\\n");
        else if (*c == '\t') printf("\\t");
        else putchar(*c);
    }
    printf("\"\n");
    const int sp = r->sup_indptr != NULL; /* sparse results (explain.h) */
    if (sp) print_top_sup("model", r, p, r->sup_prob, NULL, vocab, 6);
    else print_top("model", NULL, r->model_probs + p * V, vocab, V, 6);
    if (r->hellinger[p] == CL_H_EMPTY) {
        printf("  approximation (empty: no string above any weighted threshold)\n");
    } else {
        if (sp) print_top_sup("approximation", r, p, NULL, r->sup_approx, vocab, 6);
        else print_top("approximation", r->approx + p * V, NULL, vocab, V, 6);
        printf("  Hellinger distance: %.6f\n", r->hellinger[p]);
    }
    if (r->soft_approx || r->sup_soft) {
        if (r->soft_hellinger[p] == CL_H_EMPTY) {
            printf("  soft kernel (empty: no string above the soft floor)\n");
        } else {
            if (sp) print_top_sup("soft kernel", r, p, NULL, r->sup_soft, vocab, 6);
            else print_top("soft kernel", r->soft_approx + p * V, NULL, vocab, V, 6);
            printf("  Hellinger distance (soft): %.6f\n", r->soft_hellinger[p]);
        }
    }
    for (int b = 0; b < Lh; b++) {
        size_t pb = p * (size_t)Lh + b;
        long long above = (long long)r->n_matches[pb];
        printf("  block %d (weight %g): %lld string%s above %g", first_block + b, par->weights[b], above,
               above == 1 ? "" : "s", par->thresholds[b]);
        if (r->near[pb]) printf(" (%lld within %g of the threshold)", (long long)r->near[pb], CL_EXPLAIN_NEAR);
        printf("\n");
        for (int k = 0; k < K && k < show; k++) {
            int64_t sub = r->top_sub[pb * K + k];
            if (sub < 0) break;
            /* the top list is ordered by similarity: its first `above` strings are
               those above the threshold, the rest fill the list */
            if (k == above) printf("    (below %g, not in the approximation:)\n", par->thresholds[b]);
            printf("    ");
            print_string(cp, sub);
            printf(" %.3f  next:", r->top_sim[pb * K + k]);
            /* up to 3 most frequent followers (the counts held, or read from the file: cl_corpus_open_rows) */
            const int64_t *ip = cp->next_indptr;
            const int32_t *nt = cp->next_token, *nc = cp->next_count;
            cl_corpus_part pt;
            memset(&pt, 0, sizeof pt);
            int64_t a = 0, e = 0;
            if (!ip && cl_corpus_read_counts(cp, &sub, 1, &pt) < 0) {
                cli_row_error = 1;
                printf(" ?\n");
                continue;
            }
            if (!ip) ip = pt.indptr, nt = pt.next_token, nc = pt.next_count, a = 0, e = ip[1];
            else a = ip[sub], e = ip[sub + 1];
            int shown[3] = {-1, -1, -1};
            for (int j = 0; j < 3; j++) {
                int64_t best = -1;
                for (int64_t q = a; q < e; q++) {
                    if ((int)q == shown[0] || (int)q == shown[1]) continue;
                    if (best < 0 || nc[q] > nc[best]) best = q;
                }
                if (best < 0) break;
                shown[j] = (int)best;
                printf(" ");
                put_tok(vocab, nt[best]);
                printf(" %d", nc[best]);
            }
            if (a == e) printf(" (none: end of corpus)");
            cl_corpus_part_free(&pt);
            printf("\n");
        }
    }
    printf("  logit lens:");
    for (int l = 0; sp && l < NL; l++) { /* sparse results: H and the top token kept per block */
        printf(" block %d%s H %.3f top ", l, l == NL - 1 ? " (= the model)" : "", r->lens_h[p * NL + l]);
        put_tok(vocab, r->lens_top_id[(p * NL + l) * CL_EXPLAIN_LENS_TOP]);
        printf(l + 1 < NL ? ";" : "\n");
    }
    if (sp) return;
    double *tmp = cl_trymalloc((size_t)V, sizeof *tmp, "logit lens"); /* [V]: any vocabulary size */
    if (!tmp) {
        printf(" (out of memory)\n");
        cli_row_error = 1;
        return;
    }
    for (int l = 0; l < NL; l++) {
        const float *lp = r->lens + (p * NL + l) * V;
        int best = 0;
        for (int v = 0; v < V; v++) {
            tmp[v] = lp[v];
            if (lp[v] > lp[best]) best = v;
        }
        printf(" block %d%s H %.3f top ", l, l == NL - 1 ? " (= the model)" : "",
               cl_hellinger_df(tmp, r->model_probs + p * V, V));
        put_tok(vocab, best);
        printf(l + 1 < NL ? ";" : "\n");
    }
    free(tmp);
}

/* ---- explain.h5 ---- */

static int wr(hid_t f, const char *path, hid_t ft, hid_t mt, int rank, const hsize_t *d, const void *data) {
    hid_t sp = H5Screate_simple(rank, d, NULL), dcpl = cl_h5_dcpl(), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, path, ft, sp, lcpl, dcpl, H5P_DEFAULT);
    int rc = ds < 0 ? cl_h5_error_in(f, "cannot create %s", path) : 0;
    if (!rc && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = cl_h5_error_in(f, "cannot write %s", path);
    if (ds >= 0 && H5Dclose(ds) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write %s", path);
    H5Pclose(dcpl), H5Pclose(lcpl), H5Sclose(sp);
    return rc;
}

/* Groups without time stamps (the same contents give the same bytes). */
static int mkgroup(hid_t f, const char *path) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    int rc = g < 0 ? cl_h5_error_in(f, "cannot create %s", path) : 0;
    if (g >= 0 && H5Gclose(g) < 0 && !rc) rc = cl_h5_error_in(f, "cannot create %s", path);
    H5Pclose(gcpl);
    return rc;
}

/* Sparse counts (a BPE model): /blocks/next/indptr [P Lh + 1] int64 (row p Lh + b),
 * /blocks/next/token [nnz] int32 (increasing in a row), /blocks/next/count [nnz] int64 */
static int wr_sparse_counts(hid_t f, const cl_explain_result *r) {
    hsize_t dI = r->P * (size_t)r->Lh + 1, dN = (hsize_t)r->cnt_indptr[r->P * (size_t)r->Lh];
    return wr(f, "/blocks/next/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dI, r->cnt_indptr) ||
           wr(f, "/blocks/next/token", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dN, r->cnt_token) ||
           wr(f, "/blocks/next/count", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dN, r->cnt_count);
}

/* Sparse results (a BPE model, explain.h) instead of /model/probs, /lens/probs, /approx, /soft/approx and
 * /ngram/counts (the groups /model, /lens, /ngram and, with the soft kernel, /soft exist already):
 *   /model/support/indptr [P + 1] int64, token [m] int32 (increasing in a row), prob [m] float32,
 *   approx [m] float64 and (soft) soft_approx [m] float64 on the same support; /model/mass [P, 2] float64;
 *   /lens/hellinger [P, NL] float64, /lens/top/token and /lens/top/prob [P, NL, CL_EXPLAIN_LENS_TOP];
 *   /ngram/next/indptr [P + 1] int64, token, count int32; /ngram/substring [P] int64; /ngram/hellinger [P] */
static int wr_sparse_results(hid_t f, const cl_explain_result *r) {
    size_t P = r->P, NL = r->NL;
    hsize_t dI = P + 1, dM = (hsize_t)r->sup_indptr[P], dN = (hsize_t)r->ngram_indptr[P], dP2[2] = {P, 2}, dP = P,
            dPL[2] = {P, NL}, dPLK[3] = {P, NL, CL_EXPLAIN_LENS_TOP};
    return mkgroup(f, "/model/support") || mkgroup(f, "/lens/top") || mkgroup(f, "/ngram/next") ||
           wr(f, "/model/support/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dI, r->sup_indptr) ||
           wr(f, "/model/support/token", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dM, r->sup_token) ||
           wr(f, "/model/support/prob", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &dM, r->sup_prob) ||
           wr(f, "/model/support/approx", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dM, r->sup_approx) ||
           (r->sup_soft && wr(f, "/model/support/soft_approx", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dM, r->sup_soft)) ||
           wr(f, "/model/mass", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dP2, r->mass) ||
           wr(f, "/lens/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dPL, r->lens_h) ||
           wr(f, "/lens/top/token", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, dPLK, r->lens_top_id) ||
           wr(f, "/lens/top/prob", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dPLK, r->lens_top_p) ||
           wr(f, "/ngram/next/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dI, r->ngram_indptr) ||
           wr(f, "/ngram/next/token", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dN, r->ngram_token) ||
           wr(f, "/ngram/next/count", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dN, r->ngram_count) ||
           wr(f, "/ngram/substring", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dP, r->ngram_sub) ||
           wr(f, "/ngram/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP, r->ngram_h) ||
           cl_h5_attr_write_int(f, "model_top_k", CL_SCAN_MODEL_TOP) ||
           cl_h5_attr_write_int(f, "lens_top_k", CL_EXPLAIN_LENS_TOP);
}

/* The datasets both layouts write after their distributions: H, the counts, the matches. */
static int wr_matches(hid_t f, const cl_explain_result *r) {
    size_t P = r->P, V = r->V, Lh = r->Lh, K = r->K;
    hsize_t dP = P, dPBV[3] = {P, Lh, V}, dPB[2] = {P, Lh}, dPBK[3] = {P, Lh, K ? K : 1};
    return wr(f, "/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP, r->hellinger) ||
           (r->counts ? wr(f, "/blocks/counts", H5T_STD_I64LE, H5T_NATIVE_INT64, 3, dPBV, r->counts)
                      : wr_sparse_counts(f, r)) ||
           wr(f, "/blocks/n_matches", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, dPB, r->n_matches) ||
           wr(f, "/blocks/near_threshold", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, dPB, r->near) ||
           (K && (wr(f, "/matches/substring", H5T_STD_I64LE, H5T_NATIVE_INT64, 3, dPBK, r->top_sub) ||
                  wr(f, "/matches/similarity", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dPBK, r->top_sim)));
}

/* The datasets of one cl_explain_result, shared by explain.h5 and passage.h5
 * (the groups exist already), in the order of the dense layout's bytes. 0, or
 * nonzero after cl_error. */
static int wr_result(hid_t f, const cl_explain_result *r) {
    size_t P = r->P, V = r->V, NL = r->NL;
    hsize_t dP = P, dPV[2] = {P, V}, dPLV[3] = {P, NL, V};
    if (r->sup_indptr)
        return wr_sparse_results(f, r) || wr_matches(f, r) ||
               (r->soft_hellinger &&
                wr(f, "/soft/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP, r->soft_hellinger));
    return wr(f, "/model/probs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dPV, r->model_probs) ||
           wr(f, "/lens/probs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dPLV, r->lens) ||
           wr(f, "/approx", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dPV, r->approx) || wr_matches(f, r) ||
           (r->soft_approx && (wr(f, "/soft/approx", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dPV, r->soft_approx) ||
                               wr(f, "/soft/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP,
                                  r->soft_hellinger)));
}

static int write_h5(const char *out, const cl_explain_result *r, const cl_explain_params *par, char **texts,
                    const cl_index *ix, const int32_t *ngram, const double *ngram_h) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    /* the safe writer: OUT.tmp, every close checked, then cl_h5_commit */
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    int rc = 0;
    const char *groups[] = {"/prompts", "/model", "/lens", "/blocks", "/matches", "/soft", "/ngram"};
    for (int i = 0; i < 7 && !rc; i++)
        if (i != 5 || r->soft_hellinger) rc = mkgroup(f, groups[i]);
    size_t P = r->P, V = r->V, Lh = r->Lh, K = r->K;
    hsize_t dP = P, dPV[2] = {P, V};
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    rc = rc || wr(f, "/prompts/text", st, st, 1, &dP, texts) ||
             wr_result(f, r) ||
             (!r->sup_indptr && (wr(f, "/ngram/counts", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, dPV, ngram) ||
                                 wr(f, "/ngram/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP, ngram_h)));
    H5Tclose(st);
    if (!rc)
        rc = cl_h5_attr_write_str(f, "format", "corpuslens-explain") || cl_h5_attr_write_int(f, "format_version", 1) ||
             cl_h5_attr_write_doubles(f, "thresholds", par->thresholds, Lh) ||
             cl_h5_attr_write_doubles(f, "weights", par->weights, Lh) || cl_h5_attr_write_str(f, "index_file", ix->path) ||
             cl_h5_attr_write_str(f, "model_sha256", ix->model_sha256) ||
             cl_h5_attr_write_str(f, "corpus_h5_sha256", ix->corpus_h5_sha256) ||
             cl_h5_attr_write_str(f, "hook", ix->hook) || cl_h5_attr_write_int(f, "top_k", (long long)K) ||
             (r->soft_hellinger && (cl_h5_attr_write_doubles(f, "soft_temperatures", par->T, Lh) ||
                                    cl_h5_attr_write_doubles(f, "soft_weights", par->soft_w, Lh) ||
                                    cl_h5_attr_write_double(f, "soft_floor", par->soft_floor)));
    return cl_h5_commit(f, tmp, out, rc != 0);
}

/* ---- held-out windows ---- */

static int holdout_windows(const cl_corpus *cp, size_t n, int L, uint64_t seed, int32_t **tok, size_t **off) {
    if (!cp->holdout || cp->n_holdout < (size_t)L)
        return cl_error("the corpus file has no held-out text of at least %d %s (prepare --holdout-fraction)", L,
                        UNIT);
    size_t nwin = cp->n_holdout - (size_t)L + 1;
    *tok = cl_trymalloc(n * (size_t)L, sizeof(int32_t), "windows");
    *off = cl_trymalloc(n + 1, sizeof(size_t), "windows");
    if (!*tok || !*off) return -1;
    cl_rng g;
    cl_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++) {
        size_t s = (size_t)cl_rng_below(&g, nwin);
        memcpy(*tok + i * L, cp->holdout + s, (size_t)L * sizeof(int32_t));
        (*off)[i] = i * (size_t)L;
    }
    (*off)[n] = n * (size_t)L;
    return 0;
}

static void print_stats_line(const char *name, const double *h, size_t n) {
    cl_stats s;
    if (cl_stats_compute(h, n, &s)) return;
    int cols = 0; /* display columns: UTF-8 continuation bytes take none */
    for (const char *c = name; *c; c++) cols += ((unsigned char)*c & 0xC0) != 0x80;
    if (s.count == 0) /* every text empty: no statistics, never 0.0000 */
        printf("  %s%*s n/a (no match)  (n 0, empty %zu)\n", name, cols < 34 ? 34 - cols : 0, "", s.n_empty);
    else
        printf("  %s%*s mean %.4f  std %.4f  median %.4f  p90 %.4f  min %.4f  max %.4f  (n %zu, empty %zu)\n", name,
               cols < 34 ? 34 - cols : 0, "", s.mean, s.std, s.median, s.p90, s.min, s.max, s.count, s.n_empty);
}

/* The suffix baselines (issue 23) of every text: the ∞-gram (min_occ 1) and
   the backoff n-gram (min_occ K) as Hellinger distances to the model; k and
   occ per text; a long text: its last 4 * CL_CORPUS_MAX_LEN ids. 0, or -1
   (out of memory). Needs cp->suffix_array. */
static int suffix_baselines(const cl_corpus *cp, const int32_t *tok, const size_t *off, size_t P,
                            const float *model_probs, int64_t K, double *h, int *k, int64_t *occ) {
    return cl_infgram_hellinger_all(cp->text, cp->suffix_array, cp->n_text, cp->V, tok, off, P, 4 * CL_CORPUS_MAX_LEN,
                                    model_probs, K, h, k, occ);
}

/* Sparse results (explain.h): the baselines that need the model's whole row,
   from each dense row while cl_explain_run_rows holds it: the ∞-gram and the
   backoff n-gram (when the corpus has /text) and the unigram (when uni). */
typedef struct {
    const cl_corpus *cp;
    const int32_t *tok;
    const size_t *off;
    long backoff_min;
    double *inf_h, *bo_h, *uni, *uh;
    int *inf_k, *bo_k;
    int64_t *inf_occ, *bo_occ;
    int32_t *cnt; /* [V] scratch */
    double *tmp;  /* [V] scratch */
} row_baselines;

static int baseline_row(void *ctx, size_t p, const float *q) {
    row_baselines *x = ctx;
    const cl_corpus *cp = x->cp;
    if (cp->suffix_array) {
        /* cl_infgram_hellinger_all's loop body for one text (its last 4 CL_CORPUS_MAX_LEN ids) */
        size_t T = x->off[p + 1] - x->off[p], cap = 4 * CL_CORPUS_MAX_LEN, m = T < cap ? T : cap;
        const int32_t *w = x->tok + x->off[p + 1] - m;
        x->inf_h[p] = cl_infgram_hellinger(cp->text, cp->suffix_array, cp->n_text, cp->V, w, (int)m, 1, q, x->cnt,
                                           x->tmp, &x->inf_k[p], &x->inf_occ[p]);
        x->bo_h[p] = cl_infgram_hellinger(cp->text, cp->suffix_array, cp->n_text, cp->V, w, (int)m, x->backoff_min, q,
                                          x->cnt, x->tmp, &x->bo_k[p], &x->bo_occ[p]);
    }
    if (x->uni) x->uh[p] = cl_hellinger_df(x->uni, q, (size_t)cp->V);
    return 0;
}

/* One text's baseline lines: the exact-string n-gram, the ∞-gram, the backoff n-gram. */
static void print_baselines(const cl_corpus *cp, int L, double ngram_h, const double *inf_h, const int *inf_k,
                            const int64_t *inf_occ, const double *bo_h, const int *bo_k, const int64_t *bo_occ,
                            long K, size_t p) {
    printf("  baselines (Hellinger distance to the model):\n");
    if (ngram_h == CL_H_EMPTY) printf("    exact-string n-gram (the last %d %s): n/a (no match)\n", L, UNIT);
    else printf("    exact-string n-gram (the last %d %s): %.6f\n", L, UNIT, ngram_h);
    if (!cp->suffix_array) {
        printf("    ∞-gram: %s\n    backoff n-gram: %s\n", CL_INFGRAM_NA, CL_INFGRAM_NA);
        return;
    }
    if (inf_h[p] == CL_H_EMPTY) printf("    ∞-gram: n/a (no match)\n");
    else
        printf("    ∞-gram (longest suffix in the corpus: %d %s, %lld occurrences): %.6f\n", inf_k[p], UNIT,
               (long long)inf_occ[p], inf_h[p]);
    if (bo_h[p] == CL_H_EMPTY) printf("    backoff n-gram (>= %ld occurrences): n/a (no match)\n", K);
    else
        printf("    backoff n-gram (longest suffix with >= %ld occurrences: %d %s, %lld): %.6f\n", K,
               bo_k[p], UNIT, (long long)bo_occ[p], bo_h[p]);
}

/* ---- explain --passage: every position of one text (include/corpuslens/scan/passage.h) ----
 * The presenters of cl_passage_result: a table, the details of a few
 * positions, passage.h5. Every figure comes from the result.
 *
 * passage.h5 (attribute format = "corpuslens-passage", format_version 1):
 * n positions, position i = the prediction after the first i + 1 characters,
 * made from the window of at most L characters ending at character i.
 *   /passage/text        [1] string   the passage (UTF-8)
 *   /passage/tokens      [n] int32    its token ids
 *   /passage/next        [n] int32    the actual next token (-1 at the last position)
 *   /passage/win_start   [n] int64    first character of position i's window
 *   /prompts/text        [n] string   the window of each position
 *   then explain.h5's datasets for the n windows, with the same names,
 *   shapes and meaning: /model/probs [n, V], /lens/probs [n, NL, V],
 *   /approx [n, V], /hellinger [n] (-1 = empty), /blocks/counts [n, Lh, V] (a BPE
 *   model: /blocks/next/{indptr,token,count}, sparse rows, wr_sparse_counts),
 *   /blocks/n_matches, /blocks/near_threshold [n, Lh], /matches/substring and
 *   /matches/similarity [n, Lh, K] (when --top > 0), /soft/approx and
 *   /soft/hellinger (--soft), /ngram/counts [n, V] int32, /ngram/hellinger [n]
 *   and
 *   /ngram/substring     [n] int64    the corpus substring equal to the window (-1: none)
 *   /lens/hellinger      [n, NL] f64  H(logit lens of block l, model)
 *   A BPE model (sparse results, explain.h): explain.h5's sparse datasets
 *   (wr_sparse_results: /model/support/{indptr,token,prob,approx,soft_approx},
 *   /model/mass, /lens/top/{token,prob}, /ngram/next/{indptr,token,count})
 *   instead of /model/probs, /lens/probs, /approx, /soft/approx, /ngram/counts.
 *   attributes: explain.h5's (thresholds, weights, index_file, model_sha256,
 *   corpus_h5_sha256, hook, top_k, soft_*) and L, mean_hellinger (over the
 *   non-empty positions; -1 when all are empty), n_empty.
 * Written as OUT.tmp (every close checked, removed on failure), then renamed. */

/* a group without time stamps (the same contents give the same bytes) */
static int passage_group(hid_t f, const char *path) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    int rc = g < 0 ? cl_h5_error_in(f, "cannot create %s", path) : 0;
    if (g >= 0 && H5Gclose(g) < 0 && !rc) rc = cl_h5_error_in(f, "cannot create %s", path);
    H5Pclose(gcpl);
    return rc;
}

static int write_passage_h5(const char *out, const cl_passage_result *pr, const char *text, char **wins,
                            const cl_explain_params *par, const cl_index *ix) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    const cl_explain_result *r = pr->ex;
    int rc = 0;
    const char *groups[] = {"/passage", "/prompts", "/model", "/lens", "/blocks", "/matches", "/soft", "/ngram"};
    for (int i = 0; i < 8 && !rc; i++)
        if ((i != 5 || r->K) && (i != 6 || r->soft_hellinger)) rc = passage_group(f, groups[i]);
    size_t n = pr->n, V = r->V, Lh = r->Lh, NL = r->NL, K = r->K;
    hsize_t d1 = 1, dP = n, dPV[2] = {n, V}, dPL[2] = {n, NL};
    int64_t *ws = cl_trymalloc(n, sizeof *ws, "passage");
    for (size_t i = 0; ws && i < n; i++) ws[i] = (int64_t)pr->win_start[i];
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    rc = rc || !ws || wr(f, "/passage/text", st, st, 1, &d1, &text) ||
         wr(f, "/passage/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dP, pr->tokens) ||
         wr(f, "/passage/next", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dP, pr->next) ||
         wr(f, "/passage/win_start", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dP, ws) ||
         wr(f, "/prompts/text", st, st, 1, &dP, wins) ||
         wr_result(f, r) ||
         (!r->sup_indptr && /* sparse results: wr_result wrote these from the same values */
          (wr(f, "/lens/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dPL, pr->lens_h) ||
           wr(f, "/ngram/substring", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &dP, pr->ngram_sub) ||
           wr(f, "/ngram/counts", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, dPV, pr->ngram_counts) ||
           wr(f, "/ngram/hellinger", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dP, pr->ngram_h)));
    H5Tclose(st);
    free(ws);
    rc = rc || cl_h5_attr_write_str(f, "format", "corpuslens-passage") ||
         cl_h5_attr_write_int(f, "format_version", 1) || cl_h5_attr_write_int(f, "L", pr->L) ||
         cl_h5_attr_write_double(f, "mean_hellinger", pr->mean_h) ||
         cl_h5_attr_write_int(f, "n_empty", (long long)pr->n_empty) ||
         cl_h5_attr_write_doubles(f, "thresholds", par->thresholds, Lh) ||
         cl_h5_attr_write_doubles(f, "weights", par->weights, Lh) || cl_h5_attr_write_str(f, "index_file", ix->path) ||
         cl_h5_attr_write_str(f, "model_sha256", ix->model_sha256) ||
         cl_h5_attr_write_str(f, "corpus_h5_sha256", ix->corpus_h5_sha256) || cl_h5_attr_write_str(f, "hook", ix->hook) ||
         cl_h5_attr_write_int(f, "top_k", (long long)K) ||
         (r->soft_hellinger && (cl_h5_attr_write_doubles(f, "soft_temperatures", par->T, Lh) ||
                                cl_h5_attr_write_doubles(f, "soft_weights", par->soft_w, Lh) ||
                                cl_h5_attr_write_double(f, "soft_floor", par->soft_floor)));
    if (cl_h5_finish(f, tmp, rc != 0)) return -1;
    if (!rc && rename(tmp, out)) rc = cl_error("cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (rc) remove(tmp);
    return rc ? -1 : 0;
}

/* the m most probable tokens of p (or pf), best first (ties: lower id) */
static int top_ids(const double *p, const float *pf, int V, int m, int *idx) {
    int k = 0;
    for (; k < m; k++) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= idx[j] == v;
            double x = p ? p[v] : pf[v];
            if (!used && (best < 0 || x > (p ? p[best] : pf[best]))) best = v;
        }
        if (best < 0) break;
        idx[k] = best;
    }
    return k;
}

static void put_top3(const double *p, const float *pf, const cl_model *vocab, int V) {
    int idx[3], k = top_ids(p, pf, V, 3, idx);
    for (int j = 0; j < k; j++) {
        char e[80], q[84];
        cl_tok_display(vocab, idx[j], e, sizeof e);
        snprintf(q, sizeof q, "'%s'", e);
        printf(" %-6s %.3f", q, p ? p[idx[j]] : pf[idx[j]]);
    }
}

/* put_top3 of sparse results (prompt i's support) */
static void put_top3_sup(const cl_explain_result *r, size_t i, const float *pf, const double *pd, const cl_model *vocab) {
    int32_t idx[3];
    double val[3];
    const int64_t a = r->sup_indptr[i];
    int k = cl_explain_top_sparse(r->sup_token + a, pf ? pf + a : NULL, pd ? pd + a : NULL,
                                  (size_t)(r->sup_indptr[i + 1] - a), 3, idx, val);
    for (int j = 0; j < k; j++) {
        char e[80], q[84];
        cl_tok_display(vocab, idx[j], e, sizeof e);
        snprintf(q, sizeof q, "'%s'", e);
        printf(" %-6s %.3f", q, val[j]);
    }
}

static void print_passage(const cl_passage_result *pr, const cl_explain_params *par, const cl_corpus *cp,
                          const cl_model *vocab, char **wins, const long *at, size_t n_at, int show, int first_block) {
    const cl_explain_result *r = pr->ex;
    const int V = r->V, Lh = r->Lh;
    printf("passage: %zu positions (window: the last %d %s at most); position i predicts %s i + 1\n", pr->n, pr->L,
           UNIT, UNIT1);
    printf("%6s %-6s %-6s | %-35s | %-35s | %-8s | %-8s | matches per block\n", "pos", UNIT1[0] == 'c' ? "char" : "token", "next", "model top 3",
           "approximation top 3", "H", "n-gram H");
    for (size_t i = 0; i < pr->n; i++) {
        char e[80], c[84], nx[84] = "-";
        cl_tok_display(vocab, pr->tokens[i], e, sizeof e);
        snprintf(c, sizeof c, "'%s'", e);
        if (pr->next[i] >= 0) cl_tok_display(vocab, pr->next[i], e, sizeof e), snprintf(nx, sizeof nx, "'%s'", e);
        printf("%6zu %-6s %-6s |", i, c, nx);
        if (r->sup_indptr) put_top3_sup(r, i, r->sup_prob, NULL, vocab);
        else put_top3(NULL, r->model_probs + i * V, vocab, V);
        printf(" |");
        if (r->hellinger[i] == CL_H_EMPTY) printf(" %-34s | %-8s |", "(empty)", "empty");
        else {
            if (r->sup_indptr) put_top3_sup(r, i, NULL, r->sup_approx, vocab);
            else put_top3(r->approx + i * V, NULL, vocab, V);
            printf(" | %.6f |", r->hellinger[i]);
        }
        if (pr->ngram_h[i] == CL_H_EMPTY) printf(" %-8s |", "none");
        else printf(" %.6f |", pr->ngram_h[i]);
        for (int b = 0; b < Lh; b++) printf(" %lld", (long long)r->n_matches[i * (size_t)Lh + b]);
        printf("\n");
    }
    for (size_t j = 0; j < n_at; j++) {
        printf("\nposition %ld (window of %zu %s):\n", at[j], (size_t)at[j] + 1 - pr->win_start[at[j]], UNIT);
        print_explain(r, par, cp, vocab, wins[at[j]], (size_t)at[j], show, first_block);
    }
    if (pr->mean_h == CL_H_EMPTY) printf("\nmean H: empty (no position has an approximation)\n");
    else printf("\nmean H over %zu positions: %.6f (%zu empty)\n", pr->n - pr->n_empty, pr->mean_h, pr->n_empty);
}

/* The passage's text: --passage TEXT, or the whole file (`-`: stdin), as is. */
static char *passage_text(const char *text, const char *path) {
    if (text) {
        char *s = strdup(text);
        if (!s) cl_error("out of memory for the passage");
        return s;
    }
    if (strcmp(path, "-")) {
        size_t len;
        char *s = cl_read_file(path, (size_t)1 << 26, &len);
        if (s && strlen(s) != len) {
            free(s);
            return cl_error("%s: the passage holds a NUL byte", path), NULL;
        }
        return s;
    }
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    while (s) {
        if (len + 1 == cap) {
            if (cap >= (size_t)1 << 26) {
                free(s);
                return cl_error("stdin: the passage is longer than %zu bytes", cap), NULL;
            }
            char *t = realloc(s, cap *= 2);
            if (!t) break;
            s = t;
        }
        size_t got = fread(s + len, 1, cap - 1 - len, stdin);
        len += got;
        if (got == 0) {
            if (ferror(stdin)) {
                free(s);
                return cl_error("cannot read the passage from stdin: %s", strerror(errno)), NULL;
            }
            s[len] = 0;
            if (strlen(s) != len) {
                free(s);
                return cl_error("stdin: the passage holds a NUL byte"), NULL;
            }
            return s;
        }
    }
    free(s);
    cl_error("out of memory for the passage");
    return NULL;
}

/* --at LIST: 0-based positions (negative: from the end); 0 or -1 (message) */
static int parse_at(const char *s, size_t n, long *at, size_t *n_at) {
    *n_at = 0;
    while (s && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || (*end && *end != ',') || *n_at >= 64)
            return cl_error("--at: '%s' is not a comma-separated list of at most 64 positions", s);
        if (v < 0) v += (long)n;
        if (v < 0 || (size_t)v >= n) return cl_error("--at: position %ld is outside the passage (0..%zu)", v, n - 1);
        at[(*n_at)++] = v;
        s = *end ? end + 1 : end;
    }
    return 0;
}

/* explain --passage: rank 0 prints and writes; collective. 0 or 1 (rank 0 printed the message). */
static int explain_passage(const char *text, const char *at_s, const cl_index *ix, const cl_model *m,
                           const cl_corpus *cp, const cl_explain_params *par, int show, int quiet, const char *out) {
    int rank = cli_rank(), err = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (cl_tok_encode(m, text, strlen(text), &ids, &n)) err = 1, cl_error_prefix("passage: ");
    else if (n == 0) err = cl_error("passage: the text is empty");
    long at[64];
    size_t n_at = 0;
    if (!err && at_s && parse_at(at_s, n, at, &n_at)) err = 1;
    if (!err && !at_s) at[0] = (long)n - 1, n_at = 1; /* default: the last position */
    if (cl_par_agree(err, MPI_COMM_WORLD)) {
        free(ids);
        return rank == 0 ? cli_fail() : 1;
    }
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double t0 = cli_wtime();
    cl_passage_result *pr = cl_passage_explain(ix, m, cp, ids, n, par, MPI_COMM_WORLD);
    double t1 = cli_wtime();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    free(ids);
    if (!pr) return rank == 0 ? cli_fail() : 1;
    int rc = 0;
    if (rank == 0) {
        char **wins = cl_trycalloc(n, sizeof *wins, "windows");
        for (size_t i = 0; wins && i < n; i++) {
            size_t s = pr->win_start[i];
            if (!(wins[i] = ids_text(m, pr->tokens + s, i + 1 - s))) break;
        }
        if (!wins || !wins[n - 1]) rc = cli_fail();
        if (!rc && !quiet) print_passage(pr, par, cp, m, wins, at, n_at, show, ix->first_block);
        else if (!rc) {
            if (pr->mean_h == CL_H_EMPTY) printf("mean H: empty (no position has an approximation)\n");
            else printf("mean H over %zu positions: %.6f (%zu empty)\n", pr->n - pr->n_empty, pr->mean_h, pr->n_empty);
        }
        if (!rc && cli_row_error) rc = cli_fail();
        if (!rc) {
            const cl_explain_result *r = pr->ex;
            fprintf(stderr, "corpuslens explain: --passage: %zu positions, %zu index rows x %d blocks: prompts %.3f s, search %.3f s, "
                            "total %.3f s (rank 0 CPU %.3f s); ", n, ix->N, r->Lh, r->seconds_prompts, r->seconds_search, t1 - t0,
                    (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec));
            if (r->sketch) {
                fprintf(stderr, "sketch (k = %d): (position, row) pairs computed per block", ix->sketch->k);
                for (int b = 0; b < r->Lh; b++)
                    fprintf(stderr, " %.2f%%", 100.0 * (double)r->pairs[b] / ((double)ix->N * (double)n));
                fprintf(stderr, "\n");
            } else fprintf(stderr, "every row computed%s\n", ix->sketch ? " (sketch not used)" : " (no sketch)");
        }
        if (!rc && out && write_passage_h5(out, pr, text, wins, par, ix)) rc = cli_fail();
        for (size_t i = 0; wins && i < n; i++) free(wins[i]);
        free(wins);
    }
    cl_passage_free(pr);
    return cli_bcast_int(rc);
}

/* A text for a BPE model: its GPT-2 tokens, the last L (the index's string
 * length) when there are more, as the passage's window at its last token. */
static int bpe_window(const cl_model *m, const char *text, int L, int32_t **ids, size_t *n) {
    if (cl_tok_encode(m, text, strlen(text), ids, n)) return -1;
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return cl_error("the text is empty");
    }
    if (*n > (size_t)L) {
        memmove(*ids, *ids + (*n - (size_t)L), (size_t)L * sizeof **ids);
        *n = (size_t)L;
    }
    return 0;
}

/* cl_sha256_cached's computation of the model's fingerprint (user: the loaded model) */
static int fingerprint(const char *path, char out[65], void *user) {
    (void)path;
    return cl_model_fingerprint(user, out);
}

/* a list option into one of the params' arrays (at most 64 values) */
static int take_list(const char *opt, const cli_doubles *d, double *dst, int *n) {
    if (!d->set) return 0;
    if (d->n > 64) return cli_usage_error(CMD, "%s: %zu values; at most 64 (one per hooked block)", opt, d->n), -1;
    for (size_t i = 0; i < d->n; i++) dst[i] = d->v[i];
    *n = (int)d->n;
    return 0;
}

int cmd_explain(int argc, char **argv) {
    int rank = cli_rank(), R = 1;
    if (cli_mpi_active()) MPI_Comm_size(MPI_COMM_WORLD, &R);
    const char *index_path = NULL, *corpus_path = NULL, *model_path = NULL, *prompt_file = NULL, *params = NULL,
               *out = NULL, *passage = NULL, *passage_file = NULL, *at_s = NULL;
    cl_explain_params par;
    memset(&par, 0, sizeof par);
    par.top_k = 10;
    par.soft_floor = 0.7;
    int nt = 0, nw = 0, nT = 0, nsw = 0, quiet = 0, soft = 0;
    long eval_n = 0, eval_len = 0, show = 8, top = 10, seed_l = 1337, backoff_min = 10;
    cli_doubles *lists = calloc(4, sizeof *lists);
    if (!lists) return cli_usage_error(CMD, "out of memory");
    cli_doubles *thr = lists, *wts = lists + 1, *temps = lists + 2, *sws = lists + 3;
    const cli_option opts[] = {
        CLI_OPT_STRING("index", 0, "INDEX.h5", &index_path, "the index (`corpuslens index`)"),
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &corpus_path, "the corpus file the index was built from"),
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model_path, "the model the index was built from"),
        CLI_OPT_STRING("prompt-file", 0, "FILE", &prompt_file, "one text per line, C escapes (\\n \\t \\\\ \\\" \\xHH)"),
        CLI_OPT_STRING("passage", 0, "TEXT", &passage,
                       "explain every position of TEXT (any length), each from the\n"
                       "window of at most L characters ending there"),
        CLI_OPT_STRING("passage-file", 0, "FILE", &passage_file,
                       "--passage with the whole of FILE, as is (- = stdin)"),
        CLI_OPT_STRING("at", 0, "LIST", &at_s,
                       "--passage: the positions (0-based, negative from the end)\n"
                       "whose similar strings are printed (default: the last)"),
        CLI_OPT_INT("eval-text", 0, "N", &eval_n, 1, 1000000,
                    "N windows of --eval-len characters drawn with --seed from\n"
                    "the held-out text of CORPUS.h5 (prepare --holdout-fraction);\n"
                    "reports H beside the baselines (model = 0, exact-string\n"
                    "n-gram, logit lens per block)"),
        CLI_OPT_INT("eval-len", 0, "L", &eval_len, 1, 1 << 20, "window length (default: the index's L)"),
        CLI_OPT_INT("seed", 0, "S", &seed_l, 0, 0x7fffffffffffffffL, "seed of the held-out windows"),
        CLI_OPT_DOUBLES("thresholds", 0, "LIST", thr, "one per hooked block (default: the paper's for 6 blocks)"),
        CLI_OPT_DOUBLES("weights", 0, "LIST", wts, "one per hooked block (default: the paper's for 6 blocks)"),
        CLI_OPT_STRING("params", 0, "FITTED.ini", &params,
                       "thresholds/weights (and temperatures/soft_weights) from a\n"
                       "`corpuslens tune` snippet ([reduce] or [explain] section)"),
        CLI_OPT_FLAG("soft", 0, &soft,
                     "also the soft kernel: weight soft_w[b] * exp((sim - 1) / T[b])\n"
                     "for every string with sim > --soft-floor (default T 0.05, w the\n"
                     "hard weights)"),
        CLI_OPT_DOUBLES("temperatures", 0, "LIST", temps, "soft-kernel temperatures, one per block (implies --soft)"),
        CLI_OPT_DOUBLES("soft-weights", 0, "LIST", sws, "soft-kernel weights, one per block (implies --soft)"),
        CLI_OPT_DOUBLE("soft-floor", 0, "S", &par.soft_floor, -1, 0.999999, "smallest similarity the soft kernel counts"),
        CLI_OPT_INT("top", 0, "K", &top, 0, 100000, "keep the K most similar strings per block"),
        CLI_OPT_INT("show", 0, "N", &show, 0, 100000, "print N of them per block (tables only for <= 10 texts)"),
        CLI_OPT_INT("backoff-min", 0, "K", &backoff_min, 1, 1L << 40,
                    "the backoff n-gram baseline: the longest suffix of the text\n"
                    "with at least K occurrences in the corpus (default 10)"),
        CLI_OPT_FLAG("quiet", 0, &quiet, "no per-text tables, only the summary"),
        CLI_OPT_STRING("output", 'o', "FILE", &out, "write the results (layout: README, `h5dump -H`)"),
        CLI_END,
    };
    const cli_command cmd = {"explain", USAGE, ABOUT, opts, EPILOG, "TEXT", 0, -1, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) {
        free(lists);
        return prc;
    }
    int lrc = take_list("--thresholds", thr, par.thresholds, &nt) || take_list("--weights", wts, par.weights, &nw) ||
              take_list("--temperatures", temps, par.T, &nT) || take_list("--soft-weights", sws, par.soft_w, &nsw);
    free(lists);
    if (lrc) return 2;
    par.soft = soft || nT || nsw;
    par.top_k = (int)top;
    unsigned long long seed = (unsigned long long)seed_l;
    int u = rank == 0;
#define USAGE_ERR(...) return u ? cli_usage_error(CMD, __VA_ARGS__) : 2
    if (!index_path || !corpus_path || !model_path) USAGE_ERR("--index, --corpus and --model are required");
    int n_src = (first < argc) + (prompt_file != NULL) + (eval_n > 0) + (passage != NULL) + (passage_file != NULL);
    if (n_src != 1)
        USAGE_ERR("give the texts as arguments, or --prompt-file, or --eval-text, or --passage, or --passage-file "
                  "(exactly one)");
    if (at_s && !passage && !passage_file) USAGE_ERR("--at goes with --passage or --passage-file");
    char *ptext = NULL; /* the passage (every rank reads it: stdin reaches rank 0 only under mpirun) */
    if (passage || passage_file) {
        if (passage_file && !strcmp(passage_file, "-") && R > 1) USAGE_ERR("--passage-file -: stdin under mpirun");
        if (!(ptext = passage_text(passage, passage_file))) return u ? cli_fail() : 1;
        if (!*ptext) {
            free(ptext);
            USAGE_ERR("the passage is empty");
        }
    }
    if (params && (nt || nw)) USAGE_ERR("--params and --thresholds/--weights exclude each other");
    const int optind_ = first;

    /* ---- load (every rank: the library checks are collective) ---- */
    int err = 0;
    double tl0 = cli_wtime();
    cl_model *m = cl_model_map(model_path); /* read-only: explain never writes weights */
    double tlm = cli_wtime();
    /* one process: the counts whole; the tokens of the few rows looked up or
       printed from the file. Under mpirun (issue 26) the counts stay in the
       file too: each rank reads those of its index rows (cl_explain_run),
       rank 0 those it prints, and only rank 0 the text of the baselines */
    cl_corpus *cp = !m ? NULL : R > 1 ? cl_corpus_open_rows(corpus_path, 1, rank == 0) : cl_corpus_open_any(corpus_path);
    double tlc = cli_wtime();
    int kinds = m && cp && !cp->bpe != !m->bpe; /* a BPE corpus with a char model, or the reverse */
    if (kinds)
        cl_error("%s is a %s corpus but %s is a %s model", corpus_path, cp->bpe ? "GPT-2 BPE" : "character-level",
                 model_path, m->bpe ? "GPT-2 BPE" : "character-level");
    cl_index *ix = cp && !kinds ? cl_index_open(index_path) : NULL;
    /* the model and corpus loaders name the path in their messages */
    if (m && m->bpe) UNIT = "tokens", UNIT1 = "token";
    if (!m || !cp || !ix) err = 1;
    char msha[65] = "", csha[65] = "";
    int hit_m = 0, hit_c = 0;
    double tl1 = cli_wtime();
    if (!err && rank == 0 &&
        (cl_sha256_cached(model_path, "model-fingerprint-v1", fingerprint, m, msha, &hit_m) ||
         cl_sha256_file_cached(corpus_path, csha, &hit_c) ||
         cl_index_check(ix, msha, csha, model_path, corpus_path) || cl_index_check_order(ix, corpus_path, NULL)))
        err = 1;
    double tl2 = cli_wtime();
    if (!err && params && read_params(params, &par, &nt, &nw, &nT, &nsw)) err = 1;
    if (nT || nsw) par.soft = 1;
    if (!err) {
        int Lh = ix->Lh;
        if (!nt && !nw) {
            if (cl_explain_params_paper(&par, Lh))
                err = cl_error("the index has %d hooked blocks: the paper's thresholds and weights are for 6; give "
                               "--thresholds and --weights (%d values each)",
                               Lh, Lh);
        } else if (nt != Lh || nw != Lh)
            err = cl_error("%d thresholds and %d weights given; the index has %d hooked blocks (one each)", nt, nw, Lh);
        par.Lh = Lh;
        if (!err && par.soft) {
            if (!nT) {
                for (int b = 0; b < Lh; b++) par.T[b] = 0.05;
                nT = Lh;
            }
            if (!nsw) {
                for (int b = 0; b < Lh; b++) par.soft_w[b] = par.weights[b];
                nsw = Lh;
            }
            if (nT != Lh || nsw != Lh)
                err = cl_error("%d temperatures and %d soft weights given; the index has %d hooked blocks", nT, nsw, Lh);
        }
    }
    /* ---- the texts ---- */
    size_t P = 0;
    char **texts = NULL;
    int32_t *tok = NULL;
    size_t *off = NULL;
    char *filebuf = NULL;
    if (!err && eval_n > 0) {
        int L = eval_len ? (int)eval_len : ix->L;
        if (holdout_windows(cp, (size_t)eval_n, L, seed, &tok, &off)) err = 1;
        else {
            P = (size_t)eval_n;
            texts = cl_trycalloc(P, sizeof *texts, "texts");
            for (size_t p = 0; texts && p < P; p++)
                if (!(texts[p] = ids_text(m, tok + p * (size_t)L, (size_t)L))) break;
            if (!texts || !texts[P - 1]) err = 1;
        }
    } else if (!err && !ptext) {
        size_t cap = 0;
        if (prompt_file) {
            size_t len;
            if (!(filebuf = cl_read_file(prompt_file, (size_t)1 << 30, &len))) err = 1;
            int ln = 0;
            for (char *s = filebuf, *nl; !err && s && *s; s = nl ? nl + 1 : NULL) {
                nl = strchr(s, '\n');
                if (nl) *nl = 0;
                ln++;
                size_t n = strlen(s);
                if (n && s[n - 1] == '\r') s[n - 1] = 0;
                if (!*s) continue;
                if (unescape(s, ln)) {
                    cl_error_prefix("%s: ", prompt_file);
                    err = 1;
                    break;
                }
                if (P == cap) {
                    cap = cap ? 2 * cap : 64;
                    char **t2 = realloc(texts, cap * sizeof *texts);
                    if (!t2) {
                        err = cl_error("out of memory for prompts");
                        break;
                    }
                    texts = t2;
                }
                texts[P++] = s;
            }
            if (!err && P == 0) err = cl_error("%s has no prompts", prompt_file);
        } else {
            P = (size_t)(argc - optind_);
            texts = cl_trycalloc(P, sizeof *texts, "texts");
            if (!texts) err = 1;
            for (size_t p = 0; texts && p < P; p++) texts[p] = argv[optind_ + p];
        }
        size_t tot = 0;
        int32_t **ids = err ? NULL : cl_trycalloc(P, sizeof *ids, "token ids");
        size_t *lens = err ? NULL : cl_trycalloc(P, sizeof *lens, "token ids");
        if (!err && (!ids || !lens)) err = 1;
        for (size_t p = 0; !err && p < P; p++) {
            if (m->bpe ? bpe_window(m, texts[p], ix->L, &ids[p], &lens[p]) : cli_encode(m, texts[p], &ids[p], &lens[p])) {
                cl_error_prefix("prompt %zu: ", p + 1);
                err = 1;
            } else tot += lens[p];
        }
        if (!err) {
            tok = cl_trymalloc(tot ? tot : 1, sizeof *tok, "token ids");
            off = cl_trymalloc(P + 1, sizeof *off, "token ids");
            if (!tok || !off) err = 1;
            size_t o = 0;
            for (size_t p = 0; !err && p < P; p++) {
                off[p] = o;
                memcpy(tok + o, ids[p], lens[p] * sizeof *tok);
                o += lens[p];
            }
            if (!err) off[P] = o;
        }
        for (size_t p = 0; ids && p < P; p++) free(ids[p]);
        free(ids);
        free(lens);
    }
    int g = cl_par_agree(err, MPI_COMM_WORLD) != 0;
    int rc = 1;
    cl_explain_result *r = NULL;
    int32_t *ngram = NULL;
    double *ngram_h = NULL, *inf_h = NULL, *bo_h = NULL, *uh_sp = NULL;
    int *inf_k = NULL, *bo_k = NULL;
    int64_t *inf_occ = NULL, *bo_occ = NULL;
    if (g) {
        if (rank == 0) cli_fail();
        goto done;
    }
    if (ptext) {
        rc = explain_passage(ptext, at_s, ix, m, cp, &par, (int)show, quiet, out);
        goto done;
    }
    /* sparse results (a BPE model): the baselines that need the model's whole row are computed while
       the run holds it (rank 0), into arrays made here */
    const int sres = cl_explain_sparse_results(m);
    row_baselines rb = {.cp = cp, .tok = tok, .off = off, .backoff_min = backoff_min};
    int uni_err = 0, e = 0;
    if (sres && rank == 0) {
        const size_t V = (size_t)m->cfg.vocab_size;
        rb.cnt = cl_trymalloc(V, sizeof *rb.cnt, "∞-gram"), rb.tmp = cl_trymalloc(V, sizeof *rb.tmp, "∞-gram");
        e = !rb.cnt || !rb.tmp;
        if (!e && cp->suffix_array) {
            inf_h = rb.inf_h = cl_trymalloc(P, sizeof *inf_h, "∞-gram"), bo_h = rb.bo_h = cl_trymalloc(P, sizeof *bo_h, "∞-gram");
            inf_k = rb.inf_k = cl_trymalloc(P, sizeof *inf_k, "∞-gram"), bo_k = rb.bo_k = cl_trymalloc(P, sizeof *bo_k, "∞-gram");
            inf_occ = rb.inf_occ = cl_trymalloc(P, sizeof *inf_occ, "∞-gram");
            bo_occ = rb.bo_occ = cl_trymalloc(P, sizeof *bo_occ, "∞-gram");
            e = !inf_h || !bo_h || !inf_k || !bo_k || !inf_occ || !bo_occ;
        }
        if (!e && (P > 1 || eval_n > 0)) { /* the unigram row (as below) */
            int64_t *u64 = cl_trycalloc(V, sizeof *u64, "unigram");
            rb.uni = cl_trycalloc(V, sizeof *rb.uni, "unigram"), uh_sp = rb.uh = cl_trymalloc(P, sizeof *uh_sp, "unigram");
            if (u64 && rb.uni && uh_sp && cl_corpus_count_slice(cp, 0, cp->nnz, u64) == 0)
                for (size_t v = 0; v < V; v++) rb.uni[v] = (double)u64[v];
            else {
                free(rb.uni);
                rb.uni = NULL, uni_err = 1;
            }
            free(u64);
        }
    }
    if (cl_par_agree(e, MPI_COMM_WORLD)) {
        free(rb.cnt), free(rb.tmp), free(rb.uni);
        if (rank == 0) cli_fail();
        goto done;
    }
    struct timespec c0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double t0 = cli_wtime();
    r = cl_explain_run_rows(ix, m, cp, tok, off, P, &par, MPI_COMM_WORLD, sres ? baseline_row : NULL, &rb);
    double t1 = cli_wtime();
    free(rb.cnt), free(rb.tmp), free(rb.uni);
    if (!r) {
        if (rank == 0) cli_fail();
        goto done;
    }
    rc = 0;
    if (rank == 0 && r->sup_indptr) { /* sparse results: the n-gram's H from the run */
        ngram_h = cl_trymalloc(P, sizeof *ngram_h, "n-gram");
        if (!ngram_h) {
            rc = cli_fail();
            goto bcast;
        }
        memcpy(ngram_h, r->ngram_h, P * sizeof *ngram_h);
    }
    if (rank == 0) {
        const size_t V = (size_t)r->V;
        /* exact-string n-gram of the last L characters (when the text has L) */
        if (r->sup_indptr) goto baselines_done;
        ngram = cl_trycalloc(P * V, sizeof *ngram, "n-gram");
        ngram_h = cl_trymalloc(P, sizeof *ngram_h, "n-gram");
        double *tmp = cl_trymalloc(V, sizeof *tmp, "n-gram");
        if (!ngram || !ngram_h || !tmp) {
            free(tmp);
            rc = cli_fail();
            goto done;
        }
        for (size_t p = 0; p < P; p++) {
            size_t T = off[p + 1] - off[p];
            int64_t sub = T >= (size_t)cp->L ? cl_explain_find(ix, cp, tok + off[p + 1] - cp->L) : -1;
            if (sub == -2) { /* a corrupt corpus row: fail (on every rank, below) */
                free(tmp);
                rc = cli_fail();
                goto bcast;
            }
            if (sub >= 0 && cl_corpus_next_dense_read(cp, (size_t)sub, ngram + p * V)) {
                free(tmp);
                rc = cli_fail();
                goto bcast;
            }
            for (size_t v = 0; v < V; v++) tmp[v] = ngram[p * V + v];
            ngram_h[p] = cl_hellinger_df(tmp, r->model_probs + p * V, V);
        }
        free(tmp);
        /* the ∞-gram and the backoff n-gram (corpus.h5's /text, when there) */
        if (cp->suffix_array) {
            inf_h = cl_trymalloc(P, sizeof *inf_h, "∞-gram"), bo_h = cl_trymalloc(P, sizeof *bo_h, "∞-gram");
            inf_k = cl_trymalloc(P, sizeof *inf_k, "∞-gram"), bo_k = cl_trymalloc(P, sizeof *bo_k, "∞-gram");
            inf_occ = cl_trymalloc(P, sizeof *inf_occ, "∞-gram"), bo_occ = cl_trymalloc(P, sizeof *bo_occ, "∞-gram");
            if (!inf_h || !bo_h || !inf_k || !bo_k || !inf_occ || !bo_occ ||
                suffix_baselines(cp, tok, off, P, r->model_probs, 1, inf_h, inf_k, inf_occ) ||
                suffix_baselines(cp, tok, off, P, r->model_probs, backoff_min, bo_h, bo_k, bo_occ)) {
                rc = cli_fail();
                goto bcast;
            }
        }
    baselines_done:
        if (!quiet && P <= 10)
            for (size_t p = 0; p < P; p++) {
                print_explain(r, &par, cp, m, texts[p], p, show, ix->first_block);
                print_baselines(cp, cp->L, ngram_h[p], inf_h, inf_k, inf_occ, bo_h, bo_k, bo_occ, backoff_min, p);
                printf("\n");
            }
        if (cli_row_error) {
            rc = cli_fail();
            goto bcast;
        }
        if (P > 1 || eval_n > 0) {
            printf("%s: %zu %s\n", eval_n > 0 ? "held-out evaluation" : "summary", P,
                   eval_n > 0 ? "windows of the held-out text" : "texts");
            print_stats_line("approximation", r->hellinger, P);
            if (r->soft_hellinger) print_stats_line("soft kernel", r->soft_hellinger, P);
            print_stats_line("exact-string n-gram", ngram_h, P);
            if (cp->suffix_array) {
                char name[64];
                print_stats_line("∞-gram", inf_h, P);
                snprintf(name, sizeof name, "backoff n-gram (K = %ld)", backoff_min);
                print_stats_line(name, bo_h, P);
            } else
                printf("  %-36s %s\n  %-34s %s\n", "∞-gram", CL_INFGRAM_NA, "backoff n-gram", CL_INFGRAM_NA);
            /* the unigram: the corpus's next-token counts summed (reduce's unigram row) */
            /* (integer sums: the same doubles as adding each count into a double, below 2^53) */
            double *uni = NULL, *uh = NULL;
            int64_t *u64 = NULL;
            if (r->sup_indptr) { /* sparse results: computed during the run (baseline_row) */
                if (uh_sp && !uni_err) print_stats_line("unigram", uh_sp, P);
                else cli_row_error = 1;
            } else if ((uni = cl_trycalloc(V, sizeof *uni, "unigram")) && (uh = cl_trymalloc(P, sizeof *uh, "unigram")) &&
                       (u64 = cl_trycalloc(V, sizeof *u64, "unigram")) && cl_corpus_count_slice(cp, 0, cp->nnz, u64) == 0) {
                for (size_t v = 0; v < V; v++) uni[v] = (double)u64[v];
                for (size_t p = 0; p < P; p++) uh[p] = cl_hellinger_df(uni, r->model_probs + p * V, V);
                print_stats_line("unigram", uh, P);
            } else
                cli_row_error = 1;
            free(uni), free(uh), free(u64);
            if (cli_row_error) {
                rc = cli_fail();
                goto bcast;
            }
            double *lh = cl_trymalloc(P, sizeof *lh, "lens");
            double *tv = cl_trymalloc(V, sizeof *tv, "lens");
            for (int l = 0; lh && tv && l < r->NL; l++) {
                for (size_t p = 0; p < P; p++) {
                    if (r->lens_h) { /* sparse results: computed from the dense rows */
                        lh[p] = r->lens_h[p * r->NL + l];
                        continue;
                    }
                    for (size_t v = 0; v < V; v++) tv[v] = r->lens[(p * r->NL + l) * V + v];
                    lh[p] = cl_hellinger_df(tv, r->model_probs + p * V, V);
                }
                char name[64];
                snprintf(name, sizeof name, "logit lens, block %d%s", l, l == r->NL - 1 ? " (= the model)" : "");
                print_stats_line(name, lh, P);
            }
            free(lh), free(tv);
            long long near = 0;
            for (size_t i = 0; i < P * (size_t)r->Lh; i++) near += r->near[i];
            printf("  pairs within %g of a threshold: %lld\n", CL_EXPLAIN_NEAR, near);
        }
        struct timespec cpu;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
        fprintf(stderr, "corpuslens explain: %zu text%s, %zu index rows x %d blocks (%s), %d rank%s: load %.3f s (model, corpus, "
                        "index), SHA-256 checks %.3f s (%s), prompts %.3f s, search %.3f s, explain total %.3f s; rank 0 "
                        "CPU time %.3f s (explain %.3f s); load: model %.3f s, corpus %.3f s, index %.3f s; ",
                P, P == 1 ? "" : "s", ix->N, ix->Lh, ix->dtype == CL_INDEX_F16 ? "float16" : "float32", R,
                R == 1 ? "" : "s", tl1 - tl0, tl2 - tl1,
                hit_m && hit_c ? "cached" : hit_m || hit_c ? "one cached" : "computed", r->seconds_prompts, r->seconds_search, t1 - t0, cpu.tv_sec + 1e-9 * cpu.tv_nsec,
                (cpu.tv_sec - c0.tv_sec) + 1e-9 * (cpu.tv_nsec - c0.tv_nsec), tlm - tl0, tlc - tlm, tl1 - tlc);
        if (r->sketch) {
            fprintf(stderr, "sketch (k = %d): rows computed per block", ix->sketch->k);
            for (int b = 0; b < r->Lh; b++) fprintf(stderr, " %.2f%%", 100.0 * (double)r->checked[b] / (double)ix->N);
            /* many texts: a row counts once per tile of texts that reads it (explain.h) */
            fprintf(stderr, "%s\n", P > CL_EXPLAIN_ROW_TILE ? " (a row counted once per tile of texts that reads it)" : "");
        } else fprintf(stderr, "every row computed%s\n", ix->sketch ? " (sketch not used)" : " (no sketch)");
        if (out && write_h5(out, r, &par, texts, ix, ngram, ngram_h)) rc = cli_fail();
    }
bcast:
    rc = cli_bcast_int(rc);
    if (rc == 0 && getenv("CORPUSLENS_CORPUS_STATS")) { /* tests: what each rank read of the corpus */
        unsigned long long rows = 0, ents = 0, chunks = 0, bytes = 0;
        cl_corpus_io_stats(&rows, &ents);
        cl_h5_io_stats(&chunks, &bytes);
        fprintf(stderr, "corpuslens explain: rank %d of %d read %llu substring rows of %zu, %llu next-token entries of %zu; "
                "%llu chunks, %llu stored bytes\n", rank, R, rows, cp->n, ents, cp->nnz, chunks, bytes);
    }
done:
    if (eval_n > 0 && texts)
        for (size_t p = 0; p < P; p++) free(texts[p]);
    free(texts), free(tok), free(off), free(filebuf), free(ngram), free(ngram_h), free(ptext);
    free(inf_h), free(bo_h), free(inf_k), free(bo_k), free(inf_occ), free(bo_occ), free(uh_sp);
    cl_explain_result_free(r);
    cl_index_close(ix);
    cl_corpus_free(cp);
    cl_model_free(m);
    return rc;
#undef USAGE_ERR
}

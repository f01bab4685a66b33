/* corpuslens reduce: scan.h5 -> report/ (report.md, report.h5, SVG plots). */
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
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/reduce/reduce.h"
#include "corpuslens/reduce/soft.h"
#include "corpuslens/reduce/report.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/corpus/infgram.h"
#include "corpuslens/model/model.h"

static const char USAGE[] =
    "corpuslens reduce SCAN.h5 [--thresholds t0,t1,...] [--weights w0,w1,...]\n"
    "                         [--compare-model M.h5 ...] [--examples i,j,...]\n"
    "                         [--ablation ABLATION.h5] [--tuned TUNE.h5] -o DIR";

static const char ABOUT[] =
    "Turns a finished scan into the Hellinger report. Per prompt and block, the\n"
    "next-token counts of the corpus substrings more similar than the block's\n"
    "threshold are summed (from /freq/counts: bins whose lower edge >= threshold,\n"
    "exact on the scan's grid); the weighted sum over blocks (raw counts) is\n"
    "normalised into the approximation, and its Hellinger distance\n"
    "H = sqrt(sum (sqrt p - sqrt q)^2) / sqrt 2 to the model's softmax is taken.\n"
    "Baselines with the same statistics: each block alone, the logit lens at each\n"
    "block, the exact-string n-gram, the unigram, and each --compare-model (the\n"
    "noise floor: another model's distribution on the prompts).\n";

static const char EPILOG[] =
    "Statistics: count, n_empty, mean, std (population), min, p10, p25, median,\n"
    "p75, p90, max (linear interpolation, numpy's default). Prompts with an empty\n"
    "distribution are counted in n_empty and excluded; their H is stored as -1.\n"
    "With --compare-model, reduce runs under MPI (mpirun -n R); without, on one\n"
    "process. A csr scan with /model/support (no [P, V] dataset) is reduced on\n"
    "each prompt's support: report.h5 holds /approx/{indptr,token,prob}, the\n"
    "approximation's nonzero entries; --compare-model needs a dense scan.\n";

/* The ids of the scan's prompts, text p = tok[off[p] .. off[p+1]): a char
   corpus's vocabulary encodes the texts; a BPE corpus gives the rows of the
   scan's /prompts/index (a prompt's decoded bytes would not always encode to
   its tokens), each checked against the corpus and against the scan's text.
   0, or -1 with a message. */
static int prompt_ids(const cl_scan *s, const cl_corpus *cp, char **texts, int32_t **tok_out, size_t **off_out) {
    size_t P = s->P, cap = 0;
    for (size_t p = 0; p < P; p++) cap += cp->bpe ? (size_t)cp->L : strlen(texts[p]);
    int32_t *tok = cl_trymalloc(cap ? cap : 1, sizeof *tok, "the prompts' ids");
    size_t *off = cl_trymalloc(P + 1, sizeof *off, "the prompts' ids");
    int64_t *idx = cp->bpe ? cl_trymalloc(P, sizeof *idx, "/prompts/index") : NULL;
    size_t tcap = cp->bpe ? cl_corpus_text_cap(cp) : 0;
    char *buf = cp->bpe ? cl_trymalloc(tcap, 1, "a prompt's text") : NULL;
    hsize_t dP = P;
    int rc = !tok || !off || (cp->bpe && (!idx || !buf)) ? -1 : 0;
    if (!rc && cp->bpe) {
        if (s->L != cp->L) rc = cl_error("the scan's L (%d) is not the corpus's (%d)", s->L, cp->L);
        else if (cl_h5_read_exact(s->file, "/prompts/index", H5T_NATIVE_INT64, 1, &dP, idx) < 0) rc = -1;
    }
    off[0] = 0;
    for (size_t p = 0; !rc && p < P; p++) {
        size_t n = 0;
        if (!cp->bpe) {
            size_t len = strlen(texts[p]);
            if (cl_vocab_encode(cp->vocab, cp->V, texts[p], len, tok + off[p], len, &n) < 0)
                rc = cl_error_prefix("prompt %zu: ", p);
        } else if (idx[p] < 0 || (uint64_t)idx[p] >= cp->n) {
            rc = cl_error("the scan's /prompts/index: entry %zu (%lld) is not a substring of the corpus", p,
                          (long long)idx[p]);
        } else if (cl_corpus_row(cp, (size_t)idx[p], tok + off[p]) < 0) {
            rc = cl_error_prefix("prompt %zu: ", p);
        } else {
            long len = cl_corpus_row_text_n(cp, (size_t)idx[p], buf, tcap);
            if (len < 0) rc = cl_error_prefix("prompt %zu: ", p);
            else if ((size_t)len != strlen(texts[p]) || memcmp(buf, texts[p], (size_t)len))
                rc = cl_error("prompt %zu: the scan's text is not the corpus's substring %lld", p,
                              (long long)idx[p]);
            n = (size_t)cp->L;
        }
        off[p + 1] = off[p] + n;
    }
    free(idx), free(buf);
    if (rc) {
        free(tok), free(off);
        return -1;
    }
    *tok_out = tok, *off_out = off;
    return 0;
}

/* cl_infgram_hellinger_all on a sparse reduction: the followers' counts of
   each prompt (one [V] row of scratch) against the model on its support; a
   follower outside the support: the scan and the corpus disagree (refused,
   naming the prompt). 0 or -1. */
static int suffix_sparse(const cl_scan *s, const cl_reduction *r, const cl_corpus *cp, const int32_t *tok,
                         const size_t *off, int64_t min_occ, double *h) {
    size_t V = (size_t)cp->V, ns_max = 1;
    const cl_scan_model *m = &r->model;
    for (size_t p = 0; p < r->P; p++)
        if ((size_t)(m->ind[p + 1] - m->ind[p]) > ns_max) ns_max = (size_t)(m->ind[p + 1] - m->ind[p]);
    int32_t *cnt = cl_trymalloc(V, sizeof *cnt, "∞-gram");
    double *a = cl_trymalloc(ns_max, sizeof *a, "∞-gram");
    int rc = cnt && a ? 0 : -1;
    for (size_t p = 0; !rc && p < r->P; p++) {
        int64_t occ = 0;
        size_t ns = (size_t)(m->ind[p + 1] - m->ind[p]);
        const int32_t *st = m->tok + m->ind[p];
        int k = cl_infgram(cp->text, cp->suffix_array, cp->n_text, cp->V, tok + off[p], (int)(off[p + 1] - off[p]),
                           min_occ, cnt, &occ);
        for (size_t j = 0; j < ns; j++) a[j] = 0;
        for (size_t v = 0; k && !rc && v < V; v++) {
            if (!cnt[v]) continue;
            long j = cl_support_find(st, ns, (int32_t)v);
            if (j < 0)
                rc = cl_error("%s: %s: prompt %zu: the corpus's follower %zu of its last token is not in its support: "
                              "the scan and the corpus disagree", s->path, CL_SCAN_MODEL_SUPPORT_TOKEN, p, v);
            else a[j] = (double)cnt[v];
        }
        if (!rc) h[p] = k ? cl_hellinger_sup(a, m->prob + m->ind[p], ns, m->sum[p], m->rest[p]) : CL_H_EMPTY;
    }
    free(cnt), free(a);
    return rc;
}

/* The ∞-gram and backoff n-gram baselines (issue 23) of the scan's prompts,
   from the corpus.h5 the scan names (attribute corpus_h5_file, checked against
   corpus_h5_sha256), inserted before the compare models: a char corpus or a
   GPT-2 BPE corpus (its token suffix array, /text/tokens). A corpus that
   cannot be reached, differs, or has no suffix array: a line says why and the
   rows are left out (0). -1 for out of memory, or a corpus whose prompts are
   not the scan's. Rank 0; the counts stay in the file (cl_corpus_open_rows:
   only /text, its suffix array and the prompts' rows are used). */
static int add_suffix_baselines(const cl_scan *s, cl_reduction *r, char **texts, long K) {
    char path[4096] = "", sha[80] = "", got[65] = "";
    if (!cl_h5_attr_exists(s->file, "corpus_h5_file") ||
        cl_h5_attr_read_str(s->file, "corpus_h5_file", path, sizeof path) < 0 || !*path) {
        printf("reduce: ∞-gram and backoff n-gram left out: the scan does not name its corpus.h5\n");
        return 0;
    }
    if (s->model_sparse && !s->followers) {
        printf("reduce: ∞-gram and backoff n-gram left out: the scan's model supports do not hold the corpus "
               "followers (model_support counts+next+top: its corpus.h5 had no /text)\n");
        return 0;
    }
    if (cl_h5_attr_exists(s->file, "corpus_h5_sha256")) cl_h5_attr_read_str(s->file, "corpus_h5_sha256", sha, sizeof sha);
    cl_corpus *cp = NULL;
    if (cl_sha256_file(path, got) < 0 || (*sha && strcmp(sha, got) != 0) || !(cp = cl_corpus_open_rows(path, 1, 1)) ||
        cp->V != r->V || !!cp->bpe != !!s->bpe || !cp->suffix_array) {
        const char *why = !*got ? cl_last_error() : (*sha && strcmp(sha, got)) ? "it changed since the scan"
                          : !cp ? cl_last_error() : cp->V != r->V || !!cp->bpe != !!s->bpe ? "another vocabulary"
                          : "corpus.h5 has no suffix array: prepare it again";
        printf("reduce: ∞-gram and backoff n-gram left out: %s: %s\n", path, why);
        cl_corpus_free(cp);
        return 0;
    }
    size_t P = r->P, nb = r->n_baselines + 2;
    int32_t *tok = NULL;
    size_t *off = NULL;
    if (prompt_ids(s, cp, texts, &tok, &off)) {
        cl_error_prefix("%s: ", path);
        cl_corpus_free(cp);
        return -1;
    }
    cl_baseline *b = realloc(r->baselines, nb * sizeof *b);
    if (!b) return cl_error("out of memory for the baselines"), free(tok), free(off), cl_corpus_free(cp), -1;
    r->baselines = b;
    size_t at = r->b_compare;
    memmove(b + at + 2, b + at, (r->n_baselines - at) * sizeof *b);
    memset(b + at, 0, 2 * sizeof *b);
    r->n_baselines = nb;
    r->b_compare += 2;
    snprintf(b[at].name, sizeof b[at].name, "infgram");
    snprintf(b[at].label, sizeof b[at].label, "∞-gram");
    snprintf(b[at + 1].name, sizeof b[at + 1].name, "backoff");
    snprintf(b[at + 1].label, sizeof b[at + 1].label, "backoff n-gram (K = %ld)", K);
    int rc = 0;
    for (int j = 0; !rc && j < 2; j++) {
        b[at + j].hellinger = malloc(P * sizeof(double));
        b[at + j].empty = calloc(P, 1);
        if (!b[at + j].hellinger || !b[at + j].empty) rc = cl_error("out of memory for the baselines");
        else if (r->sparse ? suffix_sparse(s, r, cp, tok, off, j ? K : 1, b[at + j].hellinger)
                           : cl_infgram_hellinger_all(cp->text, cp->suffix_array, cp->n_text, cp->V, tok, off, P,
                                                      SIZE_MAX, r->model_probs, j ? K : 1, b[at + j].hellinger, NULL,
                                                      NULL))
            rc = -1;
        for (size_t p = 0; !rc && p < P; p++) b[at + j].empty[p] = b[at + j].hellinger[p] == CL_H_EMPTY;
    }
    for (int j = 0; !rc && j < 2; j++)
        if (cl_stats_compute(b[at + j].hellinger, P, &b[at + j].stats)) rc = -1;
    free(tok), free(off);
    cl_corpus_free(cp);
    return rc;
}

/* " <label> MEAN" of a summary line; "n/a (no match)" when every prompt is empty. */
static void print_mean(const char *label, const cl_stats *st) {
    if (st->count == 0) printf("%s n/a (no match)", label);
    else printf("%s %.4f", label, st->mean);
}

int cmd_reduce(int argc, char **argv) {
    int rank = cli_rank();
    const char *scan_path = NULL, *outdir = NULL, *ablation_path = NULL, *tuned_path = NULL;
    cli_strings *compare_s = calloc(1, sizeof *compare_s);
    cli_doubles *thr = calloc(1, sizeof *thr), *w = calloc(1, sizeof *w), *ex = calloc(1, sizeof *ex);
    cli_doubles *sT = calloc(1, sizeof *sT), *sW = calloc(1, sizeof *sW);
    size_t *examples = NULL;
    long backoff_min = 10;
    int rc = 2;
    if (!compare_s || !thr || !w || !ex || !sT || !sW) {
        cli_usage_error("reduce", "out of memory");
        goto out;
    }
    const cli_option opts[] = {
        CLI_OPT_DOUBLES("thresholds", 0, "LIST", thr,
                        "one per block, on the scan's grid of bin lower edges, in\n"
                        "[prefilter, 1] (default: the paper's 0.95,0.94,0.85,0.76,\n"
                        "0.81,0.89 for 6 blocks; required otherwise)"),
        CLI_OPT_DOUBLES("weights", 0, "LIST", w,
                        "one per block, >= 0, not all 0 (default: the paper's\n"
                        "0.01,0.01,0.1,1.5,6,0.01 for 6 blocks)"),
        CLI_OPT_STRINGS("compare-model", 0, "F", compare_s, 64,
                        "another model file with the same vocabulary (repeatable);\n"
                        "its forward passes are split over the MPI ranks (other\n"
                        "seeds: the noise floor = the mean of their mean H, and\n"
                        "approximation / noise floor, beside the paper's 1.58)"),
        CLI_OPT_DOUBLES("examples", 0, "LIST", ex, "prompt indices to show in the examples table"),
        CLI_OPT_DOUBLES("temperatures", 0, "LIST", sT,
                        "also the soft kernel w_b exp((sim - 1) / T_b) from the bins\n"
                        "(printed with the bin-width error of its weights;\n"
                        "include/corpuslens/reduce/soft.h); `explain` computes it exactly"),
        CLI_OPT_DOUBLES("soft-weights", 0, "LIST", sW, "weights of the soft kernel (default: the hard weights)"),
        CLI_OPT_INT("backoff-min", 0, "K", &backoff_min, 1, 1L << 40,
                    "the backoff n-gram baseline: the longest suffix of the prompt\n"
                    "with at least K occurrences in the corpus (default 10)"),
        CLI_OPT_STRING("ablation", 0, "F", &ablation_path, "`ablate -o F`: its table beside the paper's ranges"),
        CLI_OPT_STRING("tuned", 0, "F", &tuned_path,
                       "`tune --h5 F`: fitted vs the paper's values on held-out prompts"),
        CLI_OPT_STRING("output", 'o', "DIR", &outdir,
                       "output folder (created): report.md, report.h5,\n"
                       "hellinger_density.svg, block_matches.svg"),
        CLI_END,
    };
    const cli_command cmd = {"reduce", USAGE, ABOUT, opts, EPILOG, "SCAN.h5", 1, 1, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) {
        rc = prc;
        goto out;
    }
    scan_path = argv[first];
    if (!outdir) {
        cli_usage_error("reduce", "-o DIR is required");
        goto out;
    }
    const char **compare = compare_s->v;
    size_t n_compare = (size_t)compare_s->n, n_ex = ex->n;
    if (n_ex) {
        examples = malloc(n_ex * sizeof *examples);
        if (!examples) {
            cli_usage_error("reduce", "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_ex; i++) {
            double e = ex->v[i];
            if (!(e >= 0) || e != floor(e) || e > 1e15) {
                cli_usage_error("reduce", "--examples: %g is not a prompt index", e);
                goto out;
            }
            examples[i] = (size_t)e;
        }
    }
    rc = 1;
    double t0 = cli_wtime();
    cl_scan *s = cl_scan_open(scan_path);
    double tv[64], wv[64];
    int kb[64];
    char **texts = NULL;
    float **cprobs = NULL;
    cl_reduction *r = NULL;
    int err = !s;
    if (!err && cl_reduce_params(s, thr->set ? thr->v : NULL, thr->n, w->set ? w->v : NULL, w->n, tv, wv, kb))
        err = 1;
    if (!err && n_compare && s->model_sparse)
        err = cl_error("%s: --compare-model needs the model's whole distribution on every prompt, and this scan "
                       "stores it only on each prompt's support (next_layout csr, /model/support); scan with "
                       "--next-layout dense (the default for V <= 4096) to compare models", scan_path) != 0;
    if (!err) err = !(texts = cl_scan_read_texts(s));
    if (cl_par_agree(err, MPI_COMM_WORLD)) goto done;
    if (n_compare) {
        cprobs = calloc(n_compare, sizeof *cprobs);
        err = !cprobs;
        for (size_t c = 0; !err && c < n_compare; c++) {
            cl_model *m = cl_model_load(compare[c]);
            if (cl_par_agree(!m || cl_par_fault("reduce.load", MPI_COMM_WORLD), MPI_COMM_WORLD)) {
                cl_error_prefix("--compare-model %s: ", compare[c]);
                cl_model_free(m);
                err = 1;
                break;
            }
            cprobs[c] = rank == 0 ? malloc(s->P * (size_t)s->V * sizeof(float)) : NULL;
            int lerr = rank == 0 && !cprobs[c] ? cl_error("out of memory for %s's probabilities", compare[c]) : 0;
            if (cl_par_agree(lerr, MPI_COMM_WORLD)) {
                cl_model_free(m);
                err = 1;
                break;
            }
            if (cl_reduce_model_probs(m, s, texts, MPI_COMM_WORLD, cprobs[c])) {
                cl_error_prefix("--compare-model %s: ", compare[c]);
                err = 1;
            }
            cl_model_free(m);
        }
        if (err) goto done;
    }
    double t1 = cli_wtime();
    if (rank == 0) {
        r = cl_reduce(s, tv, wv, kb, (const float *const *)cprobs, compare, n_compare);
        if (r && add_suffix_baselines(s, r, texts, backoff_min)) {
            cl_reduction_free(r);
            r = NULL;
        }
        cl_report_opts o = {.scan_path = scan_path, .examples = examples, .n_examples = n_ex};
        static cl_ablation ab;
        static cl_tuned tu;
        err = !r || (ablation_path && cl_ablation_read(ablation_path, &ab)) ||
              (tuned_path && cl_tuned_read(tuned_path, &tu));
        if (!err && ablation_path) o.ablation = &ab;
        if (!err && tuned_path) o.tuned = &tu;
        if (!err && tuned_path && tu.Lb != r->Lb)
            err = cl_error("%s: fitted for %d blocks, the scan has %d", tuned_path, tu.Lb, r->Lb) != 0;
        err = err || cl_sha256_file(scan_path, o.scan_sha256) || cl_report_write(outdir, s, r, texts, &o);
    }
    if (cl_par_agree(err, MPI_COMM_WORLD)) goto done;
    if (rank == 0) {
        if (r->stats.count == 0)
            printf("reduce: %zu prompts, mean H n/a (no match: all %zu empty)", r->P, r->stats.n_empty);
        else
            printf("reduce: %zu prompts, mean H %.4f, std %.4f, median %.4f (%zu empty)", r->P, r->stats.mean,
                   r->stats.std, r->stats.median, r->stats.n_empty);
        print_mean("; n-gram", &r->baselines[r->b_ngram].stats);
        print_mean(", unigram", &r->baselines[r->b_unigram].stats);
        for (size_t i = r->b_unigram + 1; i < r->b_compare; i++) { /* the ∞-gram and backoff rows, when there */
            printf(", %s", r->baselines[i].name);
            print_mean("", &r->baselines[i].stats);
        }
        for (size_t c = 0; c < n_compare; c++) {
            printf(", %s", r->baselines[r->b_compare + c].name);
            print_mean("", &r->baselines[r->b_compare + c].stats);
        }
        cl_noise_floor nf;
        if (!cl_noise_floor_of(r, &nf) && nf.n)
            printf("\nreduce: noise floor (mean over %zu other models) %.4f, approximation / noise floor %.2f "
                   "(paper 0.1677 / 0.106 = 1.58)",
                   nf.n, nf.mean, nf.ratio);
        printf("\nreduce: wrote %s/report.md, report.h5, hellinger_density.svg, block_matches.svg "
               "(%.2f s: models %.2f s, counts %.2f s)\n",
               outdir, cli_wtime() - t0, t1 - t0, r->seconds_read);
    }
    if (rank == 0 && sT->set) {
        /* the soft kernel from the bins (printed only; report.h5 is unchanged) */
        size_t Lb = (size_t)s->Lb;
        double *hs = malloc(s->P * sizeof *hs);
        cl_stats st;
        if (sT->n != Lb || (sW->set && sW->n != Lb)) {
            cl_error("--temperatures/--soft-weights need %zu values (one per block)", Lb);
            err = 1;
        } else if (!hs || cl_soft_reduce(s, sT->v, sW->set ? sW->v : wv, hs) || cl_stats_compute(hs, s->P, &st)) {
            err = 1;
        } else {
            printf("reduce: soft kernel from the bins: mean H %.4f, std %.4f, median %.4f (%zu empty); weight error "
                   "from the bin width (exp(width / 2T) - 1):",
                   st.mean, st.std, st.median, st.n_empty);
            for (size_t b = 0; b < Lb; b++) printf(" %.1f%%", 100 * cl_soft_bin_error(s->bin_width, sT->v[b]));
            printf("\n");
        }
        free(hs);
    }
    if (cli_bcast_int(err)) goto done;
    rc = 0;
done:
    if (rc && rank == 0) cli_fail();
    cl_reduction_free(r);
    if (cprobs)
        for (size_t c = 0; c < n_compare; c++) free(cprobs[c]);
    free(cprobs);
    cl_scan_texts_free(texts);
    cl_scan_close(s);
out:
    free(sT);
    free(sW);
    free(examples);
    free(compare_s);
    free(thr);
    free(w);
    free(ex);
    return rc;
}

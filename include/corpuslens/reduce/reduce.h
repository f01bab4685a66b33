/* corpuslens reducer: scan.h5 -> the corpus-strings approximation of the
 * model's next-token distribution, its Hellinger distance to the model, the
 * baselines, statistics, and fitted thresholds/weights (`corpuslens tune`).
 *
 * Dimension legend: P prompts, Lb hooked blocks (the scan's n_hook_blocks:
 * n_layer for a short hook name, 1 for embed or one full block hook name), NL
 * the model's n_layer (the logit lens), NB bins, V vocab. Block b of /freq is
 * the model's block first_block + b.
 *
 * The approximation (Pather 2024), per prompt p:
 *   above[b, v] = sum over bins k with bin_lower[k] >= threshold[b] of
 *                 /freq/counts[p, b, k, v]       (exact on the grid)
 *   a[v]        = sum_b weight[b] * above[b, v]  (raw counts, not normalised
 *                 per block)
 *   approx      = a / sum(a); "empty" when sum(a) == 0 (no count above any
 *                 threshold with a nonzero weight).
 *   H(p, q)     = sqrt(sum_v (sqrt p_v - sqrt q_v)^2) / sqrt 2, q = /model/probs.
 *
 * Thresholds: each must lie in [prefilter, 1] and on the grid: equal (within
 * 1e-9) to one of /freq/bin_lower (bin_lower[0] = prefilter is allowed: it
 * keeps every prefiltered pair). Weights: >= 0, not all 0. Exactly Lb of each;
 * the paper's values (h5schema.h) are the default when Lb == 6.
 *
 * Empty distributions (an approximation or baseline with no counts) are not
 * given a Hellinger distance: their entry in a hellinger array is
 * CL_H_EMPTY (-1), their empty flag is 1, and the statistics exclude them
 * (cl_stats.n_empty counts them; cl_stats.count counts the rest).
 */
#ifndef CORPUSLENS_REDUCE_H
#define CORPUSLENS_REDUCE_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/model/model.h"

#include "corpuslens/base/rng.h"
#include "corpuslens/base/stats.h"

/* ---- scan.h5 ---- */

typedef struct {
    hid_t file;           /* open read-only; closed by cl_scan_close */
    char path[4096];
    size_t P;             /* prompts */
    int Lb, V, NB;        /* hooked blocks (n_hook_blocks), vocab, bins */
    int NL, first_block;  /* the model's n_layer (logit lens); block b is first_block + b */
    int L;                /* string length */
    double prefilter, bin_width;
    double *bin_lower;    /* [NB] */
    uint32_t *vocab;      /* [V] code points */
    char hook[64];
    char model_sha256[80];
    int64_t n_followers;  /* sum of /corpus/unigram: no count exceeds it */
    int64_t n_substrings; /* no match count exceeds it */
    int bpe;              /* token_type "gpt2-bpe" (scan of a BPE corpus) */
    int csr;              /* next_layout "csr": /freq/next/{indptr,token,count} (scan_counts.c) */
    int64_t nnz;          /* csr: stored (prompt, block, bin, token) counts */
    int model_sparse;     /* csr with /model/support (h5schema.h): no [P, V] dataset */
    int followers;        /* model_sparse: the supports hold the last token's followers
                             (model_support "counts+next+followers+top"): the ∞-gram's tokens */
    int64_t n_support;    /* model_sparse: entries of /model/support/token */
    int64_t n_next;       /* model_sparse: entries of /prompts/next/token */
} cl_scan;

/* Open and validate a scan file: format "corpuslens-scan", format_version
 * CL_SCAN_FORMAT_VERSION, complete == 1, the attributes and the shapes, type
 * classes and stored data of every dataset the reducer reads, the grid
 * prefilter + k bin_width, /corpus/unigram >= 0. The readers below check the
 * values they read (counts in [0, n_followers], match counts in
 * [0, n_substrings], probabilities in [0, 1]).
 * NULL with a message on error. */
cl_scan *cl_scan_open(const char *path);
void cl_scan_close(cl_scan *s);

/* Check thresholds/weights against the scan (see the top of this file).
 * thr/w may be NULL (n 0) for the paper defaults, which exist only for Lb==6.
 * Fills thr_out[Lb], w_out[Lb] and kbin_out[Lb] (the bin index of each
 * threshold). Returns 0 or -1 with a message naming the offending value. */
int cl_reduce_params(const cl_scan *s, const double *thr, size_t n_thr, const double *w,
                     size_t n_w, double *thr_out, double *w_out, int *kbin_out);

/* Prompts per block of the block-wise readers (as many as 16 MiB of dense
 * counts [n, Lb, NB, V] hold; at least 1, at most P). */
size_t cl_scan_block_prompts(const cl_scan *s);
/* scan_counts.c: the layout (attribute next_layout: absent or "dense", or
 * "csr"; another value refused) and the shapes of its datasets (cl_scan_open
 * calls it); rows [p0, p0+n) of the binned counts as dense [n, Lb, NB, V]
 * from either layout, every value checked (counts in [0, n_followers]; CSR:
 * offsets within the file's entries, tokens in 0..V-1 increasing in a row,
 * stored counts >= 1). 0 or -1 with a message. */
int cl_scan_counts_open(cl_scan *s);
/* s->vocab: /vocab of a char scan; a BPE scan (token_type "gpt2-bpe", no
 * /vocab: its tokenizer is the corpus's) gets V placeholders U+FFFD (the
 * report's token tables show no token text yet) and s->bpe = 1. *V receives
 * the entries. 0 or -1. */
int cl_scan_vocab_open(cl_scan *s, int *V);
int cl_scan_read_counts(const cl_scan *s, size_t p0, size_t n, int32_t *counts);
/* Rows [p0, p0+n) of the binned counts as CSR: n * Lb * NB rows in
 * (prompt, block, bin) order, ind[nr + 1] from 0, tokens increasing in a row,
 * counts >= 1, all checked (a dense layout is read a block at a time and its
 * nonzero cells kept). Memory follows the nonzeros, not V. 0 or -1. */
typedef struct {
    size_t nr;
    int64_t *ind;
    int32_t *tok, *cnt;
} cl_scan_rows;
int cl_scan_read_rows(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out);
void cl_scan_rows_free(cl_scan_rows *r);

/* The model's probabilities of prompts [p0, p0 + n): per prompt a support
 * (tokens increasing) and the probabilities there, the normaliser sum (of the
 * positive finite probabilities over all V) and the part of it off the
 * support. A csr scan with /model/support: those datasets and /model/mass; a
 * dense scan (or a csr scan from before, with /model/probs): every token, rest
 * 0. Every offset, token, probability and mass checked. H against a
 * distribution on the support: cl_hellinger_sup(a, prob + ind[i], ind[i+1] -
 * ind[i], sum[i], rest[i]). 0 or -1 with a message. */
typedef struct {
    size_t n;
    int64_t *ind;    /* [n + 1] from 0 */
    int32_t *tok;
    float *prob;
    double *sum, *rest; /* [n] */
} cl_scan_model;
int cl_scan_read_model(const cl_scan *s, size_t p0, size_t n, cl_scan_model *out);
void cl_scan_model_free(cl_scan_model *m);
/* The exact-string n-gram counts of prompts [p0, p0 + n) as sparse rows (nr
 * = n; /prompts/next of a model_sparse scan, else the nonzero cells of
 * /prompts/next_counts), every value checked. 0 or -1. */
int cl_scan_read_next(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out);
/* The place of token t in the support tok[0..ns) (increasing), or -1. */
long cl_support_find(const int32_t *tok, size_t ns, int32_t t);

/* Per-prompt supports (tune, tune --soft, reduce --soft): the count support
 * of a prompt is the union of the tokens of its Lb x NB count rows; off it
 * every approximation is 0 and the model's mass there is one number.
 * cl_count_support: the support of the RP rows from r0 of c into sup
 * (increasing, ns of them, returned), pos[t] = its place (pos is all -1
 * outside it: the caller resets it with cl_support_clear). */
size_t cl_count_support(const cl_scan_rows *c, size_t r0, size_t RP, int32_t *pos, int32_t *sup);
void cl_support_clear(int32_t *pos, const int32_t *sup, size_t ns);
/* The model's row i of m (prompt p of the scan) on the count support sup[ns]
 * (pos marked as cl_count_support leaves it): sq[j] = sqrt(q / sum) at sup[j]
 * (as cl_sqrt_probs: a dense scan gives the bits of its dense row), *rest =
 * the normalised mass off the count support (the mass the model has off its
 * own support plus its support's entries off the count support). msup[ns]:
 * scratch. Every count token must be in the model support, else -1 with a
 * message naming the dataset and the prompt (an inconsistent file). */
int cl_model_on_support(const cl_scan *s, const cl_scan_model *m, size_t i, size_t p, const int32_t *sup,
                        size_t ns, const int32_t *pos, int64_t *msup, double *sq, double *rest);
/* Scratch of V entries for cl_sup_hellinger (pos all -1). 0 or -1. */
typedef struct {
    int32_t *pos, *sup;
    int64_t *msup;
    double *a, *am;
    size_t am_cap;
} cl_sup_scratch;
int cl_sup_scratch_init(cl_sup_scratch *x, size_t V);
void cl_sup_scratch_free(cl_sup_scratch *x);
/* H of prompt i of a chunk (its RP = Lb x NB count rows from i * RP of c,
 * the model's row i of m; prompt p of the scan, for messages): the
 * approximation a = sum over rows r of f[r] * counts (f[Lb * NB]; rows with
 * f[r] == 0 skipped), placed on the model support, against the model
 * (cl_hellinger_sup: the dense H to ~1e-16). CL_H_EMPTY when a is empty.
 * 0 or -1 (a count token outside the model support). */
int cl_sup_hellinger(const cl_scan *s, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p,
                     const double *f, cl_sup_scratch *x, double *h);

/* Calls fn(ctx, c, i, m, p) for every prompt p with mask[p] == want (mask
 * NULL: every prompt), in order: its count rows are rows i * Lb * NB .. of c
 * (cl_scan_read_rows) and its model row is row i of m (cl_scan_read_model),
 * read 64 prompts at a time (a chunk without such a prompt is not read).
 * 0, or -1 when a read or fn fails. */
typedef int (*cl_prompt_fn)(void *ctx, const cl_scan_rows *c, size_t i, const cl_scan_model *m, size_t p);
int cl_scan_each_prompt(const cl_scan *s, const uint8_t *mask, uint8_t want, cl_prompt_fn fn, void *ctx);
/* h[p] = cl_sup_hellinger with the factors f[Lb * NB] for every prompt with
 * mask[p] == want (mask NULL: all P); the other entries untouched. 0 or -1. */
int cl_sup_hellinger_all(const cl_scan *s, const uint8_t *mask, uint8_t want, const double *f, double *h);

/* sq[V] = sqrt(q / sum(q)), negative (and NaN) q counted as 0; all 0 when
 * nothing is positive: the square roots the Hellinger fits compare with. */
void cl_sqrt_probs(const float *q, size_t V, double *sq);

/* The prompt split of tune and tune --soft: a permutation of the P prompts
 * drawn from rng (seeded by the caller, who may draw on from it); mask[p] = 1
 * for the first n_fit of it (fitted), 2 for the rest of the first n_train
 * (train, unused), 0 for the others (held out). perm: P entries of scratch. */
void cl_tune_split(cl_rng *rng, size_t P, size_t n_fit, size_t n_train, size_t *perm, uint8_t *mask);

/* Prompt texts ([P] strings, each malloc'ed in one block: texts[i] points into
 * it; free with cl_scan_texts_free). */
char **cl_scan_read_texts(const cl_scan *s);
void cl_scan_texts_free(char **texts);

/* ---- the reduction ---- */

typedef struct {
    char name[32];        /* block_<b>, lens_<b>, ngram, unigram, compare_<i> */
    char label[256];      /* for people: "block 3 alone (> 0.76)", a model path */
    double *hellinger;    /* [P], CL_H_EMPTY where empty */
    int8_t *empty;        /* [P] */
    cl_stats stats;
} cl_baseline;

/* Baselines, in order: block_<b> for b < Lb (label: the model's block
 * first_block + b), lens_<l> for l < NL, ngram, unigram, compare_<i>. */
typedef struct {
    size_t P;
    int Lb, V, NB;
    int NL, first_block;
    size_t b_lens, b_ngram, b_unigram, b_compare; /* indices into baselines */
    double thresholds[64], weights[64]; /* [Lb] */
    double *approx;       /* [P, V] normalised (zeros where empty); NULL when sparse */
    double *hellinger;    /* [P], CL_H_EMPTY where empty */
    int8_t *empty;        /* [P] */
    float *model_probs;   /* [P, V] /model/probs; NULL when sparse */
    /* sparse (a model_sparse scan: no [P, V] array): the approximation's
     * nonzero entries as CSR, prompt p's at approx_ind[p] .. approx_ind[p + 1]
     * (tokens increasing, values normalised; none where empty), and the
     * model on every prompt's support (cl_scan_read_model of all P prompts) */
    int sparse;
    int64_t *approx_ind;  /* [P + 1] from 0 */
    int32_t *approx_tok;
    double *approx_p;
    cl_scan_model model;
    int64_t *n_matches;   /* [P, Lb] substrings above each block's threshold */
    double *mean_matches_bin; /* [Lb, NB] mean over prompts of /freq/n_matches */
    cl_stats stats;
    size_t n_baselines;
    cl_baseline *baselines;
    double seconds_read;  /* time spent reading and reducing /freq/counts */
} cl_reduction;

/* Reduce a scan with validated parameters (cl_reduce_params). compare_probs
 * holds n_compare [P, V] float arrays (other models' softmax on the prompts;
 * may be NULL/0) and compare_labels their names. /freq/counts is read in
 * blocks of prompts. A model_sparse scan (no [P, V] dataset) is reduced on
 * each prompt's support (r->sparse: memory follows the nonzero counts and the
 * supports, not P x V): the counts as sparse rows, the model from
 * /model/support and /model/mass, the n-gram from /prompts/next, the unigram's
 * H from /unigram/hellinger (checked: in [0, 1] or CL_H_EMPTY); H by
 * cl_hellinger_sup (the dense H to rounding). A count or n-gram token outside
 * its prompt's support is an inconsistent file (refused, naming the prompt);
 * compare models need the whole distribution (refused). NULL with a message
 * on error. */
cl_reduction *cl_reduce(const cl_scan *s, const double *thr, const double *w, const int *kbin,
                        const float *const *compare_probs, const char *const *compare_labels,
                        size_t n_compare);
void cl_reduction_free(cl_reduction *r);

/* Another model's next-token distribution at the last position of every
 * prompt: probs_out [P, V] (allocated by the caller, filled on rank 0 of comm;
 * every rank of comm calls this, each runs P/size prompts and rank 0 gathers).
 * The model's vocabulary must equal the scan's (refused otherwise, on every
 * rank). Collective; returns 0 on every rank, or -1 on every rank. */
int cl_reduce_model_probs(const cl_model *m, const cl_scan *s, char **texts, MPI_Comm comm,
                          float *probs_out);

/* ---- tuning ----
 * Method: prompts are split at random (seed) into a train and a held-out set.
 * On the train set, the suffix sums S[p, b, k, :] (counts above bin k) are
 * held in memory on each prompt's support (the tokens any of its counts has;
 * off it the approximation is 0 and the model's mass there is one number), so
 * memory follows the nonzero counts, not V; the model is read on its support
 * (cl_scan_read_model: a csr scan needs no /model/probs; every count token
 * must be in the model support, else the file is refused); the H are the
 * dense ones. The objective is the mean Hellinger distance over the train
 * prompts with an empty approximation counted as H = 1 (so that raising
 * thresholds cannot hide hard prompts). Block coordinate descent: for each
 * block in turn, (1) every grid threshold is tried with the other blocks
 * fixed (exhaustive line search), then (2) its weight is searched on a
 * multiplicative ladder (x 1/8 .. x 8 and 0) followed by a golden-section
 * refinement in log space; sweeps repeat until the objective improves by less
 * than 1e-6 or 20 sweeps. Weights are rescaled so that their maximum is 1
 * (the approximation is invariant to a common scale). Restarts: the reference
 * values (ref_*, or the paper's when Lb == 6), uniform weights with the median grid threshold, and
 * `restarts` random starts (random grid thresholds, log-uniform weights); the
 * best train objective wins. Reported: train and held-out mean H (empty
 * excluded, as in reduce) and held-out n_empty, for the fitted values and for
 * the reference values on the same split. */
typedef struct {
    double train_fraction; /* (0, 1) */
    uint64_t seed;
    int restarts;          /* random restarts besides the fixed starts */
    size_t max_train;      /* 0 = no cap; otherwise at most this many train prompts */
    /* the reference values (a start, and reported beside the fit on the same
     * split): n_ref = Lb of each; 0 = the paper's when Lb == 6, none otherwise */
    const double *ref_thresholds, *ref_weights;
    size_t n_ref;
} cl_tune_opts;

typedef struct {
    double thresholds[64], weights[64];
    size_t n_train, n_test;
    double train_objective;     /* mean H, empty = 1 */
    cl_stats train, test;       /* fitted values on both splits (reduce's statistics) */
    int have_paper;
    cl_stats paper_train, paper_test; /* the reference (paper's) values on the same splits */
    double ref_thresholds[64], ref_weights[64]; /* those values (have_paper) */
    int sweeps;                 /* total sweeps over all restarts */
    size_t support_cells;       /* sum over the fit prompts of their supports (tokens of any count) */
} cl_tune_result;

int cl_tune(const cl_scan *s, const cl_tune_opts *o, cl_tune_result *out);

#endif

/* corpuslens explain: the paper's approximation for ANY text, from an index
 * (index.h) instead of a scan. Dimension legend: P prompts, Lh hooked blocks,
 * NL n_layer, V vocab, K top matches kept per (prompt, block), N index rows.
 *
 * Per prompt p (a text over the model's vocabulary, 1..block_size chars):
 *   - the model's softmax at the last position, and the logit lens (ln_f +
 *     lm_head of each block's residual output, softmax);
 *   - its hooked activation at the last position per block, l2-normalised,
 *     its residual after every block (for the lens) and the model's softmax
 *     (the lens of the last block), all from the scan's trie forward
 *     (cl_trie_fwd_run_var, scan.h: the distinct prompts in lexicographic
 *     order, sharing prefixes), so a corpus string gets the scan's bits;
 *   - per block b, the cosine similarity with every index row (one sgemm per
 *     row block of 8192 rows; float16 rows widened exactly);
 *   - hard kernel (the paper): counts[p, b, v] = sum of the next-token counts
 *     of the substrings with sim > threshold[b];
 *     a[v] = sum_b weight[b] * counts[p, b, v] (blocks in order, doubles),
 *     approx = a / sum(a), H = Hellinger(approx, model). This is reduce's
 *     formula (reduce.h); on a scan's grid it gives the same numbers except
 *     for pairs whose similarity lies within 1e-5 of a threshold, where the
 *     scan's and explain's float32 dot products may round differently: they
 *     are counted in near_threshold[p, b];
 *   - soft kernel (kNN-LM's weighting; when T is given): every substring with
 *     sim > soft_floor (default 0.7, the scan's prefilter) contributes
 *     count * soft_w[b] * exp((sim - 1) / T[b]) (= w_b exp(sim / T_b) with w_b
 *     = soft_w[b] exp(-1/T_b): the same kernel, written so that it does not
 *     overflow). Sums per (p, b, v) are kept in 128-bit fixed point (units of
 *     2^-64 of one count at sim 1), so they are exact in any order;
 *   - the K most similar substrings per block (similarity desc, then lower
 *     substring index), with their next-token counts (from corpus.h5).
 * On a float16 index with a sketch (sketch.h): per block the rows whose
 * upper bound cannot reach the gate (threshold - 1e-5, the soft floor, a
 * proven lower bound of the K-th best) are skipped; the others get the same
 * exact similarity, so the results equal the full pass's (CORPUSLENS_SKETCH=0,
 * with the index mapped) bit for bit. Up to 8 prompts: the bound row by row;
 * more (a passage's windows, a prompt file): the bounds of a tile of 256
 * prompts against 8192 rows as one matrix product, then the exact dot
 * products of the surviving (prompt, row) pairs only, grouped by row.
 * A prompt's results are the same bits whatever the other prompts explained
 * with it: a trie node's values depend only on its prefix (every row of the
 * forward is computed alone, nn/gemm.h: one chain of fused multiply-adds per
 * element, whatever the batch; attention over the node's ancestors), and each
 * similarity is the same chain in the full pass, the direct one and the
 * sketch's, batched or not (tests explain_batch, explain_passage_alone).
 * Without MPI_Init (explain started without mpirun) it runs as rank 0 of 1.
 * Ranks split the index rows (whole chunks, contiguous per rank); integer and
 * fixed-point sums and the top-K merge are exact, so the results do not
 * depend on the rank count. The index is streamed in row blocks (one block of
 * 8192 rows in memory per rank), never loaded whole.
 */
#ifndef CORPUSLENS_SCAN_EXPLAIN_H
#define CORPUSLENS_SCAN_EXPLAIN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"
#include "corpuslens/scan/index.h"

#define CL_EXPLAIN_NEAR 1e-5
/* The hard kernel's counts are dense [P, Lh, V] up to this V (char models) and
 * sparse rows above it or for a GPT-2 BPE model (the approximation and H are
 * the same bits either way; CORPUSLENS_EXPLAIN_COUNTS=csr|dense overrides). */
#define CL_EXPLAIN_DENSE_MAX_V 4096
/* Sparse results: with sparse counts for the model's own reason (a GPT-2 BPE
 * model or V > CL_EXPLAIN_DENSE_MAX_V; not when only
 * CORPUSLENS_EXPLAIN_COUNTS=csr asks for them, and never with =dense), the
 * [P, V] and [P, NL, V] arrays (model_probs, lens, approx, soft_approx) are
 * not made: per prompt the model's probabilities on a support (sup_*, the
 * idea and names of scan.h5's /model/support, h5schema.h), the
 * approximations there, and each block's logit lens as its H to the model
 * plus its CL_EXPLAIN_LENS_TOP most probable tokens. Every figure is computed
 * from the dense row, one tile of CL_EXPLAIN_SUP_TILE prompts at a time, so
 * the memory follows P (tile x V), not P x V; the H and the lists are the
 * dense path's bits. */
#define CL_EXPLAIN_LENS_TOP 8
#define CL_EXPLAIN_SUP_TILE 64
/* the prompts the sketch's search bounds together (explain.c) */
#define CL_EXPLAIN_ROW_TILE 256

typedef struct {
    int Lh;
    double thresholds[64], weights[64]; /* hard kernel */
    int soft;                           /* 1: also the soft kernel */
    double T[64], soft_w[64], soft_floor;
    int top_k;                          /* default 10; 0 = none */
    int threads;                        /* threads for the sketch's search (its blocks split over them;
                                           the same bits for any count); 0 or 1: the caller's only */
} cl_explain_params;

typedef struct {
    size_t P;
    int Lh, NL, V, K;
    float *model_probs;    /* [P, V]; NULL with sparse results (below) */
    float *lens;           /* [P, NL, V]; NULL with sparse results */
    int64_t *counts;       /* [P, Lh, V] hard-kernel counts per block; NULL with sparse counts: */
    int64_t *cnt_indptr;   /* sparse counts (a GPT-2 BPE model, or V > CL_EXPLAIN_DENSE_MAX_V): [P Lh + 1] rows */
    int32_t *cnt_token;    /* [nnz] the tokens of row (p, b), increasing */
    int64_t *cnt_count;    /* [nnz] their counts (> 0); the rows hold what counts holds without its zeros */
    int64_t *n_matches;    /* [P, Lh] substrings above the threshold */
    int64_t *near;         /* [P, Lh] of them within CL_EXPLAIN_NEAR of the threshold (either side) */
    double *approx;        /* [P, V] normalised (zeros when empty); NULL with sparse results */
    double *hellinger;     /* [P] CL_H_EMPTY when empty */
    double *soft_approx;   /* [P, V] (soft only); NULL with sparse results */
    double *soft_hellinger;/* [P] (soft only) */
    int64_t *top_sub;      /* [P, Lh, K] corpus substring index, -1 = none */
    float *top_sim;        /* [P, Lh, K] NaN = none */
    /* sparse results (NULL otherwise). Prompt p's support is sup_token[sup_indptr[p] ..
       sup_indptr[p + 1]) (increasing): the union of the tokens of its count rows (hard and soft,
       every block), of its n-gram row, and the model's CL_SCAN_MODEL_TOP most probable tokens
       (ties: the lower id); so every nonzero of the approximations and of the n-gram lies on it */
    int64_t *sup_indptr;   /* [P + 1] from 0 */
    int32_t *sup_token;    /* [m] */
    float *sup_prob;       /* [m] the model's softmax there (the bits of the dense row) */
    double *mass;          /* [P, 2] (the sum over V of the positive finite probabilities in token order, as
                              cl_hellinger_df sums them; the part of it off the support, in token order) */
    double *sup_approx;    /* [m] the approximation on the support (normalised; zeros when empty) */
    double *sup_soft;      /* [m] the soft approximation (soft only) */
    double *lens_h;        /* [P, NL] H(logit lens of block l, model) (cl_hellinger_df of the dense rows) */
    int32_t *lens_top_id;  /* [P, NL, CL_EXPLAIN_LENS_TOP] each block's lens, most probable first (ties: lower id) */
    float *lens_top_p;     /* [P, NL, CL_EXPLAIN_LENS_TOP] their probabilities */
    int64_t *ngram_sub;    /* [P] the corpus substring equal to the prompt's last L tokens (-1: none or shorter) */
    int64_t *ngram_indptr; /* [P + 1] the n-gram's next tokens (rows of ngram_token / ngram_count) */
    int32_t *ngram_token;  /* increasing within a row */
    int32_t *ngram_count;  /* > 0 */
    double *ngram_h;       /* [P] H(n-gram, model), CL_H_EMPTY when none */
    double seconds_prompts, seconds_search;
    int sketch;            /* 1: the search used the index's sketch (sketch.h) */
    int64_t *checked;      /* [Lh] index rows whose similarity was computed (rank 0: all ranks);
                              N per block without the sketch; with the sketch and more than
                              CL_EXPLAIN_ROW_TILE prompts, a row counts once per tile of that
                              many prompts that reads it, so the sum may pass N */
    int64_t *pairs;        /* [Lh] (prompt, row) pairs whose similarity was computed (rank 0: all ranks);
                              P N per block without the sketch */
} cl_explain_result;

/* Collective over comm (every rank passes the same arguments). tokens:
 * prompt p is tokens[off[p] .. off[p+1]) (ids in the model's vocabulary,
 * 1..block_size of them; checked). The index must come from this model
 * (vocabulary and shapes checked here; SHA-256 by cl_index_check). Results
 * are complete on rank 0 (other ranks: NULL fields). NULL on error, on every
 * rank. */
cl_explain_result *cl_explain_run(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                                  const size_t *off, size_t P, const cl_explain_params *par, MPI_Comm comm);
/* The same, and (rank 0, sparse results only) dense_row(ctx, p, q) for every
 * prompt p in order with its dense model row q [V] (the bits of model_probs'
 * row), while it exists: a caller's figures that need the whole row (the
 * ∞-gram's H). A nonzero return fails the call (every rank). */
cl_explain_result *cl_explain_run_rows(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                                       const size_t *off, size_t P, const cl_explain_params *par, MPI_Comm comm,
                                       int (*dense_row)(void *ctx, size_t p, const float *q), void *ctx);
/* 1 when cl_explain_run gives sparse results for this model (the environment read here) */
int cl_explain_sparse_results(const cl_model *m);
/* the k most probable tokens of a sparse list tok/prob[0..n) (ties: the lower id), best first, those with a
 * positive probability only: the ids in idx, their count returned (k <= 64) */
int cl_explain_top_sparse(const int32_t *tok, const float *pf, const double *pd, size_t n, int k, int32_t *idx,
                          double *val);
void cl_explain_result_free(cl_explain_result *r);

/* For a server that keeps the index and corpus warm (serve): copy cp's
 * next-token counts into the index's row order (ix->row_*, about
 * 8 N + 8 nnz bytes), once, so that every later cl_explain_run with this cp
 * adds a matched row's counts from consecutive memory instead of the
 * corpus's arrays by substring (a cache miss per match). Every substring id
 * of the index is checked against cp. Results do not change (integer sums).
 * A corpus without its counts in memory (cl_corpus_open_rows) or a sparse
 * (BPE) one: nothing to do. 0 or -1 (message; ix unchanged). */
int cl_explain_hold_counts(cl_index *ix, const cl_corpus *cp);

/* Paper defaults for a 6-block hook of a 6-block model; -1 otherwise. */
int cl_explain_params_paper(cl_explain_params *par, int Lh);

/* Exact-string n-gram: the corpus substring equal to tok[0..L) (binary
 * search over the index's lexicographic rows), or -1; -2 with cl_error when
 * a row of the corpus cannot be read (cl_corpus_open reads them on demand). */
int64_t cl_explain_find(const cl_index *ix, const cl_corpus *cp, const int32_t *tok);

#endif

/* corpuslens passage: explain the prediction at EVERY position of a text
 * (issue 22). One result structure; the CLI's tables, `explain -o` HDF5 and
 * the server's JSON are presenters of it and compute no figure themselves.
 *
 * Dimension legend: n positions (tokens of the passage), L the index's string
 * length, Lh hooked blocks, NL n_layer, V vocab, K top matches per block.
 *
 * Position i (0 <= i < n) is the prediction after the first i + 1 tokens,
 * made from the window tokens[max(0, i + 1 - L) .. i + 1): the window of at
 * most L tokens that ends at token i, run alone as the paper runs its
 * prompts (so the first L - 1 positions use the shorter prefix). The
 * explanation of each window is cl_explain_run's (explain.h) for that window
 * alone, bit for bit, whatever else the passage holds: explaining the n
 * windows together equals explaining each one by itself.
 */
#ifndef CORPUSLENS_SCAN_PASSAGE_H
#define CORPUSLENS_SCAN_PASSAGE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"
#include "corpuslens/scan/explain.h"
#include "corpuslens/scan/index.h"

typedef struct {
    size_t n;             /* positions explained: first .. first + n - 1 (entry i is position first + i) */
    size_t first;         /* the first position explained (0 unless cl_passage_explain_from says otherwise) */
    size_t n_text;        /* tokens of the passage (first + n) */
    int L;                /* the index's string length (the longest window) */
    int32_t *tokens;      /* [n_text] the passage's token ids (a copy) */
    size_t *win_start;    /* [n] first token of entry i's window */
    int32_t *next;        /* [n] the actual next token (tokens[first + i + 1]); -1 at the last position */
    /* per-window explanation: P = n, prompt i = position i's window; the
       model's and lens probabilities, the approximation and its H (CL_H_EMPTY
       when no string passes a weighted threshold), counts, matches per block
       and the top-K similar strings per block */
    cl_explain_result *ex;
    /* exact-string n-gram: the next-token counts of the corpus substring
       equal to the window, when the window has L tokens and occurs */
    int64_t *ngram_sub;   /* [n] corpus substring index, -1 = none (or window shorter than L) */
    int32_t *ngram_counts;/* [n, V] (zeros when none); NULL with sparse results (explain.h): ex->ngram_* hold the rows */
    double *ngram_h;      /* [n] H(n-gram, model), CL_H_EMPTY when none */
    double *lens_h;       /* [n, NL] H(logit lens of block l, model); the last block's lens is the model */
    double mean_h;        /* mean of ex->hellinger over the non-empty positions; CL_H_EMPTY when all empty */
    size_t n_empty;       /* positions whose approximation is empty */
} cl_passage_result;

/* Collective over comm (every rank passes the same arguments). tokens[0..n)
 * are ids in the model's vocabulary (checked), n >= 1. par as for
 * cl_explain_run. Complete on rank 0; other ranks get a result with only n
 * set (ex NULL). NULL on error, on every rank (cl_error says why). */
cl_passage_result *cl_passage_explain(const cl_index *ix, const cl_model *m, const cl_corpus *cp,
                                      const int32_t *tokens, size_t n, const cl_explain_params *par,
                                      MPI_Comm comm);
/* The same for positions first .. n_text - 1 of the passage text[0..n_text)
 * only (first < n_text): entry i is position first + i, its window and
 * explanation exactly those of cl_passage_explain's position first + i (the
 * windows are independent), mean_h over these positions. One window is
 * first = n_text - 1. */
cl_passage_result *cl_passage_explain_from(const cl_index *ix, const cl_model *m, const cl_corpus *cp,
                                           const int32_t *text, size_t n_text, size_t first,
                                           const cl_explain_params *par, MPI_Comm comm);
void cl_passage_free(cl_passage_result *r);

#endif

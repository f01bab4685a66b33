/* corpuslens infgram: a suffix array of the training text, and the two
 * suffix-matching baselines it answers (issue 23).
 *
 * Dimension legend: n characters of the training text, V vocabulary size,
 * m characters of the query window.
 *
 * The ∞-gram (Liu et al., "Infini-gram", 2024): for a window w[0..m), the
 * longest suffix w[m-k..m) (k >= 1) that occurs in the text at a position p
 * with a follower (p + k < n); its distribution is the counts of the
 * characters text[p+k] over every such occurrence p. The backoff n-gram: the
 * same with "occurs" replaced by "occurs, with a follower, at least K times".
 * k = 0 means no suffix qualifies (the baseline is empty: "no match").
 */
#ifndef CORPUSLENS_INFGRAM_H
#define CORPUSLENS_INFGRAM_H

#include <stddef.h>
#include <stdint.h>

/* The suffix array of s[0..n) (ids in [0, V)): sa[r] is the start of the
 * r-th smallest suffix, a shorter suffix before its extensions. Prefix
 * doubling with counting sorts: O(n log n) time, 4 arrays of n int64.
 * Returns a malloc'ed [n] array, or NULL with cl_error (n = 0, bad id,
 * out of memory). */
int64_t *cl_suffix_array(const int32_t *s, size_t n, int V);

/* Checks that sa[0..n) is a permutation of 0..n-1 (O(n), n/8 bytes). 0 or -1
 * with cl_error naming `what`. Sortedness is not checked: a wrongly ordered
 * array gives wrong baselines, never an access outside the text. */
int cl_suffix_array_check(const int64_t *sa, size_t n, const char *what);

/* The number of occurrences of w[0..k) in the text (the suffix array's range
 * [*lo, *hi)). */
int64_t cl_sa_range(const int32_t *text, const int64_t *sa, size_t n, const int32_t *w, int k, int64_t *lo,
                    int64_t *hi);

/* The longest suffix of w[0..m) with at least min_occ (>= 1) occurrences
 * followed by a character: returns its length k (0: none), the occurrence
 * count with a follower in *occ, and the followers' counts in counts[0..V)
 * (overwritten; all zero when k = 0). min_occ = 1 is the ∞-gram. Followers
 * outside [0, V) are not counted (the reader validated the text). */
int cl_infgram(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *w, int m, int64_t min_occ,
               int32_t *counts, int64_t *occ);

/* The Hellinger distance (stats.h) between the suffix baseline of w[0..m)
 * (min_occ 1: the ∞-gram; K: the backoff n-gram) over the corpus's /text and
 * the distribution q[0..V) (V = the corpus's vocabulary size); CL_H_EMPTY when
 * no suffix qualifies. *k and *occ as cl_infgram (either may be NULL).
 * Needs cp->suffix_array; counts ([V] int32) and tmp ([V] double) are scratch. */
double cl_infgram_hellinger(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *w, int m,
                            int64_t min_occ, const float *q, int32_t *counts, double *tmp, int *k, int64_t *occ);

/* The message of a missing baseline (corpus without /text). */
#define CL_INFGRAM_NA "n/a (corpus.h5 has no suffix array: prepare it again)"

/* cl_infgram_hellinger of P texts: text p is tok[off[p] .. off[p+1]), of
 * which the last cap ids count (a longer text: its suffix), against
 * probs + p * V; h[p], and k[p] and occ[p] when not NULL. The one loop of
 * explain (--eval-text, prompts) and reduce (the scan's prompts). 0, or -1
 * with cl_error (out of memory). */
int cl_infgram_hellinger_all(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *tok,
                             const size_t *off, size_t P, size_t cap, const float *probs, int64_t min_occ, double *h,
                             int *k, int64_t *occ);

#endif

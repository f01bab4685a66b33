/* corpuslens analyses around the method: logit lens, block ablation,
 * similar-string distributions from a scan, similarity of hooked vectors.
 *
 * Dimensions as in model.h (L blocks, C n_embd, V vocab, B rows, T positions);
 * L1 = L + 1 lens layers: layer 0 is the embedding (the block-0 input residual,
 * hook_embed + hook_pos_embed), layer l >= 1 is block l-1's residual output
 * (blocks.{l-1}.hook_resid_post). Lens layer L is therefore the model's own
 * output distribution.
 *
 * Library rules: functions return 0 (or a value) on success and -1 (NULL)
 * with cl_error on failure; they never print.
 */
#ifndef CORPUSLENS_ANALYSIS_H
#define CORPUSLENS_ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/nn/forward.h"
#include "corpuslens/model/model.h"

/* ---- distances between distributions (float rows of V probabilities) ---- */

/* H(p,q) = sqrt(sum_i (sqrt p_i - sqrt q_i)^2) / sqrt 2, in double; in [0, 1]
 * for distributions. Negative entries count as 0. */
double cl_prob_hellinger(const float *p, const float *q, size_t V);
/* KL(p || q) = sum_i p_i log(p_i / q_i) in nats; terms with p_i = 0 are 0,
 * q_i is floored at 1e-30 (a softmax never gives an exact 0 in practice). */
double cl_prob_kl(const float *p, const float *q, size_t V);
/* Index of the largest entry (the lowest index on ties). */
size_t cl_prob_argmax(const float *p, size_t V);
/* Rank of entry id: 1 + the number of entries strictly larger than p[id]. */
size_t cl_prob_rank(const float *p, size_t V, size_t id);

/* ---- logit lens ---- */

/* Run the model on tokens [B, T] (f sized for B x T) and write the lens
 * distributions probs [B, L1, T, V]: softmax(lm_head(ln_f(residual))) for the
 * embedding and each block's output. 0 or -1. */
int cl_logit_lens(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, float *probs);

/* Per-layer statistics of one text's lens (probs [L1, T, V] as above), each
 * array [L1], compared with the final distribution (layer L):
 *   h_last, kl_last   Hellinger / KL(final || layer) at position T-1
 *   h_mean, kl_mean   the same averaged over the T positions
 *   rank_last         rank of the final top token at position T-1 in the layer
 *   agree_last        1 if the layer's top token at T-1 is the final top token */
typedef struct {
    double *h_last, *kl_last, *h_mean, *kl_mean, *rank_last, *agree_last;
} cl_lens_stats;
#define CL_LENS_NSTATS 6
/* Fills the six arrays of `out` (each [L1], caller-owned). */
void cl_lens_stats_compute(const float *probs, int L1, int T, int V, const cl_lens_stats *out);

/* One text's lens without the [L1, T, V] tensor (2 x [T, V] at a time, for
 * large vocabularies and long texts): tokens [T] (f sized for 1 x T); per
 * layer and position the top token top_id [L1, T] and its probability
 * top_p [L1, T]; the statistics of cl_lens_stats_compute in out (the same
 * numbers). 0 or -1. */
int cl_logit_lens_text(cl_forward *f, const cl_model *m, const int32_t *tokens, int T, int32_t *top_id,
                       float *top_p, const cl_lens_stats *out);

/* ---- block ablation (Appendix IV) ---- */

typedef enum { CL_ABLATE_ZERO = 0, CL_ABLATE_MEAN = 1 } cl_ablate_mode;

/* Sums over every position of rows [B, T] of hook_attn_out and hook_mlp_out
 * in every block, added into acc [2, L, C] (acc[0]: attention, acc[1]:
 * feed-forward) as fixed-point integers (value * 2^20, rounded): integer
 * sums are associative, so a mean reduced over MPI ranks in any order is the
 * same. Refuses activations with |value| >= 2^40 (the sum could overflow). */
#define CL_ABLATE_FIXED_SCALE 1048576.0
int cl_ablate_accumulate(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, int64_t *acc);

/* Hellinger distances at position T-1 between the normal output and the
 * output with one block's attention output (h_attn) or feed-forward output
 * (h_ffwd) ablated: h_attn, h_ffwd [B, L]. mode ZERO sets the hook to 0;
 * MEAN sets every position to mean [2, L, C] (the attention means, then the
 * feed-forward means). 2L + 1 forward passes. 0 or -1. */
int cl_ablate_run(cl_forward *f, const cl_model *m, const int32_t *tokens, int B, int T, cl_ablate_mode mode,
                  const float *mean, double *h_attn, double *h_ffwd);

/* ---- similar strings from a scan ---- */

/* Sum next-token counts of the substrings idx[0..n) whose similarity sim[k]
 * is > threshold into counts [V] (added, as doubles scaled by weight).
 * CSR rows as in corpus.h (indptr [N+1], token, count). Indices >= N are
 * errors. 0 or -1. */
int cl_similar_accumulate(const int64_t *idx, const float *sim, size_t n, double threshold, double weight,
                          const int64_t *indptr, const int32_t *token, const int32_t *count, size_t N, int V,
                          double *counts);

/* ---- similarity of hooked vectors ---- */

/* Pool one text's activation act [T, D] into out [D]: the mean over
 * positions (last = 0) or position T-1 (last = 1). */
void cl_pool_rows(const float *act, int T, int D, int last, double *out);
/* Cosine similarity matrix of n vectors X [n, D] (double) over the first k
 * dimensions (k <= D), after subtracting the mean vector over the n rows when
 * center is 1. out [n, n]; a zero vector gives NaN in its row and column.
 * 0, or -1 (k > D, n = 0, no memory). */
int cl_cosine_matrix(const double *X, size_t n, size_t D, size_t k, int center, double *out);
/* The K rows of E [N, D] most cosine-similar to row q (q itself and zero rows
 * left out), most similar first (ties: lower row first): idx[K], sim[K];
 * fewer than K found: idx (size_t)-1, sim NaN. 0, or -1 (1 <= K < N). */
int cl_cosine_nearest(const double *E, size_t N, size_t D, size_t q, size_t K, size_t *idx,
                      double *sim);

#endif

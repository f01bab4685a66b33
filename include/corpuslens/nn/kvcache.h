/* Incremental decoding with a key/value cache (generate). Dimensions as in
 * model.h: C channels, F = 4C, V vocab, L layers, T positions cached.
 *
 * cl_kv_step appends one token at the next position and returns the logits
 * there: per layer, only the new position's LayerNorm, q/k/v, attention over
 * the cached keys and values (attention_one_forward), projection and
 * feed-forward are computed, O(L (C^2 + t C)) instead of a forward over all
 * t positions. The logits equal cl_forward_run's at the last position of the
 * same tokens up to float rounding (other summation orders; tested to
 * 2e-5 + 1e-4 |ref| against the full forward and PyTorch). Only causal
 * language models (no encoder, no classifier). */
#ifndef CORPUSLENS_NN_KVCACHE_H
#define CORPUSLENS_NN_KVCACHE_H

#include <stdint.h>

#include "corpuslens/model/model.h"

typedef struct cl_kvcache cl_kvcache;

/* A cache of at most max_T positions (1..block_size); NULL with cl_error. */
cl_kvcache *cl_kv_create(const cl_model *m, int max_T);
void cl_kv_free(cl_kvcache *kv);
/* Forget every position (the next step is position 0). */
void cl_kv_reset(cl_kvcache *kv);
/* Positions cached. */
int cl_kv_len(const cl_kvcache *kv);
/* Append token at position cl_kv_len(kv); logits[V] at that position. 0, or
 * -1 (the cache is full, or the token is outside the vocabulary). */
int cl_kv_step(cl_kvcache *kv, int32_t token, float *logits);
/* Fill the cache with tokens[0..n) at positions 0..n-1 in one batched forward
 * (cl_forward_run, capturing each block's keys and values): the weights are
 * read once instead of n times. logits[V] at position n - 1. 0 or -1. */
int cl_kv_prime(cl_kvcache *kv, const int32_t *tokens, int n, float *logits);

#endif

/* corpuslens file schemas: the dataset and attribute names of the stage
 * outputs, in one place. The model file is described in model.h, the corpus
 * file in corpus.h; this header holds scan.h5 and report.h5.
 *
 * Dimension legend: P prompts, Lb = n_hook_blocks (hooked blocks), NB bins, V vocab,
 * M stored matches, N substrings.
 *
 * ---- scan.h5 (written by `corpuslens scan`) ----
 * root attributes:
 *   format "corpuslens-scan", format_version 1
 *   complete            int 1 only once every dataset is written (written last;
 *                       an interrupted or failed scan has 0 or no attribute)
 *   model_file, model_sha256 (cl_model_fingerprint), corpus_file, corpus_sha256
 *                       (the corpus.h5's corpus_sha256 attribute), corpus_h5_sha256
 *   hook                the hook name as given (e.g. "mlp_out")
 *   prefilter           double; pairs with similarity > prefilter are counted
 *   bin_width, n_bins   the grid (see /freq/bin_lower)
 *   L, n_layer, vocab_size, n_substrings, n_prompts
 *   match_rule          text describing the keep rule of /matches
 *   match_thresholds    [Lb] doubles: a match is stored when sim > threshold[b]
 *   match_cap           int: at most this many per (prompt, block), the most
 *                       similar first (ties: lower substring index); 0 = no cap
 *   wall_seconds, flops, n_prefiltered_pairs (int64: pairs > prefilter);
 *                       no rank count: the file's bytes do not depend on it
 *                       (wall_seconds aside; files before issue 15 had `ranks`)
 *   n_hook_blocks, hook_first_block, hook_first: the hooked blocks. In /freq
 *                       and /matches, Lb = n_hook_blocks: n_layer for a short
 *                       hook name (mlp_out, attn_out, resid_mid, resid_post,
 *                       resid_pre), 1 for "embed" (block-0 input residual) or
 *                       a full name (blocks.3.hook_mlp_out); block index b
 *                       there is block hook_first_block + b. /lens/probs
 *                       always has n_layer blocks.
 *   also: corpus_h5_file, n_stored_matches, shard_size, n_trie_nodes;
 *   sampled_shards only on a benchmark slice (not a full scan)
 *   next_layout         "dense" (or absent) or "csr": which datasets below
 *   model_top_k, model_support  csr only: CL_SCAN_MODEL_TOP (readers refuse
 *                       less, or none), and
 *                       "counts+next+followers+top" (the corpus had /text) or
 *                       "counts+next+top" (it had not: no followers)
 * datasets:
 *   /vocab               [V] as in model.h
 *   /prompts/index       [P] int64 substring index of each prompt
 *   /prompts/text        [P] fixed-length UTF-8 strings
 *   /prompts/next_counts [P, V] int32: the exact-string n-gram counts (what
 *                        follows the prompt itself in the corpus)
 *   /corpus/unigram      [V] int64: character counts of the corpus windows'
 *                        followers (sum of all next-token counts)
 *   /model/probs         [P, V] float32: the model's softmax at the last position
 *   /lens/probs          [P, n_layer, V] float32: logit lens (ln_f + lm_head on each
 *                        block's residual output at the last position)
 *   /freq/counts         [P, Lb, NB, V] int32: next-token counts summed over the
 *                        substrings whose similarity to the prompt in that block
 *                        falls in bin k
 *   /freq/bin_lower      [NB] float64: bin k holds similarities s with
 *                        bin_lower[k] < s <= bin_lower[k] + bin_width
 *                        (bin_lower[0] = prefilter; the last bin also takes
 *                        s > 1 from rounding). Counts above a threshold t on the
 *                        grid (t = bin_lower[k]) = sum over bins >= k: exact.
 *                        A prompt matches itself: its own substring is counted
 *                        in the last bin of every block whatever the rounding.
 *   /freq/n_matches      [P, Lb, NB] int64: number of substrings per bin
 *   /matches/index       [P, Lb, 2] int64: (start, count) into the arrays below;
 *                        one prompt's matches in one block are one hyperslab
 *   /matches/substring   [M] int64, sorted by (prompt, block, -similarity, substring)
 *   /matches/similarity  [M] float32
 *   next_layout "csr" (a BPE corpus, or V > 4096 under auto): no dataset of
 *   V per prompt. Instead of /freq/counts: /freq/next/{indptr,token,count};
 *   of /prompts/next_counts: /prompts/next/{indptr,token,count}; of
 *   /model/probs: /model/support/{indptr,token,prob} and /model/mass; of
 *   /lens/probs: /lens/hellinger; and /unigram/hellinger (the macros below
 *   say what each holds). /corpus/unigram [V] stays.
 *
 * ---- report.h5 (written by `corpuslens reduce`) ----
 *   /hellinger [P] float64, /approx [P, V] float64, /empty [P] int8,
 *   (a model_sparse scan: /approx/{indptr,token,prob}, the approximation's
 *   nonzero entries as CSR, instead of /approx [P, V]: CL_REPORT_APPROX_*),
 *   /baselines/<name>/hellinger [P] (names: block_<b>, lens_<b>, ngram,
 *   unigram, compare_<i>), statistics as attributes (count, n_empty, mean, std,
 *   min, p10, p25, median, p75, p90, max) on each hellinger dataset,
 *   root attributes thresholds [Lb], weights [Lb] (Lb = the scan's
 *   n_hook_blocks; entry b is the model's block hook_first_block + b, also a
 *   root attribute), scan_file, scan_sha256. block_<b> names the model's
 *   block; lens_<l> runs over all n_layer blocks. With compare models,
 *   /noise_floor (attributes n_models, means [n], mean, pooled_std, ratio;
 *   see reduce/report.h).
 *
 * ---- index.h5 (written by `corpuslens index` and `scan --index-out`) ----
 *   Documented with its reader in include/corpuslens/scan/index.h: /vocab,
 *   /substring [N] int32, /vectors [Lh, N, C] float16 (or float32), chunks of
 *   S rows; attributes format "corpuslens-index", complete, model_sha256,
 *   corpus_h5_sha256, hook, dtype, ...
 *
 * ---- explain.h5 (written by `corpuslens explain -o`) ----
 * root attributes: format "corpuslens-explain", format_version 1, thresholds
 *   [Lh], weights [Lh], index_file, model_sha256, corpus_h5_sha256, hook,
 *   top_k; with the soft kernel soft_temperatures [Lh], soft_weights [Lh],
 *   soft_floor. No time stamps (the same bytes for any rank count).
 *   /prompts/text            [P] variable-length UTF-8 strings
 *   /model/probs             [P, V] float32 softmax at the last position
 *   /lens/probs              [P, n_layer, V] float32 logit lens
 *   /approx                  [P, V] float64 the approximation (zeros when empty)
 *   /hellinger               [P] float64 (-1 when empty)
 *   /blocks/counts           [P, Lh, V] int64 next-token counts above each threshold
 *   /blocks/n_matches        [P, Lh] int64 substrings above each threshold
 *   /blocks/near_threshold   [P, Lh] int64 of all pairs, those within 1e-5 of
 *                            the threshold (where a scan may round differently)
 *   /matches/substring       [P, Lh, K] int64 the K most similar substrings
 *                            (corpus.h5 indices; -1 = none), most similar first
 *   /matches/similarity      [P, Lh, K] float32 (NaN = none)
 *   /soft/approx, /soft/hellinger   the soft kernel (when asked)
 *   /ngram/counts            [P, V] int32 what follows the text's last L
 *                            characters in the corpus (zeros when absent)
 *   /ngram/hellinger         [P] float64 (-1 when empty)
 * A GPT-2 BPE model (or V > CL_EXPLAIN_DENSE_MAX_V; scan/explain.h) has
 * sparse counts and sparse results: /blocks/next/{indptr [P Lh + 1] int64,
 *   token int32, count int64} (row p Lh + b) instead of /blocks/counts, and
 *   instead of /model/probs, /lens/probs, /approx, /soft/approx, /ngram/counts
 *   (scan.h5's /model/support idea, CL_SCAN_MODEL_SUPPORT_* above):
 *   /model/support/indptr    [P + 1] int64 from 0; prompt p's support is
 *   /model/support/token     [m] int32 token[indptr[p] .. indptr[p + 1])
 *                            (increasing): the tokens of its /blocks/next
 *                            rows (and the soft kernel's), of its n-gram
 *                            row, and the model's CL_SCAN_MODEL_TOP most
 *                            probable tokens (ties: the lower id)
 *   /model/support/prob      [m] float32 the model's softmax there (the bits
 *                            of the dense row)
 *   /model/support/approx    [m] float64 the approximation there (zero off
 *                            the support); soft_approx likewise (--soft)
 *   /model/mass              [P, 2] float64 (sum over V of the positive finite
 *                            probabilities in token order; the part off the
 *                            support). H of a distribution a on the support:
 *                            acc = sum_S (sqrt(a/sa) - sqrt(q/sum))^2 +
 *                            rest/sum, H = min(1, sqrt(acc / 2)) (the dense
 *                            H to ~1e-15; /hellinger is the dense H itself)
 *   /lens/hellinger          [P, n_layer] float64 H(logit lens of block l, model)
 *   /lens/top/token, /lens/top/prob  [P, n_layer, CL_EXPLAIN_LENS_TOP] int32,
 *                            float32: each block's lens, most probable first
 *                            (ties: the lower id; -1 / 0 past V)
 *   /ngram/next/{indptr [P + 1] int64, token int32, count int32}, the n-gram's
 *                            next tokens; /ngram/substring [P] int64 (-1: none)
 *   root attributes model_top_k (CL_SCAN_MODEL_TOP), lens_top_k.
 *   CORPUSLENS_EXPLAIN_COUNTS=dense gives the dense layout (the tests' reference).
 */
#ifndef CORPUSLENS_H5SCHEMA_H
#define CORPUSLENS_H5SCHEMA_H

#define CL_SCAN_FORMAT "corpuslens-scan"
#define CL_SCAN_FORMAT_VERSION 1
#define CL_REPORT_FORMAT "corpuslens-report"
#define CL_REPORT_FORMAT_VERSION 1
/* report.h5 of a model_sparse scan (next_layout "csr" with /model/support):
   the approximation's nonzero entries instead of /approx [P, V]: prompt p's
   are token[indptr[p] .. indptr[p + 1]) (increasing) with prob > 0 (the
   normalised approximation; none where empty); indptr [P + 1] int64 from 0 */
#define CL_REPORT_APPROX_INDPTR "/approx/indptr"
#define CL_REPORT_APPROX_TOKEN "/approx/token"
#define CL_REPORT_APPROX_PROB "/approx/prob"
/* ablation.h5 (`ablate -o`) and tune.h5 (`tune --h5`): layouts in reduce/report.h */
#define CL_ABLATION_FORMAT "corpuslens-ablation"
#define CL_TUNE_FORMAT "corpuslens-tune"

#define CL_SCAN_PROMPT_INDEX "/prompts/index"
#define CL_SCAN_PROMPT_TEXT "/prompts/text"
#define CL_SCAN_PROMPT_NEXT "/prompts/next_counts"
#define CL_SCAN_UNIGRAM "/corpus/unigram"
/* next_layout "csr": the exact-string n-gram counts as CSR, instead of
   /prompts/next_counts [P, V]: row p is token[indptr[p] .. indptr[p + 1])
   (increasing) with count > 0; indptr [P + 1] int64 from 0 */
#define CL_SCAN_PROMPT_NEXT_INDPTR "/prompts/next/indptr"
#define CL_SCAN_PROMPT_NEXT_TOKEN "/prompts/next/token"
#define CL_SCAN_PROMPT_NEXT_COUNT "/prompts/next/count"
/* next_layout "csr": the model's probabilities on each prompt's support,
   instead of /model/probs [P, V]. Prompt p's support (token[indptr[p] ..
   indptr[p + 1]), increasing) is the union of: the tokens of its /freq/next
   rows (every block and bin), of its /prompts/next row, the followers in the
   corpus text (/text/tokens of corpus.h5) of the prompt's last token (they
   hold the followers of every suffix: the ∞-gram's and the backoff n-gram's
   for any K), and the model's CL_SCAN_MODEL_TOP most probable tokens (ties:
   the lower id). prob [m] float32 is the model's softmax there (the same bits
   as the dense row). */
#define CL_SCAN_MODEL_SUPPORT_INDPTR "/model/support/indptr"
#define CL_SCAN_MODEL_SUPPORT_TOKEN "/model/support/token"
#define CL_SCAN_MODEL_SUPPORT_PROB "/model/support/prob"
/* [P, 2] float64: (sum over all V of the positive finite probabilities, in
   token order as cl_hellinger_df sums them; the part of that sum off the
   support, summed in token order) */
#define CL_SCAN_MODEL_MASS "/model/mass"
#define CL_SCAN_MODEL_TOP 16
/* next_layout "csr": [P] float64, H(/corpus/unigram, the model) from the
   dense row (cl_hellinger_df, CL_H_EMPTY = -1 when undefined): the unigram's
   support is the corpus's whole vocabulary */
#define CL_SCAN_UNIGRAM_HELLINGER "/unigram/hellinger"
#define CL_SCAN_MODEL_PROBS "/model/probs"
#define CL_SCAN_LENS_PROBS "/lens/probs"
/* next_layout "csr" instead of /lens/probs: [P, n_layer] float64, the
   Hellinger distance of block l's logit lens to the model (CL_H_EMPTY = -1
   when undefined), as reduce computes it from the dense rows */
#define CL_SCAN_LENS_HELLINGER "/lens/hellinger"
#define CL_SCAN_FREQ_COUNTS "/freq/counts"
/* next_layout "csr": the binned counts of row (p, b, k) (row-major over
   [P, Lh, NB]) are token[indptr[r] .. indptr[r + 1]) (increasing ids) with
   count[...] > 0; indptr has P Lh NB + 1 entries, int64 */
#define CL_SCAN_FREQ_NEXT_INDPTR "/freq/next/indptr"
#define CL_SCAN_FREQ_NEXT_TOKEN "/freq/next/token"
#define CL_SCAN_FREQ_NEXT_COUNT "/freq/next/count"
#define CL_SCAN_FREQ_BIN_LOWER "/freq/bin_lower"
#define CL_SCAN_FREQ_N_MATCHES "/freq/n_matches"
#define CL_SCAN_MATCH_INDEX "/matches/index"
#define CL_SCAN_MATCH_SUBSTRING "/matches/substring"
#define CL_SCAN_MATCH_SIMILARITY "/matches/similarity"

/* The paper's block thresholds and weights (Pather 2024), 6 blocks. */
#define CL_PAPER_THRESHOLDS {0.95, 0.94, 0.85, 0.76, 0.81, 0.89}
#define CL_PAPER_WEIGHTS {0.01, 0.01, 0.1, 1.5, 6.0, 0.01}

#endif

/* corpuslens scan: every prompt against every corpus substring, per hooked
 * block, by cosine similarity of the hooked activation at the last position.
 * Writes scan.h5 (layout: h5schema.h).
 *
 * Dimension legend: N substrings, P prompts, L substring length, C n_embd,
 * Lh hooked blocks (n_layer for a short hook name such as "mlp_out", 1 for
 * "embed" or a full name "blocks.3.hook_mlp_out"), NB bins, V vocab,
 * S substrings per shard, M nodes of a shard's prefix trie.
 *
 * ---- Determinism by construction ----
 * The shard plan does not depend on the rank count: substrings are sorted
 * lexicographically by token ids (ties impossible: they are unique) and cut
 * into shards of S consecutive sorted substrings (S = --batch, default 2048);
 * rank r computes shards r, r+R, r+2R, ... Each shard's vectors come from the
 * identical computation whoever runs it; bin counts are integer sums (exact in
 * any order, MPI_SUM on int32/int64); the stored matches are a set under a
 * total order (similarity desc, substring asc) whose per-rank truncation to
 * the cap keeps every member of the global top-cap. So any rank count gives
 * bitwise identical frequency tensors and identical match sets, and (see
 * Output) the same file bytes.
 *
 * ---- Forward with prefix sharing (layer-major trie forward) ----
 * Within a shard the sorted substrings form a trie: node = distinct prefix,
 * parent = the prefix one shorter. Causal attention makes a prefix's hidden
 * states independent of what follows, so one row per NODE (not per token
 * position) is computed. Instead of depth-by-depth batches (which would need
 * every layer's k,v of every node kept at once: M x n_layer x 2C floats), the
 * shard is processed LAYER by layer over ALL its nodes: ln1 and the qkv sgemm
 * over the M node rows; attention_one_forward of each node over its ancestors'
 * k,v (from the same qkv buffer: the ancestors' rows of this layer are already
 * there); proj, residual, ln2 and the MLP as sgemms over the M rows (the MLP in
 * row blocks to bound the [rows, 4C] buffer). Memory: about M x 6C floats, and
 * the sgemms have M rows instead of a depth's share. TinyShakespeare L = 10:
 * 3.15 M node rows instead of 8.59 M positions. In the last block needed,
 * only ln1, qkv and attention run over every node (the leaves attend to their
 * ancestors' k,v); proj and the MLP run over the S leaf rows only. The hook
 * is captured at the leaves (depth L-1 = the substrings). Checked against
 * cl_forward_run (tests/scan_trie_check.c): identical to the last bit on this
 * OpenBLAS, since every row goes through the same kernels.
 *
 * ---- Prompt vectors ----
 * The trie forward, as for the corpus (docs/scan-prompts.md): a prompt in one
 * of the shards a rank keeps takes its hooked vectors and its residual stream
 * after every block from that shard's forward; the other prompts go through a
 * trie of their own, a contiguous share per rank, summed over the ranks
 * (MPI_Allreduce of zero-filled buffers: exact). The logit lens is ln_f +
 * lm_head of each block's residual, softmaxed; the model's probabilities are
 * the last block's lens. A string gets the same bits in any batch, so explain
 * (cl_trie_fwd_run_var) gives a corpus string the scan's bits. Vectors are
 * l2-normalised per block.
 *
 * ---- Similarity, bins, matches ----
 * Per shard and hooked block: one sgemm of a prompt tile [<=1024, C] against
 * the shard's normalised leaf vectors [S, C]; the full P x N matrix never
 * exists. A pair with sim > prefilter falls in bin k = ceil((sim - prefilter)
 * / width) - 1, clamped to [0, NB-1] (bin k holds (lower_k, lower_k + width];
 * the last bin also takes sim > 1). Its substring's CSR next-token counts are
 * added to counts[p, b, k, :] and n_matches[p, b, k]++. The self pair
 * (substring == the prompt's own index) is forced to sim = 1.0, last bin.
 * Matches kept: sim > match_threshold[b] (default: the paper's block
 * thresholds CL_PAPER_THRESHOLDS when the hook covers all 6 blocks of a
 * 6-block model, otherwise the prefilter), at most match_cap per (prompt,
 * block) (default 1000; 0 = no cap), the most similar first, ties by lower
 * substring index. Sorted per h5schema.h, with /matches/index.
 *
 * ---- Output (scan_io.c; parallel HDF5, h5par.h) ----
 * Every rank writes its share of "<out>.tmp" through MPI-IO (collective
 * writes; the chunked datasets keep gzip: HDF5 1.10 writes filtered chunks
 * collectively). /freq/counts and /freq/n_matches: in prompt slices of
 * 2^24 elements, MPI_Reduce_scatter hands each rank the sums of a block of
 * the slice's prompts, which it writes; no rank holds a second copy of the
 * tensor. Matches: rank r owns the prompt block [P r / R, P (r + 1) / R)
 * (blocks in rank order: HDF5 places a collective write's chunks rank by
 * rank, h5par.h); in rounds of 256 prompts every rank sends each prompt's
 * capped lists to the prompt's owner (MPI_Alltoallv), which merges, sorts
 * and caps them; then an MPI_Exscan of the owned match counts gives each
 * rank the offset of its slab of /matches/{substring,similarity}
 * (canonical order: prompt, block, similarity desc, substring asc) and its
 * rows of /matches/index, each
 * written in one collective write. Nothing is sized by the rank count beyond
 * R-long count arrays (the old writer merged at most 1024 ranks and silently
 * dropped the matches of the others). The small datasets come from rank 0.
 * The HDF5 calls and shapes do not depend on the rank count and no rank count
 * is stored, so 1, 2, 4 or 8 ranks write the same bytes (wall_seconds aside:
 * tests/scan_ranks_bytes.sh). The `complete` attribute is written last, the
 * file renamed once every rank agrees (cl_par_agree), else discarded.
 * Multi-node: "<out>" must be on a file system every rank sees (MPI-IO).
 * Testing knobs (the file does not change): CORPUSLENS_SCAN_IO_SLICE
 * (elements per reduce slice), CORPUSLENS_SCAN_IO_ROUND (prompts per round).
 *
 * ---- Resume ----
 * "<out>.state/" holds `args` (the run's signature: model and corpus SHA-256,
 * hook, prefilter, grid, thresholds, cap, shard size; not the rank count) and
 * checkpoint files (`rank<k>.bin`: the shards whose sums it holds, counts,
 * n_matches, pairs, matches; layout in scan_io.c), each written to a
 * temporary name and renamed, every checkpoint_seconds and when stopped
 * (CORPUSLENS_SCAN_STOP_AFTER, or SIGINT / SIGTERM once cl_interrupt_install
 * ran: interrupt.h; the ranks stop at their next shard boundary). A
 * rerun with the same signature, on any number of ranks R, reads every
 * checkpoint (file k into rank k mod R's sums), deals the shards none holds
 * round-robin over its ranks (cl_shard_plan, index.h) and writes the same
 * file as an uninterrupted run; a different signature starts over. The state
 * is removed after success.
 *
 * ---- Memory per rank (paper scale: P 20,000, 6 blocks, 30 bins, V 65) ----
 * counts 936 MB + n_matches 29 MB + prompt vectors 184 MB + match lists (a
 * capped list grows to 1.5 x cap before it is sorted and cut: at most
 * P x Lh x 1.5 cap x 8 bytes = 1.4 GB at cap 1000, usually far less) + the
 * trie workspace (S x L x 7C floats: 220 MB at S 2048) + the similarity tile
 * (1024 x S floats). Writing adds at most 2^24 / R count elements (the reduce
 * buffer) and the rank's own share of the merged matches (about 1/R of the
 * stored ones). Cost model for larger corpora and more nodes: README.md.
 *
 * ---- Benchmark hook ----
 * CORPUSLENS_SCAN_SAMPLE_SHARDS=K scans only K shards spread evenly over the
 * plan (attribute sampled_shards; not a full scan): tests/bench/scan_bench.sh.
 */
#ifndef CORPUSLENS_SCAN_H
#define CORPUSLENS_SCAN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"

#define CL_SCAN_MAX_BLOCKS 64

typedef struct {
    const char *model_path, *corpus_path, *out_path;
    const char *hook;           /* default "mlp_out" */
    double prefilter;           /* in (-1, 1), default 0.7 */
    double bin_width;           /* > 0, (1 - prefilter) / width a whole number (to 1e-9) */
    int n_match_thresholds;     /* 0: default rule; else Lh values */
    double match_thresholds[CL_SCAN_MAX_BLOCKS];
    long match_cap;             /* default 1000; 0 = no cap */
    long shard_size;            /* default 2048 substrings */
    double checkpoint_seconds;  /* default 60 (a killed run loses at most about this) */
    double checkpoint_share;    /* default 0.1: after a checkpoint that took c seconds the
                                   next waits at least c * (1/share - 1), so slow
                                   checkpoints (0.94 GB per rank at paper scale) take
                                   at most about this share of the time; 0 = exactly
                                   checkpoint_seconds (the CLI's --checkpoint-every) */
    long stop_after_shards;     /* testing: each rank stops (checkpointed) after this
                                   many of its shards; 0 = off */
    /* progress (rank 0 only, may be NULL): done/total substrings (rank 0's
       share extrapolated to the job), elapsed seconds */
    void (*progress)(void *user, size_t done, size_t total, double elapsed);
    void *progress_user;
    /* messages for the user (rank 0; may be NULL): "resuming ..." */
    void (*note)(void *user, const char *msg);
    /* --index-out: also write the activation index (index.h, same layout as
       `corpuslens index`) from the shard vectors the scan computes anyway;
       NULL = no index. index_dtype: cl_index_dtype (0 float16, 1 float32). */
    const char *index_out;
    int index_dtype;
    /* the layout of the binned next-token counts in scan.h5 (scan_sparse.c):
       CL_SCAN_LAYOUT_AUTO (dense when V <= CL_SCAN_DENSE_MAX_V), DENSE
       (/freq/counts [P, Lh, NB, V]) or CSR (/freq/next/{indptr,token,count}
       over the P x Lh x NB rows; attribute next_layout "dense" or "csr") */
    int next_layout;
} cl_scan_opts;

enum { CL_SCAN_LAYOUT_AUTO = 0, CL_SCAN_LAYOUT_DENSE = 1, CL_SCAN_LAYOUT_CSR = 2 };
#define CL_SCAN_DENSE_MAX_V 4096

void cl_scan_opts_default(cl_scan_opts *o);

typedef struct {
    int64_t n_pairs;       /* prefiltered pairs (self pairs included) */
    int64_t n_matches;     /* stored matches */
    double wall_seconds, flops, forward_flops, cosine_flops;
    double corpus_flops;   /* the corpus side (trie forward of the scanned shards + similarity): the file's
                              `flops`; the prompt side is left out there, as it depends on how the run
                              went (a resumed run forwards the prompts again, by another route) */
    size_t n_nodes;        /* trie node rows forwarded (all ranks) */
    int64_t n_prompts;     /* P */
    int64_t n_prompts_forwarded; /* prompts whose vectors came from the shard forward (the rest: prompt trie) */
    size_t n_prompt_nodes; /* nodes of the prompt trie (one piece; its share per rank is a little more) */
    double t_forward, t_sgemm, t_select, t_prompts, t_write; /* seconds (max over ranks): the
                                     first four in process CPU time, t_write wall */
    /* the pruning bound (CORPUSLENS_SCAN_PRUNE_RANK; 0 = brute force): per
       hooked block, pairs whose exact similarity was computed (candidates)
       out of the pairs searched; t_sgemm is then the bound's sgemm, t_select
       the bound pass, the candidates' dot products and the binning */
    int prune_rank, n_blocks;
    int64_t n_candidates[CL_SCAN_MAX_BLOCKS], n_tested[CL_SCAN_MAX_BLOCKS];
    int stopped;           /* 1 when stop_after_shards or a signal stopped the run
                              (no output; every rank's state saved) */
    int interrupted;       /* the signal (SIGINT, SIGTERM) that stopped it, or 0 */
    long long shards_done, n_shards; /* when stopped: shards saved in the state, of all */
} cl_scan_result;

/* Collective over comm: every rank calls it with the same options. Returns 0
 * on every rank, or -1 on every rank with the message set on rank 0 (other
 * ranks: "failed on another rank" unless their own error). */
int cl_scan_run(const cl_scan_opts *o, MPI_Comm comm, cl_scan_result *res);

/* ---- pieces, exposed for tests ---- */

/* Lexicographic order of the substrings by token ids: perm[N] (malloc'ed). */
int64_t *cl_scan_sort(const cl_corpus *c);

typedef struct cl_trie_fwd cl_trie_fwd;
/* Workspace for shards of up to max_S substrings of length L (<= block_size). */
cl_trie_fwd *cl_trie_fwd_create(const cl_model *m, int L, size_t max_S);
void cl_trie_fwd_free(cl_trie_fwd *t);
/* Forward the S substrings tokens[S, L] (sorted lexicographically, distinct;
 * unsorted input is correct too, only shares less) sharing prefixes; capture
 * `point` at the last position for blocks lo..hi into out[hi-lo+1, S, C].
 * point: CL_HOOK_RESID_PRE, ATTN_OUT, RESID_MID, MLP_OUT, RESID_POST.
 * *n_nodes receives M. 0 or -1. */
int cl_trie_fwd_run(cl_trie_fwd *t, const int32_t *tokens, size_t S, int point, int lo, int hi, float *out,
                    size_t *n_nodes);
/* The same, and the residual stream after every block (resid_post, blocks
 * 0..n_layer-1) of the substrings sel[0..nsel) (row indices into tokens)
 * into res[nsel, n_layer, C] (res NULL: cl_trie_fwd_run). With res the
 * forward runs through every block (the last for the leaves only). A
 * node's values depend only on its prefix (every kernel computes a row
 * alone, in one fixed order), so a substring gets the same bits in any
 * shard, alone or with others; they may differ from cl_forward_run's in the
 * last bits (attention sums in another order; scan_trie_check bounds it). */
int cl_trie_fwd_run_res(cl_trie_fwd *t, const int32_t *tokens, size_t S, int point, int lo, int hi, float *out,
                        const int32_t *sel, size_t nsel, float *res, size_t *n_nodes);
/* The same for S strings of 1..L tokens (L: cl_trie_fwd_create's; at most
 * max_S strings): string s is tokens[off[s] .. off[s+1]). Each shares its
 * nodes with the string before it up to their common prefix, so sorted
 * input (a prefix before the strings it begins) shares every prefix once;
 * any order is correct. A string equal to, or a prefix of, the one before
 * it is one of that string's nodes. out[hi-lo+1, S, C] as above (at each
 * string's last token); res (NULL: none) receives the residual after every
 * block of every string, res[S, n_layer, C]. The bits of a string's rows
 * depend only on the string: they equal cl_trie_fwd_run_res's for it as a
 * substring of length L = its length (explain takes its prompts from here, so
 * a corpus string gets the scan's bits). 0 or -1. */
int cl_trie_fwd_run_var(cl_trie_fwd *t, const int32_t *tokens, const size_t *off, size_t S, int point, int lo,
                        int hi, float *out, float *res, size_t *n_nodes);

#endif

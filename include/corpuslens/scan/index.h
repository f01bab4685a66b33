/* corpuslens index: the unit-normalised hooked activation (last position) of
 * every unique substring of a corpus, per hooked block, written once and
 * queried by `explain` (kNN-LM's datastore, for the paper's method).
 *
 * Dimension legend: N substrings, L length, C n_embd, Lh hooked blocks,
 * S substrings per shard, P prompts, V vocab.
 *
 * ---- Build (cl_index_run, collective) ----
 * The scan's shard plan and trie forward (scan.h): substrings sorted
 * lexicographically by token ids, cut into shards of S (--batch, default
 * 2048), shard j computed by rank j mod R (on a resume: the shards not yet
 * done, dealt the same way), each shard's vectors from the same
 * computation whoever runs it, then l2-normalised per row in float32 and, for
 * float16, rounded to nearest even (software, exact). Each rank appends its
 * shards to a part file "<out>.parts/rank<r>.bin" (fixed-size records of S
 * rows, [Lh, S, C] each), fsync'ed at each checkpoint; at the end rank 0
 * writes "<out>.tmp" shard by shard IN SHARD ORDER (reading shard j from the
 * part whose .synced lists it) with `complete` = 0 and closes it (every close checked);
 * only then it sets `complete` = 1 (and adds the sketch), fsyncs the file,
 * renames it to <out>, fsyncs the directory, and removes the parts. When any
 * of that fails (a full disk) the parts stay and the same command again
 * assembles them. The HDF5 calls are the same whatever R, and no time
 * stamps are stored (H5Pset_obj_track_times off), so 1, 2 or 3 ranks give the
 * same bytes. The part files must be on a file system every rank sees (one
 * node, or the shared output directory of a cluster).
 * Resume: "<out>.parts/args" holds the run's signature (model and corpus
 * SHA-256, hook, dtype, shard size; not the rank count); a rerun with the
 * same signature keeps the records that each part's last checkpoint fsynced
 * ("<out>.parts/rank<r>.bin.synced" holds their count and the shard of each,
 * written durably after the part's fsync; records past it may not be on
 * disk), on any number of ranks: the shards no part holds are dealt
 * round-robin over the new ranks (cl_shard_plan), rank r appends them to its
 * part after its kept records, and the assembly reads each shard from the
 * part whose .synced lists it (parts of ranks the rerun lacks included).
 * Another signature starts over.
 *
 * ---- index.h5 ----
 * root attributes:
 *   format "corpuslens-index", format_version 1, complete (1, written last)
 *   model_file, model_sha256 (cl_model_fingerprint), corpus_h5_file,
 *   corpus_h5_sha256 (SHA-256 of corpus.h5), corpus_sha256 (of the text)
 *   hook (as given), hook_first_block, n_hook_blocks (Lh), n_layer, n_embd,
 *   L, vocab_size, n_substrings, dtype ("float16" | "float32"), shard_size
 * datasets:
 *   /vocab      [V] as in model.h (a char index)
 *   /tokenizer  a GPT-2 BPE index (root attribute token_type "gpt2-bpe", of a
 *               BPE corpus): the model's tokenizer as in model.h, no /vocab
 *   /substring  [N] int32: the corpus.h5 substring index of row i (rows are
 *               in lexicographic order of the substrings' token ids)
 *   /vectors    [Lh, N, C] IEEE float16 (little-endian, 1-5-10) or float32:
 *               row i of block b is the unit vector of substring
 *               /substring[i] at hook block hook_first_block + b. Chunked
 *               [1, S, C] (a chunk is S rows of substrings), no filter, so a
 *               reader streams rows in blocks.
 * Size: N Lh C 2 bytes (+ 4 N): TinyShakespeare L=10 with the lecture model,
 * mlp_out: 858,923 x 6 x 384 x 2 = 3.96 GB (float32 7.9 GB).
 *
 *   /sketch     the pruning sketch (float16 only): include/corpuslens/scan/sketch.h
 *
 * ---- Reading (cl_index_open): trust no file (docs/index-integrity.md) ----
 * cl_index_open validates, before it allocates anything sized by the file:
 * the format, `complete`, every size attribute's range, the hook (a point
 * `index` writes, width C, for the blocks the attributes name), that the data
 * the attributes imply fit in the file's size and every dataset's shape
 * matches them; then every /substring id (0 <= id < N, each once), /vectors'
 * type and layout (chunks [1, S, C], unfiltered, all inside the file), and the
 * sketch (its shapes, an orthonormal projection, its SHA-256). cl_index_check
 * refuses an index made from another model or corpus.h5 (SHA-256), and
 * cl_index_check_order the rows' order against the corpus's tokens. What is
 * not promised: the vectors carry no checksum. cl_index_read_rows streams rows [r0, r0+n) of one block as
 * float32 (float16 widened exactly), so a query holds one row block at a
 * time, never the whole index.
 */
#ifndef CORPUSLENS_SCAN_INDEX_H
#define CORPUSLENS_SCAN_INDEX_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/scan/half.h"   /* float16 values (cl_f32_to_f16, cl_index_f16_type) */
#include "corpuslens/scan/sketch.h" /* the pruning sketch the reader opens */

#define CL_INDEX_FORMAT "corpuslens-index"
#define CL_INDEX_FORMAT_VERSION 1
#define CL_INDEX_SUBSTRING "/substring"
#define CL_INDEX_VECTORS "/vectors"

typedef enum { CL_INDEX_F16 = 0, CL_INDEX_F32 = 1 } cl_index_dtype;

typedef struct {
    const char *model_path, *corpus_path, *out_path;
    const char *hook;          /* default "mlp_out" */
    cl_index_dtype dtype;      /* default float16 */
    long shard_size;           /* default 2048 */
    double checkpoint_seconds; /* default 60: fsync of the part files (also at SIGINT / SIGTERM) */
    long stop_after_shards;    /* testing: each rank stops after this many new shards; 0 = off */
    int sketch_dim;            /* CL_SKETCH_DIM_UNSET (default): min(CL_SKETCH_DEFAULT_DIM, n_embd/4) (sketch.h);
                                  0 = no sketch; k = exactly k (1..min(n_embd, 256)) */
    void (*progress)(void *user, size_t done, size_t total, double elapsed); /* rank 0, may be NULL */
    void *progress_user;
    void (*note)(void *user, const char *msg); /* rank 0, may be NULL */
} cl_index_opts;

void cl_index_opts_default(cl_index_opts *o);

typedef struct {
    double wall_seconds, t_forward, t_write; /* t_forward: max over ranks */
    size_t n_nodes;                          /* trie node rows (all ranks) */
    size_t bytes;                            /* size of the index file */
    int stopped;                             /* stop_after_shards or a signal stopped it (no output) */
    int interrupted;                         /* the signal (SIGINT, SIGTERM: interrupt.h), or 0 */
    long long shards_done, n_shards;         /* when stopped: shards kept in the parts, of all */
} cl_index_result;

/* Collective over comm. 0 on every rank, or -1 on every rank (the failing
 * rank's own message; others "failed on another rank"). */
int cl_index_run(const cl_index_opts *o, MPI_Comm comm, cl_index_result *res);

/* ---- the writer the scan shares (scan --index-out) ---- */
typedef struct cl_index_writer cl_index_writer;
typedef struct {
    const char *out_path, *model_path, *corpus_path, *hook;
    const char *model_sha, *corpus_h5_sha, *corpus_sha; /* hex */
    cl_index_dtype dtype;
    int Lh, first_block, n_layer, C, L, V;
    const uint32_t *vocab;
    const struct cl_bpe *bpe; /* a GPT-2 BPE corpus's tokenizer (written instead of /vocab); NULL: char */
    size_t N, S, n_shards;
    const int64_t *perm; /* [N] sorted position -> substring */
    int sketch_dim;      /* float16: the sketch added before the rename (sketch.h); 0 = the default
                            (min(32, C/4)), -1 = none */
} cl_index_meta;
/* The shards rank `rank` of R computes, into list (room for n_univ): the
 * shards of universe (n_univ ids ascending; NULL: 0..n_univ-1) that done[]
 * (NULL: none) does not mark, dealt round-robin, the rank-th first. Returns
 * how many. With nothing done: rank, rank + R, ... (the plan of a fresh run). */
size_t cl_shard_plan(const size_t *universe, size_t n_univ, const unsigned char *done, int rank, int R, size_t *list);
/* Collective: open this rank's part file. done [n_shards] receives the
 * shards the parts already hold (every part of the directory, whatever rank
 * count wrote it: each part's .synced lists the shard of each synced
 * record). keep = NULL: the index command, which resumes from the parts when
 * their signature file matches. keep [n_shards] = the shards a resumed scan's
 * checkpoint holds (all 0: a fresh scan): each part is cut at its first
 * record not in keep, and the parts must hold every shard of keep. */
cl_index_writer *cl_index_writer_open(const cl_index_meta *meta, int rank, int R, const unsigned char *keep,
                                      unsigned char *done, MPI_Comm comm);
/* Append shard `shard` to this rank's part: S_rows valid rows of
 * vec[Lh, S_rows, C] (normalised). Local; 0 or -1. */
int cl_index_writer_put(cl_index_writer *w, size_t shard, const float *vec, size_t S_rows);
/* Local: flush and fsync the part, then record durably how many records it
 * holds (a checkpoint). */
int cl_index_writer_sync(cl_index_writer *w);
/* Collective: rank 0 assembles <out> from the parts (see above); frees w on
 * every rank. ok = 0 on a rank that failed (then nothing is written and the
 * parts are kept). Returns 0 / -1 on every rank. */
int cl_index_writer_finish(cl_index_writer *w, int ok, size_t *bytes, MPI_Comm comm);
void cl_index_writer_abort(cl_index_writer *w); /* local: close, keep the parts */

/* ---- reading ---- */
typedef struct {
    hid_t file, vectors;
    char path[4096];
    size_t N;
    int Lh, first_block, n_layer, C, L, V;
    cl_index_dtype dtype;
    size_t chunk_rows;
    uint32_t *vocab;       /* [V]; NULL for a BPE index */
    struct cl_bpe *bpe;    /* token_type "gpt2-bpe": the /tokenizer (tokenizer.h); NULL: char */
    int32_t *substring;    /* [N] */
    char hook[64], model_sha256[80], corpus_h5_sha256[80];
    int hook_point, hook_layer; /* the hook parsed and checked (cl_hook_point, forward.h; layer -1 = every block) */
    /* float16 with CORPUSLENS_INDEX_MMAP=1: the file memory-mapped read-only
       (the page cache is the only copy) and the file offset of every chunk
       [Lh, n_chunks]; NULL/0 otherwise (rows are read with H5Dread) */
    const unsigned char *map;
    size_t map_size, n_chunks;
    uint64_t *chunk_off;
    /* the pruning sketch (sketch.h) when the file has a complete one: then a
       float16 index is always mapped (explain reads the surviving rows in
       place); NULL otherwise */
    cl_sketch *sketch;
    /* cl_index_hold: the file's bytes held in memory (explain reads surviving
       rows in place, not by pread) and the sketch held in memory */
    int held;
    void *hold_base; /* the held copy's anonymous mapping (map points into it), or NULL */
    size_t hold_len;
    /* cl_explain_hold_counts (explain.h): the next-token counts of the
       corpus `row_corpus` in this index's row order (row i: entries
       row_indptr[i] .. row_indptr[i+1] of row_token/row_count), or NULL */
    const void *row_corpus;
    int64_t *row_indptr;
    int32_t *row_token, *row_count;
} cl_index;

cl_index *cl_index_open(const char *path);
/* As cl_index_open, without reading or checking /sketch (sketch is NULL):
 * for --add-sketch, which replaces it. */
cl_index *cl_index_open_no_sketch(const char *path);
void cl_index_close(cl_index *ix);
/* Keep the index warm for many queries (serve): read the whole file into
 * anonymous memory with transparent huge pages (MADV_HUGEPAGE) and drop the
 * mapping, so that map then points at that copy (same offsets; the RSS holds
 * the file's bytes once); where that memory cannot be had, the mapping's
 * pages read in instead (CORPUSLENS_INDEX_HUGE=0: always so). The sketch is
 * held in memory (cl_sketch_hold, checked against its SHA-256). Results do
 * not change. Without a mapping: nothing to do. 0 or -1 (message). */
int cl_index_hold(cl_index *ix);
/* Refuse an index made from another model (its fingerprint) or another
 * corpus.h5 (SHA-256 of the file); either may be NULL to skip. */
int cl_index_check(const cl_index *ix, const char *model_sha, const char *corpus_h5_sha, const char *model_path,
                   const char *corpus_path);
/* ---- the sketch (sketch.h) of an existing index ---- */
typedef struct {
    int k, Lh;
    size_t bytes; /* of the index file afterwards */
    double variance_kept[64];
} cl_sketch_stats;

/* Adds (or replaces) /sketch in the complete float16 index at path, in place
 * (one process). k in 1..min(256, C), or 0: the default, min(32, C/4). 0 or
 * -1 (message). */
int cl_index_add_sketch(const char *path, int k, cl_sketch_stats *st);

/* The rows' order against the corpus the index was built from (call it
 * after cl_index_check has matched the corpus's SHA-256): row i's substring
 * sorts strictly before row i+1's by token ids, as the layout promises (the
 * n-gram lookup, cl_explain_find, binary-searches it). Reads
 * /substrings/tokens of corpus_path whole (N L 4 bytes, freed before it
 * returns). The result is cached like a SHA-256 (hash.h: by the index file's
 * device, inode, size and times, and the corpus's SHA-256), so only the first
 * start after the index changed pays for it; *cached (may be NULL) says
 * whether the cache answered. 0 or -1 (message). */
int cl_index_check_order(const cl_index *ix, const char *corpus_path, int *cached);

/* Rows [r0, r0+n) of block b into out[n, C] float32; buf is scratch of
 * n*C*2 bytes for float16 (NULL for float32). 0 or -1. */
int cl_index_read_rows(const cl_index *ix, int b, size_t r0, size_t n, float *out, void *buf);
/* float16 and mapped: the rows of chunk c of block b in place ([rows, C]
 * halves, rows = chunk_rows or fewer at the end), or NULL. */
const uint16_t *cl_index_chunk_f16(const cl_index *ix, int b, size_t c);

#endif

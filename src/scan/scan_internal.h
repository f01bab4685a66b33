/* Internal state of the scan, shared by scan.c (compute), scan_io.c (resume
 * state, output) and scan_util.c (match lists, MPI sums). */
#ifndef CORPUSLENS_SCAN_INTERNAL_H
#define CORPUSLENS_SCAN_INTERNAL_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "corpuslens/base/clock.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"
#include "corpuslens/scan/scan.h"

typedef struct {
    float sim;
    int32_t sub;
} scan_match;

/* Matches of one (prompt, block): unsorted until scan_mlist_sort_cap. */
typedef struct {
    scan_match *a;
    uint32_t n, alloc;
    float floor;  /* when capped: the smallest kept similarity */
    int capped;
} scan_mlist;

/* The next-token counts of one (prompt, block, bin) in the csr layout
 * (scan_sparse.c): entries token << 32 | count, e[0 .. nsorted) sorted by token
 * with one entry per token, e[nsorted .. n) appended since (unsorted, tokens
 * repeated); scan_srow_compact merges them. Memory follows the distinct
 * tokens, not V. */
typedef struct {
    uint64_t *e;
    uint32_t n, cap, nsorted;
} scan_srow;

typedef struct {
    const cl_scan_opts *o;
    MPI_Comm comm;
    int rank, R;
    cl_model *m;
    cl_corpus *cp;
    int point, lo, hi, Lh, NB;
    double thr[CL_SCAN_MAX_BLOCKS];
    double lower[10000]; /* bin lower edges (NB <= 10000) */
    /* the same edges as floats rounded down: for a float v, v > lower[k]
       exactly when v > lowf[k] (likewise the prefilter and the thresholds),
       so the selection compares floats and gets the double comparison's answer */
    float lowf[10000], pf_lo, thr_lo[CL_SCAN_MAX_BLOCKS], bin_inv;
    char match_rule[512];
    size_t S, n_shards;
    /* the corpus on this rank (issue 26): the rows and counts of its shards
       only (cl_corpus_read_shards), the prompts' rows in cp */
    cl_corpus_part part;
    int64_t *shard_at;  /* [n_shards] shard's first row in part, -1: not held */
    const int64_t *sh_id; /* [S] substring ids of the shard being scanned */
    int64_t *uni;       /* [V] next-token counts over the corpus (all ranks) */
    int32_t *stok;      /* [S, L] */
    float *svec;        /* [Lh, S, C] */
    float *sims;        /* [PTILE, S] */
    float *pvec;        /* [Lh, P, C] normalised */
    float *probs;       /* [P, V] (dense layout; NULL for csr: scan_prompt_probs) */
    float *lens;        /* [P, n_layer, V] (dense layout; NULL for csr) */
    double *lensh;      /* [P, n_layer] csr: each block's lens H to the model, from take_prompts */
    double *unih;       /* [P] csr: the unigram's H to the model, from take_prompts */
    double *hrow;       /* [V + n_layer] csr: take_prompts' scratch */
    double *unid;       /* [V] csr: the unigram as doubles (take_prompts) */
    int32_t *counts;    /* [P, Lh, NB, V] (dense layout; NULL for csr) */
    scan_srow *srows;   /* [P, Lh, NB] (csr layout; NULL for dense) */
    uint64_t *sscratch; /* merge scratch of scan_srow_compact */
    size_t sscratch_cap;
    int64_t *nmatch;    /* [P, Lh, NB] */
    scan_mlist *lists;  /* [P, Lh] */
    cl_trie_fwd *tf;
    int64_t n_pairs;
    size_t n_nodes;
    double flops_forward, flops_cosine, flops_prompts;
    size_t done;        /* shards of this rank's list finished (my_shards[0..done)) */
    size_t *my_shards;  /* [n_mine] this run's shards of this rank (cl_shard_plan) */
    size_t n_mine;
    unsigned char *done_set; /* [n_shards] shards in the checkpoints this run resumed from (every rank) */
    unsigned char *covered;  /* [n_shards] shards in this rank's accumulators (its checkpoint's set) */
    int *absorbed;      /* checkpoint files rank<k>.bin this rank loaded besides its own: removed after its save */
    int n_absorbed;
    int stopped;
    double t_forward, t_sgemm, t_select, t_prompts; /* CPU seconds, this run */
    size_t sampled;     /* benchmark: shards sampled (0 = all) */
    char sig[2048];     /* run signature (resume) */
    char model_sha[65], corpus_h5_sha[65];
    struct cl_index_writer *ixw; /* scan --index-out (index.h), NULL otherwise */
    /* the pruning bound (scan_prune.c); prune_r = 0: brute force */
    int prune_r;
    size_t prune_ptile; /* prompt rows per bound tile */
    float *prune_U;     /* [Lh, r, C] */
    float *pproj;       /* [Lh, P, r + 1] projected prompts and remainder norms */
    float *sproj;       /* [S, r + 1] the same for the shard's substrings (one block) */
    float *prune_tmp;   /* [SCAN_PRUNE_CHUNK, C] */
    /* the shard's next-token lists in shard order (cache-resident in the
       selection): followers of sorted position s0 + s at [loc_ptr[s], loc_ptr[s + 1]) */
    int32_t *loc_ptr;   /* [S + 1] */
    int32_t *loc_tok, *loc_cnt;
    size_t loc_cap;
    int32_t *row_pos, *row_k; /* [S] one row's pairs above the prefilter (brute force) */
    float *row_val;           /* [S] */
    int64_t n_cand[CL_SCAN_MAX_BLOCKS], n_tested[CL_SCAN_MAX_BLOCKS]; /* candidate pairs / pairs */
    int csr;            /* write the binned counts as CSR (scan_sparse.c) */
    /* csr, rank 0, from scan_write_counts_csr: each prompt's union of the
       tokens of its /freq/next rows, prompt p at utok[uptr[p] .. uptr[p + 1])
       increasing (the start of its /model/support) */
    int64_t *uptr;      /* [P + 1] */
    int32_t *utok;
    /* the prompt side (scan.c, prompt_vectors): the first nkeep shards this
       run scans on this rank are forwarded before the prompts are needed and
       their vectors kept ([nkeep, Lh, S, C], normalised), so that their
       prompts take their vectors from that forward; keep_slot[shard]: its
       slot or -1. The other prompts go through a trie of their own. */
    size_t mine;        /* shards of this rank in the plan */
    float *keep;
    size_t nkeep;
    int32_t *keep_slot; /* [n_shards] */
    size_t *keep_nodes; /* [nkeep] trie nodes and forward flops of each kept shard, */
    double *keep_flops; /* counted when the shard is scanned (do_shard), not when kept */
    int64_t *pp;        /* [P] prompts by sorted position of their substring */
    int32_t *psel;      /* [S] rows of a trie forward that are prompts */
    size_t *pj;         /* [S] the first index into pp of each such row */
    float *pres;        /* [S, n_layer, C] their residuals after every block */
    float *plg;         /* [plg_rows, n_layer, V] the lens logits of plg_rows of them at a time */
    size_t plg_rows;    /* at most 64 MiB of logits (one row at GPT-2's 12 x 50257: 2.4 MB), <= S */
    int64_t n_from_trie;
    size_t n_prompt_nodes; /* prompts from the shard forward; nodes of the prompt trie */
} scan_ctx;

/* Whether any of r[0..16) is > t (NaN is not), as `!(r[i] > t)` skips):
 * the 16-wide prefilter of the scan (scan.c) and of explain (explain.c). */
static inline int scan_any_above16(const float *r, float t) {
#if defined(__SSE2__)
    __m128 tv = _mm_set1_ps(t);
    __m128 a = _mm_cmpgt_ps(_mm_loadu_ps(r), tv);
    a = _mm_or_ps(a, _mm_cmpgt_ps(_mm_loadu_ps(r + 4), tv));
    a = _mm_or_ps(a, _mm_cmpgt_ps(_mm_loadu_ps(r + 8), tv));
    a = _mm_or_ps(a, _mm_cmpgt_ps(_mm_loadu_ps(r + 12), tv));
    return _mm_movemask_ps(a) != 0;
#else
    for (int i = 0; i < 16; i++)
        if (r[i] > t) return 1;
    return 0;
#endif
}

/* Bit i of the result: r[i] > t (NaN is not), i < 16. */
static inline unsigned scan_above16_mask(const float *r, float t) {
#if defined(__SSE2__)
    __m128 tv = _mm_set1_ps(t);
    unsigned m = (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(r), tv));
    m |= (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(r + 4), tv)) << 4;
    m |= (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(r + 8), tv)) << 8;
    m |= (unsigned)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(r + 12), tv)) << 12;
    return m;
#else
    unsigned m = 0;
    for (int i = 0; i < 16; i++) m |= (unsigned)(r[i] > t) << i;
    return m;
#endif
}

/* The lowest set bit of a nonzero m. */
static inline int scan_ctz(unsigned m) {
#if defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int i = 0;
    while (!(m & 1u)) m >>= 1, i++;
    return i;
#endif
}

/* scan_prune.c: the exact pruning bound (see there). basis: U [r, C], the
 * top-r principal directions of v [n, C] (orthonormal rows). project:
 * out [n, r + 1] = [U v, |v - U^T U v| rounded up] for each row of v;
 * tmp: [SCAN_PRUNE_CHUNK, C] scratch. */
#define SCAN_PRUNE_MARGIN 1e-4f
int scan_prune_basis(const float *v, size_t n, int C, int r, float *U);
/* sketch.c: the top-k eigenvectors of a symmetric C x C matrix M as the rows
 * of P [k, C] (subspace iteration from a fixed start), and the fraction of
 * M's trace they keep (kept may be NULL). Shared by the sketch and the
 * scan's pruning basis. */
int scan_top_subspace(const double *M, int C, int k, double *P, double *kept);
#define SCAN_PRUNE_CHUNK 2048
int scan_prune_project(const float *U, int r, const float *v, size_t n, int C, float *out, float *tmp);
/* eight dot products of a with b[0..7] into out[0..7], each summed in one
 * fixed order (the same bits from every version; scan_prune.c) */
typedef void (*scan_dot8_fn)(const float *a, const float *const *b, int C, float *out);
scan_dot8_fn scan_dot8_pick(void);

/* scan_util.c */
double scan_cpu_now(void); /* this process's CPU seconds (phase times) */
int scan_mlist_add(scan_mlist *l, float sim, int32_t sub, long cap);
void scan_mlist_sort_cap(scan_mlist *l, long cap);
int scan_allreduce(void *buf, size_t n, MPI_Datatype t, size_t elsize, MPI_Comm comm);
/* The receive displacements rd[R] of an MPI_Alltoallv from its counts rc[R]
 * (0 once the running sum passes INT_MAX: the caller refuses such a total),
 * and the total. */
long long scan_alltoallv_displs(const int *rc, int *rd, int R);
/* Merge nlists match lists sent by nsrc ranks (any number: nothing here is
 * sized by it): source s's block starts at buf + displ[s] with nlists uint32
 * counts, then the entries of list 0, 1, ... back to back. List i is the
 * concatenation over sources, sorted and capped (scan_mlist_sort_cap: the
 * same list whatever the split, as every source kept its own top-cap), its
 * count stored in index2[2 i + 1], then handed to sink. 0 or -1. */
int scan_merge_sources(const char *buf, const int *displ, int nsrc, size_t nlists, long cap, int64_t *index2,
                       int (*sink)(void *user, const scan_mlist *l), void *user);

/* Resume (scan_io.c): begin = compute the signature, check/prepare the state
 * directory, load this rank's checkpoint (collective). save = this rank's
 * checkpoint (local). remove = delete the state directory (rank 0). */
int scan_state_begin(scan_ctx *x);
int scan_state_save(scan_ctx *x);
void scan_state_remove(scan_ctx *x);
/* After a failure (rank 0): when rank checkpoints exist, append to the
 * message that they are kept and resume; otherwise remove the state. */
void scan_state_after_failure(scan_ctx *x);
/* scan.c: the model's probabilities of every prompt again, through the
 * same trie forward (the same bits as the scan's): fn(user, p, q [V]) for
 * every prompt p (csr write, rank 0; local). 0 or -1. */
int scan_prompt_probs(scan_ctx *x, int (*fn)(void *user, size_t p, const float *q), void *user);
/* Reduce and write the output (collective). */
int scan_write(scan_ctx *x, cl_scan_result *res);
/* scan_sparse.c: /freq/next/{indptr,token,count} from x->srows (collective;
 * prompt slices, each row's lists sent to its owner and merged there). Frees
 * the rows it sent. Hands each prompt's union of tokens (every block and
 * bin) to rank 0 (x->uptr, x->utok; nnz-sized). 0 or -1 on every rank. */
int scan_write_counts_csr(scan_ctx *x, hid_t file, size_t slice);
/* Add n (token, count) entries to a row (local; -1 on out of memory). */
int scan_srow_add(scan_ctx *x, scan_srow *r, const int32_t *tok, const int32_t *cnt, size_t n);
/* Sort and merge a row: afterwards e[0 .. n) holds each token once, in
 * increasing order, with its summed count (local; -1 on out of memory). */
int scan_srow_compact(scan_ctx *x, scan_srow *r);
/* Free the rows and the scratch. */
void scan_srows_free(scan_ctx *x);
/* scan_sparse.c: a BPE model's corpus: a BPE corpus of the same tokenizer,
 * the CSR layout, no --index-out (yet). 0 or -1 with the message. */
int scan_bpe_check(scan_ctx *x);
/* The longest decoded prompt of a BPE corpus in bytes (>= 1), and prompt
 * substring i decoded into out (at most that many bytes, not terminated). */
size_t scan_bpe_text_len(const cl_corpus *cp);
void scan_bpe_text(const cl_corpus *cp, size_t k, char *out); /* prompt k's */

#endif

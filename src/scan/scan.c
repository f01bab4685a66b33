/* The distributed scan: shard plan, prompt vectors, tiled cosine range search,
 * binned next-token counts, capped matches, resume state. Design: scan.h.
 * Dimensions: P prompts, N substrings, S shard size, Lh hooked blocks,
 * NB bins, V vocab, C channels. */
#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/nn/gemm.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"
#include "corpuslens/scan/index.h"
#include "corpuslens/scan/scan.h"
#include "scan/scan_internal.h"

void cl_scan_opts_default(cl_scan_opts *o) {
    memset(o, 0, sizeof *o);
    o->hook = "mlp_out";
    o->prefilter = 0.7;
    o->bin_width = 0.01;
    o->match_cap = 1000;
    o->shard_size = 2048;
    o->checkpoint_seconds = 60;
    o->checkpoint_share = 0.1;
}

/* Prompt rows per similarity tile of brute force: [PTILE, S] floats. */
#define PTILE 1024
/* Prompt rows per bound tile (CORPUSLENS_SCAN_PRUNE_PTILE for benchmarks,
 * 1..PTILE): each substring row of a candidate block is the candidate of
 * about PRUNE_PTILE x 5 % prompts while it is in cache (paper slice: 256 beat
 * 32 and 128, 512 no better). */
#define PRUNE_PTILE 256

/* A zeroed array for cells the selection updates at random (the counts):
 * 2 MiB aligned and marked for transparent huge pages where the system has
 * them, so that its updates do not miss the TLB as well as the caches. Freed
 * with free(). */
static void *calloc_huge(size_t n, size_t size, const char *what) {
    if (n && size > SIZE_MAX / n) return cl_trycalloc(n, size, what);
    size_t bytes = n * size, huge = (size_t)2 << 20;
    if (bytes < huge) return cl_trycalloc(n, size, what);
    bytes = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, bytes)) return cl_trycalloc(n, size, what);
#if defined(MADV_HUGEPAGE)
    madvise(p, bytes, MADV_HUGEPAGE); /* advice only: without it the pages are small */
#endif
    memset(p, 0, bytes);
    return p;
}

/* The largest float <= d: for a float v, v > d exactly when v > float_below(d). */
static float float_below(double d) {
    float f = (float)d;
    if ((double)f > d) f = nextafterf(f, -INFINITY);
    return f;
}

/* ---- setup: load, validate, plan ---- */

static int setup(scan_ctx *x) {
    const cl_scan_opts *o = x->o;
    if (!o->model_path || !o->corpus_path || !o->out_path) return cl_error("model, corpus and output are required");
    if (!(o->prefilter > -1.0 && o->prefilter < 1.0))
        return cl_error("--prefilter %g is outside (-1, 1)", o->prefilter);
    if (!(o->bin_width > 0.0) || !(o->bin_width <= 2.0)) return cl_error("--bin-width %g must be in (0, 2]", o->bin_width);
    double nbd = (1.0 - o->prefilter) / o->bin_width;
    long nb = lround(nbd);
    if (nb < 1 || fabs(nb * o->bin_width - (1.0 - o->prefilter)) > 1e-9)
        return cl_error("--bin-width %g does not divide 1 - prefilter = %g into a whole number of bins", o->bin_width,
                        1.0 - o->prefilter);
    if (nb > 10000) return cl_error("--bin-width %g gives %ld bins (at most 10000)", o->bin_width, nb);
    x->NB = (int)nb;
    if (o->next_layout < CL_SCAN_LAYOUT_AUTO || o->next_layout > CL_SCAN_LAYOUT_CSR)
        return cl_error("next_layout %d is not auto, dense or csr", o->next_layout);
    if (o->shard_size < 1 || o->shard_size > (1L << 20)) return cl_error("--batch must be in 1..1048576");
    if (o->match_cap < 0) return cl_error("--match-cap must be >= 0");

    x->m = cl_model_load(o->model_path);
    if (!x->m) return -1; /* the loader names the path */
    const cl_config *c = &x->m->cfg;
    cl_hook_point pt;
    int layer;
    if (cl_hook_parse(o->hook, c->n_layer, &pt, &layer)) return -1;
    if (pt != CL_HOOK_RESID_PRE && pt != CL_HOOK_ATTN_OUT && pt != CL_HOOK_RESID_MID && pt != CL_HOOK_MLP_OUT &&
        pt != CL_HOOK_RESID_POST)
        return cl_error("hook '%s' is not supported by scan; valid: mlp_out, attn_out, resid_mid, resid_post, "
                        "resid_pre, embed, or blocks.{i}.hook_<one of those>",
                        o->hook);
    x->point = pt;
    x->lo = layer < 0 ? 0 : layer;
    x->hi = layer < 0 ? c->n_layer - 1 : layer;
    x->Lh = x->hi - x->lo + 1;
    if (x->Lh > CL_SCAN_MAX_BLOCKS) return cl_error("too many blocks (%d)", x->Lh);

    /* a BPE model scans a BPE corpus of its own tokenizer (scan_sparse.c).
       The corpus stays in the file: each rank reads its shards' rows after
       the plan (cl_corpus_read_shards), and the prompts' rows here */
    x->cp = cl_corpus_open_part(o->corpus_path, x->m->bpe != NULL);
    if (!x->cp) return -1; /* the loader names the path */
    const cl_corpus *cp = x->cp;
    x->csr = o->next_layout == CL_SCAN_LAYOUT_CSR ||
             (o->next_layout == CL_SCAN_LAYOUT_AUTO && (cp->bpe || cp->V > CL_SCAN_DENSE_MAX_V));
    if (cp->L > c->block_size)
        return cl_error("%s: substring length %d exceeds the model's block_size %d", o->corpus_path, cp->L,
                        c->block_size);
    if (x->m->bpe && scan_bpe_check(x)) return -1;
    /* Vocabulary (char models): characters missing from the model, or another id order. */
    for (int i = 0; !x->m->bpe && i < cp->V; i++) {
        int found = 0;
        for (int j = 0; j < c->vocab_size && !found; j++) found = cp->vocab[i] == x->m->vocab[j];
        if (!found) {
            char e[16];
            cl_token_escape(cp->vocab[i], e);
            return cl_error("%s: the corpus has the character '%s' (U+%04X), which is not in the model's vocabulary",
                            o->corpus_path, e, (unsigned)cp->vocab[i]);
        }
    }
    if (!x->m->bpe && (cp->V != c->vocab_size || memcmp(cp->vocab, x->m->vocab, (size_t)cp->V * sizeof *cp->vocab)))
        return cl_error("%s was made for another model: its vocabulary (%d tokens) differs from %s's (%d); "
                        "run prepare again with --vocab-from %s",
                        o->corpus_path, cp->V, o->model_path, c->vocab_size, o->model_path);
    if (cp->n_prompts < 1)
        return cl_error("%s has no prompts (prepare --prompts 0): scan needs them; prepare the corpus with "
                        "--prompts P or --prompt-file FILE", o->corpus_path);
    if (cp->n_prompts > cp->n)
        return cl_error("%s has more prompts (%zu) than substrings (%zu)", o->corpus_path, cp->n_prompts, cp->n);
    if (cp->n > (size_t)INT32_MAX) return cl_error("too many substrings (%zu)", cp->n);

    /* thresholds */
    if (o->n_match_thresholds) {
        if (o->n_match_thresholds != x->Lh)
            return cl_error("--match-thresholds has %d values; the hook covers %d blocks", o->n_match_thresholds, x->Lh);
        for (int b = 0; b < x->Lh; b++) {
            if (!(o->match_thresholds[b] >= o->prefilter && o->match_thresholds[b] < 1.0))
                return cl_error("match threshold %g is outside [prefilter, 1)", o->match_thresholds[b]);
            x->thr[b] = o->match_thresholds[b];
        }
        snprintf(x->match_rule, sizeof x->match_rule,
                 "sim > match_thresholds[b] (given), at most match_cap per (prompt, block), most similar first, "
                 "ties by lower substring index; the self pair has sim 1");
    } else if (c->n_layer == 6 && x->Lh == 6) {
        const double paper[6] = CL_PAPER_THRESHOLDS;
        for (int b = 0; b < 6; b++) x->thr[b] = paper[b] > o->prefilter ? paper[b] : o->prefilter;
        snprintf(x->match_rule, sizeof x->match_rule,
                 "sim > match_thresholds[b] (the paper's block thresholds, at least the prefilter), at most match_cap "
                 "per (prompt, block), most similar first, ties by lower substring index; the self pair has sim 1");
    } else {
        for (int b = 0; b < x->Lh; b++) x->thr[b] = o->prefilter;
        snprintf(x->match_rule, sizeof x->match_rule,
                 "sim > prefilter, at most match_cap per (prompt, block), most similar first, ties by lower "
                 "substring index; the self pair has sim 1");
    }
    for (int k = 0; k < x->NB; k++) x->lower[k] = o->prefilter + k * o->bin_width, x->lowf[k] = float_below(x->lower[k]);
    x->pf_lo = float_below(o->prefilter);
    for (int b = 0; b < x->Lh; b++) x->thr_lo[b] = float_below(x->thr[b]);
    x->bin_inv = (float)(1.0 / o->bin_width);
    /* the pruning bound's rank (prune_setup); off by default: on the shared
       2-core benchmark machine the candidates' dot products cost about what
       the bound saves in sgemm (tests/bench/scan_bench.sh measures both) */
    const int C = c->n_embd;
    x->prune_r = 0;
    const char *e = getenv("CORPUSLENS_SCAN_PRUNE_RANK");
    if (e && *e) {
        char *end;
        errno = 0;
        long v = strtol(e, &end, 10);
        if (*end || errno || v < 0 || v >= C)
            return cl_error("CORPUSLENS_SCAN_PRUNE_RANK=%s: expected an integer in 0..%d (0: brute force)", e, C - 1);
        x->prune_r = (int)v;
    }
    x->prune_ptile = PRUNE_PTILE;
    const char *ptv = getenv("CORPUSLENS_SCAN_PRUNE_PTILE");
    if (ptv && *ptv) {
        char *end;
        errno = 0;
        long v = strtol(ptv, &end, 10);
        if (*end || errno || v < 1 || v > PTILE)
            return cl_error("CORPUSLENS_SCAN_PRUNE_PTILE=%s: expected an integer in 1..%d", ptv, PTILE);
        x->prune_ptile = (size_t)v;
    }
    return 0;
}

/* Bin of a float similarity above the prefilter (see h5schema.h): the k with
 * lower[k] < v <= lower[k + 1] (clamped to 0..NB-1), compared as floats
 * against lowf (the same answer as in double). The guess only saves steps. */
static inline int bin_of(const scan_ctx *x, float v) {
    const int last = x->NB - 1;
    float g = (v - x->pf_lo) * x->bin_inv;
    int k = g < (float)last ? (int)g : last;
    if (k < 0) k = 0;
    while (k > 0 && !(v > x->lowf[k])) k--;
    while (k < last && v > x->lowf[k + 1]) k++;
    return k;
}

/* ---- prompt vectors, model probabilities, logit lens ---- */

/* Every prompt is a corpus substring. A prompt takes its hooked vectors and
 * its residuals after every block (for the logit lens and the model's
 * probabilities) from a trie forward: from the forward of the shard that
 * holds it when that shard is among the first ones this run scans on its
 * rank (those are forwarded first and their vectors kept; the shortcut), or
 * else from a trie of the other prompts, split over the ranks. A trie node's
 * values depend on its prefix only (cl_trie_fwd_run_res), so the two give
 * the same bits: the output does not depend on which prompts take the
 * shortcut, nor on the rank count. */

/* The shard at this rank's i-th place in the plan. */
/* The i-th shard this run scans on this rank (the plan: cl_shard_plan). */
static size_t shard_of(const scan_ctx *x, size_t i) { return x->my_shards[i]; }

/* Sorted position of the substring of pp[j]. */
static inline size_t ppos(const scan_ctx *x, size_t j) { return (size_t)x->cp->prompt_sorted_pos[x->pp[j]]; }

/* The next-token counts over the whole corpus (/corpus/unigram), each rank
 * summing a share of the stored entries (exact integers: the same sum on any
 * rank count); and the check that they fit the scan's int32 cells:
 * /freq/counts and /prompts/next_counts are int32, summed over substrings
 * and ranks, and a cell is at most the total of all next-token counts (each
 * substring falls in one bin of a (prompt, block)). Collective. */
static int corpus_unigram(scan_ctx *x) {
    const cl_corpus *cp = x->cp;
    const size_t V = (size_t)cp->V, a = cp->nnz * (size_t)x->rank / (size_t)x->R,
                 b = cp->nnz * ((size_t)x->rank + 1) / (size_t)x->R;
    int64_t *mine = cl_trycalloc(V, sizeof *mine, "unigram");
    x->uni = cl_trycalloc(V, sizeof *x->uni, "unigram");
    int err = !mine || !x->uni || cl_corpus_count_slice(cp, a, b, mine);
    if (!err && cl_par_allreduce(mine, x->uni, (int)V, MPI_INT64_T, MPI_SUM, x->comm) != MPI_SUCCESS)
        err = cl_error("MPI_Allreduce failed");
    free(mine);
    if (cl_par_agree(err, x->comm)) return -1;
    int64_t total = 0;
    for (size_t v = 0; v < V; v++) total += x->uni[v];
    if (total > (int64_t)INT32_MAX)
        err = cl_error("%s has %lld substring occurrences with a follower; the scan's int32 counts hold at most "
                       "%d (a corpus of at most 2^31 - 1 characters): scan a part of the corpus",
                       x->o->corpus_path, (long long)total, INT32_MAX);
    return cl_par_agree(err, x->comm);
}

/* The rows and counts of this rank's shards (my_shards[0..n_mine)) from
 * the corpus file; every row of them checked, and their order. Collective. */
static int corpus_shards(scan_ctx *x) {
    int err = cl_corpus_read_shards(x->cp, x->my_shards, x->n_mine, x->S, &x->part) ? 1 : 0;
    if (!err && !(x->shard_at = cl_trymalloc(x->n_shards ? x->n_shards : 1, sizeof *x->shard_at, "shard rows"))) err = 1;
    for (size_t j = 0; !err && j < x->n_shards; j++) x->shard_at[j] = -1;
    for (size_t i = 0; !err && i < x->n_mine; i++) x->shard_at[x->my_shards[i]] = (int64_t)x->part.shard_row[i];
    return cl_par_agree(err, x->comm);
}

/* The tokens of sorted position s0 + s of a shard held here. */
static inline const int32_t *shard_row(const scan_ctx *x, size_t shard, size_t s) {
    return x->part.tokens + ((size_t)x->shard_at[shard] + s) * (size_t)x->cp->L;
}

/* The prompt rows psel[0..nsel) of a trie forward: their hooked vectors
 * from out [Lh, S, C] (raw), their lens and model probabilities from
 * x->pres, into every prompt of their substring (pp from pj[k] on). The
 * csr layout keeps neither the [P, n_layer, V] lens nor the [P, V] model
 * probabilities: what needs their dense rows is computed here, from the
 * same rows as the dense layout's reduce would use: each block's lens H to
 * the model (the last block's lens; x->lensh) and the unigram's H (x->unih).
 * The model's row on each prompt's support comes at write time
 * (scan_prompt_probs: the same forward again, the same bits). */
static void take_prompts(scan_ctx *x, const float *out, size_t S, size_t nsel) {
    const size_t P = x->cp->n_prompts, C = x->m->cfg.n_embd, V = x->cp->V, NL = x->m->cfg.n_layer, Lh = x->Lh;
    for (size_t k0 = 0; k0 < nsel; k0 += x->plg_rows) { /* the logits of plg_rows prompt rows at a time */
        size_t kn = nsel - k0 < x->plg_rows ? nsel - k0 : x->plg_rows;
        cl_unembed(x->m, x->pres + k0 * NL * C, kn * NL, x->plg);
        softmax_forward(x->plg, kn * NL, (int)V);
        for (size_t k = k0; k < k0 + kn; k++) {
            const float *lg = x->plg + (k - k0) * NL * V, *mp = lg + (NL - 1) * V;
            double *hl = x->csr ? x->hrow + V : NULL;
            for (size_t l = 0; x->csr && l < NL; l++) {
                for (size_t v = 0; v < V; v++) x->hrow[v] = lg[l * V + v];
                hl[l] = cl_hellinger_df(x->hrow, mp, V);
            }
            double uh = x->csr ? cl_hellinger_df(x->unid, mp, V) : 0;
            size_t q = ppos(x, x->pj[k]);
            for (size_t j = x->pj[k]; j < P && ppos(x, j) == q; j++) {
                size_t p = (size_t)x->pp[j];
                for (size_t h = 0; h < Lh; h++)
                    memcpy(x->pvec + (h * P + p) * C, out + (h * S + (size_t)x->psel[k]) * C, C * sizeof(float));
                if (x->csr) {
                    x->unih[p] = uh;
                    memcpy(x->lensh + p * NL, hl, NL * sizeof(double));
                } else {
                    memcpy(x->lens + p * NL * V, lg, NL * V * sizeof(float));
                }
            }
        }
    }
    x->flops_prompts += (double)nsel * NL * 2.0 * C * V;
}

/* Forward shard `shard` (sorted positions s0 ..) into sv [Lh, S, C],
 * normalised; with cap, the prompts in it take their rows first. */
static int shard_forward(scan_ctx *x, size_t shard, float *sv, int cap) {
    const cl_corpus *cp = x->cp;
    const size_t C = x->m->cfg.n_embd, Lh = x->Lh, P = cp->n_prompts;
    const int L = cp->L;
    size_t s0 = shard * x->S, S = cp->n - s0 < x->S ? cp->n - s0 : x->S;
    double ta = scan_cpu_now();
    memcpy(x->stok, shard_row(x, shard, 0), S * L * sizeof(int32_t));
    size_t nsel = 0;
    if (cap) { /* the distinct prompt positions in [s0, s0 + S) */
        size_t lo = 0, hi = P;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ppos(x, mid) < s0) lo = mid + 1;
            else hi = mid;
        }
        for (size_t j = lo; j < P && ppos(x, j) < s0 + S; j++)
            if (j == lo || ppos(x, j) != ppos(x, j - 1)) x->psel[nsel] = (int32_t)(ppos(x, j) - s0), x->pj[nsel++] = j;
    }
    size_t M = 0;
    if (cl_trie_fwd_run_res(x->tf, x->stok, S, x->point, x->lo, x->hi, sv, x->psel, nsel, nsel ? x->pres : NULL, &M))
        return -1;
    x->n_nodes += M;
    double Cd = (double)C;
    /* every node through the blocks before the last needed one; in that one,
       ln1 + qkv + attention for every node, proj + MLP for the leaves only */
    if (x->point == CL_HOOK_RESID_PRE) x->flops_forward += (double)M * x->hi * 24.0 * Cd * Cd;
    else x->flops_forward += (double)M * (x->hi + 1) * 24.0 * Cd * Cd - (double)(M - S) * 18.0 * Cd * Cd;
    if (nsel) take_prompts(x, sv, S, nsel);
    for (size_t h = 0; h < Lh; h++) l2normalize_rows(sv + h * S * C, S, (int)C);
    x->t_forward += scan_cpu_now() - ta;
    return 0;
}

typedef struct {
    int64_t pos, p;
} pos_prompt;

static int cmp_pos_prompt(const void *a, const void *b) {
    const pos_prompt *u = a, *v = b;
    if (u->pos != v->pos) return u->pos < v->pos ? -1 : 1;
    return u->p < v->p ? -1 : u->p > v->p;
}

/* The tokens of the prompt at place j of pp. */
static inline const int32_t *prompt_tok(const scan_ctx *x, size_t j) {
    return x->cp->prompt_tokens + (size_t)x->pp[j] * (size_t)x->cp->L;
}

/* Nodes of the trie of the sorted distinct prompt rows at places first[i]
 * of pp: what cl_trie_fwd_run builds for them in one piece. */
static size_t trie_nodes(const scan_ctx *x, const size_t *first, size_t n) {
    const int L = x->cp->L;
    size_t M = 0;
    for (size_t i = 0; i < n; i++) {
        int lcp = 0;
        if (i > 0) {
            const int32_t *a = prompt_tok(x, first[i - 1]), *b = prompt_tok(x, first[i]);
            while (lcp < L - 1 && a[lcp] == b[lcp]) lcp++;
        }
        M += (size_t)(L - lcp);
    }
    return M;
}

/* The prompts that no kept shard holds (taken[p] == 0 on every rank):
 * their distinct substrings in sorted order, a contiguous share per rank,
 * through the trie forward in pieces of at most S. Local. */
static int prompt_trie(scan_ctx *x, const unsigned char *taken) {
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, C = x->m->cfg.n_embd, NL = x->m->cfg.n_layer;
    const int L = cp->L;
    size_t n = 0;
    size_t *first = cl_trymalloc(P ? P : 1, sizeof *first, "prompt trie"), *pos = NULL;
    if (!first || !(pos = cl_trymalloc(P ? P : 1, sizeof *pos, "prompt trie"))) {
        free(first);
        return -1;
    }
    for (size_t j = 0; j < P; j++)
        if (!taken[x->pp[j]] && (j == 0 || ppos(x, j) != ppos(x, j - 1))) first[n] = j, pos[n++] = ppos(x, j);
    /* the work, the same on every rank: one trie of them all, every node
       through every block, the leaves alone in the last */
    double M = (double)trie_nodes(x, first, n), Cd = (double)C;
    x->n_prompt_nodes = (size_t)M;
    if (x->rank == 0) x->flops_prompts += M * NL * 24.0 * Cd * Cd - (M - (double)n) * 18.0 * Cd * Cd;
    size_t a = n * (size_t)x->rank / (size_t)x->R, b = n * ((size_t)x->rank + 1) / (size_t)x->R;
    int err = 0;
    for (size_t i0 = a; i0 < b && !err; i0 += x->S) {
        size_t ns = b - i0 < x->S ? b - i0 : x->S;
        for (size_t k = 0; k < ns; k++) {
            memcpy(x->stok + k * L, prompt_tok(x, first[i0 + k]), L * sizeof(int32_t));
            x->psel[k] = (int32_t)k, x->pj[k] = first[i0 + k];
        }
        if (cl_trie_fwd_run_res(x->tf, x->stok, ns, x->point, x->lo, x->hi, x->svec, x->psel, ns, x->pres, NULL))
            err = 1;
        else take_prompts(x, x->svec, ns, ns);
    }
    free(first), free(pos);
    return err ? -1 : 0;
}

/* Shards whose vectors this rank keeps for the shortcut, at most: 512 MiB
 * of them (the 40,000-character slice's 10 shards per rank fit: 189 MB; of
 * the full paper scan's ~210 shards per rank, 27, so ~13 % of its prompts
 * take the shortcut, the others the prompt trie); the peak RSS grows by as
 * much. CORPUSLENS_SCAN_KEEP_SHARDS=n sets it (0: none, every prompt
 * through the prompt trie; tests compare the two). */
static int keep_max(size_t slot, size_t *n) {
    const char *e = getenv("CORPUSLENS_SCAN_KEEP_SHARDS");
    *n = ((size_t)512 << 20) / slot;
    if (e && *e) {
        char *end;
        errno = 0;
        long v = strtol(e, &end, 10);
        if (*end || errno || v < 0)
            return cl_error("CORPUSLENS_SCAN_KEEP_SHARDS=%s: expected an integer >= 0 (shards kept per rank)", e);
        *n = (size_t)v;
    }
    return 0;
}

/* Prompt rows whose lens logits (n_layer x V floats each) take_prompts
 * holds at once: as many as 64 MiB hold, at least 1, at most S (a shard's
 * or a prompt-trie piece's rows). Before, it held S of them: at GPT-2's
 * shapes (12 x 50257, S = 2048) a 4.9 GB buffer per rank, whatever P.
 * CORPUSLENS_SCAN_LENS_ROWS=n sets it (tests: the lens does not depend on
 * it). */
static int lens_rows(size_t NL, size_t V, size_t S, size_t *n) {
    const char *e = getenv("CORPUSLENS_SCAN_LENS_ROWS");
    size_t row = NL * V * sizeof(float);
    *n = ((size_t)64 << 20) / (row ? row : 1);
    if (e && *e) {
        char *end;
        errno = 0;
        long v = strtol(e, &end, 10);
        if (*end || errno || v < 1)
            return cl_error("CORPUSLENS_SCAN_LENS_ROWS=%s: expected an integer >= 1 (prompt rows per lens chunk)", e);
        *n = (size_t)v;
    }
    if (*n < 1) *n = 1;
    if (*n > S) *n = S;
    return 0;
}

static int prompt_vectors(scan_ctx *x) {
    const cl_config *c = &x->m->cfg;
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, C = c->n_embd, V = c->vocab_size, NL = c->n_layer, Lh = x->Lh, S = x->S;
    int err = 0;
    unsigned char *taken = NULL, *all = NULL;
    pos_prompt *pq = NULL;
    x->pvec = calloc_huge(Lh * P * C, sizeof(float), "prompt vectors");
    if (x->csr) { /* the lens and the unigram as their H to the model only (take_prompts) */
        x->lensh = cl_trycalloc(P * NL, sizeof(double), "lens hellinger");
        x->unih = cl_trycalloc(P, sizeof(double), "unigram hellinger");
        x->hrow = cl_trymalloc(V + NL, sizeof(double), "lens row");
        x->unid = cl_trymalloc(V, sizeof(double), "unigram");
        for (size_t v = 0; x->unid && v < V; v++) x->unid[v] = (double)x->uni[v];
    } else {
        x->probs = cl_trycalloc(P * V, sizeof(float), "model probabilities");
        x->lens = cl_trycalloc(P * NL * V, sizeof(float), "logit lens");
    }
    x->pp = cl_trymalloc(P, sizeof *x->pp, "prompt order");
    x->psel = cl_trymalloc(S, sizeof *x->psel, "prompt rows");
    x->pj = cl_trymalloc(S, sizeof *x->pj, "prompt rows");
    x->pres = cl_trymalloc(S * NL * C, sizeof(float), "prompt residuals");
    if (lens_rows(NL, V, S, &x->plg_rows)) err = 1;
    else x->plg = cl_trymalloc(x->plg_rows * NL * V, sizeof(float), "prompt lens logits");
    x->keep_slot = cl_trymalloc(x->n_shards, sizeof *x->keep_slot, "kept shards");
    taken = cl_trycalloc(P, 1, "prompt sources");
    all = cl_trycalloc(P, 1, "prompt sources");
    pq = cl_trymalloc(P, sizeof *pq, "prompt order");
    if (!x->pvec || (x->csr ? !x->lensh || !x->unih || !x->hrow || !x->unid : !x->probs || !x->lens) || !x->pp ||
        !x->psel || !x->pj || !x->pres || !x->plg || !x->keep_slot || !taken || !all || !pq)
        err = 1;
    if (!err) {
        for (size_t p = 0; p < P; p++) pq[p].pos = cp->prompt_sorted_pos[p], pq[p].p = (int64_t)p;
        qsort(pq, P, sizeof *pq, cmp_pos_prompt);
        for (size_t j = 0; j < P; j++) x->pp[j] = pq[j].p;
        for (size_t i = 0; i < x->n_shards; i++) x->keep_slot[i] = -1;
        /* the shortcut: the shard forward reaches every block only when the
           hook's last block is the model's last, after its MLP */
        size_t slot = Lh * S * C * sizeof(float), left = x->mine > x->done ? x->mine - x->done : 0, nk = 0;
        if (keep_max(slot, &nk)) err = 1, nk = 0;
        if (!(x->hi == c->n_layer - 1 && (x->point == CL_HOOK_MLP_OUT || x->point == CL_HOOK_RESID_POST))) nk = 0;
        if (nk > left) nk = left;
        if (nk && !(x->keep = calloc_huge(nk * Lh * S, C * sizeof(float), "kept shard vectors"))) nk = 0;
        x->nkeep = nk;
        for (size_t k = 0; k < x->nkeep; k++) x->keep_slot[shard_of(x, x->done + k)] = (int32_t)k;
    }
    /* the kept shards, forwarded now: their prompts take their rows. Their
       nodes and flops count when do_shard scans them, so that a run killed
       after keeping them and resumed counts each scanned shard once (the
       file's n_trie_nodes and flops do not depend on how the run went) */
    if (!err && x->nkeep && (!(x->keep_nodes = cl_trymalloc(x->nkeep, sizeof *x->keep_nodes, "kept shards")) ||
                             !(x->keep_flops = cl_trymalloc(x->nkeep, sizeof *x->keep_flops, "kept shards"))))
        err = 1;
    for (size_t k = 0; !err && k < x->nkeep; k++) {
        size_t n0 = x->n_nodes;
        double f0 = x->flops_forward;
        if (shard_forward(x, shard_of(x, x->done + k), x->keep + k * Lh * S * C, 1)) err = 1;
        x->keep_nodes[k] = x->n_nodes - n0, x->keep_flops[k] = x->flops_forward - f0;
        x->n_nodes = n0, x->flops_forward = f0;
    }
    if (cl_par_agree(err, x->comm)) goto out;
    for (size_t p = 0; p < P; p++) {
        size_t sh = (size_t)cp->prompt_sorted_pos[p] / S;
        taken[p] = x->keep_slot[sh] >= 0;
    }
    int64_t nt = 0;
    for (size_t p = 0; p < P; p++) nt += taken[p];
    if (cl_par_allreduce(taken, all, (int)P, MPI_UNSIGNED_CHAR, MPI_MAX, x->comm) != MPI_SUCCESS ||
        cl_par_allreduce(&nt, &x->n_from_trie, 1, MPI_INT64_T, MPI_SUM, x->comm) != MPI_SUCCESS)
        err = cl_error("MPI_Allreduce failed");
    if (!err && prompt_trie(x, all)) err = 1;
    if (cl_par_agree(err, x->comm)) goto out;
    /* each prompt's rows were filled on one rank, zeros elsewhere: the sums are exact */
    if (scan_allreduce(x->pvec, Lh * P * C, MPI_FLOAT, sizeof(float), x->comm) ||
        (x->csr ? scan_allreduce(x->unih, P, MPI_DOUBLE, sizeof(double), x->comm) ||
                      scan_allreduce(x->lensh, P * NL, MPI_DOUBLE, sizeof(double), x->comm)
                : scan_allreduce(x->lens, P * NL * V, MPI_FLOAT, sizeof(float), x->comm))) {
        err = 1;
        goto out;
    }
    /* the model's probabilities: the lens of the last block (the same final
       LayerNorm and head on the same residual) */
    for (size_t p = 0; !x->csr && p < P; p++) memcpy(x->probs + p * V, x->lens + (p * NL + NL - 1) * V, V * sizeof(float));
    double fl = x->flops_prompts;
    cl_par_allreduce(&fl, &x->flops_prompts, 1, MPI_DOUBLE, MPI_SUM, x->comm);
    for (size_t h = 0; h < Lh; h++) l2normalize_rows(x->pvec + h * P * C, P, (int)C);
out:
    free(taken), free(all), free(pq);
    free(x->pres), free(x->plg), free(x->hrow), free(x->unid);
    x->pres = x->plg = NULL, x->hrow = x->unid = NULL;
    return err ? -1 : 0;
}

/* The model's probabilities of every prompt again (csr, rank 0, at write
 * time; local): the distinct prompt substrings in sorted order through the
 * trie forward in pieces of at most S, unembedded plg_rows rows of all
 * n_layer blocks at a time as take_prompts does, so that each row has the
 * bits it had there (a node's values depend on its prefix only, and a row's
 * logits not on the rows beside it: CORPUSLENS_SCAN_LENS_ROWS and the rank
 * count do not change the file). fn(user, p, q) for every prompt p, q [V]
 * its probabilities. Memory: one piece's residuals and plg_rows rows of
 * logits, not [P, V]. 0 or -1. */
int scan_prompt_probs(scan_ctx *x, int (*fn)(void *user, size_t p, const float *q), void *user) {
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, C = x->m->cfg.n_embd, V = cp->V, NL = x->m->cfg.n_layer;
    const int L = cp->L;
    size_t n = 0, rows = 0;
    if (lens_rows(NL, V, x->S, &rows)) return -1;
    size_t *first = cl_trymalloc(P ? P : 1, sizeof *first, "prompt probabilities");
    float *pres = cl_trymalloc(x->S * NL * C, sizeof *pres, "prompt residuals");
    float *plg = cl_trymalloc(rows * NL * V, sizeof *plg, "prompt logits");
    int err = !first || !pres || !plg;
    for (size_t j = 0; !err && j < P; j++)
        if (j == 0 || ppos(x, j) != ppos(x, j - 1)) first[n++] = j;
    for (size_t i0 = 0; !err && i0 < n; i0 += x->S) {
        size_t ns = n - i0 < x->S ? n - i0 : x->S;
        for (size_t k = 0; k < ns; k++) {
            memcpy(x->stok + k * L, prompt_tok(x, first[i0 + k]), L * sizeof(int32_t));
            x->psel[k] = (int32_t)k;
        }
        if (cl_trie_fwd_run_res(x->tf, x->stok, ns, x->point, x->lo, x->hi, x->svec, x->psel, ns, pres, NULL)) {
            err = 1;
            break;
        }
        for (size_t k0 = 0; !err && k0 < ns; k0 += rows) {
            size_t kn = ns - k0 < rows ? ns - k0 : rows;
            cl_unembed(x->m, pres + k0 * NL * C, kn * NL, plg);
            softmax_forward(plg, kn * NL, (int)V);
            for (size_t k = k0; !err && k < k0 + kn; k++) {
                const float *q = plg + ((k - k0) * NL + NL - 1) * V;
                size_t j0 = first[i0 + k], pos = ppos(x, j0);
                for (size_t j = j0; !err && j < P && ppos(x, j) == pos; j++)
                    if (fn(user, (size_t)x->pp[j], q)) err = 1;
            }
        }
    }
    free(first), free(pres), free(plg);
    return err ? -1 : 0;
}

/* ---- one shard ---- */

/* The cells of one (prompt, block) that its pairs update. */
typedef struct {
    int32_t *counts;   /* [NB, V] */
    int64_t *nmatch;   /* [NB] */
    scan_mlist *list;
    float thr;         /* the block's match threshold, rounded down (thr_lo) */
} pair_row;

static inline pair_row row_of(scan_ctx *x, size_t p, size_t h) {
    size_t pb = p * x->Lh + h;
    pair_row r = {x->counts + pb * x->NB * x->cp->V, x->nmatch + pb * x->NB, &x->lists[pb], x->thr_lo[h]};
    return r;
}

#if defined(__GNUC__)
#define PREFETCH_W(a) __builtin_prefetch((a), 1)
#else
#define PREFETCH_W(a) ((void)(a))
#endif

/* The pairs of prompt p in block h: sorted positions s0 + pos[j] with
 * similarities val[j] (2.0f: the self pair). Those above the prefilter are
 * counted, binned, and listed as matches above the block's threshold. Two
 * passes: first the bins, with a prefetch of every count cell the pairs will
 * add to, then the adds. The [P, Lh, NB, V] counts are far larger than the
 * caches and a row's cells are far apart, so without the prefetches nearly
 * every add waits for memory on its own. kb: scratch [n]; val is changed. */
static int take_row(scan_ctx *x, size_t p, size_t h, size_t s0, const int32_t *pos, float *val, int32_t *kb, int n) {
    const pair_row r = row_of(x, p, h);
    const size_t V = x->cp->V;
    const int32_t *tok = x->loc_tok, *cnt = x->loc_cnt, *ptr = x->loc_ptr;
    for (int j = 0; j < n; j++) {
        float v = val[j];
        int k = -1;
        if (v > x->pf_lo) {
            if (v == 2.0f) val[j] = 1.0f, k = x->NB - 1;
            else k = bin_of(x, v);
            const int32_t *crow = r.counts + (size_t)k * V;
            for (int32_t e = ptr[pos[j]], e1 = ptr[pos[j] + 1]; e < e1; e++) PREFETCH_W(crow + tok[e]);
            PREFETCH_W(r.nmatch + k);
        }
        kb[j] = k;
    }
    for (int j = 0; j < n; j++) {
        const int k = kb[j];
        if (k < 0) continue;
        int32_t *crow = r.counts + (size_t)k * V;
        for (int32_t e = ptr[pos[j]], e1 = ptr[pos[j] + 1]; e < e1; e++) crow[tok[e]] += cnt[e];
        r.nmatch[k]++;
        x->n_pairs++;
        if (val[j] > r.thr && scan_mlist_add(r.list, val[j], (int32_t)x->sh_id[pos[j]], x->o->match_cap))
            return -1;
    }
    return 0;
}

/* take_row for the csr layout: the same pairs, bins, matches and n_pairs,
 * each pair's next-token entries appended to its (prompt, block, bin) row
 * (scan_srow, scan_sparse.c) instead of added into [V] cells. */
static int take_row_sparse(scan_ctx *x, size_t p, size_t h, size_t s0, const int32_t *pos, float *val, int n) {
    const size_t pb = p * x->Lh + h;
    scan_srow *rows = x->srows + pb * x->NB;
    int64_t *nmatch = x->nmatch + pb * x->NB;
    scan_mlist *list = &x->lists[pb];
    const float thr = x->thr_lo[h];
    const int32_t *tok = x->loc_tok, *cnt = x->loc_cnt, *ptr = x->loc_ptr;
    for (int j = 0; j < n; j++) {
        float v = val[j];
        if (!(v > x->pf_lo)) continue;
        int k;
        if (v == 2.0f) val[j] = 1.0f, k = x->NB - 1;
        else k = bin_of(x, v);
        int32_t e0 = ptr[pos[j]], e1 = ptr[pos[j] + 1];
        if (scan_srow_add(x, &rows[k], tok + e0, cnt + e0, (size_t)(e1 - e0))) return -1;
        nmatch[k]++;
        x->n_pairs++;
        if (val[j] > thr && scan_mlist_add(list, val[j], (int32_t)x->sh_id[pos[j]], x->o->match_cap))
            return -1;
    }
    return 0;
}

/* The selection over a tile of similarities: rows p0 .. p0 + np - 1 of
 * block h against the shard's S sorted positions from s0, row i at
 * x->sims + i ld; the self pair is marked 2.0f here. Most of a row is below the
 * prefilter: 16 compared at once. */
static int select_tile(scan_ctx *x, size_t h, size_t p0, size_t np, size_t s0, size_t S, size_t ld) {
    const float pf = x->pf_lo;
    for (size_t i = 0; i < np; i++) {
        size_t p = p0 + i;
        float *row = x->sims + i * ld;
        size_t self = (size_t)x->cp->prompt_sorted_pos[p];
        if (self >= s0 && self < s0 + S) row[self - s0] = 2.0f; /* sentinel: the self pair */
        int n = 0;
        size_t s = 0;
        for (; s + 16 <= S; s += 16)
            for (unsigned mk = scan_above16_mask(row + s, pf); mk; mk &= mk - 1) {
                size_t q = s + (size_t)scan_ctz(mk);
                x->row_pos[n] = (int32_t)q, x->row_val[n++] = row[q];
            }
        for (; s < S; s++)
            if (row[s] > pf) x->row_pos[n] = (int32_t)s, x->row_val[n++] = row[s];
        if (x->csr ? take_row_sparse(x, p, h, s0, x->row_pos, x->row_val, n)
                   : take_row(x, p, h, s0, x->row_pos, x->row_val, x->row_k, n))
            return -1;
    }
    return 0;
}

/* Substring rows per candidate block: [PRUNE_SBLOCK, C] floats stay in L2. */
#define PRUNE_SBLOCK 128

/* The similarity search with the pruning bound (scan_prune.c): one sgemm of
 * K = r + 1 gives every pair's bound in a tile that stays in cache; only the
 * candidates (bound > prefilter - SCAN_PRUNE_MARGIN, and the self pair) get
 * their exact dot product, eight at a time. svec is normalised; tb: the clock
 * at entry. */
__attribute__((noinline)) static int shard_pruned(scan_ctx *x, size_t s0, size_t S, double tb) {
    const cl_corpus *cp = x->cp;
    const size_t C = x->m->cfg.n_embd, P = cp->n_prompts, Lh = x->Lh;
    const int r = x->prune_r, K = r + 1;
    const float cut = (float)x->o->prefilter - SCAN_PRUNE_MARGIN;
    const scan_dot8_fn dot8 = scan_dot8_pick();
    const size_t PT = x->prune_ptile;
    /* the tile's rows S + 16 floats apart: the column blocks read
       [PT, PRUNE_SBLOCK] pieces of them, which with S a multiple of 1024
       (the default 2048) would otherwise fall into the same few cache sets */
    const size_t ld = S + 16;
    int32_t ci[PRUNE_SBLOCK];
    float cv[8];
    for (size_t h = 0; h < Lh; h++) {
        const float *sv = x->svec + h * S * C;
        scan_prune_project(x->prune_U + h * r * C, r, sv, S, (int)C, x->sproj, x->prune_tmp);
        x->flops_cosine += 4.0 * S * C * r;
        for (size_t p0 = 0; p0 < P; p0 += PT) {
            size_t np = P - p0 < PT ? P - p0 : PT;
            cl_sgemm_nt(np, S, (size_t)K, x->pproj + (h * P + p0) * K, (size_t)K, x->sproj, (size_t)K, x->sims, ld, 0);
            x->flops_cosine += 2.0 * np * S * K;
            double tc = scan_cpu_now();
            x->t_sgemm += tc - tb;
            int64_t cand = 0;
            /* candidates by column blocks: PRUNE_SBLOCK substring rows and the
               tile's prompt rows stay in L2 for their dot products (huge
               pages for svec and pvec: no TLB miss per row) */
            for (size_t sb = 0; sb < S; sb += PRUNE_SBLOCK) {
                size_t se = S - sb < PRUNE_SBLOCK ? S : sb + PRUNE_SBLOCK;
                for (size_t i = 0; i < np; i++) {
                    size_t p = p0 + i;
                    float *row = x->sims + i * ld;
                    const float *pv = x->pvec + (h * P + p) * C;
                    /* the row's candidates in this block, 16 bounds per compare */
                    int nc = 0;
                    size_t s = sb;
                    for (; s + 16 <= se; s += 16)
                        for (unsigned mk = scan_above16_mask(row + s, cut); mk; mk &= mk - 1)
                            ci[nc++] = (int32_t)(s + (size_t)scan_ctz(mk));
                    for (; s < se; s++)
                        if (row[s] > cut) ci[nc++] = (int32_t)s;
                    if (!nc) continue;
                    /* their dot products eight at a time (the last group
                       padded with the last candidate), written over their
                       bounds; the pruned pairs keep bounds below the prefilter */
                    for (int q = 0; q < nc; q += 8) {
                        const float *b8[8];
                        for (int u = 0; u < 8; u++) b8[u] = sv + (size_t)ci[q + u < nc ? q + u : nc - 1] * C;
                        dot8(pv, b8, (int)C, cv);
                        for (int u = 0; u < 8 && q + u < nc; u++) row[ci[q + u]] = cv[u];
                    }
                    cand += nc;
                }
            }
            /* the self pair is a candidate too (select_tile marks it) */
            if (select_tile(x, h, p0, np, s0, S, ld)) return -1;
            x->flops_cosine += 2.0 * cand * C;
            x->n_cand[h] += cand;
            x->n_tested[h] += (int64_t)(np * S);
            tb = scan_cpu_now();
            x->t_select += tb - tc;
        }
    }
    return 0;
}

/* The brute-force similarity search (CORPUSLENS_SCAN_PRUNE_RANK=0): the
 * sgemm of every pair, then a pass over the tile. */
__attribute__((noinline)) static int shard_brute(scan_ctx *x, size_t s0, size_t S, double tb) {
    const cl_corpus *cp = x->cp;
    const size_t C = x->m->cfg.n_embd, P = cp->n_prompts, Lh = x->Lh;
    const double Cd = (double)C;
    for (size_t h = 0; h < Lh; h++) {
        const float *sv = x->svec + h * S * C;
        for (size_t p0 = 0; p0 < P; p0 += PTILE) {
            size_t np = P - p0 < PTILE ? P - p0 : PTILE;
            cl_sgemm_nt(np, S, C, x->pvec + (h * P + p0) * C, C, sv, C, x->sims, S, 0);
            x->flops_cosine += 2.0 * np * S * Cd;
            double tc = scan_cpu_now();
            x->t_sgemm += tc - tb;
            if (select_tile(x, h, p0, np, s0, S, S)) return -1;
            x->n_tested[h] += (int64_t)(np * S);
            x->n_cand[h] += (int64_t)(np * S);
            tb = scan_cpu_now();
            x->t_select += tb - tc;
        }
    }
    return 0;
}

static int do_shard(scan_ctx *x, size_t shard) {
    const cl_corpus *cp = x->cp;
    size_t s0 = shard * x->S, S = cp->n - s0 < x->S ? cp->n - s0 : x->S;
    const size_t r0 = (size_t)x->shard_at[shard];
    const int64_t *ip = x->part.indptr + r0;
    size_t nnz = (size_t)(ip[S] - ip[0]);
    x->sh_id = x->part.id + r0;
    if (nnz > (size_t)INT32_MAX) return cl_error("a shard has too many next-token entries (%zu)", nnz);
    if (nnz > x->loc_cap) {
        size_t cap = nnz + nnz / 2;
        int32_t *a = realloc(x->loc_tok, cap * sizeof *a), *b = a ? realloc(x->loc_cnt, cap * sizeof *b) : NULL;
        if (a) x->loc_tok = a;
        if (b) x->loc_cnt = b;
        if (!a || !b) return cl_error("out of memory for a shard's next-token lists (%zu entries)", cap);
        x->loc_cap = cap;
    }
    x->loc_ptr[0] = 0;
    memcpy(x->loc_tok, x->part.next_token + ip[0], nnz * sizeof *x->loc_tok);
    memcpy(x->loc_cnt, x->part.next_count + ip[0], nnz * sizeof *x->loc_cnt);
    for (size_t s = 0; s < S; s++) x->loc_ptr[s + 1] = (int32_t)(ip[s + 1] - ip[0]);
    /* the shard's vectors: kept from prompt_vectors, or forwarded now */
    float *own = x->svec;
    int32_t slot = x->keep_slot[shard];
    if (slot >= 0) {
        x->svec = x->keep + (size_t)slot * x->Lh * x->S * x->m->cfg.n_embd;
        x->n_nodes += x->keep_nodes[slot], x->flops_forward += x->keep_flops[slot];
    }
    else if (shard_forward(x, shard, x->svec, 0)) return -1;
    double tb = scan_cpu_now();
    /* --index-out: the same normalised vectors go to the index (this rank's i-th shard) */
    int rc = x->ixw && cl_index_writer_put(x->ixw, shard, x->svec, S) ? -1 : 0;
    if (!rc) rc = x->prune_r ? shard_pruned(x, s0, S, tb) : shard_brute(x, s0, S, tb);
    x->svec = own;
    return rc;
}

/* ---- --index-out: the index writer (index.c) fed by do_shard ---- */

static int scan_index_open(scan_ctx *x) {
    const cl_scan_opts *o = x->o;
    int err = 0;
    if (x->sampled || getenv("CORPUSLENS_SCAN_SAMPLE_SHARDS"))
        err = cl_error("--index-out needs a full scan (CORPUSLENS_SCAN_SAMPLE_SHARDS is set)");
    if (!err && !strcmp(o->index_out, o->out_path)) err = cl_error("--index-out must differ from -o");
    if (cl_par_agree(err, x->comm)) return -1; /* every rank has the failing rank's message */
    cl_index_meta meta = {.out_path = o->index_out, .model_path = o->model_path, .corpus_path = o->corpus_path,
                          .hook = o->hook, .model_sha = x->model_sha, .corpus_h5_sha = x->corpus_h5_sha,
                          .corpus_sha = x->cp->corpus_sha256, .dtype = (cl_index_dtype)o->index_dtype, .Lh = x->Lh,
                          .first_block = x->lo, .n_layer = x->m->cfg.n_layer, .C = x->m->cfg.n_embd, .L = x->cp->L,
                          .V = x->cp->V, .vocab = x->cp->vocab, .N = x->cp->n, .S = x->S, .n_shards = x->n_shards,
                          .perm = x->cp->sorted /* NULL: the writer reads /substrings/sorted */};
    /* the parts must hold the shards of the checkpoints this scan resumed from */
    unsigned char *held = cl_trymalloc(x->n_shards ? x->n_shards : 1, 1, "index shards");
    if (cl_par_agree(!held, x->comm)) return -1;
    x->ixw = cl_index_writer_open(&meta, x->rank, x->R, x->done_set, held, x->comm);
    free(held);
    return x->ixw ? 0 : -1;
}

/* ---- the pruning bound: rank, basis, projected prompts ---- */

/* CORPUSLENS_SCAN_PRUNE_RANK=r sets the rank of the bound (setup; 0, the
 * default: brute force, the sgemm of every pair; 31 or 47: K = 32 or 48). Every
 * rank computes the same basis from the same prompt vectors (the output does
 * not depend on it anyway). Collective only through combine. */
static int prune_setup(scan_ctx *x) {
    const size_t C = x->m->cfg.n_embd, P = x->cp->n_prompts;
    int r = x->prune_r, err = 0;
    if (r > 0) {
        size_t K = (size_t)r + 1;
        if (!(x->prune_U = cl_trymalloc((size_t)x->Lh * r * C, sizeof(float), "prune basis")) ||
            !(x->pproj = cl_trymalloc((size_t)x->Lh * P * K, sizeof(float), "projected prompts")) ||
            !(x->sproj = cl_trymalloc(x->S * K, sizeof(float), "projected substrings")) ||
            !(x->prune_tmp = cl_trymalloc((size_t)SCAN_PRUNE_CHUNK * C, sizeof(float), "prune scratch")))
            err = 1;
        for (int h = 0; !err && h < x->Lh; h++) {
            const float *pv = x->pvec + (size_t)h * P * C;
            float *U = x->prune_U + (size_t)h * r * C;
            if (scan_prune_basis(pv, P, (int)C, r, U)) err = 1;
            else scan_prune_project(U, r, pv, P, (int)C, x->pproj + (size_t)h * P * K, x->prune_tmp);
        }
    }
    return cl_par_agree(err, x->comm);
}

/* ---- the run ---- */

static void ctx_free(scan_ctx *x) {
    cl_trie_fwd_free(x->tf);
    cl_index_writer_abort(x->ixw); /* parts kept for a resume */
    if (x->lists) {
        for (size_t i = 0; i < x->cp->n_prompts * (size_t)x->Lh; i++) free(x->lists[i].a);
        free(x->lists);
    }
    free(x->prune_U), free(x->pproj), free(x->sproj), free(x->prune_tmp), free(x->loc_ptr), free(x->loc_tok), free(x->row_pos),
        free(x->row_k), free(x->row_val),
        free(x->loc_cnt);
    free(x->my_shards), free(x->done_set), free(x->covered), free(x->absorbed);
    free(x->keep), free(x->keep_slot), free(x->keep_nodes), free(x->keep_flops), free(x->pp), free(x->psel), free(x->pj), free(x->pres), free(x->plg);
    cl_corpus_part_free(&x->part), free(x->shard_at), free(x->uni);
    free(x->stok), free(x->svec), free(x->sims), free(x->pvec), free(x->probs),
        free(x->lens), free(x->lensh), free(x->unih), free(x->counts), free(x->nmatch), free(x->uptr), free(x->utok);
    if (x->cp) scan_srows_free(x);
    cl_corpus_free(x->cp);
    cl_model_free(x->m);
}

int cl_scan_run(const cl_scan_opts *o, MPI_Comm comm, cl_scan_result *res) {
    scan_ctx X, *x = &X;
    memset(x, 0, sizeof X);
    memset(res, 0, sizeof *res);
    x->o = o;
    x->comm = comm;
    cl_par_comm_rank(comm, &x->rank);
    cl_par_comm_size(comm, &x->R);
    double t0 = cl_wall_seconds();
    int err = setup(x) || cl_par_fault("scan.setup", comm) ? 1 : 0;
    int rc = -1, state_begun = 0;
    if (cl_par_agree(err, comm)) goto out;
    const cl_corpus *cp = x->cp;
    const size_t P = cp->n_prompts, N = cp->n, C = x->m->cfg.n_embd, V = cp->V;
    x->S = (size_t)o->shard_size;
    if (x->S > N) x->S = N;
    x->n_shards = (N + x->S - 1) / x->S;
    if (corpus_unigram(x)) goto out;
    err = 0;
    if (!err && (!(x->stok = cl_trymalloc(x->S * cp->L, sizeof(int32_t), "shard tokens")) ||
                 !(x->svec = calloc_huge((size_t)x->Lh * x->S * C, sizeof(float), "shard vectors")) ||
                 !(x->sims = calloc_huge((size_t)PTILE * (x->S + 16), sizeof(float), "similarity tile")) ||
                 !(x->loc_ptr = cl_trymalloc(x->S + 1, sizeof(int32_t), "shard next-token lists")) ||
                 !(x->row_pos = cl_trymalloc(x->S, sizeof(int32_t), "row pairs")) ||
                 !(x->row_k = cl_trymalloc(x->S, sizeof(int32_t), "row bins")) ||
                 !(x->row_val = cl_trymalloc(x->S, sizeof(float), "row similarities")) ||
                 (x->csr ? !(x->srows = cl_trycalloc(P * x->Lh * x->NB, sizeof(scan_srow), "sparse counts"))
                         : !(x->counts = calloc_huge(P * x->Lh * x->NB * V, sizeof(int32_t), "frequency counts"))) ||
                 !(x->nmatch = calloc_huge(P * x->Lh * x->NB, sizeof(int64_t), "match counts")) ||
                 !(x->lists = cl_trycalloc(P * x->Lh, sizeof(scan_mlist), "match lists")) ||
                 !(x->tf = cl_trie_fwd_create(x->m, cp->L, x->S))))
        err = 1;
    if (cl_par_agree(err, comm)) goto out;
    if (scan_state_begin(x)) goto out;
    state_begun = 1;
    if (o->index_out && scan_index_open(x)) goto out;
    /* The shards not in the checkpoints this run resumed from (done_set),
     * dealt round-robin over this run's ranks (cl_shard_plan): rank, rank +
     * R, ... on a fresh run. The plan comes first: the prompt side keeps the
     * vectors of the first shards this rank will scan (prompt_vectors). */
    /* Benchmarks: CORPUSLENS_SCAN_SAMPLE_SHARDS=K scans only K shards spread
     * evenly over the plan (shard j * n_shards / K); the output is marked
     * with the attribute sampled_shards and is not a full scan. */
    size_t plan = x->n_shards;
    const char *smp = getenv("CORPUSLENS_SCAN_SAMPLE_SHARDS");
    if (smp && atol(smp) > 0 && (size_t)atol(smp) < plan) plan = x->sampled = (size_t)atol(smp);
    size_t *univ = cl_trymalloc(plan ? plan : 1, sizeof *univ, "shard plan");
    err = !univ || !(x->my_shards = cl_trymalloc(plan ? plan : 1, sizeof *x->my_shards, "shard plan"));
    if (cl_par_agree(err, comm)) {
        free(univ);
        goto out;
    }
    size_t total = 0, prior = 0; /* prior: shards the resumed checkpoints hold */
    for (size_t j = 0; j < plan; j++) {
        univ[j] = x->sampled ? j * x->n_shards / x->sampled : j;
        if (!x->done_set[univ[j]]) total += N - univ[j] * x->S < x->S ? N - univ[j] * x->S : x->S;
        else prior++;
    }
    const size_t mine = x->n_mine = x->mine = cl_shard_plan(univ, plan, x->done_set, x->rank, x->R, x->my_shards);
    free(univ);
    if (corpus_shards(x)) goto out;
    /* the prompt side; the kept shards' forward counts as trie forward */
    double tp = scan_cpu_now(), tf0 = x->t_forward;
    if (prompt_vectors(x)) goto out;
    if (prune_setup(x)) goto out;
    x->t_prompts = scan_cpu_now() - tp - (x->t_forward - tf0);
    double tlast = cl_wall_seconds(), tstart = tlast, ck_wait = o->checkpoint_seconds;
    long new_done = 0;
    cl_par_stop stop;
    if (cl_par_agree(cl_par_stop_open(&stop, comm), comm)) goto out;
    err = 0;
    for (size_t i = 0; i < mine; i++) {
        if (cl_par_stop_poll(&stop)) { /* SIGINT / SIGTERM here or on another rank */
            x->stopped = 1;
            break;
        }
        size_t shard = shard_of(x, i);
        if (cl_par_fault("scan.shard", comm) || do_shard(x, shard)) {
            err = 1;
            break;
        }
        x->done = i + 1;
        x->covered[shard] = 1;
        new_done++;
        double now = cl_wall_seconds();
        if (x->rank == 0 && o->progress) {
            /* rank 0's share extrapolated to the job; counts this run's work only */
            size_t d = x->done * x->R * x->S;
            if (d > total) d = total;
            o->progress(o->progress_user, d, total, now - tstart);
        }
        if (o->stop_after_shards > 0 && new_done >= o->stop_after_shards && x->done < mine) {
            x->stopped = 1;
            break;
        }
        if (o->checkpoint_seconds > 0 && now - tlast > ck_wait && x->done < mine) {
            double tc = cl_wall_seconds();
            if ((x->ixw && cl_index_writer_sync(x->ixw)) || scan_state_save(x)) {
                err = 1;
                break;
            }
            tlast = cl_wall_seconds();
            if (o->checkpoint_share > 0 && o->checkpoint_share < 1) { /* bound the time spent in checkpoints */
                double w = (tlast - tc) * (1 / o->checkpoint_share - 1);
                ck_wait = w > o->checkpoint_seconds ? w : o->checkpoint_seconds;
            }
        }
    }
    int sig = cl_par_stop_close(&stop); /* collective: the same on every rank */
    if (cl_par_agree(err, comm)) goto out;
    int stopped = 0; /* not an error: stopped after K shards or by a signal */
    cl_par_allreduce(&x->stopped, &stopped, 1, MPI_INT, MPI_MAX, comm);
    if (stopped) { /* every rank saves what it finished, a rank done with its shards too */
        err = (x->ixw && cl_index_writer_sync(x->ixw)) || scan_state_save(x) ? 1 : 0;
        if (cl_par_agree(err, comm)) goto out;
        long long dn = (long long)x->done, tot = 0;
        cl_par_allreduce(&dn, &tot, 1, MPI_LONG_LONG, MPI_SUM, comm);
        tot += (long long)prior;
        res->stopped = 1;
        res->interrupted = sig;
        res->shards_done = tot;
        res->n_shards = (long long)plan;
        rc = 0;
        goto out;
    }
    /* totals */
    int64_t pairs = x->n_pairs;
    cl_par_allreduce(&pairs, &res->n_pairs, 1, MPI_INT64_T, MPI_SUM, comm);
    double fl[3] = {x->flops_forward, x->flops_cosine, (double)x->n_nodes}, g[3];
    cl_par_allreduce(fl, g, 3, MPI_DOUBLE, MPI_SUM, comm);
    res->forward_flops = g[0] + x->flops_prompts;
    res->cosine_flops = g[1];
    res->flops = res->forward_flops + res->cosine_flops;
    res->corpus_flops = g[0] + g[1];
    res->n_nodes = (size_t)g[2];
    res->n_prompts = (int64_t)P;
    res->n_prompts_forwarded = x->n_from_trie;
    res->n_prompt_nodes = x->n_prompt_nodes;
    cl_par_allreduce(x->n_cand, res->n_candidates, x->Lh, MPI_INT64_T, MPI_SUM, comm);
    cl_par_allreduce(x->n_tested, res->n_tested, x->Lh, MPI_INT64_T, MPI_SUM, comm);
    res->prune_rank = x->prune_r;
    res->n_blocks = x->Lh;
    double tt[4] = {x->t_forward, x->t_sgemm, x->t_select, x->t_prompts};
    cl_par_reduce(x->rank ? tt : MPI_IN_PLACE, tt, 4, MPI_DOUBLE, MPI_MAX, 0, comm);
    res->t_forward = tt[0], res->t_sgemm = tt[1], res->t_select = tt[2], res->t_prompts = tt[3];
    res->wall_seconds = cl_wall_seconds() - t0;
    double tw = cl_wall_seconds();
    if (scan_write(x, res)) goto out;
    if (x->ixw) {
        cl_index_writer *w = x->ixw;
        x->ixw = NULL;
        if (cl_index_writer_finish(w, 1, NULL, comm)) goto out;
    }
    if (x->rank == 0) scan_state_remove(x);
    res->t_write = cl_wall_seconds() - tw;
    res->wall_seconds = cl_wall_seconds() - t0;
    rc = 0;
out:
    if (rc == 0 && getenv("CORPUSLENS_CORPUS_STATS")) { /* tests: what each rank read of the corpus */
        unsigned long long rows = 0, ents = 0, chunks = 0, bytes = 0;
        cl_corpus_io_stats(&rows, &ents);
        cl_h5_io_stats(&chunks, &bytes);
        fprintf(stderr, "corpuslens scan: rank %d of %d read %llu substring rows of %zu, %llu next-token entries of %zu; "
                "%llu chunks, %llu stored bytes\n", x->rank, x->R, rows, x->cp->n, ents, x->cp->nnz, chunks, bytes);
    }
    /* a failed run after the state was set up: keep rank checkpoints (and
     * say so), or remove the state this run began */
    if (rc && state_begun && x->rank == 0) scan_state_after_failure(x);
    ctx_free(x);
    return rc;
}

/* explain: the approximation of any prompt from an activation index.
 * Design: include/corpuslens/scan/explain.h. Dimensions: P prompts, Lh hooked
 * blocks, NL n_layer, V vocab, C channels, K top matches, RB rows per block
 * read, PT prompts per similarity tile. */
#include "corpuslens/base/clock.h"
#include "corpuslens/scan/explain.h"

#include <cblas.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DIRECT 1
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <math.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/par/par.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/gemm.h"
#include "corpuslens/nn/kernels.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/scan/sketch.h"
#include "scan/scan_internal.h"

#define RB_TARGET 8192
#define PT 512

typedef unsigned __int128 u128;

/* ---- few prompts against a memory-mapped float16 index (CORPUSLENS_INDEX_MMAP=1): one pass over the
 * mapped chunks, halves widened in registers (F16C) and multiplied into
 * float32 accumulators (FMA), so no row is copied. Used for P <= DIRECT_MAX
 * (chosen by P alone: the same path for any rank count). ---- */
#define DIRECT_MAX 8
#define SK_ROWS 16384 /* sketch rows read at a time */
#define SK_DOT 64     /* surviving rows multiplied at a time */
#if HAVE_DIRECT
static int cpu_direct(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    return have;
}

/* out[i * ld + s] = dot(h[s, :], pv[i, :]) for s < rows, i < P: the same
 * bits as the full path's cl_sgemm_nt on the widened rows (gemm.h), so a
 * prompt's similarities do not depend on P nor on the path. */
static void dot_f16(const uint16_t *h, size_t rows, size_t C, const float *pv, size_t P, float *out, size_t ld) {
    cl_sgemm_nt_f16(P, rows, C, pv, C, h, C, out, ld);
}

/* ---- exact dots of a tile of 8 float16 rows against many prompts ----
 * tile_widen8 widens rows[0..nr) (nr <= 8; the missing lanes are zero) into
 * T[c * 8 + r]; tile_dots then gives out[p * 8 + r] = dot(row r, qs[p]) with
 * lanes = rows: each lane is cl_sgemm_nt_f16's chain (gemm.h: one fused
 * multiply-add per element, over c in increasing order, from 0), so every
 * similarity has the bits of dot_f16 / explain of that prompt alone. Eight
 * prompts at a time keep eight independent chains in flight; a row is
 * widened once for all the prompts that need it, and nothing is gathered. */
__attribute__((target("avx2,f16c,fma"))) static void tile_widen8(const uint16_t *const *rows, size_t nr, size_t C,
                                                                 float *T) {
    for (size_t c = 0; c < C; c += 8) {
        __m256 v[8];
        for (size_t r = 0; r < 8; r++)
            v[r] = r < nr ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rows[r] + c))) : _mm256_setzero_ps();
        __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
        __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *o = T + c * 8;
        _mm256_storeu_ps(o + 0, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(o + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(o + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(o + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(o + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
}

#define TILE_DOTS(NP)                                                                                                  \
    do {                                                                                                               \
        __m256 acc[NP];                                                                                                \
        for (int j = 0; j < NP; j++) acc[j] = _mm256_setzero_ps();                                                     \
        for (size_t c = 0; c < C; c++) {                                                                               \
            const __m256 t = _mm256_loadu_ps(T + c * 8);                                                               \
            for (int j = 0; j < NP; j++) acc[j] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(qs[p + j] + c), acc[j]);     \
        }                                                                                                              \
        for (int j = 0; j < NP; j++) _mm256_storeu_ps(out + (p + j) * 8, acc[j]);                                      \
        p += NP;                                                                                                       \
    } while (0)

__attribute__((target("avx2,fma"))) static void tile_dots(const float *T, size_t C, const float *const *qs, size_t n,
                                                          float *out) {
    size_t p = 0;
    while (n - p >= 8) TILE_DOTS(8);
    if (n - p >= 4) TILE_DOTS(4);
    if (n - p >= 2) TILE_DOTS(2);
    if (n - p >= 1) TILE_DOTS(1);
}
#undef TILE_DOTS
#endif

/* Ranks agree through cl_par_agree (par.h): on failure every rank holds the
 * failing rank's own message. */

/* Rank and size of comm; 0 of 1 without MPI_Init (explain of a few prompts
 * started without mpirun runs without MPI: no collective is called then). */
static void rank_size(MPI_Comm comm, int *rank, int *R) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    if (up) MPI_Finalized(&down);
    *rank = 0, *R = 1;
    if (up && !down) MPI_Comm_rank(comm, rank), MPI_Comm_size(comm, R);
}

int cl_explain_params_paper(cl_explain_params *par, int Lh) {
    static const double t[6] = CL_PAPER_THRESHOLDS, w[6] = CL_PAPER_WEIGHTS;
    if (Lh != 6) return -1;
    par->Lh = 6;
    for (int b = 0; b < 6; b++) par->thresholds[b] = t[b], par->weights[b] = w[b];
    return 0;
}

void cl_explain_result_free(cl_explain_result *r) {
    if (!r) return;
    free(r->model_probs), free(r->lens), free(r->counts), free(r->n_matches), free(r->near), free(r->approx);
    free(r->hellinger), free(r->soft_approx), free(r->soft_hellinger), free(r->top_sub), free(r->top_sim);
    free(r->checked), free(r->pairs);
    free(r->cnt_indptr), free(r->cnt_token), free(r->cnt_count);
    free(r->sup_indptr), free(r->sup_token), free(r->sup_prob), free(r->mass), free(r->sup_approx), free(r->sup_soft);
    free(r->lens_h), free(r->lens_top_id), free(r->lens_top_p);
    free(r->ngram_sub), free(r->ngram_indptr), free(r->ngram_token), free(r->ngram_count), free(r->ngram_h);
    free(r);
}

/* a before b in a top list: the higher probability, then the lower id */
static inline int top_before(double x, int32_t i, double y, int32_t j) { return x > y || (x == y && i < j); }

/* insert (x, id) into the best-first list ids/xs of *n <= k entries */
static void top_put(int32_t *ids, double *xs, int *n, int k, double x, int32_t id) {
    /* NaN: never among the top (as the scan's support_one). Let in, it compares
       false with everything: it would stop every later insertion at its place
       and, once last in a full list, keep all others out */
    if (x != x) return;
    if (*n == k && !top_before(x, id, xs[k - 1], ids[k - 1])) return;
    int i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && top_before(x, id, xs[i - 1], ids[i - 1])) {
        xs[i] = xs[i - 1], ids[i] = ids[i - 1];
        i--;
    }
    xs[i] = x, ids[i] = id;
}

int cl_explain_top_sparse(const int32_t *tok, const float *pf, const double *pd, size_t n, int k, int32_t *idx,
                          double *val) {
    int got = 0;
    if (k > 64) k = 64;
    for (size_t j = 0; j < n && k > 0; j++) {
        double x = pf ? (double)pf[j] : pd[j];
        if (x > 0) top_put(idx, val, &got, k, x, tok[j]);
    }
    return got;
}

int cl_explain_sparse_results(const cl_model *m) {
    const char *ce = getenv("CORPUSLENS_EXPLAIN_COUNTS");
    return (m->bpe != NULL || m->cfg.vocab_size > CL_EXPLAIN_DENSE_MAX_V) && !(ce && !strcmp(ce, "dense"));
}

int64_t cl_explain_find(const cl_index *ix, const cl_corpus *cp, const int32_t *tok) {
    size_t lo = 0, hi = ix->N;
    const int L = cp->L;
    int32_t s[CL_CORPUS_MAX_LEN];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cl_corpus_row(cp, (size_t)ix->substring[mid], s)) return -2;
        int c = 0;
        for (int k = 0; k < L && !c; k++) c = s[k] < tok[k] ? -1 : s[k] > tok[k];
        if (c == 0) return ix->substring[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Top-K list of one (prompt, block): sorted by (sim desc, sub asc). */
static inline int before(float s1, int64_t u1, float s2, int64_t u2) { return s1 > s2 || (s1 == s2 && u1 < u2); }

static void top_insert(float *sim, int64_t *sub, int *n, int K, float s, int64_t u) {
    if (*n == K && !before(s, u, sim[K - 1], sub[K - 1])) return;
    int i = *n < K ? (*n)++ : K - 1;
    while (i > 0 && before(s, u, sim[i - 1], sub[i - 1])) {
        sim[i] = sim[i - 1], sub[i] = sub[i - 1];
        i--;
    }
    sim[i] = s, sub[i] = u;
}

static void u128_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    u128 *a = in, *b = inout;
    for (int i = 0; i < *len; i++) {
        u128 x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        y += x;
        memcpy(b + i, &y, sizeof y);
    }
}

/* A prompt in the order of the trie forward: its tokens, length and number. */
typedef struct {
    const int32_t *tok;
    size_t len, p;
} prompt_ref;

/* Lexicographic by token ids (a prefix before the strings it begins), then
 * by prompt number: a total order, so the result is the same in every run. */
static int cmp_prompt_ref(const void *a, const void *b) {
    const prompt_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    for (size_t k = 0; k < n; k++)
        if (x->tok[k] != y->tok[k]) return x->tok[k] < y->tok[k] ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* Sparse counts (a large V: GPT-2 BPE): instead of adding a matched
 * substring's next-token counts into a dense [V] row per (prompt, block),
 * the search records the pair (pb, substring) (and, for the soft kernel, its
 * weight q); after the search rank 0 gathers every rank's pairs and sums the
 * counts of each (prompt, block) over the union of the tokens present
 * (sparse_rows). Memory follows the matches (8 bytes a hard match; pb <
 * P Lh <= 6.4e7 fits 32 bits), not V. */
typedef struct {
    uint64_t key; /* pb << 32 | substring: sorting keys sorts by (pb, substring) */
    u128 q;       /* the soft kernel's weight */
} match_rec;

/* records of elem bytes, each starting with its uint64_t key: a hard match is
 * the key alone (8 bytes), a soft one a match_rec */
typedef struct {
    unsigned char *a;
    size_t n, cap, elem;
    int err;
} match_list;

static void ml_push(match_list *l, size_t pb, int64_t sub, u128 q) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 4096;
        unsigned char *t = l->err ? NULL : realloc(l->a, nc * l->elem);
        if (!t) {
            if (!l->err) cl_error("out of memory for the matches (%zu)", nc);
            l->err = 1;
            return;
        }
        l->a = t, l->cap = nc;
    }
    uint64_t key = (uint64_t)pb << 32 | (uint32_t)sub;
    if (l->elem == sizeof(uint64_t)) memcpy(l->a + l->n * l->elem, &key, sizeof key);
    else {
        match_rec r = {.key = key, .q = q};
        memcpy(l->a + l->n * l->elem, &r, sizeof r);
    }
    l->n++;
}

/* Collective: rank 0's l receives every rank's records (the others keep
 * theirs). 0 or -1 on every rank. */
static int gather_matches(match_list *l, int rank, int R, MPI_Comm comm) {
    if (R == 1) return 0;
    long long n = (long long)l->n, *ns = NULL;
    int err = 0, *cnt = NULL, *dis = NULL;
    unsigned char *all = NULL;
    if (rank == 0 && (!(ns = cl_trymalloc((size_t)R, sizeof *ns, "matches")) ||
                      !(cnt = cl_trymalloc((size_t)R, sizeof *cnt, "matches")) ||
                      !(dis = cl_trymalloc((size_t)R, sizeof *dis, "matches"))))
        err = 1;
    if (cl_par_agree(err, comm)) goto out;
    MPI_Gather(&n, 1, MPI_LONG_LONG, ns, 1, MPI_LONG_LONG, 0, comm);
    if (rank == 0) {
        unsigned long long tot = 0;
        for (int q = 0; q < R; q++) tot += (unsigned long long)ns[q];
        if (tot * l->elem > 0x7fffffffull)
            err = cl_error("too many matches to gather (%llu): explain fewer texts at a time", tot);
        else if (!(all = cl_trymalloc(tot ? tot : 1, l->elem, "matches")))
            err = 1;
        for (int q = 0, o = 0; !err && q < R; q++)
            cnt[q] = (int)(ns[q] * (long long)l->elem), dis[q] = o, o += cnt[q];
    }
    if (cl_par_agree(err, comm)) goto out;
    MPI_Gatherv(l->a, (int)(l->n * l->elem), MPI_BYTE, all, cnt, dis, MPI_BYTE, 0, comm);
    if (rank == 0) {
        size_t tot = 0;
        for (int q = 0; q < R; q++) tot += (size_t)ns[q];
        free(l->a);
        l->a = all, l->n = l->cap = tot;
        all = NULL;
    }
out:
    free(ns), free(cnt), free(dis), free(all);
    return err ? -1 : 0;
}

static int cmp_match(const void *a, const void *b) {
    uint64_t x, y;
    memcpy(&x, a, sizeof x), memcpy(&y, b, sizeof y);
    return x < y ? -1 : x > y;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sparse rows of PB (prompt, block)s from their matches (sorted here):
 * row pb = the next-token counts of its substrings summed, tokens increasing.
 * soft: sums of q * count in val16 (u128) instead of the plain counts in val.
 * Exact in any order. The counts from cp, or (counts left in the file:
 * cl_corpus_open_rows) those of the distinct matched substrings, read here.
 * 0 or -1 (out of memory, a corrupt row). */
static int sparse_rows(const cl_corpus *cp, match_list *l, size_t PB, size_t V, int soft, int64_t **indptr,
                       int32_t **tok, int64_t **val, u128 **val16) {
    if (l->n) qsort(l->a, l->n, l->elem, cmp_match); /* none: l->a may be NULL (UBSan) */
    const int64_t *cip = cp->next_indptr;
    const int32_t *ctk = cp->next_token, *cct = cp->next_count;
    int64_t *uid = NULL; /* the distinct matched substrings, increasing (counts read from the file) */
    size_t nu = 0;
    cl_corpus_part pt;
    memset(&pt, 0, sizeof pt);
    if (!cip) {
        if (!(uid = cl_trymalloc(l->n ? l->n : 1, sizeof *uid, "matched substrings"))) return -1;
        for (size_t i = 0; i < l->n; i++) {
            uint64_t key;
            memcpy(&key, l->a + i * l->elem, sizeof key);
            uid[i] = (int64_t)(key & 0xffffffffu);
        }
        qsort(uid, l->n, sizeof *uid, cmp_i64);
        for (size_t i = 0; i < l->n; i++)
            if (i == 0 || uid[i] != uid[nu - 1]) uid[nu++] = uid[i];
        if (cl_corpus_read_counts(cp, uid, nu, &pt) < 0) {
            free(uid);
            return -1;
        }
        cip = pt.indptr, ctk = pt.next_token, cct = pt.next_count;
    }
    size_t cap = 1024, nnz = 0;
    int64_t *ip = cl_trymalloc(PB + 1, sizeof *ip, "sparse counts"), *acc = soft ? NULL : cl_trycalloc(V, 8, "sparse counts");
    u128 *acc16 = soft ? cl_trycalloc(V, sizeof(u128), "sparse counts") : NULL;
    int32_t *touched = cl_trymalloc(V, sizeof *touched, "sparse counts"), *t = cl_trymalloc(cap, sizeof *t, "sparse counts");
    unsigned char *seen = cl_trycalloc(V, 1, "sparse counts");
    int64_t *v = soft ? NULL : cl_trymalloc(cap, sizeof *v, "sparse counts");
    u128 *v16 = soft ? cl_trymalloc(cap, sizeof *v16, "sparse counts") : NULL;
    int err = !ip || (!acc && !acc16) || !touched || !seen || !t || (!v && !v16);
    size_t i = 0;
    if (!err) ip[0] = 0;
    for (size_t pb = 0; !err && pb < PB; pb++) {
        size_t nt = 0;
        for (; i < l->n; i++) {
            match_rec rec = {0};
            memcpy(&rec, l->a + i * l->elem, l->elem);
            if ((size_t)(rec.key >> 32) != pb) break;
            int64_t sub = (int64_t)(rec.key & 0xffffffffu);
            if (uid) { /* its row in pt: sub is one of uid */
                size_t lo = 0, hi = nu;
                while (lo < hi) {
                    size_t mid = lo + (hi - lo) / 2;
                    if (uid[mid] < sub) lo = mid + 1;
                    else hi = mid;
                }
                sub = (int64_t)lo;
            }
            for (int64_t e = cip[sub]; e < cip[sub + 1]; e++) {
                int32_t k = ctk[e];
                if (!seen[k]) seen[k] = 1, touched[nt++] = k;
                if (soft) acc16[k] += rec.q * (u128)cct[e];
                else acc[k] += cct[e];
            }
        }
        qsort(touched, nt, sizeof *touched, cmp_i32);
        if (nnz + nt > cap) {
            while (nnz + nt > cap) cap *= 2;
            int32_t *t2 = realloc(t, cap * sizeof *t);
            if (t2) t = t2;
            if (soft) {
                u128 *w2 = t2 ? realloc(v16, cap * sizeof *v16) : NULL;
                if (w2) v16 = w2;
                err = !w2;
            } else {
                int64_t *w2 = t2 ? realloc(v, cap * sizeof *v) : NULL;
                if (w2) v = w2;
                err = !w2;
            }
            if (err) {
                cl_error("out of memory for the sparse counts (%zu)", cap);
                break;
            }
        }
        for (size_t j = 0; j < nt; j++) {
            int32_t k = touched[j];
            t[nnz] = k, seen[k] = 0;
            if (soft) v16[nnz] = acc16[k], acc16[k] = 0;
            else v[nnz] = acc[k], acc[k] = 0;
            nnz++;
        }
        ip[pb + 1] = (int64_t)nnz;
    }
    free(acc), free(acc16), free(touched), free(seen), free(uid);
    cl_corpus_part_free(&pt);
    if (err) {
        free(ip), free(t), free(v), free(v16);
        return -1;
    }
    *indptr = ip, *tok = t;
    if (soft) *val16 = v16;
    else *val = v;
    return 0;
}

/* Model probabilities, logit lens and normalised hooked vectors of the
 * prompts, from the scan's trie forward (cl_trie_fwd_run_var): the distinct
 * prompt strings in lexicographic order, in pieces of up to TRIE_STRINGS
 * strings (TRIE_NODES / longest length, TRIE_LENS / (NL V)), piece c on rank c mod R, summed
 * over ranks (zero-filled: exact). The lens is the scan's: ln_f + head of
 * each block's residual (cl_unembed), softmax; the model's probabilities are
 * the lens of the last block (the same final LayerNorm and head on the same
 * residual, as the scan takes them). A node's bits depend only on its prefix,
 * so a prompt gets the bits the scan gives the same string, whatever the
 * other prompts and the pieces. */
#define TRIE_STRINGS 256
#define TRIE_NODES 8192
#define TRIE_LENS ((size_t)1 << 24) /* lens logits of a piece, floats */
/* Sparse results (sf != NULL, probs and lens NULL): instead of the rows, each
 * block's lens H to the model and its top tokens, and the last block's
 * residual [P, C] (the model's row is recomputed from it after the search,
 * cl_unembed row by row: the same bits). */
typedef struct {
    double *lens_h;  /* [P, NL] */
    int32_t *top_id; /* [P, NL, CL_EXPLAIN_LENS_TOP] */
    float *top_p;
    float *resid;    /* [P, C] */
} sparse_fwd;

static int prompts_forward(const cl_index *ix, const cl_model *m, const int32_t *tokens, const size_t *off, size_t P,
                           float *pvec, float *probs, float *lens, sparse_fwd *sf, int rank, int R, MPI_Comm comm) {
    const cl_config *c = &m->cfg;
    const size_t C = c->n_embd, V = c->vocab_size, NL = c->n_layer, Lh = ix->Lh;
    const int lo = ix->first_block, hi = ix->first_block + ix->Lh - 1;
    size_t Tmax = 1;
    for (size_t p = 0; p < P; p++)
        if (off[p + 1] - off[p] > Tmax) Tmax = off[p + 1] - off[p];
    int err = 0;
    prompt_ref *ord = cl_trymalloc(P ? P : 1, sizeof *ord, "prompt order");
    size_t *uniq = cl_trymalloc(P + 1, sizeof *uniq, "prompt strings"); /* first place in ord of each distinct string */
    size_t U = 0;
    if (ord && uniq) {
        for (size_t p = 0; p < P; p++) ord[p] = (prompt_ref){tokens + off[p], off[p + 1] - off[p], p};
        qsort(ord, P, sizeof *ord, cmp_prompt_ref);
        for (size_t j = 0; j < P; j++)
            if (j == 0 || ord[j].len != ord[j - 1].len ||
                memcmp(ord[j].tok, ord[j - 1].tok, ord[j].len * sizeof(int32_t)))
                uniq[U++] = j;
        uniq[U] = P;
    }
    size_t Smax = TRIE_NODES / Tmax > 0 ? TRIE_NODES / Tmax : 1;
    if (Smax > TRIE_STRINGS) Smax = TRIE_STRINGS;
    if (Smax > TRIE_LENS / (NL * V)) Smax = TRIE_LENS / (NL * V) > 0 ? TRIE_LENS / (NL * V) : 1; /* a large vocabulary */
    if (Smax > U) Smax = U ? U : 1;
    float *cap = cl_trymalloc(Lh * Smax * C, sizeof(float), "prompt capture");
    float *res = cl_trymalloc(Smax * NL * C, sizeof(float), "prompt residuals");
    float *lg = cl_trymalloc(Smax * NL * V, sizeof(float), "prompt lens logits");
    int32_t *tok = cl_trymalloc(Smax * Tmax, sizeof(int32_t), "prompt tokens");
    size_t *soff = cl_trymalloc(Smax + 1, sizeof(size_t), "prompt offsets");
    cl_trie_fwd *tf = NULL;
    double *dl = sf ? cl_trymalloc(V, sizeof *dl, "lens row") : NULL;
    if (!ord || !uniq || !cap || !res || !lg || !tok || !soff || (sf && !dl) ||
        !(tf = cl_trie_fwd_create(m, (int)Tmax, Smax)))
        err = 1;
    for (size_t u0 = 0, ch = 0; !err && u0 < U; u0 += Smax, ch++) {
        if ((int)(ch % (size_t)R) != rank) continue;
        size_t ns = U - u0 < Smax ? U - u0 : Smax, o = 0;
        for (size_t k = 0; k < ns; k++) {
            const prompt_ref *q = &ord[uniq[u0 + k]];
            soff[k] = o;
            memcpy(tok + o, q->tok, q->len * sizeof(int32_t));
            o += q->len;
        }
        soff[ns] = o;
        /* the hook cl_index_open parsed and checked (a point of width C; cl_explain_run checks the width) */
        if (cl_trie_fwd_run_var(tf, tok, soff, ns, ix->hook_point, lo, hi, cap, res, NULL)) {
            err = 1;
            break;
        }
        cl_unembed(m, res, ns * NL, lg);
        softmax_forward(lg, ns * NL, (int)V);
        for (size_t k = 0; k < ns; k++) {
            const size_t p1 = ord[uniq[u0 + k]].p; /* the string's first prompt: the others copy it */
            for (size_t l = 0; sf && l < NL; l++) {
                const float *lp = lg + (k * NL + l) * V, *q = lg + (k * NL + NL - 1) * V;
                for (size_t v = 0; v < V; v++) dl[v] = lp[v];
                sf->lens_h[p1 * NL + l] = cl_hellinger_df(dl, q, V);
                int32_t id[CL_EXPLAIN_LENS_TOP];
                double x[CL_EXPLAIN_LENS_TOP];
                int n = 0;
                for (size_t v = 0; v < V; v++) top_put(id, x, &n, CL_EXPLAIN_LENS_TOP, lp[v], (int32_t)v);
                for (int t = 0; t < CL_EXPLAIN_LENS_TOP; t++) {
                    sf->top_id[(p1 * NL + l) * CL_EXPLAIN_LENS_TOP + t] = t < n ? id[t] : -1;
                    sf->top_p[(p1 * NL + l) * CL_EXPLAIN_LENS_TOP + t] = t < n ? (float)x[t] : 0;
                }
            }
            for (size_t j = uniq[u0 + k]; j < uniq[u0 + k + 1]; j++) {
                const size_t p = ord[j].p;
                for (size_t h = 0; h < Lh; h++)
                    memcpy(pvec + (h * P + p) * C, cap + (h * ns + k) * C, C * sizeof(float));
                if (sf) {
                    memcpy(sf->resid + p * C, res + (k * NL + NL - 1) * C, C * sizeof(float));
                    if (p != p1) {
                        const size_t kl = NL * CL_EXPLAIN_LENS_TOP;
                        memcpy(sf->lens_h + p * NL, sf->lens_h + p1 * NL, NL * sizeof(double));
                        memcpy(sf->top_id + p * kl, sf->top_id + p1 * kl, kl * sizeof(int32_t));
                        memcpy(sf->top_p + p * kl, sf->top_p + p1 * kl, kl * sizeof(float));
                    }
                    continue;
                }
                memcpy(lens + p * NL * V, lg + k * NL * V, NL * V * sizeof(float));
                memcpy(probs + p * V, lg + (k * NL + NL - 1) * V, V * sizeof(float));
            }
        }
    }
    cl_trie_fwd_free(tf);
    free(ord), free(uniq), free(cap), free(res), free(lg), free(tok), free(soff), free(dl);
    if (cl_par_agree(err, comm)) return -1;
    if (R > 1) {
        /* element counts stay far below INT_MAX for any sane prompt count (checked by the caller) */
        MPI_Allreduce(MPI_IN_PLACE, pvec, (int)(Lh * P * C), MPI_FLOAT, MPI_SUM, comm);
        if (sf) {
            MPI_Allreduce(MPI_IN_PLACE, sf->resid, (int)(P * C), MPI_FLOAT, MPI_SUM, comm);
            MPI_Allreduce(MPI_IN_PLACE, sf->lens_h, (int)(P * NL), MPI_DOUBLE, MPI_SUM, comm);
            MPI_Allreduce(MPI_IN_PLACE, sf->top_id, (int)(P * NL * CL_EXPLAIN_LENS_TOP), MPI_INT32_T, MPI_SUM, comm);
            MPI_Allreduce(MPI_IN_PLACE, sf->top_p, (int)(P * NL * CL_EXPLAIN_LENS_TOP), MPI_FLOAT, MPI_SUM, comm);
        } else {
            MPI_Allreduce(MPI_IN_PLACE, probs, (int)(P * V), MPI_FLOAT, MPI_SUM, comm);
            MPI_Allreduce(MPI_IN_PLACE, lens, (int)(P * NL * V), MPI_FLOAT, MPI_SUM, comm);
        }
    }
    for (size_t h = 0; h < Lh; h++) l2normalize_rows(pvec + h * P * C, P, (int)C);
    return 0;
}

/* What one (prompt, block) does with one index row of similarity v: the
 * top-K list, the hard kernel's counts, the near-threshold count, the soft
 * kernel. Exact, and independent of the order rows come in. */
typedef struct {
    const cl_explain_params *par;
    const cl_corpus *cp;
    cl_explain_result *r;
    u128 *soft;
    match_list *ml, *sl; /* sparse counts: the hard and soft matches (NULL: dense) */
    float *lsim;
    int64_t *lsub;
    int *lfill;
    int K;
    size_t V, Lh;
    const int32_t *sub;  /* the index's substring of each row */
    /* the next-token counts, CSR: the corpus's own arrays by substring (cp
       holds them), or those of this rank's rows' substrings (cset: only
       this rank's rows are visited) */
    const int64_t *cip;
    const int32_t *ctk, *cct;
    const cl_counts_set *cset;
    /* the same counts in index row order (nip[N + 1], ntk, ncn; NULL: read
       through cip/ctk/cct): a passage's search adds them for millions of
       (prompt, row) pairs, and the rows' substrings are scattered over the
       corpus's arrays (a cache miss each), not over a piece of the index */
    const int64_t *nip;
    const int32_t *ntk, *ncn;
} visit_ctx;

/* The next-token counts of index row `row` (substring sub): entries
 * [*a, *e) of *tk and *cn, from the row-order copy (nip) when there is one,
 * else from the corpus's counts by substring or this rank's (cset) */
static inline void row_next(const visit_ctx *x, size_t row, int64_t sub, const int32_t **tk, const int32_t **cn,
                            int64_t *a, int64_t *e) {
    if (x->nip) {
        *tk = x->ntk, *cn = x->ncn, *a = x->nip[row], *e = x->nip[row + 1];
        return;
    }
    const size_t cr = x->cset ? cl_counts_set_row(x->cset, (size_t)sub) : (size_t)sub;
    *tk = x->ctk, *cn = x->cct, *a = x->cip[cr], *e = x->cip[cr + 1];
}

/* the hard kernel's counts of index row `row` (substring sub) into cnt[V] */
static inline void add_next(const visit_ctx *x, int64_t *cnt, int64_t sub, size_t row) {
    const int32_t *tk, *cn;
    int64_t a, e;
    row_next(x, row, sub, &tk, &cn, &a, &e);
    for (; a < e; a++) cnt[tk[a]] += cn[a];
}

/* The counts of index rows [row0, row1) in row order (*nip [N + 1], *ntk,
 * *ncn: row i's entries nip[i] .. nip[i+1]), read through x (row_next: the
 * corpus's or this rank's counts; x->nip NULL). x->sub must be checked against the
 * counts' rows. 0 or -1 (out of memory; nothing allocated). */
static int rows_in_order(const visit_ctx *x, size_t N, size_t row0, size_t row1, int64_t **nip, int32_t **ntk,
                         int32_t **ncn) {
    const int32_t *tk0, *cn0;
    int64_t a, e;
    size_t nnz = 0;
    for (size_t row = row0; row < row1; row++) {
        row_next(x, row, x->sub[row], &tk0, &cn0, &a, &e);
        nnz += (size_t)(e - a);
    }
    int64_t *ip = cl_trymalloc(N + 1, sizeof *ip, "next tokens in index order");
    int32_t *tk = cl_trymalloc(nnz ? nnz : 1, sizeof *tk, "next tokens in index order");
    int32_t *cn = cl_trymalloc(nnz ? nnz : 1, sizeof *cn, "next tokens in index order");
    if (!ip || !tk || !cn) {
        free(ip), free(tk), free(cn);
        return -1;
    }
    memset(ip, 0, (N + 1) * sizeof *ip);
    size_t o = 0;
    for (size_t row = row0; row < row1; row++) {
        row_next(x, row, x->sub[row], &tk0, &cn0, &a, &e);
        ip[row] = (int64_t)o;
        for (; a < e; a++, o++) tk[o] = tk0[a], cn[o] = cn0[a];
    }
    for (size_t row = row1; row <= N; row++) ip[row] = (int64_t)o;
    *nip = ip, *ntk = tk, *ncn = cn;
    return 0;
}

int cl_explain_hold_counts(cl_index *ix, const cl_corpus *cp) {
    if (!cp->next_indptr || ix->row_indptr || ix->V > CL_EXPLAIN_DENSE_MAX_V || cp->bpe) return 0;
    if (ix->N != cp->n) return cl_error("%s has %zu rows but the corpus %zu substrings", ix->path, ix->N, cp->n);
    for (size_t i = 0; i < ix->N; i++)
        if (ix->substring[i] < 0 || (size_t)ix->substring[i] >= cp->n)
            return cl_error("%s: row %zu names substring %d (the corpus has %zu)", ix->path, i, ix->substring[i], cp->n);
    visit_ctx x = {.cp = cp, .sub = ix->substring, .cip = cp->next_indptr, .ctk = cp->next_token, .cct = cp->next_count};
    if (rows_in_order(&x, ix->N, 0, ix->N, &ix->row_indptr, &ix->row_token, &ix->row_count)) return -1;
    ix->row_corpus = cp;
    return 0;
}

static inline void visit(const visit_ctx *x, size_t pb, double thr, double gate, double invT, float v, size_t row) {
    const int K = x->K;
    const int64_t sub = x->sub[row];
    if (K) {
        float *ts = x->lsim + pb * K;
        int64_t *tu = x->lsub + pb * K;
        if (x->lfill[pb] < K || before(v, sub, ts[K - 1], tu[K - 1])) top_insert(ts, tu, &x->lfill[pb], K, v, sub);
    }
    double vd = v;
    if (!(vd > gate)) return;
    if (vd > thr) {
        x->r->n_matches[pb]++;
        if (x->ml) ml_push(x->ml, pb, sub, 0);
        else add_next(x, x->r->counts + pb * x->V, sub, row);
    }
    if (fabs(vd - thr) <= CL_EXPLAIN_NEAR) x->r->near[pb]++;
    if (x->sl && vd > x->par->soft_floor) {
        ml_push(x->sl, pb, sub, (u128)ldexp(exp((vd - 1.0) * invT), 64));
    } else if (x->soft && vd > x->par->soft_floor) {
        u128 *sft = x->soft + pb * x->V;
        u128 q = (u128)ldexp(exp((vd - 1.0) * invT), 64);
        const int32_t *tk, *cn;
        int64_t a, e;
        row_next(x, row, sub, &tk, &cn, &a, &e);
        for (; a < e; a++) sft[tk[a]] += q * (u128)cn[a];
    }
}

/* A (prompt, row) pair that the sketch proves to be a match of the hard
 * kernel, away from the threshold by more than CL_EXPLAIN_NEAR, and below
 * the prompt's K-th best similarity known so far (kth: a lower bound of the
 * final K-th best; INFINITY with no top list), so outside the final top list
 * (ties included): visit would only count it, whatever its exact similarity.
 * ub is the float32 upper bound c.cq + re rq (sketch.h); the lower bound is
 * c.cq - re rq = ub - 2 re rq, and the exact similarity v lies within slack
 * of [lower, upper] (the same errors the upper bound's slack covers, on
 * either side); 1e-6 more for the double arithmetic here. */
static inline int is_sure(float ub, float re, float rq, double slack, double thr, double kth) {
    double hi = (double)ub + slack + 1e-6, lo = (double)ub - 2.0 * (double)re * (double)rq - slack - 1e-6;
    return lo > thr + CL_EXPLAIN_NEAR && hi < kth;
}

/* visit's effect for a sure pair (is_sure): a match, not near, not in the top list, no soft kernel */
static inline void count_sure(const visit_ctx *x, size_t pb, size_t row) {
    const int64_t sub = x->sub[row];
    x->r->n_matches[pb]++;
    if (x->ml) {
        ml_push(x->ml, pb, sub, 0);
        return;
    }
    add_next(x, x->r->counts + pb * x->V, sub, row);
}

#if HAVE_DIRECT
/* ub[i * ld + s] = coords[s] . cq[i] + resid[s] rq[i] for s < rows, i < P (k % 8 == 0) */
__attribute__((target("avx,fma"))) static void bound_avx(const float *co, const float *re, size_t rows, int k,
                                                          const float *cq, const float *rq, size_t P, float *ub,
                                                          size_t ld) {
    for (size_t s = 0; s < rows; s++) {
        const float *a = co + s * (size_t)k;
        for (size_t i = 0; i < P; i++) {
            __m256 acc = _mm256_setzero_ps();
            for (int j = 0; j < k; j += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(cq + i * k + j), acc);
            __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            lo = _mm_hadd_ps(lo, lo);
            lo = _mm_hadd_ps(lo, lo);
            ub[i * ld + s] = _mm_cvtss_f32(lo) + re[s] * rq[i];
        }
    }
}

static void bound(const float *co, const float *re, size_t rows, int k, const float *cq, const float *rq, size_t P,
                  float *ub, size_t ld) {
    if (k % 8 == 0) {
        bound_avx(co, re, rows, k, cq, rq, P, ub, ld);
        return;
    }
    for (size_t s = 0; s < rows; s++)
        for (size_t i = 0; i < P; i++) {
            float d = 0;
            for (int j = 0; j < k; j++) d += co[s * k + j] * cq[i * k + j];
            ub[i * ld + s] = d + re[s] * rq[i];
        }
}

/* The same bounds from coordinates held in memory as float16 (sketch.h,
 * cl_sketch_hold): rows in groups of 8, widened once into L1 and bounded for
 * every prompt (k % 8 == 0). Any summation order is within the slack. */
__attribute__((target("avx2,f16c,fma"))) static void bound_h16(const uint16_t *co, const float *re, size_t rows,
                                                               int k, const float *cq, const float *rq, size_t P,
                                                               float *ub, size_t ld) {
    float w[8 * 256];
    size_t s = 0;
    for (; s + 8 <= rows; s += 8) {
        for (size_t j = 0; j < 8 * (size_t)k; j += 8)
            _mm256_storeu_ps(w + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(co + s * (size_t)k + j))));
        const __m256 r8 = _mm256_loadu_ps(re + s);
        for (size_t i = 0; i < P; i++) {
            const float *q = cq + i * (size_t)k;
            __m256 a[8];
            for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
            for (int j = 0; j < k; j += 8) {
                const __m256 qj = _mm256_loadu_ps(q + j);
                for (int r = 0; r < 8; r++) a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * k + j), qj, a[r]);
            }
            __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
            __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
            t0 = _mm256_hadd_ps(t0, t1), t2 = _mm256_hadd_ps(t2, t3);
            __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20), _mm256_permute2f128_ps(t0, t2, 0x31));
            _mm256_storeu_ps(ub + i * ld + s, _mm256_fmadd_ps(r8, _mm256_set1_ps(rq[i]), sum));
        }
    }
    for (; s < rows; s++) {
        for (int j = 0; j < k; j += 8)
            _mm256_storeu_ps(w + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(co + s * (size_t)k + j))));
        for (size_t i = 0; i < P; i++) {
            float d = 0;
            for (int j = 0; j < k; j++) d += w[j] * cq[i * (size_t)k + j];
            ub[i * ld + s] = d + re[s] * rq[i];
        }
    }
}

/* n bytes at off of fd (the index file): 0, or -1 (message) */
static int pread_index_row(int fd, void *buf, size_t n, unsigned long long off) {
    if (cl_pread_exact(fd, buf, n, off))
        return cl_error("cannot read an index row at byte %llu: %s", off, cl_pread_reason());
    return 0;
}

/* The search of block b over rows [row0, row1) with the sketch (sketch.h):
 * 1. the bound of every row for every prompt; 2. per prompt, the exact
 * similarity of the K rows with the largest bounds: their K-th best is a
 * lower bound of the final K-th best, so rows below it cannot enter the top
 * list; 3. every row whose bound (+ slack) reaches some prompt's floor (the
 * gate, the K-th best of step 2) gets the same exact dot product as the full
 * path (dot_f16: per prompt the same operations whatever P) and is visited
 * for every prompt. *checked = rows of step 3. */
static int sketch_block(const cl_index *ix, const visit_ctx *x, int b, const float *pv, size_t P, size_t row0,
                        size_t row1, double thr, double gate, double invT, int64_t *checked) {
    const cl_sketch *sk = ix->sketch;
    const size_t C = (size_t)ix->C, n = row1 - row0, cr = ix->chunk_rows, Lh = x->Lh;
    const int k = sk->k, K = x->K;
    *checked = 0;
    if (n == 0) return 0;
    float *ub = cl_trymalloc(P * n, sizeof(float), "sketch bounds");
    float *co = cl_trymalloc(SK_ROWS * (size_t)k, sizeof(float), "sketch rows");
    float *re = cl_trymalloc(SK_ROWS, sizeof(float), "sketch rows");
    float cq[DIRECT_MAX * 256], rq[DIRECT_MAX], sim[DIRECT_MAX * SK_DOT], bsim[256];
    double floor_[DIRECT_MAX], kthv[DIRECT_MAX];
    int rc = -1;
    /* rows to multiply: SK_DOT (step 3) or up to 256 (step 2) */
    _Static_assert(SK_DOT <= 256, "rows16 holds SK_DOT rows");
    uint16_t *rows16 = cl_trymalloc(256 * C, 2, "sketch rows (float16)");
    float *tile = cl_trymalloc(8 * C, sizeof(float), "sketch rows (tile)");
    /* surviving rows by pread: on the development VM a page fault per row of
       the 4 GB mapping cost 2.6x the CPU time of a pread (README, Performance) */
    int use_pread = sk->fd >= 0 && !ix->held;
    if (!ub || !co || !re || !rows16 || !tile) goto done;
    for (size_t i = 0; i < P; i++) cl_sketch_query(sk, b, pv + i * C, cq + i * k, &rq[i]);
    if (sk->held_coords && k % 8 == 0) {
        const size_t i0 = (size_t)b * sk->N + row0;
        bound_h16(sk->held_coords + i0 * (size_t)k, sk->held_resid + i0, n, k, cq, rq, P, ub, n);
    } else
        for (size_t s0 = 0; s0 < n; s0 += SK_ROWS) {
            size_t m = n - s0 < SK_ROWS ? n - s0 : SK_ROWS;
            if (cl_sketch_rows(sk, b, row0 + s0, m, co, re)) goto done;
            bound(co, re, m, k, cq, rq, P, ub + s0, n);
        }
#define ROW(s) (cl_index_chunk_f16(ix, b, (s) / cr) + ((s) % cr) * C)
    for (size_t i = 0; i < P; i++) {
        double g = gate;
        if (K > 0) {
            /* the K rows with the largest bounds (ties: lower row), exactly */
            float bv[256];
            size_t bs[256];
            int nb = 0, KK = K < 256 ? K : 256;
            const float *u = ub + i * n;
            for (size_t s = 0; s < n; s++) {
                if (nb == KK && s % 16 == 0 && s + 16 <= n && !scan_any_above16(u + s, bv[KK - 1])) {
                    s += 15;
                    continue;
                }
                if (nb == KK && !(u[s] > bv[KK - 1])) continue;
                int j = nb < KK ? nb++ : KK - 1;
                while (j > 0 && u[s] > bv[j - 1]) bv[j] = bv[j - 1], bs[j] = bs[j - 1], j--;
                bv[j] = u[s], bs[j] = s;
            }
            if (nb == K) {
                float kth = INFINITY;
                for (int j = 0; j < nb; j++) memcpy(rows16 + (size_t)j * C, ROW(row0 + bs[j]), C * 2);
                dot_f16(rows16, (size_t)nb, C, pv + i * C, 1, bsim, (size_t)nb);
                for (int j = 0; j < nb; j++)
                    if (bsim[j] < kth) kth = bsim[j];
                if (kth < g) g = kth;
                kthv[i] = kth;
            } else g = kthv[i] = -INFINITY; /* fewer rows than K (or K > 256): no floor from the top list */
        } else kthv[i] = INFINITY;
        floor_[i] = g - sk->slack;
    }
    /* held residuals: the rows that are certainly matches and certainly out of
       the top list are counted without their exact similarity (count_sure) */
    const float *hre = sk->held_resid && !x->soft ? sk->held_resid + (size_t)b * sk->N + row0 : NULL;
    int sure[DIRECT_MAX];
    int64_t cnt = 0;
    float below[DIRECT_MAX]; /* below[i] < floor_[i]: a bound not above it cannot reach the floor */
    for (size_t i = 0; i < P; i++) {
        float f = (float)floor_[i];
        if ((double)f >= floor_[i]) f = nextafterf(f, -INFINITY);
        below[i] = f;
    }
    /* 3a. the rows to multiply, in row order (the sure pairs counted on the way) */
    size_t ns = 0, cap = 0, *surv = NULL;
    for (size_t s = 0; s < n; s++) {
        if (s % 16 == 0 && s + 16 <= n) { /* 16 rows at a time below every floor */
            int any16 = 0;
            for (size_t i = 0; i < P && !any16; i++) any16 = scan_any_above16(ub + i * n + s, below[i]);
            if (!any16) {
                s += 15;
                continue;
            }
        }
        int any = 0, all_sure = hre != NULL;
        for (size_t i = 0; i < P; i++) {
            int reach = ub[i * n + s] >= floor_[i];
            sure[i] = reach && hre && is_sure(ub[i * n + s], hre[s], rq[i], sk->slack, thr, kthv[i]);
            any |= reach;
            all_sure &= !reach || sure[i];
        }
        if (!any) continue;
        if (all_sure) {
            for (size_t i = 0; i < P; i++)
                if (sure[i]) count_sure(x, i * Lh + (size_t)b, row0 + s);
            continue;
        }
        if (ns == cap) {
            size_t nc = cap ? 2 * cap : 4096;
            size_t *t = realloc(surv, nc * sizeof *t);
            if (!t) {
                free(surv);
                cl_error("out of memory for the sketch's surviving rows (%zu)", nc);
                goto done;
            }
            surv = t, cap = nc;
        }
        surv[ns++] = s;
    }
    /* 3b. their exact similarities, SK_DOT rows at a time; from the mapping,
       each row prefetched PF rows ahead (its cache lines come from memory) */
    enum { PF = 8 };
    if (!use_pread) {
        /* from the mapping, 8 rows at a time widened into a tile (no copy), the next 8 prefetched */
        const float *qs[DIRECT_MAX];
        float out[DIRECT_MAX * 8];
        for (size_t i = 0; i < P; i++) qs[i] = pv + i * C;
        for (size_t j0 = 0; j0 < ns; j0 += 8) {
            size_t nr = ns - j0 < 8 ? ns - j0 : 8;
            const uint16_t *rp[8];
            for (size_t q = 0; q < nr; q++) rp[q] = ROW(row0 + surv[j0 + q]);
            for (size_t q = j0 + 8; q < j0 + 16 && q < ns; q++) {
                const char *pf = (const char *)ROW(row0 + surv[q]);
                for (size_t o = 0; o < C * 2; o += 64) __builtin_prefetch(pf + o);
            }
            tile_widen8(rp, nr, C, tile);
            tile_dots(tile, C, qs, P, out);
            for (size_t q = 0; q < nr; q++)
                for (size_t i = 0; i < P; i++)
                    visit(x, i * Lh + (size_t)b, thr, gate, invT, out[i * 8 + q], row0 + surv[j0 + q]);
        }
    }
    for (size_t j0 = 0; use_pread && j0 < ns; j0 += SK_DOT) {
        size_t nq = ns - j0 < SK_DOT ? ns - j0 : SK_DOT;
        for (size_t q = 0; q < nq; q++) {
            size_t row = row0 + surv[j0 + q];
            const uint16_t *h = ROW(row);
            if (use_pread) {
                if (pread_index_row(sk->fd, rows16 + q * C, C * 2,
                                    (unsigned long long)((const unsigned char *)h - ix->map))) {
                    free(surv);
                    goto done;
                }
                continue;
            }
            if (j0 + q + PF < ns) {
                const char *pf = (const char *)ROW(row0 + surv[j0 + q + PF]);
                for (size_t o = 0; o < C * 2; o += 64) __builtin_prefetch(pf + o);
            }
            memcpy(rows16 + q * C, h, C * 2);
        }
        dot_f16(rows16, nq, C, pv, P, sim, SK_DOT);
        for (size_t q = 0; q < nq; q++)
            for (size_t i = 0; i < P; i++)
                visit(x, i * Lh + (size_t)b, thr, gate, invT, sim[i * SK_DOT + q], row0 + surv[j0 + q]);
    }
    cnt = (int64_t)ns;
    free(surv);
#undef ROW
    *checked = cnt;
    rc = 0;
done:
    free(ub), free(co), free(re), free(rows16), free(tile);
    return rc;
}

/* ---- many prompts with the sketch (P > DIRECT_MAX: a passage's windows, a prompt file) ----
 * Per tile of up to QT prompts and per SKB rows of block b:
 *   1. the bounds of every (prompt, row): ONE product of the tile's sketch
 *      coordinates with the rows' (cl_sgemm_nt), plus |r_a| |r_q|. Its
 *      float32 rounding, in whatever order the product sums, is within the
 *      slack (sketch.h: k + 2 terms);
 *   2. seeding: for each prompt whose floor is still below the gate (its top
 *      list not full, or its K-th best below the gate), the K rows of the
 *      piece with the largest bounds get their exact similarity first, so
 *      that the top list's K-th best (a lower bound of the final K-th best:
 *      the list only improves) raises the floor;
 *   3. every (prompt, row) whose bound reaches the prompt's floor (min(gate,
 *      K-th best so far) - slack) gets its exact similarity.
 * Steps 2 and 3 visit each (prompt, row) at most once, grouped by row (a row
 * read once for all its prompts), with dot_f16_lanes: per prompt the very
 * operations of dot_f16 (and so of explain of that prompt alone). Skipped
 * rows are below the final K-th best and below the gate, so the results are
 * the full pass's, and each prompt's equal its result alone, bit for bit. */
#define QT CL_EXPLAIN_ROW_TILE
#define SKB 8192

/* out[j] = dot(row, q[j]) for j < n <= DIRECT_MAX, q[j] = base + off[j]:
 * per prompt exactly dot_f16's operations, i.e. cl_sgemm_nt_f16's chain (gemm.h:
 * fused multiply-adds over c in increasing order, from 0), so each prompt's
 * similarity is the bits of explain of that prompt alone. Lanes are prompts;
 * each lane's chain runs over c in order. */
__attribute__((target("avx2,f16c,fma"))) static void dot_f16_lanes(const uint16_t *row, size_t C, const float *base,
                                                                   const int32_t *off, size_t n, float *out) {
    int32_t idx[8];
    for (size_t i = 0; i < 8; i++) idx[i] = off[i < n ? i : 0];
    const __m256i vi = _mm256_loadu_si256((const __m256i *)idx);
    __m256 acc = _mm256_setzero_ps();
    for (size_t c = 0; c < C; c += 8) {
        __m256 x8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + c)));
        for (int j = 0; j < 8; j++) {
            __m256 x = _mm256_permutevar8x32_ps(x8, _mm256_set1_epi32(j));
            __m256 q = _mm256_i32gather_ps(base + c + (size_t)j, vi, 4);
            acc = _mm256_fmadd_ps(x, q, acc);
        }
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    for (size_t i = 0; i < n; i++) out[i] = t[i];
}

typedef struct {
    uint32_t *ps, *pq; /* pairs: row in the piece, prompt in the tile */
    size_t np, cap;
    uint32_t *cnt, *ord; /* counting sort by row: cnt[SKB + 1], ord[cap] */
    uint16_t *span;      /* rows read by one pread: up to one chunk */
    float *tile, *tout;  /* 8 widened rows (8 C), their dots with the tile's prompts (QT x 8) */
    uint16_t slot[QT];   /* a prompt's place in tout + 1, 0: none */
    uint32_t *rl, *rt;   /* rows with pairs, in the order they are multiplied; scratch */
    int64_t rows, pairs; /* computed */
} batch_ws;

static int add_pair(batch_ws *w, size_t s, size_t q) {
    if (w->np == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 65536;
        uint32_t *a = realloc(w->ps, cap * sizeof *a), *b2 = a ? realloc(w->pq, cap * sizeof *b2) : NULL;
        if (a) w->ps = a;
        if (b2) w->pq = b2;
        uint32_t *o = b2 ? realloc(w->ord, cap * sizeof *o) : NULL;
        if (!o) return cl_error("out of memory for the sketch's candidate pairs (%zu)", cap);
        w->ord = o, w->cap = cap;
    }
    w->ps[w->np] = (uint32_t)s, w->pq[w->np] = (uint32_t)q, w->np++;
    return 0;
}

/* The exact similarity and visit of every pair of w (rows of the piece
 * starting at index row r0, m rows; prompts of the tile starting at q0).
 * Rows come by pread (one read per run of needed rows of a chunk when they
 * are dense there) or from the mapping. 0 or -1. */
static int batch_exact(const cl_index *ix, const visit_ctx *x, int b, const float *pv, size_t q0, size_t r0, size_t m,
                       batch_ws *w, double thr, double gate, double invT) {
    const cl_sketch *sk = ix->sketch;
    const size_t C = (size_t)ix->C, cr = ix->chunk_rows, Lh = x->Lh;
    if (!w->np) return 0;
    memset(w->cnt, 0, (m + 1) * sizeof *w->cnt);
    for (size_t j = 0; j < w->np; j++) w->cnt[w->ps[j] + 1]++;
    for (size_t s = 0; s < m; s++) w->cnt[s + 1] += w->cnt[s];
    for (size_t j = 0; j < w->np; j++) w->ord[w->cnt[w->ps[j]]++] = w->pq[j];
    for (size_t s = m; s > 0; s--) w->cnt[s] = w->cnt[s - 1]; /* back to starts */
    w->cnt[0] = 0;
    int use_pread = sk->fd >= 0 && !ix->held;
#define ROWP(row) (cl_index_chunk_f16(ix, b, (row) / cr) + ((row) % cr) * C)
    if (!use_pread) {
        /* from the mapping: the rows that have pairs, 8 at a time, widened once into a tile and multiplied
           with every prompt that one of them needs (tile_dots) */
        size_t grp[8], nr = 0, nu = 0, nrow = 0;
        const float *qs[QT];
        uint32_t ul[QT];
        for (size_t s = 0; s < m; s++)
            if (w->cnt[s] < w->cnt[s + 1]) w->rl[nrow++] = (uint32_t)s;
        {
            /* rows with the same prompts in the same tiles: a tile multiplies its 8 rows with the union of
               their prompts, so rows ordered by their list's first and second prompt (counting sorts, least
               significant key first) share most of them (on the full index 3.6x fewer products than in row
               order). The order of visits changes nothing (visit is exact in any order). */
            uint32_t bc[QT + 2];
            for (int pass = 0; pass < 2; pass++) {
                uint32_t *src = pass ? w->rt : w->rl, *dst = pass ? w->rl : w->rt;
                memset(bc, 0, sizeof bc);
                for (size_t j = 0; j < nrow; j++) {
                    uint32_t a = w->cnt[src[j]], e = w->cnt[src[j] + 1];
                    bc[(pass ? w->ord[a] : e - a < 2 ? QT : w->ord[a + 1]) + 1]++;
                }
                for (size_t q = 0; q <= QT; q++) bc[q + 1] += bc[q];
                for (size_t j = 0; j < nrow; j++) {
                    uint32_t a = w->cnt[src[j]], e = w->cnt[src[j] + 1];
                    dst[bc[pass ? w->ord[a] : e - a < 2 ? QT : w->ord[a + 1]]++] = src[j];
                }
            }
        }
        for (size_t j = 0; j <= nrow; j++) {
            size_t s = j < nrow ? w->rl[j] : m;
            if (s < m) grp[nr++] = s;
            if (nr == 8 || (s == m && nr > 0)) {
                const uint16_t *rp[8];
                for (size_t r = 0; r < nr; r++) {
                    rp[r] = ROWP(r0 + grp[r]);
                    for (uint32_t j = w->cnt[grp[r]]; j < w->cnt[grp[r] + 1]; j++) {
                        uint32_t p = w->ord[j];
                        if (!w->slot[p]) w->slot[p] = (uint16_t)(nu + 1), ul[nu] = p, qs[nu++] = pv + (q0 + p) * C;
                    }
                }
                tile_widen8(rp, nr, C, w->tile);
                tile_dots(w->tile, C, qs, nu, w->tout);
                for (size_t r = 0; r < nr; r++) {
                    uint32_t a = w->cnt[grp[r]], e = w->cnt[grp[r] + 1];
                    for (uint32_t j = a; j < e; j++)
                        visit(x, (q0 + w->ord[j]) * Lh + (size_t)b, thr, gate, invT,
                              w->tout[(size_t)(w->slot[w->ord[j]] - 1) * 8 + r], r0 + grp[r]);
                    w->rows++, w->pairs += e - a;
                }
                for (size_t u = 0; u < nu; u++) w->slot[ul[u]] = 0;
                nr = nu = 0;
            }
        }
        w->np = 0;
        return 0;
    }
    size_t span0 = 0, span1 = 0; /* rows [span0, span1) of the piece held in w->span */
    for (size_t s = 0; s < m; s++) {
        uint32_t a = w->cnt[s], e = w->cnt[s + 1];
        if (a == e) continue;
        size_t row = r0 + s;
        const uint16_t *h = ROWP(row);
        if (use_pread) {
            if (s >= span1) {
                /* the needed rows of this chunk from s on: one read when they fill at least 1/8 of their span */
                size_t cend = (row / cr + 1) * cr - r0, last = s, need = 0;
                if (cend > m) cend = m;
                for (size_t t = s; t < cend; t++)
                    if (w->cnt[t + 1] > w->cnt[t]) last = t, need++;
                span0 = s, span1 = last + 1;
                if (need < 2 || (span1 - span0) > 8 * need) span1 = s + 1;
                if (pread_index_row(sk->fd, w->span, (span1 - span0) * C * 2,
                                    (unsigned long long)((const unsigned char *)h - ix->map)))
                    return -1;
            }
            h = w->span + (s - span0) * C;
        }
        w->rows++;
        for (uint32_t j = a; j < e; j += DIRECT_MAX) {
            size_t g = e - j < DIRECT_MAX ? e - j : DIRECT_MAX;
            int32_t off[DIRECT_MAX];
            float sim[DIRECT_MAX];
            for (size_t i = 0; i < g; i++) off[i] = (int32_t)((size_t)w->ord[j + i] * C);
            dot_f16_lanes(h, C, pv + q0 * C, off, g, sim);
            for (size_t i = 0; i < g; i++)
                visit(x, (q0 + w->ord[j + i]) * Lh + (size_t)b, thr, gate, invT, sim[i], row);
        }
        w->pairs += e - a;
    }
#undef ROWP
    w->np = 0;
    return 0;
}

/* u[s] += re[s] rq for s < m: a product then a sum, rounded as the scalar
 * statement rounds them (the same bounds), 8 at a time (the baseline
 * -march=x86-64-v2 leaves the scalar loop unvectorized: about a tenth of the
 * passage's search time was this pass) */
__attribute__((target("avx"))) static void add_resid(float *u, const float *re, float rq, size_t m) {
    const __m256 r8 = _mm256_set1_ps(rq);
    size_t s = 0;
    for (; s + 8 <= m; s += 8)
        _mm256_storeu_ps(u + s, _mm256_add_ps(_mm256_loadu_ps(u + s), _mm256_mul_ps(_mm256_loadu_ps(re + s), r8)));
    for (; s < m; s++) u[s] += re[s] * rq;
}

static int sketch_batch(const cl_index *ix, const visit_ctx *x, int b, const float *pv, size_t P, size_t row0,
                        size_t row1, double thr, double gate, double invT, int64_t *checked, int64_t *pairs) {
    const cl_sketch *sk = ix->sketch;
    const size_t C = (size_t)ix->C, n = row1 - row0, Lh = x->Lh, k = (size_t)sk->k;
    const int K = x->K, KK = K < 256 ? K : 256;
    *checked = *pairs = 0;
    if (n == 0) return 0;
    size_t mmax = n < SKB ? n : SKB;
    float *cq = cl_trymalloc(QT * k, sizeof(float), "sketch queries");
    float *rq = cl_trymalloc(QT, sizeof(float), "sketch queries");
    float *ub = cl_trymalloc(QT * mmax, sizeof(float), "sketch bounds");
    float *co = cl_trymalloc(mmax * k, sizeof(float), "sketch rows");
    float *re = cl_trymalloc(mmax, sizeof(float), "sketch rows");
    float *ff = cl_trymalloc(QT, sizeof(float), "sketch floors");
    batch_ws w = {0};
    w.cnt = cl_trymalloc(mmax + 1, sizeof *w.cnt, "sketch pairs");
    w.span = cl_trymalloc(ix->chunk_rows * C, sizeof(uint16_t), "index rows");
    w.tile = cl_trymalloc(8 * C, sizeof(float), "index rows (tile)");
    w.tout = cl_trymalloc(QT * 8, sizeof(float), "index rows (tile)");
    w.rl = cl_trymalloc(mmax, sizeof *w.rl, "sketch pairs");
    w.rt = cl_trymalloc(mmax, sizeof *w.rt, "sketch pairs");
    int rc = -1;
    /* the sure pairs' shortcut with a held sketch (a warm server); without
       it every pair is multiplied, the reference its results equal */
    const int sure_ok = sk->held_coords && !x->soft;
    if (!cq || !rq || !ub || !co || !re || !ff || !w.cnt || !w.span || !w.tile || !w.tout || !w.rl || !w.rt) goto done;
    for (size_t q0 = 0; q0 < P; q0 += QT) {
        size_t nq = P - q0 < QT ? P - q0 : QT;
        for (size_t i = 0; i < nq; i++) cl_sketch_query(sk, b, pv + (q0 + i) * C, cq + i * k, &rq[i]);
        for (size_t s0 = 0; s0 < n; s0 += SKB) {
            size_t m = n - s0 < SKB ? n - s0 : SKB;
            if (cl_sketch_rows(sk, b, row0 + s0, m, co, re)) goto done;
            cl_sgemm_nt(nq, m, k, cq, k, co, k, ub, m, 0);
            for (size_t i = 0; i < nq; i++) add_resid(ub + i * m, re, rq[i], m);
            /* 2. seeding: the KK largest bounds of the piece (ties: any), marked done (NaN) */
            for (size_t i = 0; KK > 0 && i < nq; i++) {
                size_t pb = (q0 + i) * Lh + (size_t)b;
                if (x->lfill[pb] == K && x->lsim[pb * K + K - 1] >= gate) continue;
                float bv[256];
                size_t bs[256];
                int nb = 0;
                float *u = ub + i * m;
                for (size_t s = 0; s < m; s++) {
                    if (nb == KK) {
                        if (s % 16 == 0 && s + 16 <= m && !scan_any_above16(u + s, bv[KK - 1])) {
                            s += 15;
                            continue;
                        }
                        if (!(u[s] > bv[KK - 1])) continue;
                    }
                    int j = nb < KK ? nb++ : KK - 1;
                    while (j > 0 && u[s] > bv[j - 1]) bv[j] = bv[j - 1], bs[j] = bs[j - 1], j--;
                    bv[j] = u[s], bs[j] = s;
                }
                for (int j = 0; j < nb; j++) {
                    if (add_pair(&w, bs[j], i)) goto done;
                    u[bs[j]] = NAN;
                }
            }
            if (batch_exact(ix, x, b, pv, q0, row0 + s0, m, &w, thr, gate, invT)) goto done;
            /* 3. the floors, then every pair whose bound reaches its floor (NaN: done in 2) */
            for (size_t i = 0; i < nq; i++) {
                size_t pb = (q0 + i) * Lh + (size_t)b;
                double g = gate;
                if (K > 0) {
                    double kth = x->lfill[pb] < K ? -INFINITY : x->lsim[pb * K + K - 1];
                    if (kth < g) g = kth;
                }
                g -= sk->slack;
                float f = (float)g;
                if ((double)f > g) f = nextafterf(f, -INFINITY); /* f <= g: keeps at least the rows g keeps */
                ff[i] = f;
            }
            for (size_t i = 0; i < nq; i++) {
                const float *u = ub + i * m, below = nextafterf(ff[i], -INFINITY);
                const size_t pb = (q0 + i) * Lh + (size_t)b;
                /* held sketch: pairs that are surely matches outside the top list are counted (is_sure) */
                const double kth = K == 0 ? INFINITY : x->lfill[pb] < K ? -INFINITY : x->lsim[pb * K + K - 1];
                for (size_t s16 = 0; s16 < m; s16 += 16) {
                    if (s16 + 16 <= m && !scan_any_above16(u + s16, below)) continue;
                    size_t e16 = s16 + 16 < m ? s16 + 16 : m;
                    for (size_t s = s16; s < e16; s++) {
                        if (!(u[s] >= ff[i])) continue;
                        if (sure_ok && is_sure(u[s], re[s], rq[i], sk->slack, thr, kth))
                            count_sure(x, pb, row0 + s0 + s);
                        else if (add_pair(&w, s, i)) goto done;
                    }
                }
            }
            if (batch_exact(ix, x, b, pv, q0, row0 + s0, m, &w, thr, gate, invT)) goto done;
        }
    }
    *checked = w.rows, *pairs = w.pairs;
    rc = 0;
done:
    free(cq), free(rq), free(ub), free(co), free(re), free(ff);
    free(w.ps), free(w.pq), free(w.cnt), free(w.ord), free(w.span), free(w.tile), free(w.tout), free(w.rl), free(w.rt);
    return rc;
}
#endif

/* gate of block b: the smallest similarity any rule needs (pairs below it do nothing) */
static double explain_gate(const cl_explain_params *par, size_t b) {
    double gate = par->thresholds[b] - CL_EXPLAIN_NEAR;
    if (par->soft && par->soft_floor < gate) gate = par->soft_floor;
    return gate;
}

#if HAVE_DIRECT
/* ---- the sketch's search of every hooked block, the blocks over a few threads ----
 * A block's search writes only that block's entries of the result (pb = p Lh
 * + b: counts, matches, near, top lists, soft sums; checked[b], pairs[b]) and
 * reads what nothing writes during the search (the index, the held sketch,
 * the corpus, the prompts' vectors), so blocks run on any threads in any
 * order with the very operations of one thread: the same bits (no sum
 * crosses threads). Blocks are handed out one at a time, the last first (the
 * later blocks match more rows and cost more: the longest first keeps the
 * threads busy to the end). */
typedef struct {
    const cl_index *ix;
    const visit_ctx *vc;
    const float *pvec;
    size_t P, row0, row1;
    int next;           /* the next block to hand out, counting down (atomic) */
    int fail[64];       /* per block: 1 when its search failed */
    char msg[64][512];  /* its message (cl_error is per thread) */
} sketch_pool;

static int sketch_one(sketch_pool *sp, size_t b) {
    const visit_ctx *x = sp->vc;
    const cl_explain_params *par = x->par;
    const size_t P = sp->P, C = (size_t)sp->ix->C;
    cl_explain_result *r = x->r;
    const double thr = par->thresholds[b], invT = par->soft ? 1.0 / par->T[b] : 0, gate = explain_gate(par, b);
    if (P <= DIRECT_MAX) {
        if (sketch_block(sp->ix, x, (int)b, sp->pvec + b * P * C, P, sp->row0, sp->row1, thr, gate, invT,
                         &r->checked[b]))
            return -1;
        r->pairs[b] = r->checked[b] * (int64_t)P;
        return 0;
    }
    return sketch_batch(sp->ix, x, (int)b, sp->pvec + b * P * C, P, sp->row0, sp->row1, thr, gate, invT,
                        &r->checked[b], &r->pairs[b]);
}

static void *sketch_worker(void *arg) {
    sketch_pool *sp = arg;
    for (;;) {
        int b = __atomic_sub_fetch(&sp->next, 1, __ATOMIC_RELAXED);
        if (b < 0) break;
        if (sketch_one(sp, (size_t)b)) {
            sp->fail[b] = 1;
            snprintf(sp->msg[b], sizeof sp->msg[b], "%s", cl_last_error());
        }
    }
    return NULL;
}

/* Every block on up to `threads` threads (the caller's included; fewer when
 * a thread cannot start). 0, or -1 with the message of the first failed block. */
static int sketch_blocks(sketch_pool *sp, int threads) {
    const int Lh = (int)sp->vc->Lh;
    if (threads > Lh) threads = Lh;
    if (threads <= 1 || Lh > 64) { /* one thread: the blocks in order */
        for (int b = 0; b < Lh; b++)
            if (sketch_one(sp, (size_t)b)) return -1;
        return 0;
    }
    pthread_t th[64];
    int started = 0;
    sp->next = Lh;
    memset(sp->fail, 0, sizeof sp->fail);
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&th[started], NULL, sketch_worker, sp)) break;
        started++;
    }
    sketch_worker(sp);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    for (int b = 0; b < Lh; b++)
        if (sp->fail[b]) return cl_error("%s", sp->msg[b]);
    return 0;
}
#endif

/* *p holds at least need elements of elem bytes (doubling); 0 or -1 (message) */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return cl_error("out of memory for the sparse results (%zu entries)", c);
    *p = q, *cap = c;
    return 0;
}

/* *p resized to n elements of elem bytes; on failure *p is kept (freed by its
 * owner: no leak) and -1 returned */
static int resize(void **p, size_t n, size_t elem) {
    void *q = realloc(*p, (n ? n : 1) * elem);
    if (!q) return -1;
    *p = q;
    return 0;
}

/* Rank 0, sparse results (explain.h): per tile of CL_EXPLAIN_SUP_TILE prompts
 * the dense model rows (cl_unembed of the last block's residual, softmax: the
 * bits of the forward's rows, one chain per element whatever the batch), and
 * from each row: the exact-string n-gram, the support, the mass, the
 * approximations on the support and every H (cl_hellinger_df of the dense
 * row, as the dense path: the same bits), the caller's dense_row. The count
 * rows r->cnt_* (hard) and sip/stk/sval (soft) are complete. 0 or -1. */
static int sparse_results(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                          const size_t *off, const cl_explain_params *par, cl_explain_result *r, const float *resid,
                          const int64_t *sip, const int32_t *stk, const u128 *sval,
                          int (*dense_row)(void *, size_t, const float *), void *ctx) {
    const size_t P = r->P, V = (size_t)r->V, Lh = (size_t)r->Lh, C = (size_t)m->cfg.n_embd, L = (size_t)cp->L;
    const size_t T = P < CL_EXPLAIN_SUP_TILE ? P : CL_EXPLAIN_SUP_TILE;
    float *lg = cl_trymalloc(T * V, sizeof *lg, "model rows");
    double *a = cl_trycalloc(V, sizeof *a, "approximation row"), *sa = cl_trycalloc(V, sizeof *sa, "soft row");
    double *dn = cl_trycalloc(V, sizeof *dn, "n-gram row");
    int32_t *ngr = cl_trycalloc(V, sizeof *ngr, "n-gram row");
    unsigned char *mark = cl_trycalloc(V, 1, "support");
    r->sup_indptr = cl_trymalloc(P + 1, sizeof *r->sup_indptr, "support");
    r->mass = cl_trymalloc(2 * P, sizeof *r->mass, "support mass");
    r->ngram_sub = cl_trymalloc(P, sizeof *r->ngram_sub, "n-gram");
    r->ngram_indptr = cl_trymalloc(P + 1, sizeof *r->ngram_indptr, "n-gram");
    r->ngram_h = cl_trymalloc(P, sizeof *r->ngram_h, "n-gram");
    size_t cap = 0, ncap = 0, m_ = 0, nn = 0;
    int err = !lg || !a || !sa || !dn || !ngr || !mark || !r->sup_indptr || !r->mass || !r->ngram_sub ||
              !r->ngram_indptr || !r->ngram_h;
    /* never NULL, even when empty (a dataset of 0 entries is written from them) */
    if (!err && (grow((void **)&r->ngram_token, &ncap, 1, sizeof(int32_t)) ||
                 !(r->ngram_count = cl_trymalloc(ncap, sizeof(int32_t), "n-gram rows")) ||
                 grow((void **)&r->sup_token, &cap, 1, sizeof(int32_t)) ||
                 !(r->sup_prob = cl_trymalloc(cap, sizeof(float), "support")) ||
                 !(r->sup_approx = cl_trymalloc(cap, sizeof(double), "support")) ||
                 (par->soft && !(r->sup_soft = cl_trymalloc(cap, sizeof(double), "support")))))
        err = 1;
    if (!err) r->sup_indptr[0] = 0, r->ngram_indptr[0] = 0;
    for (size_t p0 = 0; !err && p0 < P; p0 += T) {
        const size_t n = P - p0 < T ? P - p0 : T;
        cl_unembed(m, resid + p0 * C, n, lg);
        softmax_forward(lg, n, (int)V);
        for (size_t i = 0; !err && i < n; i++) {
            const size_t p = p0 + i;
            const float *q = lg + i * V;
            /* the exact-string n-gram of the last L tokens (explain's and the passage's baseline) */
            const size_t len = off[p + 1] - off[p];
            int64_t sub = len >= L ? cl_explain_find(ix, cp, tokens + off[p + 1] - L) : -1;
            if (sub == -2 || (sub >= 0 && cl_corpus_next_dense_read(cp, (size_t)sub, ngr))) {
                err = 1;
                break;
            }
            r->ngram_sub[p] = sub;
            size_t nt = 0;
            for (size_t v = 0; sub >= 0 && v < V; v++) nt += ngr[v] > 0;
            if (grow((void **)&r->ngram_token, &ncap, nn + nt, sizeof(int32_t)) ||
                resize((void **)&r->ngram_count, ncap, sizeof(int32_t))) {
                err = cl_error("out of memory for the n-gram rows");
                break;
            }
            for (size_t v = 0; sub >= 0 && v < V; v++)
                if (ngr[v] > 0) {
                    r->ngram_token[nn] = (int32_t)v, r->ngram_count[nn++] = ngr[v];
                    dn[v] = ngr[v], mark[v] = 1;
                }
            r->ngram_indptr[p + 1] = (int64_t)nn;
            r->ngram_h[p] = cl_hellinger_df(dn, q, V);
            /* the approximations (reduce's formula, blocks in order, as the dense path) */
            for (size_t b = 0; b < Lh; b++)
                for (int64_t e = r->cnt_indptr[p * Lh + b]; e < r->cnt_indptr[p * Lh + b + 1]; e++)
                    a[r->cnt_token[e]] += par->weights[b] * (double)r->cnt_count[e], mark[r->cnt_token[e]] = 1;
            for (size_t b = 0; par->soft && b < Lh; b++)
                for (int64_t e = sip[p * Lh + b]; e < sip[p * Lh + b + 1]; e++)
                    sa[stk[e]] += par->soft_w[b] * ldexp((double)sval[e], -64), mark[stk[e]] = 1;
            r->hellinger[p] = cl_hellinger_df(a, q, V);
            if (par->soft) r->soft_hellinger[p] = cl_hellinger_df(sa, q, V);
            /* the model's top tokens join the support */
            int32_t tid[CL_SCAN_MODEL_TOP];
            double tx[CL_SCAN_MODEL_TOP];
            int nt16 = 0;
            for (size_t v = 0; v < V; v++) top_put(tid, tx, &nt16, CL_SCAN_MODEL_TOP, q[v], (int32_t)v);
            for (int k = 0; k < nt16; k++) mark[tid[k]] = 1;
            /* the support in token order, the mass in token order (cl_hellinger_df's sum) */
            double sum = 0, asum = 0, ssum = 0, rest = 0;
            size_t ns = 0;
            for (size_t v = 0; v < V; v++) {
                double x = q[v] > 0 && isfinite((double)q[v]) ? (double)q[v] : 0;
                sum += x;
                if (!mark[v]) rest += x;
                else ns++;
                asum += a[v];
                if (par->soft) ssum += sa[v];
            }
            if (grow((void **)&r->sup_token, &cap, m_ + ns, sizeof(int32_t)) ||
                resize((void **)&r->sup_prob, cap, sizeof(float)) ||
                resize((void **)&r->sup_approx, cap, sizeof(double)) ||
                (par->soft && resize((void **)&r->sup_soft, cap, sizeof(double)))) {
                err = cl_error("out of memory for the model's support");
                break;
            }
            for (size_t v = 0; v < V; v++) {
                if (mark[v]) {
                    r->sup_token[m_] = (int32_t)v, r->sup_prob[m_] = q[v];
                    r->sup_approx[m_] = asum > 0 ? a[v] / asum : 0;
                    if (par->soft) r->sup_soft[m_] = ssum > 0 ? sa[v] / ssum : 0;
                    m_++;
                }
                mark[v] = 0, a[v] = 0, sa[v] = 0, dn[v] = 0;
            }
            r->sup_indptr[p + 1] = (int64_t)m_;
            r->mass[2 * p] = sum, r->mass[2 * p + 1] = rest;
            if (dense_row && dense_row(ctx, p, q)) err = 1;
        }
    }
    free(lg), free(a), free(sa), free(dn), free(ngr), free(mark);
    return err ? -1 : 0;
}

cl_explain_result *cl_explain_run(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                                  const size_t *off, size_t P, const cl_explain_params *par, MPI_Comm comm) {
    return cl_explain_run_rows(ix, m, cp, tokens, off, P, par, comm, NULL, NULL);
}

cl_explain_result *cl_explain_run_rows(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                                       const size_t *off, size_t P, const cl_explain_params *par, MPI_Comm comm,
                                       int (*dense_row)(void *ctx, size_t p, const float *q), void *ctx) {
    int rank, R;
    rank_size(comm, &rank, &R);
    const cl_config *c = &m->cfg;
    const size_t C = c->n_embd, V = c->vocab_size, NL = c->n_layer, Lh = ix->Lh, N = ix->N;
    const int K = par->top_k;
    const int sres = cl_explain_sparse_results(m); /* sparse results (explain.h) */
    int err = 0;
    /* ---- checks (the same on every rank) ---- */
    if (!ix->bpe != !m->bpe || !cp->bpe != !m->bpe)
        err = cl_error("%s, the corpus and the model do not all use the same kind of tokens (characters, GPT-2 BPE)",
                       ix->path);
    else if (ix->V != c->vocab_size ||
             (ix->bpe ? !cl_bpe_equal(ix->bpe, m->bpe) || !cl_bpe_equal(cp->bpe, m->bpe)
                      : memcmp(ix->vocab, m->vocab, V * sizeof(uint32_t)) != 0))
        err = cl_error("%s was built for another vocabulary (%d tokens; the model has %d)", ix->path, ix->V,
                       c->vocab_size);
    else if (ix->C != c->n_embd || ix->n_layer != c->n_layer)
        err = cl_error("%s was built for another model shape (n_embd %d, n_layer %d)", ix->path, ix->C, ix->n_layer);
    else if (cl_hook_width(c, (cl_hook_point)ix->hook_point) != ix->C || ix->hook_layer >= c->n_layer ||
             (ix->hook_layer < 0 ? ix->Lh != c->n_layer : ix->Lh != 1))
        err = cl_error("%s: hook \"%s\" (width %d, %d blocks) does not fit vectors of %d channels in %d blocks", ix->path,
                       ix->hook, cl_hook_width(c, (cl_hook_point)ix->hook_point), ix->hook_layer < 0 ? c->n_layer : 1,
                       ix->C, ix->Lh);
    else if (cp->n != N || cp->V != ix->V || cp->L != ix->L)
        err = cl_error("the corpus file has %zu substrings of length %d; %s has %zu of length %d", cp->n, cp->L,
                       ix->path, N, ix->L);
    else if (par->Lh != ix->Lh)
        err = cl_error("%d thresholds/weights given; the index has %d hooked blocks", par->Lh, ix->Lh);
    else if (P < 1 || P > 1000000 || Lh * P * C > 0x7fffffffu || (!sres && P * NL * V > 0x7fffffffu) ||
             P * NL * CL_EXPLAIN_LENS_TOP > 0x7fffffffu) {
        size_t per = sres ? NL * CL_EXPLAIN_LENS_TOP : NL * V;
        err = cl_error("%zu prompts: give 1 to %zu", P, (size_t)(0x7fffffffu / (Lh * C > per ? Lh * C : per)));
    }
    else if (K < 0 || K > 100000)
        err = cl_error("--top %d is outside 0..100000", K);
    for (size_t p = 0; !err && p < P; p++) {
        size_t T = off[p + 1] - off[p];
        if (T < 1 || T > (size_t)c->block_size)
            err = cl_error("prompt %zu has %zu characters; 1..%d (block_size) are allowed", p + 1, T, c->block_size);
        for (size_t t = 0; !err && t < T; t++)
            if (tokens[off[p] + t] < 0 || tokens[off[p] + t] >= (int32_t)V)
                err = cl_error("prompt %zu: token id %d outside the vocabulary", p + 1, tokens[off[p] + t]);
    }
    for (size_t b = 0; !err && b < Lh; b++) {
        if (!(par->thresholds[b] >= -1 && par->thresholds[b] <= 1))
            err = cl_error("threshold %g of block %zu is outside [-1, 1]", par->thresholds[b], b);
        else if (!(par->weights[b] >= 0) || !isfinite(par->weights[b]))
            err = cl_error("weight %g of block %zu is negative", par->weights[b], b);
        else if (par->soft && (!(par->T[b] > 0) || !isfinite(par->T[b]) || !(par->soft_w[b] >= 0)))
            err = cl_error("soft kernel of block %zu: temperature %g must be > 0 and weight %g >= 0", b, par->T[b],
                           par->soft_w[b]);
    }
    if (!err && par->soft && !(par->soft_floor >= -1 && par->soft_floor < 1))
        err = cl_error("--soft-floor %g is outside [-1, 1)", par->soft_floor);
    if (cl_par_agree(err, comm)) return NULL;

    cl_explain_result *r = cl_trycalloc(1, sizeof *r, "explain result");
    float *pvec = NULL, *rows = NULL, *sims = NULL, *lsim = NULL, *gsim = NULL;
    void *hbuf = NULL;
    int64_t *lsub = NULL, *gsub = NULL;
    int *lfill = NULL;
    u128 *soft = NULL;
    float *resid = NULL;
    int64_t *nip = NULL;
    int32_t *ntk = NULL, *ncn = NULL;
    const char *ce = getenv("CORPUSLENS_EXPLAIN_COUNTS");
    int sparse = m->bpe != NULL || V > CL_EXPLAIN_DENSE_MAX_V;
    if (ce && !strcmp(ce, "csr")) sparse = 1;
    else if (ce && !strcmp(ce, "dense")) sparse = 0;
    match_list ml = {.elem = sizeof(uint64_t)}, sl = {.elem = sizeof(match_rec)};
    int64_t *sip = NULL;
    int32_t *stk = NULL;
    u128 *sval = NULL;
    size_t cr = ix->chunk_rows, RB = cr * (RB_TARGET / cr > 0 ? RB_TARGET / cr : 1);
    if (RB > N) RB = N;
    if (r) {
        r->P = P, r->Lh = (int)Lh, r->NL = (int)NL, r->V = (int)V, r->K = K;
        if (sres) {
            r->lens_h = cl_trycalloc(P * NL, sizeof(double), "logit lens H");
            r->lens_top_id = cl_trycalloc(P * NL * CL_EXPLAIN_LENS_TOP, sizeof(int32_t), "logit lens top");
            r->lens_top_p = cl_trycalloc(P * NL * CL_EXPLAIN_LENS_TOP, sizeof(float), "logit lens top");
            resid = cl_trycalloc(P * C, sizeof(float), "last residuals");
        } else {
            r->model_probs = cl_trycalloc(P * V, sizeof(float), "model probabilities");
            r->lens = cl_trycalloc(P * NL * V, sizeof(float), "logit lens");
        }
        r->counts = sparse ? NULL : cl_trycalloc(P * Lh * V, sizeof(int64_t), "block counts");
        r->n_matches = cl_trycalloc(P * Lh, sizeof(int64_t), "match counts");
        r->near = cl_trycalloc(P * Lh, sizeof(int64_t), "near-threshold counts");
        r->checked = cl_trycalloc(Lh, sizeof(int64_t), "rows checked");
        r->pairs = cl_trycalloc(Lh, sizeof(int64_t), "pairs checked");
        pvec = cl_trycalloc(Lh * P * C, sizeof(float), "prompt vectors");
        rows = cl_trymalloc(RB * C, sizeof(float), "index rows");
        hbuf = ix->dtype == CL_INDEX_F16 ? cl_trymalloc(RB * C, 2, "index rows (float16)") : NULL;
        sims = cl_trymalloc((size_t)PT * RB, sizeof(float), "similarity tile");
        if (K > 0) {
            lsim = cl_trymalloc(P * Lh * K, sizeof(float), "top matches");
            lsub = cl_trymalloc(P * Lh * K, sizeof(int64_t), "top matches");
            lfill = cl_trycalloc(P * Lh, sizeof(int), "top matches");
        }
        if (par->soft && !sparse) soft = cl_trycalloc(P * Lh * V, sizeof(u128), "soft-kernel sums");
    }
    if (!r || (sres ? !r->lens_h || !r->lens_top_id || !r->lens_top_p || !resid : !r->model_probs || !r->lens) ||
        (!sparse && !r->counts) || !r->n_matches || !r->near || !r->checked || !r->pairs || !pvec || !rows ||
        (ix->dtype == CL_INDEX_F16 && !hbuf) || !sims || (K > 0 && (!lsim || !lsub || !lfill)) ||
        (par->soft && !sparse && !soft))
        err = 1;
    if (cl_par_agree(err, comm)) goto fail;
    double t0 = cl_wall_seconds();
    sparse_fwd sf = {.lens_h = sres ? r->lens_h : NULL, .top_id = sres ? r->lens_top_id : NULL,
                     .top_p = sres ? r->lens_top_p : NULL, .resid = resid};
    if (prompts_forward(ix, m, tokens, off, P, pvec, r->model_probs, r->lens, sres ? &sf : NULL, rank, R, comm))
        goto fail;
    double t1 = cl_wall_seconds();
    r->seconds_prompts = t1 - t0;

    /* ---- the search over this rank's rows: whole chunks, contiguous ---- */
    size_t nch = (N + cr - 1) / cr, c0 = nch * (size_t)rank / (size_t)R, c1 = nch * (size_t)(rank + 1) / (size_t)R;
    size_t row0 = c0 * cr, row1 = c1 * cr < N ? c1 * cr : N;
    int direct = 0, use_sketch = 0;
#if HAVE_DIRECT
    /* any P: dot_f16 gives each prompt the same float32 dot product whatever
       the other prompts (groups of DIRECT_MAX), so a prompt's result does not
       depend on its batch; the sketch's bound for more prompts is one product
       (sketch_batch) */
    direct = ix->map && C % 8 == 0 && cpu_direct();
    const char *sk_env = getenv("CORPUSLENS_SKETCH");
    use_sketch = direct && ix->sketch && !(sk_env && *sk_env == '0');
#endif
    r->sketch = use_sketch;
    visit_ctx vc = {.par = par, .cp = cp, .r = r, .soft = soft, .ml = sparse ? &ml : NULL,
                    .sl = sparse && par->soft ? &sl : NULL, .lsim = lsim, .lsub = lsub, .lfill = lfill, .K = K,
                    .V = V, .Lh = Lh, .sub = ix->substring, .cip = cp->next_indptr, .ctk = cp->next_token,
                    .cct = cp->next_count};
    /* the counts left in the file (cl_corpus_open_rows): the dense search
       adds those of this rank's rows only, so the rank reads those (the
       sparse search records matches; rank 0 reads theirs in sparse_rows) */
    cl_counts_set cset;
    memset(&cset, 0, sizeof cset);
    if (!cp->next_indptr && !sparse) {
        if (cl_counts_set_init(&cset, cp->n) < 0) err = 1;
        for (size_t i = row0; !err && i < row1; i++) {
            if (ix->substring[i] < 0 || (size_t)ix->substring[i] >= cp->n) {
                err = cl_error("%s: row %zu names substring %d (the corpus has %zu)", ix->path, i, ix->substring[i], cp->n);
                break;
            }
            cl_counts_set_add(&cset, (size_t)ix->substring[i]);
        }
        if (!err && cl_corpus_read_counts_set(cp, &cset) < 0) err = 1;
        vc.cip = cset.indptr, vc.ctk = cset.next_token, vc.cct = cset.next_count, vc.cset = &cset;
    }
    if (cl_par_agree(err, comm)) {
        cl_counts_set_free(&cset);
        goto fail;
    }
    /* the counts in row order: held by the server (cl_explain_hold_counts) for
       this corpus, or, for a passage (many windows), copied for this call from
       the corpus's counts or this rank's (cset) */
    if (!sparse && ix->row_indptr && ix->row_corpus == (const void *)cp)
        vc.nip = ix->row_indptr, vc.ntk = ix->row_token, vc.ncn = ix->row_count;
#if HAVE_DIRECT
    else if (use_sketch && P > DIRECT_MAX && !sparse && !err) {
        if (rows_in_order(&vc, N, row0, row1, &nip, &ntk, &ncn)) err = 1;
        else vc.nip = nip, vc.ntk = ntk, vc.ncn = ncn;
    }
    if (use_sketch && !err) {
        sketch_pool sp = {.ix = ix, .vc = &vc, .pvec = pvec, .P = P, .row0 = row0, .row1 = row1};
        /* the sparse counts' match lists (ml, sl) are one per search, not per
           block: their pushes would race across threads, so one thread */
        if (sketch_blocks(&sp, sparse ? 1 : par->threads)) err = 1;
    }
#endif
    for (size_t b = 0; !err && !use_sketch && b < Lh; b++) {
        const double thr = par->thresholds[b];
        const double invT = par->soft ? 1.0 / par->T[b] : 0;
        double gate = explain_gate(par, b);
        r->checked[b] = (int64_t)(row1 - row0);
        r->pairs[b] = r->checked[b] * (int64_t)P;
        for (size_t r0 = row0; !err && r0 < row1; r0 += RB) {
            size_t n = row1 - r0 < RB ? row1 - r0 : RB;
            if (!direct && cl_index_read_rows(ix, (int)b, r0, n, rows, hbuf)) {
                err = 1;
                break;
            }
            for (size_t p0 = 0; p0 < P; p0 += PT) {
                size_t np = P - p0 < PT ? P - p0 : PT;
#if HAVE_DIRECT
                if (direct) {
                    /* row blocks start on chunk boundaries (whole chunks per rank, RB a multiple of them) */
                    for (size_t c0 = r0; c0 < r0 + n; c0 += cr) {
                        size_t nr = r0 + n - c0 < cr ? r0 + n - c0 : cr;
                        for (size_t g0 = 0; g0 < np; g0 += DIRECT_MAX)
                            dot_f16(cl_index_chunk_f16(ix, (int)b, c0 / cr), nr, C, pvec + (b * P + p0 + g0) * C,
                                    np - g0 < DIRECT_MAX ? np - g0 : DIRECT_MAX, sims + g0 * n + (c0 - r0), n);
                    }
                } else
#endif
                cl_sgemm_nt(np, n, C, pvec + (b * P + p0) * C, C, rows, C, sims, n, 0);
                for (size_t i = 0; i < np; i++) {
                    size_t p = p0 + i, pb = p * Lh + b;
                    const float *row = sims + i * n;
                    float *ts = K ? lsim + pb * K : NULL;
                    for (size_t s16 = 0; s16 < n; s16 += 16) {
                        /* skip 16 at a time below every rule's floor (visit is exact) */
                        double g = gate;
                        if (K) g = lfill[pb] < K ? -INFINITY : (ts[K - 1] < g ? ts[K - 1] : g);
                        float gf = nextafterf((float)g, -INFINITY);
                        if (s16 + 16 <= n && !scan_any_above16(row + s16, gf)) continue;
                        size_t e16 = s16 + 16 < n ? s16 + 16 : n;
                        for (size_t s = s16; s < e16; s++)
                            visit(&vc, pb, thr, gate, invT, row[s], r0 + s);
                    }
                }
            }
        }
    }
    cl_counts_set_free(&cset);
    free(nip), free(ntk), free(ncn);
    nip = NULL, ntk = ncn = NULL;
    if (ml.err || sl.err) err = 1;
    if (cl_par_agree(err, comm)) goto fail;
    r->seconds_search = cl_wall_seconds() - t1;
    if (sparse && (gather_matches(&ml, rank, R, comm) || (par->soft && gather_matches(&sl, rank, R, comm)))) goto fail;

    /* ---- merge on rank 0: exact sums, top-K by the total order ---- */
    if (R > 1) {
        if (!sparse)
            MPI_Reduce(rank ? r->counts : MPI_IN_PLACE, r->counts, (int)(P * Lh * V), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->n_matches : MPI_IN_PLACE, r->n_matches, (int)(P * Lh), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->near : MPI_IN_PLACE, r->near, (int)(P * Lh), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->checked : MPI_IN_PLACE, r->checked, (int)Lh, MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->pairs : MPI_IN_PLACE, r->pairs, (int)Lh, MPI_INT64_T, MPI_SUM, 0, comm);
        if (soft) {
            MPI_Datatype t16;
            MPI_Op op;
            MPI_Type_contiguous(16, MPI_BYTE, &t16);
            MPI_Type_commit(&t16);
            MPI_Op_create(u128_sum, 1, &op);
            MPI_Reduce(rank ? soft : MPI_IN_PLACE, soft, (int)(P * Lh * V), t16, op, 0, comm);
            MPI_Op_free(&op);
            MPI_Type_free(&t16);
        }
    }
    if (K > 0) {
        size_t nk = P * Lh * (size_t)K;
        for (size_t pb = 0; pb < P * Lh; pb++)
            for (int k = lfill[pb]; k < K; k++) lsim[pb * K + k] = -INFINITY, lsub[pb * K + k] = INT64_MAX;
        if (rank == 0) {
            gsim = cl_trymalloc(nk * (size_t)R, sizeof(float), "top matches");
            gsub = cl_trymalloc(nk * (size_t)R, sizeof(int64_t), "top matches");
            r->top_sim = cl_trymalloc(nk, sizeof(float), "top matches");
            r->top_sub = cl_trymalloc(nk, sizeof(int64_t), "top matches");
            if (!gsim || !gsub || !r->top_sim || !r->top_sub) err = 1;
        }
        if (cl_par_agree(err, comm)) goto fail;
        if (nk * (size_t)R > 0x7fffffffu) {
            err = cl_error("too many top matches to gather (%zu)", nk * (size_t)R);
        }
        if (cl_par_agree(err, comm)) goto fail;
        if (R > 1) {
            MPI_Gather(lsim, (int)nk, MPI_FLOAT, gsim, (int)nk, MPI_FLOAT, 0, comm);
            MPI_Gather(lsub, (int)nk, MPI_INT64_T, gsub, (int)nk, MPI_INT64_T, 0, comm);
        } else {
            memcpy(gsim, lsim, nk * sizeof *gsim);
            memcpy(gsub, lsub, nk * sizeof *gsub);
        }
        if (rank == 0) {
            for (size_t pb = 0; pb < P * Lh; pb++) {
                float *ts = r->top_sim + pb * K;
                int64_t *tu = r->top_sub + pb * K;
                int fill = 0;
                for (int q = 0; q < R; q++)
                    for (int k = 0; k < K; k++) {
                        float s = gsim[(size_t)q * nk + pb * K + k];
                        int64_t u = gsub[(size_t)q * nk + pb * K + k];
                        if (u != INT64_MAX) top_insert(ts, tu, &fill, K, s, u);
                    }
                for (int k = fill; k < K; k++) ts[k] = NAN, tu[k] = -1;
            }
        }
    }

    /* ---- the approximations (rank 0): reduce's formula, blocks in order ---- */
    if (rank == 0) {
        if (!sres) r->approx = cl_trycalloc(P * V, sizeof(double), "approximation");
        r->hellinger = cl_trymalloc(P, sizeof(double), "hellinger");
        if (par->soft) {
            if (!sres) r->soft_approx = cl_trycalloc(P * V, sizeof(double), "soft approximation");
            r->soft_hellinger = cl_trymalloc(P, sizeof(double), "soft hellinger");
        }
        if ((!sres && !r->approx) || !r->hellinger || (par->soft && ((!sres && !r->soft_approx) || !r->soft_hellinger)))
            err = 1;
        if (!err && sparse &&
            (sparse_rows(cp, &ml, P * Lh, V, 0, &r->cnt_indptr, &r->cnt_token, &r->cnt_count, NULL) ||
             (par->soft && sparse_rows(cp, &sl, P * Lh, V, 1, &sip, &stk, NULL, &sval))))
            err = 1;
        if (!err && sres && sparse_results(ix, m, cp, tokens, off, par, r, resid, sip, stk, sval, dense_row, ctx))
            err = 1;
        for (size_t p = 0; !err && !sres && p < P; p++) {
            const float *q = r->model_probs + p * V;
            double *a = r->approx + p * V;
            /* sparse: only the nonzero terms, per token in the same block order (adding the dense path's
               zeros changes no bit) */
            for (size_t b = 0; sparse && b < Lh; b++)
                for (int64_t e = r->cnt_indptr[p * Lh + b]; e < r->cnt_indptr[p * Lh + b + 1]; e++)
                    a[r->cnt_token[e]] += par->weights[b] * (double)r->cnt_count[e];
            for (size_t b = 0; !sparse && b < Lh; b++)
                for (size_t v = 0; v < V; v++) a[v] += par->weights[b] * (double)r->counts[(p * Lh + b) * V + v];
            double sum = 0;
            for (size_t v = 0; v < V; v++) sum += a[v];
            r->hellinger[p] = cl_hellinger_df(a, q, V);
            for (size_t v = 0; v < V; v++) a[v] = sum > 0 ? a[v] / sum : 0;
            if (par->soft) {
                double *sa = r->soft_approx + p * V;
                for (size_t b = 0; sparse && b < Lh; b++)
                    for (int64_t e = sip[p * Lh + b]; e < sip[p * Lh + b + 1]; e++)
                        sa[stk[e]] += par->soft_w[b] * ldexp((double)sval[e], -64);
                for (size_t b = 0; !sparse && b < Lh; b++)
                    for (size_t v = 0; v < V; v++)
                        sa[v] += par->soft_w[b] * ldexp((double)soft[(p * Lh + b) * V + v], -64);
                sum = 0;
                for (size_t v = 0; v < V; v++) sum += sa[v];
                r->soft_hellinger[p] = cl_hellinger_df(sa, q, V);
                for (size_t v = 0; v < V; v++) sa[v] = sum > 0 ? sa[v] / sum : 0;
            }
        }
    } else {
        /* only rank 0 holds the results */
        free(r->counts), free(r->n_matches), free(r->near), free(r->model_probs), free(r->lens);
        free(r->lens_h), free(r->lens_top_id), free(r->lens_top_p);
        r->counts = r->n_matches = r->near = NULL;
        r->model_probs = r->lens = NULL;
        r->lens_h = NULL, r->lens_top_id = NULL, r->lens_top_p = NULL;
    }
    free(ml.a), free(sl.a), free(sip), free(stk), free(sval);
    ml.a = sl.a = NULL, sip = NULL, stk = NULL, sval = NULL;
    if (cl_par_agree(err, comm)) goto fail;
    free(pvec), free(rows), free(hbuf), free(sims), free(lsim), free(lsub), free(lfill), free(soft), free(gsim),
        free(gsub), free(resid);
    return r;
fail:
    free(pvec), free(rows), free(hbuf), free(sims), free(lsim), free(lsub), free(lfill), free(soft), free(gsim),
        free(gsub), free(nip), free(ntk), free(ncn), free(resid);
    free(ml.a), free(sl.a), free(sip), free(stk), free(sval);
    cl_explain_result_free(r);
    return NULL;
}

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
#include "corpuslens/scan/sketch.h"
#include "scan/scan_internal.h"

#define RB_TARGET 8192
#define PT 512
#define PBATCH 256

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
        have = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    return have;
}

/* out[i * ld + s] = dot(h[s, :], pv[i, :]) for s < rows, i < P: the same
 * bits as the full path's cl_sgemm_nt on the widened rows (gemm.h), so a
 * prompt's similarities do not depend on P nor on the path. */
static void dot_f16(const uint16_t *h, size_t rows, size_t C, const float *pv, size_t P, float *out, size_t ld) {
    cl_sgemm_nt_f16(P, rows, C, pv, C, h, C, out, ld);
}
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
    free(r->checked);
    free(r);
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

/* Model probabilities, logit lens and normalised hooked vectors of the
 * prompts: batches of up to PBATCH consecutive prompts of equal length,
 * batch c on rank c mod R, summed over ranks (zero-filled: exact). */
static int prompts_forward(const cl_index *ix, const cl_model *m, const int32_t *tokens, const size_t *off, size_t P,
                           float *pvec, float *probs, float *lens, int rank, int R, MPI_Comm comm) {
    const cl_config *c = &m->cfg;
    const size_t C = c->n_embd, V = c->vocab_size, NL = c->n_layer, Lh = ix->Lh;
    size_t Tmax = 1;
    for (size_t p = 0; p < P; p++)
        if (off[p + 1] - off[p] > Tmax) Tmax = off[p + 1] - off[p];
    int Bmax = Tmax <= 16 ? PBATCH : (int)(4096 / Tmax > 0 ? 4096 / Tmax : 1);
    int err = 0;
    float *cap = cl_trymalloc(Lh * Bmax * C, sizeof(float), "prompt capture");
    float *res = cl_trymalloc(NL * Bmax * C, sizeof(float), "prompt residuals");
    float *lg = cl_trymalloc(Bmax * V, sizeof(float), "prompt lens logits");
    float *logits = cl_trymalloc(Bmax * V, sizeof(float), "prompt logits");
    int32_t *tok = cl_trymalloc((size_t)Bmax * Tmax, sizeof(int32_t), "prompt tokens");
    cl_forward *f = NULL;
    if (!cap || !res || !lg || !logits || !tok || !(f = cl_forward_create(m, Bmax, (int)Tmax))) err = 1;
    size_t ch = 0;
    for (size_t i0 = 0; !err && i0 < P; ch++) {
        size_t T = off[i0 + 1] - off[i0];
        int B = 1;
        while (i0 + B < P && B < Bmax && off[i0 + B + 1] - off[i0 + B] == T) B++;
        if ((int)(ch % (size_t)R) == rank) {
            for (int b = 0; b < B; b++) memcpy(tok + (size_t)b * T, tokens + off[i0 + b], T * sizeof(int32_t));
            int hook_layer = ix->Lh == c->n_layer ? -1 : ix->first_block;
            cl_hook_point pt;
            int layer;
            cl_hook_parse(ix->hook, c->n_layer, &pt, &layer);
            cl_hook hooks[2] = {{.point = pt, .layer = hook_layer, .mode = CL_HOOK_CAPTURE_LAST, .out = cap},
                                {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = res}};
            if (cl_forward_run(f, tok, B, (int)T, hooks, 2, CL_LOGITS_LAST, logits)) {
                err = 1;
                break;
            }
            for (size_t h = 0; h < Lh; h++)
                for (int b = 0; b < B; b++)
                    memcpy(pvec + (h * P + i0 + b) * C, cap + (h * B + b) * C, C * sizeof(float));
            softmax_forward(logits, (size_t)B, (int)V);
            memcpy(probs + i0 * V, logits, (size_t)B * V * sizeof(float));
            for (size_t l = 0; l < NL; l++) {
                cl_unembed(m, res + l * B * C, (size_t)B, lg);
                softmax_forward(lg, (size_t)B, (int)V);
                for (int b = 0; b < B; b++)
                    memcpy(lens + ((i0 + b) * NL + l) * V, lg + (size_t)b * V, V * sizeof(float));
            }
        }
        i0 += (size_t)B;
    }
    cl_forward_free(f);
    free(cap), free(res), free(lg), free(logits), free(tok);
    if (cl_par_agree(err, comm)) return -1;
    if (R > 1) {
        /* element counts stay far below INT_MAX for any sane prompt count (checked by the caller) */
        MPI_Allreduce(MPI_IN_PLACE, pvec, (int)(Lh * P * C), MPI_FLOAT, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, probs, (int)(P * V), MPI_FLOAT, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, lens, (int)(P * NL * V), MPI_FLOAT, MPI_SUM, comm);
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
    float *lsim;
    int64_t *lsub;
    int *lfill;
    int K;
    size_t V, Lh;
} visit_ctx;

static inline void visit(const visit_ctx *x, size_t pb, double thr, double gate, double invT, float v, int64_t sub) {
    const int K = x->K;
    const cl_corpus *cp = x->cp;
    if (K) {
        float *ts = x->lsim + pb * K;
        int64_t *tu = x->lsub + pb * K;
        if (x->lfill[pb] < K || before(v, sub, ts[K - 1], tu[K - 1])) top_insert(ts, tu, &x->lfill[pb], K, v, sub);
    }
    double vd = v;
    if (!(vd > gate)) return;
    if (vd > thr) {
        int64_t *cnt = x->r->counts + pb * x->V;
        x->r->n_matches[pb]++;
        for (int64_t e = cp->next_indptr[sub]; e < cp->next_indptr[sub + 1]; e++) cnt[cp->next_token[e]] += cp->next_count[e];
    }
    if (fabs(vd - thr) <= CL_EXPLAIN_NEAR) x->r->near[pb]++;
    if (x->soft && vd > x->par->soft_floor) {
        u128 *sft = x->soft + pb * x->V;
        u128 q = (u128)ldexp(exp((vd - 1.0) * invT), 64);
        for (int64_t e = cp->next_indptr[sub]; e < cp->next_indptr[sub + 1]; e++)
            sft[cp->next_token[e]] += q * (u128)cp->next_count[e];
    }
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
    double floor_[DIRECT_MAX];
    int rc = -1;
    /* rows to multiply: SK_DOT (step 3) or up to 256 (step 2) */
    _Static_assert(SK_DOT <= 256, "rows16 holds SK_DOT rows");
    uint16_t *rows16 = cl_trymalloc(256 * C, 2, "sketch rows (float16)");
    /* surviving rows by pread: on the development VM a page fault per row of
       the 4 GB mapping cost 2.6x the CPU time of a pread (README, Performance) */
    int use_pread = sk->fd >= 0;
    if (!ub || !co || !re || !rows16) goto done;
    for (size_t i = 0; i < P; i++) cl_sketch_query(sk, b, pv + i * C, cq + i * k, &rq[i]);
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
            } else g = -INFINITY; /* fewer rows than K (or K > 256): no floor from the top list */
        }
        floor_[i] = g - sk->slack;
    }
    int64_t cnt = 0;
    size_t nq = 0, qrow[SK_DOT]; /* surviving rows, multiplied SK_DOT at a time, visited in row order */
    for (size_t s = 0; s <= n; s++) {
        if (s < n) {
            int any = 0;
            for (size_t i = 0; i < P; i++) any |= ub[i * n + s] >= floor_[i];
            if (!any) continue;
            cnt++;
            size_t row = row0 + s;
            const uint16_t *h = ROW(row);
            if (use_pread) {
                if (pread_index_row(sk->fd, rows16 + nq * C, C * 2,
                                    (unsigned long long)((const unsigned char *)h - ix->map)))
                    goto done;
            } else memcpy(rows16 + nq * C, h, C * 2);
            qrow[nq++] = row;
            if (nq < SK_DOT) continue;
        }
        if (!nq) continue;
        dot_f16(rows16, nq, C, pv, P, sim, SK_DOT);
        for (size_t q = 0; q < nq; q++)
            for (size_t i = 0; i < P; i++)
                visit(x, i * Lh + (size_t)b, thr, gate, invT, sim[i * SK_DOT + q], ix->substring[qrow[q]]);
        nq = 0;
    }
#undef ROW
    *checked = cnt;
    rc = 0;
done:
    free(ub), free(co), free(re), free(rows16);
    return rc;
}
#endif

cl_explain_result *cl_explain_run(const cl_index *ix, const cl_model *m, const cl_corpus *cp, const int32_t *tokens,
                                  const size_t *off, size_t P, const cl_explain_params *par, MPI_Comm comm) {
    int rank, R;
    rank_size(comm, &rank, &R);
    const cl_config *c = &m->cfg;
    const size_t C = c->n_embd, V = c->vocab_size, NL = c->n_layer, Lh = ix->Lh, N = ix->N;
    const int K = par->top_k;
    int err = 0;
    /* ---- checks (the same on every rank) ---- */
    if (ix->V != c->vocab_size || memcmp(ix->vocab, m->vocab, V * sizeof(uint32_t)))
        err = cl_error("%s was built for another vocabulary (%d tokens; the model has %d)", ix->path, ix->V,
                       c->vocab_size);
    else if (ix->C != c->n_embd || ix->n_layer != c->n_layer)
        err = cl_error("%s was built for another model shape (n_embd %d, n_layer %d)", ix->path, ix->C, ix->n_layer);
    else if (cp->n != N || cp->V != ix->V || cp->L != ix->L)
        err = cl_error("the corpus file has %zu substrings of length %d; %s has %zu of length %d", cp->n, cp->L,
                       ix->path, N, ix->L);
    else if (par->Lh != ix->Lh)
        err = cl_error("%d thresholds/weights given; the index has %d hooked blocks", par->Lh, ix->Lh);
    else if (P < 1 || P > 1000000 || Lh * P * C > 0x7fffffffu || P * NL * V > 0x7fffffffu)
        err = cl_error("%zu prompts: give 1 to %zu", P, (size_t)(0x7fffffffu / (Lh * C > NL * V ? Lh * C : NL * V)));
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
    size_t cr = ix->chunk_rows, RB = cr * (RB_TARGET / cr > 0 ? RB_TARGET / cr : 1);
    if (RB > N) RB = N;
    if (r) {
        r->P = P, r->Lh = (int)Lh, r->NL = (int)NL, r->V = (int)V, r->K = K;
        r->model_probs = cl_trycalloc(P * V, sizeof(float), "model probabilities");
        r->lens = cl_trycalloc(P * NL * V, sizeof(float), "logit lens");
        r->counts = cl_trycalloc(P * Lh * V, sizeof(int64_t), "block counts");
        r->n_matches = cl_trycalloc(P * Lh, sizeof(int64_t), "match counts");
        r->near = cl_trycalloc(P * Lh, sizeof(int64_t), "near-threshold counts");
        r->checked = cl_trycalloc(Lh, sizeof(int64_t), "rows checked");
        pvec = cl_trycalloc(Lh * P * C, sizeof(float), "prompt vectors");
        rows = cl_trymalloc(RB * C, sizeof(float), "index rows");
        hbuf = ix->dtype == CL_INDEX_F16 ? cl_trymalloc(RB * C, 2, "index rows (float16)") : NULL;
        sims = cl_trymalloc((size_t)PT * RB, sizeof(float), "similarity tile");
        if (K > 0) {
            lsim = cl_trymalloc(P * Lh * K, sizeof(float), "top matches");
            lsub = cl_trymalloc(P * Lh * K, sizeof(int64_t), "top matches");
            lfill = cl_trycalloc(P * Lh, sizeof(int), "top matches");
        }
        if (par->soft) soft = cl_trycalloc(P * Lh * V, sizeof(u128), "soft-kernel sums");
    }
    if (!r || !r->model_probs || !r->lens || !r->counts || !r->n_matches || !r->near || !r->checked || !pvec || !rows ||
        (ix->dtype == CL_INDEX_F16 && !hbuf) || !sims || (K > 0 && (!lsim || !lsub || !lfill)) ||
        (par->soft && !soft))
        err = 1;
    if (cl_par_agree(err, comm)) goto fail;
    double t0 = cl_wall_seconds();
    if (prompts_forward(ix, m, tokens, off, P, pvec, r->model_probs, r->lens, rank, R, comm)) goto fail;
    double t1 = cl_wall_seconds();
    r->seconds_prompts = t1 - t0;

    /* ---- the search over this rank's rows: whole chunks, contiguous ---- */
    size_t nch = (N + cr - 1) / cr, c0 = nch * (size_t)rank / (size_t)R, c1 = nch * (size_t)(rank + 1) / (size_t)R;
    size_t row0 = c0 * cr, row1 = c1 * cr < N ? c1 * cr : N;
    int direct = 0, use_sketch = 0;
#if HAVE_DIRECT
    direct = ix->map && P <= DIRECT_MAX && C % 8 == 0 && cpu_direct();
    const char *sk_env = getenv("CORPUSLENS_SKETCH");
    use_sketch = direct && ix->sketch && !(sk_env && *sk_env == '0');
#endif
    r->sketch = use_sketch;
    visit_ctx vc = {.par = par, .cp = cp, .r = r, .soft = soft, .lsim = lsim, .lsub = lsub, .lfill = lfill, .K = K,
                    .V = V, .Lh = Lh};
    for (size_t b = 0; !err && b < Lh; b++) {
        const double thr = par->thresholds[b], lo_near = thr - CL_EXPLAIN_NEAR;
        const double invT = par->soft ? 1.0 / par->T[b] : 0;
        /* gate: the smallest similarity any rule needs (pairs below it do nothing) */
        double gate = lo_near;
        if (par->soft && par->soft_floor < gate) gate = par->soft_floor;
#if HAVE_DIRECT
        if (use_sketch) {
            if (sketch_block(ix, &vc, (int)b, pvec + b * P * C, P, row0, row1, thr, gate, invT, &r->checked[b])) err = 1;
            continue;
        }
#endif
        r->checked[b] = (int64_t)(row1 - row0);
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
                        dot_f16(cl_index_chunk_f16(ix, (int)b, c0 / cr), nr, C, pvec + b * P * C, P, sims + (c0 - r0),
                                n);
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
                            visit(&vc, pb, thr, gate, invT, row[s], ix->substring[r0 + s]);
                    }
                }
            }
        }
    }
    if (cl_par_agree(err, comm)) goto fail;
    r->seconds_search = cl_wall_seconds() - t1;

    /* ---- merge on rank 0: exact sums, top-K by the total order ---- */
    if (R > 1) {
        MPI_Reduce(rank ? r->counts : MPI_IN_PLACE, r->counts, (int)(P * Lh * V), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->n_matches : MPI_IN_PLACE, r->n_matches, (int)(P * Lh), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->near : MPI_IN_PLACE, r->near, (int)(P * Lh), MPI_INT64_T, MPI_SUM, 0, comm);
        MPI_Reduce(rank ? r->checked : MPI_IN_PLACE, r->checked, (int)Lh, MPI_INT64_T, MPI_SUM, 0, comm);
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
        r->approx = cl_trycalloc(P * V, sizeof(double), "approximation");
        r->hellinger = cl_trymalloc(P, sizeof(double), "hellinger");
        if (soft) {
            r->soft_approx = cl_trycalloc(P * V, sizeof(double), "soft approximation");
            r->soft_hellinger = cl_trymalloc(P, sizeof(double), "soft hellinger");
        }
        if (!r->approx || !r->hellinger || (soft && (!r->soft_approx || !r->soft_hellinger))) err = 1;
        for (size_t p = 0; !err && p < P; p++) {
            const float *q = r->model_probs + p * V;
            double *a = r->approx + p * V;
            for (size_t b = 0; b < Lh; b++)
                for (size_t v = 0; v < V; v++) a[v] += par->weights[b] * (double)r->counts[(p * Lh + b) * V + v];
            double sum = 0;
            for (size_t v = 0; v < V; v++) sum += a[v];
            r->hellinger[p] = cl_hellinger_df(a, q, V);
            for (size_t v = 0; v < V; v++) a[v] = sum > 0 ? a[v] / sum : 0;
            if (soft) {
                double *sa = r->soft_approx + p * V;
                for (size_t b = 0; b < Lh; b++)
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
        r->counts = r->n_matches = r->near = NULL;
        r->model_probs = r->lens = NULL;
    }
    if (cl_par_agree(err, comm)) goto fail;
    free(pvec), free(rows), free(hbuf), free(sims), free(lsim), free(lsub), free(lfill), free(soft), free(gsim),
        free(gsub);
    return r;
fail:
    free(pvec), free(rows), free(hbuf), free(sims), free(lsim), free(lsub), free(lfill), free(soft), free(gsim),
        free(gsub);
    cl_explain_result_free(r);
    return NULL;
}

/* scan.h5's binned next-token counts as CSR (next_layout "csr", h5schema.h):
 * /freq/next/indptr [P Lh NB + 1] (int64), /freq/next/token and
 * /freq/next/count [nnz] (int32), the rows (prompt, block, bin) in row-major
 * order, the tokens of a row increasing, every stored count > 0. The file
 * size follows the nonzero counts, not V.
 *
 * The scan accumulates them sparse too (scan_srow: per row, a sorted merged
 * part and an appended tail, compacted when the row's buffer is full), so
 * that its memory and checkpoints follow the distinct (row, token) pairs.
 *
 * Written in prompt slices: each rank compacts its rows of a slice and sends
 * them to their owners (a block of the slice's prompts per rank, in rank
 * order; MPI_Alltoallv), each owner merges the R lists of every row. The
 * global order is slice by slice, within a slice rank by rank: the rows'
 * order whatever R. An MPI_Exscan per slice gives each rank the offset of its
 * entries; after the last slice every rank writes its ranges of the three
 * datasets in one collective write each. The datasets are contiguous (not
 * chunked): their bytes do not depend on how the ranks cut them, so 1 or R
 * ranks write the same file. Memory: this rank's nonzeros and one slice's
 * exchange buffers. */
#include <hdf5.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5par.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/par/par.h"
#include "scan_internal.h"

#define SROW_TOK(e) ((int32_t)((e) >> 32))
#define SROW_CNT(e) ((int32_t)(uint32_t)(e))

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int scratch_reserve(scan_ctx *x, size_t n) {
    if (n <= x->sscratch_cap) return 0;
    size_t cap = n + n / 2 + 1024;
    uint64_t *s = realloc(x->sscratch, cap * sizeof *s);
    if (!s) return cl_error("out of memory merging sparse counts (%zu entries)", cap);
    x->sscratch = s, x->sscratch_cap = cap;
    return 0;
}

/* e[0 .. n) sorted by token (then count): the same tokens summed, in place;
 * returns the new length. Counts fit int32: cl_scan_run checks that the
 * total of all next-token counts does. */
static size_t combine_sorted(uint64_t *e, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && SROW_TOK(e[m - 1]) == SROW_TOK(e[i])) e[m - 1] += (uint32_t)SROW_CNT(e[i]);
        else e[m++] = e[i];
    }
    return m;
}

int scan_srow_compact(scan_ctx *x, scan_srow *r) {
    if (r->nsorted == r->n) return 0;
    uint64_t *t = r->e + r->nsorted;
    size_t nt = r->n - r->nsorted, ns = r->nsorted;
    qsort(t, nt, sizeof *t, cmp_u64);
    nt = combine_sorted(t, nt);
    if (!ns) {
        r->n = r->nsorted = (uint32_t)nt;
        return 0;
    }
    if (scratch_reserve(x, ns + nt)) return -1;
    uint64_t *o = x->sscratch;
    size_t i = 0, j = 0, m = 0;
    while (i < ns && j < nt) {
        int32_t a = SROW_TOK(r->e[i]), b = SROW_TOK(t[j]);
        if (a < b) o[m++] = r->e[i++];
        else if (b < a) o[m++] = t[j++];
        else o[m++] = r->e[i++] + (uint32_t)SROW_CNT(t[j++]);
    }
    while (i < ns) o[m++] = r->e[i++];
    while (j < nt) o[m++] = t[j++];
    memcpy(r->e, o, m * sizeof *o);
    r->n = r->nsorted = (uint32_t)m;
    return 0;
}

int scan_srow_add(scan_ctx *x, scan_srow *r, const int32_t *tok, const int32_t *cnt, size_t n) {
    if (r->n + n > r->cap) {
        if (scan_srow_compact(x, r)) return -1;
        /* grow unless a quarter of the buffer is left free after the adds:
           a row is compacted at most once per cap / 4 adds */
        if (r->n + n > (size_t)r->cap - r->cap / 4) {
            size_t cap = 2 * ((size_t)r->n + n) + 8;
            if (cap > UINT32_MAX) return cl_error("a sparse count row has too many entries (%zu)", cap);
            uint64_t *e = realloc(r->e, cap * sizeof *e);
            if (!e) return cl_error("out of memory for the sparse counts (%zu entries in a row)", cap);
            r->e = e, r->cap = (uint32_t)cap;
        }
    }
    for (size_t i = 0; i < n; i++) r->e[r->n++] = (uint64_t)(uint32_t)tok[i] << 32 | (uint32_t)cnt[i];
    return 0;
}

void scan_srows_free(scan_ctx *x) {
    if (x->srows) {
        size_t nr = x->cp->n_prompts * (size_t)x->Lh * (size_t)x->NB;
        for (size_t i = 0; i < nr; i++) free(x->srows[i].e);
        free(x->srows);
        x->srows = NULL;
    }
    free(x->sscratch);
    x->sscratch = NULL, x->sscratch_cap = 0;
}

typedef struct {
    int32_t *tok, *cnt;
    size_t n, alloc;
} csr_buf;

static int csr_reserve(csr_buf *b, size_t more) {
    if (b->n + more <= b->alloc) return 0;
    size_t cap = (b->n + more) + (b->n + more) / 2 + 1024;
    int32_t *t = realloc(b->tok, cap * sizeof *t);
    if (t) b->tok = t;
    int32_t *c = t ? realloc(b->cnt, cap * sizeof *c) : NULL;
    if (c) b->cnt = c;
    if (!t || !c) return cl_error("out of memory for the sparse counts (%zu entries)", cap);
    b->alloc = cap;
    return 0;
}

/* One slice, prompts [p0, p0 + np): this rank's rows go to their owners
 * (per destination: a length per row, then the rows' entries, as uint64),
 * and this rank merges the rows it owns into b, their offsets (relative to
 * the slice's first entry of this rank) into ind. sc, sd, rc, rd: [R] each.
 * This rank's result; errors before the exchange are agreed inside. */
static int csr_round(scan_ctx *x, size_t p0, size_t np, csr_buf *b, int64_t *ind, int *sc, int *sd, int *rc,
                     int *rd) {
    const size_t RP = (size_t)x->Lh * (size_t)x->NB;
    const int R = x->R;
    int err = 0;
    long long tot = 0;
    memset(sc, 0, (size_t)R * sizeof *sc);
    memset(sd, 0, (size_t)R * sizeof *sd);
    for (int d = 0; d < R && !err; d++) {
        size_t a = p0 + np * (size_t)d / (size_t)R, e = p0 + np * ((size_t)d + 1) / (size_t)R, ne = 0;
        for (size_t q = a * RP; q < e * RP && !err; q++) {
            err = scan_srow_compact(x, &x->srows[q]);
            ne += x->srows[q].n;
        }
        long long n = (long long)((e - a) * RP + ne);
        sd[d] = (int)(tot > INT_MAX ? 0 : tot);
        sc[d] = (int)(n > INT_MAX ? 0 : n);
        tot += n;
    }
    if (!err && tot > INT_MAX)
        err = cl_error("too many sparse counts in one slice of %zu prompts (%lld entries)", np, tot);
    uint64_t *pack = err ? NULL : malloc((tot ? (size_t)tot : 1) * sizeof *pack);
    if (!err && !pack) err = cl_error("out of memory packing the sparse counts");
    if (pack)
        for (int d = 0; d < R; d++) {
            size_t a = p0 + np * (size_t)d / (size_t)R, e = p0 + np * ((size_t)d + 1) / (size_t)R;
            uint64_t *len = pack + sd[d], *ent = len + (e - a) * RP;
            for (size_t q = a * RP, j = 0; q < e * RP; q++, j++) {
                scan_srow *r = &x->srows[q];
                len[j] = r->n;
                if (r->n) memcpy(ent, r->e, (size_t)r->n * sizeof *ent);
                ent += r->n;
                free(r->e);
                r->e = NULL, r->n = r->cap = r->nsorted = 0;
            }
        }
    cl_par_alltoall(sc, 1, MPI_INT, rc, 1, MPI_INT, x->comm);
    long long rtot = scan_alltoallv_displs(rc, rd, R);
    if (!err && rtot > INT_MAX)
        err = cl_error("too many sparse counts for one rank in a slice of %zu prompts (%lld entries)", np, rtot);
    uint64_t *all = err ? NULL : malloc((rtot ? (size_t)rtot : 1) * sizeof *all);
    if (!err && !all) err = cl_error("out of memory receiving the sparse counts");
    if (cl_par_agree(err, x->comm)) {
        free(pack), free(all);
        return -1;
    }
    if (cl_par_alltoallv(pack, sc, sd, MPI_UINT64_T, all, rc, rd, MPI_UINT64_T, x->comm) != MPI_SUCCESS)
        err = cl_error("MPI_Alltoallv of the sparse counts failed");
    free(pack);
    size_t a = p0 + np * (size_t)x->rank / (size_t)R, e = p0 + np * ((size_t)x->rank + 1) / (size_t)R;
    size_t nown = (e - a) * RP, start_n = b->n;
    size_t *cur = err ? NULL : cl_trymalloc((size_t)R, sizeof *cur, "merge cursors");
    if (!err && !cur) err = 1;
    for (int s = 0; !err && s < R; s++) cur[s] = (size_t)rd[s] + nown;
    for (size_t q = 0; !err && q < nown; q++) {
        size_t m = 0;
        for (int s = 0; s < R; s++) m += (size_t)all[rd[s] + q];
        if ((err = scratch_reserve(x, m) || csr_reserve(b, m))) break;
        m = 0;
        for (int s = 0; s < R; s++) {
            size_t k = (size_t)all[rd[s] + q];
            memcpy(x->sscratch + m, all + cur[s], k * sizeof(uint64_t));
            cur[s] += k, m += k;
        }
        if (R > 1) { /* each source's list is sorted and merged: the union needs it once more */
            qsort(x->sscratch, m, sizeof(uint64_t), cmp_u64);
            m = combine_sorted(x->sscratch, m);
        }
        ind[q] = (int64_t)(b->n - start_n);
        for (size_t i = 0; i < m; i++) b->tok[b->n] = SROW_TOK(x->sscratch[i]), b->cnt[b->n++] = SROW_CNT(x->sscratch[i]);
    }
    free(cur), free(all);
    return err ? -1 : 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Each owned prompt's union of tokens (every block and bin): the owner's
 * merged rows of a prompt lie back to back in b, so the union is those
 * entries sorted once, each token kept once. Appended to uid (prompt, count
 * pairs) and ut. Local; -1 on out of memory. */
typedef struct {
    int64_t *id; /* [2 n]: prompt, number of tokens */
    int32_t *tok;
    size_t n, nalloc, nt, talloc;
} prompt_union;

static int union_add(prompt_union *u, size_t p, const int32_t *tok, size_t m) {
    if (u->n == u->nalloc) {
        size_t na = u->nalloc ? 2 * u->nalloc : 256;
        int64_t *id = realloc(u->id, 2 * na * sizeof *id);
        if (!id) return cl_error("out of memory for the prompts' supports");
        u->id = id, u->nalloc = na;
    }
    if (u->nt + m > u->talloc) {
        size_t na = (u->nt + m) + (u->nt + m) / 2 + 1024;
        int32_t *t = realloc(u->tok, na * sizeof *t);
        if (!t) return cl_error("out of memory for the prompts' supports (%zu tokens)", na);
        u->tok = t, u->talloc = na;
    }
    int32_t *o = u->tok + u->nt;
    memcpy(o, tok, m * sizeof *o);
    qsort(o, m, sizeof *o, cmp_i32);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (!k || o[k - 1] != o[i]) o[k++] = o[i];
    u->id[2 * u->n] = (int64_t)p, u->id[2 * u->n + 1] = (int64_t)k;
    u->n++, u->nt += k;
    return 0;
}

/* The owners' unions to rank 0, as x->uptr [P + 1] and x->utok (prompt
 * order). Collective; 0 or -1 on every rank. */
static int union_gather(scan_ctx *x, const prompt_union *u) {
    const size_t P = x->cp->n_prompts;
    const int R = x->R;
    int err = 0;
    long long mine[2] = {(long long)u->n, (long long)u->nt}, *all = NULL;
    int *cnt = NULL, *dsp = NULL;
    if (x->rank == 0) {
        all = cl_trymalloc((size_t)R * 2, sizeof *all, "support gather");
        cnt = cl_trymalloc((size_t)R, sizeof *cnt, "support gather");
        dsp = cl_trymalloc((size_t)R, sizeof *dsp, "support gather");
        if (!all || !cnt || !dsp) err = 1;
    }
    if (cl_par_agree(err, x->comm)) goto fail;
    if (x->rank == 0)
        for (int r = 0; r < R; r++) cnt[r] = 2, dsp[r] = 2 * r;
    cl_par_gatherv(mine, 2, MPI_LONG_LONG, all, cnt, dsp, MPI_LONG_LONG, 0, x->comm);
    int64_t *ids = NULL;
    int32_t *tok = NULL;
    if (x->rank == 0) {
        long long ni = 0, nt = 0;
        for (int r = 0; r < R; r++) ni += all[2 * r], nt += all[2 * r + 1];
        if (ni != (long long)P) err = cl_error("internal: %lld prompt supports gathered for %zu prompts", ni, P);
        else if (2 * ni > INT_MAX || nt > INT_MAX)
            err = cl_error("too many support tokens to gather (%lld)", nt);
        else if (!(ids = cl_trymalloc((size_t)(2 * ni) + 1, sizeof *ids, "support gather")) ||
                 !(tok = cl_trymalloc((size_t)nt + 1, sizeof *tok, "support gather")) ||
                 !(x->uptr = cl_trycalloc(P + 1, sizeof *x->uptr, "prompt supports")) ||
                 !(x->utok = cl_trymalloc((size_t)nt + 1, sizeof *x->utok, "prompt supports")))
            err = 1;
    }
    if (cl_par_agree(err, x->comm)) {
        free(ids), free(tok);
        goto fail;
    }
    if (x->rank == 0) {
        long long at = 0;
        for (int r = 0; r < R; r++) dsp[r] = (int)at, cnt[r] = (int)(2 * all[2 * r]), at += 2 * all[2 * r];
    }
    cl_par_gatherv(u->id, (int)(2 * u->n), MPI_INT64_T, ids, cnt, dsp, MPI_INT64_T, 0, x->comm);
    if (x->rank == 0) {
        long long at = 0;
        for (int r = 0; r < R; r++) dsp[r] = (int)at, cnt[r] = (int)all[2 * r + 1], at += all[2 * r + 1];
    }
    cl_par_gatherv(u->tok, (int)u->nt, MPI_INT32_T, tok, cnt, dsp, MPI_INT32_T, 0, x->comm);
    if (x->rank == 0) { /* by prompt: every prompt once (one owner per slice) */
        unsigned char *seen = cl_trycalloc(P ? P : 1, 1, "support gather");
        if (!seen) err = 1;
        for (size_t i = 0; !err && i < P; i++) {
            int64_t p = ids[2 * i];
            if (p < 0 || (size_t)p >= P || seen[p]) err = cl_error("internal: prompt %lld twice in the supports", (long long)p);
            else seen[p] = 1, x->uptr[p + 1] = ids[2 * i + 1];
        }
        for (size_t p = 0; !err && p < P; p++) x->uptr[p + 1] += x->uptr[p];
        int64_t from = 0;
        for (size_t i = 0; !err && i < P; i++) {
            int64_t p = ids[2 * i], n = ids[2 * i + 1];
            memcpy(x->utok + x->uptr[p], tok + from, (size_t)n * sizeof *tok);
            from += n;
        }
        free(seen);
    }
    free(ids), free(tok), free(all), free(cnt), free(dsp);
    return cl_par_agree(err, x->comm) ? -1 : 0;
fail:
    free(all), free(cnt), free(dsp);
    return -1;
}

int scan_write_counts_csr(scan_ctx *x, hid_t file, size_t slice) {
    const size_t P = x->cp->n_prompts, V = x->cp->V, RP = (size_t)x->Lh * (size_t)x->NB, row = RP * V;
    const int R = x->R;
    /* the dense layout's slices (CORPUSLENS_SCAN_IO_SLICE elements of [RP, V]
       per prompt): the tests cut a small scan into many of them */
    size_t ps = slice / row;
    if (ps < 1) ps = 1;
    const size_t nsl = (P + ps - 1) / ps;
    csr_buf b = {0};
    prompt_union un = {0};
    int *sc = cl_trymalloc((size_t)R * 4, sizeof(int), "exchange counts");
    /* this rank's rows: (ps / R + 1) RP per slice at most; + 1 for the end */
    int64_t *ind = cl_trymalloc(((P + (size_t)R - 1) / (size_t)R + nsl) * RP + 1, sizeof(int64_t), "sparse row offsets");
    /* per slice: this rank's rows and entries (ranges of the collective writes) */
    hsize_t *rr0 = cl_trymalloc(nsl + 1, sizeof(hsize_t), "slice ranges"),
            *rnr = cl_trymalloc(nsl + 1, sizeof(hsize_t), "slice ranges"),
            *e0 = cl_trymalloc(nsl, sizeof(hsize_t), "slice ranges"), *en = cl_trymalloc(nsl, sizeof(hsize_t), "slice ranges");
    hid_t di = H5I_INVALID_HID, dt = H5I_INVALID_HID, dc = H5I_INVALID_HID;
    int err = cl_par_agree(!sc || !ind || !rr0 || !rnr || !e0 || !en, x->comm);
    size_t nrow = 0;    /* rows of this rank so far */
    int64_t base = 0;   /* entries of the slices before */
    for (size_t j = 0; j < nsl && !err; j++) {
        size_t p0 = j * ps, np = P - p0 < ps ? P - p0 : ps;
        size_t a = p0 + np * (size_t)x->rank / (size_t)R, e = p0 + np * ((size_t)x->rank + 1) / (size_t)R;
        size_t start_n = b.n;
        int rc = csr_round(x, p0, np, &b, ind + nrow, sc, sc + R, sc + 2 * R, sc + 3 * R);
        if ((err = cl_par_agree(rc, x->comm))) break;
        size_t nz = b.n - start_n;
        /* each owned prompt's union: its RP rows are back to back in b */
        for (size_t p = a; !rc && p < e; p++) {
            size_t q0 = nrow + (p - a) * RP, q1 = q0 + RP;
            size_t f0 = start_n + (size_t)ind[q0], f1 = q1 < nrow + (e - a) * RP ? start_n + (size_t)ind[q1] : b.n;
            rc = union_add(&un, p, b.tok + f0, f1 - f0);
        }
        if ((err = cl_par_agree(rc, x->comm))) break;
        int64_t mine = (int64_t)nz, start = 0, tot = 0;
        cl_par_exscan(&mine, &start, 1, MPI_INT64_T, MPI_SUM, x->comm);
        if (x->rank == 0) start = 0;
        cl_par_allreduce(&mine, &tot, 1, MPI_INT64_T, MPI_SUM, x->comm);
        for (size_t q = 0; q < (e - a) * RP; q++) ind[nrow + q] += base + start;
        rr0[j] = (hsize_t)(a * RP), rnr[j] = (hsize_t)((e - a) * RP);
        e0[j] = (hsize_t)(base + start), en[j] = (hsize_t)nz;
        nrow += (e - a) * RP;
        base += tot;
    }
    size_t nind = nsl;
    if (!err && x->rank == R - 1) { /* the end of the last row: the last rank owns the last prompt */
        ind[nrow] = base;
        rr0[nsl] = (hsize_t)(P * RP), rnr[nsl] = 1, nind = nsl + 1;
    }
    if (!err) {
        hsize_t dI = (hsize_t)(P * RP + 1), dN = (hsize_t)base;
        di = cl_h5p_dataset(file, CL_SCAN_FREQ_NEXT_INDPTR, H5T_NATIVE_INT64, 1, &dI, NULL);
        dt = cl_h5p_dataset(file, CL_SCAN_FREQ_NEXT_TOKEN, H5T_NATIVE_INT32, 1, &dN, NULL);
        dc = cl_h5p_dataset(file, CL_SCAN_FREQ_NEXT_COUNT, H5T_NATIVE_INT32, 1, &dN, NULL);
        err = cl_par_agree(di < 0 || dt < 0 || dc < 0, x->comm);
    }
    if (!err)
        err = cl_par_agree(cl_h5p_write_rows(di, H5T_NATIVE_INT64, nind, rr0, rnr, ind, CL_SCAN_FREQ_NEXT_INDPTR),
                           x->comm);
    if (!err)
        err = cl_par_agree(cl_h5p_write_rows(dt, H5T_NATIVE_INT32, nsl, e0, en, b.tok, CL_SCAN_FREQ_NEXT_TOKEN),
                           x->comm);
    if (!err)
        err = cl_par_agree(cl_h5p_write_rows(dc, H5T_NATIVE_INT32, nsl, e0, en, b.cnt, CL_SCAN_FREQ_NEXT_COUNT),
                           x->comm);
    int rc = 0;
    if (di >= 0 && H5Dclose(di) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_FREQ_NEXT_INDPTR);
    if (dt >= 0 && H5Dclose(dt) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_FREQ_NEXT_TOKEN);
    if (dc >= 0 && H5Dclose(dc) < 0) rc = cl_h5p_write_error(file, "cannot write " CL_SCAN_FREQ_NEXT_COUNT);
    if (!err) err = cl_par_agree(rc, x->comm);
    free(sc), free(ind), free(rr0), free(rnr), free(e0), free(en), free(b.tok), free(b.cnt);
    if (!err) err = union_gather(x, &un) ? 1 : 0;
    free(un.id), free(un.tok);
    return err ? -1 : 0;
}

int scan_bpe_check(scan_ctx *x) {
    const cl_scan_opts *o = x->o;
    const cl_corpus *cp = x->cp;
    if (!cp->bpe)
        return cl_error("%s is a char corpus but %s uses GPT-2 BPE: run prepare again with --vocab-from %s",
                        o->corpus_path, o->model_path, o->model_path);
    if (cp->V != x->m->cfg.vocab_size || !cl_bpe_equal(cp->bpe, x->m->bpe))
        return cl_error("%s was made for another model: its tokenizer differs from %s's; run prepare again with "
                        "--vocab-from %s",
                        o->corpus_path, o->model_path, o->model_path);
    if (o->next_layout == CL_SCAN_LAYOUT_DENSE)
        return cl_error("--next-layout dense: a BPE corpus is scanned with the csr layout only");
    if (o->index_out) return cl_error("--index-out does not support a BPE corpus yet");
    return 0;
}

static size_t bpe_text(const cl_corpus *cp, size_t k, char *out) {
    const int32_t *t = cp->prompt_tokens + k * (size_t)cp->L;
    size_t n = 0;
    for (int k = 0; k < cp->L; k++) {
        size_t len = 0;
        const unsigned char *b = cl_bpe_token_bytes(cp->bpe, t[k], &len);
        if (!b) len = 0;
        if (out && len) memcpy(out + n, b, len);
        n += len;
    }
    return n;
}

size_t scan_bpe_text_len(const cl_corpus *cp) {
    size_t m = 1;
    for (size_t i = 0; i < cp->n_prompts; i++) {
        size_t n = bpe_text(cp, i, NULL);
        if (n > m) m = n;
    }
    return m;
}

void scan_bpe_text(const cl_corpus *cp, size_t k, char *out) { bpe_text(cp, k, out); }

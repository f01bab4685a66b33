/* scan.h5's binned next-token counts as CSR (next_layout "csr", h5schema.h):
 * /freq/next/indptr [P Lh NB + 1] (int64), /freq/next/token and
 * /freq/next/count [nnz] (int32), the rows (prompt, block, bin) in row-major
 * order, the tokens of a row increasing, every stored count > 0. The file
 * size follows the nonzero counts, not V.
 *
 * Written like /freq/counts (scan_io.c): prompt slices of a fixed number of
 * elements, each MPI_Reduce_scatter'ed onto its owners (a block of the
 * slice's prompts per rank, in rank order); each owner compresses its rows.
 * The global order is slice by slice, within a slice rank by rank: the rows'
 * order whatever R. An MPI_Exscan per slice gives each rank the offset of its
 * entries; after the last slice every rank writes its ranges of the three
 * datasets in one collective write each. The datasets are contiguous (not
 * chunked): their bytes do not depend on how the ranks cut them, so 1 or R
 * ranks write the same file. Memory: the reduce buffer of a slice and this
 * rank's nonzeros. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5par.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/par/par.h"
#include "scan_internal.h"

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

int scan_write_counts_csr(scan_ctx *x, hid_t file, size_t slice) {
    const size_t P = x->cp->n_prompts, V = x->cp->V, RP = (size_t)x->Lh * (size_t)x->NB, row = RP * V;
    const int R = x->R;
    size_t ps = slice / row;
    if (ps < 1) ps = 1;
    const size_t nsl = (P + ps - 1) / ps;
    csr_buf b = {0};
    int *rcn = cl_trymalloc((size_t)R, sizeof(int), "reduce counts");
    int32_t *recv = cl_trymalloc((ps + (size_t)R - 1) / (size_t)R * row + 1, sizeof(int32_t), "reduce buffer");
    /* this rank's rows: (ps / R + 1) RP per slice at most; + 1 for the end */
    int64_t *ind = cl_trymalloc(((P + (size_t)R - 1) / (size_t)R + nsl) * RP + 1, sizeof(int64_t), "sparse row offsets");
    /* per slice: this rank's rows and entries (ranges of the collective writes) */
    hsize_t *rr0 = cl_trymalloc(nsl + 1, sizeof(hsize_t), "slice ranges"),
            *rnr = cl_trymalloc(nsl + 1, sizeof(hsize_t), "slice ranges"),
            *e0 = cl_trymalloc(nsl, sizeof(hsize_t), "slice ranges"), *en = cl_trymalloc(nsl, sizeof(hsize_t), "slice ranges");
    hid_t di = H5I_INVALID_HID, dt = H5I_INVALID_HID, dc = H5I_INVALID_HID;
    int err = cl_par_agree(!rcn || !recv || !ind || !rr0 || !rnr || !e0 || !en, x->comm);
    size_t nrow = 0;    /* rows of this rank so far */
    int64_t base = 0;   /* entries of the slices before */
    for (size_t j = 0; j < nsl && !err; j++) {
        size_t p0 = j * ps, np = P - p0 < ps ? P - p0 : ps, a = 0, e = 0;
        for (int r = 0; r < R; r++) {
            a = p0 + np * (size_t)r / (size_t)R, e = p0 + np * ((size_t)r + 1) / (size_t)R;
            rcn[r] = (int)((e - a) * row);
        }
        a = p0 + np * (size_t)x->rank / (size_t)R, e = p0 + np * ((size_t)x->rank + 1) / (size_t)R;
        int rc = 0;
        if (cl_par_reduce_scatter(x->counts + p0 * row, recv, rcn, MPI_INT32_T, MPI_SUM, x->comm) != MPI_SUCCESS)
            rc = cl_error("MPI_Reduce_scatter failed");
        size_t nz = 0, start_n = b.n;
        for (size_t i = 0; !rc && i < (e - a) * row; i++) nz += recv[i] != 0;
        if (!rc) rc = csr_reserve(&b, nz);
        for (size_t q = 0; !rc && q < (e - a) * RP; q++) {
            const int32_t *c = recv + q * V;
            ind[nrow + q] = (int64_t)(b.n - start_n); /* relative to the slice: made global below */
            for (size_t v = 0; v < V; v++)
                if (c[v]) b.tok[b.n] = (int32_t)v, b.cnt[b.n++] = c[v];
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
    free(rcn), free(recv), free(ind), free(rr0), free(rnr), free(e0), free(en), free(b.tok), free(b.cnt);
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

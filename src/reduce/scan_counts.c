/* The binned next-token counts of scan.h5 in either layout (next_layout,
 * h5schema.h): dense /freq/counts, or CSR /freq/next/{indptr,token,count}
 * (scan_sparse.c). Both give the same dense rows [n, Lb, NB, V], so every
 * reducer (reduce, tune, tune --soft) computes the same numbers from either. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/reduce/reduce.h"

int cl_scan_counts_open(cl_scan *s) {
    char lay[32] = "dense";
    if (cl_h5_attr_exists(s->file, "next_layout") && cl_h5_attr_read_str(s->file, "next_layout", lay, sizeof lay))
        return -1;
    const size_t P = s->P, RP = (size_t)s->Lb * (size_t)s->NB;
    if (!strcmp(lay, "dense")) {
        hsize_t d[4] = {P, (hsize_t)s->Lb, (hsize_t)s->NB, (hsize_t)s->V};
        s->csr = 0;
        return cl_h5_check_data(s->file, CL_SCAN_FREQ_COUNTS, H5T_NATIVE_INT32, 4, d);
    }
    if (strcmp(lay, "csr")) return cl_error("next_layout '%s' is not supported (expected 'dense' or 'csr')", lay);
    s->csr = 1;
    hsize_t dI = (hsize_t)(P * RP + 1), dN[8];
    if (cl_h5_check_data(s->file, CL_SCAN_FREQ_NEXT_INDPTR, H5T_NATIVE_INT64, 1, &dI)) return -1;
    int rk = cl_h5_shape(s->file, CL_SCAN_FREQ_NEXT_TOKEN, dN);
    if (rk < 0) return -1;
    if (rk != 1) return cl_error("%s has rank %d (expected 1)", CL_SCAN_FREQ_NEXT_TOKEN, rk);
    if (cl_h5_check_data(s->file, CL_SCAN_FREQ_NEXT_TOKEN, H5T_NATIVE_INT32, 1, dN) ||
        cl_h5_check_data(s->file, CL_SCAN_FREQ_NEXT_COUNT, H5T_NATIVE_INT32, 1, dN))
        return -1;
    s->nnz = (int64_t)dN[0];
    return 0;
}

void cl_scan_rows_free(cl_scan_rows *r) {
    if (!r) return;
    free(r->ind), free(r->tok), free(r->cnt);
    *r = (cl_scan_rows){0};
}

/* Rows [p0, p0 + n) of the CSR counts as they are stored, offsets rebased to
 * 0. Every offset, token and count is checked before it is used. */
static int read_csr_rows(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out) {
    const size_t V = (size_t)s->V, RP = (size_t)s->Lb * (size_t)s->NB, nr = n * RP;
    int64_t *ind = cl_trymalloc(nr + 1, sizeof *ind, "sparse row offsets");
    int32_t *tok = NULL, *cnt = NULL;
    if (!ind || cl_h5_read_rows(s->file, CL_SCAN_FREQ_NEXT_INDPTR, H5T_NATIVE_INT64, p0 * RP, nr + 1, ind)) goto fail;
    if ((p0 == 0 && ind[0] != 0) || (p0 + n == s->P && ind[nr] != s->nnz)) {
        cl_error("%s: %s does not run from 0 to %lld", s->path, CL_SCAN_FREQ_NEXT_INDPTR, (long long)s->nnz);
        goto fail;
    }
    for (size_t r = 0; r < nr; r++)
        if (ind[r] < 0 || ind[r + 1] < ind[r] || ind[r + 1] > s->nnz || ind[r + 1] - ind[r] > (int64_t)V) {
            cl_error("%s: %s: row %zu (prompt %zu) has offsets %lld..%lld, not a row of at most %zu of %lld entries",
                     s->path, CL_SCAN_FREQ_NEXT_INDPTR, p0 * RP + r, p0 + r / RP, (long long)ind[r],
                     (long long)ind[r + 1], V, (long long)s->nnz);
            goto fail;
        }
    size_t ne = (size_t)(ind[nr] - ind[0]);
    tok = cl_trymalloc(ne + 1, sizeof *tok, "sparse tokens");
    cnt = cl_trymalloc(ne + 1, sizeof *cnt, "sparse counts");
    if (!tok || !cnt) goto fail;
    if (ne && (cl_h5_read_rows(s->file, CL_SCAN_FREQ_NEXT_TOKEN, H5T_NATIVE_INT32, (size_t)ind[0], ne, tok) ||
               cl_h5_read_rows(s->file, CL_SCAN_FREQ_NEXT_COUNT, H5T_NATIVE_INT32, (size_t)ind[0], ne, cnt)))
        goto fail;
    int64_t base = ind[0];
    for (size_t r = 0; r <= nr; r++) ind[r] -= base;
    for (size_t r = 0; r < nr; r++)
        for (int64_t e = ind[r]; e < ind[r + 1]; e++) {
            int32_t t = tok[e], c = cnt[e];
            if (t < 0 || (size_t)t >= V || (e > ind[r] && t <= tok[e - 1])) {
                cl_error("%s: %s: entry %lld (prompt %zu) is token %d: not in 0..%zu or not increasing in its row",
                         s->path, CL_SCAN_FREQ_NEXT_TOKEN, (long long)(base + e), p0 + r / RP, (int)t, V - 1);
                goto fail;
            }
            if (c < 1 || c > s->n_followers) {
                cl_error("%s: %s: count %d at prompt %zu is outside [1, %lld]", s->path, CL_SCAN_FREQ_NEXT_COUNT,
                         (int)c, p0 + r / RP, (long long)s->n_followers);
                goto fail;
            }
        }
    *out = (cl_scan_rows){.nr = nr, .ind = ind, .tok = tok, .cnt = cnt};
    return 0;
fail:
    free(ind), free(tok), free(cnt);
    return -1;
}

/* Rows [p0, p0 + n) of the CSR counts, scattered into counts[n, Lb, NB, V]
 * (zeroed first). */
static int read_csr(const cl_scan *s, size_t p0, size_t n, int32_t *counts) {
    const size_t V = (size_t)s->V;
    cl_scan_rows r;
    if (read_csr_rows(s, p0, n, &r)) return -1;
    memset(counts, 0, r.nr * V * sizeof *counts);
    for (size_t i = 0; i < r.nr; i++)
        for (int64_t e = r.ind[i]; e < r.ind[i + 1]; e++) counts[i * V + (size_t)r.tok[e]] = r.cnt[e];
    cl_scan_rows_free(&r);
    return 0;
}

int cl_scan_read_counts(const cl_scan *s, size_t p0, size_t n, int32_t *counts) {
    if (s->csr) return read_csr(s, p0, n, counts);
    const size_t row = (size_t)s->Lb * (size_t)s->NB * (size_t)s->V;
    if (cl_h5_read_rows(s->file, CL_SCAN_FREQ_COUNTS, H5T_NATIVE_INT32, p0, n, counts)) return -1;
    for (size_t i = 0; i < n * row; i++)
        if (counts[i] < 0 || counts[i] > s->n_followers)
            return cl_error("%s: %s: count %d at prompt %zu is outside [0, %lld]", s->path, CL_SCAN_FREQ_COUNTS,
                            (int)counts[i], p0 + i / row, (long long)s->n_followers);
    return 0;
}

int cl_scan_vocab_open(cl_scan *s, int *V) {
    char tt[32] = "char";
    if (cl_h5_attr_exists(s->file, "token_type") && cl_h5_attr_read_str(s->file, "token_type", tt, sizeof tt))
        return -1;
    if (!strcmp(tt, "char")) return cl_h5_read_vocab(s->file, "/vocab", &s->vocab, V);
    if (strcmp(tt, "gpt2-bpe")) return cl_error("token_type '%s' is not supported (expected 'char' or 'gpt2-bpe')", tt);
    char lay[32] = "dense";
    if (cl_h5_attr_exists(s->file, "next_layout") && cl_h5_attr_read_str(s->file, "next_layout", lay, sizeof lay))
        return -1;
    if (strcmp(lay, "csr")) return cl_error("a gpt2-bpe scan must have next_layout 'csr' (it has '%s')", lay);
    s->bpe = 1;
    if (!(s->vocab = cl_trymalloc((size_t)s->V, sizeof *s->vocab, "vocabulary"))) return -1;
    for (int i = 0; i < s->V; i++) s->vocab[i] = 0xFFFD;
    *V = s->V;
    return 0;
}

int cl_scan_read_rows(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out) {
    *out = (cl_scan_rows){0};
    if (s->csr) return read_csr_rows(s, p0, n, out);
    /* dense: read a block of prompts at a time and keep the nonzero cells */
    const size_t V = (size_t)s->V, RP = (size_t)s->Lb * (size_t)s->NB, PB = cl_scan_block_prompts(s);
    size_t cap = 1024, ne = 0;
    int32_t *blk = cl_trymalloc(PB * RP, V * sizeof(int32_t), "count block");
    out->ind = cl_trymalloc(n * RP + 1, sizeof *out->ind, "sparse row offsets");
    out->tok = cl_trymalloc(cap, sizeof *out->tok, "sparse tokens");
    out->cnt = cl_trymalloc(cap, sizeof *out->cnt, "sparse counts");
    if (!blk || !out->ind || !out->tok || !out->cnt) goto fail;
    out->ind[0] = 0;
    for (size_t q0 = 0; q0 < n; q0 += PB) {
        size_t m = n - q0 < PB ? n - q0 : PB;
        if (cl_scan_read_counts(s, p0 + q0, m, blk)) goto fail;
        for (size_t r = 0; r < m * RP; r++) {
            const int32_t *row = blk + r * V;
            for (size_t v = 0; v < V; v++) {
                if (!row[v]) continue;
                if (ne == cap) {
                    cap *= 2;
                    int32_t *t = realloc(out->tok, cap * sizeof *t);
                    if (t) out->tok = t;
                    int32_t *c = t ? realloc(out->cnt, cap * sizeof *c) : NULL;
                    if (c) out->cnt = c;
                    if (!t || !c) {
                        cl_error("out of memory for the sparse counts (%zu entries)", cap);
                        goto fail;
                    }
                }
                out->tok[ne] = (int32_t)v, out->cnt[ne] = row[v], ne++;
            }
            out->ind[(q0 * RP) + r + 1] = (int64_t)ne;
        }
    }
    free(blk);
    out->nr = n * RP;
    return 0;
fail:
    free(blk);
    cl_scan_rows_free(out);
    return -1;
}

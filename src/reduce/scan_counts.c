/* The binned next-token counts of scan.h5 in either layout (next_layout,
 * h5schema.h): dense /freq/counts, or CSR /freq/next/{indptr,token,count}
 * (scan_sparse.c). Both give the same dense rows [n, Lb, NB, V], so every
 * reducer (reduce, tune, tune --soft) computes the same numbers from either. */
#include <hdf5.h>
#include <math.h>
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
    /* the model and the n-gram on supports (a csr scan from before has /model/probs) */
    if (!cl_h5_exists(s->file, CL_SCAN_MODEL_SUPPORT_INDPTR)) return 0;
    s->model_sparse = 1;
    hsize_t dP1 = (hsize_t)(P + 1), dP2[2] = {P, 2}, dP = P, dM[8], dK[8];
    if (cl_h5_check_data(s->file, CL_SCAN_MODEL_SUPPORT_INDPTR, H5T_NATIVE_INT64, 1, &dP1) ||
        cl_h5_check_data(s->file, CL_SCAN_PROMPT_NEXT_INDPTR, H5T_NATIVE_INT64, 1, &dP1) ||
        cl_h5_check_data(s->file, CL_SCAN_MODEL_MASS, H5T_NATIVE_DOUBLE, 2, dP2) ||
        cl_h5_check_data(s->file, CL_SCAN_UNIGRAM_HELLINGER, H5T_NATIVE_DOUBLE, 1, &dP))
        return -1;
    if ((rk = cl_h5_shape(s->file, CL_SCAN_MODEL_SUPPORT_TOKEN, dM)) < 0) return -1;
    if (rk != 1) return cl_error("%s has rank %d (expected 1)", CL_SCAN_MODEL_SUPPORT_TOKEN, rk);
    if ((rk = cl_h5_shape(s->file, CL_SCAN_PROMPT_NEXT_TOKEN, dK)) < 0) return -1;
    if (rk != 1) return cl_error("%s has rank %d (expected 1)", CL_SCAN_PROMPT_NEXT_TOKEN, rk);
    if (cl_h5_check_data(s->file, CL_SCAN_MODEL_SUPPORT_TOKEN, H5T_NATIVE_INT32, 1, dM) ||
        cl_h5_check_data(s->file, CL_SCAN_MODEL_SUPPORT_PROB, H5T_NATIVE_FLOAT, 1, dM) ||
        cl_h5_check_data(s->file, CL_SCAN_PROMPT_NEXT_TOKEN, H5T_NATIVE_INT32, 1, dK) ||
        cl_h5_check_data(s->file, CL_SCAN_PROMPT_NEXT_COUNT, H5T_NATIVE_INT32, 1, dK))
        return -1;
    s->n_support = (int64_t)dM[0], s->n_next = (int64_t)dK[0];
    char sup[64] = "";
    if (!cl_h5_attr_exists(s->file, "model_support"))
        return cl_error("the root attribute model_support is missing (a csr scan with /model/support has it)");
    if (cl_h5_attr_read_str(s->file, "model_support", sup, sizeof sup)) return -1; /* its own message */
    /* the readers take the model's most probable tokens from the support
       (report.md's top 5, similar's model column): a file that promises
       fewer than CL_SCAN_MODEL_TOP of them (or none) is not read */
    long long top = 0;
    if (!cl_h5_attr_exists(s->file, "model_top_k"))
        return cl_error("the root attribute model_top_k is missing (a csr scan with /model/support has it)");
    if (cl_h5_attr_read_int(s->file, "model_top_k", &top)) return -1;
    if (top < CL_SCAN_MODEL_TOP)
        return cl_error("the root attribute model_top_k is %lld: each %s row must hold the model's %d most probable "
                        "tokens", top, CL_SCAN_MODEL_SUPPORT_TOKEN, CL_SCAN_MODEL_TOP);
    if (!strcmp(sup, "counts+next+followers+top")) s->followers = 1;
    else if (strcmp(sup, "counts+next+top"))
        return cl_error("model_support '%s' is not supported (expected 'counts+next+followers+top' or "
                        "'counts+next+top')", sup);
    return 0;
}

void cl_scan_rows_free(cl_scan_rows *r) {
    if (!r) return;
    free(r->ind), free(r->tok), free(r->cnt);
    *r = (cl_scan_rows){0};
}

/* Rows [r0, r0 + nr) of a CSR triple (offsets ind_name [rows + 1] int64 over
 * total entries; tokens tok_name int32; values val_name of memtype, el bytes
 * each) as stored, offsets rebased to 0; rows of `per` rows make a prompt
 * (for messages). Every offset checked, every token in 0..V-1 and increasing
 * in its row; the values are the caller's to check. */
static int read_csr_range(const cl_scan *s, const char *ind_name, const char *tok_name, const char *val_name,
                          hid_t memtype, size_t el, size_t r0, size_t nr, size_t rows, int64_t total, size_t per,
                          int64_t **ind_out, int32_t **tok_out, void **val_out) {
    const size_t V = (size_t)s->V;
    int64_t *ind = cl_trymalloc(nr + 1, sizeof *ind, "sparse row offsets");
    int32_t *tok = NULL;
    char *val = NULL;
    if (!ind || cl_h5_read_rows(s->file, ind_name, H5T_NATIVE_INT64, r0, nr + 1, ind)) goto fail;
    if ((r0 == 0 && ind[0] != 0) || (r0 + nr == rows && ind[nr] != total)) {
        cl_error("%s: %s does not run from 0 to %lld", s->path, ind_name, (long long)total);
        goto fail;
    }
    for (size_t r = 0; r < nr; r++)
        if (ind[r] < 0 || ind[r + 1] < ind[r] || ind[r + 1] > total || ind[r + 1] - ind[r] > (int64_t)V) {
            cl_error("%s: %s: row %zu (prompt %zu) has offsets %lld..%lld, not a row of at most %zu of %lld entries",
                     s->path, ind_name, r0 + r, (r0 + r) / per, (long long)ind[r], (long long)ind[r + 1], V,
                     (long long)total);
            goto fail;
        }
    size_t ne = (size_t)(ind[nr] - ind[0]);
    tok = cl_trymalloc(ne + 1, sizeof *tok, "sparse tokens");
    val = cl_trymalloc(ne + 1, el, "sparse values");
    if (!tok || !val) goto fail;
    if (ne && (cl_h5_read_rows(s->file, tok_name, H5T_NATIVE_INT32, (size_t)ind[0], ne, tok) ||
               cl_h5_read_rows(s->file, val_name, memtype, (size_t)ind[0], ne, val)))
        goto fail;
    int64_t base = ind[0];
    for (size_t r = 0; r <= nr; r++) ind[r] -= base;
    for (size_t r = 0; r < nr; r++)
        for (int64_t e = ind[r]; e < ind[r + 1]; e++)
            if (tok[e] < 0 || (size_t)tok[e] >= V || (e > ind[r] && tok[e] <= tok[e - 1])) {
                cl_error("%s: %s: entry %lld (prompt %zu) is token %d: not in 0..%zu or not increasing in its row",
                         s->path, tok_name, (long long)(base + e), (r0 + r) / per, (int)tok[e], V - 1);
                goto fail;
            }
    *ind_out = ind, *tok_out = tok, *val_out = val;
    return 0;
fail:
    free(ind), free(tok), free(val);
    return -1;
}

/* Counts of a CSR triple read by read_csr_range: in [1, n_followers]. */
static int check_csr_counts(const cl_scan *s, const cl_scan_rows *r, size_t p0, size_t per, const char *what) {
    for (size_t i = 0; i < r->nr; i++)
        for (int64_t e = r->ind[i]; e < r->ind[i + 1]; e++)
            if (r->cnt[e] < 1 || r->cnt[e] > s->n_followers)
                return cl_error("%s: %s: count %d at prompt %zu is outside [1, %lld]", s->path, what, (int)r->cnt[e],
                                p0 + i / per, (long long)s->n_followers);
    return 0;
}

/* Rows [p0, p0 + n) of the CSR counts as they are stored, offsets rebased to
 * 0. Every offset, token and count is checked before it is used. */
static int read_csr_rows(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out) {
    const size_t RP = (size_t)s->Lb * (size_t)s->NB;
    cl_scan_rows r = {.nr = n * RP};
    void *cnt = NULL;
    if (read_csr_range(s, CL_SCAN_FREQ_NEXT_INDPTR, CL_SCAN_FREQ_NEXT_TOKEN, CL_SCAN_FREQ_NEXT_COUNT,
                       H5T_NATIVE_INT32, sizeof(int32_t), p0 * RP, n * RP, s->P * RP, s->nnz, RP, &r.ind, &r.tok,
                       &cnt))
        return -1;
    r.cnt = cnt;
    if (check_csr_counts(s, &r, p0, RP, CL_SCAN_FREQ_NEXT_COUNT)) {
        cl_scan_rows_free(&r);
        return -1;
    }
    *out = r;
    return 0;
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

void cl_scan_model_free(cl_scan_model *m) {
    if (!m) return;
    free(m->ind), free(m->tok), free(m->prob), free(m->sum), free(m->rest);
    *m = (cl_scan_model){0};
}

long cl_support_find(const int32_t *tok, size_t ns, int32_t t) {
    size_t lo = 0, hi = ns;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (tok[m] < t) lo = m + 1;
        else hi = m;
    }
    return lo < ns && tok[lo] == t ? (long)lo : -1;
}

int cl_scan_read_model(const cl_scan *s, size_t p0, size_t n, cl_scan_model *out) {
    const size_t V = (size_t)s->V;
    cl_scan_model m = {.n = n};
    m.sum = cl_trymalloc(n ? n : 1, sizeof *m.sum, "model mass");
    m.rest = cl_trycalloc(n ? n : 1, sizeof *m.rest, "model mass");
    if (!m.sum || !m.rest) goto fail;
    if (s->model_sparse) {
        void *prob = NULL;
        double *mass = cl_trymalloc(2 * (n ? n : 1), sizeof *mass, "model mass");
        if (!mass || read_csr_range(s, CL_SCAN_MODEL_SUPPORT_INDPTR, CL_SCAN_MODEL_SUPPORT_TOKEN,
                                    CL_SCAN_MODEL_SUPPORT_PROB, H5T_NATIVE_FLOAT, sizeof(float), p0, n, s->P,
                                    s->n_support, 1, &m.ind, &m.tok, &prob)) {
            free(mass);
            goto fail;
        }
        m.prob = prob;
        if (cl_h5_read_rows(s->file, CL_SCAN_MODEL_MASS, H5T_NATIVE_DOUBLE, p0, n, mass)) {
            free(mass);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) m.sum[i] = mass[2 * i], m.rest[i] = mass[2 * i + 1];
        free(mass);
        for (size_t i = 0; i < n; i++) {
            double in = 0;
            for (int64_t e = m.ind[i]; e < m.ind[i + 1]; e++) {
                if (!(m.prob[e] >= 0 && m.prob[e] <= 1)) {
                    cl_error("%s: %s: %g at prompt %zu is not a probability", s->path, CL_SCAN_MODEL_SUPPORT_PROB,
                             (double)m.prob[e], p0 + i);
                    goto fail;
                }
                in += m.prob[e];
            }
            /* the mass off the support and the whole: finite, 0 <= rest, in + rest = sum */
            if (!(m.sum[i] > 0 && m.sum[i] <= 2 && m.rest[i] >= 0 && fabs(in + m.rest[i] - m.sum[i]) <= 1e-6)) {
                cl_error("%s: %s: prompt %zu has mass %g with %g off its support, but %g on it", s->path,
                         CL_SCAN_MODEL_MASS, p0 + i, m.sum[i], m.rest[i], in);
                goto fail;
            }
        }
    } else {
        m.ind = cl_trymalloc(n + 1, sizeof *m.ind, "model rows");
        m.tok = cl_trymalloc(n * V + 1, sizeof *m.tok, "model rows");
        m.prob = cl_trymalloc(n * V + 1, sizeof *m.prob, "model rows");
        if (!m.ind || !m.tok || !m.prob ||
            (n && cl_h5_read_rows(s->file, CL_SCAN_MODEL_PROBS, H5T_NATIVE_FLOAT, p0, n, m.prob)))
            goto fail;
        for (size_t i = 0; i <= n; i++) m.ind[i] = (int64_t)(i * V);
        for (size_t i = 0; i < n; i++) {
            double sq = 0;
            for (size_t v = 0; v < V; v++) {
                float q = m.prob[i * V + v];
                if (!(q >= 0 && q <= 1)) {
                    cl_error("%s: %s: %g at prompt %zu is not a probability", s->path, CL_SCAN_MODEL_PROBS, (double)q,
                             p0 + i);
                    goto fail;
                }
                m.tok[i * V + v] = (int32_t)v;
                sq += q;
            }
            m.sum[i] = sq;
        }
    }
    *out = m;
    return 0;
fail:
    cl_scan_model_free(&m);
    return -1;
}

int cl_scan_read_next(const cl_scan *s, size_t p0, size_t n, cl_scan_rows *out) {
    const size_t V = (size_t)s->V;
    cl_scan_rows r = {.nr = n};
    *out = (cl_scan_rows){0};
    if (s->model_sparse) {
        void *cnt = NULL;
        if (read_csr_range(s, CL_SCAN_PROMPT_NEXT_INDPTR, CL_SCAN_PROMPT_NEXT_TOKEN, CL_SCAN_PROMPT_NEXT_COUNT,
                           H5T_NATIVE_INT32, sizeof(int32_t), p0, n, s->P, s->n_next, 1, &r.ind, &r.tok, &cnt))
            return -1;
        r.cnt = cnt;
    } else {
        int32_t *row = cl_trymalloc(V, sizeof *row, "n-gram row");
        size_t ne = 0, cap = 0;
        r.ind = cl_trymalloc(n + 1, sizeof *r.ind, "n-gram rows");
        if (!row || !r.ind) goto dense_fail;
        r.ind[0] = 0;
        for (size_t i = 0; i < n; i++) {
            if (cl_h5_read_rows(s->file, CL_SCAN_PROMPT_NEXT, H5T_NATIVE_INT32, p0 + i, 1, row)) goto dense_fail;
            for (size_t v = 0; v < V; v++) {
                if (row[v] < 0 || row[v] > s->n_followers) {
                    cl_error("%s: %s: count %d at prompt %zu is outside [0, %lld]", s->path, CL_SCAN_PROMPT_NEXT,
                             (int)row[v], p0 + i, (long long)s->n_followers);
                    goto dense_fail;
                }
                if (!row[v]) continue;
                if (ne == cap) {
                    cap = cap ? 2 * cap : 256;
                    int32_t *t = realloc(r.tok, cap * sizeof *t);
                    if (t) r.tok = t;
                    int32_t *c = t ? realloc(r.cnt, cap * sizeof *c) : NULL;
                    if (c) r.cnt = c;
                    if (!t || !c) {
                        cl_error("out of memory for the n-gram counts");
                        goto dense_fail;
                    }
                }
                r.tok[ne] = (int32_t)v, r.cnt[ne++] = row[v];
            }
            r.ind[i + 1] = (int64_t)ne;
        }
        free(row);
        *out = r;
        return 0;
    dense_fail:
        free(row);
        cl_scan_rows_free(&r);
        return -1;
    }
    if (check_csr_counts(s, &r, p0, 1, CL_SCAN_PROMPT_NEXT_COUNT)) {
        cl_scan_rows_free(&r);
        return -1;
    }
    *out = r;
    return 0;
}

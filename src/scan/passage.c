/* Explain every position of a passage (include/corpuslens/scan/passage.h). */
#include "corpuslens/scan/passage.h"

#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/par/par.h"

void cl_passage_free(cl_passage_result *r) {
    if (!r) return;
    free(r->tokens), free(r->win_start), free(r->next);
    cl_explain_result_free(r->ex);
    free(r->ngram_sub), free(r->ngram_counts), free(r->ngram_h), free(r->lens_h);
    free(r);
}

/* rank 0: the baselines and the mean from the explanation; 0 or -1 */
static int baselines(cl_passage_result *r, const cl_index *ix, const cl_corpus *cp) {
    const cl_explain_result *ex = r->ex;
    const size_t n = r->n, V = (size_t)ex->V, NL = (size_t)ex->NL;
    if (ex->sup_indptr) { /* sparse results: the explanation computed them from the dense rows */
        r->ngram_sub = cl_trymalloc(n, sizeof *r->ngram_sub, "passage n-gram");
        r->ngram_h = cl_trymalloc(n, sizeof *r->ngram_h, "passage n-gram");
        r->lens_h = cl_trymalloc(n * NL, sizeof *r->lens_h, "passage lens");
        if (!r->ngram_sub || !r->ngram_h || !r->lens_h) return -1;
        memcpy(r->ngram_sub, ex->ngram_sub, n * sizeof *r->ngram_sub);
        memcpy(r->ngram_h, ex->ngram_h, n * sizeof *r->ngram_h);
        memcpy(r->lens_h, ex->lens_h, n * NL * sizeof *r->lens_h);
        double sum = 0;
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            if (ex->hellinger[i] == CL_H_EMPTY) r->n_empty++;
            else sum += ex->hellinger[i], used++;
        }
        r->mean_h = used ? sum / (double)used : CL_H_EMPTY;
        return 0;
    }
    r->ngram_sub = cl_trymalloc(n, sizeof *r->ngram_sub, "passage n-gram");
    r->ngram_counts = cl_trycalloc(n * V, sizeof *r->ngram_counts, "passage n-gram");
    r->ngram_h = cl_trymalloc(n, sizeof *r->ngram_h, "passage n-gram");
    r->lens_h = cl_trymalloc(n * NL, sizeof *r->lens_h, "passage lens");
    double *tmp = cl_trymalloc(V, sizeof *tmp, "passage");
    int rc = (!r->ngram_sub || !r->ngram_counts || !r->ngram_h || !r->lens_h || !tmp) ? -1 : 0;
    double sum = 0;
    size_t used = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        size_t len = r->first + i + 1 - r->win_start[i];
        int64_t sub = len == (size_t)cp->L ? cl_explain_find(ix, cp, r->tokens + r->win_start[i]) : -1;
        if (sub == -2) {
            rc = -1;
            break;
        }
        r->ngram_sub[i] = sub;
        int32_t *row = r->ngram_counts + i * V;
        if (sub >= 0 && cl_corpus_next_dense_read(cp, (size_t)sub, row)) {
            rc = -1;
            break;
        }
        for (size_t v = 0; v < V; v++) tmp[v] = row[v];
        r->ngram_h[i] = sub >= 0 ? cl_hellinger_df(tmp, ex->model_probs + i * V, V) : CL_H_EMPTY;
        for (size_t l = 0; l < NL; l++) {
            const float *lp = ex->lens + (i * NL + l) * V;
            for (size_t v = 0; v < V; v++) tmp[v] = lp[v];
            r->lens_h[i * NL + l] = cl_hellinger_df(tmp, ex->model_probs + i * V, V);
        }
        if (ex->hellinger[i] == CL_H_EMPTY) r->n_empty++;
        else sum += ex->hellinger[i], used++;
    }
    r->mean_h = used ? sum / (double)used : CL_H_EMPTY;
    free(tmp);
    return rc;
}

cl_passage_result *cl_passage_explain(const cl_index *ix, const cl_model *m, const cl_corpus *cp,
                                      const int32_t *tokens, size_t n, const cl_explain_params *par,
                                      MPI_Comm comm) {
    return cl_passage_explain_from(ix, m, cp, tokens, n, 0, par, comm);
}

cl_passage_result *cl_passage_explain_from(const cl_index *ix, const cl_model *m, const cl_corpus *cp,
                                           const int32_t *text, size_t n_text, size_t first,
                                           const cl_explain_params *par, MPI_Comm comm) {
    int rank = 0, up = 0, down = 0;
    MPI_Initialized(&up); /* without MPI_Init (a single-process command): rank 0 of 1 */
    if (up) MPI_Finalized(&down);
    if (up && !down) MPI_Comm_rank(comm, &rank);
    cl_passage_result *r = cl_trycalloc(1, sizeof *r, "passage");
    int err = !r;
    const int L = ix->L;
    int32_t *wt = NULL;
    size_t *off = NULL;
    if (!err && n_text == 0) err = 1, cl_error("the passage is empty");
    else if (!err && first >= n_text)
        err = 1, cl_error("position %zu: the passage has %zu positions (0..%zu)", first, n_text, n_text - 1);
    /* positions first .. n_text - 1: n entries */
    const size_t n = err ? 0 : n_text - first;
    if (!err) {
        r->n = n, r->L = L, r->first = first, r->n_text = n_text;
        r->tokens = cl_trymalloc(n_text, sizeof *r->tokens, "passage");
        r->win_start = cl_trymalloc(n, sizeof *r->win_start, "passage");
        r->next = cl_trymalloc(n, sizeof *r->next, "passage");
        off = cl_trymalloc(n + 1, sizeof *off, "passage windows");
        size_t tot = 0;
        for (size_t i = first; i < n_text; i++) tot += i + 1 < (size_t)L ? i + 1 : (size_t)L;
        wt = cl_trymalloc(tot, sizeof *wt, "passage windows");
        if (!r->tokens || !r->win_start || !r->next || !off || !wt) err = 1;
    }
    for (size_t i = 0; !err && i < n_text; i++)
        if (text[i] < 0 || text[i] >= m->cfg.vocab_size)
            err = cl_error("position %zu: token id %d outside the vocabulary [0, %d)", i, (int)text[i],
                           (int)m->cfg.vocab_size);
    if (!err) {
        memcpy(r->tokens, text, n_text * sizeof *text);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            const size_t t = first + i; /* the position in the text */
            size_t s = t + 1 > (size_t)L ? t + 1 - (size_t)L : 0;
            r->win_start[i] = s;
            r->next[i] = t + 1 < n_text ? text[t + 1] : -1;
            off[i] = o;
            memcpy(wt + o, text + s, (t + 1 - s) * sizeof *wt);
            o += t + 1 - s;
        }
        off[n] = o;
    }
    if (cl_par_agree(err ? -1 : 0, comm)) err = 1;
    if (err) {
        free(wt), free(off);
        cl_passage_free(r);
        return NULL;
    }
    r->ex = cl_explain_run(ix, m, cp, wt, off, n, par, comm);
    free(wt), free(off);
    err = !r->ex;
    if (!err && rank == 0 && baselines(r, ix, cp)) err = 1;
    if (cl_par_agree(err ? -1 : 0, comm)) err = 1;
    if (err) {
        cl_passage_free(r);
        return NULL;
    }
    return r;
}

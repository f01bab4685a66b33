/* The passage's search as `serve` runs it, without HTTP: the index held in
 * memory (cl_index_hold: huge pages, the sketch held, the sure pairs'
 * shortcut), one process, cl_passage_explain of the last 200 characters of
 * TEXT ($PASS: another text) with the paper's thresholds, top 10, on $THR
 * compute threads (default 1), R times. Prints per run the process CPU and
 * wall seconds, an FNV-1a hash of the results (matches, near counts, H, top
 * similarities and strings, counts: equal hashes between two binaries = the
 * same bits) and the exact pairs per block. A figure generator, not a test:
 * run two builds one after the other in one script to compare them.
 * usage: bench_passage_held INDEX.h5 CORPUS.h5 MODEL.h5 TEXT R */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"
#include "corpuslens/scan/explain.h"
#include "corpuslens/scan/index.h"
#include "corpuslens/scan/passage.h"

static double clk(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned long long h64(unsigned long long h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_passage_held INDEX.h5 CORPUS.h5 MODEL.h5 TEXT R\n");
        return 2;
    }
    cl_model *m = cl_model_map(argv[3]);
    cl_corpus *cp = m ? cl_corpus_load_any(argv[2]) : NULL;
    cl_index *ix = cp ? cl_index_open(argv[1]) : NULL;
    double t0 = clk(CLOCK_MONOTONIC);
    if (!ix || cl_index_hold(ix) || m->bpe) {
        fprintf(stderr, "bench_passage_held: %s\n", m && m->bpe ? "a character-level model only" : cl_last_error());
        return 1;
    }
    fprintf(stderr, "held in %.1f s\n", clk(CLOCK_MONOTONIC) - t0);
    FILE *f = fopen(argv[4], "rb");
    static char buf[1 << 24];
    size_t sz = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[sz] = 0;
    const char *txt = getenv("PASS") ? getenv("PASS") : buf + (sz > 200 ? sz - 200 : 0);
    size_t n = strlen(txt);
    const int V = m->cfg.vocab_size;
    int32_t *tok = malloc((n ? n : 1) * sizeof *tok);
    for (size_t i = 0; tok && i < n; i++) {
        tok[i] = -1;
        for (int v = 0; v < V; v++)
            if (m->vocab[v] == (unsigned char)txt[i]) tok[i] = v;
        if (tok[i] < 0 || (unsigned char)txt[i] >= 128) {
            fprintf(stderr, "bench_passage_held: character %zu is not in the vocabulary (ASCII only)\n", i);
            return 1;
        }
    }
    cl_explain_params par;
    memset(&par, 0, sizeof par);
    if (!tok || n == 0 || cl_explain_params_paper(&par, ix->Lh)) {
        fprintf(stderr, "bench_passage_held: an empty text, or an index without 6 hooked blocks\n");
        return 1;
    }
    par.top_k = 10;
    par.threads = getenv("THR") ? atoi(getenv("THR")) : 1;
    for (int rep = 0; rep < atoi(argv[5]); rep++) {
        double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
        cl_passage_result *r = cl_passage_explain(ix, m, cp, tok, n, &par, MPI_COMM_WORLD);
        double c1 = clk(CLOCK_PROCESS_CPUTIME_ID), w1 = clk(CLOCK_MONOTONIC);
        if (!r) {
            fprintf(stderr, "bench_passage_held: %s\n", cl_last_error());
            return 1;
        }
        const cl_explain_result *e = r->ex;
        const size_t P = e->P, Lh = (size_t)e->Lh, K = (size_t)e->K;
        unsigned long long h = 1469598103934665603ull;
        h = h64(h, e->n_matches, P * Lh * 8), h = h64(h, e->near, P * Lh * 8), h = h64(h, e->hellinger, P * 8);
        h = h64(h, e->top_sim, P * Lh * K * 4), h = h64(h, e->top_sub, P * Lh * K * 8);
        if (e->counts) h = h64(h, e->counts, P * Lh * (size_t)V * 8);
        printf("run %d: cpu %.3f s wall %.3f s hash %016llx exact pairs per block", rep, c1 - c0, w1 - w0, h);
        for (size_t b = 0; b < Lh; b++) printf(" %lld", (long long)e->pairs[b]);
        printf("\n");
        fflush(stdout);
        cl_passage_free(r);
    }
    free(tok);
    cl_index_close(ix), cl_corpus_free(cp), cl_model_free(m);
    return 0;
}

/* Unit tests of the corpus module: substrings, counts and first offsets against
 * a naive O(n^2) reference, the prompt sampler, prompt lists, corpus.h5. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/base/rng.h"

/* ---- naive reference: plain loops, no hashing ---- */

typedef struct {
    size_t N;
    size_t *first;   /* [N] first offsets */
    int32_t *counts; /* [N, V] dense next-token counts */
} naive_result;

static int window_eq(const int32_t *ids, size_t a, size_t b, int L) {
    for (int k = 0; k < L; k++)
        if (ids[a + k] != ids[b + k]) return 0;
    return 1;
}

static naive_result naive(const int32_t *ids, size_t n, int L, int V) {
    naive_result r = {0};
    size_t npos = n - (size_t)L + 1;
    r.first = calloc(npos, sizeof *r.first);
    r.counts = calloc(npos * (size_t)V, sizeof *r.counts);
    for (size_t p = 0; p < npos; p++) {
        size_t i = 0;
        while (i < r.N && !window_eq(ids, r.first[i], p, L)) i++;
        if (i == r.N) r.first[r.N++] = p;
        if (p + (size_t)L < n) r.counts[i * (size_t)V + (size_t)ids[p + (size_t)L]]++;
    }
    return r;
}

static void naive_free(naive_result *r) {
    free(r->first);
    free(r->counts);
}

/* Compare a built corpus with the naive result over ids. */
static void check_against_naive(const cl_corpus *c, const int32_t *ids, size_t n, int L, int V) {
    naive_result r = naive(ids, n, L, V);
    cr_assert_eq(c->n, r.N, "n=%zu L=%d: N %zu, naive %zu", n, L, c->n, r.N);
    cr_assert_eq(c->L, L);
    cr_assert_eq(c->V, V);
    int32_t *row = malloc((size_t)V * sizeof *row);
    for (size_t i = 0; i < r.N; i++) {
        cr_assert_eq((size_t)c->first_offset[i], r.first[i], "substring %zu: first offset %lld vs %zu",
                     i, (long long)c->first_offset[i], r.first[i]);
        for (int k = 0; k < L; k++)
            cr_assert_eq(cl_corpus_substring(c, i)[k], ids[r.first[i] + (size_t)k]);
        int64_t a = c->next_indptr[i], b = c->next_indptr[i + 1];
        for (int64_t k = a; k < b; k++) {
            cr_assert_gt(c->next_count[k], 0);
            if (k > a) cr_assert_gt(c->next_token[k], c->next_token[k - 1]);
        }
        cl_corpus_next_dense(c, i, row);
        for (int v = 0; v < V; v++)
            cr_assert_eq(row[v], r.counts[i * (size_t)V + (size_t)v],
                         "n=%zu L=%d substring %zu token %d: %d vs naive %d", n, L, i, v, row[v],
                         r.counts[i * (size_t)V + (size_t)v]);
    }
    cr_assert_eq(c->next_indptr[0], 0);
    cr_assert_eq((size_t)c->next_indptr[c->n], c->nnz);
    free(row);
    naive_free(&r);
}

static uint32_t *identity_vocab(int V) {
    uint32_t *v = malloc((size_t)V * sizeof *v);
    for (int i = 0; i < V; i++) v[i] = 'a' + (uint32_t)i;
    return v;
}

Test(substrings, random_ids_match_naive) {
    cl_rng r;
    cl_rng_seed(&r, 42);
    int trials = 0;
    for (int V = 1; V <= 6; V++) {
        uint32_t *vocab = identity_vocab(V);
        for (int t = 0; t < 40; t++) {
            size_t n = 1 + (size_t)cl_rng_below(&r, 300);
            int L = 1 + (int)cl_rng_below(&r, (uint64_t)(n < 14 ? n : 14));
            int32_t *ids = malloc(n * sizeof *ids);
            /* low-entropy texts: many repeated substrings */
            for (size_t p = 0; p < n; p++)
                ids[p] = (p > 4 && cl_rng_below(&r, 3) == 0) ? ids[p - 1 - cl_rng_below(&r, 4)]
                                                              : (int32_t)cl_rng_below(&r, (uint64_t)V);
            cl_corpus *c = cl_corpus_from_ids(ids, n, L, vocab, V);
            cr_assert_not_null(c, "%s", cl_last_error());
            check_against_naive(c, ids, n, L, V);
            cl_corpus_free(c);
            free(ids);
            trials++;
        }
        free(vocab);
    }
    cr_assert_eq(trials, 240);
}

Test(substrings, long_windows_and_whole_text) {
    /* L up to the 256 maximum, and L == n (one substring, no follower). */
    cl_rng r;
    cl_rng_seed(&r, 7);
    int V = 3;
    uint32_t *vocab = identity_vocab(V);
    size_t n = 600;
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t p = 0; p < n; p++) ids[p] = p < 300 ? (int32_t)cl_rng_below(&r, 3) : ids[p - 300]; /* below 3 */
    int Ls[] = {64, 200, 255, 256};
    for (size_t k = 0; k < sizeof Ls / sizeof *Ls; k++) {
        cl_corpus *c = cl_corpus_from_ids(ids, n, Ls[k], vocab, V);
        cr_assert_not_null(c, "%s", cl_last_error());
        check_against_naive(c, ids, n, Ls[k], V);
        cl_corpus_free(c);
    }
    cl_corpus *c = cl_corpus_from_ids(ids, 256, 256, vocab, V);
    cr_assert_not_null(c);
    cr_assert_eq(c->n, 1);
    cr_assert_eq(c->nnz, 0);
    cr_assert_eq(cl_corpus_next_total(c, 0), 0);
    cl_corpus_free(c);
    free(ids);
    free(vocab);
}

Test(substrings, final_substring_has_no_follower) {
    /* "abab", L=2: ab at 0 (followed by a) and at 2 (end: no follower); ba at 1 (b). */
    uint32_t *vocab = identity_vocab(2);
    int32_t ids[] = {0, 1, 0, 1};
    cl_corpus *c = cl_corpus_from_ids(ids, 4, 2, vocab, 2);
    cr_assert_not_null(c);
    cr_assert_eq(c->n, 2);
    cr_assert_eq(c->first_offset[0], 0);
    cr_assert_eq(c->first_offset[1], 1);
    cr_assert_eq(cl_corpus_next_total(c, 0), 1);
    cr_assert_eq(c->next_token[c->next_indptr[0]], 0);
    cr_assert_eq(c->next_token[c->next_indptr[1]], 1);
    cl_corpus_free(c);
    /* "ababba", L=3: bba occurs only at the end: an empty row. */
    int32_t ids2[] = {0, 1, 0, 1, 1, 0};
    c = cl_corpus_from_ids(ids2, 6, 3, vocab, 2); /* aba bab abb bba */
    cr_assert_not_null(c);
    cr_assert_eq(c->n, 4);
    cr_assert_eq(c->next_indptr[4] - c->next_indptr[3], 0, "last substring must have no counts");
    cl_corpus_free(c);
    free(vocab);
}

/* ---- UTF-8 text: characters, not bytes ---- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Independent UTF-8 encoder for the test (no corpuslens code). */
static size_t enc(uint32_t cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 63)),
               o[2] = (char)(0x80 | (cp & 63)), 3;
    return o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 63)),
           o[2] = (char)(0x80 | ((cp >> 6) & 63)), o[3] = (char)(0x80 | (cp & 63)), 4;
}

Test(substrings, multibyte_utf8_text_matches_naive) {
    static const uint32_t alphabet[] = {'a', 'b', '\n', 0xE9 /* é */, 0x20AC /* € */,
                                        0x1D11E /* 𝄞 */, ' '};
    const int A = sizeof alphabet / sizeof *alphabet;
    cl_rng r;
    cl_rng_seed(&r, 2024);
    for (int t = 0; t < 60; t++) {
        size_t n = 1 + (size_t)cl_rng_below(&r, 200);
        int L = 1 + (int)cl_rng_below(&r, (uint64_t)(n < 8 ? n : 8));
        int na = 1 + (int)cl_rng_below(&r, (uint64_t)A);
        uint32_t *cps = malloc(n * sizeof *cps);
        char *text = malloc(4 * n);
        size_t len = 0;
        for (size_t p = 0; p < n; p++) {
            cps[p] = alphabet[cl_rng_below(&r, (uint64_t)na)];
            len += enc(cps[p], text + len);
        }
        /* reference vocabulary: sorted unique code points */
        uint32_t *sorted = malloc(n * sizeof *sorted);
        memcpy(sorted, cps, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_u32);
        int V = 0;
        for (size_t p = 0; p < n; p++)
            if (p == 0 || sorted[p] != sorted[p - 1]) sorted[V++] = sorted[p];
        int32_t *ids = malloc(n * sizeof *ids);
        for (size_t p = 0; p < n; p++) {
            uint32_t *hit = bsearch(&cps[p], sorted, (size_t)V, sizeof *sorted, cmp_u32);
            ids[p] = (int32_t)(hit - sorted);
        }
        cl_corpus *c = cl_corpus_from_text(text, len, L, NULL, 0);
        cr_assert_not_null(c, "%s", cl_last_error());
        cr_assert_eq(c->V, V);
        for (int v = 0; v < V; v++) cr_assert_eq(c->vocab[v], sorted[v]);
        cr_assert_eq(c->corpus_chars, n);
        cr_assert_eq(c->corpus_bytes, len);
        check_against_naive(c, ids, n, L, V);
        /* the text of a substring is the UTF-8 of its characters */
        char buf[4 * CL_CORPUS_MAX_LEN + 1], want[4 * CL_CORPUS_MAX_LEN + 1];
        for (size_t i = 0; i < c->n; i++) {
            size_t wl = 0;
            for (int k = 0; k < L; k++) wl += enc(cps[(size_t)c->first_offset[i] + (size_t)k], want + wl);
            want[wl] = '\0';
            cr_assert_eq(cl_corpus_substring_text(c, i, buf), wl);
            cr_assert_str_eq(buf, want);
        }
        cl_corpus_free(c);
        free(cps);
        free(text);
        free(sorted);
        free(ids);
    }
}

Test(substrings, refusals) {
    uint32_t vocab[] = {'a', 'b'};
    int32_t ids[] = {0, 1, 0};
    cr_assert_null(cl_corpus_from_ids(ids, 3, 0, vocab, 2));
    cr_assert(strstr(cl_last_error(), "out of range"), "%s", cl_last_error());
    cr_assert_null(cl_corpus_from_ids(ids, 3, 257, vocab, 2));
    cr_assert_null(cl_corpus_from_ids(ids, 3, 4, vocab, 2));
    cr_assert(strstr(cl_last_error(), "fewer than"), "%s", cl_last_error());
    cr_assert_null(cl_corpus_from_ids(ids, 0, 1, vocab, 2));
    int32_t bad[] = {0, 2, 0};
    cr_assert_null(cl_corpus_from_ids(bad, 3, 1, vocab, 2));
    cr_assert(strstr(cl_last_error(), "position 1"), "%s", cl_last_error());

    cr_assert_null(cl_corpus_from_text("", 0, 1, NULL, 0));
    cr_assert(strstr(cl_last_error(), "empty"), "%s", cl_last_error());
    cr_assert_null(cl_corpus_from_text("abc", 3, 4, NULL, 0));
    cr_assert(strstr(cl_last_error(), "fewer than"), "%s", cl_last_error());
    cr_assert_null(cl_corpus_from_text("ab\xff", 3, 1, NULL, 0));
    cr_assert(strstr(cl_last_error(), "UTF-8"), "%s", cl_last_error());
    /* a character outside a given vocabulary is named with its position */
    cr_assert_null(cl_corpus_from_text("abbaz", 5, 2, vocab, 2));
    cr_assert(strstr(cl_last_error(), "'z'") && strstr(cl_last_error(), "position 4"), "%s",
              cl_last_error());
}

/* ---- sampler ---- */

Test(sampler, distinct_in_range_deterministic) {
    size_t N = 1000, P = 300;
    int64_t *a = malloc(P * sizeof *a), *b = malloc(P * sizeof *b);
    cr_assert_eq(cl_prompts_sample(N, P, 5, a), 0);
    cr_assert_eq(cl_prompts_sample(N, P, 5, b), 0);
    cr_assert_arr_eq(a, b, P * sizeof *a, "same seed must give the same prompts");
    char *seen = calloc(N, 1);
    for (size_t i = 0; i < P; i++) {
        cr_assert(a[i] >= 0 && (size_t)a[i] < N);
        cr_assert_eq(seen[a[i]], 0, "index %lld drawn twice", (long long)a[i]);
        seen[a[i]] = 1;
    }
    cr_assert_eq(cl_prompts_sample(N, P, 6, b), 0);
    size_t same = 0;
    for (size_t i = 0; i < P; i++) same += a[i] == b[i];
    cr_assert_lt(same, 10, "seeds 5 and 6 agree at %zu of %zu positions", same, P);
    /* P == N is a permutation */
    int64_t *perm = malloc(N * sizeof *perm);
    cr_assert_eq(cl_prompts_sample(N, N, 1, perm), 0);
    memset(seen, 0, N);
    for (size_t i = 0; i < N; i++) seen[perm[i]]++;
    for (size_t i = 0; i < N; i++) cr_assert_eq(seen[i], 1);
    cr_assert_eq(cl_prompts_sample(N, N + 1, 1, perm), -1);
    cr_assert(strstr(cl_last_error(), "1001"), "%s", cl_last_error());
    cr_assert_eq(cl_prompts_sample(N, 0, 1, perm), -1);
    free(a);
    free(b);
    free(seen);
    free(perm);
}

Test(sampler, follows_the_documented_procedure) {
    /* corpus.h: a[j] = j; for i < P: j = i + cl_rng_below(N - i); swap; prompt i = a[i]. */
    size_t N = 97, P = 40;
    uint64_t seed = 123456789;
    int64_t a[97], got[40];
    for (size_t j = 0; j < N; j++) a[j] = (int64_t)j;
    cl_rng r;
    cl_rng_seed(&r, seed);
    for (size_t i = 0; i < P; i++) {
        size_t j = i + (size_t)cl_rng_below(&r, N - i);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    cr_assert_eq(cl_prompts_sample(N, P, seed, got), 0);
    cr_assert_arr_eq(got, a, P * sizeof *got);
}

Test(sampler, roughly_uniform) {
    /* Over many seeds: how often each index is drawn (expected T*P/N each) and
     * which index comes first (expected T/N each). Chi-square, 19 degrees of
     * freedom: the 1e-6 tail starts near 60; a biased sampler lands far above. */
    enum { N = 20, P = 5, T = 20000 };
    double hit[N] = {0}, first[N] = {0};
    int64_t out[P];
    for (uint64_t s = 0; s < T; s++) {
        cr_assert_eq(cl_prompts_sample(N, P, s, out), 0);
        for (int k = 0; k < P; k++) hit[out[k]]++;
        first[out[0]]++;
    }
    double chi_hit = 0, chi_first = 0, eh = (double)T * P / N, ef = (double)T / N;
    for (int i = 0; i < N; i++) {
        chi_hit += (hit[i] - eh) * (hit[i] - eh) / eh;
        chi_first += (first[i] - ef) * (first[i] - ef) / ef;
    }
    cr_assert_lt(chi_hit, 60.0, "chi-square of inclusion counts %.1f", chi_hit);
    cr_assert_lt(chi_first, 60.0, "chi-square of first draws %.1f", chi_first);
}

/* ---- prompt lists ---- */

static int parse(const char *s, size_t N, int64_t **out, size_t *P) {
    return cl_prompts_parse(s, strlen(s), N, "p.txt", out, P);
}

Test(prompt_list, valid_forms) {
    int64_t *idx = NULL;
    size_t P = 0;
    cr_assert_eq(parse("3\n1\n2\n", 10, &idx, &P), 0, "%s", cl_last_error());
    cr_assert_eq(P, 3);
    cr_assert_eq(idx[0], 3);
    cr_assert_eq(idx[1], 1);
    cr_assert_eq(idx[2], 2);
    free(idx);
    cr_assert_eq(parse(" 0 \r\n9\t\r\n5", 10, &idx, &P), 0, "%s", cl_last_error());
    cr_assert_eq(P, 3);
    cr_assert_eq(idx[1], 9);
    cr_assert_eq(idx[2], 5);
    free(idx);
}

Test(prompt_list, refusals_name_the_line) {
    int64_t *idx = NULL;
    size_t P = 0;
    struct {
        const char *text, *want;
    } cases[] = {
        {"1\n\n2\n", "p.txt:2: empty line"},
        {"1\nabc\n", "p.txt:2: 'abc' is not"},
        {"-1\n", "p.txt:1: '-1' is not"},
        {"1.5\n", "p.txt:1:"},
        {"0\n1\n10\n", "p.txt:3: index 10 is out of range"},
        {"99999999999999999999999\n", "p.txt:1: index 99999999999999999999999 is out of range"},
        {"4\n5\n4\n", "p.txt:3: index 4 repeats line 1"},
        {"", "no prompt indices"},
        {"1 2\n", "p.txt:1:"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        cr_assert_eq(parse(cases[k].text, 10, &idx, &P), -1, "case %zu accepted", k);
        cr_assert(strstr(cl_last_error(), cases[k].want), "case %zu: '%s' lacks '%s'", k,
                  cl_last_error(), cases[k].want);
    }
}

/* ---- corpus.h5 ---- */

static void tmpname(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/test_corpus_%d_%s.h5", (int)getpid(), tag);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static cl_corpus *small_corpus(void) {
    const char *text = "To be, or not to be: that is the question.\nTo bé or not — 𝄞 to be\n";
    cl_corpus *c = cl_corpus_from_text(text, strlen(text), 4, NULL, 0);
    cr_assert_not_null(c, "%s", cl_last_error());
    snprintf(c->corpus_file, sizeof c->corpus_file, "hamlet.txt");
    cl_sha256_mem(text, strlen(text), c->corpus_sha256);
    return c;
}

Test(corpus_file, save_load_round_trip) {
    cl_h5_quiet();
    char path[256], tmp[300];
    tmpname(path, sizeof path, "rt");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cl_corpus *c = small_corpus();
    /* no prompts (prepare --prompts 0): a corpus without /prompts, loaded with none */
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    cl_corpus *z = cl_corpus_load(path);
    cr_assert(z != NULL, "%s", cl_last_error());
    cr_assert_eq(z->n_prompts, 0);
    cr_assert_eq(z->n, c->n);
    cl_corpus_free(z);
    remove(path);
    cr_assert_eq(cl_corpus_sample_prompts(c, 7, 99), 0);
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    cr_assert(file_exists(path));
    cr_assert(!file_exists(tmp), "the temporary file must be renamed");
    cl_corpus *d = cl_corpus_load(path);
    cr_assert_not_null(d, "%s", cl_last_error());
    cr_assert_eq(d->V, c->V);
    cr_assert_arr_eq(d->vocab, c->vocab, (size_t)c->V * sizeof *c->vocab);
    cr_assert_eq(d->L, c->L);
    cr_assert_eq(d->n, c->n);
    cr_assert_eq(d->nnz, c->nnz);
    cr_assert_arr_eq(d->tokens, c->tokens, c->n * (size_t)c->L * sizeof *c->tokens);
    cr_assert_arr_eq(d->first_offset, c->first_offset, c->n * sizeof *c->first_offset);
    cr_assert_arr_eq(d->next_indptr, c->next_indptr, (c->n + 1) * sizeof *c->next_indptr);
    cr_assert_arr_eq(d->next_token, c->next_token, c->nnz * sizeof *c->next_token);
    cr_assert_arr_eq(d->next_count, c->next_count, c->nnz * sizeof *c->next_count);
    cr_assert_eq(d->n_prompts, 7);
    cr_assert_arr_eq(d->prompt_index, c->prompt_index, 7 * sizeof *c->prompt_index);
    cr_assert_eq(d->prompt_source, CL_PROMPTS_SEED);
    cr_assert_eq(d->seed, 99);
    cr_assert_str_eq(d->corpus_file, "hamlet.txt");
    cr_assert_str_eq(d->corpus_sha256, c->corpus_sha256);
    cr_assert_eq(d->corpus_chars, c->corpus_chars);
    cr_assert_eq(d->corpus_bytes, c->corpus_bytes);
    cr_assert_str_eq(d->vocab_source, "corpus");
    cl_corpus_free(d);
    cl_corpus_free(c);
    remove(path);
}

Test(corpus_file, save_to_missing_directory_leaves_nothing) {
    cl_h5_quiet();
    cl_corpus *c = small_corpus();
    cr_assert_eq(cl_corpus_sample_prompts(c, 3, 1), 0);
    cr_assert_eq(cl_corpus_save(c, "/nonexistent-dir/x.h5"), -1);
    cr_assert(strstr(cl_last_error(), "/nonexistent-dir/x.h5"), "%s", cl_last_error());
    cl_corpus_free(c);
}

Test(corpus_file, load_refusals) {
    cl_h5_quiet();
    char path[256];
    tmpname(path, sizeof path, "bad");
    /* not HDF5 */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "not an HDF5 file"), "%s", cl_last_error());
    /* HDF5 but not a corpus (e.g. a model file) */
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d = 3;
    int32_t x[3] = {1, 2, 3};
    cr_assert_eq(cl_h5_write(h, "/weights/x", H5T_NATIVE_INT32, 1, &d, x), 0);
    H5Fclose(h);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "not a corpuslens corpus file"), "%s", cl_last_error());
    /* a corpus with one dataset of the wrong shape */
    cl_corpus *c = small_corpus();
    cr_assert_eq(cl_corpus_sample_prompts(c, 3, 1), 0);
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(h, 0);
    cr_assert_geq(H5Ldelete(h, "/substrings/first_offset", H5P_DEFAULT), 0);
    int64_t y[3] = {0, 1, 2};
    cr_assert_eq(cl_h5_write(h, "/substrings/first_offset", H5T_NATIVE_INT64, 1, &d, y), 0);
    H5Fclose(h);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "/substrings/first_offset") &&
                  strstr(cl_last_error(), "shape [3]"),
              "%s", cl_last_error());
    /* a corpus with a missing dataset */
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Ldelete(h, "/substrings/next/count", H5P_DEFAULT), 0);
    H5Fclose(h);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "/substrings/next/count is missing"), "%s", cl_last_error());
    /* a prompt index out of range */
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(h, "/prompts/index", H5P_DEFAULT);
    int64_t badp[3] = {0, (int64_t)c->n, 1};
    cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, badp), 0);
    H5Dclose(ds);
    H5Fclose(h);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "/prompts/index"), "%s", cl_last_error());
    /* missing file */
    remove(path);
    cr_assert_null(cl_corpus_load(path));
    cr_assert(strstr(cl_last_error(), "cannot open"), "%s", cl_last_error());
    cl_corpus_free(c);
}

Test(corpus_file, prompt_file_is_recorded) {
    cl_h5_quiet();
    char path[256], pf[256];
    tmpname(path, sizeof path, "pf");
    snprintf(pf, sizeof pf, "/tmp/test_corpus_%d_prompts.txt", (int)getpid());
    cl_corpus *c = small_corpus();
    FILE *f = fopen(pf, "w");
    fprintf(f, "%zu\n0\n2\n", c->n - 1);
    fclose(f);
    cr_assert_eq(cl_corpus_read_prompt_file(c, pf), 0, "%s", cl_last_error());
    cr_assert_eq(c->n_prompts, 3);
    cr_assert_eq((size_t)c->prompt_index[0], c->n - 1);
    char sha[65];
    cr_assert_eq(cl_sha256_file(pf, sha), 0);
    cr_assert_str_eq(c->prompt_file_sha256, sha);
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    cl_corpus *d = cl_corpus_load(path);
    cr_assert_not_null(d, "%s", cl_last_error());
    cr_assert_eq(d->prompt_source, CL_PROMPTS_FILE);
    cr_assert_str_eq(d->prompt_file, pf);
    cr_assert_str_eq(d->prompt_file_sha256, sha);
    cl_corpus_free(d);
    /* a bad file leaves the prompts as they were */
    f = fopen(pf, "w");
    fprintf(f, "%zu\n", c->n);
    fclose(f);
    cr_assert_eq(cl_corpus_read_prompt_file(c, pf), -1);
    cr_assert_eq(c->n_prompts, 3);
    cl_corpus_free(c);
    remove(pf);
    remove(path);
}

/* A corpus whose /substrings/tokens spans several chunks (the last partial):
 * random ids, so nearly every window is unique. */
static cl_corpus *chunked_corpus(const char *path) {
    const size_t n = 150000;
    const int V = 20, L = 8;
    int32_t *ids = malloc(n * sizeof *ids);
    cl_rng r;
    cl_rng_seed(&r, 2026);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)cl_rng_below(&r, (uint64_t)V);
    uint32_t *vocab = identity_vocab(V);
    cl_corpus *c = cl_corpus_from_ids(ids, n, L, vocab, V);
    cr_assert_not_null(c, "%s", cl_last_error());
    free(ids), free(vocab);
    cr_assert_eq(cl_corpus_sample_prompts(c, 5, 3), 0);
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    cr_assert_gt(c->n * (size_t)L * 4, 3u << 20, "tokens must span several 1 MB chunks");
    return c;
}

Test(corpus_file, open_reads_rows_on_demand_like_load) {
    cl_h5_quiet();
    char path[256];
    tmpname(path, sizeof path, "lazy");
    cl_corpus *c = chunked_corpus(path);
    cl_corpus *d = cl_corpus_load(path); /* raw chunk reads (cl_h5_read_exact) */
    cr_assert_not_null(d, "%s", cl_last_error());
    cr_assert_arr_eq(d->tokens, c->tokens, c->n * (size_t)c->L * sizeof *c->tokens);
    cr_assert_arr_eq(d->first_offset, c->first_offset, c->n * sizeof *c->first_offset);
    cr_assert_arr_eq(d->next_indptr, c->next_indptr, (c->n + 1) * sizeof *c->next_indptr);
    cl_corpus *o = cl_corpus_open(path);
    cr_assert_not_null(o, "%s", cl_last_error());
    cr_assert(o->tokens == NULL && o->first_offset == NULL);
    cr_assert_eq(o->n, c->n);
    cr_assert_eq(o->nnz, c->nnz);
    cr_assert_arr_eq(o->next_indptr, c->next_indptr, (c->n + 1) * sizeof *c->next_indptr);
    cr_assert_arr_eq(o->next_token, c->next_token, c->nnz * sizeof *c->next_token);
    cr_assert_arr_eq(o->next_count, c->next_count, c->nnz * sizeof *c->next_count);
    int32_t row[CL_CORPUS_MAX_LEN];
    char t1[4 * CL_CORPUS_MAX_LEN + 1], t2[4 * CL_CORPUS_MAX_LEN + 1];
    /* every row in order, then 2,000 that jump between chunks, then backwards */
    for (size_t i = 0; i < c->n; i++) {
        cr_assert_eq(cl_corpus_row(o, i, row), 0, "%s", cl_last_error());
        cr_assert_arr_eq(row, cl_corpus_substring(c, i), (size_t)c->L * sizeof *row, "row %zu", i);
    }
    for (size_t k = 0; k < 2000; k++) {
        size_t i = (k * 104729) % c->n;
        cr_assert_eq(cl_corpus_row(o, i, row), 0, "%s", cl_last_error());
        cr_assert_arr_eq(row, cl_corpus_substring(c, i), (size_t)c->L * sizeof *row, "row %zu", i);
    }
    for (size_t i = c->n; i-- > c->n - 100;) {
        cr_assert_eq(cl_corpus_row(o, i, row), 0);
        cr_assert_arr_eq(row, cl_corpus_substring(c, i), (size_t)c->L * sizeof *row);
        long nb = cl_corpus_row_text(o, i, t1);
        cr_assert_eq((size_t)nb, cl_corpus_substring_text(c, i, t2));
        cr_assert_str_eq(t1, t2);
    }
    cr_assert_eq(cl_corpus_row(o, c->n, row), -1, "a row past the end must be refused");
    cl_corpus_free(o);
    cl_corpus_free(d);
    cl_corpus_free(c);
    remove(path);
}

Test(corpus_file, open_and_load_refuse_corrupt_or_truncated_tokens) {
    cl_h5_quiet();
    char path[256], bad[256];
    tmpname(path, sizeof path, "lz");
    tmpname(bad, sizeof bad, "lzbad");
    cl_corpus *c = chunked_corpus(path);
    /* where chunk 1 of /substrings/tokens lies */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/substrings/tokens", H5P_DEFAULT);
    hsize_t chunk[2];
    hid_t dcpl = H5Dget_create_plist(ds);
    cr_assert_eq(H5Pget_chunk(dcpl, 2, chunk), 2);
    H5Pclose(dcpl);
    hsize_t off[2] = {chunk[0], 0}, size = 0;
    unsigned mask;
    haddr_t addr;
    cr_assert_geq(H5Dget_chunk_info_by_coord(ds, off, &mask, &addr, &size), 0);
    H5Dclose(ds);
    H5Fclose(f);
    size_t len;
    FILE *in = fopen(path, "rb");
    fseek(in, 0, SEEK_END);
    len = (size_t)ftell(in);
    rewind(in);
    unsigned char *data = malloc(len);
    cr_assert_eq(fread(data, 1, len, in), len);
    fclose(in);
    int32_t row[CL_CORPUS_MAX_LEN];
    /* control: the intact copy reads */
    FILE *out = fopen(bad, "wb");
    fwrite(data, 1, len, out);
    fclose(out);
    cl_corpus *o = cl_corpus_open(bad);
    cr_assert_not_null(o, "%s", cl_last_error());
    cr_assert_eq(cl_corpus_row(o, (size_t)chunk[0] + 5, row), 0, "%s", cl_last_error());
    cl_corpus_free(o);
    /* one byte flipped in the middle of chunk 1 */
    data[addr + size / 2] ^= 0x5a;
    out = fopen(bad, "wb");
    fwrite(data, 1, len, out);
    fclose(out);
    cr_assert_null(cl_corpus_load(bad), "a corrupt tokens chunk must be refused by load");
    cr_assert(strstr(cl_last_error(), "/substrings/tokens") && strstr(cl_last_error(), "corrupt"), "%s",
              cl_last_error());
    o = cl_corpus_open(bad);
    cr_assert_not_null(o, "%s", cl_last_error());
    cr_assert_eq(cl_corpus_row(o, 3, row), 0, "chunk 0 is intact: %s", cl_last_error());
    cr_assert_eq(cl_corpus_row(o, (size_t)chunk[0] + 5, row), -1, "a row of the corrupt chunk must be refused");
    cr_assert(strstr(cl_last_error(), "corrupt"), "%s", cl_last_error());
    cl_corpus_free(o);
    /* truncated inside the tokens' last chunk */
    data[addr + size / 2] ^= 0x5a;
    out = fopen(bad, "wb");
    fwrite(data, 1, len * 3 / 4, out);
    fclose(out);
    cr_assert_null(cl_corpus_open(bad), "a truncated corpus must be refused by open");
    cr_assert_null(cl_corpus_load(bad), "a truncated corpus must be refused by load");
    free(data);
    cl_corpus_free(c);
    remove(path);
    remove(bad);
}

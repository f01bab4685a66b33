/* Unit tests of the suffix array and the ∞-gram / backoff n-gram (issue 23)
 * against naive references: a plain sort of all suffixes, and a scan of the
 * text for every suffix of the window. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/corpus/infgram.h"

static const int32_t *g_s;
static size_t g_n;
static int cmp_suffix(const void *a, const void *b) {
    size_t p = (size_t)*(const int64_t *)a, q = (size_t)*(const int64_t *)b;
    while (p < g_n && q < g_n) {
        if (g_s[p] != g_s[q]) return g_s[p] < g_s[q] ? -1 : 1;
        p++, q++;
    }
    return p == g_n ? (q == g_n ? 0 : -1) : 1;
}

static int64_t *naive_sa(const int32_t *s, size_t n) {
    int64_t *sa = malloc(n * sizeof *sa);
    for (size_t i = 0; i < n; i++) sa[i] = (int64_t)i;
    g_s = s, g_n = n;
    qsort(sa, n, sizeof *sa, cmp_suffix);
    return sa;
}

static int32_t *random_text(uint64_t seed, size_t n, int V) {
    cl_rng r;
    cl_rng_seed(&r, seed);
    int32_t *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (int32_t)cl_rng_below(&r, (uint64_t)V);
    return s;
}

Test(infgram, suffix_array_matches_naive_sort) {
    const size_t ns[] = {1, 2, 7, 64, 500, 3000};
    const int Vs[] = {1, 2, 3, 26};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Vs / sizeof *Vs; b++) {
            int32_t *s = random_text(a * 10 + b, ns[a], Vs[b]);
            int64_t *sa = cl_suffix_array(s, ns[a], Vs[b]), *ref = naive_sa(s, ns[a]);
            cr_assert_not_null(sa, "%s", cl_last_error());
            cr_expect_arr_eq(sa, ref, ns[a] * sizeof *sa, "n %zu V %d", ns[a], Vs[b]);
            cr_expect_eq(cl_suffix_array_check(sa, ns[a], "sa"), 0);
            free(s), free(sa), free(ref);
        }
}

Test(infgram, suffix_array_refuses_bad_input) {
    int32_t s[3] = {0, 5, 1};
    cr_expect_null(cl_suffix_array(s, 3, 2));
    cr_expect_null(cl_suffix_array(s, 0, 2));
}

Test(infgram, check_refuses_non_permutations) {
    int64_t ok[4] = {3, 0, 2, 1}, dup[4] = {3, 0, 3, 1}, out[4] = {3, 0, 4, 1}, neg[4] = {3, -1, 2, 1};
    cr_expect_eq(cl_suffix_array_check(ok, 4, "sa"), 0);
    cr_expect_eq(cl_suffix_array_check(dup, 4, "sa"), -1);
    cr_expect_eq(cl_suffix_array_check(out, 4, "sa"), -1);
    cr_expect_eq(cl_suffix_array_check(neg, 4, "sa"), -1);
}

/* naive: for k = 1.., scan every position; longest k with >= K followed
   occurrences; counts of the followers */
static int naive_infgram(const int32_t *s, size_t n, int V, const int32_t *w, int m, int64_t K, int32_t *counts,
                         int64_t *occ) {
    int best = 0;
    *occ = 0;
    memset(counts, 0, (size_t)V * sizeof *counts);
    for (int k = 1; k <= m; k++) {
        int64_t c = 0;
        for (size_t p = 0; p + (size_t)k < n; p++)
            if (!memcmp(s + p, w + m - k, (size_t)k * sizeof *s)) c++;
        if (c >= K) {
            best = k, *occ = c;
            memset(counts, 0, (size_t)V * sizeof *counts);
            for (size_t p = 0; p + (size_t)k < n; p++)
                if (!memcmp(s + p, w + m - k, (size_t)k * sizeof *s)) counts[s[p + k]]++;
        }
    }
    return best;
}

static void check_window(const int32_t *s, size_t n, const int64_t *sa, int V, const int32_t *w, int m, int64_t K) {
    int32_t c1[64], c2[64];
    int64_t o1, o2;
    int k1 = cl_infgram(s, sa, n, V, w, m, K, c1, &o1), k2 = naive_infgram(s, n, V, w, m, K, c2, &o2);
    cr_expect_eq(k1, k2, "longest suffix %d, naive %d (m %d, K %lld)", k1, k2, m, (long long)K);
    cr_expect_eq(o1, o2, "occurrences %lld, naive %lld", (long long)o1, (long long)o2);
    cr_expect_arr_eq(c1, c2, (size_t)V * sizeof *c1, "follower counts differ (m %d, K %lld)", m, (long long)K);
}

Test(infgram, queries_match_naive_scan) {
    const int V = 4;
    const size_t n = 2000;
    int32_t *s = random_text(7, n, 3); /* token 3 never occurs: windows ending in it have no match */
    int64_t *sa = cl_suffix_array(s, n, V);
    cr_assert_not_null(sa);
    cl_rng r;
    cl_rng_seed(&r, 99);
    int32_t w[40];
    for (int t = 0; t < 200; t++) {
        int m = 1 + (int)cl_rng_below(&r, 40);
        if (t % 3 == 0) { /* a window copied from the text: long matches */
            size_t p = cl_rng_below(&r, n - (size_t)m + 1);
            memcpy(w, s + p, (size_t)m * sizeof *w);
        } else
            for (int k = 0; k < m; k++) w[k] = (int32_t)cl_rng_below(&r, (uint64_t)V);
        check_window(s, n, sa, V, w, m, 1);
        check_window(s, n, sa, V, w, m, 10);
        check_window(s, n, sa, V, w, m, 1000);
    }
    /* no match at all: the last character never occurs */
    int32_t none[3] = {0, 1, 3}, c[4];
    int64_t occ = -1;
    cr_expect_eq(cl_infgram(s, sa, n, V, none, 3, 1, c, &occ), 0);
    cr_expect_eq(occ, 0);
    for (int v = 0; v < V; v++) cr_expect_eq(c[v], 0);
    free(s), free(sa);
}

Test(infgram, suffix_at_the_end_of_the_text_has_no_follower) {
    /* "abcabd": "d" occurs only at the very end (no follower); "ab" twice, both followed */
    int32_t s[6] = {0, 1, 2, 0, 1, 3}; /* a b c a b d */
    int64_t *sa = cl_suffix_array(s, 6, 4);
    int32_t w[3] = {2, 0, 1}, c[4];     /* "cab": occurs at 2, follower d */
    int64_t occ;
    cr_expect_eq(cl_infgram(s, sa, 6, 4, w, 3, 1, c, &occ), 3);
    cr_expect_eq(occ, 1);
    cr_expect_eq(c[3], 1);
    int32_t e[2] = {1, 3}, tail[1] = {3}; /* "bd": only at the very end, no follower */
    cr_expect_eq(cl_infgram(s, sa, 6, 4, e, 2, 1, c, &occ), 0);
    cr_expect_eq(cl_infgram(s, sa, 6, 4, tail, 1, 1, c, &occ), 0);
    int32_t ab[2] = {0, 1}; /* backoff K = 2: "ab" twice, both followed (c, d) */
    cr_expect_eq(cl_infgram(s, sa, 6, 4, ab, 2, 2, c, &occ), 2);
    cr_expect_eq(occ, 2);
    cr_expect_eq(c[2], 1);
    cr_expect_eq(c[3], 1);
    free(sa);
}

/* ---- corpus.h5's /text: written when the array is built, read and checked ---- */
#include <hdf5.h>
#include <unistd.h>

#include "corpuslens/corpus/corpus.h"

static void overwrite_i64(const char *path, const char *ds, size_t at, int64_t v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t start = at, one = 1;
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, NULL, &one, NULL);
    hid_t ms = H5Screate_simple(1, &one, NULL);
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_INT64, ms, sp, H5P_DEFAULT, &v), 0);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
}

Test(infgram, corpus_file_text_and_suffix_array) {
    const char *text = "to be or not to be, that is the question: to be.";
    char path[] = "/tmp/test_infgram_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cl_corpus *c = cl_corpus_from_text(text, strlen(text), 4, NULL, 0);
    cr_assert_not_null(c, "%s", cl_last_error());
    cr_assert_eq(c->n_text, strlen(text));
    cr_assert_eq(cl_corpus_sample_prompts(c, 3, 1), 0);
    /* without the array: no /text (an old file), which still opens */
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    cl_corpus *o = cl_corpus_open(path);
    cr_assert_not_null(o, "%s", cl_last_error());
    cr_expect_null(o->suffix_array);
    cr_expect_eq(o->n_text, 0);
    cl_corpus_free(o);
    /* with it: read back equal, by both readers */
    cr_assert_eq(cl_corpus_build_suffix_array(c), 0, "%s", cl_last_error());
    cr_assert_eq(cl_corpus_save(c, path), 0, "%s", cl_last_error());
    for (int lazy = 0; lazy < 2; lazy++) {
        o = lazy ? cl_corpus_open(path) : cl_corpus_load(path);
        cr_assert_not_null(o, "%s", cl_last_error());
        cr_assert_eq(o->n_text, c->n_text);
        cr_expect_arr_eq(o->text, c->text, c->n_text * sizeof *c->text);
        cr_expect_arr_eq(o->suffix_array, c->suffix_array, c->n_text * sizeof *c->suffix_array);
        cl_corpus_free(o);
    }
    /* a repeated position and one outside the text are refused, naming the dataset */
    int64_t keep = c->suffix_array[1];
    overwrite_i64(path, "/text/suffix_array", 1, c->suffix_array[0]);
    cr_expect_null(cl_corpus_open(path));
    cr_expect(strstr(cl_last_error(), "/text/suffix_array") != NULL, "%s", cl_last_error());
    overwrite_i64(path, "/text/suffix_array", 1, (int64_t)c->n_text);
    cr_expect_null(cl_corpus_load(path));
    cr_expect(strstr(cl_last_error(), "/text/suffix_array") != NULL, "%s", cl_last_error());
    overwrite_i64(path, "/text/suffix_array", 1, keep);
    o = cl_corpus_open(path);
    cr_expect_not_null(o, "%s", cl_last_error()); /* negative control: restored, accepted */
    cl_corpus_free(o);
    /* /text/tokens without the array is refused */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Ldelete(f, "/text/suffix_array", H5P_DEFAULT), 0);
    H5Fclose(f);
    cr_expect_null(cl_corpus_open(path));
    cl_corpus_free(c);
    unlink(path);
}

/* The scan writer's merge of match lists from any number of ranks
 * (scan_merge_sources, src/scan/scan_util.c), against a naive reference:
 * every entry of every source, sorted by (similarity desc, substring asc),
 * cut to the cap. 1,500 sources: the old writer kept cursors for at most
 * 1024 ranks and silently dropped the matches of the others; a negative
 * control shows that dropping sources >= 1024 is caught. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/rng.h"
#include "scan/scan_internal.h"

#define NSRC 1500
#define NLISTS 4

typedef struct {
    scan_match *a;
    size_t n, alloc;
    int64_t count[NLISTS];
    size_t nl;
} sink_t;

static int sink(void *u, const scan_mlist *l) {
    sink_t *s = u;
    if (s->n + l->n > s->alloc) {
        s->alloc = (s->n + l->n) * 2;
        s->a = realloc(s->a, s->alloc * sizeof *s->a);
        if (!s->a) return -1;
    }
    if (l->n) memcpy(s->a + s->n, l->a, l->n * sizeof *l->a);
    s->n += l->n;
    s->count[s->nl++] = l->n;
    return 0;
}

static int naive_cmp(const void *a, const void *b) {
    const scan_match *x = a, *y = b;
    if (x->sim > y->sim) return -1;
    if (x->sim < y->sim) return 1;
    return x->sub < y->sub ? -1 : x->sub > y->sub;
}

typedef struct {
    char *buf;
    int displ[NSRC];
    scan_match *all[NLISTS]; /* every source's entries, uncapped */
    size_t nall[NLISTS];
} fixture;

/* Source s holds k(s, i) matches of list i with unique substrings; the
 * similarities are coarse (many ties across sources); the last sources hold
 * the largest similarities of list 0, so a merge that stops at 1024 sources
 * loses the top of that list. Each source keeps its own top-cap, as a rank
 * does before sending. */
static void make(fixture *f, long cap) {
    cl_rng r;
    cl_rng_seed(&r, 42);
    size_t bytes = 0;
    scan_mlist *ls = calloc((size_t)NSRC * NLISTS, sizeof *ls);
    cr_assert(ls);
    for (int i = 0; i < NLISTS; i++) f->all[i] = malloc(NSRC * 12 * sizeof(scan_match)), f->nall[i] = 0;
    for (int s = 0; s < NSRC; s++) {
        bytes += NLISTS * sizeof(uint32_t);
        for (int i = 0; i < NLISTS; i++) {
            scan_mlist *l = &ls[s * NLISTS + i];
            int k = (int)(cl_rng_u64(&r) % 12);
            for (int j = 0; j < k; j++) {
                float sim = 0.7f + 0.01f * (float)(cl_rng_u64(&r) % 25);
                if (i == 0 && s >= NSRC - 10) sim = 0.99f;
                int32_t sub = s * 16 + j;
                cr_assert(scan_mlist_add(l, sim, sub, 0) == 0);
                f->all[i][f->nall[i]].sim = sim, f->all[i][f->nall[i]].sub = sub, f->nall[i]++;
            }
            scan_mlist_sort_cap(l, cap);
            bytes += l->n * sizeof(scan_match);
        }
    }
    f->buf = malloc(bytes);
    size_t at = 0;
    for (int s = 0; s < NSRC; s++) {
        f->displ[s] = (int)at;
        uint32_t *cnt = (uint32_t *)(f->buf + at);
        at += NLISTS * sizeof(uint32_t);
        for (int i = 0; i < NLISTS; i++) {
            scan_mlist *l = &ls[s * NLISTS + i];
            cnt[i] = l->n;
            if (l->n) memcpy(f->buf + at, l->a, l->n * sizeof *l->a);
            at += l->n * sizeof *l->a;
            free(l->a);
        }
    }
    free(ls);
}

/* Whether merging the first nsrc sources equals the naive top-cap of all. */
static int merge_matches_naive(fixture *f, int nsrc, long cap) {
    sink_t s = {0};
    int64_t index2[2 * NLISTS];
    cr_assert(scan_merge_sources(f->buf, f->displ, nsrc, NLISTS, cap, index2, sink, &s) == 0);
    int same = s.nl == NLISTS;
    size_t at = 0;
    for (int i = 0; i < NLISTS && same; i++) {
        qsort(f->all[i], f->nall[i], sizeof *f->all[i], naive_cmp);
        size_t want = cap > 0 && f->nall[i] > (size_t)cap ? (size_t)cap : f->nall[i];
        same = (size_t)s.count[i] == want && index2[2 * i + 1] == s.count[i];
        for (size_t j = 0; j < want && same; j++)
            same = s.a[at + j].sub == f->all[i][j].sub && !(s.a[at + j].sim != f->all[i][j].sim);
        at += want;
    }
    free(s.a);
    return same;
}

static void drop(fixture *f) {
    free(f->buf);
    for (int i = 0; i < NLISTS; i++) free(f->all[i]);
}

Test(scan_merge, capped_1500_sources_equal_naive) {
    fixture f;
    make(&f, 30);
    cr_expect(merge_matches_naive(&f, NSRC, 30), "the merge of 1500 sources differs from the naive top-30");
    /* negative control: the old limit (first 1024 sources only) is caught */
    cr_expect(!merge_matches_naive(&f, 1024, 30), "dropping sources >= 1024 went unnoticed");
    drop(&f);
}

Test(scan_merge, uncapped_1500_sources_equal_naive) {
    fixture f;
    make(&f, 0);
    cr_expect(merge_matches_naive(&f, NSRC, 0), "the uncapped merge of 1500 sources differs from the naive one");
    cr_expect(!merge_matches_naive(&f, 1024, 0), "dropping sources >= 1024 went unnoticed");
    drop(&f);
}

/* A capped list fed one entry at a time (scan_mlist_add cuts it back to its
 * best cap whenever it reaches 1.5 cap; scan_mlist_sort_cap at the end) holds
 * the naive top-cap of everything fed, in order. Coarse similarities (many
 * ties, broken by substring), orders that are random, ascending and
 * descending, several caps; a negative control (a list cut to cap + 1
 * entries) is caught. */
static int capped_equals_naive(const scan_match *in, size_t n, long cap, long keep) {
    scan_mlist l = {0};
    for (size_t i = 0; i < n; i++) cr_assert(scan_mlist_add(&l, in[i].sim, in[i].sub, cap) == 0);
    scan_mlist_sort_cap(&l, keep);
    scan_match *ref = malloc(n * sizeof *ref);
    cr_assert(ref);
    memcpy(ref, in, n * sizeof *ref);
    qsort(ref, n, sizeof *ref, naive_cmp);
    size_t want = n > (size_t)cap ? (size_t)cap : n;
    int same = l.n == want;
    for (size_t j = 0; j < want && same; j++) same = l.a[j].sub == ref[j].sub && !(l.a[j].sim != ref[j].sim);
    free(ref), free(l.a);
    return same;
}

Test(scan_merge, capped_list_adds_equal_naive) {
    cl_rng r;
    cl_rng_seed(&r, 7);
    const size_t n = 20000;
    scan_match *in = malloc(n * sizeof *in);
    cr_assert(in);
    const long caps[] = {1, 2, 3, 5, 30, 1000};
    for (int order = 0; order < 3; order++)
        for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
            for (size_t i = 0; i < n; i++) {
                size_t v = order == 0 ? (size_t)cl_rng_below(&r, 40) : order == 1 ? i * 40 / n : 39 - i * 40 / n;
                in[i].sim = 0.7f + 0.0075f * (float)v;
                in[i].sub = (int32_t)((i * 7919) % n); /* distinct */
            }
            cr_expect(capped_equals_naive(in, n, caps[c], caps[c]), "order %d cap %ld: not the naive top-cap", order,
                      caps[c]);
        }
    /* negative control: the list not cut at the end (up to 1.5 cap entries) is caught */
    cr_expect(!capped_equals_naive(in, n, 30, 0), "an uncut list went unnoticed");
    free(in);
}

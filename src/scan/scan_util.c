/* Pieces the scan's compute (scan.c) and its writer (scan_io.c) both use:
 * the clock, capped match lists, and MPI sums in slices. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/clock.h"
#include "corpuslens/par/par.h"
#include "scan/scan_internal.h"


/* This process's CPU seconds (all its threads): the phase times (t_forward,
 * t_sgemm, t_select, t_prompts), which on a shared machine should not count
 * the time other processes held the cores. */
double scan_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- match lists ---- */

static int match_cmp(const void *a, const void *b) {
    const scan_match *x = a, *y = b;
    if (x->sim != y->sim) return x->sim > y->sim ? -1 : 1;
    return (x->sub > y->sub) - (x->sub < y->sub);
}

void scan_mlist_sort_cap(scan_mlist *l, long cap) {
    if (l->n > 1) qsort(l->a, l->n, sizeof *l->a, match_cmp);
    if (cap > 0 && l->n > (uint32_t)cap) {
        l->n = (uint32_t)cap;
        l->floor = l->a[cap - 1].sim;
        l->capped = 1;
    }
}

/* Whether x comes before y in match_cmp's order (higher similarity, then
 * lower substring index). */
static inline int match_before(const scan_match *x, const scan_match *y) {
    return x->sim > y->sim || (x->sim == y->sim && x->sub < y->sub);
}

/* Reorder a[0..n) so that a[k] is the element match_cmp's sort would put
 * there, those before it ahead and those after it behind (quickselect,
 * median-of-three pivots; a sort of the rest past 64 rounds). The entries of
 * a list are distinct (one per substring), so the order is total. */
static void match_select(scan_match *a, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    for (int round = 0; hi > lo; round++) {
        if (round == 64) {
            qsort(a + lo, hi - lo + 1, sizeof *a, match_cmp);
            return;
        }
        size_t mid = lo + (hi - lo) / 2;
        scan_match t;
#define MSWAP(i, j) (t = a[i], a[i] = a[j], a[j] = t)
        if (match_before(&a[mid], &a[lo])) MSWAP(mid, lo);
        if (match_before(&a[hi], &a[lo])) MSWAP(hi, lo);
        if (match_before(&a[hi], &a[mid])) MSWAP(hi, mid);
        if (hi - lo < 3) return; /* three or fewer: sorted by the swaps */
        const scan_match pv = a[mid];
        /* a[lo] is before the pivot and a[hi] after it: the scans stop there */
        size_t i = lo, j = hi;
        for (;;) {
            do i++; while (match_before(&a[i], &pv));
            do j--; while (match_before(&pv, &a[j]));
            if (i >= j) break;
            MSWAP(i, j);
        }
#undef MSWAP
        /* a[lo .. j] before or at the pivot, a[j + 1 .. hi] at or after it */
        if (k <= j) hi = j;
        else lo = j + 1;
    }
}

int scan_mlist_add(scan_mlist *l, float sim, int32_t sub, long cap) {
    if (l->capped && sim < l->floor) return 0;
    /* a capped list grows to 1.5 cap, then is cut back to its best cap
       (the same entries and floor as sorting it, in linear time) */
    const uint32_t lim = cap > 0 ? (uint32_t)cap + (uint32_t)cap / 2 + 1 : 0;
    if (l->n == l->alloc) {
        if (cap > 0 && l->n >= lim) {
            match_select(l->a, l->n, (size_t)cap - 1);
            l->n = (uint32_t)cap;
            l->floor = l->a[cap - 1].sim;
            l->capped = 1;
            if (sim < l->floor) return 0;
        } else {
            uint32_t na = l->alloc ? l->alloc * 2 : 8;
            if (cap > 0 && na > lim) na = lim;
            if (na <= l->n) na = l->n + 8;
            scan_match *a = realloc(l->a, (size_t)na * sizeof *a);
            if (!a) return cl_error("out of memory for matches (%u entries)", na);
            l->a = a, l->alloc = na;
        }
    }
    l->a[l->n].sim = sim;
    l->a[l->n].sub = sub;
    l->n++;
    return 0;
}

int scan_merge_sources(const char *buf, const int *displ, int nsrc, size_t nlists, long cap, int64_t *index2,
                       int (*sink)(void *user, const scan_mlist *l), void *user) {
    const char **ent = malloc((nsrc ? (size_t)nsrc : 1) * sizeof *ent);
    if (!ent) return cl_error("out of memory merging matches (%d sources)", nsrc);
    for (int s = 0; s < nsrc; s++) ent[s] = buf + displ[s] + nlists * sizeof(uint32_t);
    scan_mlist m = {0};
    int rc = 0;
    for (size_t i = 0; i < nlists && !rc; i++) {
        m.n = 0, m.capped = 0;
        for (int s = 0; s < nsrc; s++) {
            uint32_t k;
            memcpy(&k, buf + displ[s] + i * sizeof(uint32_t), sizeof k);
            if (!k) continue;
            if ((uint64_t)m.n + k > UINT32_MAX) {
                rc = cl_error("too many matches for one (prompt, block); use --match-cap");
                break;
            }
            if (m.alloc < m.n + k) {
                scan_match *a = realloc(m.a, (size_t)(m.n + k) * sizeof *a);
                if (!a) {
                    rc = cl_error("out of memory merging matches");
                    break;
                }
                m.a = a, m.alloc = m.n + k;
            }
            memcpy(m.a + m.n, ent[s], (size_t)k * sizeof *m.a);
            m.n += k;
            ent[s] += (size_t)k * sizeof(scan_match);
        }
        if (rc) break;
        scan_mlist_sort_cap(&m, cap);
        index2[2 * i + 1] = m.n;
        rc = sink(user, &m);
    }
    free(m.a);
    free(ent);
    return rc;
}

/* ---- helpers ---- */

long long scan_alltoallv_displs(const int *rc, int *rd, int R) {
    long long tot = 0;
    for (int s = 0; s < R; s++) {
        rd[s] = (int)(tot > INT_MAX ? 0 : tot);
        tot += rc[s];
    }
    return tot;
}

/* MPI_Allreduce in slices (counts beyond INT_MAX). */
int scan_allreduce(void *buf, size_t n, MPI_Datatype t, size_t elsize, MPI_Comm comm) {
    const size_t step = (size_t)1 << 26;
    for (size_t i = 0; i < n; i += step) {
        int k = (int)(n - i < step ? n - i : step);
        if (cl_par_allreduce(MPI_IN_PLACE, (char *)buf + i * elsize, k, t, MPI_SUM, comm) != MPI_SUCCESS)
            return cl_error("MPI_Allreduce failed");
    }
    return 0;
}

/* Suffix array (prefix doubling) and the ∞-gram / backoff n-gram queries. */
#include "corpuslens/corpus/infgram.h"

#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"

/* stable counting sort of idx[0..n) by key[idx[i]] in [0, K) into out */
static void count_sort(const int64_t *idx, size_t n, const int64_t *key, size_t K, int64_t *cnt, int64_t *out) {
    memset(cnt, 0, (K + 1) * sizeof *cnt);
    for (size_t i = 0; i < n; i++) cnt[key[idx[i]] + 1]++;
    for (size_t k = 1; k <= K; k++) cnt[k] += cnt[k - 1];
    for (size_t i = 0; i < n; i++) out[cnt[key[idx[i]]]++] = idx[i];
}

int64_t *cl_suffix_array(const int32_t *s, size_t n, int V) {
    if (n == 0) return cl_error("suffix array of an empty text"), NULL;
    if (V < 1) return cl_error("suffix array: empty vocabulary"), NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0 || s[i] >= V) return cl_error("suffix array: id %d at %zu is outside [0, %d)", s[i], i, V), NULL;
    size_t cn = n > (size_t)V ? n : (size_t)V;
    int64_t *sa = cl_trymalloc(n, sizeof *sa, "suffix array"), *rk = cl_trymalloc(n, sizeof *rk, "suffix array"),
            *tmp = cl_trymalloc(n, sizeof *tmp, "suffix array"), *cnt = cl_trymalloc(cn + 1, sizeof *cnt, "suffix array");
    if (!sa || !rk || !tmp || !cnt) {
        free(sa), free(rk), free(tmp), free(cnt);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) rk[i] = s[i], tmp[i] = (int64_t)i;
    count_sort(tmp, n, rk, (size_t)V, cnt, sa);
    /* dense ranks of the 1-character prefixes */
    tmp[sa[0]] = 0;
    for (size_t j = 1; j < n; j++) tmp[sa[j]] = tmp[sa[j - 1]] + (rk[sa[j]] != rk[sa[j - 1]]);
    memcpy(rk, tmp, n * sizeof *rk);
    size_t classes = (size_t)rk[sa[n - 1]] + 1;
    for (size_t k = 1; classes < n; k <<= 1) {
        /* order by the second key (rank of i + k; none sorts first) */
        size_t q = 0;
        for (size_t i = n > k ? n - k : 0; i < n; i++) tmp[q++] = (int64_t)i;
        for (size_t j = 0; j < n; j++)
            if ((size_t)sa[j] >= k) tmp[q++] = sa[j] - (int64_t)k;
        count_sort(tmp, n, rk, classes, cnt, sa); /* stable: then by the first key */
        tmp[sa[0]] = 0;
        for (size_t j = 1; j < n; j++) {
            size_t a = (size_t)sa[j - 1], b = (size_t)sa[j];
            int64_t ra = a + k < n ? rk[a + k] : -1, rb = b + k < n ? rk[b + k] : -1;
            tmp[b] = tmp[a] + (rk[a] != rk[b] || ra != rb);
        }
        memcpy(rk, tmp, n * sizeof *rk);
        classes = (size_t)rk[sa[n - 1]] + 1;
    }
    free(rk), free(tmp), free(cnt);
    return sa;
}

int cl_suffix_array_check(const int64_t *sa, size_t n, const char *what) {
    uint8_t *seen = cl_trycalloc(n / 8 + 1, 1, "suffix array check");
    if (!seen) return -1;
    int rc = 0;
    for (size_t j = 0; j < n && !rc; j++) {
        int64_t p = sa[j];
        if (p < 0 || (uint64_t)p >= n)
            rc = cl_error("%s: entry %zu (%lld) is not a position of the %zu-character text", what, j, (long long)p, n);
        else if (seen[p >> 3] & (1u << (p & 7)))
            rc = cl_error("%s: position %lld occurs twice (not a permutation)", what, (long long)p);
        else seen[p >> 3] |= (uint8_t)(1u << (p & 7));
    }
    free(seen);
    return rc ? -1 : 0;
}

/* compare the suffix at p, cut at k characters, with w[0..k): <0, 0, >0 */
static int cmp_prefix(const int32_t *text, size_t n, int64_t p, const int32_t *w, int k) {
    for (int t = 0; t < k; t++) {
        if ((size_t)p + (size_t)t >= n) return -1; /* the suffix ends first: smaller */
        int32_t a = text[p + t];
        if (a != w[t]) return a < w[t] ? -1 : 1;
    }
    return 0;
}

int64_t cl_sa_range(const int32_t *text, const int64_t *sa, size_t n, const int32_t *w, int k, int64_t *lo,
                    int64_t *hi) {
    int64_t a = 0, b = (int64_t)n; /* first suffix >= w */
    while (a < b) {
        int64_t mid = a + (b - a) / 2;
        if (cmp_prefix(text, n, sa[mid], w, k) < 0) a = mid + 1;
        else b = mid;
    }
    int64_t l = a;
    b = (int64_t)n; /* first suffix > w */
    while (a < b) {
        int64_t mid = a + (b - a) / 2;
        if (cmp_prefix(text, n, sa[mid], w, k) <= 0) a = mid + 1;
        else b = mid;
    }
    *lo = l, *hi = a;
    return a - l;
}

int cl_infgram(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *w, int m, int64_t min_occ,
               int32_t *counts, int64_t *occ) {
    memset(counts, 0, (size_t)V * sizeof *counts);
    *occ = 0;
    if (min_occ < 1) min_occ = 1;
    int best = 0;
    int64_t blo = 0, bhi = 0;
    for (int k = 1; k <= m && (size_t)k < n; k++) {
        int64_t lo, hi;
        const int32_t *s = w + (m - k);
        int64_t c = cl_sa_range(text, sa, n, s, k, &lo, &hi);
        /* the occurrence that ends the text has no follower */
        if (c > 0 && memcmp(text + (n - (size_t)k), s, (size_t)k * sizeof *s) == 0) c--;
        if (c < min_occ) break; /* a longer suffix occurs at most as often */
        best = k, blo = lo, bhi = hi, *occ = c;
    }
    for (int64_t j = blo; best && j < bhi; j++) {
        size_t p = (size_t)sa[j] + (size_t)best;
        if (p < n && text[p] >= 0 && text[p] < V) counts[text[p]]++;
    }
    return best;
}

double cl_infgram_hellinger(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *w, int m,
                            int64_t min_occ, const float *q, int32_t *counts, double *tmp, int *k, int64_t *occ) {
    int64_t o = 0;
    int kk = cl_infgram(text, sa, n, V, w, m, min_occ, counts, &o);
    if (k) *k = kk;
    if (occ) *occ = o;
    if (!kk) return CL_H_EMPTY;
    for (int v = 0; v < V; v++) tmp[v] = counts[v];
    return cl_hellinger_df(tmp, q, (size_t)V);
}

int cl_infgram_hellinger_all(const int32_t *text, const int64_t *sa, size_t n, int V, const int32_t *tok,
                             const size_t *off, size_t P, size_t cap, const float *probs, int64_t min_occ, double *h,
                             int *k, int64_t *occ) {
    int32_t *cnt = cl_trymalloc((size_t)V, sizeof *cnt, "∞-gram");
    double *tmp = cl_trymalloc((size_t)V, sizeof *tmp, "∞-gram");
    if (!cnt || !tmp) {
        free(cnt), free(tmp);
        return -1;
    }
    for (size_t p = 0; p < P; p++) {
        size_t T = off[p + 1] - off[p], m = T < cap ? T : cap;
        h[p] = cl_infgram_hellinger(text, sa, n, V, tok + off[p + 1] - m, (int)m, min_occ, probs + p * (size_t)V, cnt,
                                    tmp, k ? &k[p] : NULL, occ ? &occ[p] : NULL);
    }
    free(cnt), free(tmp);
    return 0;
}

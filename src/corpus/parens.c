/* The balanced-parentheses data set: see include/corpuslens/corpus/parens.h.
 * Exact uniform sampling by counting completions (doubles hold the counts
 * exactly: at most Catalan(20) < 2^53). */
#include "corpuslens/corpus/parens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/rng.h"

#define L CL_PARENS_MAX_LEN

int cl_parens_balanced(const char *s, int *depth) {
    int h = 0, mx = 0, neg = 0;
    for (; *s; s++) {
        h += *s == '(' ? 1 : -1;
        if (h < 0) neg = 1;
        if (h > mx) mx = h;
    }
    if (depth) *depth = mx;
    return !neg && h == 0;
}

int cl_parens_encode(const char *s, int32_t *ids) {
    size_t n = strlen(s);
    if (n > L) return cl_error("parens: string of %zu characters (at most %d)", n, L);
    ids[0] = CL_PARENS_START;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '(' && s[i] != ')') return cl_error("parens: character '%c' at %zu is not a parenthesis", s[i], i);
        ids[1 + i] = s[i] == '(' ? CL_PARENS_OPEN : CL_PARENS_CLOSE;
    }
    ids[1 + n] = CL_PARENS_END;
    for (size_t i = n + 2; i < CL_PARENS_T; i++) ids[i] = CL_PARENS_PAD;
    return 0;
}

/* Balanced, length n = 2m, maximum depth exactly d, uniform among those.
 * f[i][h][r]: completions from position i at height h (r: depth d reached). */
static void balanced_with_depth(cl_rng *g, int n, int d, char *out) {
    static double f[L + 1][L + 2][2];
    memset(f, 0, sizeof f);
    f[n][0][1] = 1;
    for (int i = n - 1; i >= 0; i--)
        for (int h = 0; h <= d; h++)
            for (int r = 0; r < 2; r++) {
                double v = 0;
                if (h + 1 <= d) v += f[i + 1][h + 1][r || h + 1 == d];
                if (h >= 1) v += f[i + 1][h - 1][r];
                f[i][h][r] = v;
            }
    int h = 0, r = 0;
    for (int i = 0; i < n; i++) {
        double up = h + 1 <= d ? f[i + 1][h + 1][r || h + 1 == d] : 0;
        double down = h >= 1 ? f[i + 1][h - 1][r] : 0;
        int go_up = cl_rng_uniform_double(g) * (up + down) < up;
        if (go_up) {
            h++;
            r = r || h == d;
            out[i] = '(';
        } else {
            h--;
            out[i] = ')';
        }
    }
    out[n] = '\0';
}

/* Never negative, ending above 0: uniform among those of length n.
 * f[i][h]: completions from position i at height h. */
static void never_negative_unequal(cl_rng *g, int n, char *out) {
    static double f[L + 1][L + 2];
    memset(f, 0, sizeof f);
    for (int h = 1; h <= n; h++) f[n][h] = 1;
    for (int i = n - 1; i >= 0; i--)
        for (int h = 0; h <= n; h++) f[i][h] = (h + 1 <= n ? f[i + 1][h + 1] : 0) + (h >= 1 ? f[i + 1][h - 1] : 0);
    int h = 0;
    for (int i = 0; i < n; i++) {
        double up = f[i + 1][h + 1], down = h >= 1 ? f[i + 1][h - 1] : 0;
        if (cl_rng_uniform_double(g) * (up + down) < up) {
            h++;
            out[i] = '(';
        } else {
            h--;
            out[i] = ')';
        }
    }
    out[n] = '\0';
}

/* As many '(' as ')', some prefix negative: a uniform arrangement of m of
 * each, drawn again while balanced (probability 1/(m+1)). */
static void equal_counts_negative(cl_rng *g, int n, char *out) {
    do {
        for (int i = 0; i < n; i++) out[i] = i < n / 2 ? '(' : ')';
        for (int i = n - 1; i > 0; i--) {
            int j = (int)cl_rng_below(g, (uint64_t)i + 1);
            char t = out[i];
            out[i] = out[j];
            out[j] = t;
        }
        out[n] = '\0';
    } while (cl_parens_balanced(out, NULL));
}

static int alloc_set(cl_parens_set *d, size_t n) {
    memset(d, 0, sizeof *d);
    d->s = cl_trycalloc(n ? n : 1, sizeof *d->s, "parens strings");
    d->label = d->s ? cl_trycalloc(n ? n : 1, 1, "labels") : NULL;
    d->split = d->label ? cl_trycalloc(n ? n : 1, 1, "splits") : NULL;
    d->kind = d->split ? cl_trycalloc(n ? n : 1, 1, "kinds") : NULL;
    if (!d->kind) {
        cl_parens_free(d);
        return -1;
    }
    d->n = n;
    return 0;
}

int cl_parens_generate(uint64_t seed, size_t n, size_t n_val, size_t n_test, cl_parens_set *out) {
    if (n < 2 || n > 100000000 || n_val + n_test >= n)
        return cl_error("parens: %zu examples with %zu for validation and %zu for test (want 2 <= n, "
                        "val + test < n)", n, n_val, n_test);
    if (alloc_set(out, n)) return -1;
    cl_rng g;
    cl_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++) {
        int len = 2 * (1 + (int)cl_rng_below(&g, L / 2)); /* 2, 4, ..., 40 */
        int balanced = (i % 2) == 0;                     /* half and half */
        out->label[i] = (unsigned char)balanced;
        if (balanced) {
            int d = 1 + (int)cl_rng_below(&g, (uint64_t)len / 2);
            balanced_with_depth(&g, len, d, out->s[i]);
            out->kind[i] = 0;
        } else if (cl_rng_below(&g, 2)) {
            equal_counts_negative(&g, len, out->s[i]);
            out->kind[i] = 1;
        } else {
            never_negative_unequal(&g, len, out->s[i]);
            out->kind[i] = 2;
        }
    }
    /* splits: a seeded shuffle of the indices; the first n_val are val,
     * the next n_test test */
    size_t *perm = cl_trymalloc(n, sizeof *perm, "split order");
    if (!perm) {
        cl_parens_free(out);
        return -1;
    }
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)cl_rng_below(&g, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t k = 0; k < n; k++)
        out->split[perm[k]] = k < n_val ? CL_SPLIT_VAL : k < n_val + n_test ? CL_SPLIT_TEST : CL_SPLIT_TRAIN;
    free(perm);
    return 0;
}

static const char *const split_names[] = {"train", "val", "test"};

int cl_parens_write(const cl_parens_set *d, const char *path, uint64_t seed) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return cl_error("output path too long");
    FILE *f = fopen(tmp, "w");
    if (!f) return cl_error("cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "# corpuslens balanced-parentheses data set, seed %llu, %zu examples\n"
               "# split<TAB>label (1 balanced)<TAB>string\n",
            (unsigned long long)seed, d->n);
    for (size_t i = 0; i < d->n; i++) fprintf(f, "%s\t%d\t%s\n", split_names[d->split[i]], d->label[i], d->s[i]);
    int bad = fflush(f) != 0 || ferror(f) != 0;
    if (fclose(f)) bad = 1;
    if (bad) {
        remove(tmp);
        return cl_error("cannot write %s: %s", path, strerror(errno));
    }
    if (cl_commit_file(tmp, path)) return -1;
    return 0;
}

int cl_parens_read(const char *path, cl_parens_set *out) {
    size_t len;
    char *text = cl_read_file(path, (size_t)1 << 31, &len);
    if (!text) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (alloc_set(out, lines)) {
        free(text);
        return -1;
    }
    size_t n = 0, lineno = 0;
    int rc = 0;
    for (char *p = text, *end = text + len; p < end && !rc; lineno++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        if (*p && *p != '#') {
            char sp[8], s[64];
            int lab, k = 0;
            if (sscanf(p, "%7[a-z]\t%d\t%63[()]%n", sp, &lab, s, &k) != 3 || p[k] != '\0' || strlen(s) > L ||
                strlen(s) < 1 || (lab != 0 && lab != 1)) {
                rc = cl_error("%s:%zu: not 'split<TAB>label<TAB>string' (label 0/1, 1..%d parentheses)", path,
                              lineno + 1, L);
                break;
            }
            int si = -1;
            for (int q = 0; q < 3; q++)
                if (!strcmp(sp, split_names[q])) si = q;
            if (si < 0) {
                rc = cl_error("%s:%zu: split '%s' is not train, val or test", path, lineno + 1, sp);
                break;
            }
            if (cl_parens_balanced(s, NULL) != lab) {
                rc = cl_error("%s:%zu: label %d is wrong for '%s'", path, lineno + 1, lab, s);
                break;
            }
            memcpy(out->s[n], s, strlen(s) + 1);
            out->label[n] = (unsigned char)lab;
            out->split[n] = (unsigned char)si;
            n++;
        }
        p = nl + 1;
    }
    free(text);
    if (!rc && n == 0) rc = cl_error("%s: no examples", path);
    if (rc) {
        cl_parens_free(out);
        return -1;
    }
    out->n = n;
    return 0;
}

void cl_parens_free(cl_parens_set *d) {
    free(d->s);
    free(d->label);
    free(d->split);
    free(d->kind);
    memset(d, 0, sizeof *d);
}

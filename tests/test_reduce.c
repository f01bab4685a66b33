/* Reducer unit tests: Hellinger edge cases, statistics against hand-computed
 * values, threshold/weight validation against a hand-made grid. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/reduce/reduce.h"

#define EPS 1e-12

Test(hellinger, identical_is_zero) {
    double p[4] = {0.1, 0.2, 0.3, 0.4};
    cr_expect(fabs(cl_hellinger(p, p, 4)) < EPS);
    float q[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    double pq[4] = {q[0], q[1], q[2], q[3]};
    cr_expect(fabs(cl_hellinger_df(pq, q, 4)) < EPS);
}

Test(hellinger, disjoint_is_one) {
    double p[4] = {0.5, 0.5, 0, 0}, q[4] = {0, 0, 0.25, 0.75};
    cr_expect(fabs(cl_hellinger(p, q, 4) - 1) < EPS, "got %.17g", cl_hellinger(p, q, 4));
}

Test(hellinger, zeros_are_empty_not_nan) {
    double z[3] = {0, 0, 0}, q[3] = {0.2, 0.3, 0.5};
    cr_expect_eq(cl_hellinger(z, q, 3), CL_H_EMPTY);
    cr_expect_eq(cl_hellinger(q, z, 3), CL_H_EMPTY);
    cr_expect_eq(cl_hellinger(z, z, 3), CL_H_EMPTY);
}

Test(hellinger, known_value_and_raw_counts) {
    /* p = (1, 0), q = (1/2, 1/2): H^2 = ((1 - sqrt .5)^2 + .5) / 2 = 1 - sqrt .5 */
    double p[2] = {3, 0}, q[2] = {0.5, 0.5};
    double want = sqrt(1 - sqrt(0.5));
    cr_expect(fabs(cl_hellinger(p, q, 2) - want) < EPS, "got %.17g want %.17g", cl_hellinger(p, q, 2), want);
    /* zeros inside a distribution are fine; symmetric */
    double a[3] = {0, 1, 1}, b[3] = {1, 1, 0};
    /* p = (0,.5,.5), q = (.5,.5,0): sum = .5 + 0 + .5 = 1 -> H = sqrt(1)/sqrt2 */
    cr_expect(fabs(cl_hellinger(a, b, 3) - sqrt(0.5)) < EPS);
    cr_expect(fabs(cl_hellinger(a, b, 3) - cl_hellinger(b, a, 3)) < EPS);
}

/* H on a support (cl_hellinger_sup) equals the dense H; a wrong off-support
   mass (the negative control) does not. */
Test(hellinger, support_equals_dense) {
    enum { V = 500 };
    static double p[V], ps[V];
    static float q[V], qs[V];
    unsigned x = 12345;
    for (int trial = 0; trial < 50; trial++) {
        size_t ns = 0;
        double sq = 0, rest = 0;
        for (int v = 0; v < V; v++) {
            x = x * 1103515245u + 12345u;
            int on = (x >> 16) % 7 == 0 || v == trial;
            x = x * 1103515245u + 12345u;
            p[v] = on && (x >> 16) % 3 ? (double)((x >> 8) % 100) : 0;
            x = x * 1103515245u + 12345u;
            q[v] = (float)((x >> 8) % 1000) / 1000.0f + (v % 11 == 0 ? 0 : 1e-7f);
            sq += q[v];
            if (on) ps[ns] = p[v], qs[ns++] = q[v];
            else rest += q[v];
        }
        double hd = cl_hellinger_df(p, q, V), hs = cl_hellinger_sup(ps, qs, ns, sq, rest);
        cr_assert(hd >= 0 && fabs(hd - hs) <= 1e-12, "trial %d: dense %.17g, support %.17g", trial, hd, hs);
        double hw = cl_hellinger_sup(ps, qs, ns, sq, rest * 0.5);
        cr_assert(!(fabs(hd - hw) <= 1e-6), "trial %d: half the off-support mass gave the same H", trial);
    }
    double z[3] = {0, 0, 0};
    float qz[3] = {0.2f, 0.3f, 0.5f};
    cr_assert_eq(cl_hellinger_sup(z, qz, 3, 1.0, 0), CL_H_EMPTY);
    cr_assert_eq(cl_hellinger_sup(ps, qz, 0, 1.0, 1.0), CL_H_EMPTY);
}

Test(stats, hand_computed) {
    double x[5] = {3, CL_H_EMPTY, 1, 4, 2};
    cl_stats s;
    cr_assert_eq(cl_stats_compute(x, 5, &s), 0);
    cr_expect_eq(s.count, 4);
    cr_expect_eq(s.n_empty, 1);
    cr_expect(fabs(s.mean - 2.5) < EPS);
    cr_expect(fabs(s.std - sqrt(1.25)) < EPS, "population std, got %.17g", s.std); /* ddof 0 */
    cr_expect(fabs(s.min - 1) < EPS);
    cr_expect(fabs(s.max - 4) < EPS);
    /* numpy linear: h = 3 q */
    cr_expect(fabs(s.p10 - 1.3) < EPS, "p10 %.17g", s.p10);
    cr_expect(fabs(s.p25 - 1.75) < EPS, "p25 %.17g", s.p25);
    cr_expect(fabs(s.median - 2.5) < EPS);
    cr_expect(fabs(s.p75 - 3.25) < EPS);
    cr_expect(fabs(s.p90 - 3.7) < EPS, "p90 %.17g", s.p90);
}

Test(stats, single_and_all_empty) {
    double one[1] = {0.25};
    cl_stats s;
    cr_assert_eq(cl_stats_compute(one, 1, &s), 0);
    cr_expect(s.count == 1 && s.mean == 0.25 && s.std == 0 && s.p10 == 0.25 && s.max == 0.25);
    double none[2] = {CL_H_EMPTY, NAN};
    cr_assert_eq(cl_stats_compute(none, 2, &s), 0);
    cr_expect(s.count == 0 && s.n_empty == 2 && s.mean == 0 && s.std == 0 && !isnan(s.median));
    cr_assert_eq(cl_stats_compute(none, 0, &s), 0);
    cr_expect(s.count == 0 && s.n_empty == 0);
}

Test(stats, quantile_sorted) {
    double y[4] = {0, 10, 20, 40};
    cr_expect(fabs(cl_quantile_sorted(y, 4, 0.5) - 15) < EPS);
    cr_expect(fabs(cl_quantile_sorted(y, 4, 0.9) - 34) < EPS); /* h = 2.7 */
    cr_expect_eq(cl_quantile_sorted(y, 4, 0), 0);
    cr_expect_eq(cl_quantile_sorted(y, 4, 1), 40);
}

static cl_scan *grid_scan(int Lb) {
    static double lower[30];
    static cl_scan s;
    memset(&s, 0, sizeof s);
    for (int k = 0; k < 30; k++) lower[k] = 0.7 + 0.01 * k;
    s.Lb = Lb, s.NB = 30, s.V = 3, s.P = 1, s.prefilter = 0.7, s.bin_width = 0.01, s.bin_lower = lower;
    s.file = -1;
    return &s;
}

Test(params, paper_defaults_and_grid) {
    cl_scan *s = grid_scan(6);
    double t[6], w[6];
    int k[6];
    cr_assert_eq(cl_reduce_params(s, NULL, 0, NULL, 0, t, w, k), 0, "%s", cl_last_error());
    cr_expect_eq(k[0], 25); /* 0.95 */
    cr_expect_eq(k[3], 6);  /* 0.76 */
    cr_expect(fabs(w[4] - 6) < EPS);
    double ok[6] = {0.7, 0.99, 0.7000000001, 0.8, 0.8, 0.8}, ones[6] = {1, 0, 0, 0, 0, 0};
    cr_expect_eq(cl_reduce_params(s, ok, 6, ones, 6, t, w, k), 0, "%s", cl_last_error());
    cr_expect(k[0] == 0 && k[1] == 29 && k[2] == 0);
}

Test(params, refusals) {
    cl_scan *s = grid_scan(6);
    double t[6], w[6];
    int k[6];
    double off[6] = {0.95, 0.94, 0.855, 0.76, 0.81, 0.89};
    cr_expect_eq(cl_reduce_params(s, off, 6, NULL, 0, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "not on the scan's grid") && strstr(cl_last_error(), "0.7"), "%s",
              cl_last_error());
    double low[6] = {0.95, 0.94, 0.6, 0.76, 0.81, 0.89}, high[6] = {0.95, 0.94, 1.01, 0.76, 0.81, 0.89};
    cr_expect_eq(cl_reduce_params(s, low, 6, NULL, 0, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "outside"), "%s", cl_last_error());
    cr_expect_eq(cl_reduce_params(s, high, 6, NULL, 0, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "outside"), "%s", cl_last_error());
    cr_expect_eq(cl_reduce_params(s, off, 5, NULL, 0, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "5 thresholds"), "%s", cl_last_error());
    double neg[6] = {1, 1, -1, 1, 1, 1}, zero[6] = {0};
    cr_expect_eq(cl_reduce_params(s, NULL, 0, neg, 6, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "negative"), "%s", cl_last_error());
    cr_expect_eq(cl_reduce_params(s, NULL, 0, zero, 6, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "all weights are 0"), "%s", cl_last_error());
    cr_expect_eq(cl_reduce_params(s, NULL, 0, neg, 7, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "7 weights"), "%s", cl_last_error());
    cl_scan *s3 = grid_scan(3);
    cr_expect_eq(cl_reduce_params(s3, NULL, 0, NULL, 0, t, w, k), -1);
    cr_expect(strstr(cl_last_error(), "give --thresholds"), "%s", cl_last_error());
}

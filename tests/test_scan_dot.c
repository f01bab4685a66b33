/* The scan's candidate dot products (scan_dot8_pick, src/scan/scan_prune.c):
 * the AVX-512, AVX2 and portable versions give the same bits for every
 * length C (multiples of 32 and tails), and each is the exact order it
 * documents (32 lanes, then the tree 16, 8, 4, 2, 1), checked against a
 * reimplementation here; a negative control shows that a plain sequential sum
 * gives other bits, so the comparison can fail. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/rng.h"
#include "scan/scan_internal.h"

__attribute__((optimize("fp-contract=off"))) static float ref_dot(const float *a, const float *b, int C) {
    float acc[32] = {0};
    for (int i = 0; i < C; i++) {
        float t = a[i] * b[i];
        acc[i % 32] = acc[i % 32] + t;
    }
    for (int w = 16; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    return acc[0];
}

__attribute__((optimize("fp-contract=off"))) static float seq_dot(const float *a, const float *b, int C) {
    float s = 0;
    for (int i = 0; i < C; i++) {
        float t = a[i] * b[i];
        s = s + t;
    }
    return s;
}

static int same_bits(float x, float y) { return !memcmp(&x, &y, sizeof x); }

Test(scan_dot, versions_same_bits_as_reference) {
    const char *kinds[] = {"portable", "avx2", NULL}; /* NULL: the default pick */
    cl_rng r;
    cl_rng_seed(&r, 11);
    enum { CMAX = 200 };
    float *a = malloc(CMAX * sizeof *a), *b = malloc(8 * CMAX * sizeof *b);
    cr_assert(a && b);
    int seq_differs = 0;
    for (int C = 1; C <= CMAX; C++) {
        for (int i = 0; i < C; i++) a[i] = cl_rng_uniform(&r) * 2 - 1;
        for (int i = 0; i < 8 * C; i++) b[i] = cl_rng_uniform(&r) * 2 - 1;
        const float *b8[8];
        for (int q = 0; q < 8; q++) b8[q] = b + q * C;
        for (int k = 0; k < 3; k++) {
            if (kinds[k]) setenv("CORPUSLENS_SCAN_DOT", kinds[k], 1);
            else unsetenv("CORPUSLENS_SCAN_DOT");
            float out[8];
            scan_dot8_pick()(a, b8, C, out);
            for (int q = 0; q < 8; q++)
                cr_expect(same_bits(out[q], ref_dot(a, b8[q], C)), "%s, C = %d, q = %d: %.9g vs %.9g",
                          kinds[k] ? kinds[k] : "default", C, q, out[q], ref_dot(a, b8[q], C));
        }
        for (int q = 0; q < 8; q++) seq_differs += !same_bits(seq_dot(a, b8[q], C), ref_dot(a, b8[q], C));
    }
    unsetenv("CORPUSLENS_SCAN_DOT");
    cr_expect(seq_differs > 100, "negative control: a sequential sum differs in only %d of 1600 dots", seq_differs);
    free(a), free(b);
}

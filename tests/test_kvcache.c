/* The key/value cache (nn/kvcache.h) against the full forward pass: the
 * logits of every position, stepped one token at a time or primed in one
 * batch, equal cl_forward_run's at the last position of the same prefix to
 * 2e-5 + 1e-4 |ref| (other summation orders), for the lecture layout and for
 * nanoGPT's (GELU, tied head, q/k/v bias, 1/sqrt(C) scale). Negative
 * control: another token at one position moves the logits beyond that. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kvcache.h"

static cl_model *model(const char *spec) {
    cl_config c = cl_config_lecture();
    cr_assert_eq(cl_config_parse(&c, spec), 0, "%s", cl_last_error());
    cl_model *m = cl_model_create(&c);
    cr_assert(m, "%s", cl_last_error());
    cl_model_init_random(m, 11);
    /* break the symmetry of the init's zero biases and unit LayerNorms */
    for (size_t i = 0; i < m->n_floats; i++) m->mem[i] += 0.03f * (float)((i * 7919) % 17) / 17.0f - 0.015f;
    return m;
}

/* largest excess of |a - b| over the tolerance (<= 0: within it); NaN-strict */
static double excess(const float *a, const float *ref, int V) {
    double worst = -1;
    for (int v = 0; v < V; v++) {
        double d = fabs((double)a[v] - ref[v]), tol = 2e-5 + 1e-4 * fabs((double)ref[v]);
        if (!(d <= tol)) return isnan(d) ? INFINITY : d - tol;
        if (d - tol > worst) worst = d - tol;
    }
    return worst;
}

static void check(const char *spec) {
    cl_model *m = model(spec);
    const int T = m->cfg.block_size, V = m->cfg.vocab_size;
    int32_t *tok = malloc(T * sizeof *tok);
    float *ref = malloc(V * sizeof(float)), *got = malloc(V * sizeof(float)), *alt = malloc(V * sizeof(float));
    for (int t = 0; t < T; t++) tok[t] = (t * 5 + 3) % V;
    cl_forward *f = cl_forward_create(m, 1, T);
    cl_kvcache *kv = cl_kv_create(m, T), *kp = cl_kv_create(m, T);
    cr_assert(f && kv && kp, "%s", cl_last_error());
    for (int t = 0; t < T; t++) {
        cr_assert_eq(cl_forward_run(f, tok, 1, t + 1, NULL, 0, CL_LOGITS_LAST, ref), 0, "%s", cl_last_error());
        cr_assert_eq(cl_kv_step(kv, tok[t], got), 0, "%s", cl_last_error());
        cr_expect(excess(got, ref, V) <= 0, "%s: step, position %d: off by %g beyond the tolerance", spec, t,
                  excess(got, ref, V));
        cr_assert_eq(cl_kv_prime(kp, tok, t + 1, got), 0, "%s", cl_last_error());
        cr_expect(excess(got, ref, V) <= 0, "%s: prime, position %d", spec, t);
        /* a primed cache goes on stepping like the stepped one */
        if (t + 1 < T) {
            cr_assert_eq(cl_kv_step(kp, tok[t + 1], alt), 0);
            cr_assert_eq(cl_forward_run(f, tok, 1, t + 2, NULL, 0, CL_LOGITS_LAST, ref), 0);
            cr_expect(excess(alt, ref, V) <= 0, "%s: prime then step, position %d", spec, t + 1);
        }
    }
    cr_expect_eq(cl_kv_len(kv), T);
    cr_expect_eq(cl_kv_step(kv, tok[0], got), -1, "a full cache must refuse another step");
    cr_expect(strstr(cl_last_error(), "positions are used"), "%s", cl_last_error());
    /* negative control: another first token changes the last logits beyond the tolerance */
    cl_kv_reset(kv);
    tok[0] = (tok[0] + 1) % V;
    for (int t = 0; t < T; t++) cr_assert_eq(cl_kv_step(kv, tok[t], alt), 0);
    tok[0] = (tok[0] + V - 1) % V;
    cr_assert_eq(cl_forward_run(f, tok, 1, T, NULL, 0, CL_LOGITS_LAST, ref), 0);
    cr_expect(excess(alt, ref, V) > 0, "%s: the comparison cannot see a changed token", spec);
    cr_expect_eq(cl_kv_step(kv, V, got), -1, "an id outside the vocabulary must be refused");
    cl_kv_free(kv), cl_kv_free(kp), cl_forward_free(f), cl_model_free(m);
    free(tok), free(ref), free(got), free(alt);
}

Test(kvcache, lecture_layout_equals_the_full_forward) {
    check("n_layer=3,n_embd=32,n_head=4,block_size=24,vocab_size=11");
}

Test(kvcache, nanogpt_layout_equals_the_full_forward) {
    check("n_layer=2,n_embd=48,n_head=3,block_size=20,vocab_size=13,activation=gelu,tied_head=1,head_bias=0,"
          "qkv_bias=1,attn_scale=n_embd");
}

Test(kvcache, refuses_encoders_and_bad_sizes) {
    cl_model *m = model("n_layer=1,n_embd=8,n_head=2,block_size=6,vocab_size=5");
    cr_expect_null(cl_kv_create(m, 7));
    cr_expect(strstr(cl_last_error(), "block_size"), "%s", cl_last_error());
    cr_expect_null(cl_kv_create(m, 0));
    cl_model_free(m);
    m = model("n_layer=1,n_embd=8,n_head=2,block_size=6,vocab_size=5,causal=0");
    cr_expect_null(cl_kv_create(m, 6));
    cr_expect(strstr(cl_last_error(), "causal"), "%s", cl_last_error());
    cl_model_free(m);
}

/* Model core: config parsing, tensor table, file round trip, vocabulary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"

Test(model, lecture_parameter_count_matches_the_paper) {
    cl_config c = cl_config_lecture();
    cr_expect_eq(cl_model_num_params(&c), 10788929, "lecture model: %zu parameters", cl_model_num_params(&c));
    /* feed-forward parameters: 7,089,408 */
    size_t ff = 0, n = cl_model_tensor_count(&c);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&c, NULL, i, &t);
        if (t.present && strstr(t.name, "ffwd")) ff += t.numel;
    }
    cr_expect_eq(ff, 7089408);
}

Test(model, nanogpt_tied_head_is_counted_once_and_aliases_wte) {
    cl_config c = cl_config_lecture();
    cr_assert_eq(cl_config_parse(&c, "n_layer=2,n_embd=32,n_head=4,vocab_size=11,block_size=8,tied_head=1,"
                                     "head_bias=0,qkv_bias=1,activation=gelu"), 0, "%s", cl_last_error());
    cl_model *m = cl_model_create(&c);
    cr_assert(m);
    cr_expect(m->p.head_w == m->p.wte);
    size_t expect = 11 * 32 + 8 * 32 + 2 * (4 * 32 + 3 * 32 * 32 + 3 * 32 + 32 * 32 + 32 + 4 * 32 * 32 + 4 * 32 +
                                            4 * 32 * 32 + 32) + 2 * 32;
    cr_expect_eq(cl_model_num_params(&c), expect);
    cr_expect_eq(cl_model_tensor_find(&c, "lm_head.weight") >= 0, 1);
    cl_model_free(m);
}

Test(model, config_parse_refuses_unknown_keys_and_bad_values) {
    cl_config c = cl_config_lecture();
    cr_expect_eq(cl_config_parse(&c, "n_layers=3"), -1);
    cr_expect(strstr(cl_last_error(), "unknown key 'n_layers'"), "%s", cl_last_error());
    cr_expect_eq(cl_config_parse(&c, "n_layer=x"), -1);
    cr_expect_eq(cl_config_parse(&c, "activation=tanh"), -1);
    cr_expect(strstr(cl_last_error(), "relu, gelu or gelu_tanh"), "%s", cl_last_error());
    cr_expect_eq(cl_config_parse(&c, "activation=gelu_tanh"), 0);
    cr_expect_eq(c.activation, CL_ACT_GELU_TANH);
    c = cl_config_lecture();
    c.n_head = 5;
    cr_expect_eq(cl_config_validate(&c), -1);
    cr_expect(strstr(cl_last_error(), "n_head"), "%s", cl_last_error());
}

Test(model, save_load_round_trip_is_exact) {
    cl_h5_quiet();
    cl_config c = cl_config_lecture();
    cl_config_parse(&c, "n_layer=2,n_embd=16,n_head=2,block_size=8,vocab_size=5");
    cl_model *m = cl_model_create(&c);
    cr_assert(m);
    uint32_t vocab[5] = {'\n', ' ', 'a', 0xE9, 0x1F600};
    memcpy(m->vocab, vocab, sizeof vocab);
    cl_model_init_random(m, 42);
    char path[] = "/tmp/cl_model_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    cr_assert_eq(cl_model_save(m, path), 0, "%s", cl_last_error());
    cl_model *r = cl_model_load(path);
    cr_assert(r, "%s", cl_last_error());
    cr_expect_eq(memcmp(r->vocab, vocab, sizeof vocab), 0, "vocabulary survives (incl. 4-byte UTF-8)");
    cr_expect_eq(r->n_floats, m->n_floats);
    cr_expect_eq(memcmp(r->mem, m->mem, m->n_floats * sizeof(float)), 0);
    char f1[65], f2[65];
    cl_model_fingerprint(m, f1);
    cl_model_fingerprint(r, f2);
    cr_expect_str_eq(f1, f2);
    r->mem[3] += 1.0f;
    cl_model_fingerprint(r, f2);
    cr_expect_str_neq(f1, f2, "fingerprint sees a weight change");
    cl_model_free(r);
    cl_model_free(m);
    unlink(path);
}

Test(model, random_init_follows_the_lecture) {
    cl_config c = cl_config_lecture();
    cl_config_parse(&c, "n_layer=1,n_embd=64,n_head=4,block_size=16,vocab_size=30");
    cl_model *m = cl_model_create(&c);
    cl_model_init_random(m, 7);
    double s = 0, s2 = 0;
    size_t n = (size_t)4 * 64 * 64;
    for (size_t i = 0; i < n; i++) s += m->p.fc_w[i], s2 += (double)m->p.fc_w[i] * m->p.fc_w[i];
    double mean = s / n, std = sqrt(s2 / n - mean * mean);
    cr_expect(fabs(mean) < 0.001 && fabs(std - 0.02) < 0.001, "ffwd weights: mean %g std %g", mean, std);
    for (int j = 0; j < 64; j++) {
        cr_expect_eq(m->p.ln1_w[j], 1.0f);
        cr_expect_eq(m->p.ln1_b[j], 0.0f);
        cr_expect_eq(m->p.fcp_b[j], 0.0f);
    }
    cl_model_free(m);
}

Test(vocab, encode_names_unknown_character_and_position) {
    uint32_t v[4] = {' ', 'a', 'b', 'c'};
    int32_t ids[16];
    size_t n;
    cr_expect_eq(cl_vocab_encode(v, 4, "abc a", 5, ids, 16, &n), 0);
    cr_expect_eq(n, 5);
    cr_expect_eq(ids[0], 1);
    cr_expect_eq(ids[3], 0);
    cr_expect_eq(cl_vocab_encode(v, 4, "ab\xc3\xa9z", 5, ids, 16, &n), -1);
    cr_expect(strstr(cl_last_error(), "U+00E9") && strstr(cl_last_error(), "position 2"), "%s", cl_last_error());
    cr_expect_eq(cl_vocab_encode(v, 4, "a\xff", 2, ids, 16, &n), -1);
    cr_expect(strstr(cl_last_error(), "invalid UTF-8"), "%s", cl_last_error());
}

Test(vocab, from_text_is_sorted_unique_code_points) {
    uint32_t *v;
    int V;
    const char *t = "b\xc3\xa9" "a\nab";
    cr_assert_eq(cl_vocab_from_text(t, strlen(t), &v, &V), 0);
    cr_expect_eq(V, 4);
    uint32_t want[4] = {'\n', 'a', 'b', 0xE9};
    cr_expect_eq(memcmp(v, want, sizeof want), 0);
    free(v);
}

Test(hooks, names_round_trip_and_unknown_names_list_valid_ones) {
    cl_hook_point p;
    int l;
    for (int q = 0; q < CL_NUM_HOOK_POINTS; q++) {
        char name[96];
        cl_hook_name(q, 3, name, sizeof name);
        cr_expect_eq(cl_hook_parse(name, 6, &p, &l), 0, "%s: %s", name, cl_last_error());
        cr_expect_eq((int)p, q); /* an enum value, 0..CL_NUM_HOOK_POINTS-1 */
        cr_expect_eq(l, cl_hook_is_per_layer(q) ? 3 : -1);
    }
    cr_expect_eq(cl_hook_parse("mlp_out", 6, &p, &l), 0);
    cr_expect(p == CL_HOOK_MLP_OUT && l == -1);
    cr_expect_eq(cl_hook_parse("blocks.6.hook_mlp_out", 6, &p, &l), -1);
    cr_expect(strstr(cl_last_error(), "block 6 does not exist"), "%s", cl_last_error());
    cr_expect_eq(cl_hook_parse("blocks.0.hook_mlp_outt", 6, &p, &l), -1);
    cr_expect(strstr(cl_last_error(), "valid:"), "%s", cl_last_error());
}

/* Hooks in the forward pass: capture-last equals the last row of a full
 * capture; zero-ablating mlp_out changes the output and equals a forward
 * with that block's feed-forward output weights zeroed. */
static cl_model *tiny_model(void) {
    cl_config c = cl_config_lecture();
    cl_config_parse(&c, "n_layer=2,n_embd=16,n_head=2,block_size=8,vocab_size=7");
    cl_model *m = cl_model_create(&c);
    cl_model_init_random(m, 3);
    for (size_t i = 0; i < m->n_floats; i++) m->mem[i] += 0.05f * (float)((i * 7919) % 13) / 13.0f;
    return m;
}

Test(forward, capture_last_equals_last_row_of_capture_all) {
    cl_model *m = tiny_model();
    int32_t tok[2 * 5] = {1, 2, 3, 4, 5, 6, 0, 1, 2, 3};
    float all[2 * 2 * 5 * 16], last[2 * 2 * 16];
    cl_hook hk[2] = {{.point = CL_HOOK_MLP_OUT, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = all},
                     {.point = CL_HOOK_MLP_OUT, .layer = -1, .mode = CL_HOOK_CAPTURE_LAST, .out = last}};
    cl_forward *f = cl_forward_create(m, 2, 5);
    cr_assert_eq(cl_forward_run(f, tok, 2, 5, hk, 2, CL_LOGITS_NONE, NULL), 0, "%s", cl_last_error());
    for (int l = 0; l < 2; l++)
        for (int b = 0; b < 2; b++)
            cr_expect_eq(memcmp(last + (l * 2 + b) * 16, all + ((l * 2 + b) * 5 + 4) * 16, 16 * sizeof(float)), 0,
                         "layer %d row %d", l, b);
    cl_forward_free(f);
    cl_model_free(m);
}

Test(forward, zero_ablation_equals_zeroed_weights) {
    cl_model *m = tiny_model();
    int32_t tok[4] = {1, 2, 3, 4};
    float a[4 * 7], b[4 * 7], c[4 * 7];
    cl_forward *f = cl_forward_create(m, 1, 4);
    cl_forward_run(f, tok, 1, 4, NULL, 0, CL_LOGITS_ALL, a);
    cl_hook hk = {.point = CL_HOOK_MLP_OUT, .layer = 1, .mode = CL_HOOK_ZERO};
    cl_forward_run(f, tok, 1, 4, &hk, 1, CL_LOGITS_ALL, b);
    memset(m->p.fcp_w + 16 * 64, 0, 16 * 64 * sizeof(float));
    memset(m->p.fcp_b + 16, 0, 16 * sizeof(float));
    cl_forward_run(f, tok, 1, 4, NULL, 0, CL_LOGITS_ALL, c);
    cr_expect_neq(memcmp(a, b, sizeof a), 0, "ablation changed nothing");
    for (int i = 0; i < 28; i++) cr_expect(fabsf(b[i] - c[i]) < 1e-5f, "logit %d: %g vs %g", i, b[i], c[i]);
    cl_forward_free(f);
    cl_model_free(m);
}

Test(forward, logits_last_equals_last_row_of_all_and_bad_ids_are_refused) {
    cl_model *m = tiny_model();
    int32_t tok[3] = {6, 0, 2};
    float all[3 * 7], last[7];
    cl_forward *f = cl_forward_create(m, 1, 3);
    cl_forward_run(f, tok, 1, 3, NULL, 0, CL_LOGITS_ALL, all);
    cl_forward_run(f, tok, 1, 3, NULL, 0, CL_LOGITS_LAST, last);
    for (int i = 0; i < 7; i++) cr_expect(fabsf(all[14 + i] - last[i]) < 1e-6f);
    tok[1] = 7;
    cr_expect_eq(cl_forward_run(f, tok, 1, 3, NULL, 0, CL_LOGITS_LAST, last), -1);
    cr_expect(strstr(cl_last_error(), "outside the vocabulary"), "%s", cl_last_error());
    cr_expect_eq(cl_forward_run(f, tok, 1, 4, NULL, 0, CL_LOGITS_LAST, last), -1);
    cl_forward_free(f);
    cl_model_free(m);
}

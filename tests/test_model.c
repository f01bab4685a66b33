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

/* cl_model_map: the weights of a model file, mapped read-only, are the saved
 * weights (tensor by tensor, bit for bit), the forward pass over them gives
 * the logits of the copied model bit for bit, and p holds no stale pointer to
 * the zeros left in mem. A tensor stored otherwise (float64, chunked) is read
 * instead, with the same values. Two configs: tied head + qkv bias + gelu
 * (aliased tensors) and the lecture layout (absent qkv bias). */
static void save_tmp(const cl_model *m, char *path) {
    int fd = mkstemp(path);
    close(fd);
    cr_assert_eq(cl_model_save(m, path), 0, "%s", cl_last_error());
}

static void expect_same_model(const cl_model *m, const cl_model *r, const char *what) {
    size_t n = cl_model_tensor_count(&m->cfg);
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(&m->cfg, m->mem, i, &t);
        if (!t.present) continue; /* not saved (tied head: wte's data, checked as wte) */
        cr_expect_eq(memcmp(cl_model_data(r, i), t.data, t.numel * sizeof(float)), 0, "%s: tensor %s differs",
                     what, t.name);
    }
    int32_t tok[2 * 6] = {1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5};
    float a[2 * 6 * 7], b[2 * 6 * 7];
    cl_forward *fa = cl_forward_create(m, 2, 6), *fb = cl_forward_create(r, 2, 6);
    cr_assert(fa && fb);
    cr_assert_eq(cl_forward_run(fa, tok, 2, 6, NULL, 0, CL_LOGITS_ALL, a), 0, "%s", cl_last_error());
    cr_assert_eq(cl_forward_run(fb, tok, 2, 6, NULL, 0, CL_LOGITS_ALL, b), 0, "%s", cl_last_error());
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "%s: logits differ", what);
    char f1[65], f2[65];
    cr_assert_eq(cl_model_fingerprint(m, f1), 0);
    cr_assert_eq(cl_model_fingerprint(r, f2), 0);
    cr_expect_str_eq(f1, f2, "%s: fingerprint", what);
    cl_forward_free(fa);
    cl_forward_free(fb);
}

static int in_map(const cl_model *m, const float *p) {
    const char *lo = m->map, *q = (const char *)p;
    return lo && q >= lo && q < lo + m->map_len;
}

Test(model, mapped_weights_equal_the_saved_ones) {
    cl_h5_quiet();
    const char *specs[2] = {"n_layer=2,n_embd=16,n_head=2,block_size=8,vocab_size=7,tied_head=1,qkv_bias=1,"
                            "activation=gelu",
                            "n_layer=2,n_embd=16,n_head=2,block_size=8,vocab_size=7"};
    for (int s = 0; s < 2; s++) {
        cl_config c = cl_config_lecture();
        cr_assert_eq(cl_config_parse(&c, specs[s]), 0, "%s", cl_last_error());
        cl_model *m = cl_model_create(&c);
        cr_assert(m);
        cl_model_init_random(m, 5);
        for (size_t i = 0; i < m->n_floats; i++) m->mem[i] += 0.05f * (float)((i * 7919) % 13) / 13.0f;
        char path[] = "/tmp/cl_map_XXXXXX";
        save_tmp(m, path);
        long qkv = cl_model_tensor_find(&c, "blocks.1.sa.qkv.weight"), wte = cl_model_tensor_find(&c, "token_embedding_table.weight");
        for (int copy = 0; copy < 2; copy++) { /* cl_model_map, then cl_model_map_copy (the file in huge pages) */
            cl_model *r = copy ? cl_model_map_copy(path) : cl_model_map(path);
            cr_assert(r, "%s", cl_last_error());
            cr_assert(r->map && r->data, "the file was not mapped (copy %d)", copy);
            cr_expect(in_map(r, cl_model_data(r, (size_t)qkv)) && in_map(r, cl_model_data(r, (size_t)wte)),
                      "config %d copy %d: weights were read into mem, not used in place", s, copy);
            cr_expect(r->p.qkv_w == NULL && r->p.wte == NULL && r->p.head_w == NULL,
                      "config %d copy %d: p still points at mem for a mapped kind", s, copy);
            cr_expect(!c.qkv_bias == !in_map(r, cl_model_data(r, (size_t)cl_model_tensor_find(&c, "blocks.0.sa.qkv.bias"))),
                      "config %d copy %d: an absent tensor must come from mem, a present one from the file", s, copy);
            expect_same_model(m, r, specs[s]);
            cl_model_free(r);
        }
        /* negative control: a changed weight in the file is seen through the map */
        cl_tensor_info t;
        cl_model_tensor(&c, m->mem, (size_t)qkv, &t);
        t.data[5] += 0.25f;
        cl_model *copy = cl_model_load(path);
        cr_assert(copy);
        cr_expect_neq(memcmp(cl_model_data(copy, (size_t)qkv), t.data, t.numel * sizeof(float)), 0,
                      "the comparison would not see a changed weight");
        cl_model_free(copy);
        t.data[5] -= 0.25f;
        cl_model_free(m);
        unlink(path);
    }
}

/* Rewrite one dataset of a model file as float64, or chunked float32. */
static void rewrite_dataset(const char *path, const char *name, const float *data, size_t rows, size_t cols,
                            int as_double) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    cr_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {rows, cols};
    int rank = cols ? 2 : 1;
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (!as_double) {
        hsize_t chunk[2] = {1, cols ? cols : 1};
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t d = H5Dcreate2(f, name, as_double ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, dcpl,
                         H5P_DEFAULT);
    cr_assert(d >= 0);
    cr_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
}

Test(model, mapped_model_reads_what_it_cannot_map) {
    cl_h5_quiet();
    cl_model *m = tiny_model();
    char path[] = "/tmp/cl_map_XXXXXX";
    save_tmp(m, path);
    long fc = cl_model_tensor_find(&m->cfg, "blocks.0.ffwd.net.0.weight"), b = cl_model_tensor_find(&m->cfg, "ln_f.bias");
    cl_tensor_info tf, tb;
    cl_model_tensor(&m->cfg, m->mem, (size_t)fc, &tf);
    cl_model_tensor(&m->cfg, m->mem, (size_t)b, &tb);
    rewrite_dataset(path, "/weights/blocks.0.ffwd.net.0.weight", tf.data, tf.shape[0], tf.shape[1], 0);
    rewrite_dataset(path, "/weights/ln_f.bias", tb.data, tb.shape[0], 0, 1);
    cl_model *r = cl_model_map(path);
    cr_assert(r, "%s", cl_last_error());
    cr_expect(!in_map(r, cl_model_data(r, (size_t)fc)), "a chunked dataset was mapped");
    cr_expect(!in_map(r, cl_model_data(r, (size_t)b)), "a float64 dataset was mapped");
    cr_expect(in_map(r, cl_model_data(r, (size_t)cl_model_tensor_find(&m->cfg, "blocks.1.ffwd.net.0.weight"))),
              "the other layer's dataset was not mapped");
    cr_expect(r->p.fc_w == NULL, "a kind with one mapped layer keeps its stacked pointer");
    expect_same_model(m, r, "partly mapped");
    cl_model_free(r);
    /* a wrong shape is refused as cl_model_load refuses it */
    cl_model_tensor(&m->cfg, m->mem, (size_t)fc, &tf);
    rewrite_dataset(path, "/weights/blocks.0.ffwd.net.0.weight", tf.data, tf.shape[1], tf.shape[0], 0);
    cr_expect(cl_model_map(path) == NULL, "a transposed tensor was accepted");
    cr_expect(strstr(cl_last_error(), "blocks.0.ffwd.net.0.weight"), "%s", cl_last_error());
    cl_model_free(m);
    unlink(path);
}

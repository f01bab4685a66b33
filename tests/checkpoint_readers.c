/* Unit tests of the checkpoint readers on hand-made bytes (no PyTorch needed):
 * the unpickler (memo, LONG1, floats, protocol-4 opcodes, refusals), the zip
 * reader (a stored archive built here, truncation), safetensors (JSON escapes,
 * dtype conversion, overlaps, holes) and format detection. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/base/error.h"

static int load(const char *bytes, size_t n, pk_result *r) {
    return cl_pickle_load((const unsigned char *)bytes, n, r);
}
#define LOAD(lit, r) load(lit, sizeof(lit) - 1, r)

Test(pickle, dict_memo_ints_floats) {
    /* {'a': -2 (LONG1), 'b': [1.5, 'a' memo ref], 'c': 300 (BININT2), 'd': True}
     * with LONG_BINPUT / LONG_BINGET */
    static const char p[] =
        "\x80\x02}r\x00\x00\x00\x00(X\x01\x00\x00\x00" "ar\x01\x00\x00\x00\x8a\x01\xfe"
        "X\x01\x00\x00\x00" "b](G\x3f\xf8\x00\x00\x00\x00\x00\x00j\x01\x00\x00\x00" "e"
        "X\x01\x00\x00\x00" "cM\x2c\x01X\x01\x00\x00\x00" "d\x88u.";
    pk_result r;
    cr_assert_eq(LOAD(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.protocol, 2);
    const pk_value *a = pk_dict_get(r.root, "a"), *b = pk_dict_get(r.root, "b");
    cr_assert(a && a->type == PK_INT && a->i == -2);
    cr_assert(b && b->type == PK_LIST && b->n == 2);
    cr_assert(b->items[0]->type == PK_FLOAT && b->items[0]->f == 1.5);
    cr_assert(b->items[1]->type == PK_STR && !strcmp(b->items[1]->s, "a"));
    cr_assert_eq(pk_dict_get(r.root, "c")->i, 300);
    cr_assert(pk_dict_get(r.root, "d")->type == PK_BOOL && pk_dict_get(r.root, "d")->i == 1);
    cl_pickle_free(&r);
}

Test(pickle, protocol4_memoize_and_stack_global) {
    /* FRAME; OrderedDict via STACK_GLOBAL; MEMOIZE; SHORT_BINUNICODE; BUILD ignored */
    static const char p[] =
        "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00"
        "\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94"
        "\x8c\x01k\x94K\x07s}\x94\x8c\x09_metadata\x94}\x94sb.";
    pk_result r;
    cr_assert_eq(LOAD(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.protocol, 4);
    const pk_value *k = pk_dict_get(r.root, "k");
    cr_assert(k && k->type == PK_INT && k->i == 7);
    cl_pickle_free(&r);
}

Test(pickle, refuses_globals_by_name) {
    pk_result r;
    static const char p1[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85R.";
    cr_assert_eq(LOAD(p1, &r), -1);
    cr_assert(strstr(cl_last_error(), "refusing pickle global os.system"), "%s", cl_last_error());
    static const char p2[] = "\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93.";
    cr_assert_eq(LOAD(p2, &r), -1);
    cr_assert(strstr(cl_last_error(), "refusing pickle global builtins.eval"), "%s", cl_last_error());
    /* an allowed global that is not callable */
    static const char p3[] = "\x80\x02" "ctorch\nFloatStorage\n)R.";
    cr_assert_eq(LOAD(p3, &r), -1);
    cr_assert(strstr(cl_last_error(), "refusing to call pickle global torch.FloatStorage"), "%s",
              cl_last_error());
}

Test(pickle, malformed_inputs_fail_cleanly) {
    pk_result r;
#define B(lit) {lit, sizeof(lit) - 1}
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
        B(""),                                  /* empty */
        B("\x80\x02}"),                         /* no STOP */
        B("\x80\x02X\xff\xff\xff\x7f" "abc."),     /* string past the end */
        B("\x80\x02j\xff\xff\xff\x7f."),           /* memo get of a huge index */
        B("\x80\x02Nr\xff\xff\xff\x7f."),          /* memo put of a huge index */
        B("\x80\x02u."),                        /* SETITEMS without a mark */
        B("\x80\x02(u."),                       /* SETITEMS with nothing below the mark */
        B("\x80\x02Na."),                       /* APPEND to None */
        B("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."), /* LONG1 over 8 bytes */
        B("\x80\x02\xff."),                     /* unknown opcode */
        B("."),                                 /* STOP on an empty stack */
        B("\x80\x02(K\x01" "d."),                  /* odd DICT */
        B("(torch.bfloat16"),                   /* MARK+TUPLE on an empty stack (fuzz find: null+0) */
    };
#undef B
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(load(bad[i].p, bad[i].n, &r), -1, "case %zu accepted", i);
        cr_assert(strlen(cl_last_error()) > 0);
    }
}

Test(pickle, tensor_bounds_checked_against_storage) {
    /* _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 6), offset, size, stride, ...) */
    static const char ok[] =
        "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n"
        "((X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "0"
        "X\x03\x00\x00\x00" "cpu" "K\x06tQ"
        "K\x01K\x02K\x02\x86K\x01K\x03\x86\x89NtR.";
    pk_result r;
    cr_assert_eq(LOAD(ok, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->type, PK_TENSOR);
    cr_assert_eq(r.root->t->offset, 1);
    cr_assert_eq(r.root->t->numel, 4);
    cl_pickle_free(&r);
    /* the same with offset 2: reaches element 2 + 1*1 + 1*3 = 6 of 6 */
    char bad[sizeof ok];
    memcpy(bad, ok, sizeof ok);
    char *at = memmem(bad, sizeof ok - 1, "QK\x01", 3);
    cr_assert(at);
    at[2] = 2;
    cr_assert_eq(load(bad, sizeof ok - 1, &r), -1);
    cr_assert(strstr(cl_last_error(), "reaches element 6 of storage '0' which has 6"), "%s",
              cl_last_error());
}

/* ---- safetensors ---- */

static unsigned char *st_file(const char *json, const void *data, size_t dlen, size_t *len) {
    size_t hl = strlen(json);
    unsigned char *f = malloc(8 + hl + dlen);
    for (int i = 0; i < 8; i++) f[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(f + 8, json, hl);
    memcpy(f + 8 + hl, data, dlen);
    *len = 8 + hl + dlen;
    return f;
}

Test(safetensors, dtypes_convert_and_names_unescape) {
    /* F16: 1, -2, 2^-24 (subnormal), inf; BF16: 1, -0.5; F64: 0.25 */
    unsigned char d[8 + 4 + 8] = {0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x7C,
                                  0x80, 0x3F, 0x00, 0xBF};
    double q = 0.25;
    memcpy(d + 12, &q, 8);
    const char *json =
        "{\"__metadata__\": {\"format\": \"pt\", \"x\": [1, {\"y\": null}]},"
        " \"h\\u00e9\\n\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
        " \"b\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [8, 12]},"
        " \"d\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [12, 20]}}";
    size_t len;
    unsigned char *f = st_file(json, d, sizeof d, &len);
    cl_ckpt *ck = cl_ckpt_open_mem(f, len, "t.safetensors");
    cr_assert(ck, "%s", cl_last_error());
    cr_assert_eq(cl_ckpt_num_tensors(ck), 3);
    const cl_ckpt_tensor *h = cl_ckpt_find(ck, "h\xc3\xa9\n");
    cr_assert(h && h->dtype == CL_DT_F16 && h->ndim == 2 && h->numel == 4);
    float out[4];
    cr_assert_eq(cl_ckpt_tensor_to_f32(h, out), 0);
    cr_assert(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24) && isinf(out[3]));
    cr_assert_eq(cl_ckpt_tensor_to_f32(cl_ckpt_find(ck, "b"), out), 0);
    cr_assert(out[0] == 1.0f && out[1] == -0.5f);
    cr_assert_eq(cl_ckpt_tensor_to_f32(cl_ckpt_find(ck, "d"), out), 0);
    cr_assert(out[0] == 0.25f);
    cl_ckpt_close(ck);
    free(f);
}

Test(safetensors, overlaps_holes_and_bad_json_refused) {
    unsigned char d[16] = {0};
    static const struct {
        const char *json, *msg;
    } bad[] = {
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", "overlaps"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", "hole"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", "8 bytes for 3"},
        {"{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "unsupported dtype"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "non-negative"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}", "'}' expected"},
        {"{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}}", "lacks shape"},
        {"{\"a\\ud800\": 1}", "invalid Unicode"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", "duplicate"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", "non-negative integer"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], \"data_offsets\": [0, 4]}}",
         "too big integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len;
        unsigned char *f = st_file(bad[i].json, d, sizeof d, &len);
        cl_ckpt *ck = cl_ckpt_open_mem(f, len, "t.safetensors");
        cr_assert_null(ck, "case %zu accepted", i);
        cr_assert(strstr(cl_last_error(), bad[i].msg), "case %zu: %s", i, cl_last_error());
        free(f);
    }
}

/* ---- zip ---- */

static size_t put16(unsigned char *p, unsigned v) { p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; return 2; }
static size_t put32(unsigned char *p, uint32_t v) { put16(p, v & 0xFFFF); put16(p + 2, v >> 16); return 4; }

/* A stored zip of the given entries, each local header padded (extra field
 * 0x4246) so that its data starts at a multiple of 64, as torch writes them. */
static size_t make_zip(unsigned char *out, const char *const *names, const char *const *datas,
                       const size_t *dlens, int n) {
    size_t pos = 0, offs[8];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        offs[i] = pos;
        size_t data_at = pos + 30 + nl + 4;
        size_t pad = (64 - data_at % 64) % 64;
        unsigned char *h = out + pos;
        memset(h, 0, 30);
        put32(h, 0x04034b50);
        put32(h + 14, cl_crc32((const unsigned char *)datas[i], dlens[i]));
        put32(h + 18, (uint32_t)dlens[i]);
        put32(h + 22, (uint32_t)dlens[i]);
        put16(h + 26, (unsigned)nl);
        put16(h + 28, (unsigned)(4 + pad));
        memcpy(h + 30, names[i], nl);
        put16(h + 30 + nl, 0x4246);
        put16(h + 32 + nl, (unsigned)pad);
        memset(h + 34 + nl, 'Z', pad);
        pos += 34 + nl + pad;
        memcpy(out + pos, datas[i], dlens[i]);
        pos += dlens[i];
    }
    size_t cd = pos;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        unsigned char *h = out + pos;
        memset(h, 0, 46);
        put32(h, 0x02014b50);
        put32(h + 16, cl_crc32((const unsigned char *)datas[i], dlens[i]));
        put32(h + 20, (uint32_t)dlens[i]);
        put32(h + 24, (uint32_t)dlens[i]);
        put16(h + 28, (unsigned)nl);
        put32(h + 42, (uint32_t)offs[i]);
        memcpy(h + 46, names[i], nl);
        pos += 46 + nl;
    }
    unsigned char *e = out + pos;
    memset(e, 0, 22);
    put32(e, 0x06054b50);
    put16(e + 8, (unsigned)n);
    put16(e + 10, (unsigned)n);
    put32(e + 12, (uint32_t)(pos - cd));
    put32(e + 16, (uint32_t)cd);
    return pos + 22;
}

Test(zip, torch_archive_with_a_tensor) {
    /* {'w': tensor [2] at offset 1 of a 3-float storage} in folder "m" */
    static const char pkl[] =
        "\x80\x02}X\x01\x00\x00\x00w" "ctorch._utils\n_rebuild_tensor_v2\n"
        "((X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "0"
        "X\x03\x00\x00\x00" "cpu" "K\x03tQ" "K\x01K\x02\x85K\x01\x85\x89NtRs.";
    float st[3] = {9.0f, 1.5f, -2.5f};
    const char *names[] = {"m/data.pkl", "m/data/0", "m/version"};
    const char *datas[] = {pkl, (const char *)st, "3\n"};
    size_t lens[] = {sizeof pkl - 1, sizeof st, 2};
    unsigned char *buf = calloc(1, 4096);
    size_t n = make_zip(buf, names, datas, lens, 3);
    cl_ckpt *ck = cl_ckpt_open_mem(buf, n, "m.pt");
    cr_assert(ck, "%s", cl_last_error());
    cr_assert_str_eq(cl_ckpt_prefix(ck), "m");
    const cl_ckpt_tensor *t = cl_ckpt_find(ck, "w");
    cr_assert(t && t->numel == 2 && t->offset == 1);
    cr_assert_eq((size_t)(t->storage - buf) % 64, 0, "data not found via the local header");
    float out[2];
    cr_assert_eq(cl_ckpt_tensor_to_f32(t, out), 0);
    cr_assert(out[0] == 1.5f && out[1] == -2.5f);
    cr_assert_eq(cl_ckpt_num_params(ck), 2);
    cl_ckpt_close(ck);
    /* every truncation fails cleanly */
    for (size_t cut = 0; cut < n; cut += 7) {
        ck = cl_ckpt_open_mem(buf, cut, "cut.pt");
        cr_assert_null(ck, "truncated at %zu accepted", cut);
    }
    /* a storage shorter than declared */
    lens[1] = 8;
    n = make_zip(buf, names, datas, lens, 3);
    ck = cl_ckpt_open_mem(buf, n, "short.pt");
    cr_assert_null(ck);
    cr_assert(strstr(cl_last_error(), "declares 3 float32 elements"), "%s", cl_last_error());
    free(buf);
}

Test(detect, legacy_and_unknown) {
    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                           0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    cr_assert_null(cl_ckpt_open_mem(legacy, sizeof legacy, "old.pt"));
    cr_assert(strstr(cl_last_error(), "legacy (pre-1.6"), "%s", cl_last_error());
    cr_assert_null(cl_ckpt_open_mem("hello world", 11, "x"));
    cr_assert(strstr(cl_last_error(), "not a PyTorch checkpoint"), "%s", cl_last_error());
}

/* ---- the opaque mode of `inspect` (issue 17) ---- */

static int load_any(const char *bytes, size_t n, pk_result *r) {
    return cl_pickle_load_opts((const unsigned char *)bytes, n, CL_PK_OPAQUE, r);
}
#define LOAD_ANY(lit, r) load_any(lit, sizeof(lit) - 1, r)

Test(pickle_opaque, namespace_newobj_build) {
    /* argparse.Namespace(a=1) at protocol 2: NEWOBJ, then BUILD with its __dict__ */
    static const char p[] = "\x80\x02" "cargparse\nNamespace\nq\x00)\x81q\x01}q\x02"
                            "X\x01\x00\x00\x00" "aK\x01sb.";
    pk_result r;
    cr_assert_eq(LOAD(p, &r), -1, "the strict reader must refuse it");
    cr_assert(strstr(cl_last_error(), "refusing pickle global argparse.Namespace"), "%s", cl_last_error());
    cr_assert_eq(LOAD_ANY(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->type, PK_OBJECT);
    cr_assert_str_eq(r.root->s, "argparse.Namespace");
    cr_assert_eq(r.root->how, PK_HOW_NEWOBJ);
    cr_assert(r.root->state && pk_dict_get(r.root->state, "a")->i == 1);
    char buf[64];
    pk_render(r.root, buf, sizeof buf);
    cr_assert_str_eq(buf, "<argparse.Namespace>");
    cl_pickle_free(&r);
}

Test(pickle_opaque, reduce_is_recorded_not_called) {
    static const char p[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85R.";
    pk_result r;
    cr_assert_eq(LOAD_ANY(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->type, PK_OBJECT);
    cr_assert_eq(r.root->how, PK_HOW_REDUCE);
    char buf[64];
    pk_render(r.root, buf, sizeof buf);
    cr_assert_str_eq(buf, "<os.system('id')>");
    /* control: a cut buffer ends in "..." */
    pk_render(r.root, buf, 12);
    cr_assert_str_eq(buf, "<os.syst..."); /* 8 bytes, "...", NUL */
    cl_pickle_free(&r);
}

Test(pickle_opaque, sets_bytes_big_ints_and_dict_subclass_items) {
    /* (EMPTY_SET + ADDITEMS(1, 2), FROZENSET('a'), BINBYTES8 b'\x00\xff',
     *  LONG4 of 10 bytes, defaultdict(list) + SETITEMS {'k': 3}) */
    static const char p[] =
        "\x80\x04(\x8f(K\x01K\x02\x90(\x8c\x01" "a\x91"
        "\x8e\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff"
        "\x8b\x0a\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"
        "\x8c\x0b" "collections\x8c\x0b" "defaultdict\x93\x8c\x08" "builtins\x8c\x04" "list\x93\x85R"
        "(\x8c\x01kK\x03ut.";
    pk_result r;
    cr_assert_eq(LOAD_ANY(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->type, PK_TUPLE);
    cr_assert_eq(r.root->n, 5);
    cr_assert(r.root->items[0]->type == PK_SET && r.root->items[0]->n == 2);
    cr_assert(r.root->items[1]->type == PK_SET && r.root->items[1]->n == 1);
    cr_assert(r.root->items[2]->type == PK_STR && r.root->items[2]->is_bytes && r.root->items[2]->slen == 2);
    cr_assert(r.root->items[3]->type == PK_OBJECT && !strcmp(r.root->items[3]->s, "builtins.int"));
    const pk_value *dd = r.root->items[4];
    cr_assert(dd->type == PK_OBJECT && dd->obj_items == 2 && dd->n == 2);
    char buf[160];
    pk_render(r.root, buf, sizeof buf);
    cr_assert_str_eq(buf, "({1, 2}, {'a'}, b'\\x00\\xff', <builtins.int>, <collections.defaultdict(builtins.list)>)");
    cl_pickle_free(&r);
    /* the strict reader still refuses the big integer */
    cr_assert_eq(LOAD(p, &r), -1);
}

Test(pickle_opaque, self_reference_renders_bounded) {
    /* l = []; l.append(l) */
    static const char p[] = "\x80\x02]q\x00h\x00" "a.";
    pk_result r;
    cr_assert_eq(LOAD_ANY(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->items[0], r.root);
    char buf[64];
    pk_render(r.root, buf, sizeof buf);
    cr_assert_str_eq(buf, "[[[1 items]]]");
    cl_pickle_free(&r);
}

Test(pickle_opaque, newobj_refused_by_strict_reader) {
    static const char p[] = "\x80\x02" "ctorch\nFloatStorage\n)\x81.";
    pk_result r;
    cr_assert_eq(LOAD(p, &r), -1);
    cr_assert(strstr(cl_last_error(), "refusing to instantiate pickle global torch.FloatStorage"), "%s",
              cl_last_error());
    cr_assert_eq(LOAD_ANY(p, &r), 0, "%s", cl_last_error());
    cr_assert_eq(r.root->type, PK_OBJECT);
    cl_pickle_free(&r);
}

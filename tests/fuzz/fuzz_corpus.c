/* libFuzzer harness for the corpus.h5 opener (cl_corpus_load and
 * cl_corpus_open). Arbitrary bytes would mostly exercise HDF5's own parser,
 * which is not ours to harden; so the input describes a file instead: a short
 * text (token ids) and a substring length make a REAL corpus
 * (cl_corpus_from_ids, sampled prompts), whose attributes and datasets are
 * then written with the tampering the rest of the input asks for, four bytes
 * per edit: an attribute set to a small, negative or huge value, of the wrong
 * type, or dropped; a dataset's element set to an edge value, its extent
 * changed (up to 2^30 rows, unwritten), its type or layout changed (chunked +
 * deflate, chunked and never written, compact), or the dataset dropped. The
 * opener must refuse or accept without a crash, a leak, a sanitizer report or
 * an allocation beyond the input's scale; an accepted corpus is then read in
 * full through its accessors, which must stay in bounds. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/h5/h5util.h"

enum { A_FORMAT, A_VERSION, A_L, A_V, A_N, A_NNZ, A_P, N_ATTRS };
enum { D_VOCAB, D_TOKENS, D_FIRST, D_INDPTR, D_TOKEN, D_COUNT, D_PINDEX, D_PTEXT, D_HOLDOUT, N_DSETS };

typedef struct {
    const char *path;
    hid_t mem;      /* native type of the data below */
    int rank;
    hsize_t dims[2];
    void *data;     /* dims[0] * dims[1] elements of mem (dims[1] = 1 for rank 1) */
    int drop, type, layout; /* type: 0 right, 1 float64, 2 int16, 3 int64; layout: 0 contiguous,
                               1 chunked+deflate, 2 chunked unwritten, 3 compact */
} dset;

static char path_buf[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    cl_h5_quiet();
    /* in memory where there is a tmpfs */
    snprintf(path_buf, sizeof path_buf, "%s/fuzz_corpus.%d.h5", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm",
             (int)getpid());
    return 0;
}

static size_t elems(const dset *d) { return (size_t)d->dims[0] * (d->rank == 2 ? (size_t)d->dims[1] : 1); }

/* Element k of d as a 64-bit integer slot (for edits). */
static void set_elem(dset *d, size_t k, int64_t v) {
    size_t es = H5Tget_size(d->mem);
    if (d->mem == H5T_NATIVE_INT32 || (es == 4 && H5Tget_class(d->mem) == H5T_INTEGER)) ((int32_t *)d->data)[k] = (int32_t)v;
    else if (es == 8) ((int64_t *)d->data)[k] = v;
    else if (H5Tget_class(d->mem) == H5T_STRING) memset((char *)d->data + k * es, (int)(v & 0xff), es > 1 ? 1 : es);
}

/* Resize d to n rows (contents kept where they fit, the rest filled with fill). */
static int resize(dset *d, hsize_t n, unsigned char fill) {
    size_t es = H5Tget_size(d->mem), row = es * (d->rank == 2 ? (size_t)d->dims[1] : 1);
    if (n > (1u << 16)) return -1;
    unsigned char *p = malloc(n * row + 1);
    if (!p) return -1;
    memset(p, fill, n * row + 1);
    memcpy(p, d->data, (n < d->dims[0] ? n : d->dims[0]) * row);
    free(d->data);
    d->data = p;
    d->dims[0] = n;
    return 0;
}

static void write_dset(hid_t f, dset *d, hsize_t huge_rows) {
    if (d->drop) return;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t dims[2] = {huge_rows ? huge_rows : d->dims[0], d->dims[1]};
    hid_t ft = H5Tcopy(d->mem);
    if (H5Tget_class(d->mem) != H5T_STRING) {
        H5Tclose(ft);
        ft = H5Tcopy(d->type == 1 ? H5T_NATIVE_DOUBLE : d->type == 2 ? H5T_NATIVE_INT16
                     : d->type == 3 ? H5T_NATIVE_INT64 : d->mem);
    }
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int layout = huge_rows ? 2 : d->layout;
    size_t bytes = elems(d) * H5Tget_size(ft);
    if (layout == 3 && bytes > 32768) layout = 0;
    if ((layout == 1 || layout == 2) && dims[0] > 0) {
        hsize_t ch[2] = {dims[0] < 7 ? dims[0] : 7, d->dims[1] ? d->dims[1] : 1};
        H5Pset_chunk(dcpl, d->rank, ch);
        if (layout == 1) H5Pset_deflate(dcpl, 1);
    } else if (layout == 3) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    }
    hid_t sp = H5Screate_simple(d->rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, d->path, ft, sp, lcpl, dcpl, H5P_DEFAULT);
    if (ds >= 0) {
        if (layout != 2 && elems(d) > 0) H5Dwrite(ds, d->mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->data);
        H5Dclose(ds);
    }
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Tclose(ft);
    H5Pclose(lcpl);
}

/* Read everything an accepted corpus offers, through its accessors. */
static void use(cl_corpus *c) {
    int32_t row[CL_CORPUS_MAX_LEN];
    char text[4 * CL_CORPUS_MAX_LEN + 1];
    int32_t *dense = malloc((size_t)c->V * sizeof *dense);
    int64_t sum = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (cl_corpus_row(c, i, row) == 0) sum += row[0];
        if (cl_corpus_row_text(c, i, text) < 0) cl_error_clear();
        sum += cl_corpus_next_total(c, i);
        if (dense) cl_corpus_next_dense(c, i, dense);
        if (c->tokens) sum += (int64_t)cl_corpus_substring_text(c, i, text);
    }
    for (size_t k = 0; k < c->n_prompts; k++) {
        size_t i = (size_t)c->prompt_index[k];
        if (cl_corpus_row_text(c, i, text) < 0) cl_error_clear();
    }
    for (size_t k = 0; k < c->n_holdout; k++) sum += (int64_t)c->vocab[c->holdout[k]];
    free(dense);
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    if (size < 3) return 0;
    /* the real corpus: a text of 1..48 ids over 6 characters, L 1..4, P prompts */
    size_t nt = 1 + in[0] % 48, L = 1 + in[1] % 4;
    int32_t ids[48];
    for (size_t k = 0; k < nt; k++) ids[k] = (int32_t)((3 + k < size ? in[3 + k] : k) % 6);
    const uint32_t vocab[6] = {'a', 'b', 0xe9, 'd', 0x4e2d, ' '};
    cl_corpus *c = cl_corpus_from_ids(ids, nt, (int)L, vocab, 6);
    if (!c) {
        cl_error_clear();
        return 0;
    }
    if (cl_corpus_sample_prompts(c, 1 + in[2] % c->n, 1)) {
        cl_corpus_free(c);
        cl_error_clear();
        return 0;
    }
    const size_t N = c->n, P = c->n_prompts, nnz = c->nnz;
    long long attrs[N_ATTRS] = {0, CL_CORPUS_FORMAT_VERSION, (long long)L, 6, (long long)N, (long long)nnz,
                                (long long)P};
    int attr_kind[N_ATTRS] = {0}; /* 0 int (string for format), 1 dropped, 2 wrong type */
    /* the datasets, with their own copies of the data */
    char *vbuf = calloc(6, 4), *tbuf = calloc(P, 4 * L + 1);
    for (int i = 0; i < 6; i++) cl_utf8_put(vocab[i], vbuf + 4 * i);
    for (size_t k = 0; k < P; k++) cl_corpus_substring_text(c, (size_t)c->prompt_index[k], tbuf + k * (4 * L + 1));
    hid_t vt = H5Tcopy(H5T_C_S1), st = H5Tcopy(H5T_C_S1);
    H5Tset_size(vt, 4), H5Tset_cset(vt, H5T_CSET_UTF8), H5Tset_strpad(vt, H5T_STR_NULLPAD);
    H5Tset_size(st, 4 * L + 1), H5Tset_cset(st, H5T_CSET_UTF8), H5Tset_strpad(st, H5T_STR_NULLPAD);
    int32_t *hold = malloc(3 * sizeof *hold);
    hold[0] = 0, hold[1] = 5, hold[2] = 2;
    dset d[N_DSETS] = {
        {"/vocab", vt, 1, {6, 1}, vbuf, 0, 0, 0},
        {"/substrings/tokens", H5T_NATIVE_INT32, 2, {N, L}, NULL, 0, 0, 0},
        {"/substrings/first_offset", H5T_NATIVE_INT64, 1, {N, 1}, NULL, 0, 0, 0},
        {"/substrings/next/indptr", H5T_NATIVE_INT64, 1, {N + 1, 1}, NULL, 0, 0, 0},
        {"/substrings/next/token", H5T_NATIVE_INT32, 1, {nnz, 1}, NULL, 0, 0, 0},
        {"/substrings/next/count", H5T_NATIVE_INT32, 1, {nnz, 1}, NULL, 0, 0, 0},
        {"/prompts/index", H5T_NATIVE_INT64, 1, {P, 1}, NULL, 0, 0, 0},
        {"/prompts/text", st, 1, {P, 1}, tbuf, 0, 0, 0},
        {"/holdout/tokens", H5T_NATIVE_INT32, 1, {3, 1}, hold, 1, 0, 0},
    };
    const void *src[N_DSETS] = {NULL, c->tokens, c->first_offset, c->next_indptr, c->next_token, c->next_count,
                                c->prompt_index, NULL, NULL};
    for (int k = 0; k < N_DSETS; k++)
        if (src[k]) {
            size_t b = elems(&d[k]) * H5Tget_size(d[k].mem);
            d[k].data = malloc(b + 1);
            memcpy(d[k].data, src[k], b);
        }
    hsize_t huge[N_DSETS] = {0};
    /* the edits: 4 bytes each after the text */
    for (size_t o = 3 + nt; o + 4 <= size; o += 4) {
        unsigned what = in[o] % (N_ATTRS + N_DSETS), kind = in[o + 1] % 8, pos = in[o + 2], val = in[o + 3];
        if (what < N_ATTRS) {
            static const long long edge[] = {-1, 0, 1LL << 24, 1LL << 40, INT64_MAX, INT64_MIN, 65536, 257};
            if (kind == 0) attr_kind[what] = 1;
            else if (kind == 1) attr_kind[what] = 2;
            else if (kind < 5) attrs[what] = (long long)val - 8;
            else attrs[what] = edge[val % 8];
            continue;
        }
        dset *x = &d[what - N_ATTRS];
        size_t n = elems(x);
        static const int64_t edge[] = {-1, 6, 7, INT32_MAX, INT32_MIN, 1LL << 40, -(1LL << 40), 0};
        switch (kind) {
        case 0: if (n) set_elem(x, pos % n, (int64_t)val - 3); break;
        case 1: if (n) set_elem(x, pos % n, edge[val % 8]); break;
        case 2: resize(x, (hsize_t)(x->dims[0] + (val % 5) - 2 > 0 ? x->dims[0] + (val % 5) - 2 : 0), (unsigned char)pos); break;
        case 3: x->type = val % 4; break;
        case 4: x->layout = val % 4; break;
        case 5: x->drop = !x->drop; break;
        case 6: huge[what - N_ATTRS] = (hsize_t)1 << (10 + val % 21); break;
        case 7: /* swap two elements */
            if (n > 1 && H5Tget_class(x->mem) == H5T_INTEGER) {
                size_t es = H5Tget_size(x->mem), a = pos % n, b = (pos + 1 + val) % n;
                unsigned char t[8];
                memcpy(t, (char *)x->data + a * es, es);
                memcpy((char *)x->data + a * es, (char *)x->data + b * es, es);
                memcpy((char *)x->data + b * es, t, es);
            }
            break;
        }
    }
    /* write the file */
    hid_t f = H5Fcreate(path_buf, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f >= 0) {
        for (int k = 0; k < N_DSETS; k++) write_dset(f, &d[k], huge[k]);
        static const char *names[N_ATTRS] = {"format", "format_version", "L", "vocab_size", "n_substrings", "nnz",
                                             "n_prompts"};
        for (int a = 0; a < N_ATTRS; a++) {
            if (attr_kind[a] == 1) continue;
            if ((a == A_FORMAT) != (attr_kind[a] == 2)) {
                if (a == A_FORMAT && attrs[a] == 0) cl_h5_attr_write_str(f, names[a], CL_CORPUS_FORMAT);
                else cl_h5_attr_write_str(f, names[a], attrs[a] == 1 ? "" : "corpuslens-corpus?");
            } else {
                cl_h5_attr_write_int(f, names[a], attrs[a]);
            }
        }
        cl_h5_attr_write_str(f, "prompt_source", "seed");
        cl_h5_attr_write_int(f, "seed", 1);
        H5Fclose(f);
        cl_corpus *a = cl_corpus_load(path_buf);
        if (a) use(a);
        cl_corpus_free(a);
        cl_corpus *b = cl_corpus_open(path_buf);
        if (b) use(b);
        cl_corpus_free(b);
        cl_error_clear();
    }
    remove(path_buf);
    for (int k = 0; k < N_DSETS; k++) free(d[k].data);
    H5Tclose(vt), H5Tclose(st);
    cl_corpus_free(c);
    /* every HDF5 object the opener opened is closed again */
    ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "fuzz_corpus: %zd HDF5 objects left open (files %zd, datasets %zd, groups %zd, attributes %zd)\n",
                open_ids, H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_FILE),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_DATASET),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_GROUP), H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ATTR));
        abort();
    }
    return 0;
}

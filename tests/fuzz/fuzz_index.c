/* libFuzzer harness: the index opener (cl_index_open, include/corpuslens/scan/index.h)
 * and what explain reads through it (rows of every block, mapped chunks, the
 * sketch's rows). Structured: the input does not replace the HDF5 file's
 * bytes (that would fuzz the HDF5 library, not our checks); it chooses the
 * VALUES a hostile index can hold, and the harness writes them as a
 * well-formed HDF5 file: every attribute (sizes, hook, dtype, block range),
 * dataset extents that may disagree with the attributes, the row ids, the
 * vectors' layout (chunk shape, a filter), and an optional sketch with its k,
 * data and checksum (right or wrong). Nothing may crash, leak, read out of
 * bounds or allocate beyond the file's scale (-rss_limit_mb). */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/scan/index.h"

typedef struct {
    const uint8_t *p;
    size_t n, i;
} src;

static unsigned take(src *s, unsigned mod) {
    unsigned v = s->i < s->n ? s->p[s->i++] : 0;
    if (s->i < s->n) v |= (unsigned)s->p[s->i++] << 8;
    return mod ? v % mod : v;
}

static const char *const HOOKS[] = {"mlp_out", "attn_out", "resid_pre", "resid_post", "resid_mid", "embed",
                                    "mlp_pre", "bogus", "blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out",
                                    "blocks.9.hook_attn_out", "blocks.0.attn.hook_pattern", "", "hook_embed"};

static void ds(hid_t f, const char *path, hid_t t, int rank, const hsize_t *d, const hsize_t *chunk, int gzip,
               const void *data) {
    hid_t sp = H5Screate_simple(rank, d, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk) H5Pset_chunk(pl, rank, chunk);
    if (chunk && gzip) H5Pset_deflate(pl, 1);
    hid_t x = H5Dcreate2(f, path, t, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    if (x >= 0 && data) H5Dwrite(x, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (x >= 0) H5Dclose(x);
    H5Pclose(pl), H5Sclose(sp);
}

static int write_index(const char *path, src *s) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    const long long N = 1 + take(s, 40), n_layer = 1 + take(s, 3), C = 8 * (1 + take(s, 2)), V = 1 + take(s, 6);
    const long long Lh = take(s, 4) ? n_layer : 1, S = 1 + take(s, 20);
    const int f32 = take(s, 4) == 0;
    /* attributes: mostly consistent, each one sometimes off */
    long long a[9] = {N, Lh, take(s, 5) == 0 ? 1 : 0, n_layer, C, 1 + take(s, 4), V, S, 1};
    const char *names[9] = {"n_substrings", "n_hook_blocks", "hook_first_block", "n_layer", "n_embd", "L",
                            "vocab_size", "shard_size", "format_version"};
    for (int i = 0; i < 9; i++) {
        long long v = a[i];
        unsigned k = take(s, 24);
        if (k == 1) v = -v;
        else if (k == 2) v = 1LL << (26 + take(s, 8));
        else if (k == 3) v += 1;
        cl_h5_attr_write_int(f, names[i], v);
    }
    cl_h5_attr_write_str(f, "format", take(s, 30) ? CL_INDEX_FORMAT : "other");
    cl_h5_attr_write_int(f, "complete", take(s, 30) ? 1 : 0);
    cl_h5_attr_write_str(f, "dtype", f32 ? "float32" : take(s, 30) ? "float16" : "bfloat16");
    cl_h5_attr_write_str(f, "hook", HOOKS[take(s, sizeof HOOKS / sizeof *HOOKS)]);
    cl_h5_attr_write_str(f, "model_sha256", "0000000000000000000000000000000000000000000000000000000000000000");
    cl_h5_attr_write_str(f, "corpus_h5_sha256", "1111111111111111111111111111111111111111111111111111111111111111");
    /* /vocab */
    uint32_t vocab[8];
    for (int i = 0; i < 8; i++) vocab[i] = 'a' + i;
    if (take(s, 10)) cl_h5_write_vocab(f, "/vocab", vocab, (int)(take(s, 12) ? V : 1 + take(s, 7)));
    /* /substring: a permutation, then a few ids replaced by the input's */
    long long Ns = take(s, 12) ? N : N + (int)take(s, 3) - 1;
    if (Ns < 1) Ns = 1;
    int32_t *sub = malloc((size_t)Ns * sizeof *sub);
    for (long long i = 0; i < Ns; i++) sub[i] = (int32_t)i;
    for (unsigned k = take(s, 4); k > 0; k--) {
        size_t i = take(s, (unsigned)Ns);
        int32_t v = (int32_t)(take(s, 0) | (take(s, 0) << 16));
        sub[i] = take(s, 2) ? v % (int32_t)(N + 2) : v;
    }
    hsize_t dn = (hsize_t)Ns, cn = 4;
    if (take(s, 12)) ds(f, CL_INDEX_SUBSTRING, H5T_STD_I32LE, 1, &dn, take(s, 3) ? NULL : &cn, take(s, 2), sub);
    free(sub);
    /* /vectors [Lh, N, C], chunked [1, S, C] unless the input says otherwise */
    hsize_t dv[3] = {(hsize_t)Lh, (hsize_t)(take(s, 12) ? N : N + 1), (hsize_t)C};
    hsize_t cv[3] = {1, (hsize_t)(take(s, 12) ? S : 1 + take(s, 8)), (hsize_t)C};
    size_t nv = dv[0] * dv[1] * dv[2];
    hid_t ht = cl_index_f16_type();
    if (take(s, 12)) {
        void *vec = calloc(nv, 4);
        for (size_t i = 0; i < nv && i < 256; i++) ((uint16_t *)vec)[i] = (uint16_t)take(s, 0);
        ds(f, CL_INDEX_VECTORS, f32 ? H5T_IEEE_F32LE : ht, 3, dv, take(s, 20) ? cv : NULL, take(s, 20) == 0, vec);
        free(vec);
    }
    /* the sketch */
    if (!f32 && take(s, 3)) {
        hid_t g = H5Gcreate2(f, "/sketch", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        long long k = 1 + take(s, 4);
        hsize_t dp[3] = {(hsize_t)Lh, (hsize_t)k, (hsize_t)C}, dc[3] = {(hsize_t)Lh, (hsize_t)N, (hsize_t)k},
                dr[2] = {(hsize_t)Lh, (hsize_t)(take(s, 12) ? N : N + 1)};
        double *P = calloc(dp[0] * dp[1] * dp[2], sizeof *P);
        uint16_t *co = calloc(dc[0] * dc[1] * dc[2], sizeof *co);
        float *re = calloc(dr[0] * dr[1], sizeof *re);
        for (long long b = 0; b < Lh; b++)
            for (long long j = 0; j < k && j < C; j++) P[(b * k + j) * C + j] = take(s, 20) ? 1.0 : 0.5;
        for (size_t i = 0; i < dc[0] * dc[1] * dc[2] && i < 64; i++) co[i] = (uint16_t)take(s, 0);
        for (size_t i = 0; i < dr[0] * dr[1]; i++) re[i] = (float)take(s, 4);
        ds(g, "proj", H5T_IEEE_F64LE, 3, dp, NULL, 0, P);
        ds(g, "coords", ht, 3, dc, take(s, 8) ? NULL : dc, 0, co);
        ds(g, "resid", H5T_IEEE_F32LE, 2, dr, NULL, 0, re);
        char sha[65];
        cl_sha256 *h = cl_sha256_begin();
        cl_sha256_update(h, P, dp[0] * dp[1] * dp[2] * sizeof *P);
        cl_sha256_update(h, co, dc[0] * dc[1] * dc[2] * sizeof *co);
        cl_sha256_update(h, re, dr[0] * dr[1] * sizeof *re);
        cl_sha256_end(h, sha);
        if (take(s, 6) == 0) sha[take(s, 64)] = 'x';
        if (take(s, 12)) cl_h5_attr_write_str(g, "sha256", sha);
        cl_h5_attr_write_int(g, "k", take(s, 10) ? k : (long long)take(s, 0) - 100);
        cl_h5_attr_write_int(g, "complete", take(s, 10) ? 1 : 0);
        free(P), free(co), free(re);
        H5Gclose(g);
    }
    if (ht >= 0) H5Tclose(ht);
    return H5Fclose(f) < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) {
        cl_h5_quiet();
        setenv("CORPUSLENS_HASH_CACHE", "0", 1);
        snprintf(path, sizeof path, "/tmp/fuzz_index_%ld.h5", (long)getpid());
    }
    src s = {data, size, 0};
    if (write_index(path, &s)) return 0;
    cl_index *ix = take(&s, 2) ? cl_index_open(path) : cl_index_open_no_sketch(path);
    if (!ix) return 0;
    /* what explain reads: every row of every block, the mapped chunks, the sketch's rows */
    float *rows = malloc(ix->N * (size_t)ix->C * sizeof(float));
    void *buf = malloc(ix->N * (size_t)ix->C * 2);
    for (int b = 0; rows && buf && b < ix->Lh; b++) {
        (void)cl_index_read_rows(ix, b, 0, ix->N, rows, buf);
        for (size_t c = 0; c < ix->n_chunks; c++) {
            const uint16_t *h = cl_index_chunk_f16(ix, b, c);
            if (h) {
                size_t r = ix->N - c * ix->chunk_rows < ix->chunk_rows ? ix->N - c * ix->chunk_rows : ix->chunk_rows;
                volatile uint16_t x = h[r * (size_t)ix->C - 1];
                (void)x;
            }
        }
    }
    /* the row ids index arrays of N (explain's next-token counts): out of range is an ASan report */
    unsigned char *seen = calloc(ix->N, 1);
    for (size_t i = 0; seen && i < ix->N; i++) seen[ix->substring[i]]++;
    free(seen);
    if (ix->sketch) {
        const cl_sketch *sk = ix->sketch;
        float *co = malloc(ix->N * (size_t)sk->k * sizeof(float)), *re = malloc(ix->N * sizeof(float));
        float cq[256], rq, q[64] = {1};
        for (int b = 0; co && re && b < sk->Lh; b++) {
            (void)cl_sketch_rows(sk, b, 0, ix->N, co, re);
            if (ix->C <= 64) cl_sketch_query(sk, b, q, cq, &rq);
        }
        free(co), free(re);
    }
    free(rows), free(buf);
    cl_index_close(ix);
    return 0;
}

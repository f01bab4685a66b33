/* The pruning sketch of an activation index: the subspace iteration (shared
 * with the scan's pruning bound) and the reader explain uses. The builder,
 * which reads an index, is index_sketch.c: this file knows nothing of the
 * index. Design and bound: include/corpuslens/scan/sketch.h. Dimensions: N
 * rows, Lh hooked blocks, C channels, k sketch dimensions. */
#include "corpuslens/scan/sketch.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/scan/half.h"
#include "scan/scan_internal.h"

#define ITERS 60

/* Orthonormalise the k columns of Q [C, k] (row-major) in place: modified
 * Gram-Schmidt, twice. A column that vanishes is replaced by a unit vector
 * (deterministic), so the result is always orthonormal. */
static void orthonormalise(double *Q, int C, int k) {
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < k; j++) {
            for (int i = 0; i < j; i++) {
                double d = 0;
                for (int c = 0; c < C; c++) d += Q[c * k + i] * Q[c * k + j];
                for (int c = 0; c < C; c++) Q[c * k + j] -= d * Q[c * k + i];
            }
            double n = 0;
            for (int c = 0; c < C; c++) n += Q[c * k + j] * Q[c * k + j];
            if (!(n > 1e-20)) { /* degenerate: a canonical vector, made orthogonal next pass */
                for (int c = 0; c < C; c++) Q[c * k + j] = c == (j * 7919) % C ? 1.0 : 0.0;
                for (int i = 0; i < j; i++) {
                    double d = 0;
                    for (int c = 0; c < C; c++) d += Q[c * k + i] * Q[c * k + j];
                    for (int c = 0; c < C; c++) Q[c * k + j] -= d * Q[c * k + i];
                }
                n = 0;
                for (int c = 0; c < C; c++) n += Q[c * k + j] * Q[c * k + j];
            }
            n = 1.0 / sqrt(n);
            for (int c = 0; c < C; c++) Q[c * k + j] *= n;
        }
}

/* The top-k eigenvectors of a symmetric C x C matrix M (double, row-major)
 * as the rows of P [k, C], by subspace iteration from a fixed pseudo-random
 * start, and the fraction of M's trace they keep. Used by the sketch (M: the
 * second moments of the index rows) and by the scan's pruning bound (M: the
 * Gram matrix of the prompt vectors), scan_internal.h. */
int scan_top_subspace(const double *M, int C, int k, double *P, double *kept) {
    double *Q = cl_trymalloc((size_t)C * k, sizeof(double), "subspace basis");
    double *Z = cl_trymalloc((size_t)C * k, sizeof(double), "subspace basis");
    if (!Q || !Z) {
        free(Q), free(Z);
        return -1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)C * k; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        Q[i] = (double)(x >> 11) / 9007199254740992.0 - 0.5;
    }
    orthonormalise(Q, C, k);
    for (int it = 0; it < ITERS; it++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, k, C, 1.0, M, C, Q, k, 0.0, Z, k);
        memcpy(Q, Z, (size_t)C * k * sizeof(double));
        orthonormalise(Q, C, k);
    }
    double tr = 0, in = 0;
    for (int i = 0; i < C; i++) tr += M[i * C + i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, k, C, 1.0, M, C, Q, k, 0.0, Z, k);
    for (int i = 0; i < C * k; i++) in += Q[i] * Z[i];
    if (kept) *kept = tr > 0 ? in / tr : 0;
    for (int j = 0; j < k; j++)
        for (int c = 0; c < C; c++) P[(size_t)j * C + c] = Q[c * k + j];
    free(Q), free(Z);
    return 0;
}

static float round_up(double v) {
    float f = (float)v;
    if ((double)f < v) f = nextafterf(f, INFINITY);
    return f;
}

void cl_sketch_free(cl_sketch *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->proj);
    free(s->owned);
    free(s->held_coords);
    free(s->held_resid);
    free(s);
}

/* The file offset of a contiguous dataset of `count` values of file type
 * `want` (size bytes each) inside the file, or HADDR_UNDEF. */
static haddr_t offset_of(hid_t d, hid_t want, size_t size, size_t file_size, size_t count) {
    hid_t dcpl = H5Dget_create_plist(d), t = H5Dget_type(d);
    int ok = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && t >= 0 && want >= 0 && H5Tequal(t, want) > 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (t >= 0) H5Tclose(t);
    haddr_t a = ok ? H5Dget_offset(d) : HADDR_UNDEF;
    if (a == HADDR_UNDEF || a + count * size > file_size) return HADDR_UNDEF;
    return a;
}

/* ---- the checksum (sha256 attribute of /sketch) ---- */

typedef struct {
    hid_t file;
    const cl_sketch *s;
    size_t Lh, N, K, C;
} sum_job;

/* SHA-256 of the sketch's bytes as stored: proj [Lh, k, C] float64 LE,
 * coords [Lh, N, k] float16 LE, resid [Lh, N] float32 LE. Read in pieces
 * (pread at the datasets' offsets), or whole through HDF5 for another
 * layout. */
static int sketch_digest(const char *path, char out[65], void *user) {
    const sum_job *j = user;
    const cl_sketch *s = j->s;
    cl_sha256 *h = cl_sha256_begin();
    if (!h) return -1;
    cl_sha256_update(h, s->proj, j->Lh * j->K * j->C * sizeof(double));
    int rc = 0;
    if (s->fd >= 0) {
        const size_t piece = (size_t)1 << 22;
        unsigned char *buf = cl_trymalloc(piece, 1, "sketch checksum");
        const unsigned long long off[2] = {s->coords_off, s->resid_off};
        const size_t len[2] = {j->Lh * j->N * j->K * 2, j->Lh * j->N * 4};
        rc = buf ? 0 : -1;
        for (int d = 0; !rc && d < 2; d++)
            for (size_t o = 0; !rc && o < len[d]; o += piece) {
                size_t n = len[d] - o < piece ? len[d] - o : piece;
                if (cl_pread_exact(s->fd, buf, n, off[d] + o))
                    rc = cl_error("%s: cannot read the sketch: %s", path, cl_pread_reason());
                else cl_sha256_update(h, buf, n);
            }
        free(buf);
    } else {
        hid_t ht = cl_index_f16_type();
        size_t nc = j->Lh * j->N * j->K;
        unsigned char *buf = cl_trymalloc(nc * 2 > j->Lh * j->N * 4 ? nc * 2 : j->Lh * j->N * 4, 1, "sketch checksum");
        hid_t dc = H5Dopen2(j->file, "/sketch/coords", H5P_DEFAULT), dr = H5Dopen2(j->file, "/sketch/resid", H5P_DEFAULT);
        if (!buf || ht < 0 || dc < 0 || dr < 0 || H5Dread(dc, ht, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            rc = cl_error("%s: cannot read /sketch/coords", path);
        else {
            cl_sha256_update(h, buf, nc * 2);
            if (H5Dread(dr, H5T_IEEE_F32LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
                rc = cl_error("%s: cannot read /sketch/resid", path);
            else cl_sha256_update(h, buf, j->Lh * j->N * 4);
        }
        if (ht >= 0) H5Tclose(ht);
        if (dc >= 0) H5Dclose(dc);
        if (dr >= 0) H5Dclose(dr);
        free(buf);
    }
    char dg[65];
    cl_sha256_end(h, dg);
    if (!rc) memcpy(out, dg, 65);
    return rc;
}

int cl_sketch_open(hid_t file, int Lh_, size_t N_, int C_, const char *path, size_t file_size, cl_sketch **out) {
    *out = NULL;
    if (H5Lexists(file, "/sketch", H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(file, "/sketch", H5P_DEFAULT);
    long long k = 0, complete = 0;
    if (g < 0) return cl_error("cannot open /sketch");
    int ok = cl_h5_attr_exists(g, "complete") && !cl_h5_attr_read_int(g, "complete", &complete) && complete == 1;
    if (ok && (!cl_h5_attr_exists(g, "k") || cl_h5_attr_read_int(g, "k", &k) || k < 1 || k > C_ || k > 256)) {
        H5Gclose(g);
        return cl_error("/sketch: attribute k is missing or outside 1..%d", C_ < 256 ? C_ : 256);
    }
    H5Gclose(g);
    if (!ok) return 0; /* an interrupted --add-sketch: ignored, every row is read */
    const size_t N = N_, Lh = (size_t)Lh_, C = (size_t)C_, K = (size_t)k;
    hsize_t d[8];
    if (cl_h5_shape(file, "/sketch/proj", d) != 3 || d[0] != Lh || d[1] != K || d[2] != C ||
        cl_h5_shape(file, "/sketch/coords", d) != 3 || d[0] != Lh || d[1] != N || d[2] != K ||
        cl_h5_shape(file, "/sketch/resid", d) != 2 || d[0] != Lh || d[1] != N)
        return cl_error("/sketch: datasets missing or of the wrong shape for k = %lld", k);
    cl_sketch *s = cl_trycalloc(1, sizeof *s, "sketch");
    if (!s) return -1;
    s->fd = -1;
    s->k = (int)k, s->Lh = (int)Lh, s->C = (int)C, s->N = N;
    s->slack = 2.0 * (double)(C + K + 8) * ldexp(1.0, -24) + 2e-6 + 1.01 * ldexp(1.0, -11) + (double)K * ldexp(1.0, -24);
    hsize_t dp[3] = {Lh, K, C};
    s->proj = cl_trymalloc(Lh * K * C, sizeof(double), "sketch projection");
    if (!s->proj || cl_h5_read_exact(file, "/sketch/proj", H5T_NATIVE_DOUBLE, 3, dp, s->proj)) goto fail;
    hid_t dc = H5Dopen2(file, "/sketch/coords", H5P_DEFAULT), dr = H5Dopen2(file, "/sketch/resid", H5P_DEFAULT);
    hid_t ht = cl_index_f16_type();
    haddr_t oc = dc >= 0 ? offset_of(dc, ht, 2, file_size, Lh * N * K) : HADDR_UNDEF;
    haddr_t orr = dr >= 0 ? offset_of(dr, H5T_IEEE_F32LE, 4, file_size, Lh * N) : HADDR_UNDEF;
    if (ht >= 0) H5Tclose(ht);
    if (dc >= 0) H5Dclose(dc);
    if (dr >= 0) H5Dclose(dr);
    if (oc != HADDR_UNDEF && orr != HADDR_UNDEF) s->fd = open(path, O_RDONLY);
    if (s->fd >= 0) {
        s->coords_off = oc, s->resid_off = orr;
    } else {
        hsize_t dcs[3] = {Lh, N, K}, drs[2] = {Lh, N};
        s->owned = cl_trymalloc(Lh * N * (K + 1), sizeof(float), "sketch coordinates");
        if (!s->owned || cl_h5_read_exact(file, "/sketch/coords", H5T_NATIVE_FLOAT, 3, dcs, s->owned) ||
            cl_h5_read_exact(file, "/sketch/resid", H5T_NATIVE_FLOAT, 2, drs, s->owned + Lh * N * K))
            goto fail;
    }
    /* the projection must be orthonormal (the bound relies on it) */
    for (size_t b = 0; b < Lh; b++)
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j <= i; j++) {
                const double *pi = s->proj + (b * K + i) * C, *pj = s->proj + (b * K + j) * C;
                double dd = 0;
                for (size_t c = 0; c < C; c++) dd += pi[c] * pj[c];
                if (!(fabs(dd - (i == j)) <= 1e-9)) {
                    cl_error("/sketch/proj of block %zu is not orthonormal (row %zu . row %zu = %g)", b, i, j, dd);
                    goto fail;
                }
            }
    /* the checksum written with the sketch: a changed coordinate, residual or
       projection would silently prune rows that belong in the result. Cached
       by the file's identity (hash.h), so only the first open after a change
       reads the whole sketch. */
    {
        char want[80] = "", got[65];
        hid_t gg = H5Gopen2(file, "/sketch", H5P_DEFAULT);
        int has = gg >= 0 && cl_h5_attr_exists(gg, "sha256") && !cl_h5_attr_read_str(gg, "sha256", want, sizeof want);
        if (gg >= 0) H5Gclose(gg);
        if (!has || strlen(want) != 64) {
            cl_error("/sketch has no sha256 attribute (a sketch written before checksums, or tampered with): run "
                     "`corpuslens index --add-sketch %s` to rewrite it",
                     path);
            goto fail;
        }
        sum_job j = {file, s, Lh, N, K, C};
        if (cl_sha256_cached(path, "index-sketch-v1", sketch_digest, &j, got, NULL)) goto fail;
        memcpy(s->sha256, want, 65);
        if (strcmp(got, want)) {
            cl_error("/sketch does not match its checksum (sha256 %.16s..., the data %.16s...): the sketch is corrupt; "
                     "rewrite it with `corpuslens index --add-sketch %s`",
                     want, got, path);
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    cl_sketch_free(s);
    return -1;
}

int cl_sketch_hold(cl_sketch *s) {
    if (s->owned || s->held_coords) return 0;
    const size_t nc = (size_t)s->Lh * s->N * (size_t)s->k, nr = (size_t)s->Lh * s->N;
    uint16_t *co = cl_trymalloc(nc, sizeof *co, "sketch coordinates (held)");
    float *re = cl_trymalloc(nr, sizeof *re, "sketch residuals (held)");
    cl_sha256 *h = co && re ? cl_sha256_begin() : NULL;
    int rc = h ? 0 : -1;
    if (!rc) cl_sha256_update(h, s->proj, (size_t)s->Lh * (size_t)s->k * (size_t)s->C * sizeof(double));
    /* in pieces, each hashed as read: the bytes kept are the bytes checked */
    const size_t piece = (size_t)1 << 24;
    unsigned char *dst[2] = {(unsigned char *)co, (unsigned char *)re};
    const unsigned long long off[2] = {s->coords_off, s->resid_off};
    const size_t len[2] = {nc * 2, nr * 4};
    for (int d = 0; !rc && d < 2; d++)
        for (size_t o = 0; !rc && o < len[d]; o += piece) {
            size_t n = len[d] - o < piece ? len[d] - o : piece;
            if (cl_pread_exact(s->fd, dst[d] + o, n, off[d] + o))
                rc = cl_error("cannot read the sketch: %s", cl_pread_reason());
            else cl_sha256_update(h, dst[d] + o, n);
        }
    char got[65] = "";
    if (h) cl_sha256_end(h, got);
    if (!rc && strcmp(got, s->sha256))
        rc = cl_error("/sketch changed since it was checked (sha256 %.16s..., now %.16s...): reopen the index", s->sha256,
                      got);
    if (rc) {
        free(co), free(re);
        return -1;
    }
    s->held_coords = co, s->held_resid = re;
    return 0;
}

int cl_sketch_rows(const cl_sketch *s, int b, size_t r0, size_t n, float *co, float *re) {
    const size_t N = s->N, k = (size_t)s->k, i0 = (size_t)b * N + r0;
    if (b < 0 || b >= s->Lh || r0 + n > N) return cl_error("sketch rows %zu..%zu of block %d out of range", r0, r0 + n, b);
    if (s->held_coords) {
        cl_f16_to_f32_n(s->held_coords + i0 * k, co, n * k);
        memcpy(re, s->held_resid + i0, n * sizeof(float));
        return 0;
    }
    if (s->owned) {
        memcpy(co, s->owned + i0 * k, n * k * sizeof(float));
        memcpy(re, s->owned + (size_t)s->Lh * N * k + i0, n * sizeof(float));
        return 0;
    }
    uint16_t *h = cl_trymalloc(n * k, sizeof(uint16_t), "sketch rows");
    if (!h) return -1;
    if (cl_pread_exact(s->fd, h, n * k * sizeof(uint16_t), s->coords_off + i0 * k * sizeof(uint16_t)) ||
        cl_pread_exact(s->fd, re, n * sizeof(float), s->resid_off + i0 * sizeof(float))) {
        free(h);
        return cl_error("cannot read the sketch rows %zu..%zu of block %d: %s", r0, r0 + n, b, cl_pread_reason());
    }
    cl_f16_to_f32_n(h, co, n * k);
    free(h);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the sketch is read as little-endian float32"
#endif
    return 0;
}

void cl_sketch_query(const cl_sketch *s, int b, const float *q, float *cq, float *rq) {
    const int C = s->C, k = s->k;
    const double *P = s->proj + (size_t)b * k * C;
    double q2 = 0, c2 = 0;
    for (int c = 0; c < C; c++) q2 += (double)q[c] * q[c];
    for (int j = 0; j < k; j++) {
        double d = 0;
        for (int c = 0; c < C; c++) d += P[(size_t)j * C + c] * q[c];
        c2 += d * d;
        cq[j] = (float)d;
    }
    *rq = round_up(sqrt(q2 - c2 > 0 ? q2 - c2 : 0));
}

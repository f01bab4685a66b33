/* The pruning sketch of an activation index: PCA projection, coordinates and
 * residual norms of every row, written into index.h5 and read back for
 * explain. Design and bound: include/corpuslens/scan/sketch.h. Dimensions: N
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
#include "corpuslens/h5/h5util.h"
#include "scan/scan_internal.h"

#define SAMPLE_CHUNKS 16
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

/* P [k, C] of one block: the top-k eigenvectors of M = sum over the sample
 * of a a^T. Returns the variance kept. */
static int block_projection(const cl_index *ix, int b, int k, double *P, double *kept, float *rows, void *hbuf) {
    const int C = ix->C;
    const size_t cr = ix->chunk_rows, nch = (ix->N + cr - 1) / cr;
    const size_t step = nch > SAMPLE_CHUNKS ? nch / SAMPLE_CHUNKS : 1;
    float *Mf = cl_trycalloc((size_t)C * C, sizeof(float), "sketch moments");
    double *M = cl_trymalloc((size_t)C * C, sizeof(double), "sketch moments");
    int rc = -1;
    if (!Mf || !M) goto done;
    for (size_t c = 0; c < nch; c += step) {
        size_t r0 = c * cr, n = ix->N - r0 < cr ? ix->N - r0 : cr;
        if (cl_index_read_rows(ix, b, r0, n, rows, hbuf)) goto done;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, C, (blasint)n, 1.0f, rows, C, 1.0f, Mf, C);
    }
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) M[i * C + j] = i <= j ? Mf[i * C + j] : Mf[j * C + i];
    rc = scan_top_subspace(M, C, k, P, kept);
done:
    free(Mf), free(M);
    return rc;
}

static float round_up(double v) {
    float f = (float)v;
    if ((double)f < v) f = nextafterf(f, INFINITY);
    return f;
}

/* coords [n, k] and residual norms [n] of rows [n, C] (float32, exact halves) */
static void project_rows(const float *rows, size_t n, int C, int k, const double *P, double *X, double *Y,
                         uint16_t *coords, float *resid) {
    for (size_t i = 0; i < n * (size_t)C; i++) X[i] = rows[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, k, C, 1.0, X, C, P, C, 0.0, Y, k);
    for (size_t s = 0; s < n; s++) {
        double a2 = 0, c2 = 0;
        for (int c = 0; c < C; c++) a2 += X[s * C + c] * X[s * C + c];
        for (int j = 0; j < k; j++) c2 += Y[s * k + j] * Y[s * k + j], coords[s * k + j] = cl_f32_to_f16((float)Y[s * k + j]);
        resid[s] = round_up(sqrt(a2 - c2 > 0 ? a2 - c2 : 0));
    }
}

static hid_t contiguous(hid_t g, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    hid_t d = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (d < 0) cl_error("cannot create /sketch/%s", name);
    return d;
}

int cl_index_add_sketch(const char *path, int k, cl_sketch_stats *st) {
    memset(st, 0, sizeof *st);
    cl_index *ix = cl_index_open(path);
    if (!ix) return -1;
    const int C = ix->C, Lh = ix->Lh;
    const size_t N = ix->N, cr = ix->chunk_rows;
    if (k == 0) k = C / 4 < CL_SKETCH_DEFAULT_DIM ? (C / 4 > 0 ? C / 4 : 1) : CL_SKETCH_DEFAULT_DIM;
    if (ix->dtype != CL_INDEX_F16) {
        cl_index_close(ix);
        return cl_error("%s: only float16 indexes get a sketch (this one is float32)", path);
    }
    if (k < 1 || k > C || k > 256) {
        cl_index_close(ix);
        return cl_error("sketch dimension %d: give 1..%d (n_embd, at most 256)", k, C < 256 ? C : 256);
    }
    st->k = k, st->Lh = Lh;
    int rc = -1;
    float *rows = cl_trymalloc(cr * C, sizeof(float), "index rows");
    void *hbuf = cl_trymalloc(cr * C, 2, "index rows");
    double *X = cl_trymalloc(cr * C, sizeof(double), "sketch rows");
    double *Y = cl_trymalloc(cr * k, sizeof(double), "sketch rows");
    double *P = cl_trymalloc((size_t)Lh * k * C, sizeof(double), "sketch projection");
    uint16_t *coords = cl_trymalloc((size_t)Lh * N * k, sizeof(uint16_t), "sketch coordinates");
    float *resid = cl_trymalloc((size_t)Lh * N, sizeof(float), "sketch residuals");
    hid_t f = H5I_INVALID_HID, g = H5I_INVALID_HID, ht = cl_index_f16_type();
    if (ht < 0 || !rows || !hbuf || !X || !Y || !P || !coords || !resid) goto done;
    for (int b = 0; b < Lh; b++) {
        double *Pb = P + (size_t)b * k * C;
        if (block_projection(ix, b, k, Pb, &st->variance_kept[b], rows, hbuf)) goto done;
        for (size_t r0 = 0; r0 < N; r0 += cr) {
            size_t n = N - r0 < cr ? N - r0 : cr;
            if (cl_index_read_rows(ix, b, r0, n, rows, hbuf)) goto done;
            project_rows(rows, n, C, k, Pb, X, Y, coords + ((size_t)b * N + r0) * k, resid + (size_t)b * N + r0);
        }
    }
    cl_index_close(ix);
    ix = NULL;
    /* write: the group is replaced whole; `complete` last */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        cl_error("cannot open %s for writing", path);
        goto done;
    }
    if (H5Lexists(f, "/sketch", H5P_DEFAULT) > 0 && H5Ldelete(f, "/sketch", H5P_DEFAULT) < 0) {
        cl_error("cannot replace /sketch");
        goto done;
    }
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    g = H5Gcreate2(f, "/sketch", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    if (g < 0) {
        cl_error("cannot create /sketch");
        goto done;
    }
    hsize_t dp[3] = {(hsize_t)Lh, (hsize_t)k, (hsize_t)C}, dc[3] = {(hsize_t)Lh, N, (hsize_t)k},
            dr[2] = {(hsize_t)Lh, N}, dv = (hsize_t)Lh;
    struct {
        const char *name;
        hid_t ft, mt;
        int rank;
        const hsize_t *dims;
        const void *data;
    } ds[4] = {{"proj", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, dp, P},
               {"coords", ht, ht, 3, dc, coords},
               {"resid", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dr, resid},
               {"variance_kept", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &dv, st->variance_kept}};
    for (int i = 0; i < 4; i++) {
        hid_t d = contiguous(g, ds[i].name, ds[i].ft, ds[i].rank, ds[i].dims);
        if (d < 0) goto done;
        herr_t e = H5Dwrite(d, ds[i].mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds[i].data);
        if (e < 0) cl_h5_error_in(f, "cannot write /sketch/%s", ds[i].name);
        if (H5Dclose(d) < 0 && e >= 0) e = cl_h5_error_in(f, "cannot write /sketch/%s", ds[i].name);
        if (e < 0) goto done;
    }
    if (cl_h5_attr_write_int(g, "k", k) || cl_h5_attr_write_int(g, "complete", 1)) goto done;
    rc = 0;
done:
    if (ht >= 0) H5Tclose(ht);
    if (g >= 0 && H5Gclose(g) < 0 && rc == 0) rc = cl_h5_error_in(f, "cannot write /sketch");
    if (f >= 0 && cl_h5_close_rw(f, path)) rc = -1;
    cl_index_close(ix);
    free(rows), free(hbuf), free(X), free(Y), free(P), free(coords), free(resid);
    if (rc == 0) {
        struct stat sb;
        if (!stat(path, &sb)) st->bytes = (size_t)sb.st_size;
    } else cl_error_prefix("%s: sketch: ", path);
    return rc;
}

void cl_sketch_free(cl_sketch *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->proj);
    free(s->owned);
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

int cl_sketch_open(hid_t file, const cl_index *ix, const char *path, size_t file_size, cl_sketch **out) {
    *out = NULL;
    if (H5Lexists(file, "/sketch", H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(file, "/sketch", H5P_DEFAULT);
    long long k = 0, complete = 0;
    if (g < 0) return cl_error("cannot open /sketch");
    int ok = cl_h5_attr_exists(g, "complete") && !cl_h5_attr_read_int(g, "complete", &complete) && complete == 1;
    if (ok && (!cl_h5_attr_exists(g, "k") || cl_h5_attr_read_int(g, "k", &k) || k < 1 || k > ix->C || k > 256)) {
        H5Gclose(g);
        return cl_error("/sketch: attribute k is missing or outside 1..%d", ix->C);
    }
    H5Gclose(g);
    if (!ok) return 0; /* an interrupted --add-sketch: ignored, every row is read */
    const size_t N = ix->N, Lh = (size_t)ix->Lh, C = (size_t)ix->C, K = (size_t)k;
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
    *out = s;
    return 0;
fail:
    cl_sketch_free(s);
    return -1;
}

int cl_sketch_rows(const cl_sketch *s, int b, size_t r0, size_t n, float *co, float *re) {
    const size_t N = s->N, k = (size_t)s->k, i0 = (size_t)b * N + r0;
    if (b < 0 || b >= s->Lh || r0 + n > N) return cl_error("sketch rows %zu..%zu of block %d out of range", r0, r0 + n, b);
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

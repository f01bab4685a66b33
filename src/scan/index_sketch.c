/* `index --add-sketch` and the sketch of a new index: reads the index's
 * rows (index.h) and writes /sketch (layout and bound:
 * include/corpuslens/scan/sketch.h). Dimensions: N rows, Lh hooked blocks, C
 * channels, k sketch dimensions. */
#include "corpuslens/scan/index.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/scan/sketch.h"
#include "scan/scan_internal.h"

#define SAMPLE_CHUNKS 16

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

/* v rounded up to float32 */
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
    cl_index *ix = cl_index_open_no_sketch(path); /* the sketch is replaced, whatever it holds */
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
    /* the checksum explain verifies at open (sketch.h): the datasets' bytes as
       stored (little-endian: this host's order, checked in sketch.c) */
    char sha[65];
    cl_sha256 *h = cl_sha256_begin();
    if (!h) goto done;
    cl_sha256_update(h, P, (size_t)Lh * k * C * sizeof(double));
    cl_sha256_update(h, coords, (size_t)Lh * N * k * sizeof(uint16_t));
    cl_sha256_update(h, resid, (size_t)Lh * N * sizeof(float));
    cl_sha256_end(h, sha);
    if (cl_h5_attr_write_int(g, "k", k) || cl_h5_attr_write_str(g, "sha256", sha) ||
        cl_h5_attr_write_int(g, "complete", 1))
        goto done;
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


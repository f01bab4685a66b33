/* The pruning sketch of an activation index (index.h): per hooked block b a
 * k-dim orthonormal projection P_b (the top-k principal directions of the
 * block's rows, uncentred), and for every row a its coordinates P_b a and
 * the norm of its residual a - P_b^T P_b a. For a query q (unit, float32):
 *
 *   a.q = (P a).(P q) + r_a.r_q <= (P a).(P q) + |r_a| |r_q|
 *
 * so a row whose bound (computed in float32) plus `slack` stays below the
 * smallest similarity any rule of explain needs (the block's threshold minus
 * 1e-5, the soft kernel's floor, the K-th best similarity known so far)
 * cannot change the result and is never read; the rows that survive get the
 * same exact dot product as without the sketch. Exactness: the stored vectors
 * are the float16 rows widened exactly; P is orthonormal in double; the
 * coordinates are float16 (rounded to nearest: each off by at most 2^-11 of
 * itself, or 2^-25 below the normal range, so the dot product with Pq by at
 * most 2^-11 |Pa||Pq| + k 2^-25), the residual norms float32 rounded up;
 * slack = 2 (C + k + 8) 2^-24 + 2e-6 + 1.01 2^-11 + k 2^-24 covers that and
 * the float32 rounding of the bound (k + 2 terms) and of explain's exact dot
 * product (C terms, |a| <= 1 + 2^-11), the float32 terms with a factor 2 to
 * spare (slack = 5.5e-4 for C = 384, k = 32).
 *
 * ---- in index.h5 (group /sketch, written after the vectors) ----
 *   attributes: k, sha256, complete (1, written last)
 *   sha256: hex SHA-256 of proj, coords and resid as stored (little-endian
 *     float64, float16, float32, in that order). A tampered or corrupt sketch
 *     would prune rows silently, so the reader verifies it (the result cached
 *     by the file's identity, hash.h) and refuses a mismatch, or a sketch
 *     without it (`index --add-sketch` rewrites it); docs/index-integrity.md.
 *   /sketch/proj    [Lh, k, C] float64: the rows of P_b
 *   /sketch/coords  [Lh, N, k] float16 (IEEE, little-endian), contiguous (read
 *                   by explain with pread at its file offset)
 *   /sketch/resid   [Lh, N]    float32, contiguous, rounded up
 *   /sketch/variance_kept [Lh] float64: the fraction of the rows' squared
 *                   norm in the subspace (over the sample; information only)
 * Size: N Lh (2 k + 4) bytes: 351 MB for TinyShakespeare L=10 with k = 32
 * (9 % of the float16 vectors).
 * Only float16 indexes get a sketch (explain's mapped path reads float16).
 * PCA: the second-moment matrix of every (n_chunks/16)-th chunk (deterministic),
 * 60 steps of subspace iteration from a fixed start, Gram-Schmidt twice.
 */
#ifndef CORPUSLENS_SCAN_SKETCH_H
#define CORPUSLENS_SCAN_SKETCH_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define CL_SKETCH_DEFAULT_DIM 32
/* "no --sketch-dim given" (then the default: min(CL_SKETCH_DEFAULT_DIM, C/4));
 * distinct from every dimension a user can give, 32 included */
#define CL_SKETCH_DIM_UNSET (-1)

typedef struct cl_sketch cl_sketch;
struct cl_sketch {
    int k, Lh, C;
    size_t N;
    double *proj;        /* [Lh, k, C] */
    /* coords [Lh, N, k] (float16) and resid [Lh, N]: read from the file in
       pieces (pread at their offsets: no page faults over a mapping), or,
       when the datasets are not plain little-endian contiguous, held in
       `owned` as float32 */
    int fd;
    unsigned long long coords_off, resid_off;
    float *owned; /* [Lh, N, k] then [Lh, N], or NULL */
    /* held in memory (cl_sketch_hold: a server that keeps the index warm):
       coords [Lh, N, k] float16 as stored and resid [Lh, N], read once and
       checked against the sketch's SHA-256; NULL otherwise */
    uint16_t *held_coords;
    float *held_resid;
    char sha256[65]; /* the checksum verified at open */
    double slack;
};

/* Reader (cl_index_open calls it): the sketch in the open HDF5 file `file`
 * (at path, file_size bytes) of an index of Lh blocks, N rows, C channels.
 * *out = NULL when the file has no complete sketch. 0 or -1 (a sketch that is
 * present but broken). Knows nothing of the index beyond those numbers. */
int cl_sketch_open(hid_t file, int Lh, size_t N, int C, const char *path, size_t file_size, cl_sketch **out);
void cl_sketch_free(cl_sketch *s);

/* Read the coordinates and residuals once into memory (held_coords,
 * held_resid), checking their bytes against the SHA-256 verified at open, so
 * that a query reads no file for them. A sketch already in memory (owned):
 * nothing to do. 0 or -1 (message; the sketch is unchanged). */
int cl_sketch_hold(cl_sketch *s);

/* Rows [r0, r0+n) of block b: co[n, k] (widened exactly), re[n]. 0 or -1 (message). */
int cl_sketch_rows(const cl_sketch *s, int b, size_t r0, size_t n, float *co, float *re);

/* The query's coordinates cq[k] (float32, rounded) and its residual norm
 * (rounded up) in block b's projection. */
void cl_sketch_query(const cl_sketch *s, int b, const float *q, float *cq, float *rq);

#endif

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include "corpuslens/h5/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/utf8.h"

void cl_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char inner[512], os[256];
} cause_walk;

static herr_t cause_cb(unsigned n, const H5E_error2_t *e, void *data) {
    cause_walk *w = data;
    const char *d = e && e->desc ? e->desc : "";
    if (n == 0) snprintf(w->inner, sizeof w->inner, "%s", d);
    /* HDF5's file drivers record errno as "..., error message = 'REASON', ..." */
    const char *m = strstr(d, "error message = '");
    if (m && !w->os[0]) {
        m += strlen("error message = '");
        const char *q = strchr(m, '\'');
        size_t len = q ? (size_t)(q - m) : strlen(m);
        if (len >= sizeof w->os) len = sizeof w->os - 1;
        memcpy(w->os, m, len);
        w->os[len] = '\0';
    }
    return 0;
}

void cl_h5_cause(char *buf, size_t n) {
    cause_walk w = {"", ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_cb, &w);
    snprintf(buf, n, "%s", w.os[0] ? w.os : w.inner);
}

int cl_h5_error(const char *fmt, ...) {
    char cause[512], msg[1536];
    cl_h5_cause(cause, sizeof cause);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cause[0]) return cl_error("%s: %s", msg, cause);
    return cl_error("%s", msg);
}

int cl_h5_error_in(hid_t obj, const char *fmt, ...) {
    char cause[512], msg[1536], name[1024] = "";
    cl_h5_cause(cause, sizeof cause); /* before any other HDF5 call */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (obj >= 0 && H5Fget_name(obj, name, sizeof name) < 0) name[0] = '\0';
    H5Eclear2(H5E_DEFAULT);
    return cl_error("%s%s%s%s%s", msg, name[0] ? " in " : "", name, cause[0] ? ": " : "", cause);
}

/* HDF5 1.10 cannot close a file whose flush failed ("slist already
 * enabled?"): the file stays open, half torn down, and the library crashes
 * closing it again at exit. So a file is never flushed onto a full disk:
 * - a file that failed is discarded: its blocks are freed (truncated to 0)
 *   before H5Fclose, whose flush then finds room;
 * - a file that succeeded gets its blocks reserved (fallocate with FALLOC_FL_KEEP_SIZE, up to its
 *   size plus a margin for the metadata written at close) before H5Fclose;
 *   a reservation refused for want of space discards it instead. HDF5
 *   writes within the reserved blocks; the size is unchanged.
 * Our writers create files with the default (sec2) driver: the handle is an
 * fd. A file that still cannot be closed is counted (cl_h5_stuck). */
static int stuck = 0;

int cl_h5_stuck(void) { return stuck; }

static int file_fd(hid_t f) {
    void *h = NULL;
    if (H5Fget_vfd_handle(f, H5P_DEFAULT, &h) < 0 || !h) return -1;
    return *(int *)h;
}

static void discard(hid_t f) {
    int fd = file_fd(f);
    if (fd >= 0 && ftruncate(fd, 0)) { /* nothing more can be freed */
    }
    if (H5Fclose(f) < 0) stuck++;
    H5Eclear2(H5E_DEFAULT);
}

hid_t cl_h5_dcpl(void) {
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(p, 0);
    return p;
}

hid_t cl_h5_create(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        cl_h5_error("cannot create %s", path);
        remove(path); /* H5Fcreate may leave an empty file behind */
    }
    return f;
}

int cl_h5_finish(hid_t f, const char *path, int failed) {
    if (f < 0) {
        if (failed && path) remove(path);
        return failed ? -1 : 0;
    }
    if (!failed) {
        int fd = file_fd(f);
        hsize_t size = 0;
        if (fd >= 0 && H5Fget_filesize(f, &size) >= 0) {
            /* blocks only, the size stays (where the file system cannot, no reservation) */
            int e = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size + (1 << 20)) ? errno : 0;
            if (e == ENOSPC || e == EDQUOT) failed = cl_error("cannot write %s: %s", path ? path : "a file", strerror(e));
        }
    }
    if (!failed) {
        if (H5Fclose(f) >= 0) {
            /* give back the reserved blocks past the end: shrinking frees them */
            struct stat st;
            if (path && !stat(path, &st) && !truncate(path, st.st_size + 1) && truncate(path, st.st_size)) {
            }
            return 0;
        }
        cl_h5_error("cannot finish writing %s", path ? path : "a file");
        stuck++;
        if (path) remove(path);
        return -1;
    }
    discard(f);
    if (path) remove(path);
    return -1;
}

int cl_h5_close_rw(hid_t f, const char *path) {
    const char *name = path ? path : "a file";
    int rc = 0, fd = file_fd(f);
    hsize_t size = 0;
    if (fd >= 0 && H5Fget_filesize(f, &size) >= 0) {
        int e = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size + (1 << 20)) ? errno : 0;
        if (e == ENOSPC || e == EDQUOT) rc = cl_error("cannot write %s: %s", name, strerror(e));
    }
    if (H5Fclose(f) < 0) {
        if (!rc) rc = cl_h5_error("cannot finish writing %s", name);
        stuck++;
        H5Eclear2(H5E_DEFAULT);
    }
    if (!rc && path) { /* give back the reserved blocks past the end */
        struct stat st;
        if (!stat(path, &st) && !truncate(path, st.st_size + 1) && truncate(path, st.st_size)) {
        }
    }
    return rc ? -1 : 0;
}

int cl_h5_commit(hid_t f, const char *tmp, const char *path, int failed) {
    if (cl_h5_finish(f, tmp, failed) || failed) return -1;
    return cl_commit_file(tmp, path);
}

hid_t cl_h5_open_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cl_error("cannot open %s: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    fclose(f);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        cl_error("cannot open %s: not an HDF5 file", path);
        return H5I_INVALID_HID;
    }
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) cl_h5_error("cannot open %s: HDF5 could not read it (corrupt or truncated?)", path);
    return id;
}

int cl_h5_attr_exists(hid_t obj, const char *name) { return H5Aexists(obj, name) > 0; }

static int attr_write(hid_t obj, const char *name, hid_t type, hid_t space, const void *v) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return cl_h5_error_in(obj, "cannot create attribute %s", name);
    herr_t st = H5Awrite(a, type, v);
    int rc = st < 0 ? cl_h5_error_in(obj, "cannot write attribute %s", name) : 0;
    if (H5Aclose(a) < 0 && !rc) rc = cl_h5_error_in(obj, "cannot write attribute %s", name);
    return rc;
}

int cl_h5_attr_write_int(hid_t obj, const char *name, long long v) {
    hid_t s = H5Screate(H5S_SCALAR);
    int rc = attr_write(obj, name, H5T_NATIVE_LLONG, s, &v);
    H5Sclose(s);
    return rc;
}

int cl_h5_attr_write_double(hid_t obj, const char *name, double v) {
    hid_t s = H5Screate(H5S_SCALAR);
    int rc = attr_write(obj, name, H5T_NATIVE_DOUBLE, s, &v);
    H5Sclose(s);
    return rc;
}

int cl_h5_attr_write_doubles(hid_t obj, const char *name, const double *v, size_t n) {
    hsize_t d = n;
    hid_t s = H5Screate_simple(1, &d, NULL);
    int rc = attr_write(obj, name, H5T_NATIVE_DOUBLE, s, v);
    H5Sclose(s);
    return rc;
}

int cl_h5_attr_write_str(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) ? strlen(v) : 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t s = H5Screate(H5S_SCALAR);
    int rc = attr_write(obj, name, t, s, strlen(v) ? v : "");
    H5Sclose(s);
    H5Tclose(t);
    return rc;
}

static hid_t attr_open(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) {
        cl_error("attribute '%s' is missing", name);
        return H5I_INVALID_HID;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) cl_error("cannot open attribute '%s'", name);
    return a;
}

int cl_h5_attr_read_int(hid_t obj, const char *name, long long *v) {
    hid_t a = attr_open(obj, name);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_INTEGER && H5Aget_storage_size(a) <= 8;
    H5Tclose(t);
    herr_t st = ok ? H5Aread(a, H5T_NATIVE_LLONG, v) : -1;
    H5Aclose(a);
    if (st < 0) return cl_error("attribute '%s' is not an integer", name);
    return 0;
}

int cl_h5_attr_read_double(hid_t obj, const char *name, double *v) {
    hid_t a = attr_open(obj, name);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    herr_t st = (c == H5T_FLOAT || c == H5T_INTEGER) ? H5Aread(a, H5T_NATIVE_DOUBLE, v) : -1;
    H5Aclose(a);
    if (st < 0) return cl_error("attribute '%s' is not a number", name);
    return 0;
}

int cl_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t n) {
    hid_t a = attr_open(obj, name);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(t) != H5T_STRING) {
        rc = cl_error("attribute '%s' is not a string", name);
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s) {
            rc = cl_error("cannot read attribute '%s'", name);
        } else {
            snprintf(buf, n, "%s", s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(t);
        char *tmp = cl_trymalloc(sz + 1, 1, "attribute");
        if (!tmp) {
            rc = -1;
        } else {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz);
            H5Tset_strpad(mt, H5T_STR_NULLPAD);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (H5Aread(a, mt, tmp) < 0) rc = cl_error("cannot read attribute '%s'", name);
            tmp[sz] = '\0';
            if (!rc) snprintf(buf, n, "%s", tmp);
            H5Tclose(mt);
            free(tmp);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

int cl_h5_exists(hid_t file, const char *path) {
    /* H5Lexists needs every intermediate link to exist: walk the path. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
        *p = '/';
    }
    return H5Lexists(file, buf, H5P_DEFAULT) > 0;
}

int cl_h5_write(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims,
                const void *data) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(rank, dims, NULL), dcpl = cl_h5_dcpl();
    hid_t d = H5Dcreate2(file, path, memtype, s, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    int rc = 0;
    if (d < 0) {
        rc = cl_h5_error_in(file, "cannot create dataset %s", path);
    } else {
        if (H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = cl_h5_error_in(file, "cannot write dataset %s", path);
        if (H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(file, "cannot write dataset %s", path);
    }
    H5Sclose(s);
    H5Pclose(lcpl);
    return rc;
}

static unsigned long long io_chunks, io_bytes;

void cl_h5_io_stats(unsigned long long *chunks, unsigned long long *bytes) {
    if (chunks) *chunks = io_chunks;
    if (bytes) *bytes = io_bytes;
}

int cl_h5_read_rows(hid_t f, const char *path, hid_t memtype, size_t p0, size_t n, void *buf) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return cl_error("cannot open %s", path);
    hid_t fs = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(fs);
    if (r < 1 || r > 8) {
        H5Sclose(fs);
        H5Dclose(d);
        return cl_error("%s: rank %d, expected 1..8", path, r);
    }
    hsize_t dims[8], start[8] = {0}, count[8];
    H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int i = 0; i < r; i++) count[i] = dims[i];
    start[0] = p0;
    count[0] = n;
    herr_t st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(r, count, NULL);
    if (st >= 0) st = H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf);
    hid_t dcpl = st >= 0 && n > 0 ? H5Dget_create_plist(d) : -1;
    hsize_t ch[8];
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, r, ch) == r && ch[0] > 0) {
        /* the chunks the rows lie in (stats: rows whole, so chunks along the first dimension) */
        for (hsize_t c = p0 / ch[0]; c <= (p0 + n - 1) / ch[0]; c++) {
            hsize_t off[8] = {0}, cs = 0;
            off[0] = c * ch[0];
            if (H5Dget_chunk_storage_size(d, off, &cs) >= 0) io_chunks++, io_bytes += cs;
        }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    if (st < 0) return cl_error("cannot read %s rows %zu..%zu", path, p0, p0 + n);
    return 0;
}

int cl_h5_shape(hid_t file, const char *path, hsize_t *dims) {
    if (!cl_h5_exists(file, path)) return cl_error("dataset %s is missing", path);
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) return cl_error("%s is not a dataset", path);
    hid_t s = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(s);
    if (rank > 8) rank = cl_error("dataset %s has rank %d (> 8)", path, rank);
    else if (rank >= 0) H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s);
    H5Dclose(d);
    return rank;
}

static void shape_str(char *buf, size_t n, int rank, const hsize_t *dims) {
    size_t k = snprintf(buf, n, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Undo HDF5's shuffle filter for n elements of es = 4 or 8 bytes: byte b of
 * element j is in[b * nel + j] (nel: the elements of the whole chunk). */
static void unshuffle48(const unsigned char *in, size_t nel, size_t n, size_t es, unsigned char *dst) {
    size_t j = 0;
#ifdef __SSE2__
    if (es == 4)
        for (; j + 16 <= n; j += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(in + j)), b = _mm_loadu_si128((const __m128i *)(in + nel + j)),
                    c = _mm_loadu_si128((const __m128i *)(in + 2 * nel + j)),
                    d = _mm_loadu_si128((const __m128i *)(in + 3 * nel + j));
            __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b), cd0 = _mm_unpacklo_epi8(c, d),
                    cd1 = _mm_unpackhi_epi8(c, d);
            _mm_storeu_si128((__m128i *)(dst + 4 * j), _mm_unpacklo_epi16(ab0, cd0));
            _mm_storeu_si128((__m128i *)(dst + 4 * j + 16), _mm_unpackhi_epi16(ab0, cd0));
            _mm_storeu_si128((__m128i *)(dst + 4 * j + 32), _mm_unpacklo_epi16(ab1, cd1));
            _mm_storeu_si128((__m128i *)(dst + 4 * j + 48), _mm_unpackhi_epi16(ab1, cd1));
        }
    else
        for (; j + 16 <= n; j += 16) {
            __m128i p[8], q[8], r[8];
            for (int b = 0; b < 8; b++) p[b] = _mm_loadu_si128((const __m128i *)(in + (size_t)b * nel + j));
            for (int b = 0; b < 4; b++) { /* bytes -> 16-bit pairs (b, b+1) of elements 0-7, 8-15 */
                q[2 * b] = _mm_unpacklo_epi8(p[2 * b], p[2 * b + 1]);
                q[2 * b + 1] = _mm_unpackhi_epi8(p[2 * b], p[2 * b + 1]);
            }
            for (int h = 0; h < 2; h++) { /* 16-bit -> 32-bit: bytes 0-3 and 4-7 of elements */
                r[4 * h] = _mm_unpacklo_epi16(q[h], q[2 + h]);     /* bytes 0-3, elements 8h+0..3 */
                r[4 * h + 1] = _mm_unpackhi_epi16(q[h], q[2 + h]); /* bytes 0-3, elements 8h+4..7 */
                r[4 * h + 2] = _mm_unpacklo_epi16(q[4 + h], q[6 + h]); /* bytes 4-7, elements 8h+0..3 */
                r[4 * h + 3] = _mm_unpackhi_epi16(q[4 + h], q[6 + h]); /* bytes 4-7, elements 8h+4..7 */
            }
            for (int h = 0; h < 2; h++)
                for (int g = 0; g < 2; g++) { /* 32-bit -> 64-bit: elements 8h+4g .. +3 */
                    unsigned char *o = dst + 8 * (j + 8 * (size_t)h + 4 * (size_t)g);
                    _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi32(r[4 * h + g], r[4 * h + 2 + g]));
                    _mm_storeu_si128((__m128i *)(o + 16), _mm_unpackhi_epi32(r[4 * h + g], r[4 * h + 2 + g]));
                }
        }
#endif
    for (; j < n; j++)
        for (size_t b = 0; b < es; b++) dst[j * es + b] = in[b * nel + j];
}

/* Datasets chunked by rows with filters [shuffle,] deflate, read chunk by
 * chunk without H5Dread: each chunk is read raw (H5Dread_chunk) and inflated
 * into one reused buffer of exactly the chunk's size (a chunk that does not
 * inflate to it is refused as corrupt). H5Dread does the same work but its
 * deflate filter grows its output buffer by doubling realloc (a copy per
 * doubling plus fresh pages per chunk), which dominated loading a 34 MB
 * corpus. */
struct cl_h5_rows {
    hid_t d;
    char path[256];
    int shuffle;
    size_t es, row, chunk_rows, cbytes, nel, nrows, nch;
    unsigned char *raw, *buf; /* raw: one stored chunk; buf: one inflated chunk */
    size_t rawcap;
    long cur; /* chunk now in buf, -1: none */
    unsigned char *whole; /* a dataset that does not qualify: read whole */
};

/* Does dataset d qualify (see above)? Fills the geometry; 1 or 0. */
static int rows_qualify(cl_h5_rows *r, hid_t d, hid_t memtype, int rank, const hsize_t *dims) {
    if (rank < 1 || rank > 8) return 0;
    hid_t dcpl = H5Dget_create_plist(d), ft = H5Dget_type(d);
    int ok = dcpl >= 0 && ft >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Tequal(ft, memtype) > 0;
    hsize_t chunk[8];
    if (ok) ok = H5Pget_chunk(dcpl, rank, chunk) == rank;
    for (int k = 1; ok && k < rank; k++) ok = chunk[k] == dims[k];
    int nf = ok ? H5Pget_nfilters(dcpl) : 0;
    if (ok) ok = nf == 1 || nf == 2;
    r->shuffle = 0;
    for (int i = 0; ok && i < nf; i++) {
        unsigned flags, cd[8];
        size_t ncd = 8;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
        if (i == nf - 1) ok = id == H5Z_FILTER_DEFLATE;
        else ok = id == H5Z_FILTER_SHUFFLE, r->shuffle = 1;
    }
    r->es = ok ? H5Tget_size(ft) : 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ft >= 0) H5Tclose(ft);
    if (!ok || r->es == 0 || chunk[0] == 0) return 0;
    r->d = d;
    r->row = r->es;
    for (int k = 1; k < rank; k++) r->row *= (size_t)dims[k];
    r->chunk_rows = (size_t)chunk[0];
    r->cbytes = r->chunk_rows * r->row;
    r->nel = r->cbytes / r->es;
    r->nrows = (size_t)dims[0];
    r->nch = (r->nrows + r->chunk_rows - 1) / r->chunk_rows;
    r->cur = -1;
    return r->cbytes > 0;
}

/* Read chunk c raw and inflate it into out (cbytes). 1 done, 0 the chunk
 * cannot be taken this way (not stored, a filter skipped), -1 error. */
static int rows_inflate(cl_h5_rows *r, size_t c, unsigned char *out) {
    hsize_t off[8] = {0};
    off[0] = (hsize_t)(c * r->chunk_rows);
    hsize_t csize = 0;
    uint32_t mask = 0;
    if (H5Dget_chunk_storage_size(r->d, off, &csize) < 0 || csize == 0) return 0;
    if (csize > r->rawcap) {
        unsigned char *r2 = realloc(r->raw, (size_t)csize);
        if (!r2) return cl_error("out of memory reading dataset %s", r->path);
        r->raw = r2, r->rawcap = (size_t)csize;
    }
    if (H5Dread_chunk(r->d, H5P_DEFAULT, off, &mask, r->raw) < 0)
        return cl_h5_error("cannot read dataset %s (corrupt file?)", r->path);
    io_chunks++, io_bytes += csize;
    if (mask != 0) return 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    int zr = inflateInit(&z);
    if (zr == Z_OK) {
        z.next_in = r->raw, z.avail_in = (uInt)csize, z.next_out = out, z.avail_out = (uInt)r->cbytes;
        zr = inflate(&z, Z_FINISH);
        if (zr == Z_STREAM_END && z.total_out != r->cbytes) zr = Z_DATA_ERROR;
        inflateEnd(&z);
    }
    if (zr != Z_STREAM_END)
        return cl_error("cannot read dataset %s: chunk %zu does not inflate to %zu bytes (corrupt file?)", r->path, c,
                        r->cbytes);
    return 1;
}

/* Rows [j0, j0+n) of the inflated chunk `in` into dst (unshuffled). */
static void rows_extract(const cl_h5_rows *r, const unsigned char *in, size_t j0, size_t n, unsigned char *dst) {
    const size_t es = r->es, e0 = j0 * r->row / es, ne = n * r->row / es;
    if (!r->shuffle) memcpy(dst, in + j0 * r->row, n * r->row);
    else if (es == 4 || es == 8) unshuffle48(in + e0, r->nel, ne, es, dst);
    else
        for (size_t b = 0; b < es; b++)
            for (size_t j = 0; j < ne; j++) dst[j * es + b] = in[b * r->nel + e0 + j];
}

/* Fast path of cl_h5_read_exact: 1 when done, 0 when the dataset does not
 * qualify (the caller then uses H5Dread), -1 on error. */
static int read_chunks_direct(hid_t d, const char *path, hid_t memtype, int rank, const hsize_t *dims, void *data) {
    cl_h5_rows r;
    memset(&r, 0, sizeof r);
    if (!rows_qualify(&r, d, memtype, rank, dims)) return 0;
    snprintf(r.path, sizeof r.path, "%s", path);
    int rc = 1;
    for (size_t c = 0; rc == 1 && c < r.nch; c++) {
        size_t rows = r.nrows - c * r.chunk_rows;
        if (rows > r.chunk_rows) rows = r.chunk_rows;
        unsigned char *dst = (unsigned char *)data + c * r.chunk_rows * r.row;
        /* without shuffle a full chunk inflates in place */
        int inplace = !r.shuffle && rows == r.chunk_rows;
        if (!inplace && !r.buf && !(r.buf = cl_trymalloc(r.cbytes, 1, "chunk buffer"))) {
            rc = -1;
            break;
        }
        rc = rows_inflate(&r, c, inplace ? dst : r.buf);
        if (rc == 1 && !inplace) rows_extract(&r, r.buf, 0, rows, dst);
    }
    free(r.raw), free(r.buf);
    return rc;
}

/* Is the data of dataset d (npoints elements of es bytes) stored in the
 * file of fsize bytes? 0 or -1 with a message (see h5util.h). */
static int check_stored(hid_t d, const char *path, hsize_t npoints, size_t es, hsize_t fsize) {
    if (npoints == 0) return 0;
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return cl_h5_error("dataset %s: cannot read its storage properties", path);
    const hsize_t logical = npoints * (hsize_t)es;
    int rc = 0;
    H5D_layout_t lay = H5Pget_layout(dcpl);
    hsize_t stored = H5Dget_storage_size(d);
    if (lay == H5D_COMPACT) {
        /* in the object header: read with it */
    } else if (lay == H5D_CONTIGUOUS) {
        haddr_t off = H5Dget_offset(d);
        if (H5Pget_external_count(dcpl) != 0)
            rc = cl_error("dataset %s is stored in external files: not accepted", path);
        else if (stored < logical || off == HADDR_UNDEF)
            rc = cl_error("dataset %s: %llu of its %llu bytes are stored (unwritten or truncated)", path,
                          (unsigned long long)stored, (unsigned long long)logical);
        else if (off > fsize || logical > fsize - off)
            rc = cl_error("dataset %s lies past the end of the file (%llu bytes; truncated?)", path,
                          (unsigned long long)fsize);
    } else if (lay == H5D_CHUNKED) {
        hid_t sp = H5Dget_space(d);
        hsize_t dims[8], chunk[8], want = 1, have = 0;
        int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (rank >= 1 && rank <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
        int deflate = 0, nf = H5Pget_nfilters(dcpl);
        for (int i = 0; !rc && i < nf; i++) {
            unsigned flags, cd[8];
            size_t ncd = 8;
            H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
            if (id == H5Z_FILTER_DEFLATE) deflate = 1;
            else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
                rc = cl_error("dataset %s uses HDF5 filter %d: only shuffle, deflate and fletcher32 are accepted", path,
                              (int)id);
        }
        if (!rc && (rank < 1 || rank > 8 || H5Pget_chunk(dcpl, rank, chunk) != rank))
            rc = cl_error("dataset %s: unreadable chunk layout", path);
        for (int k = 0; !rc && k < rank; k++) {
            if (chunk[k] == 0) rc = cl_error("dataset %s: a chunk dimension is 0", path);
            else want *= (dims[k] + chunk[k] - 1) / chunk[k];
        }
        if (!rc && (H5Dget_num_chunks(d, sp, &have) < 0 || have != want))
            rc = cl_error("dataset %s: %llu of its %llu chunks are stored (unwritten or truncated)", path,
                          (unsigned long long)have, (unsigned long long)want);
        if (sp >= 0) H5Sclose(sp);
        /* deflate inflates at most 1032:1 (zlib); unfiltered chunks are whole */
        if (!rc && (stored > fsize || (deflate ? logical / 1032 > stored : logical > stored)))
            rc = cl_error("dataset %s: %llu stored bytes cannot hold %llu bytes of data (corrupt file?)", path,
                          (unsigned long long)stored, (unsigned long long)logical);
    } else {
        rc = cl_error("dataset %s has a virtual or unknown layout: not accepted", path);
    }
    H5Pclose(dcpl);
    return rc;
}

int cl_h5_check_data(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims) {
    hsize_t got[8];
    int r = cl_h5_shape(file, path, got);
    if (r < 0) return -1;
    int same = r == rank && rank >= 1 && rank <= 8;
    for (int i = 0; same && i < rank; i++) same = got[i] == dims[i];
    if (!same) {
        char want[128], have[128];
        shape_str(want, sizeof want, rank, dims);
        shape_str(have, sizeof have, r, got);
        return cl_error("dataset %s has shape %s, expected %s", path, have, want);
    }
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) return cl_h5_error("cannot open dataset %s", path);
    hid_t t = H5Dget_type(d);
    int rc = 0;
    if (t < 0 || H5Tget_class(t) != H5Tget_class(memtype)) rc = cl_error("dataset %s has the wrong type class", path);
    size_t es = t >= 0 ? H5Tget_size(t) : 0;
    if (t >= 0) H5Tclose(t);
    hsize_t np = 1, fsize = 0;
    for (int i = 0; i < rank && !rc; i++) {
        if (dims[i] && np > (hsize_t)SIZE_MAX / 16 / dims[i]) rc = cl_error("dataset %s is too large", path);
        np *= dims[i];
    }
    if (!rc && es && np > (hsize_t)SIZE_MAX / 16 / es) rc = cl_error("dataset %s is too large", path);
    hid_t f = rc ? H5I_INVALID_HID : H5Iget_file_id(d);
    if (!rc && (f < 0 || H5Fget_filesize(f, &fsize) < 0)) rc = cl_h5_error("dataset %s: cannot size its file", path);
    if (f >= 0) H5Fclose(f);
    if (!rc) rc = check_stored(d, path, np, es, fsize);
    H5Dclose(d);
    return rc;
}

cl_h5_rows *cl_h5_rows_open(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims) {
    if (cl_h5_check_data(file, path, memtype, rank, dims)) return NULL;
    cl_h5_rows *r = cl_trycalloc(1, sizeof *r, "row reader");
    if (!r) return NULL;
    snprintf(r->path, sizeof r->path, "%s", path);
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) {
        cl_h5_error("cannot open dataset %s", path);
        free(r);
        return NULL;
    }
    hid_t t = H5Dget_type(d);
    int cls_ok = t >= 0 && H5Tget_class(t) == H5Tget_class(memtype);
    if (t >= 0) H5Tclose(t);
    if (!cls_ok) {
        cl_error("dataset %s has the wrong type class", path);
        H5Dclose(d);
        free(r);
        return NULL;
    }
    int ok = rows_qualify(r, d, memtype, rank, dims);
    /* every chunk must be stored, unskipped, inside the file: a truncated file
       is refused here, not by a read error later */
    hsize_t fsize = 0;
    hid_t f = H5Iget_file_id(d);
    if (ok && (f < 0 || H5Fget_filesize(f, &fsize) < 0)) ok = 0;
    if (f >= 0) H5Fclose(f);
    for (size_t c = 0; ok && c < r->nch; c++) {
        hsize_t off[8] = {0};
        off[0] = (hsize_t)(c * r->chunk_rows);
        unsigned mask = 1;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF || size == 0) {
            cl_error("dataset %s: chunk %zu is missing (truncated or corrupt file?)", path, c);
            H5Dclose(d);
            free(r);
            return NULL;
        }
        if (addr + size > fsize) {
            cl_error("dataset %s: chunk %zu lies past the end of the file (truncated?)", path, c);
            H5Dclose(d);
            free(r);
            return NULL;
        }
        ok = mask == 0;
    }
    if (ok) {
        r->d = d;
        if (!(r->buf = cl_trymalloc(r->cbytes, 1, "chunk buffer"))) {
            cl_h5_rows_close(r);
            return NULL;
        }
        return r;
    }
    /* any other layout: read whole, serve rows from memory */
    H5Dclose(d);
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->d = H5I_INVALID_HID;
    r->es = H5Tget_size(memtype);
    r->row = r->es;
    for (int k = 1; k < rank; k++) r->row *= (size_t)dims[k];
    r->nrows = (size_t)dims[0];
    r->whole = cl_trymalloc(r->nrows ? r->nrows : 1, r->row ? r->row : 1, "dataset");
    if (!r->whole || cl_h5_read_exact(file, path, memtype, rank, dims, r->whole) < 0) {
        cl_h5_rows_close(r);
        return NULL;
    }
    return r;
}

int cl_h5_rows_read(cl_h5_rows *r, size_t i, void *out) {
    if (i >= r->nrows) return cl_error("dataset %s: row %zu is out of range (%zu rows)", r->path, i, r->nrows);
    if (r->whole) {
        memcpy(out, r->whole + i * r->row, r->row);
        return 0;
    }
    size_t c = i / r->chunk_rows;
    if (r->cur != (long)c) {
        r->cur = -1;
        int rc = rows_inflate(r, c, r->buf);
        if (rc == 0) rc = cl_error("dataset %s: chunk %zu cannot be read raw", r->path, c);
        if (rc < 0) return -1;
        r->cur = (long)c;
    }
    rows_extract(r, r->buf, i - c * r->chunk_rows, 1, out);
    return 0;
}

void cl_h5_rows_close(cl_h5_rows *r) {
    if (!r) return;
    if (r->d > 0) H5Dclose(r->d);
    free(r->raw), free(r->buf), free(r->whole);
    free(r);
}

int cl_h5_read_exact(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims,
                     void *data) {
    if (cl_h5_check_data(file, path, memtype, rank, dims)) return -1;
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0) return cl_h5_error("cannot open dataset %s", path);
    int rc = 0;
    int direct = 0;
    if ((direct = read_chunks_direct(d, path, memtype, rank, dims, data)) != 0) rc = direct < 0 ? -1 : 0;
    else if (H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = cl_h5_error("cannot read dataset %s (corrupt file?)", path);
    H5Dclose(d);
    return rc;
}

static hid_t vocab_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int cl_h5_write_vocab(hid_t file, const char *path, const uint32_t *vocab, int V) {
    char *buf = cl_trycalloc((size_t)V, 4, "vocabulary");
    if (!buf) return -1;
    for (int i = 0; i < V; i++) {
        char tmp[4];
        int n = cl_utf8_put(vocab[i], tmp);
        memcpy(buf + 4 * (size_t)i, tmp, n);
    }
    hid_t t = vocab_type();
    hsize_t d = V;
    int rc = cl_h5_write(file, path, t, 1, &d, buf);
    H5Tclose(t);
    free(buf);
    return rc;
}

int cl_h5_read_vocab(hid_t file, const char *path, uint32_t **vocab, int *V) {
    hsize_t dims[8];
    int r = cl_h5_shape(file, path, dims);
    if (r < 0) return -1;
    if (r != 1 || dims[0] == 0 || dims[0] > 1u << 21) return cl_error("%s: not a vocabulary", path);
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    int is_str = H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) <= 0 && H5Tget_size(ft) == 4;
    H5T_cset_t cset = is_str ? H5Tget_cset(ft) : H5T_CSET_UTF8;
    H5Tclose(ft);
    if (!is_str) {
        H5Dclose(d);
        return cl_error("%s: expected 4-byte UTF-8 strings", path);
    }
    size_t n = dims[0];
    char *buf = cl_trymalloc(n, 4, "vocabulary");
    uint32_t *v = cl_trymalloc(n, sizeof *v, "vocabulary");
    if (!buf || !v) {
        free(buf);
        free(v);
        H5Dclose(d);
        return -1;
    }
    hid_t t = vocab_type();
    H5Tset_cset(t, cset); /* HDF5 does not convert between ASCII and UTF-8 */
    herr_t st = H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Tclose(t);
    H5Dclose(d);
    if (st < 0) {
        free(buf);
        free(v);
        return cl_error("cannot read %s", path);
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)buf + 4 * i;
        size_t len = 0;
        while (len < 4 && s[len]) len++;
        uint32_t cp;
        if (len == 0) {
            cp = 0; /* a NUL character */
        } else if (cl_utf8_get(s, len, &cp) != (int)len) {
            free(buf);
            free(v);
            return cl_error("%s: entry %zu is not one UTF-8 character", path, i);
        }
        v[i] = cp;
    }
    free(buf);
    /* one id per character: a repeated one makes encoding ambiguous */
    unsigned char *seen = cl_trycalloc((0x10FFFF >> 3) + 1, 1, "vocabulary check");
    int rc = seen ? 0 : -1;
    for (size_t i = 0; !rc && i < n; i++) {
        if (v[i] > 0x10FFFF) rc = cl_error("%s: entry %zu is not a Unicode character", path, i);
        else if (seen[v[i] >> 3] & (1u << (v[i] & 7)))
            rc = cl_error("%s: entry %zu (U+%04X) repeats an earlier entry", path, i, (unsigned)v[i]);
        else seen[v[i] >> 3] |= (unsigned char)(1u << (v[i] & 7));
    }
    free(seen);
    if (rc) {
        free(v);
        return -1;
    }
    *vocab = v;
    *V = (int)n;
    return 0;
}

int cl_h5_write_strings(hid_t file, const char *path, const char *const *s, size_t n) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t d = n;
    int rc = cl_h5_write(file, path, t, 1, &d, s);
    H5Tclose(t);
    return rc;
}

int cl_h5_read_strings(hid_t file, const char *path, char ***out, size_t *n_out) {
    hsize_t dims[8];
    int r = cl_h5_shape(file, path, dims);
    if (r < 0) return -1;
    if (r != 1 || dims[0] > (1u << 24)) return cl_error("%s: not a list of strings", path);
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    int ok = H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0;
    H5T_cset_t cset = ok ? H5Tget_cset(ft) : H5T_CSET_UTF8;
    H5Tclose(ft);
    if (!ok) {
        H5Dclose(d);
        return cl_error("%s: expected variable-length strings", path);
    }
    size_t n = dims[0];
    char **raw = cl_trycalloc(n + 1, sizeof *raw, "strings");
    char **res = raw ? cl_trycalloc(n + 1, sizeof *res, "strings") : NULL;
    if (!res) {
        free(raw);
        H5Dclose(d);
        return -1;
    }
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, cset);
    int rc = n ? (H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0 ? -1 : 0) : 0;
    if (rc) cl_error("%s: cannot read the strings", path);
    for (size_t i = 0; i < n && !rc; i++) {
        res[i] = strdup(raw[i] ? raw[i] : "");
        if (!res[i]) rc = cl_error("out of memory reading %s", path);
    }
    if (n) {
        hid_t sp = H5Dget_space(d);
        H5Dvlen_reclaim(t, sp, H5P_DEFAULT, raw);
        H5Sclose(sp);
    }
    H5Tclose(t);
    H5Dclose(d);
    free(raw);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(res[i]);
        free(res);
        return -1;
    }
    *out = res;
    *n_out = n;
    return 0;
}

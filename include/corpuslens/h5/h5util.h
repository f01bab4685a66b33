/* Small HDF5 helpers shared by every stage. Each returns 0 / a valid id on
 * success and -1 / H5I_INVALID_HID with a cl_error message naming the object
 * on failure. HDF5's own error stack printing is switched off by
 * cl_h5_quiet(); messages come from us.
 */
#ifndef CORPUSLENS_H5UTIL_H
#define CORPUSLENS_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/hash.h" /* cl_sha256_*: most writers stamp files with it */

/* Switch off HDF5's automatic error printing (call once at start). */
void cl_h5_quiet(void);

/* The cause HDF5 recorded for the call that just failed: its error stack is
 * walked from the innermost entry; the operating system's reason when HDF5
 * recorded one ("No space left on device"), else the innermost description.
 * "" when the stack is empty. Call it right after the failing HDF5 call: the
 * next HDF5 call clears the stack. */
void cl_h5_cause(char *buf, size_t n);
/* cl_error(fmt, ...) followed by ": <cause>" when HDF5 recorded one. Returns -1. */
int cl_h5_error(const char *fmt, ...) CL_PRINTF(1, 2);
/* The same, naming the file obj belongs to: "<message> in FILE: <cause>". */
int cl_h5_error_in(hid_t obj, const char *fmt, ...) CL_PRINTF(2, 3);

/* Finish a file being written as PATH (a .tmp): when !failed, reserve the
 * disk space its close needs and close it (an error names PATH and the cause,
 * e.g. "No space left on device"); when failed, or when the space is not
 * there, give its disk space back (truncated to 0 first, so that HDF5's last
 * flush finds room and the file is really closed) and remove PATH. Never call
 * H5Fflush on a file being written: a failed flush cannot be undone. f may be invalid (PATH is then
 * only removed when failed). Returns 0, or -1 (the first message is kept). */
int cl_h5_finish(hid_t f, const char *path, int failed);
/* The safe writer's last step, for every output: f = cl_h5_create(tmp), the
 * writes, then cl_h5_commit(f, tmp, path, failed): cl_h5_finish(f, tmp,
 * failed) and, when that succeeded, cl_commit_file(tmp, path) (fsync, rename,
 * fsync of the directory: fileio.h). Returns 0 with PATH in place, or -1 with
 * the message (the first one kept) and no TMP left; PATH is then untouched
 * (unless only the directory's fsync after the rename failed). */
int cl_h5_commit(hid_t f, const char *tmp, const char *path, int failed);
/* Close f, a file opened read-write (H5Fopen) and changed in place: its disk
 * space is reserved first (as cl_h5_finish does), so that a full disk is met
 * before the close rather than half way through its flush. PATH is never
 * truncated nor removed (a file that could not be closed is counted in
 * cl_h5_stuck). Prefer writing a new file (cl_h5_commit): an in-place change
 * interrupted by a kill can still damage the file. 0, or -1 with a message. */
int cl_h5_close_rw(hid_t f, const char *path);
/* H5Fcreate(path, truncate); on failure the message names path and the cause,
 * and the empty file H5Fcreate may leave is removed. */
hid_t cl_h5_create(const char *path);
/* A dataset creation property list without object times, so that the same
 * contents give the same bytes (close it with H5Pclose). */
hid_t cl_h5_dcpl(void);
/* How many files could not be closed even so (HDF5 then crashes at exit
 * closing them again: the CLI ends without finalising HDF5). */
int cl_h5_stuck(void);

/* Open an existing file read-only; error "cannot open PATH: not an HDF5 file" etc. */
hid_t cl_h5_open_read(const char *path);

/* Attributes on any object. */
int cl_h5_attr_write_int(hid_t obj, const char *name, long long v);
int cl_h5_attr_write_double(hid_t obj, const char *name, double v);
int cl_h5_attr_write_str(hid_t obj, const char *name, const char *v);
int cl_h5_attr_write_doubles(hid_t obj, const char *name, const double *v, size_t n);
int cl_h5_attr_read_int(hid_t obj, const char *name, long long *v);
int cl_h5_attr_read_double(hid_t obj, const char *name, double *v);
/* Reads a fixed or variable-length string attribute into buf (NUL-terminated). */
int cl_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t n);
int cl_h5_attr_exists(hid_t obj, const char *name);

/* Whole-dataset write (contiguous, no chunking) of a native type with `rank`
 * dims. Creates intermediate groups. */
int cl_h5_write(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims,
                const void *data);
/* Read a whole dataset whose shape must equal dims (rank given); the error
 * names the dataset and both shapes. */
int cl_h5_read_exact(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims,
                     void *data);
/* Trust no file: before a reader sizes an allocation by a dataset, this
 * checks that the dataset exists with exactly this shape (rank 1..8), its
 * type is of memtype's class, and its data is stored in the file: every byte
 * of a contiguous dataset (inside the file's size), every chunk of a chunked
 * one (filters: shuffle, deflate, fletcher32 only; no more than deflate's
 * 1032:1 bound beyond what is stored), no external or virtual storage. So a
 * small file cannot claim a large dataset that reads as fill values. 0 or -1
 * with a message naming the dataset. cl_h5_read_exact calls it. */
int cl_h5_check_data(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims);
/* Row-at-a-time reader of a dataset whose shape must equal dims (rank 1..8):
 * for one row (dims[1..] elements of memtype) of a big dataset without
 * reading it whole. A dataset chunked by rows with [shuffle,] deflate (as
 * corpuslens writes them) inflates only the chunk holding the row (the last
 * one is kept); open checks that every chunk is stored inside the file, so a
 * truncated file is refused there. Any other layout is read whole at open.
 * open: NULL with cl_error; read: 0 or -1 (a corrupt chunk). */
typedef struct cl_h5_rows cl_h5_rows;
cl_h5_rows *cl_h5_rows_open(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims);
int cl_h5_rows_read(cl_h5_rows *r, size_t row, void *out);
void cl_h5_rows_close(cl_h5_rows *r);
/* Rows [p0, p0+n) (the first dimension) of a dataset of any rank, whole in
 * the other dimensions, into buf as memtype. 0 or -1 with a message. */
int cl_h5_read_rows(hid_t file, const char *path, hid_t memtype, size_t p0, size_t n, void *buf);
/* Chunks read and their stored bytes, by cl_h5_rows_read and cl_h5_read_rows
 * in this process (a chunk read twice counts twice): the I/O figure of the
 * sharded readers (CORPUSLENS_CORPUS_STATS). */
void cl_h5_io_stats(unsigned long long *chunks, unsigned long long *bytes);
/* Shape of a dataset: fills dims (up to 8) and returns the rank, or -1. */
int cl_h5_shape(hid_t file, const char *path, hsize_t *dims);
int cl_h5_exists(hid_t file, const char *path);

/* Vocabulary as [V] fixed-length (4-byte, null-padded) UTF-8 strings. */
int cl_h5_write_vocab(hid_t file, const char *path, const uint32_t *vocab, int V);
/* Reads into a malloc'ed array; *V receives the size. */
int cl_h5_read_vocab(hid_t file, const char *path, uint32_t **vocab, int *V);

/* [n] variable-length UTF-8 strings (NUL-terminated, no embedded NUL). */
int cl_h5_write_strings(hid_t file, const char *path, const char *const *s, size_t n);
/* Reads a 1-D dataset of variable-length strings: *s is a malloc'ed array of
 * n malloc'ed copies (free each, then the array); *n receives the count. */
int cl_h5_read_strings(hid_t file, const char *path, char ***s, size_t *n);


#endif

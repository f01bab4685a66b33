/* Parallel HDF5 (MPI-IO driver): one file written together by every rank of
 * a communicator. Every function here is collective over the file's
 * communicator: all ranks call it with the same arguments (the selections and
 * buffers of the row writes excepted), whatever happened before, and get the
 * same result code.
 *
 * Same bytes whatever the rank count: the HDF5 calls (dataset creation,
 * collective writes, attributes) are made in the same order with the same
 * shapes on every rank count, only the split of the rows of each collective
 * write among the ranks differs. HDF5 1.10 allocates the chunks of a
 * collective filtered write rank by rank, each rank's in chunk order, so the
 * caller must give the ranks their rows in rank order (rank r's rows before
 * rank r + 1's); then the chunks land in chunk order whatever the split
 * (tested: tests/scan_ranks_bytes.sh, which fails with interleaved slabs).
 * No object times are stored (cl_h5_dcpl).
 *
 * Full disk: as cl_h5_finish (h5util.h): a file that succeeded gets its disk
 * blocks reserved before the close (rank 0, fallocate on its own descriptor),
 * a file that failed is truncated to 0 before the close, so that HDF5's last
 * metadata flush finds room, and removed.
 */
#ifndef CORPUSLENS_H5PAR_H
#define CORPUSLENS_H5PAR_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>

/* Create (truncate) PATH for writing by every rank of comm: collective
 * metadata writes, MPI-IO. Returns the file on every rank, or
 * H5I_INVALID_HID on every rank (the failing rank has the message, which
 * names PATH and the cause; the empty file is removed). */
hid_t cl_h5p_create(const char *path, MPI_Comm comm);

/* A dataset of `rank` dims (intermediate groups created). chunk NULL:
 * contiguous, space allocated at creation, never filled (every element must
 * be written); otherwise chunked with these chunk dims and gzip level 1, dim 0
 * extendible (maxdims unlimited). Returns the dataset or an invalid id with
 * the message (this rank's result: agree on it). */
hid_t cl_h5p_dataset(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims,
                     const hsize_t *chunk);

/* Collective write of this rank's rows of a dataset with `rank` dims:
 * n ranges of dim-0 rows [r0[i], r0[i] + nr[i]) (increasing, disjoint; n may
 * be 0 and ranges may be empty), full along the other dims; data holds them
 * back to back. The ranks agree on their selections before the collective
 * write (a rank that cannot select its rows makes every rank return -1 with
 * its message, none waits). 0 or -1 with a message naming `name` (this rank's
 * result of the write itself: agree on it). Fault injection: h5p.select. */
int cl_h5p_write_rows(hid_t ds, hid_t memtype, size_t n, const hsize_t *r0, const hsize_t *nr, const void *data,
                      const char *name);

/* Create the dataset PATH (contiguous) and write it whole from `root`'s
 * data (other ranks' data is not read: may be NULL). This rank's result:
 * agree on it. */
int cl_h5p_write_from(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims, const void *data,
                      int root, MPI_Comm comm);

/* The message of a failed write (or dataset close) into obj's file:
 * "WHAT in FILE: REASON". MPI-IO does not pass the operating system's reason
 * up through HDF5 ("file write failed"), so the file system is asked: when
 * 64 KiB more cannot be reserved for the file, the reason is the file
 * system's (No space left on device, Disk quota exceeded); otherwise HDF5's
 * innermost description. Call it right after the failing HDF5 call. Not
 * collective. Returns -1. */
int cl_h5p_write_error(hid_t obj, const char *what);

/* Finish PATH, a file of cl_h5p_create. failed: the ranks' agreed verdict
 * (the same on every rank: cl_par_agree first). When failed: discard
 * (truncate to 0, close, remove) and return -1 everywhere. Otherwise reserve
 * the disk space (rank 0) and close; PATH is removed when any rank failed.
 * Returns this rank's result (a rank that failed has the message; on a full
 * disk every rank fails and rank 0 has it): agree on it. */
int cl_h5p_finish(hid_t f, const char *path, int failed, MPI_Comm comm);

#endif

/* Parallel HDF5 helpers (layout and rules: h5par.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include "corpuslens/h5/h5par.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/par/par.h"

static int any(int flag, MPI_Comm comm) {
    int in = flag != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, comm);
    return out;
}

int cl_h5p_write_error(hid_t obj, const char *what) {
    char cause[512], name[1024] = "";
    cl_h5_cause(cause, sizeof cause); /* before any other HDF5 call */
    if (obj < 0 || H5Fget_name(obj, name, sizeof name) < 0) name[0] = '\0';
    H5Eclear2(H5E_DEFAULT);
    int fd = name[0] ? open(name, O_WRONLY) : -1;
    struct stat st;
    if (fd >= 0 && !fstat(fd, &st)) {
        int e = fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, 1 << 16) ? errno : 0;
        if (!e && ftruncate(fd, st.st_size)) { /* the reservation past the end is given back */
        }
        if (e == ENOSPC || e == EDQUOT) snprintf(cause, sizeof cause, "%s", strerror(e));
    }
    if (fd >= 0) close(fd);
    return cl_error("%s%s%s%s%s", what, name[0] ? " in " : "", name, cause[0] ? ": " : "", cause);
}

hid_t cl_h5p_create(const char *path, MPI_Comm comm) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_coll_metadata_write(fapl, 1);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) cl_h5_error("cannot create %s", path);
    if (any(f < 0, comm)) {
        if (f >= 0) H5Fclose(f); /* every rank failed in practice: H5Fcreate is collective */
        int rank;
        MPI_Comm_rank(comm, &rank);
        if (rank == 0) remove(path); /* H5Fcreate may leave an empty file behind */
        if (f >= 0) cl_error("cannot create %s on another rank", path);
        return H5I_INVALID_HID;
    }
    return f;
}

hid_t cl_h5p_dataset(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims, const hsize_t *chunk) {
    hsize_t maxd[8];
    for (int i = 0; i < rank; i++) maxd[i] = dims[i];
    hid_t dcpl = cl_h5_dcpl(), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (chunk) {
        maxd[0] = H5S_UNLIMITED; /* as the serial writer had it: readers see the same layout */
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_deflate(dcpl, 1);
    } else {
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    }
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t ds = H5Dcreate2(file, path, type, sp, lcpl, dcpl, H5P_DEFAULT);
    H5Sclose(sp), H5Pclose(dcpl), H5Pclose(lcpl);
    if (ds < 0) cl_h5_error_in(file, "cannot create dataset %s", path);
    return ds;
}

/* The communicator of obj's file (a duplicate: MPI_Comm_free it), or
 * MPI_COMM_NULL when the file is not an MPI-IO file. */
static MPI_Comm file_comm(hid_t obj) {
    MPI_Comm c = MPI_COMM_NULL;
    MPI_Info info = MPI_INFO_NULL;
    hid_t f = H5Iget_file_id(obj);
    hid_t fapl = f >= 0 ? H5Fget_access_plist(f) : H5I_INVALID_HID;
    if (fapl >= 0 && H5Pget_driver(fapl) == H5FD_MPIO && H5Pget_fapl_mpio(fapl, &c, &info) < 0) c = MPI_COMM_NULL;
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    if (fapl >= 0) H5Pclose(fapl);
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return c;
}

int cl_h5p_write_rows(hid_t ds, hid_t memtype, size_t n, const hsize_t *r0, const hsize_t *nr, const void *data,
                      const char *name) {
    /* A rank that cannot set up its selection must not leave the others
     * waiting in the collective H5Dwrite: the ranks agree first, and when one
     * failed none writes (every rank then holds the failing rank's message). */
    MPI_Comm comm = file_comm(ds);
    hid_t fs = H5Dget_space(ds), ms = H5I_INVALID_HID;
    int nd = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs), rc = 0;
    hsize_t dims[8], start[8] = {0}, count[8], mcount[8], total = 0;
    if (nd < 1 || nd > 8) rc = cl_error("cannot write %s: no dataspace", name);
    if (!rc && (H5Sget_simple_extent_dims(fs, dims, NULL) < 0 || H5Sselect_none(fs) < 0))
        rc = cl_h5_error("cannot write %s: no dataspace", name);
    for (int i = 0; !rc && i < nd; i++) count[i] = mcount[i] = dims[i];
    for (size_t i = 0; !rc && i < n; i++) {
        if (!nr[i]) continue;
        start[0] = r0[i], count[0] = nr[i];
        if (H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL) < 0)
            rc = cl_h5_error("cannot write %s: rows %llu..%llu are not in the dataset", name,
                             (unsigned long long)r0[i], (unsigned long long)(r0[i] + nr[i]));
        total += nr[i];
    }
    if (!rc) {
        mcount[0] = total;
        ms = H5Screate_simple(nd, mcount, NULL);
        if (ms < 0 || (!total && H5Sselect_none(ms) < 0)) rc = cl_h5_error("cannot write %s: no memory space", name);
    }
    if (!rc) rc = cl_par_fault("h5p.select", comm != MPI_COMM_NULL ? comm : MPI_COMM_WORLD);
    if (comm != MPI_COMM_NULL) {
        rc = cl_par_agree(rc, comm);
        MPI_Comm_free(&comm);
    }
    if (!rc) {
        static const char dummy[16];
        hid_t dx = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_dxpl_mpio(dx, H5FD_MPIO_COLLECTIVE);
        if (H5Dwrite(ds, memtype, ms, fs, dx, total ? data : dummy) < 0) {
            char what[512];
            snprintf(what, sizeof what, "cannot write %s", name);
            rc = cl_h5p_write_error(ds, what);
        }
        H5Pclose(dx);
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc ? -1 : 0;
}

int cl_h5p_write_from(hid_t file, const char *path, hid_t memtype, int rank, const hsize_t *dims, const void *data,
                      int root, MPI_Comm comm) {
    int me;
    MPI_Comm_rank(comm, &me);
    hid_t ds = cl_h5p_dataset(file, path, memtype, rank, dims, NULL);
    if (any(ds < 0, comm)) {
        if (ds >= 0) H5Dclose(ds), cl_error("cannot create dataset %s on another rank", path);
        return -1;
    }
    hsize_t r0 = 0, nr = dims[0];
    int rc = cl_h5p_write_rows(ds, memtype, me == root ? 1 : 0, &r0, &nr, data, path);
    if (H5Dclose(ds) < 0 && !rc) {
        char what[512];
        snprintf(what, sizeof what, "cannot write dataset %s", path);
        rc = cl_h5p_write_error(file, what);
    }
    return rc;
}

int cl_h5p_finish(hid_t f, const char *path, int failed, MPI_Comm comm) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (f < 0) {
        if (rank == 0 && path) remove(path);
        return -1;
    }
    int mine = 0;
    if (!failed) {
        hsize_t size = 0;
        if (H5Fget_filesize(f, &size) < 0) size = 0;
        if (rank == 0 && path) {
            /* blocks only, the size stays (where the file system cannot, no reservation) */
            int fd = open(path, O_WRONLY);
            int e = fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size + (1 << 20)) ? errno : 0;
            if (fd >= 0) close(fd);
            if (e == ENOSPC || e == EDQUOT) failed = mine = cl_error("cannot write %s: %s", path, strerror(e));
        }
        MPI_Bcast(&failed, 1, MPI_INT, 0, comm);
        if (failed) mine = -1; /* rank 0, the lowest failing rank, has the message */
    }
    if (failed) {
        /* give the blocks back first, so that the close's metadata flush finds room */
        if (rank == 0 && path && truncate(path, 0)) {
        }
        MPI_Barrier(comm);
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        if (rank == 0 && path) remove(path);
        return -1;
    }
    if (H5Fclose(f) < 0) {
        /* the name is gone with the file: the reason from the file system */
        char cause[512];
        cl_h5_cause(cause, sizeof cause);
        H5Eclear2(H5E_DEFAULT);
        struct statvfs vs;
        if (path && !statvfs(path, &vs) && vs.f_bavail == 0) snprintf(cause, sizeof cause, "%s", strerror(ENOSPC));
        mine = cl_error("cannot finish writing %s%s%s", path ? path : "a file", cause[0] ? ": " : "", cause);
    }
    if (any(mine, comm)) {
        if (rank == 0 && path) remove(path);
        return mine;
    }
    if (rank == 0 && path) {
        /* give back the reserved blocks past the end: shrinking frees them */
        struct stat st;
        if (!stat(path, &st) && !truncate(path, st.st_size + 1) && truncate(path, st.st_size)) {
        }
    }
    return 0;
}

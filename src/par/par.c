#include "corpuslens/par/par.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/par/interrupt.h"

/* A message that already went through an agreement starts with "rank N: ". */
static int has_rank_prefix(const char *m) {
    if (strncmp(m, "rank ", 5)) return 0;
    m += 5;
    if (*m < '0' || *m > '9') return 0;
    while (*m >= '0' && *m <= '9') m++;
    return m[0] == ':' && m[1] == ' ';
}

/* Commands that skip MPI_Init run as one process: rank 0 of 1. */
static int mpi_up(void) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    if (up) MPI_Finalized(&down);
    return up && !down;
}

int cl_par_up(void) { return mpi_up(); }

int cl_par_agree(int rc, MPI_Comm comm) {
    if (!mpi_up()) return rc ? -1 : 0;
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (size == 1) return rc ? -1 : 0;
    int mine = rc ? rank : size, first = size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return 0;
    char msg[1536];
    if (rank == first) {
        const char *e = cl_last_error();
        if (!e[0]) e = "failed (no message)";
        if (has_rank_prefix(e)) snprintf(msg, sizeof msg, "%s", e);
        else snprintf(msg, sizeof msg, "rank %d: %s", rank, e);
    }
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, comm);
    msg[sizeof msg - 1] = '\0';
    cl_error("%s", msg);
    return -1;
}

int cl_par_fault(const char *step, MPI_Comm comm) {
    const char *spec = getenv("CORPUSLENS_FAULT");
    if (!spec || !*spec) return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *colon = strchr(buf, ':');
    if (!colon) return 0;
    *colon = '\0';
    char *name = colon + 1, *end;
    long want_rank = strtol(buf, &end, 10);
    if (*end || end == buf) return 0;
    int kill = 0, sig = 0, wait = 0;
    char *k = strchr(name, ':');
    if (k) {
        kill = !strcmp(k + 1, "kill");
        sig = !strcmp(k + 1, "int") ? SIGINT : !strcmp(k + 1, "term") ? SIGTERM : 0;
        wait = !strcmp(k + 1, "wait");
        *k = '\0';
    }
    long nth = 1;
    char *at = strchr(name, '@');
    if (at) {
        *at = '\0';
        nth = strtol(at + 1, NULL, 10);
    }
    int rank = 0;
    if (mpi_up()) MPI_Comm_rank(comm, &rank);
    if (rank != want_rank || strcmp(name, step)) return 0;
    static long hits = 0;
    if (++hits != nth) return 0;
    if (kill) {
        fflush(stdout);
        fflush(stderr);
        raise(SIGKILL);
    }
    if (sig) { /* as if the signal came from outside: the step goes on */
        raise(sig);
        return 0;
    }
    if (wait) { /* until a real SIGINT / SIGTERM (at most 60 s), then the step goes on */
        fprintf(stderr, "corpuslens: rank %d waits for a signal at %s (CORPUSLENS_FAULT)\n", rank, step);
        fflush(stderr);
        struct timespec ts = {0, 10 * 1000 * 1000};
        for (int i = 0; i < 6000 && !cl_interrupt_signal(); i++) nanosleep(&ts, NULL);
        return 0;
    }
    return cl_error("injected fault at %s on rank %d (CORPUSLENS_FAULT)", step, rank);
}

/* ---- one process without MPI (par.h) ---- */

/* Bytes of a predefined datatype, without MPI_Type_size (not callable before MPI_Init). */
static size_t type_bytes(MPI_Datatype t) {
    if (t == MPI_CHAR || t == MPI_BYTE || t == MPI_SIGNED_CHAR || t == MPI_UNSIGNED_CHAR) return 1;
    if (t == MPI_INT || t == MPI_UNSIGNED) return sizeof(int);
    if (t == MPI_LONG || t == MPI_UNSIGNED_LONG) return sizeof(long);
    if (t == MPI_LONG_LONG || t == MPI_UNSIGNED_LONG_LONG) return sizeof(long long);
    if (t == MPI_INT32_T || t == MPI_UINT32_T) return 4;
    if (t == MPI_INT64_T || t == MPI_UINT64_T) return 8;
    if (t == MPI_FLOAT) return sizeof(float);
    if (t == MPI_DOUBLE) return sizeof(double);
    fprintf(stderr, "corpuslens: internal error: an MPI datatype that par.c does not know, without MPI\n");
    abort();
}

static void copy(void *to, const void *from, size_t n, MPI_Datatype t) {
    if (from != MPI_IN_PLACE && n && to != from) memmove(to, from, n * type_bytes(t));
}

int cl_par_comm_rank(MPI_Comm comm, int *rank) {
    if (mpi_up()) return MPI_Comm_rank(comm, rank);
    *rank = 0;
    return MPI_SUCCESS;
}

int cl_par_comm_size(MPI_Comm comm, int *size) {
    if (mpi_up()) return MPI_Comm_size(comm, size);
    *size = 1;
    return MPI_SUCCESS;
}

int cl_par_barrier(MPI_Comm comm) { return mpi_up() ? MPI_Barrier(comm) : MPI_SUCCESS; }

int cl_par_bcast(void *buf, int n, MPI_Datatype t, int root, MPI_Comm comm) {
    return mpi_up() ? MPI_Bcast(buf, n, t, root, comm) : MPI_SUCCESS;
}

int cl_par_allreduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
    if (mpi_up()) return MPI_Allreduce(send, recv, n, t, op, comm);
    copy(recv, send, (size_t)n, t);
    return MPI_SUCCESS;
}

int cl_par_reduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm comm) {
    if (mpi_up()) return MPI_Reduce(send, recv, n, t, op, root, comm);
    copy(recv, send, (size_t)n, t);
    return MPI_SUCCESS;
}

int cl_par_exscan(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
    return mpi_up() ? MPI_Exscan(send, recv, n, t, op, comm) : MPI_SUCCESS;
}

int cl_par_reduce_scatter(const void *send, void *recv, const int *counts, MPI_Datatype t, MPI_Op op,
                          MPI_Comm comm) {
    if (mpi_up()) return MPI_Reduce_scatter(send, recv, counts, t, op, comm);
    copy(recv, send, (size_t)counts[0], t);
    return MPI_SUCCESS;
}

int cl_par_gatherv(const void *send, int sn, MPI_Datatype st, void *recv, const int *counts, const int *displs,
                   MPI_Datatype rt, int root, MPI_Comm comm) {
    if (mpi_up()) return MPI_Gatherv(send, sn, st, recv, counts, displs, rt, root, comm);
    (void)counts;
    copy((char *)recv + (size_t)displs[0] * type_bytes(rt), send, (size_t)sn, st);
    return MPI_SUCCESS;
}

int cl_par_alltoall(const void *send, int sn, MPI_Datatype st, void *recv, int rn, MPI_Datatype rt, MPI_Comm comm) {
    if (mpi_up()) return MPI_Alltoall(send, sn, st, recv, rn, rt, comm);
    copy(recv, send, (size_t)sn, st);
    return MPI_SUCCESS;
}

int cl_par_alltoallv(const void *send, const int *scounts, const int *sdispls, MPI_Datatype st, void *recv,
                     const int *rcounts, const int *rdispls, MPI_Datatype rt, MPI_Comm comm) {
    if (mpi_up()) return MPI_Alltoallv(send, scounts, sdispls, st, recv, rcounts, rdispls, rt, comm);
    (void)rcounts;
    if (send != MPI_IN_PLACE)
        copy((char *)recv + (size_t)rdispls[0] * type_bytes(rt), (const char *)send + (size_t)sdispls[0] * type_bytes(st),
             (size_t)scounts[0], st);
    return MPI_SUCCESS;
}

#include "corpuslens/par/par.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"

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
    int kill = 0;
    char *k = strchr(name, ':');
    if (k) {
        kill = !strcmp(k + 1, "kill");
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
    return cl_error("injected fault at %s on rank %d (CORPUSLENS_FAULT)", step, rank);
}

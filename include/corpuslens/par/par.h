/* Ranks agree on success, and faults can be injected at named steps.
 *
 * cl_par_agree is the only way ranks of a collective path decide whether a
 * step succeeded: every rank passes its own status; all get 0 when every rank
 * succeeded, otherwise all get -1 and every rank's cl_last_error() holds the
 * message of the lowest failing rank, prefixed "rank N: " when there is more
 * than one rank. So rank 0, the one that prints, shows the failing rank's own
 * reason, and no rank leaves a path the others follow into a collective.
 *
 * Fault injection (tests): CORPUSLENS_FAULT=RANK:STEP[@N][:kill|:int|:term|:wait]
 * makes the N-th (default first) call of cl_par_fault(STEP) on that rank fail
 * with "injected fault at STEP on rank RANK (CORPUSLENS_FAULT)", or, with
 * ":kill", end the process with SIGKILL there, or, with ":int" / ":term",
 * raise SIGINT / SIGTERM in that rank alone and carry on (interrupt.h), or,
 * with ":wait", print "rank RANK waits for a signal at STEP" and wait (at most
 * 60 s) for a real SIGINT / SIGTERM, then carry on: a test sends it then. The steps are listed in README
 * (Development); an unset variable costs one getenv per call.
 */
#ifndef CORPUSLENS_PAR_H
#define CORPUSLENS_PAR_H

#include <mpi.h>

/* Collective over comm. rc: this rank's status (0 = fine, nonzero = failed,
 * its message in cl_last_error()). Returns 0 on every rank or -1 on every rank.
 * Without MPI_Init (a single-process command) it only maps rc to 0 / -1. */
int cl_par_agree(int rc, MPI_Comm comm);

/* 0, or -1 with the injected message when CORPUSLENS_FAULT names this rank of
 * comm and this step (see above). Not collective. */
int cl_par_fault(const char *step, MPI_Comm comm);

/* One process without MPI. A command that runs on one rank does not call
 * MPI_Init (cli/mpi_start.c: a singleton start-up is slow, and jobs starting
 * together on one node raced on Open MPI's session directory). The library
 * code paths that also run on several ranks call these instead of the MPI
 * functions of the same name and arguments: with MPI initialised they are
 * those functions; without it they act as rank 0 of 1 (rank 0, size 1;
 * a collective copies this rank's contribution to the result, MPI_IN_PLACE
 * leaves it; a broadcast or barrier does nothing; Exscan leaves its result,
 * undefined on rank 0, untouched) and return MPI_SUCCESS. Without MPI the
 * datatypes are limited to the predefined ones the project uses (char, byte,
 * int, long, long long, unsigned long long, int32/64, uint64, float, double);
 * another one is a programming error: a message on stderr, then abort(). */
int cl_par_up(void); /* 1 between MPI_Init and MPI_Finalize */
int cl_par_comm_rank(MPI_Comm comm, int *rank);
int cl_par_comm_size(MPI_Comm comm, int *size);
int cl_par_barrier(MPI_Comm comm);
int cl_par_bcast(void *buf, int n, MPI_Datatype t, int root, MPI_Comm comm);
int cl_par_allreduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm);
int cl_par_reduce(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm comm);
int cl_par_exscan(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op op, MPI_Comm comm);
int cl_par_reduce_scatter(const void *send, void *recv, const int *counts, MPI_Datatype t, MPI_Op op,
                          MPI_Comm comm);
int cl_par_gatherv(const void *send, int sn, MPI_Datatype st, void *recv, const int *counts, const int *displs,
                   MPI_Datatype rt, int root, MPI_Comm comm);
int cl_par_alltoall(const void *send, int sn, MPI_Datatype st, void *recv, int rn, MPI_Datatype rt, MPI_Comm comm);
int cl_par_alltoallv(const void *send, const int *scounts, const int *sdispls, MPI_Datatype st, void *recv,
                     const int *rcounts, const int *rdispls, MPI_Datatype rt, MPI_Comm comm);

#endif

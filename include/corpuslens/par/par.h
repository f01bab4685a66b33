/* Ranks agree on success, and faults can be injected at named steps.
 *
 * cl_par_agree is the only way ranks of a collective path decide whether a
 * step succeeded: every rank passes its own status; all get 0 when every rank
 * succeeded, otherwise all get -1 and every rank's cl_last_error() holds the
 * message of the lowest failing rank, prefixed "rank N: " when there is more
 * than one rank. So rank 0, the one that prints, shows the failing rank's own
 * reason, and no rank leaves a path the others follow into a collective.
 *
 * Fault injection (tests): CORPUSLENS_FAULT=RANK:STEP[@N][:kill] makes the
 * N-th (default first) call of cl_par_fault(STEP) on that rank fail with
 * "injected fault at STEP on rank RANK (CORPUSLENS_FAULT)", or, with ":kill",
 * end the process with SIGKILL there. The steps are listed in README
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

#endif

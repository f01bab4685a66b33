/* MPI in the CLI (mpi_start.c): whether this process starts it, and the rank
 * functions the commands use with and without it. The bottom of the CLI's
 * headers: it includes nothing of the CLI, and mpi_start.c uses nothing of
 * the other CLI files (options.h and cli.h build on it, not the reverse). */
#ifndef CORPUSLENS_CLI_MPI_START_H
#define CORPUSLENS_CLI_MPI_START_H

/* 1 if this process was started by an MPI launcher (mpirun, mpiexec, srun
 * with PMI/PMIx) as one of several ranks: then, and only then, main() calls
 * MPI_Init. One process (run alone, or a launcher's only rank) runs every
 * command without MPI, as rank 0 of 1 (corpuslens/par/par.h). */
int cli_launched_by_mpi(void);

/* cli_mpi_active() is 1 when MPI_Init ran; cli_rank() is then the rank in
 * MPI_COMM_WORLD, else 0; cli_rank0() is 1 on rank 0 or without MPI.
 * cli_bcast_int(v): rank 0's v on every rank (v without MPI). */
int cli_mpi_active(void);
int cli_rank(void);
int cli_rank0(void);
int cli_bcast_int(int v);
/* Wall-clock seconds (monotonic; MPI_Wtime needs MPI_Init). */
double cli_wtime(void);

#endif

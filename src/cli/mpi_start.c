/* Does this process start MPI? Only as one of several ranks of an MPI
 * launcher. MPI_Init costs a singleton start-up (about 0.4 s with Open MPI,
 * seconds on a machine without /etc/hosts), it can fail ("Unable to start a
 * daemon on the local node"), and one-rank jobs starting together on one node
 * raced on Open MPI's session directory ("mkdir .../ompi.HOST.UID: File
 * exists", "orte_session_dir failed": a Slurm array of one-rank trainings).
 * So a command on one process, whatever it is, runs without MPI as rank 0 of
 * 1: the library's collectives go through corpuslens/par/par.h, and parallel
 * HDF5 files are written through the default (sec2) driver, as every
 * single-process command opens its files. */
#include "cli/mpi_start.h"

#include <mpi.h>
#include <stdlib.h>

#include "corpuslens/base/clock.h"

static long env_long(const char *name) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : -1;
}

int cli_launched_by_mpi(void) {
    /* Open MPI's mpirun/prterun, PMIx launchers (srun --mpi=pmix, prterun),
     * MPICH/Hydra and srun --mpi=pmi2: a process of a multi-process job. */
    if (env_long("OMPI_COMM_WORLD_SIZE") > 1 || env_long("PMI_SIZE") > 1) return 1;
    if (getenv("PMIX_RANK") || getenv("PMI_RANK")) {
        long n = env_long("OMPI_COMM_WORLD_SIZE");
        if (n < 0) n = env_long("PMI_SIZE");
        if (n < 0) n = env_long("SLURM_STEP_NUM_TASKS");
        return n != 1; /* unknown size under a PMI launcher: take MPI */
    }
    /* srun without a PMI plugin: a step of several tasks */
    if (getenv("SLURM_PROCID")) {
        long n = env_long("SLURM_STEP_NUM_TASKS");
        if (n < 0) n = env_long("SLURM_NTASKS");
        return n > 1;
    }
    return 0;
}

int cli_mpi_active(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    if (init) MPI_Finalized(&fin);
    return init && !fin;
}

int cli_rank(void) {
    int rank = 0;
    if (cli_mpi_active()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int cli_rank0(void) { return cli_rank() == 0; }

int cli_bcast_int(int v) {
    if (cli_mpi_active()) MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return v;
}

double cli_wtime(void) { return cl_wall_seconds(); }

/* Does a command line need MPI? MPI_Init costs a singleton start-up (about
 * 0.4 s with Open MPI, seconds on a machine without /etc/hosts, and it can
 * fail: "Unable to start a daemon on the local node"), so single-process
 * commands started without a launcher run without it. Parallel HDF5 does not
 * need MPI_Init for files opened with the default (sec2) driver, which is how
 * every single-process command opens its files. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/clock.h"
#include "cli/cli.h"
#include "cli/options.h"

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

/* Commands that always run on one process (rank 0 under mpirun). A command
 * not named here or below starts MPI: add a new single-process command here. */
static const char *const single[] = {"init", "import", "inspect", "predict", "generate", "capture",
                                     "demo_corpus", "prepare", "similar", "embed_sim", "tune", "serve"};

int cli_mpi_wanted(const char *name, int argc, char **argv) {
    if (cli_launched_by_mpi()) return 1;
    for (size_t i = 0; i < sizeof single / sizeof *single; i++)
        if (!strcmp(name, single[i])) return 0;
    /* one process unless the options spread work over ranks */
    if (!strcmp(name, "reduce")) return cli_argv_has(argc, argv, "compare-model");
    if (!strcmp(name, "lens")) return cli_argv_has(argc, argv, "prompts");
    if (!strcmp(name, "ablate")) return !cli_argv_has(argc, argv, "data"); /* the parentheses table */
    if (!strcmp(name, "train")) return !cli_argv_has(argc, argv, "task"); /* --task parens */
    if (!strcmp(name, "run")) return !cli_argv_has(argc, argv, "get"); /* --get reads the job file only */
    if (!strcmp(name, "explain")) return 0;                          /* ranks only when mpirun starts them */
    if (!strcmp(name, "index")) return !cli_argv_has(argc, argv, "add-sketch");
    return 1; /* scan, train, run, ablate, and commands not listed */
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

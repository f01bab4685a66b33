/* The stage runner: a job file's pipeline (generate -> import or train ->
 * prepare -> scan -> reduce), in-process, with stamps, skips and resume.
 *
 * Each stage runs a command given by the caller (the CLI passes its
 * cmd_demo_corpus, cmd_import, ...: the library does not link the CLI) with
 * an argv built from the job. After a stage succeeds, rank 0 writes three
 * root attributes into its HDF5 output: job_stamp (SHA-256 of the stage's
 * key), job_stage and job_key (the key itself: the stage's argv and the
 * SHA-256 of each input file, or the job_stamp of an input that is itself a
 * stage output too big to hash cheaply, i.e. scan.h5). A stage is skipped
 * when its output exists, has the expected format, is complete and carries
 * the job_stamp the job asks for now; any change of settings or inputs runs
 * it and every later stage again. An incomplete scan.h5 is left for the
 * scan's own resume; a training with checkpoint_every resumes from its
 * checkpoint (a "<model>.job_stamp" side file marks it as this job's).
 */
#ifndef CORPUSLENS_JOB_RUNNER_H
#define CORPUSLENS_JOB_RUNNER_H

#include <mpi.h>
#include <stdio.h>

#include "corpuslens/job/job.h"

typedef enum {
    CL_STAGE_GENERATE,
    CL_STAGE_IMPORT,
    CL_STAGE_TRAIN,
    CL_STAGE_ALTERNATIVES, /* one training per [alternatives] seed (the [train] recipe) */
    CL_STAGE_PREPARE,
    CL_STAGE_SCAN,
    CL_STAGE_TUNE,         /* [tune]: tune.h5 for the report */
    CL_STAGE_ABLATE,       /* [ablate]: ablation.h5 for the report */
    CL_STAGE_REDUCE,
    CL_STAGE_N
} cl_stage_id;

/* "generate", "import", "train", "alternatives", "prepare", "scan", "tune",
 * "ablate", "reduce" */
extern const char *const cl_stage_names[CL_STAGE_N];

/* A command that runs a stage: argv[0] is its name ("demo-corpus", "import",
 * "train", "prepare", "scan", "reduce"), argv[argc] is NULL; it may reorder
 * argv. Returns an exit status: 0, 1 error, 2 usage, 3 a scan stopped with a
 * checkpoint. Called on every rank of the communicator. */
typedef int (*cl_stage_command)(int argc, char **argv);

typedef struct {
    cl_stage_command commands[CL_STAGE_N]; /* indexed by cl_stage_id (alternatives: the
                                              train command when NULL) */
    int alt_only;         /* > 0: of the alternatives, only the alt_only-th seed (a Slurm array task) */
    const char *stages;   /* NULL: every stage of the job; else a comma-separated subset */
    int force;            /* run the selected stages even if their outputs match */
    int dry_run;          /* say what would run or be skipped, and why; run nothing */
    const char *job_path; /* named in the first line of the log */
    FILE *log;            /* rank 0's progress and summary (stdout for the CLI); NULL: none */
    cl_stage_command explain; /* with [corpus] holdout_fraction: explains one held-out window at
                                 the end (the scan also writes index.h5); NULL: not */
} cl_run_opts;

/* -1 with a message naming the first unknown stage of a --stages list. */
int cl_stage_list_check(const char *list);

/* 1 if the stage is part of this job (generate: [corpus] generate = demo;
 * import: [model] checkpoint; train: no [model]; alternatives, tune, ablate:
 * their section; the others always). */
int cl_stage_enabled(const cl_job *j, int stage);

/* The number of [alternatives] seeds of a job. */
int cl_job_n_alternatives(const cl_job *j);

/* Run the job on every rank of comm (collective). Returns 0, or the exit
 * status of the stage that failed (its own message printed by its command;
 * cl_error says which stage and how to resume), or 1 (2 for a bad stage
 * list) with cl_error set on rank 0. */
int cl_job_run(cl_job *job, const cl_run_opts *o, MPI_Comm comm);

#endif

/* corpuslens run: parse, then the stage runner (corpuslens/job/runner.h)
 * with this executable's commands for the stages. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/job/job.h"
#include "corpuslens/job/runner.h"

static const char *CMD = "run";

static int print_get(const cl_job *job, const char *get) {
    if (!strcmp(get, "stages")) {
        int first = 1;
        for (int i = 0; i < CL_STAGE_N; i++)
            if (cl_stage_enabled(job, i)) printf("%s%s", first ? "" : " ", cl_stage_names[i]), first = 0;
        printf("\n");
        return 0;
    }
    if (!strcmp(get, "alternatives")) {
        printf("%d\n", cl_job_n_alternatives(job));
        return 0;
    }
    if (!strchr(get, '.'))
        return cli_usage_error(CMD, "--get: '%s' is not SECTION.KEY, 'stages' or 'alternatives'", get);
    const char *v = cl_job_get(job, get);
    if (v) printf("%s\n", v);
    return 0;
}

static const char USAGE[] =
    "[mpirun -n R] corpuslens run JOB.ini [--stages LIST] [--alt K] [--force] [--dry-run]\n"
    "       corpuslens run JOB.ini --get SECTION.KEY | --get stages | --get alternatives";

static const char ABOUT[] =
    "Run a job file's pipeline: generate (the demo corpus) -> import (a [model]\n"
    "checkpoint) or train (no [model]) -> alternatives (one training per\n"
    "[alternatives] seed) -> prepare -> scan -> tune ([tune]) -> ablate ([ablate])\n"
    "-> reduce, each stage the command of the same name, on every rank. A stage whose complete output already\n"
    "matches the job (its settings and input hashes, recorded beside the output\n"
    "in OUTPUT.stamp) is skipped, so running the same command again after a\n"
    "failure resumes where it stopped (an interrupted scan, or a training with\n"
    "checkpoint_every, continues from its checkpoint).\n";

static const char EPILOG[] =
    "Exit status: 0, or that of the stage that failed (1 error, 2 usage, 3 a scan\n"
    "stopped with a checkpoint, 130 / 143 interrupted by SIGINT / SIGTERM: the scan\n"
    "and the training save their work, the same command resumes), 1 for a bad job file.\n"
    "A stage run again over a complete output (--force, or changed settings)\n"
    "leaves the old output in place until the new one is complete.\n"
    "\n"
    "Job file format: include/corpuslens/job/job.h; examples: jobs/demo.ini,\n"
    "jobs/tinyshakespeare.ini.\n";

int cmd_run(int argc, char **argv) {
    cl_run_opts ro = {.commands = {[CL_STAGE_GENERATE] = cmd_demo_corpus,
                                   [CL_STAGE_IMPORT] = cmd_import,
                                   [CL_STAGE_TRAIN] = cmd_train,
                                   [CL_STAGE_ALTERNATIVES] = cmd_train,
                                   [CL_STAGE_PREPARE] = cmd_prepare,
                                   [CL_STAGE_SCAN] = cmd_scan,
                                   [CL_STAGE_TUNE] = cmd_tune,
                                   [CL_STAGE_ABLATE] = cmd_ablate,
                                   [CL_STAGE_REDUCE] = cmd_reduce},
                      .explain = cmd_explain,
                      .log = stdout};
    const char *get = NULL;
    long alt = 0;
    const cli_option opts[] = {
        CLI_OPT_STRING("stages", 0, "LIST", &ro.stages,
                       "only these stages, in pipeline order (comma-separated:\n"
                       "generate, import, train, alternatives, prepare, scan, tune,\n"
                       "ablate, reduce); the Slurm scripts run one stage per batch\n"
                       "job this way"),
        CLI_OPT_INT("alt", 0, "K", &alt, 0, 16,
                    "of the alternatives, only the K-th seed (1-based; one Slurm\n"
                    "array task each); 0 = all"),
        CLI_OPT_FLAG("force", 0, &ro.force, "run the selected stages even if their outputs match\n"
                     "(the old outputs stay until their replacements are complete)"),
        CLI_OPT_FLAG("dry-run", 0, &ro.dry_run, "print what would run or be skipped, and why"),
        CLI_OPT_STRING("get", 0, "KEY", &get,
                       "print a job value after variable expansion (e.g. output.dir,\n"
                       "slurm.scan_ranks; nothing when unset), or with KEY = stages\n"
                       "the stages of this job, or with KEY = alternatives their\n"
                       "number; then exit"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, "JOB.ini", 1, 1, "no job file given"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    ro.job_path = argv[first];
    ro.alt_only = (int)alt;
    if (ro.stages && cl_stage_list_check(ro.stages)) return cli_usage_error(CMD, "%s", cl_last_error());
    if (get && !*get) return cli_usage_error(CMD, "--get needs a value");

    /* Every rank parses (same file, same environment); rank 0 reports. */
    char *errors = NULL;
    cl_job *job = cl_job_load(ro.job_path, &errors);
    if (!job) {
        if (cli_rank0()) {
            if (errors) {
                for (char *line = strtok(errors, "\n"); line; line = strtok(NULL, "\n"))
                    fprintf(stderr, "corpuslens run: %s\n", line);
            } else {
                fprintf(stderr, "corpuslens run: %s\n", cl_last_error());
            }
        }
        free(errors);
        return 1;
    }
    int rc = 0;
    if (get) {
        if (cli_rank0()) rc = print_get(job, get);
        rc = cli_bcast_int(rc);
    } else {
        rc = cl_job_run(job, &ro, MPI_COMM_WORLD);
        if (rc && cli_rank0()) fprintf(stderr, "corpuslens run: %s\n", cl_last_error());
    }
    cl_job_free(job);
    return rc;
}

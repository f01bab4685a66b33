/* The stage runner (runner.h): a job file's pipeline, in-process.
 *
 * Stages, in order: generate (demo corpus, when [corpus] generate = demo),
 * import (when [model] names a checkpoint),
 * train (when the job has no [model]), prepare, scan, reduce. Each stage is
 * a command (given by the caller: the CLI's commands of the same name) called
 * with an argv built from the job; every rank calls every command
 * (prepare/train/reduce arrange rank 0 / MPI themselves).
 *
 * Skipping: after a stage succeeds, rank 0 writes "<output>.stamp" beside its
 * HDF5 output (text: the job_stamp, SHA-256 of the stage's key; job_stage;
 * the output's size, mtime and inode when stamped; and job_key, the key
 * itself, for people: the stage's argv and the SHA-256 of each input file,
 * or the job_stamp of an input that is itself a stage output too big to hash
 * cheaply, i.e. scan.h5). The finished output is never reopened for writing
 * (a kill or a full disk there would damage a complete file); the stamp
 * file is written durably (tmp, fsync, rename). A stamp describes its output
 * only while size, mtime and inode are unchanged. Outputs of older versions
 * carry job_stamp as a root attribute, which is still read. A stage is
 * skipped when its output exists, has the expected format, is complete (a
 * "complete" attribute, where the format has one, is 1) and carries the
 * job_stamp the job asks for now.
 * Any change of settings or inputs changes the key, so the stage and every
 * later one run again. An incomplete scan.h5 is left in place for the scan's
 * own resume; a complete output with another stamp, or any under --force,
 * stays in place until its replacement is complete (replace_target below).
 * SIGINT / SIGTERM: the stage stops (scan, index, train save their work) and
 * the run exits with its status; a signal the stage did not see stops the
 * run after that stage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/base/clock.h"
#include "corpuslens/job/runner.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/job/job.h"
#include "corpuslens/model/model.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"

/* ---- small helpers ---- */

typedef struct {
    char *v[96];
    int n;
} argvec;

static int av_add(argvec *a, const char *s) {
    if (a->n >= (int)(sizeof a->v / sizeof *a->v) - 1) return cl_error("too many arguments");
    a->v[a->n] = strdup(s);
    if (!a->v[a->n]) return cl_error("out of memory");
    a->n++;
    a->v[a->n] = NULL;
    return 0;
}

static int av_addf(argvec *a, const char *fmt, ...) CL_PRINTF(2, 3);
static int av_addf(argvec *a, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return av_add(a, buf);
}

static void av_free(argvec *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    a->n = 0;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return cl_error("path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return cl_error("cannot create folder %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return cl_error("cannot create folder %s: %s", buf, strerror(errno));
    return 0;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* 1: an HDF5 file (its 8-byte signature at offset 0), 0: another file, -1: unreadable. */
static int is_hdf5(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) return cl_error("cannot open %s: %s", path, strerror(errno));
    unsigned char b[8];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == sizeof b && memcmp(b, sig, sizeof sig) == 0;
}

/* ---- stages ---- */

enum {
    ST_GENERATE = CL_STAGE_GENERATE,
    ST_IMPORT = CL_STAGE_IMPORT,
    ST_TRAIN = CL_STAGE_TRAIN,
    ST_ALT = CL_STAGE_ALTERNATIVES,
    ST_PREPARE = CL_STAGE_PREPARE,
    ST_SCAN = CL_STAGE_SCAN,
    ST_TUNE = CL_STAGE_TUNE,
    ST_ABLATE = CL_STAGE_ABLATE,
    ST_REDUCE = CL_STAGE_REDUCE,
    ST_N = CL_STAGE_N
};
const char *const cl_stage_names[CL_STAGE_N] = {"generate", "import", "train",  "alternatives", "prepare",
                                                "scan",     "tune",   "ablate", "reduce"};
#define MAX_ALT 16
#define STAGE_NAMES cl_stage_names

typedef struct {
    int id;
    int enabled;            /* part of this job */
    argvec argv;            /* the command line (argv[0] = command) */
    argvec resume_argv;     /* train with checkpoints: the command that resumes */
    cl_stage_command fn;
    char *out;              /* the file that is checked and stamped */
    const char *format;     /* its format attribute */
    int format_in_config;   /* model files keep it on /config */
    const char *hash_inputs[4 + MAX_ALT]; /* files whose SHA-256 enters the key */
    const char *stamp_inputs[2]; /* stage outputs whose job_stamp enters the key */
} stage;

typedef struct {
    cl_job *job;
    char *out_dir, *model, *corpus_h5, *scan_h5, *report_dir, *report_h5;
    stage st[ST_N];
    /* [alternatives]: one train stage per seed (id ST_ALT); st[ST_ALT] unused */
    stage alt[MAX_ALT];
    char *alt_out[MAX_ALT];
    int n_alt;
    char *ablation_h5, *ablation_svg, *tune_h5, *tune_ini;
} plan;

static void plan_free(plan *p) {
    free(p->out_dir);
    free(p->model);
    free(p->corpus_h5);
    free(p->scan_h5);
    free(p->report_dir);
    free(p->report_h5);
    for (int i = 0; i < ST_N; i++) {
        av_free(&p->st[i].argv);
        av_free(&p->st[i].resume_argv);
    }
    for (int i = 0; i < p->n_alt; i++) {
        av_free(&p->alt[i].argv);
        av_free(&p->alt[i].resume_argv);
        free(p->alt_out[i]);
    }
    free(p->ablation_h5);
    free(p->ablation_svg);
    free(p->tune_h5);
    free(p->tune_ini);
}

/* The train command line of the job's [train] recipe with `seed` (< 0: the
 * recipe's own) writing `out`, and the command that resumes it (train writes
 * checkpoints by default). */
static int train_argv(const cl_job *j, long long seed, const char *out, argvec *argv, argvec *resume) {
    int rc = 0;
    argvec *a = argv;
    rc |= av_add(a, "train");
    rc |= av_add(a, "--corpus");
    rc |= av_add(a, j->corpus_path);
    if (j->train_config) rc |= av_add(a, "--config"), rc |= av_add(a, j->train_config);
    if (j->train_tokenizer) rc |= av_add(a, "--tokenizer"), rc |= av_add(a, j->train_tokenizer);
    if (j->has_steps) rc |= av_add(a, "--steps"), rc |= av_addf(a, "%lld", j->steps);
    if (j->has_batch) rc |= av_add(a, "--batch"), rc |= av_addf(a, "%lld", j->batch);
    if (j->has_ctx) rc |= av_add(a, "--ctx"), rc |= av_addf(a, "%lld", j->ctx);
    if (j->lr) rc |= av_add(a, "--lr"), rc |= av_addf(a, "%s", j->lr);
    if (j->dropout) rc |= av_add(a, "--dropout"), rc |= av_addf(a, "%s", j->dropout);
    if (seed >= 0) rc |= av_add(a, "--seed"), rc |= av_addf(a, "%lld", seed);
    else if (j->has_train_seed) rc |= av_add(a, "--seed"), rc |= av_addf(a, "%lld", j->train_seed);
    if (j->has_eval_every) rc |= av_add(a, "--eval-every"), rc |= av_addf(a, "%lld", j->eval_every);
    if (j->train_checkpoint_every)
        rc |= av_add(a, "--checkpoint-every"), rc |= av_addf(a, "%lld", j->train_checkpoint_every);
    rc |= av_add(a, "-o");
    rc |= av_add(a, out);
    { /* train checkpoints by default (at every evaluation): a resume command always */
        /* the same without --config (the checkpoint has the architecture) */
        for (int i = 0; i < a->n; i++) {
            if (!strcmp(a->v[i], "--config")) {
                i++;
                continue;
            }
            if (!strcmp(a->v[i], "-o")) {
                rc |= av_add(resume, "--resume");
                rc |= av_add(resume, out);
            }
            rc |= av_add(resume, a->v[i]);
        }
    }
    return rc;
}

int cl_job_n_alternatives(const cl_job *j) {
    if (!j->alt_seeds || !*j->alt_seeds) return 0;
    int n = 1;
    for (const char *q = j->alt_seeds; *q; q++) n += *q == ',';
    return n;
}

/* vocab_model: 1 when [corpus] vocab_from is a model file, 0 a text (or unset) */
static int build_plan(plan *p, cl_job *j, const cl_stage_command *commands, int vocab_model) {
    memset(p, 0, sizeof *p);
    p->job = j;
    p->out_dir = strdup(j->out_dir);
    p->model = j->model_path ? strdup(j->model_path) : path_join(j->out_dir, "model.h5");
    p->corpus_h5 = path_join(j->out_dir, "corpus.h5");
    p->scan_h5 = path_join(j->out_dir, "scan.h5");
    p->report_dir = path_join(j->out_dir, "report");
    p->report_h5 = path_join(j->out_dir, "report/report.h5");
    if (!p->out_dir || !p->model || !p->corpus_h5 || !p->scan_h5 || !p->report_dir || !p->report_h5)
        return cl_error("out of memory");
    int rc = 0;
    for (int i = 0; i < ST_N; i++) p->st[i].id = i;
    /* [corpus] vocab_from: a model file (its vocabulary) or a text (its characters) */
    if (j->vocab_from && !vocab_model && j->model_path)
        return cl_error("corpus.vocab_from: %s is a text, but with [model] path the vocabulary comes from a "
                        "model file (give one, or leave vocab_from out: prepare then takes %s's)",
                        j->vocab_from, j->model_path);

    stage *s = &p->st[ST_GENERATE];
    s->enabled = cl_stage_enabled(j, CL_STAGE_GENERATE);
    s->fn = commands[ST_GENERATE];
    s->out = j->corpus_path;
    rc |= av_add(&s->argv, "demo-corpus");
    rc |= av_add(&s->argv, "--seed"), rc |= av_addf(&s->argv, "%llu", (unsigned long long)j->gen_seed);
    rc |= av_add(&s->argv, "--chars"), rc |= av_addf(&s->argv, "%lld", j->gen_chars);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, j->corpus_path);

    s = &p->st[ST_IMPORT];
    s->enabled = cl_stage_enabled(j, CL_STAGE_IMPORT);
    s->fn = commands[ST_IMPORT];
    s->out = p->model;
    s->format = CL_MODEL_FORMAT;
    s->format_in_config = 1;
    s->hash_inputs[0] = j->checkpoint;
    s->hash_inputs[1] = j->vocab_from ? j->vocab_from : j->corpus_path;
    rc |= av_add(&s->argv, "import");
    rc |= av_add(&s->argv, j->checkpoint ? j->checkpoint : "");
    rc |= av_add(&s->argv, !j->vocab_from ? "--corpus" : vocab_model ? "--vocab-from" : "--vocab-file");
    rc |= av_add(&s->argv, j->vocab_from ? j->vocab_from : j->corpus_path);
    if (j->has_import_n_head) rc |= av_add(&s->argv, "--n-head"), rc |= av_addf(&s->argv, "%lld", j->import_n_head);
    if (j->import_attn_scale) rc |= av_add(&s->argv, "--attn-scale"), rc |= av_add(&s->argv, j->import_attn_scale);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->model);

    s = &p->st[ST_TRAIN];
    s->enabled = cl_stage_enabled(j, CL_STAGE_TRAIN);
    s->fn = commands[ST_TRAIN];
    s->out = p->model;
    s->format = CL_MODEL_FORMAT;
    s->format_in_config = 1;
    s->hash_inputs[0] = j->corpus_path;
    rc |= train_argv(j, -1, p->model, &s->argv, &s->resume_argv);

    /* [alternatives]: the same recipe, other seeds */
    if (j->alt_seeds) {
        for (const char *q = j->alt_seeds; *q;) {
            if (p->n_alt == MAX_ALT) return cl_error("[alternatives]: at most %d seeds", MAX_ALT);
            long long seed = strtoll(q, NULL, 10);
            char name[64];
            snprintf(name, sizeof name, "model-seed%lld.h5", seed);
            stage *a = &p->alt[p->n_alt];
            a->id = ST_ALT;
            a->enabled = 1;
            a->fn = commands[ST_ALT] ? commands[ST_ALT] : commands[ST_TRAIN];
            a->out = p->alt_out[p->n_alt] = path_join(j->out_dir, name);
            if (!a->out) return cl_error("out of memory");
            a->format = CL_MODEL_FORMAT;
            a->format_in_config = 1;
            a->hash_inputs[0] = j->corpus_path;
            rc |= train_argv(j, seed, a->out, &a->argv, &a->resume_argv);
            p->n_alt++;
            const char *c = strchr(q, ',');
            if (!c) break;
            q = c + 1;
        }
    }

    s = &p->st[ST_PREPARE];
    s->enabled = 1;
    s->fn = commands[ST_PREPARE];
    s->out = p->corpus_h5;
    s->format = CL_CORPUS_FORMAT;
    s->hash_inputs[0] = j->corpus_path;
    s->hash_inputs[1] = p->model;
    s->hash_inputs[2] = j->prompt_file;
    s->hash_inputs[3] = vocab_model ? j->vocab_from : NULL;
    rc |= av_add(&s->argv, "prepare");
    rc |= av_add(&s->argv, j->corpus_path);
    rc |= av_add(&s->argv, "--len"), rc |= av_addf(&s->argv, "%lld", j->len);
    if (j->prompt_file) {
        rc |= av_add(&s->argv, "--prompt-file");
        rc |= av_add(&s->argv, j->prompt_file);
    } else {
        rc |= av_add(&s->argv, "--prompts"), rc |= av_addf(&s->argv, "%lld", j->prompts);
        if (j->has_seed) rc |= av_add(&s->argv, "--seed"), rc |= av_addf(&s->argv, "%lld", j->seed);
    }
    if (j->holdout_fraction) rc |= av_add(&s->argv, "--holdout-fraction"), rc |= av_add(&s->argv, j->holdout_fraction);
    /* the vocabulary: vocab_from's when it is a model, else the model's (an imported
     * checkpoint's is vocab_from's text's) */
    rc |= av_add(&s->argv, "--vocab-from");
    rc |= av_add(&s->argv, vocab_model ? j->vocab_from : p->model);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->corpus_h5);

    s = &p->st[ST_SCAN];
    s->enabled = 1;
    s->fn = commands[ST_SCAN];
    s->out = p->scan_h5;
    s->format = CL_SCAN_FORMAT;
    s->hash_inputs[0] = p->model;
    s->hash_inputs[1] = p->corpus_h5;
    rc |= av_add(&s->argv, "scan");
    rc |= av_add(&s->argv, "--model");
    rc |= av_add(&s->argv, p->model);
    rc |= av_add(&s->argv, "--corpus");
    rc |= av_add(&s->argv, p->corpus_h5);
    if (j->hook) rc |= av_add(&s->argv, "--hook"), rc |= av_add(&s->argv, j->hook);
    if (j->prefilter) rc |= av_add(&s->argv, "--prefilter"), rc |= av_add(&s->argv, j->prefilter);
    if (j->bin_width) rc |= av_add(&s->argv, "--bin-width"), rc |= av_add(&s->argv, j->bin_width);
    if (j->match_thresholds)
        rc |= av_add(&s->argv, "--match-thresholds"), rc |= av_add(&s->argv, j->match_thresholds);
    if (j->has_match_cap) rc |= av_add(&s->argv, "--match-cap"), rc |= av_addf(&s->argv, "%lld", j->match_cap);
    if (j->has_scan_batch) rc |= av_add(&s->argv, "--batch"), rc |= av_addf(&s->argv, "%lld", j->scan_batch);
    if (j->checkpoint_every)
        rc |= av_add(&s->argv, "--checkpoint-every"), rc |= av_add(&s->argv, j->checkpoint_every);
    /* the index too, for explain (the scan computes its vectors anyway); a BPE
       scan does not write one (scan --index-out refuses it): run index */
    if (j->holdout_fraction && !j->train_tokenizer) {
        char *ix = path_join(j->out_dir, "index.h5");
        rc |= !ix || av_add(&s->argv, "--index-out") || av_add(&s->argv, ix);
        free(ix);
    }
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->scan_h5);

    p->ablation_h5 = path_join(j->out_dir, "ablation.h5");
    p->ablation_svg = path_join(j->out_dir, "ablation.svg");
    p->tune_h5 = path_join(j->out_dir, "tune.h5");
    p->tune_ini = path_join(j->out_dir, "tune.ini");
    if (!p->ablation_h5 || !p->ablation_svg || !p->tune_h5 || !p->tune_ini) return cl_error("out of memory");

    s = &p->st[ST_TUNE];
    s->enabled = cl_stage_enabled(j, CL_STAGE_TUNE);
    s->fn = commands[ST_TUNE];
    s->out = p->tune_h5;
    s->format = CL_TUNE_FORMAT;
    s->stamp_inputs[0] = p->scan_h5;
    rc |= av_add(&s->argv, "tune");
    rc |= av_add(&s->argv, p->scan_h5);
    if (j->tune_fraction) rc |= av_add(&s->argv, "--train-fraction"), rc |= av_add(&s->argv, j->tune_fraction);
    if (j->has_tune_seed) rc |= av_add(&s->argv, "--seed"), rc |= av_addf(&s->argv, "%lld", j->tune_seed);
    if (j->has_tune_restarts)
        rc |= av_add(&s->argv, "--restarts"), rc |= av_addf(&s->argv, "%lld", j->tune_restarts);
    /* [reduce]'s values are the reference the fit is reported beside */
    if (j->thresholds && j->weights)
        rc |= av_add(&s->argv, "--thresholds"), rc |= av_add(&s->argv, j->thresholds),
        rc |= av_add(&s->argv, "--weights"), rc |= av_add(&s->argv, j->weights);
    rc |= av_add(&s->argv, "-o"), rc |= av_add(&s->argv, p->tune_ini);
    rc |= av_add(&s->argv, "--h5"), rc |= av_add(&s->argv, p->tune_h5);

    s = &p->st[ST_ABLATE];
    s->enabled = cl_stage_enabled(j, CL_STAGE_ABLATE);
    s->fn = commands[ST_ABLATE];
    s->out = p->ablation_h5;
    s->format = CL_ABLATION_FORMAT;
    s->hash_inputs[0] = p->model;
    s->hash_inputs[1] = p->corpus_h5;
    rc |= av_add(&s->argv, "ablate");
    rc |= av_add(&s->argv, "--model"), rc |= av_add(&s->argv, p->model);
    rc |= av_add(&s->argv, "--corpus"), rc |= av_add(&s->argv, p->corpus_h5);
    if (j->has_ablate_max) rc |= av_add(&s->argv, "--max"), rc |= av_addf(&s->argv, "%lld", j->ablate_max);
    if (j->ablate_mode) rc |= av_add(&s->argv, "--mode"), rc |= av_add(&s->argv, j->ablate_mode);
    rc |= av_add(&s->argv, "--svg"), rc |= av_add(&s->argv, p->ablation_svg);
    rc |= av_add(&s->argv, "-o"), rc |= av_add(&s->argv, p->ablation_h5);

    s = &p->st[ST_REDUCE];
    s->enabled = 1;
    s->fn = commands[ST_REDUCE];
    s->out = p->report_h5;
    s->format = CL_REPORT_FORMAT;
    s->stamp_inputs[0] = p->scan_h5;
    /* the other seeds, the ablation and the tuning enter the key by content */
    for (int i = 0; i < p->n_alt; i++) s->hash_inputs[i] = p->alt_out[i];
    if (j->has_ablate) s->hash_inputs[p->n_alt] = p->ablation_h5;
    if (j->has_tune) s->hash_inputs[p->n_alt + 1] = p->tune_h5;
    rc |= av_add(&s->argv, "reduce");
    rc |= av_add(&s->argv, p->scan_h5);
    if (j->thresholds) rc |= av_add(&s->argv, "--thresholds"), rc |= av_add(&s->argv, j->thresholds);
    if (j->weights) rc |= av_add(&s->argv, "--weights"), rc |= av_add(&s->argv, j->weights);
    for (size_t i = 0; i < j->n_compare; i++)
        rc |= av_add(&s->argv, "--compare-model"), rc |= av_add(&s->argv, j->compare_models[i]);
    for (int i = 0; i < p->n_alt; i++) rc |= av_add(&s->argv, "--compare-model"), rc |= av_add(&s->argv, p->alt_out[i]);
    if (j->has_ablate) rc |= av_add(&s->argv, "--ablation"), rc |= av_add(&s->argv, p->ablation_h5);
    if (j->has_tune) rc |= av_add(&s->argv, "--tuned"), rc |= av_add(&s->argv, p->tune_h5);
    if (j->examples) rc |= av_add(&s->argv, "--examples"), rc |= av_add(&s->argv, j->examples);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->report_dir);
    return rc ? -1 : 0;
}

/* ---- keys and stamps ---- */

static void stamp_path(const char *out, char *buf, size_t n) { snprintf(buf, n, "%s.stamp", out); }

/* The identity of OUT as a stamp records it: size, mtime (ns), inode. */
static int out_identity(const char *out, char *buf, size_t n) {
    struct stat st;
    if (stat(out, &st)) return -1;
    snprintf(buf, n, "%lld %lld.%09ld %llu", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             (long)st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
    return 0;
}

static int read_root_str(const char *path, const char *attr, char *buf, size_t n) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    int rc = cl_h5_attr_read_str(f, attr, buf, n);
    if (rc < 0) cl_error_prefix("%s: ", path);
    H5Fclose(f);
    return rc;
}

/* The job stamp of OUT (65 bytes): from "OUT.stamp" when it describes OUT as
 * it is now, else from the job_stamp attribute older versions wrote into OUT.
 * 0, or -1 (no stamp; no message needed). */
static int read_stamp(const char *out, char stamp[65]) {
    char side[4200], line[256], want[160], id[256] = "", st[256] = "";
    stamp_path(out, side, sizeof side);
    FILE *f = fopen(side, "rb");
    if (f) {
        int ok = fgets(line, sizeof line, f) && !strcmp(line, "corpuslens-job-stamp 1\n");
        while (ok && fgets(line, sizeof line, f) && strcmp(line, "key\n")) {
            line[strcspn(line, "\n")] = '\0';
            if (!strncmp(line, "job_stamp ", 10)) snprintf(st, sizeof st, "%s", line + 10);
            else if (!strncmp(line, "file ", 5)) snprintf(id, sizeof id, "%s", line + 5);
        }
        fclose(f);
        if (ok && strlen(st) == 64 && !out_identity(out, want, sizeof want) && !strcmp(id, want)) {
            memcpy(stamp, st, 65);
            return 0;
        }
        return -1; /* a stamp of another file (the output was replaced since) */
    }
    char h[128] = "";
    if (read_root_str(out, "job_stamp", h, sizeof h) < 0 || strlen(h) != 64) return -1;
    memcpy(stamp, h, 65);
    return 0;
}

/* The key of a stage (malloc'ed text) and its SHA-256 (stamp). Needs the
 * stage's inputs: a missing one is an error naming it. */
static char *stage_key(const plan *p, const stage *s, char stamp[65]) {
    size_t cap = 8192, n = 0;
    char *k = malloc(cap);
    if (!k) {
        cl_error("out of memory");
        return NULL;
    }
#define KPUT(...)                                                                  \
    do {                                                                           \
        int w_ = snprintf(k + n, cap - n, __VA_ARGS__);                            \
        if (w_ < 0 || (size_t)w_ >= cap - n) {                                     \
            size_t nc_ = cap * 2 + (w_ > 0 ? (size_t)w_ : 0);                      \
            char *nk_ = realloc(k, nc_);                                           \
            if (!nk_) {                                                            \
                free(k);                                                           \
                cl_error("out of memory");                                         \
                return NULL;                                                       \
            }                                                                      \
            k = nk_;                                                               \
            cap = nc_;                                                             \
            w_ = snprintf(k + n, cap - n, __VA_ARGS__);                            \
        }                                                                          \
        n += (size_t)w_;                                                           \
    } while (0)
    KPUT("corpuslens-run 1\nstage %s\nargv", STAGE_NAMES[s->id]);
    for (int i = 0; i < s->argv.n; i++) KPUT(" %s", s->argv.v[i]);
    KPUT("\n");
    for (size_t i = 0; i < sizeof s->hash_inputs / sizeof *s->hash_inputs; i++) {
        const char *in = s->hash_inputs[i];
        if (!in) continue;
        char h[65];
        if (!file_exists(in)) {
            free(k);
            cl_error("stage %s needs %s, which does not exist (yet)", STAGE_NAMES[s->id], in);
            return NULL;
        }
        if (cl_sha256_file(in, h) < 0) {
            free(k);
            return NULL;
        }
        KPUT("sha256 %s %s\n", h, in);
    }
    for (int i = 0; i < 2; i++) {
        const char *in = s->stamp_inputs[i];
        if (!in) continue;
        char h[65] = "";
        if (!file_exists(in)) {
            free(k);
            cl_error("stage %s needs %s, which does not exist (yet)", STAGE_NAMES[s->id], in);
            return NULL;
        }
        if (read_stamp(in, h) < 0) {
            free(k);
            cl_error("stage %s needs %s as written by this job's %s stage (%s)",
                     STAGE_NAMES[s->id], in, "scan",
                     "no job stamp describes it: run that stage first");
            return NULL;
        }
        KPUT("job_stamp %s %s\n", h, in);
    }
#undef KPUT
    (void)p;
    cl_sha256_mem(k, n, stamp);
    return k;
}

enum { OUT_MISSING, OUT_INCOMPLETE, OUT_STALE, OUT_MATCHES };

/* What state is the stage's output in? why: a few words for the banner. */
static int output_state(const stage *s, const char *stamp, char *why, size_t nwhy) {
    char state_dir[4200];
    snprintf(state_dir, sizeof state_dir, "%s.state", s->out);
    if (!file_exists(s->out) && s->id == ST_SCAN && file_exists(state_dir)) {
        snprintf(why, nwhy, "an interrupted scan: incomplete, resuming from %.900s/ if its "
                            "arguments match", state_dir);
        return OUT_INCOMPLETE;
    }
    if (!file_exists(s->out)) {
        snprintf(why, nwhy, "no %s yet", s->out);
        return OUT_MISSING;
    }
    hid_t f = cl_h5_open_read(s->out);
    if (f < 0) {
        snprintf(why, nwhy, "%s is not readable: %s", s->out, cl_last_error());
        return OUT_INCOMPLETE;
    }
    int st = OUT_MATCHES;
    char fmt[64] = "", have[65] = "";
    hid_t g = f;
    if (s->format_in_config)
        g = cl_h5_exists(f, "/config") ? H5Gopen2(f, "/config", H5P_DEFAULT) : H5I_INVALID_HID;
    if (g < 0 || cl_h5_attr_read_str(g, "format", fmt, sizeof fmt) < 0 || strcmp(fmt, s->format)) {
        snprintf(why, nwhy, "%s is not a %s file", s->out, s->format);
        st = OUT_INCOMPLETE;
    } else if (cl_h5_attr_exists(f, "complete") > 0) {
        long long c = 0;
        if (cl_h5_attr_read_int(f, "complete", &c) < 0 || c != 1) {
            snprintf(why, nwhy, "%s is incomplete", s->out);
            st = OUT_INCOMPLETE;
        }
    } else if (s->id == ST_SCAN) {
        snprintf(why, nwhy, "%s is incomplete", s->out);
        st = OUT_INCOMPLETE;
    }
    if (st == OUT_MATCHES && s->id == ST_REDUCE) {
        char md[4200];
        snprintf(md, sizeof md, "%s", s->out);
        char *slash = strrchr(md, '/');
        if (slash) snprintf(slash + 1, sizeof md - (size_t)(slash + 1 - md), "report.md");
        if (!file_exists(md)) {
            snprintf(why, nwhy, "%.900s is missing", md);
            st = OUT_INCOMPLETE;
        }
    }
    if (g >= 0 && g != f) H5Gclose(g);
    H5Fclose(f);
    if (st == OUT_MATCHES) {
        if (read_stamp(s->out, have) < 0) {
            snprintf(why, nwhy, "%s was not made by this job", s->out);
            st = OUT_STALE;
        } else if (strcmp(have, stamp)) {
            snprintf(why, nwhy, "%s was made with other settings or inputs", s->out);
            st = OUT_STALE;
        } else {
            snprintf(why, nwhy, "%s is complete and matches the job", s->out);
        }
    }
    return st;
}

/* "<out>.stamp" beside the finished output (never the output itself). */
static int write_stamp(const stage *s, const char *stamp, const char *key) {
    char side[4200], tmp[4220], id[160];
    stamp_path(s->out, side, sizeof side);
    snprintf(tmp, sizeof tmp, "%s.tmp", side);
    if (out_identity(s->out, id, sizeof id)) return cl_error("cannot stat %s: %s", s->out, strerror(errno));
    FILE *f = fopen(tmp, "wb");
    if (!f) return cl_error("cannot write %s: %s", tmp, strerror(errno));
    int bad = fprintf(f, "corpuslens-job-stamp 1\njob_stamp %s\njob_stage %s\nfile %s\nkey\n%s", stamp,
                      STAGE_NAMES[s->id], id, key) < 0;
    bad |= fflush(f) != 0;
    int e = errno;
    if (fclose(f) && !bad) bad = 1, e = errno;
    if (bad) {
        remove(tmp);
        return cl_error("cannot write %s: %s", side, strerror(e));
    }
    return cl_commit_file(tmp, side);
}

/* The generate stage: the text is cheap to make, so compare it directly. */
static int generate_matches(const cl_job *j, char *why, size_t nwhy) {
    size_t len;
    char *text = cl_demo_corpus(j->gen_seed, (size_t)j->gen_chars, &len);
    if (!text) return 0;
    int same = 0;
    FILE *f = fopen(j->corpus_path, "rb");
    if (f) {
        char *buf = malloc(len + 1);
        if (buf) {
            size_t got = fread(buf, 1, len + 1, f);
            same = got == len && !memcmp(buf, text, len);
            free(buf);
        }
        fclose(f);
    }
    free(text);
    snprintf(why, nwhy, same ? "%s holds the demo corpus of this seed and size"
                             : "no matching %s yet", j->corpus_path);
    return same;
}

/* A training with checkpoints writes its model file before it is finished.
 * "<model>.job_stamp" (the stamp of the training it belongs to) is written
 * before the training starts and removed when it is stamped: a model file
 * with a /train group and a matching side file is that training's checkpoint,
 * and the training resumes from it. */
static char *sidecar_path(const char *out) {
    size_t n = strlen(out) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.job_stamp", out);
    return p;
}

static int train_can_resume(const stage *s, const char *out, const char *stamp) {
    if (!s->resume_argv.n || !file_exists(out)) return 0;
    char *side = sidecar_path(out);
    if (!side) return 0;
    char have[80] = "";
    FILE *f = fopen(side, "r");
    int ok = f && fgets(have, sizeof have, f) && !strncmp(have, stamp, 64);
    if (f) fclose(f);
    free(side);
    if (!ok) return 0;
    hid_t h = cl_h5_open_read(out);
    if (h < 0) return 0;
    ok = cl_h5_exists(h, "/train") > 0;
    H5Fclose(h);
    return ok;
}

static int write_sidecar(const char *out, const char *stamp) {
    char *side = sidecar_path(out);
    if (!side) return cl_error("out of memory");
    FILE *f = fopen(side, "w");
    int rc = f && fprintf(f, "%s\n", stamp) > 0 ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    if (rc) cl_error("cannot write %s: %s", side, strerror(errno));
    free(side);
    return rc;
}

static void remove_sidecar(const char *out) {
    char *side = sidecar_path(out);
    if (side) remove(side);
    free(side);
}

/* ---- replacing a complete output (--force, or other settings) ----
 * The old output stays in place until its replacement is complete. Most
 * commands already write their file to a temporary name and rename it at
 * the end; a training writes checkpoints into its -o as it goes (and at
 * SIGINT), and reduce removes its files when it fails: those two stages
 * write "<target>.next" instead, which replaces the target once the stage
 * succeeded (a file: cl_commit_file; the report folder: exchanged with
 * renameat2, then the old one removed). An interrupted replacement is
 * resumed from "<target>.next" by the next run that replaces again. */
static const char *replace_target(const plan *p, const stage *s) {
    if (s->id == ST_TRAIN || s->id == ST_ALT) return s->out;
    if (s->id == ST_REDUCE) return p->report_dir;
    return NULL;
}

static char *next_path(const char *target) {
    size_t n = strlen(target) + 8;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.next", target);
    return p;
}

/* dst = src with every argument equal to from replaced by to */
static int av_copy_replace(argvec *dst, const argvec *src, const char *from, const char *to) {
    for (int i = 0; i < src->n; i++)
        if (av_add(dst, strcmp(src->v[i], from) ? src->v[i] : to)) return -1;
    return 0;
}

/* the files directly in dir, then dir (a report folder has no subfolders) */
static void remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                remove(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

static int commit_next(const char *next, const char *target, int is_dir) {
    if (!is_dir) return cl_commit_file(next, target);
    if (renameat2(AT_FDCWD, next, AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
        remove_flat_dir(next); /* the old report, now under the temporary name */
    } else {
        /* no RENAME_EXCHANGE here: the old folder aside, the new one in place */
        char old[4200];
        snprintf(old, sizeof old, "%s.old", target);
        remove_flat_dir(old);
        if (file_exists(target) && rename(target, old))
            return cl_error("cannot move %s aside: %s", target, strerror(errno));
        if (rename(next, target)) {
            int e = errno;
            rename(old, target);
            return cl_error("cannot rename %s to %s: %s", next, target, strerror(e));
        }
        remove_flat_dir(old);
    }
    return cl_fsync_dir_of(target);
}

/* A plain run that skips a stage because its complete output matches keeps
 * that output: the checkpoint of a replacement that was interrupted (under
 * --force; scan.h5.state/ and the scan's index.h5.parts/, or <target>.next)
 * is then of no use, and is removed, with one line in the log. A forced run
 * of the same stage resumes from it instead (the scan's own resume;
 * train_can_resume). Rank 0 alone. */
static void drop_abandoned_replacement(const plan *p, const stage *s, FILE *log) {
    char dirs[2][4200];
    int nd = 0;
    if (s->id == ST_SCAN) {
        snprintf(dirs[nd++], sizeof dirs[0], "%s.state", s->out);
        for (int a = 0; a + 1 < s->argv.n; a++)
            if (!strcmp(s->argv.v[a], "--index-out")) snprintf(dirs[nd++], sizeof dirs[0], "%s.parts", s->argv.v[a + 1]);
    }
    for (int k = 0; k < nd; k++)
        if (file_exists(dirs[k])) {
            remove_flat_dir(dirs[k]);
            if (log) fprintf(log, "   removed %s/, the checkpoint of an interrupted forced run (the old output stays)\n", dirs[k]);
        }
    const char *target = replace_target(p, s);
    char *next = target ? next_path(target) : NULL;
    if (next && file_exists(next)) {
        struct stat st;
        if (stat(next, &st) == 0 && S_ISDIR(st.st_mode)) remove_flat_dir(next);
        else remove(next);
        if (log) fprintf(log, "   removed %s, the checkpoint of an interrupted forced run (the old output stays)\n", next);
    }
    free(next);
}

/* ---- the report summary ---- */

static void print_stats(FILE *out, hid_t f, const char *dset, const char *label) {
    if (!cl_h5_exists(f, dset)) return;
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0) return;
    double mean, std, mn, med, mx;
    long long count = 0;
    if (cl_h5_attr_read_double(d, "mean", &mean) == 0 && cl_h5_attr_read_double(d, "std", &std) == 0 &&
        cl_h5_attr_read_double(d, "min", &mn) == 0 && cl_h5_attr_read_double(d, "median", &med) == 0 &&
        cl_h5_attr_read_double(d, "max", &mx) == 0) {
        cl_h5_attr_read_int(d, "count", &count);
        char own[128] = "";
        if (cl_h5_attr_exists(d, "label") > 0 && cl_h5_attr_read_str(d, "label", own, sizeof own) == 0)
            label = own;
        int extra = 0; /* UTF-8 continuation bytes (the ∞ sign) take no column */
        for (const char *c = label; *c && c - label < 40; c++) extra += ((unsigned char)*c & 0xC0) == 0x80;
        if (count == 0) /* every prompt empty: no statistics, never 0.0000 */
            fprintf(out, "  %-*.*s %7s %7s %7s %7s %7s %7lld  n/a (no match)\n", 36 + extra, 36 + extra, label, "-", "-",
                    "-", "-", "-", count);
        else
            fprintf(out, "  %-*.*s %7.4f %7.4f %7.4f %7.4f %7.4f %7lld\n", 36 + extra, 36 + extra, label, mean, std, mn,
                    med, mx, count);
    }
    H5Dclose(d);
}

static herr_t baseline_cb(hid_t g, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    char path[512];
    snprintf(path, sizeof path, "%s/hellinger", name);
    char label[300];
    snprintf(label, sizeof label, "baseline %s", name);
    print_stats(user, g, path, label);
    return 0;
}

/* the mean attribute of dset, or -1 */
static double stat_mean(hid_t f, const char *dset) {
    double m = -1;
    if (!cl_h5_exists(f, dset)) return -1;
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0) return -1;
    if (cl_h5_attr_read_double(d, "mean", &m) < 0) m = -1;
    H5Dclose(d);
    return m;
}

/* One line: does the approximation beat every corpus baseline (mean H)? Said plainly either way. */
static void print_verdict(FILE *out, hid_t f) {
    static const char *const names[] = {"ngram", "infgram", "backoff", "unigram"};
    double a = stat_mean(f, "/hellinger"), best = -1;
    const char *bn = NULL;
    for (int i = 0; i < 4; i++) {
        char path[64];
        snprintf(path, sizeof path, "/baselines/%s/hellinger", names[i]);
        double m = stat_mean(f, path);
        if (m >= 0 && (best < 0 || m < best)) best = m, bn = names[i];
    }
    if (!(a >= 0) || !bn) return;
    if (a < best)
        fprintf(out, "verdict: the approximation (mean H %.4f) is closer to the model than every corpus baseline "
                     "(the best, %s: %.4f)\n", a, bn, best);
    else
        fprintf(out, "verdict: the approximation (mean H %.4f) does NOT beat the corpus baseline %s (%.4f) on these "
                     "prompts\n", a, bn, best);
}

static void print_report(FILE *out, const plan *p) {
    hid_t f = cl_h5_open_read(p->report_h5);
    if (f < 0) return;
    fprintf(out, "\nHellinger distance to the model's prediction (0 = same distribution, 1 = disjoint):\n");
    fprintf(out, "  %-36s %7s %7s %7s %7s %7s %7s\n", "", "mean", "std", "min", "median", "max", "prompts");
    print_stats(out, f, "/hellinger", "approximation");
    if (cl_h5_exists(f, "/baselines")) {
        hid_t g = H5Gopen2(f, "/baselines", H5P_DEFAULT);
        if (g >= 0) {
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, baseline_cb, out);
            H5Gclose(g);
        }
        fprintf(out, "what the rows mean (lower is closer to the model):\n"
                     "  approximation   the method: next characters of the training strings similar to the prompt, per block, weighted\n"
                     "  block_B         the strings of block B alone\n"
                     "  lens_B          the logit lens after block B; the last block's lens is the model itself (0)\n"
                     "  ngram           the next characters after the prompt's exact string in the corpus\n"
                     "  infgram         the ∞-gram: after the longest suffix of the prompt found in the corpus (= ngram\n"
                     "                  for these prompts, which are corpus substrings; it differs on held-out text)\n"
                     "  backoff         after the longest suffix with at least 10 occurrences\n"
                     "  unigram         the corpus's character frequencies\n");
        print_verdict(out, f);
    }
    H5Fclose(f);
}

/* The end of a run with a held-out part: one explained held-out window
   (explain --eval-text 1), on every rank of comm. Nothing when the index is
   missing; a failure is reported, not fatal (the stages are done). */
static void explain_one(const plan *p, const cl_job *j, const cl_run_opts *o, FILE *log, MPI_Comm comm) {
    char *ix = path_join(j->out_dir, "index.h5");
    int rank = 0;
    cl_par_comm_rank(comm, &rank); /* rank 0 of 1 without MPI (par.h) */
    int ok = ix && file_exists(ix) && file_exists(p->corpus_h5) && file_exists(p->model);
    cl_par_bcast(&ok, 1, MPI_INT, 0, comm);
    argvec a = {0};
    if (ok && (av_add(&a, "explain") || av_add(&a, "--index") || av_add(&a, ix) || av_add(&a, "--corpus") ||
               av_add(&a, p->corpus_h5) || av_add(&a, "--model") || av_add(&a, p->model) ||
               av_add(&a, "--eval-text") || av_add(&a, "1") || av_add(&a, "--show") || av_add(&a, "3") ||
               (j->thresholds && (av_add(&a, "--thresholds") || av_add(&a, j->thresholds))) ||
               (j->weights && (av_add(&a, "--weights") || av_add(&a, j->weights)))))
        ok = 0;
    if (ok) {
        if (log) {
            fprintf(log, "\none explained window of the HELD-OUT text (not in the corpus searched): the model's next\n"
                         "characters, the approximation's, and per block the most similar training strings\n"
                         "(similarity, then their next characters with counts):\n");
            fflush(log);
        }
        char *args[96];
        for (int k = 0; k <= a.n; k++) args[k] = a.v[k];
        int src = o->explain(a.n, args);
        fflush(stdout);
        if (log && src) fprintf(log, "(explain failed with status %d: the stages' results above stand)\n", src);
    }
    av_free(&a);
    free(ix);
}

/* ---- main ---- */

static int stage_selected(const char *list, int id) {
    if (!list) return 1;
    size_t n = strlen(STAGE_NAMES[id]);
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == n && !strncmp(p, STAGE_NAMES[id], n)) return 1;
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

int cl_stage_list_check(const char *list) {
    if (!*list) return cl_error("--stages: the list is empty");
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < ST_N; i++)
            if (strlen(STAGE_NAMES[i]) == len && !strncmp(p, STAGE_NAMES[i], len)) ok = 1;
        if (!ok)
            return cl_error("--stages: unknown stage '%.*s' (generate, import, train, alternatives, prepare, scan, tune, ablate, reduce)",
                            (int)len, p);
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

int cl_stage_enabled(const cl_job *j, int stage) {
    switch (stage) {
    case CL_STAGE_GENERATE: return j->generate != 0;
    case CL_STAGE_IMPORT: return j->checkpoint != NULL;
    case CL_STAGE_TRAIN: return j->model_path == NULL && j->checkpoint == NULL;
    case CL_STAGE_ALTERNATIVES: return cl_job_n_alternatives(j) > 0;
    case CL_STAGE_TUNE: return j->has_tune;
    case CL_STAGE_ABLATE: return j->has_ablate;
    case CL_STAGE_PREPARE:
    case CL_STAGE_SCAN:
    case CL_STAGE_REDUCE: return 1;
    default: return 0;
    }
}

/* The job's stages in pipeline order: st[] with one stage per [alternatives]
 * seed in the place of ST_ALT. */
static int flat_stages(plan *p, stage **out) {
    int n = 0;
    for (int i = 0; i < ST_N; i++) {
        if (i == ST_ALT)
            for (int a = 0; a < p->n_alt; a++) out[n++] = &p->alt[a];
        else if (p->st[i].enabled)
            out[n++] = &p->st[i];
    }
    return n;
}

static int bcast_int(int v, MPI_Comm comm) {
    cl_par_bcast(&v, 1, MPI_INT, 0, comm);
    return v;
}

int cl_job_run(cl_job *job, const cl_run_opts *o, MPI_Comm comm) {
    int rank = 0, R = 1;
    cl_par_comm_rank(comm, &rank);
    cl_par_comm_size(comm, &R);
    FILE *log = rank == 0 ? o->log : NULL;
    const char *stages = o->stages;
    int force = o->force, dry = o->dry_run;
    if (stages && cl_stage_list_check(stages)) return 2;
    /* what vocab_from is: rank 0 looks, every rank follows (a file system
       that shows it to some ranks only must not split them) */
    int vocab_model = 0;
    if (job->vocab_from) {
        if (rank == 0) {
            vocab_model = is_hdf5(job->vocab_from);
            if (vocab_model < 0) cl_error_prefix("corpus.vocab_from: ");
        }
        cl_par_bcast(&vocab_model, 1, MPI_INT, 0, comm);
        if (vocab_model < 0) {
            if (rank != 0) cl_error("corpus.vocab_from: rank 0 cannot read %s", job->vocab_from);
            return 1;
        }
    }
    plan p;
    if (build_plan(&p, job, o->commands, vocab_model) < 0) {
        plan_free(&p);
        return 1;
    }
    if (o->alt_only > p.n_alt) {
        cl_error("--alt %d: the job has %d alternative seed%s", o->alt_only, p.n_alt, p.n_alt == 1 ? "" : "s");
        plan_free(&p);
        return 2;
    }
    double t_all = cl_wall_seconds();
    stage *flat[ST_N + MAX_ALT];
    int n_enabled = flat_stages(&p, flat);
    if (log) {
        fprintf(log, "corpuslens run %s: %d rank%s, output in %s\n", o->job_path ? o->job_path : "", R,
                R == 1 ? "" : "s", p.out_dir);
        fflush(log);
    }
    int rc = 0;
    if (!dry) {
        rc = rank == 0 ? mkdir_p(p.out_dir) : 0;
        rc = bcast_int(rc, comm) ? 1 : 0;
    }
    int k = 0, ran = 0, skipped = 0;
    for (int q = 0; q < n_enabled && !rc; q++) {
        stage *s = flat[q];
        int i = s->id;
        k++;
        if (!stage_selected(stages, i)) continue;
        if (i == ST_ALT && o->alt_only > 0 && s != &p.alt[o->alt_only - 1]) continue;
        char why[1024] = "", stamp[65] = "";
        char *key = NULL;
        /* rank 0 decides: 0 run, 1 skip, 2 resume a training, -1 error (inputs missing) */
        int decision = 0, state = OUT_MISSING, replacing = 0;
        if (rank == 0) {
            if (i == ST_GENERATE) {
                decision = !force && generate_matches(job, why, sizeof why);
            } else {
                key = stage_key(&p, s, stamp);
                if (!key) {
                    if (dry) snprintf(why, sizeof why, "its inputs are not there yet");
                    else decision = -1;
                } else {
                    state = output_state(s, stamp, why, sizeof why);
                    decision = !force && state == OUT_MATCHES;
                    if (force && state == OUT_MATCHES) snprintf(why, sizeof why, "--force");
                    const char *target = replace_target(&p, s);
                    char *next = target ? next_path(target) : NULL;
                    if (!force && state != OUT_MATCHES && train_can_resume(s, s->out, stamp)) {
                        decision = 2;
                        snprintf(why, sizeof why, "an interrupted training: resuming from its "
                                 "checkpoint %.900s", s->out);
                    } else if (state == OUT_STALE || (force && state == OUT_MATCHES)) {
                        replacing = 1;
                        if (next && train_can_resume(s, next, stamp)) {
                            decision = 2;
                            snprintf(why, sizeof why, "an interrupted replacement of %.450s: resuming from its "
                                     "checkpoint %.450s", s->out, next);
                        }
                    }
                    free(next);
                }
            }
        }
        decision = bcast_int(decision, comm);
        replacing = bcast_int(replacing, comm);
        if (decision < 0) {
            rc = 1;
            free(key);
            break;
        }
        int resume = decision == 2;
        if (resume) decision = 0;
        const argvec *cmd = resume ? &s->resume_argv : &s->argv;
        /* replacing: the stage writes <target>.next (see replace_target) */
        const char *target = replacing ? replace_target(&p, s) : NULL;
        char *next = target ? next_path(target) : NULL;
        argvec redirected = {0};
        if (target && (!next || av_copy_replace(&redirected, cmd, target, next))) {
            rc = 1;
            free(next);
            av_free(&redirected);
            free(key);
            break;
        }
        if (target) cmd = &redirected;
        if (log) {
            fprintf(log, "\n== [%d/%d] %s: %s (%s)\n", k, n_enabled, STAGE_NAMES[i],
                    decision ? "skipped" : dry ? "would run" : "running", why);
            if (!decision) {
                fprintf(log, "   corpuslens");
                for (int a = 0; a < cmd->n; a++) fprintf(log, " %s", cmd->v[a]);
                fprintf(log, "\n");
            }
            fflush(log);
        }
        if (decision == 1 && !dry && rank == 0 && state == OUT_MATCHES) drop_abandoned_replacement(&p, s, log);
        if (decision || dry) {
            skipped += decision != 0;
            free(next);
            av_free(&redirected);
            free(key);
            continue;
        }
        /* A complete output of other settings (or under --force) stays until
         * its replacement is complete (replace_target); an incomplete scan
         * stays for the scan's own resume; other incomplete files are
         * overwritten. */
        int prep = 0;
        const char *written = next ? next : s->out; /* the file the stage writes */
        if (rank == 0 && !resume && s->resume_argv.n) prep = write_sidecar(written, stamp);
        if (rank == 0 && !prep && i == ST_REDUCE) prep = mkdir_p(next ? next : p.report_dir);
        if (!prep && !s->fn) prep = cl_error("no command to run stage '%s'", STAGE_NAMES[i]);
        if (bcast_int(prep, comm)) {
            rc = 1;
            free(next);
            av_free(&redirected);
            free(key);
            break;
        }
        if (cl_par_agree(cl_par_fault("run.stage", comm), comm)) { /* tests: a rank failing here */
            rc = 1;
            free(next);
            av_free(&redirected);
            free(key);
            break;
        }
        cl_par_barrier(comm);
        double t0 = cl_wall_seconds();
        /* the command may keep pointers into argv and reorder it: give it a private copy */
        char *args[96];
        for (int a = 0; a <= cmd->n; a++) args[a] = cmd->v[a];
        int src = s->fn(cmd->n, args);
        int worst = src;
        cl_par_allreduce(&src, &worst, 1, MPI_INT, MPI_MAX, comm);
        double dt = cl_wall_seconds() - t0;
        fflush(stdout);
        fflush(stderr);
        if (worst != 0) {
            const char *resumes = i == ST_SCAN ? ", the scan resumes from its last checkpoint"
                                  : s->resume_argv.n ? ", the training resumes from its last checkpoint"
                                                     : "";
            if (worst == 128 + SIGINT || worst == 128 + SIGTERM)
                cl_error("stage %s was interrupted (%s) after %.1f s; run the same command again: finished "
                         "stages are skipped%s%s%s", STAGE_NAMES[i], cl_interrupt_name(worst - 128), dt, resumes,
                         replacing ? "; the old " : "", replacing ? s->out : "");
            else
                cl_error("stage %s failed (exit status %d) after %.1f s; fix the cause and run the same "
                         "command again: finished stages are skipped%s%s%s",
                         STAGE_NAMES[i], worst, dt, resumes, replacing ? "; the old " : "", replacing ? s->out : "");
            if (replacing) { /* say it: the old output is still there */
                char *e = strdup(cl_last_error());
                if (e) cl_error("%s is kept until its replacement is complete", e);
                free(e);
            }
            /* the stage's own status: e.g. 3 for a scan stopped with a
             * checkpoint, which a Slurm RequeueExit=3 can requeue */
            rc = worst > 0 ? worst : 1;
            free(next);
            av_free(&redirected);
            free(key);
            break;
        }
        int wrc = 0;
        if (rank == 0 && next) wrc = commit_next(next, target, i == ST_REDUCE); /* the old output goes now */
        if (rank == 0 && key && !wrc) {
            wrc = write_stamp(s, stamp, key);
            if (!wrc && s->resume_argv.n) remove_sidecar(written);
        }
        free(next);
        av_free(&redirected);
        free(key);
        if (bcast_int(wrc, comm)) {
            rc = 1;
            break;
        }
        ran++;
        if (log) {
            fprintf(log, "-- %s: done in %.1f s\n", STAGE_NAMES[i], dt);
            fflush(log);
        }
        /* SIGINT / SIGTERM during a stage that finished anyway (or between
         * stages): stop here, every rank, with the finished stages stamped */
        int sig = cl_interrupt_signal(), gsig = 0;
        cl_par_allreduce(&sig, &gsig, 1, MPI_INT, MPI_MAX, comm);
        if (gsig) {
            cl_error("interrupted (%s) after stage %s; run the same command again: finished stages are skipped",
                     cl_interrupt_name(gsig), STAGE_NAMES[i]);
            rc = 128 + gsig;
            break;
        }
    }
    if (log && !rc && !dry) {
        double dt = cl_wall_seconds() - t_all;
        fprintf(log, "\n== done in %.1f s: %d stage%s run, %d skipped\n", dt, ran, ran == 1 ? "" : "s", skipped);
        if (file_exists(p.report_h5)) print_report(log, &p);
        fprintf(log, "\nfiles:\n");
        const char *names[5] = {"corpus (generated)", "model", "corpus substrings", "scan", "report"};
        const char *paths[5] = {job->generate ? job->corpus_path : NULL, p.model, p.corpus_h5, p.scan_h5,
                                p.report_h5};
        for (int i = 0; i < 5; i++) {
            if (!paths[i]) continue;
            const char *how = i == 1 ? (job->model_path ? "" : job->checkpoint ? " (imported)" : " (trained)") : "";
            fprintf(log, "  %-19s %s%s%s\n", names[i], paths[i], how, file_exists(paths[i]) ? "" : " (not yet)");
        }
        if (file_exists(p.report_h5)) fprintf(log, "  %-19s %s/report.md\n", "report (markdown)", p.report_dir);
        fflush(log);
    }
    if (!rc && !dry && o->explain && job->holdout_fraction && (!stages || stage_selected(stages, ST_REDUCE)))
        explain_one(&p, job, o, log, comm);
    plan_free(&p);
    return rc;
}

/* corpuslens run: a job file's pipeline, in-process.
 *
 * Stages, in order: generate (demo corpus, when [corpus] generate = demo),
 * import (when [model] names a checkpoint),
 * train (when the job has no [model]), prepare, scan, reduce. Each stage is
 * the CLI command of the same name called with an argv built from the job;
 * every rank calls every command (prepare/train/reduce arrange rank 0 / MPI
 * themselves).
 *
 * Skipping: after a stage succeeds, rank 0 writes three root attributes into
 * its HDF5 output: job_stamp (SHA-256 of the stage's key), job_stage, and
 * job_key (the key itself, for people: the stage's argv and the SHA-256 of
 * each input file, or the job_stamp of an input that is itself a stage output
 * too big to hash cheaply, i.e. scan.h5). A stage is skipped when its output
 * exists, has the expected format, is complete (a "complete" attribute, where
 * the format has one, is 1) and carries the job_stamp the job asks for now.
 * Any change of settings or inputs changes the key, so the stage and every
 * later one run again. An incomplete scan.h5 is left in place for the scan's
 * own resume; a complete output with another stamp is removed first.
 */
#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "corpuslens/par/par.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/job/job.h"
#include "corpuslens/model/model.h"

static const char *CMD = "run";

/* The stage commands are written in parallel with this one: weak references
 * let this file link before they land (a missing one is reported at run time). */
int cmd_train(int argc, char **argv) __attribute__((weak));
int cmd_scan(int argc, char **argv) __attribute__((weak));
int cmd_reduce(int argc, char **argv) __attribute__((weak));
int cmd_import(int argc, char **argv) __attribute__((weak));

static void help(void) {
    printf(
        "usage: [mpirun -n R] corpuslens run JOB.ini [--stages LIST] [--force] [--dry-run]\n"
        "       corpuslens run JOB.ini --get SECTION.KEY | --get stages\n"
        "\n"
        "Run a job file's pipeline: generate (the demo corpus) -> import (a [model]\n"
        "checkpoint) or train (no [model]) -> prepare -> scan -> reduce, each stage the\n"
        "command of the same name, on every rank. A stage whose complete output already\n"
        "matches the job (its settings and input hashes, recorded in the output's\n"
        "job_stamp attribute) is skipped, so running the same command again after a\n"
        "failure resumes where it stopped (an interrupted scan, or a training with\n"
        "checkpoint_every, continues from its checkpoint).\n"
        "\n"
        "  --stages LIST   only these stages, in pipeline order (comma-separated:\n"
        "                  generate, import, train, prepare, scan, reduce); the Slurm\n"
        "                  scripts run one stage per batch job this way\n"
        "  --force         run the selected stages even if their outputs match\n"
        "  --dry-run       print what would run or be skipped, and why\n"
        "  --get KEY       print a job value after variable expansion (e.g. output.dir,\n"
        "                  slurm.scan_ranks; nothing when unset), or with KEY = stages\n"
        "                  the stages of this job; then exit\n"
        "\n"
        "Exit status: 0, or that of the stage that failed (1 error, 2 usage, 3 a scan\n"
        "stopped with a checkpoint), 1 for a bad job file.\n"
        "\n"
        "Job file format: include/corpuslens/job/job.h; examples: jobs/demo.ini,\n"
        "jobs/tinyshakespeare.ini.\n");
}

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

/* ---- stages ---- */

enum { ST_GENERATE, ST_IMPORT, ST_TRAIN, ST_PREPARE, ST_SCAN, ST_REDUCE, ST_N };
static const char *const STAGE_NAMES[ST_N] = {"generate", "import", "train",
                                              "prepare",  "scan",   "reduce"};

typedef struct {
    int id;
    int enabled;            /* part of this job */
    argvec argv;            /* the command line (argv[0] = command) */
    argvec resume_argv;     /* train with checkpoints: the command that resumes */
    int (*fn)(int, char **);
    char *out;              /* the file that is checked and stamped */
    const char *format;     /* its format attribute */
    int format_in_config;   /* model files keep it on /config */
    const char *hash_inputs[4];  /* files whose SHA-256 enters the key */
    const char *stamp_inputs[2]; /* stage outputs whose job_stamp enters the key */
} stage;

typedef struct {
    cl_job *job;
    char *out_dir, *model, *corpus_h5, *scan_h5, *report_dir, *report_h5;
    stage st[ST_N];
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
}

static int build_plan(plan *p, cl_job *j) {
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

    stage *s = &p->st[ST_GENERATE];
    s->enabled = j->generate;
    s->fn = cmd_demo_corpus;
    s->out = j->corpus_path;
    rc |= av_add(&s->argv, "demo-corpus");
    rc |= av_add(&s->argv, "--seed"), rc |= av_addf(&s->argv, "%llu", (unsigned long long)j->gen_seed);
    rc |= av_add(&s->argv, "--chars"), rc |= av_addf(&s->argv, "%lld", j->gen_chars);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, j->corpus_path);

    s = &p->st[ST_IMPORT];
    s->enabled = j->checkpoint != NULL;
    s->fn = cmd_import;
    s->out = p->model;
    s->format = CL_MODEL_FORMAT;
    s->format_in_config = 1;
    s->hash_inputs[0] = j->checkpoint;
    s->hash_inputs[1] = j->corpus_path;
    rc |= av_add(&s->argv, "import");
    rc |= av_add(&s->argv, j->checkpoint ? j->checkpoint : "");
    rc |= av_add(&s->argv, "--corpus");
    rc |= av_add(&s->argv, j->corpus_path);
    if (j->has_import_n_head) rc |= av_add(&s->argv, "--n-head"), rc |= av_addf(&s->argv, "%lld", j->import_n_head);
    if (j->import_attn_scale) rc |= av_add(&s->argv, "--attn-scale"), rc |= av_add(&s->argv, j->import_attn_scale);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->model);

    s = &p->st[ST_TRAIN];
    s->enabled = j->model_path == NULL && j->checkpoint == NULL;
    s->fn = cmd_train;
    s->out = p->model;
    s->format = CL_MODEL_FORMAT;
    s->format_in_config = 1;
    s->hash_inputs[0] = j->corpus_path;
    rc |= av_add(&s->argv, "train");
    rc |= av_add(&s->argv, "--corpus");
    rc |= av_add(&s->argv, j->corpus_path);
    if (j->train_config) rc |= av_add(&s->argv, "--config"), rc |= av_add(&s->argv, j->train_config);
    if (j->has_steps) rc |= av_add(&s->argv, "--steps"), rc |= av_addf(&s->argv, "%lld", j->steps);
    if (j->has_batch) rc |= av_add(&s->argv, "--batch"), rc |= av_addf(&s->argv, "%lld", j->batch);
    if (j->has_ctx) rc |= av_add(&s->argv, "--ctx"), rc |= av_addf(&s->argv, "%lld", j->ctx);
    if (j->lr) rc |= av_add(&s->argv, "--lr"), rc |= av_addf(&s->argv, "%s", j->lr);
    if (j->dropout) rc |= av_add(&s->argv, "--dropout"), rc |= av_addf(&s->argv, "%s", j->dropout);
    if (j->has_train_seed) rc |= av_add(&s->argv, "--seed"), rc |= av_addf(&s->argv, "%lld", j->train_seed);
    if (j->has_eval_every) rc |= av_add(&s->argv, "--eval-every"), rc |= av_addf(&s->argv, "%lld", j->eval_every);
    if (j->train_checkpoint_every)
        rc |= av_add(&s->argv, "--checkpoint-every"),
            rc |= av_addf(&s->argv, "%lld", j->train_checkpoint_every);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->model);
    if (j->train_checkpoint_every) {
        /* the same without --config (the checkpoint has the architecture) */
        for (int a = 0; a < s->argv.n; a++) {
            if (!strcmp(s->argv.v[a], "--config")) {
                a++;
                continue;
            }
            if (!strcmp(s->argv.v[a], "-o")) {
                rc |= av_add(&s->resume_argv, "--resume");
                rc |= av_add(&s->resume_argv, p->model);
            }
            rc |= av_add(&s->resume_argv, s->argv.v[a]);
        }
    }

    s = &p->st[ST_PREPARE];
    s->enabled = 1;
    s->fn = cmd_prepare;
    s->out = p->corpus_h5;
    s->format = CL_CORPUS_FORMAT;
    s->hash_inputs[0] = j->corpus_path;
    s->hash_inputs[1] = p->model;
    s->hash_inputs[2] = j->prompt_file;
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
    rc |= av_add(&s->argv, "--vocab-from");
    rc |= av_add(&s->argv, p->model);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->corpus_h5);

    s = &p->st[ST_SCAN];
    s->enabled = 1;
    s->fn = cmd_scan;
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
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->scan_h5);

    s = &p->st[ST_REDUCE];
    s->enabled = 1;
    s->fn = cmd_reduce;
    s->out = p->report_h5;
    s->format = CL_REPORT_FORMAT;
    s->stamp_inputs[0] = p->scan_h5;
    rc |= av_add(&s->argv, "reduce");
    rc |= av_add(&s->argv, p->scan_h5);
    if (j->thresholds) rc |= av_add(&s->argv, "--thresholds"), rc |= av_add(&s->argv, j->thresholds);
    if (j->weights) rc |= av_add(&s->argv, "--weights"), rc |= av_add(&s->argv, j->weights);
    for (size_t i = 0; i < j->n_compare; i++)
        rc |= av_add(&s->argv, "--compare-model"), rc |= av_add(&s->argv, j->compare_models[i]);
    if (j->examples) rc |= av_add(&s->argv, "--examples"), rc |= av_add(&s->argv, j->examples);
    rc |= av_add(&s->argv, "-o");
    rc |= av_add(&s->argv, p->report_dir);
    return rc ? -1 : 0;
}

/* ---- keys and stamps ---- */

static int read_root_str(const char *path, const char *attr, char *buf, size_t n) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    int rc = cl_h5_attr_read_str(f, attr, buf, n);
    if (rc < 0) cl_error_prefix("%s: ", path);
    H5Fclose(f);
    return rc;
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
    for (int i = 0; i < 4; i++) {
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
        char h[128] = "";
        if (!file_exists(in)) {
            free(k);
            cl_error("stage %s needs %s, which does not exist (yet)", STAGE_NAMES[s->id], in);
            return NULL;
        }
        if (read_root_str(in, "job_stamp", h, sizeof h) < 0) {
            free(k);
            cl_error("stage %s needs %s as written by this job's %s stage (%s)",
                     STAGE_NAMES[s->id], in, STAGE_NAMES[s->id - 1],
                     "no job_stamp attribute: run that stage first");
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
    char fmt[64] = "", have[128] = "";
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
    if (st == OUT_MATCHES) {
        if (cl_h5_attr_exists(f, "job_stamp") <= 0) {
            snprintf(why, nwhy, "%s was not made by this job", s->out);
            st = OUT_STALE;
        } else if (cl_h5_attr_read_str(f, "job_stamp", have, sizeof have) < 0 ||
                   strcmp(have, stamp)) {
            snprintf(why, nwhy, "%s was made with other settings or inputs", s->out);
            st = OUT_STALE;
        } else {
            snprintf(why, nwhy, "%s is complete and matches the job", s->out);
        }
    }
    if (g >= 0 && g != f) H5Gclose(g);
    H5Fclose(f);
    return st;
}

static int write_stamp(const stage *s, const char *stamp, const char *key) {
    hid_t f = H5Fopen(s->out, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return cl_error("cannot open %s to record the job stamp", s->out);
    int rc = cl_h5_attr_write_str(f, "job_stamp", stamp);
    if (!rc) rc = cl_h5_attr_write_str(f, "job_stage", STAGE_NAMES[s->id]);
    if (!rc) rc = cl_h5_attr_write_str(f, "job_key", key);
    if (H5Fclose(f) < 0 && !rc) rc = cl_error("cannot close %s", s->out);
    if (rc) cl_error_prefix("%s: ", s->out);
    return rc;
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

static int train_can_resume(const stage *s, const char *stamp) {
    if (!s->resume_argv.n || !file_exists(s->out)) return 0;
    char *side = sidecar_path(s->out);
    if (!side) return 0;
    char have[80] = "";
    FILE *f = fopen(side, "r");
    int ok = f && fgets(have, sizeof have, f) && !strncmp(have, stamp, 64);
    if (f) fclose(f);
    free(side);
    if (!ok) return 0;
    hid_t h = cl_h5_open_read(s->out);
    if (h < 0) return 0;
    ok = cl_h5_exists(h, "/train") > 0;
    H5Fclose(h);
    return ok;
}

static int write_sidecar(const stage *s, const char *stamp) {
    char *side = sidecar_path(s->out);
    if (!side) return cl_error("out of memory");
    FILE *f = fopen(side, "w");
    int rc = f && fprintf(f, "%s\n", stamp) > 0 ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    if (rc) cl_error("cannot write %s: %s", side, strerror(errno));
    free(side);
    return rc;
}

static void remove_sidecar(const stage *s) {
    char *side = sidecar_path(s->out);
    if (side) remove(side);
    free(side);
}

/* ---- the report summary ---- */

static void print_stats(hid_t f, const char *dset, const char *label) {
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
        printf("  %-32.32s %7.4f %7.4f %7.4f %7.4f %7.4f %7lld\n", label, mean, std, mn, med, mx,
               count);
    }
    H5Dclose(d);
}

static herr_t baseline_cb(hid_t g, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    (void)user;
    char path[512];
    snprintf(path, sizeof path, "%s/hellinger", name);
    char label[300];
    snprintf(label, sizeof label, "baseline %s", name);
    print_stats(g, path, label);
    return 0;
}

static void print_report(const plan *p) {
    hid_t f = cl_h5_open_read(p->report_h5);
    if (f < 0) return;
    printf("\nHellinger distance to the model's prediction (0 = same distribution, 1 = disjoint):\n");
    printf("  %-32s %7s %7s %7s %7s %7s %7s\n", "", "mean", "std", "min", "median", "max", "prompts");
    print_stats(f, "/hellinger", "approximation");
    if (cl_h5_exists(f, "/baselines")) {
        hid_t g = H5Gopen2(f, "/baselines", H5P_DEFAULT);
        if (g >= 0) {
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, baseline_cb, NULL);
            H5Gclose(g);
        }
    }
    H5Fclose(f);
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

static int check_stage_list(const char *list) {
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < ST_N; i++)
            if (strlen(STAGE_NAMES[i]) == len && !strncmp(p, STAGE_NAMES[i], len)) ok = 1;
        if (!ok)
            return cli_usage_error(CMD, "--stages: unknown stage '%.*s' (generate, import, train, "
                                        "prepare, scan, reduce)", (int)len, p);
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

static int bcast_int(int v) {
    MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return v;
}

int cmd_run(int argc, char **argv) {
    int rank = 0, R = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    const char *job_path = NULL, *stages = NULL, *get = NULL;
    int force = 0, dry = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0) help();
            return 0;
        }
        if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--dry-run")) dry = 1;
        else if (!strcmp(a, "--stages") || !strncmp(a, "--stages=", 9) || !strcmp(a, "--get") ||
                 !strncmp(a, "--get=", 6)) {
            const char *eq = strchr(a, '=');
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v) return rank == 0 ? cli_usage_error(CMD, "%.*s needs a value", (int)(eq ? eq - a : (long)strlen(a)), a) : 2;
            if (a[2] == 's') stages = v;
            else get = v;
        } else if (a[0] == '-' && a[1]) {
            return rank == 0 ? cli_usage_error(CMD, "unknown option '%s'", a) : 2;
        } else if (job_path) {
            return rank == 0 ? cli_usage_error(CMD, "more than one job file: '%s'", a) : 2;
        } else {
            job_path = a;
        }
    }
    if (!job_path) return rank == 0 ? cli_usage_error(CMD, "no job file given") : 2;
    if (stages && check_stage_list(stages)) return 2;

    /* Every rank parses (same file, same environment); rank 0 reports. */
    char *errors = NULL;
    cl_job *job = cl_job_load(job_path, &errors);
    if (!job) {
        if (rank == 0) {
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
    plan p;
    if (build_plan(&p, job) < 0) {
        if (rank == 0) cli_fail();
        plan_free(&p);
        cl_job_free(job);
        return 1;
    }

    if (get) {
        if (rank == 0) {
            if (!strcmp(get, "stages")) {
                int first = 1;
                for (int i = 0; i < ST_N; i++)
                    if (p.st[i].enabled) printf("%s%s", first ? "" : " ", STAGE_NAMES[i]), first = 0;
                printf("\n");
            } else if (!strchr(get, '.')) {
                plan_free(&p);
                cl_job_free(job);
                return cli_usage_error(CMD, "--get: '%s' is not SECTION.KEY or 'stages'", get);
            } else {
                const char *v = cl_job_get(job, get);
                if (v) printf("%s\n", v);
            }
        }
        plan_free(&p);
        cl_job_free(job);
        return 0;
    }

    double t_all = MPI_Wtime();
    int n_enabled = 0;
    for (int i = 0; i < ST_N; i++) n_enabled += p.st[i].enabled;
    if (rank == 0) {
        printf("corpuslens run %s: %d rank%s, output in %s\n", job_path, R, R == 1 ? "" : "s", p.out_dir);
        fflush(stdout);
    }
    int rc = 0;
    if (!dry) {
        rc = rank == 0 ? mkdir_p(p.out_dir) : 0;
        if (rank == 0 && rc) cli_fail();
        rc = bcast_int(rc);
    }
    int k = 0, ran = 0, skipped = 0;
    for (int i = 0; i < ST_N && !rc; i++) {
        stage *s = &p.st[i];
        if (!s->enabled) continue;
        k++;
        if (!stage_selected(stages, i)) continue;
        char why[1024] = "", stamp[65] = "";
        char *key = NULL;
        /* rank 0 decides: 0 run, 1 skip, -1 error (inputs missing) */
        int decision = 0, state = OUT_MISSING;
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
                    if (!force && state != OUT_MATCHES && train_can_resume(s, stamp)) {
                        decision = 2;
                        snprintf(why, sizeof why, "an interrupted training: resuming from its "
                                 "checkpoint %.900s", s->out);
                    }
                }
            }
        }
        decision = bcast_int(decision);
        if (decision < 0) {
            if (rank == 0) fprintf(stderr, "corpuslens run: %s\n", cl_last_error());
            rc = 1;
            free(key);
            break;
        }
        int resume = decision == 2;
        if (resume) decision = 0;
        const argvec *cmd = resume ? &s->resume_argv : &s->argv;
        if (rank == 0) {
            printf("\n== [%d/%d] %s: %s (%s)\n", k, n_enabled, STAGE_NAMES[i],
                   decision ? "skipped" : dry ? "would run" : "running", why);
            if (!decision) {
                printf("   corpuslens");
                for (int a = 0; a < cmd->n; a++) printf(" %s", cmd->v[a]);
                printf("\n");
            }
            fflush(stdout);
        }
        if (decision) {
            skipped++;
            free(key);
            continue;
        }
        if (dry) {
            free(key);
            continue;
        }
        /* A complete output of other settings goes; an incomplete scan stays
         * for the scan's own resume; other incomplete files are overwritten. */
        int prep = 0;
        if (rank == 0 && !resume && (state == OUT_STALE || (force && state == OUT_MATCHES)))
            remove(s->out);
        if (rank == 0 && !resume && s->resume_argv.n) {
            prep = write_sidecar(s, stamp);
            if (prep) cli_fail();
        }
        if (bcast_int(prep)) {
            rc = 1;
            free(key);
            break;
        }
        if (rank == 0 && i == ST_REDUCE) mkdir_p(p.report_dir);
        MPI_Barrier(MPI_COMM_WORLD);
        if (!s->fn) {
            if (rank == 0)
                fprintf(stderr, "corpuslens run: this build has no '%s' command\n", s->argv.v[0]);
            rc = 1;
            free(key);
            break;
        }
        if (cl_par_agree(cl_par_fault("run.stage", MPI_COMM_WORLD), MPI_COMM_WORLD)) {
            if (rank == 0) cli_fail();
            rc = 1;
            free(key);
            break;
        }
        double t0 = MPI_Wtime();
        /* the command may keep pointers into argv: give it a private copy */
        char *args[96];
        for (int a = 0; a <= cmd->n; a++) args[a] = cmd->v[a];
        int src = s->fn(cmd->n, args);
        int worst = src;
        MPI_Allreduce(&src, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        fflush(stdout);
        fflush(stderr);
        if (worst != 0) {
            if (rank == 0)
                fprintf(stderr,
                        "corpuslens run: stage %s failed (exit status %d) after %.1f s; fix the "
                        "cause and run the same command again: finished stages are skipped%s\n",
                        STAGE_NAMES[i], worst, dt,
                        i == ST_SCAN ? ", the scan resumes from its last checkpoint"
                        : s->resume_argv.n ? ", the training resumes from its last checkpoint"
                                           : "");
            /* the stage's own status: e.g. 3 for a scan stopped with a
             * checkpoint, which a Slurm RequeueExit=3 can requeue */
            rc = worst > 0 ? worst : 1;
            free(key);
            break;
        }
        int wrc = 0;
        if (rank == 0 && key) {
            wrc = write_stamp(s, stamp, key);
            if (wrc) cli_fail();
            else if (s->resume_argv.n) remove_sidecar(s);
        }
        free(key);
        if (bcast_int(wrc)) {
            rc = 1;
            break;
        }
        ran++;
        if (rank == 0) {
            printf("-- %s: done in %.1f s\n", STAGE_NAMES[i], dt);
            fflush(stdout);
        }
    }
    if (rank == 0 && !rc && !dry) {
        double dt = MPI_Wtime() - t_all;
        printf("\n== done in %.1f s: %d stage%s run, %d skipped\n", dt, ran, ran == 1 ? "" : "s",
               skipped);
        if (file_exists(p.report_h5)) print_report(&p);
        printf("\nfiles:\n");
        const char *names[5] = {"corpus (generated)", "model", "corpus substrings", "scan",
                                "report"};
        const char *paths[5] = {job->generate ? job->corpus_path : NULL, p.model, p.corpus_h5,
                                p.scan_h5, p.report_h5};
        for (int i = 0; i < 5; i++) {
            if (!paths[i]) continue;
            const char *how = i == 1 ? (job->model_path ? "" : job->checkpoint ? " (imported)" : " (trained)") : "";
            printf("  %-19s %s%s%s\n", names[i], paths[i], how, file_exists(paths[i]) ? "" : " (not yet)");
        }
        if (file_exists(p.report_h5)) printf("  %-19s %s/report.md\n", "report (markdown)", p.report_dir);
        fflush(stdout);
    }
    plan_free(&p);
    cl_job_free(job);
    return rc;
}

/* corpuslens jobs: the job file of `corpuslens run`, and the embedded demo
 * corpus generator. Library code: nothing here prints or exits.
 *
 * ---- Job files ----
 * INI syntax (parsed with libinih): `[section]` headers, `key = value` lines,
 * comments starting with ';' or '#' at the start of a line, and ' ;' inline.
 * Every key belongs to a section; a key may appear only once.
 *
 *   [corpus]   path          UTF-8 text (required unless generate = demo)
 *              generate      "demo": the built-in generator writes the corpus
 *                            (path defaults to <output dir>/demo.txt)
 *              chars         generator size in characters (default 300000)
 *              generator_seed  generator seed (default 1)
 *              len           substring length L (required)
 *              prompts, seed sample `prompts` substrings with `seed` (default 1337)
 *              prompt_file   or: one substring index per line
 *              holdout_fraction  F: prepare --holdout-fraction F; the scan then also
 *                            writes <output dir>/index.h5 and the run ends by
 *                            explaining one held-out window (explain --eval-text 1)
 *              vocab_from    the vocabulary: a corpuslens model file (.h5) or a
 *                            UTF-8 text (its sorted unique characters, as the
 *                            lecture builds it), e.g. the whole training text
 *                            when `path` is a slice of it. It goes with [model]:
 *                            a checkpoint is imported with it (default: the
 *                            characters of `path`), and prepare encodes the
 *                            corpus with it (default: the model's vocabulary;
 *                            with [model] path it must be a model file). A
 *                            corpus character the vocabulary lacks is refused
 *                            by prepare, naming the character and its position.
 *   [model]    path          an existing corpuslens model file (.h5), or
 *              checkpoint    a PyTorch .pt / .safetensors file, imported (with
 *                            the corpus's vocabulary) into <output dir>/model.h5;
 *                            n_head, attn_scale: as `corpuslens import`.
 *                            When the section is absent, [train] makes a model.
 *   [train]    config, steps, batch, ctx, lr, dropout, seed, eval_every,
 *              checkpoint_every (steps; an interrupted training then resumes),
 *              tokenizer (a GPT-2-format folder: a BPE model, train --tokenizer;
 *              its scan writes no index even with holdout_fraction: run index)
 *              (steps, batch, ctx required when there is no [model])
 *   [alternatives] seeds   models trained with the [train] recipe but these
 *                          seeds (comma- or blank-separated integers, each once:
 *                          "1, 01" is refused), into
 *                          <output dir>/model-seed<S>.h5; reduce compares the
 *                          model with each (the noise floor). With [model],
 *                          [train] is then the recipe of the alternatives only.
 *   [scan]     hook, prefilter, bin_width, match_thresholds (numbers),
 *              match_cap, batch (substrings per shard), checkpoint_every (s)
 *   [reduce]   thresholds, weights (comma- or blank-separated numbers),
 *              compare_models (comma- or blank-separated model files), examples
 *              (prompt indices for the examples table)
 *   [ablate]   max (prompts, default all), mode (zero | mean): `corpuslens
 *              ablate` into <output dir>/ablation.h5 (+ ablation.svg); the
 *              report sets its table beside the paper's
 *   [tune]     train_fraction, seed, restarts: `corpuslens tune` into
 *              <output dir>/tune.h5 (+ tune.ini); the report sets the fitted
 *              values beside the paper's on the held-out prompts
 *   [output]   dir           the folder of every output (required)
 *   [slurm]    partition, account, scan_ranks, scan_time, train_ranks,
 *              train_time, light_time, mem_per_cpu (read by slurm/submit.sh)
 *
 * Values may use ${NAME} (an environment variable; unset is an error that
 * names it), ${NAME:-default} (default when unset or empty) and ${JOBDIR}
 * (the absolute folder of the job file, unless the environment sets JOBDIR).
 * Relative paths are relative to the working directory, as on a command line.
 * Unset optional keys are not passed on: the stage command's default applies.
 *
 * Line numbers: Debian's libinih is built without INI_HANDLER_LINENO, so the
 * file is fed to ini_parse_stream() through our own line reader, which counts
 * the lines it hands out; the handler runs right after the reader returned the
 * key's line, so the count is that line's number. The reader also refuses
 * lines longer than libinih's buffer (INI_MAX_LINE = 200 bytes in Debian's
 * build) instead of letting libinih split them silently; long paths belong in
 * variables. Syntax errors come from ini_parse_stream's return value (the first
 * bad line) and our reader's own count.
 *
 * Errors: every problem found (not only the first) is reported, one per line,
 * as "FILE:LINE: message" (a missing section or key names the line of its
 * section header, or the last line of the file).
 */
#ifndef CORPUSLENS_JOB_H
#define CORPUSLENS_JOB_H

#include <stddef.h>
#include <stdint.h>

/* A parsed job. Strings are malloc'ed and owned (NULL when unset); `has_*`
 * flags say whether an optional number was given. */
typedef struct {
    char *file;     /* the job file, as given */
    char *jobdir;   /* absolute folder of the job file */
    /* [corpus] */
    char *corpus_path;
    int generate;   /* 1: built-in demo corpus */
    long long gen_chars;
    uint64_t gen_seed;
    long long len;
    long long prompts;
    int has_prompts;
    long long seed;
    int has_seed;
    char *prompt_file;
    char *holdout_fraction; /* validated number, kept as written; NULL: none (prepare --holdout-fraction) */
    char *vocab_from; /* a model file or a text: the vocabulary (NULL: the model's, or the corpus's for an import) */
    /* [model] */
    char *model_path; /* NULL: import or train one */
    char *checkpoint; /* to import; NULL when none */
    long long import_n_head;
    int has_import_n_head;
    char *import_attn_scale;
    /* [train] */
    char *train_config;
    char *train_tokenizer; /* a GPT-2-format tokenizer folder (train --tokenizer); NULL: a char model */
    long long steps, batch, ctx, train_seed, eval_every;
    long long train_checkpoint_every; /* 0 when unset */
    int has_steps, has_batch, has_ctx, has_train_seed, has_eval_every;
    char *lr, *dropout; /* validated numbers, kept as written */
    /* [alternatives] */
    char *alt_seeds; /* normalised "a,b,c"; NULL when none */
    /* [ablate], [tune]: the stage runs when its section is present */
    int has_ablate, has_tune;
    long long ablate_max;
    int has_ablate_max;
    char *ablate_mode;
    char *tune_fraction; /* validated number, kept as written */
    long long tune_seed, tune_restarts;
    int has_tune_seed, has_tune_restarts;
    /* [scan] */
    char *hook;
    char *prefilter, *bin_width; /* validated numbers, kept as written */
    char *match_thresholds; /* normalised "a,b,c" list */
    char *checkpoint_every; /* validated number, kept as written */
    long long match_cap, scan_batch;
    int has_match_cap, has_scan_batch;
    /* [reduce] */
    char *thresholds, *weights; /* normalised "a,b,c" lists */
    char **compare_models;
    size_t n_compare;
    char *examples; /* normalised "i,j,k" prompt indices */
    /* [output] */
    char *out_dir;
    /* [slurm] (strings as written, validated) */
    char *slurm_partition, *slurm_account, *slurm_scan_time, *slurm_train_time,
        *slurm_light_time, *slurm_mem_per_cpu;
    long long slurm_scan_ranks, slurm_train_ranks; /* 0 when unset */
    char **kv_; /* private: expanded ("section.key", value) pairs for cl_job_get */
} cl_job;

/* Parse and validate a job file. Returns a new job (free with cl_job_free),
 * or NULL: then *errors (when errors is not NULL) receives a malloc'ed text of
 * one "FILE:LINE: message\n" per problem, and cl_error holds the first. */
cl_job *cl_job_load(const char *path, char **errors);

/* The same from memory; `name` is the file name used in messages and the
 * folder that ${JOBDIR} refers to. */
cl_job *cl_job_parse(const char *text, size_t len, const char *name, char **errors);

void cl_job_free(cl_job *job);

/* The expanded value of "section.key" as the job file gave it (NULL when
 * unset or unknown). Owned by the job. */
const char *cl_job_get(const cl_job *job, const char *section_key);

/* Expand ${NAME}, ${NAME:-default} and ${JOBDIR} in `in` (see above). Returns
 * a malloc'ed string, or NULL with cl_error naming the variable. */
char *cl_job_expand(const char *in, const char *jobdir);

#endif

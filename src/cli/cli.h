/* corpuslens CLI: one file per command (src/cli/cmd_<name>.c), each exporting
 * int cmd_<name>(int argc, char **argv) where argv[0] is the command name.
 * A command returns 0 on success, 1 on error (after cli_fail printed the
 * message), 2 on a usage error. Only the CLI prints and exits.
 */
#ifndef CORPUSLENS_CLI_H
#define CORPUSLENS_CLI_H

#include <stdio.h>

#include "cli/mpi_start.h" /* cli_rank(), cli_rank0(), ... */
#include "cli/options.h" /* cli_usage_error(), the option tables */

/* Print "corpuslens <command>: <cl_last_error()>" (cli_current_command(): the
 * command that runs) on stderr once; returns 1. */
int cli_fail(void);

/* Run fn(argc, argv) on rank 0 only and give every rank its exit status:
 * for single-process commands started under mpirun (one writer, one
 * message). */
int cli_on_rank0(int (*fn)(int, char **), int argc, char **argv);

/* 1 if stderr is a terminal (progress bars), 0 otherwise (plain lines). */
int cli_stderr_is_tty(void);

#include <stddef.h>

/* A progress line for cl_scan_opts/cl_index_opts.progress (progress.c):
 * "what [#####.....] 12.5% done/total unit  rate/s  ETA" on a terminal, redrawn
 * at most every 0.5 s; otherwise a plain line every 30 s. Start with
 * last = -1e9 so that the first call prints. */
typedef struct {
    const char *what, *unit;
    int tty;
    double last;
} cli_progress;
void cli_progress_line(void *user, size_t done, size_t total, double elapsed);

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"

/* Encode a text for a model: checks the vocabulary (message names the
 * character and position) and 1 <= length <= block_size; a text too long for
 * block_size tokens of the longest kind is refused before it is encoded.
 * *ids is malloc'ed. */
int cli_encode(const cl_model *m, const char *text, int32_t **ids, size_t *n);

/* A corpus.h5 (opened with BPE allowed) that the model can read: the same
 * kind (char-level or GPT-2 BPE) and the same vocabulary or tokenizer, and
 * substrings of at most block_size tokens. 0, or -1 with a message naming
 * `path`. (ablate --corpus, lens --prompts) */
int cli_corpus_fits_model(const cl_model *m, const cl_corpus *c, const char *path);

/* The parentheses classifier's analyses (parens_analysis.c), from ablate and lens. */
int cli_parens_ablate(const char *model, const char *data, const char *split);
int cli_parens_lens(const char *model, const char *s, const char *attn_svg);

#define CLI_COMMANDS(X)                                                                         \
    X(init, "write a randomly initialised model file")                                        \
    X(import, "convert a .pt/.safetensors checkpoint or a Hugging Face GPT-2 folder into a model file")\
    X(inspect, "list the tensors and parameter count of a .pt, .safetensors or .h5")          \
    X(predict, "print the model's next-token distribution for a text")                        \
    X(generate, "sample text from the model")                                                 \
    X(capture, "run the model and write hooked activations to HDF5")                          \
    X(demo_corpus, "write the built-in demo corpus (a small dialogue grammar)")               \
    X(prepare, "corpus text -> corpus.h5: unique substrings, next-token counts, prompts")     \
    X(train, "train a model in C (AdamW, dropout, MPI data-parallel, resumable)")             \
    X(scan, "prompts x substrings cosine scan -> scan.h5 (MPI): binned counts, matches")      \
    X(reduce, "scan.h5 -> Hellinger report: approximation, baselines, plots")                 \
    X(tune, "fit block thresholds and weights on a train split of the prompts")               \
    X(run, "run a job file: prepare, train, scan, reduce; resumes, skips finished stages")    \
    X(lens, "logit lens: each block's residual through ln_final + lm_head, table + heatmap")  \
    X(ablate, "Appendix IV: remove each block's attention / feed-forward output, Hellinger (MPI)")\
    X(similar, "the article's demo: strings similar to a prompt (scan.h5), their distribution vs the model")\
    X(embed_sim, "cosine similarity matrix of hooked vectors of texts (any hook)")                \
    X(index, "activation index of every corpus substring -> index.h5 (MPI), for explain")      \
    X(explain, "explain any text from index.h5: approximation, similar strings, logit lens")  \
    X(serve, "HTTP server and web page: explain every position of a passage (index.h5)")
/* CLI_COMMANDS_END: add `X(name, "summary")` lines above; keep one per line. */

#define CLI_DECLARE(name, summary) int cmd_##name(int argc, char **argv);
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

#endif

/* corpuslens scan: every prompt against every substring, per block (scan.h). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"
#include "corpuslens/scan/scan.h"

static const char *CMD = "scan";

static void note(void *user, const char *msg) { fprintf(stderr, "corpuslens scan: %s\n", msg); }

static const char USAGE[] =
    "mpirun -n R corpuslens scan --model MODEL.h5 --corpus CORPUS.h5 -o SCAN.h5\n"
    "                 [--hook mlp_out] [--prefilter 0.7] [--bin-width 0.01]\n"
    "                 [--match-thresholds a,b,...] [--match-cap 1000] [--batch 2048]\n"
    "                 [--checkpoint-every 60] [--index-out INDEX.h5 [--index-dtype f16|f32]]\n"
    "                 [--next-layout auto|dense|csr]";

static const char ABOUT[] =
    "Compares the hooked activation (last position) of every prompt with that of\n"
    "every substring of CORPUS.h5, per block, by cosine similarity, and writes the\n"
    "next-token counts of the substrings above the prefilter binned by similarity,\n"
    "the stored matches, the model's and the logit lens's distributions (layout:\n"
    "include/corpuslens/h5/h5schema.h; method: include/corpuslens/scan/scan.h).\n";

static const char EPILOG[] =
    "A killed scan started again with the same arguments and rank count continues\n"
    "from its last checkpoint (every 60 s by default: a kill loses at most about\n"
    "that, more where a checkpoint is slow). SIGINT (Ctrl-C) or SIGTERM: each rank\n"
    "stops after its current shard, saves its checkpoint, and the scan exits with\n"
    "status 130 (SIGINT) or 143 (SIGTERM), saying how to resume. Open MPI's mpirun\n"
    "passes Ctrl-C on as SIGTERM to every rank after 1 s and SIGKILL 1 s later\n"
    "(N s each with --mca odls_base_sigkill_timeout N); a killed rank keeps its\n"
    "last checkpoint. Environment: CORPUSLENS_SCAN_STOP_AFTER=K stops each rank\n"
    "after K shards with a checkpoint (for tests; exit status 3, no output).\n";

int cmd_scan(int argc, char **argv) {
    int rank = 0, R = 1; /* --help (and the manual's generation) run without MPI: rank 0 of 1 */
    cl_par_comm_rank(MPI_COMM_WORLD, &rank);
    cl_par_comm_size(MPI_COMM_WORLD, &R);
    cl_scan_opts o;
    cl_scan_opts_default(&o);
    long match_cap = o.match_cap, batch = o.shard_size;
    const char *index_dtype = "f16", *next_layout = "auto";
    double ck_every = -1; /* -1: not given */
    cli_doubles *thr = calloc(1, sizeof *thr);
    if (!thr) return cl_error("out of memory"), rank == 0 ? cli_fail() : 1;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &o.model_path, "the model file"),
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &o.corpus_path, "the prepared corpus (corpuslens prepare)"),
        CLI_OPT_STRING("output", 'o', "SCAN.h5", &o.out_path, "the scan file to write"),
        CLI_OPT_STRING("hook", 0, "NAME", &o.hook,
                       "mlp_out, attn_out, resid_mid, resid_post, resid_pre (every\n"
                       "block), embed, or blocks.{i}.hook_<one of those>"),
        /* the range is checked by the library with the documented message */
        CLI_OPT_DOUBLE("prefilter", 0, "X", &o.prefilter, -1e300, 1e300, "count pairs with similarity > X; in (-1, 1)"),
        CLI_OPT_DOUBLE("bin-width", 0, "W", &o.bin_width, -1e300, 1e300,
                       "grid of (1 - X) / W bins above the prefilter (a whole number)"),
        CLI_OPT_DOUBLES("match-thresholds", 0, "a,b,...", thr,
                        "one per hooked block: store matches above (default: the\n"
                        "paper's thresholds for 6-block models, else X)"),
        CLI_OPT_INT("match-cap", 0, "K", &match_cap, 0, 1L << 30,
                    "at most K stored matches per (prompt, block), most similar\n"
                    "first, ties by lower substring index; 0 = no cap"),
        CLI_OPT_INT("batch", 0, "S", &batch, 1, 1L << 20,
                    "substrings per shard (the unit of work and of resume; part\n"
                    "of the run's identity)"),
        CLI_OPT_DOUBLE("checkpoint-every", 0, "T", &ck_every, 0, 1e9,
                       "seconds between checkpoints in SCAN.h5.state/ (default 60,\n"
                       "longer when a checkpoint takes over 1/9 of that: at most\n"
                       "~10% of the time; given: exactly T; 0 = only when stopped)"),
        CLI_OPT_STRING("index-out", 0, "INDEX.h5", &o.index_out,
                       "also write the activation index of `corpuslens index` from\n"
                       "the vectors the scan computes anyway (nothing computed twice)"),
        CLI_OPT_CHOICE("index-dtype", 0, &index_dtype, "f16|f32", "float16 (default) or float32 for --index-out"),
        CLI_OPT_CHOICE("next-layout", 0, &next_layout, "auto|dense|csr",
                       "binned next-token counts: dense [P, blocks, bins, V] or\n"
                       "CSR (nonzeros only); auto: dense when V <= 4096"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, NULL, 0, 0, NULL};
    /* every rank parses the same argv; rank 0 prints (cli_usage_error) */
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc == CLI_PARSED && (!o.model_path || !o.corpus_path || !o.out_path))
        prc = cli_usage_error(CMD, "--model, --corpus and -o are required");
    if (prc == CLI_PARSED && thr->n > CL_SCAN_MAX_BLOCKS) prc = cli_usage_error(CMD, "too many thresholds");
    if (prc != CLI_PARSED) {
        free(thr);
        return prc;
    }
    if (ck_every >= 0) o.checkpoint_seconds = ck_every, o.checkpoint_share = 0;
    o.match_cap = match_cap;
    o.shard_size = batch;
    o.index_dtype = index_dtype && !strcmp(index_dtype, "f32") ? 1 : 0;
    o.next_layout = !next_layout || !strcmp(next_layout, "auto") ? CL_SCAN_LAYOUT_AUTO
                    : !strcmp(next_layout, "dense")             ? CL_SCAN_LAYOUT_DENSE
                                                                : CL_SCAN_LAYOUT_CSR;
    for (size_t i = 0; i < thr->n; i++) o.match_thresholds[o.n_match_thresholds++] = thr->v[i];
    free(thr);
    const char *stop = getenv("CORPUSLENS_SCAN_STOP_AFTER");
    if (stop && *stop) o.stop_after_shards = atol(stop);
    cli_progress ps = {"scan", "substrings", cli_stderr_is_tty(), -1e9};
    if (rank == 0) {
        o.progress = cli_progress_line;
        o.note = note;
    }
    o.progress_user = &ps;
    cl_scan_result res;
    cl_interrupt_install(); /* SIGINT / SIGTERM: stop at a shard boundary, save, say how to resume */
    int rc = cl_scan_run(&o, MPI_COMM_WORLD, &res);
    if (rc) return rank == 0 ? cli_fail() : 1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss, maxrss = 0;
    cl_par_reduce(&rss, &maxrss, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (res.stopped && res.interrupted) {
        if (rank == 0)
            fprintf(stderr,
                    "corpuslens scan: interrupted by %s: %lld of %lld shard%s done, saved in %s.state/; run the same "
                    "command again to resume (on %d rank%s or any other number)\n",
                    cl_interrupt_name(res.interrupted), res.shards_done, res.n_shards, res.n_shards == 1 ? "" : "s",
                    o.out_path, R, R == 1 ? "" : "s");
        return 128 + res.interrupted;
    }
    if (res.stopped) {
        if (rank == 0) fprintf(stderr, "corpuslens scan: stopped after CORPUSLENS_SCAN_STOP_AFTER shards per rank (state kept)\n");
        return 3;
    }
    if (rank == 0)
        fprintf(stderr,
                "corpuslens scan: %lld prefiltered pairs, %lld stored matches, %zu trie nodes, wall %.1f s, %.3g GFLOP "
                "(forward %.3g, cosine %.3g), %.1f GFLOPS, peak RSS per rank %.0f MiB, %d rank%s -> %s\n",
                (long long)res.n_pairs, (long long)res.n_matches, res.n_nodes, res.wall_seconds, res.flops / 1e9,
                res.forward_flops / 1e9, res.cosine_flops / 1e9, res.flops / 1e9 / res.wall_seconds, maxrss / 1024.0,
                R, R == 1 ? "" : "s", o.out_path);
    if (rank == 0)
        fprintf(stderr, "corpuslens scan: time per rank (max; CPU seconds, reduce+write wall): prompts %.2f s, trie forward %.2f s, similarity sgemm %.2f s, "
                        "selection/binning %.2f s, reduce+write %.2f s\n",
                res.t_prompts, res.t_forward, res.t_sgemm, res.t_select, res.t_write);
    if (rank == 0)
        fprintf(stderr, "corpuslens scan: prompts: %lld from the shard forward, the other %lld through a prompt trie of %zu nodes\n",
                (long long)res.n_prompts_forwarded, (long long)(res.n_prompts - res.n_prompts_forwarded),
                res.n_prompt_nodes);
    if (rank == 0 && res.prune_rank > 0) { /* only when pruning is on (CORPUSLENS_SCAN_PRUNE_RANK) */
        fprintf(stderr, "corpuslens scan: pruning bound rank %d: pairs pruned per block (exact similarity skipped):", res.prune_rank);
        for (int b = 0; b < res.n_blocks; b++)
            fprintf(stderr, " %.1f%%",
                    res.n_tested[b] ? 100.0 * (double)(res.n_tested[b] - res.n_candidates[b]) / (double)res.n_tested[b]
                                    : 0.0);
        fprintf(stderr, "\n");
    }
    return 0;
}

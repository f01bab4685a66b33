/* corpuslens index: unit activations of every substring, per block -> index.h5
 * (MPI; design and layout: include/corpuslens/scan/index.h). */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/scan/index.h"
#include "corpuslens/scan/sketch.h"

static const char *CMD = "index";

static const char USAGE[] =
    "mpirun -n R corpuslens index --model MODEL.h5 --corpus CORPUS.h5 -o INDEX.h5\n"
    "                 [--hook mlp_out] [--dtype f16|f32] [--batch 2048] [--checkpoint-every 60]\n"
    "                 [--sketch-dim K]\n"
    "       corpuslens index --add-sketch INDEX.h5 [--sketch-dim K]";

static const char ABOUT[] =
    "Runs the model over every unique substring of CORPUS.h5 (the scan's shards and\n"
    "prefix-sharing forward) and stores, per hooked block, the unit-normalised\n"
    "activation at the last position of each: the index that `corpuslens explain`\n"
    "queries. The same bytes for any rank count. Layout: include/corpuslens/scan/index.h\n"
    "(h5dump -H INDEX.h5). TinyShakespeare L=10, lecture model: 3.96 GB in float16.\n";

static const char EPILOG[] =
    "Ranks write their shards to INDEX.h5.parts/; a killed build started again with\n"
    "the same arguments and rank count continues from them; rank 0 then writes\n"
    "INDEX.h5.tmp in shard order, adds the sketch (float16 only) and renames it.\n"
    "The sketch (include/corpuslens/scan/sketch.h): per block a K-dim PCA\n"
    "projection and every row's projected coordinates and residual norm, so that\n"
    "explain of a few texts skips, exactly, the rows that cannot reach a threshold.\n"
    "--add-sketch adds (or replaces) it in an existing index in place, on one\n"
    "process (copy the index first if it cannot be rebuilt).\n"
    "SIGINT (Ctrl-C) or SIGTERM: each rank stops after its current shard, fsyncs\n"
    "its part, and the build exits with status 130 (SIGINT) or 143 (SIGTERM),\n"
    "saying how to resume (the same command again). Open MPI's mpirun passes Ctrl-C\n"
    "on as SIGTERM to every rank after 1 s and SIGKILL 1 s later (N s each with\n"
    "--mca odls_base_sigkill_timeout N); a killed rank keeps what its last fsync\n"
    "(every 60 s) kept.\n"
    "CORPUSLENS_INDEX_STOP_AFTER=K stops each rank after K shards (tests; exit\n"
    "status 3, no output).\n";

static void note(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "corpuslens index: %s\n", msg);
}

int cmd_index(int argc, char **argv) {
    int rank = cli_rank(), R = 1;
    if (cli_mpi_active()) MPI_Comm_size(MPI_COMM_WORLD, &R);
    cl_index_opts o;
    cl_index_opts_default(&o);
    const char *dtype = "f16", *add = NULL;
    long batch = o.shard_size, kdim = o.sketch_dim;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &o.model_path, "the model"),
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &o.corpus_path, "`corpuslens prepare` output"),
        CLI_OPT_STRING("output", 'o', "INDEX.h5", &o.out_path, "the index to write"),
        CLI_OPT_STRING("hook", 0, "NAME", &o.hook,
                       "mlp_out, attn_out, resid_mid, resid_post, resid_pre,\n"
                       "embed, or blocks.{i}.hook_<one of those>"),
        CLI_OPT_CHOICE("dtype", 0, &dtype, "f16|f32|float16|float32",
                       "float16 or float32 (exactly the scan's vectors)"),
        CLI_OPT_INT("batch", 0, "S", &batch, 1, 1L << 20, "substrings per shard and per HDF5 chunk"),
        CLI_OPT_DOUBLE("checkpoint-every", 0, "T", &o.checkpoint_seconds, 0, 1e9,
                       "seconds between fsyncs of the part files (default 60)"),
        CLI_OPT_INT("sketch-dim", 0, "K", &kdim, 0, 256,
                    "dimensions of the pruning sketch (float16 indexes;\n"
                    "default min(32, n_embd/4); 0 = none)"),
        CLI_OPT_STRING("add-sketch", 0, "INDEX.h5", &add,
                       "only add the sketch to an existing index (in place; no\n"
                       "--model/--corpus needed; one process)"),
        CLI_END,
    };
    const cli_command cmd = {"index", USAGE, ABOUT, opts, EPILOG, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    o.dtype = dtype[1] == '3' || !strcmp(dtype, "float32") ? CL_INDEX_F32 : CL_INDEX_F16;
    o.shard_size = batch;
    o.sketch_dim = (int)kdim;
    if (add) {
        if (o.model_path || o.corpus_path || o.out_path)
            return rank == 0 ? cli_usage_error(CMD, "--add-sketch takes no --model, --corpus or -o") : 2;
        if (kdim == 0) return rank == 0 ? cli_usage_error(CMD, "--add-sketch needs --sketch-dim >= 1") : 2;
        if (R > 1) return rank == 0 ? cli_usage_error(CMD, "--add-sketch runs on one process (no mpirun)") : 2;
        double t0 = cli_wtime();
        cl_sketch_stats st;
        if (cl_index_add_sketch(add, kdim == CL_SKETCH_DIM_UNSET ? 0 : (int)kdim, &st)) return cli_fail();
        fprintf(stderr, "corpuslens index: sketch of %d dimensions added to %s in %.1f s (%zu bytes); variance kept per block:",
                st.k, add, cli_wtime() - t0, st.bytes);
        for (int b = 0; b < st.Lh; b++) fprintf(stderr, " %.3f", st.variance_kept[b]);
        fprintf(stderr, "\n");
        return 0;
    }
    if (!o.model_path || !o.corpus_path || !o.out_path)
        return rank == 0 ? cli_usage_error(CMD, "--model, --corpus and -o are required") : 2;
    const char *stop = getenv("CORPUSLENS_INDEX_STOP_AFTER");
    if (stop && *stop) o.stop_after_shards = atol(stop);
    cli_progress ps = {"index", "substrings", cli_stderr_is_tty(), -1e9};
    if (rank == 0) o.progress = cli_progress_line, o.note = note;
    o.progress_user = &ps;
    cl_index_result res;
    cl_interrupt_install(); /* SIGINT / SIGTERM: stop at a shard boundary, fsync, say how to resume */
    if (cl_index_run(&o, MPI_COMM_WORLD, &res)) return rank == 0 ? cli_fail() : 1;
    if (res.stopped && res.interrupted) {
        if (rank == 0)
            fprintf(stderr,
                    "corpuslens index: interrupted by %s: %lld of %lld shard%s done, kept in %s.parts/; run the same "
                    "command again to resume (on %d rank%s or any other number)\n",
                    cl_interrupt_name(res.interrupted), res.shards_done, res.n_shards, res.n_shards == 1 ? "" : "s",
                    o.out_path, R, R == 1 ? "" : "s");
        return 128 + res.interrupted;
    }
    if (res.stopped) {
        if (rank == 0) fprintf(stderr, "corpuslens index: stopped after CORPUSLENS_INDEX_STOP_AFTER shards (parts kept)\n");
        return 3;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss, maxrss = rss;
    if (R > 1) MPI_Reduce(&rss, &maxrss, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        fprintf(stderr,
                "corpuslens index: %zu trie nodes, trie forward %.1f s (max over ranks), assembly %.1f s, wall %.1f s, %zu bytes, "
                "peak RSS per rank %.0f MiB, %d rank%s -> %s\n",
                res.n_nodes, res.t_forward, res.t_write, res.wall_seconds, res.bytes, maxrss / 1024.0, R, R == 1 ? "" : "s", o.out_path);
    return 0;
}

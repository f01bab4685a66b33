/* corpuslens index: unit activations of every substring, per block -> index.h5
 * (MPI; design and layout: include/corpuslens/scan/index.h). */
#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/scan/index.h"

static const char *CMD = "index";

/* A number in [lo, hi] (the whole string); a usage error otherwise. */
static int parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = s && *s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi)) {
        cli_usage_error(cmd, "%s: '%s' is not a number in [%g, %g]", opt, s ? s : "", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void help(void) {
    printf("usage: mpirun -n R corpuslens index --model MODEL.h5 --corpus CORPUS.h5 -o INDEX.h5\n"
           "                 [--hook mlp_out] [--dtype f16|f32] [--batch 2048] [--checkpoint-every 60]\n"
           "\n"
           "Runs the model over every unique substring of CORPUS.h5 (the scan's shards and\n"
           "prefix-sharing forward) and stores, per hooked block, the unit-normalised\n"
           "activation at the last position of each: the index that `corpuslens explain`\n"
           "queries. The same bytes for any rank count. Layout: include/corpuslens/scan/index.h\n"
           "(h5dump -H INDEX.h5). TinyShakespeare L=10, lecture model: 3.96 GB in float16.\n"
           "\n"
           "  --hook NAME            mlp_out (default), attn_out, resid_mid, resid_post,\n"
           "                         resid_pre, embed, or blocks.{i}.hook_<one of those>\n"
           "  --dtype f16|f32        float16 (default) or float32 (exactly the scan's vectors)\n"
           "  --batch S              substrings per shard and per HDF5 chunk (default 2048)\n"
           "  --checkpoint-every T   seconds between fsyncs of the part files (default 60)\n"
           "\n"
           "Ranks write their shards to INDEX.h5.parts/; a killed build started again with\n"
           "the same arguments and rank count continues from them; rank 0 then writes\n"
           "INDEX.h5.tmp in shard order and renames it. CORPUSLENS_INDEX_STOP_AFTER=K stops\n"
           "each rank after K shards (tests; exit status 3, no output).\n");
}

typedef struct {
    int tty;
    double last;
} progress_state;

static void progress(void *user, size_t done, size_t total, double elapsed) {
    progress_state *s = user;
    int final = done >= total;
    if (!final && elapsed - s->last < (s->tty ? 0.5 : 30.0)) return;
    s->last = elapsed;
    double rate = elapsed > 0 ? done / elapsed : 0, eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "%sindex: %zu/%zu substrings (%.1f%%), %.0f/s, elapsed %.0f s, ETA %.0f s%s", s->tty ? "\r" : "",
            done, total, total ? 100.0 * done / total : 100.0, rate, elapsed, eta, s->tty && !final ? " " : "\n");
    fflush(stderr);
}

static void note(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "corpuslens index: %s\n", msg);
}

int cmd_index(int argc, char **argv) {
    int rank = 0, R = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    cl_index_opts o;
    cl_index_opts_default(&o);
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"corpus", required_argument, 0, 'c'},
                                         {"output", required_argument, 0, 'o'},
                                         {"hook", required_argument, 0, 'k'},
                                         {"dtype", required_argument, 0, 'd'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"checkpoint-every", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    long lv;
    while ((ch = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model_path = optarg; break;
        case 'c': o.corpus_path = optarg; break;
        case 'o': o.out_path = optarg; break;
        case 'k': o.hook = optarg; break;
        case 'd':
            if (!strcmp(optarg, "f16") || !strcmp(optarg, "float16")) o.dtype = CL_INDEX_F16;
            else if (!strcmp(optarg, "f32") || !strcmp(optarg, "float32")) o.dtype = CL_INDEX_F32;
            else return rank == 0 ? cli_usage_error(CMD, "--dtype: '%s' is not f16 or f32", optarg) : 2;
            break;
        case 'b':
            if (cli_parse_long(CMD, "--batch", optarg, 1, 1L << 20, &lv)) return 2;
            o.shard_size = lv;
            break;
        case 't':
            if (parse_double(CMD, "--checkpoint-every", optarg, 0, 1e9, &o.checkpoint_seconds)) return 2;
            break;
        case 'h':
            if (rank == 0) help();
            return 0;
        case ':': return rank == 0 ? cli_usage_error(CMD, "%s needs a value", argv[optind - 1]) : 2;
        default: return rank == 0 ? cli_usage_error(CMD, "unknown option %s", argv[optind - 1]) : 2;
        }
    }
    if (optind < argc) return rank == 0 ? cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]) : 2;
    if (!o.model_path || !o.corpus_path || !o.out_path)
        return rank == 0 ? cli_usage_error(CMD, "--model, --corpus and -o are required") : 2;
    const char *stop = getenv("CORPUSLENS_INDEX_STOP_AFTER");
    if (stop && *stop) o.stop_after_shards = atol(stop);
    progress_state ps = {cli_stderr_is_tty(), -1e9};
    if (rank == 0) o.progress = progress, o.note = note;
    o.progress_user = &ps;
    cl_index_result res;
    if (cl_index_run(&o, MPI_COMM_WORLD, &res)) return rank == 0 ? cli_fail() : 1;
    if (res.stopped) {
        if (rank == 0) fprintf(stderr, "corpuslens index: stopped after CORPUSLENS_INDEX_STOP_AFTER shards (parts kept)\n");
        return 3;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss, maxrss = 0;
    MPI_Reduce(&rss, &maxrss, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        fprintf(stderr,
                "index: %zu trie nodes, trie forward %.1f s (max over ranks), assembly %.1f s, wall %.1f s, %zu bytes, "
                "peak RSS per rank %.0f MiB, %d ranks -> %s\n",
                res.n_nodes, res.t_forward, res.t_write, res.wall_seconds, res.bytes, maxrss / 1024.0, R, o.out_path);
    return 0;
}

/* corpuslens scan: every prompt against every substring, per block (scan.h). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "corpuslens/base/error.h"
#include "corpuslens/scan/scan.h"

static const char *CMD = "scan";

static void help(void) {
    printf("usage: mpirun -n R corpuslens scan --model MODEL.h5 --corpus CORPUS.h5 -o SCAN.h5\n"
           "                 [--hook mlp_out] [--prefilter 0.7] [--bin-width 0.01]\n"
           "                 [--match-thresholds a,b,...] [--match-cap 1000] [--batch 2048]\n"
           "                 [--checkpoint-every SECONDS] [--index-out INDEX.h5 [--index-dtype f16|f32]]\n"
           "\n"
           "Compares the hooked activation (last position) of every prompt with that of\n"
           "every substring of CORPUS.h5, per block, by cosine similarity, and writes the\n"
           "next-token counts of the substrings above the prefilter binned by similarity,\n"
           "the stored matches, the model's and the logit lens's distributions (layout:\n"
           "include/corpuslens/h5/h5schema.h; method: include/corpuslens/scan/scan.h).\n"
           "\n"
           "  --hook NAME          mlp_out (default), attn_out, resid_mid, resid_post,\n"
           "                       resid_pre (every block), embed, or blocks.{i}.hook_<one of those>\n"
           "  --prefilter X        count pairs with similarity > X; in (-1, 1)\n"
           "  --bin-width W        grid of (1 - X) / W bins above the prefilter (a whole number)\n"
           "  --match-thresholds   comma-separated, one per hooked block: store matches above\n"
           "                       (default: the paper's thresholds for 6-block models, else X)\n"
           "  --match-cap K        at most K stored matches per (prompt, block), most similar\n"
           "                       first, ties by lower substring index; 0 = no cap (default 1000)\n"
           "  --batch S            substrings per shard (the unit of work and of resume; part\n"
           "                       of the run's identity; default 2048)\n"
           "  --checkpoint-every T seconds between checkpoints in SCAN.h5.state/ (default 600)\n"
           "  --index-out PATH     also write the activation index of `corpuslens index` from\n"
           "                       the vectors the scan computes anyway (nothing computed twice)\n"
           "  --index-dtype T      f16 (default) or f32 for --index-out\n"
           "\n"
           "A killed scan started again with the same arguments and rank count continues\n"
           "from its last checkpoint. Environment: CORPUSLENS_SCAN_STOP_AFTER=K stops each\n"
           "rank after K shards with a checkpoint (for tests; exit status 3, no output).\n");
}

typedef struct {
    int tty, rank;
    double last;
    char line[256];
} progress_state;

static void progress(void *user, size_t done, size_t total, double elapsed) {
    progress_state *s = user;
    int final = done >= total;
    if (!final && elapsed - s->last < (s->tty ? 0.5 : 30.0)) return;
    s->last = elapsed;
    double rate = elapsed > 0 ? done / elapsed : 0, eta = rate > 0 ? (total - done) / rate : 0;
    double frac = total ? (double)done / total : 1;
    if (s->tty) {
        char bar[31];
        int k = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\rscan [%s] %5.1f%% %zu/%zu substrings  %.0f/s  ETA %02d:%02d:%02d ", bar, 100 * frac, done,
                total, rate, (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "scan: %zu/%zu substrings (%.1f%%), %.0f/s, elapsed %.0f s, ETA %.0f s\n", done, total,
                100 * frac, rate, elapsed, eta);
    }
    fflush(stderr);
}

static void note(void *user, const char *msg) { fprintf(stderr, "corpuslens scan: %s\n", msg); }

int cmd_scan(int argc, char **argv) {
    int rank = 0, R = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    cl_scan_opts o;
    cl_scan_opts_default(&o);
    const char *thr = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long lv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0) help();
            return 0;
        }
        if (!v && a[0] == '-') return rank == 0 ? cli_usage_error(CMD, "%s needs a value", a) : 2;
        if (!strcmp(a, "--model")) o.model_path = v, i++;
        else if (!strcmp(a, "--corpus")) o.corpus_path = v, i++;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o.out_path = v, i++;
        else if (!strcmp(a, "--hook")) o.hook = v, i++;
        else if (!strcmp(a, "--prefilter")) {
            /* range checked by the library with the documented message */
            if (cli_parse_double(CMD, a, v, -1e300, 1e300, &o.prefilter)) return 2;
            i++;
        } else if (!strcmp(a, "--bin-width")) {
            if (cli_parse_double(CMD, a, v, -1e300, 1e300, &o.bin_width)) return 2;
            i++;
        } else if (!strcmp(a, "--match-thresholds")) thr = v, i++;
        else if (!strcmp(a, "--match-cap")) {
            if (cli_parse_long(CMD, a, v, 0, 1L << 30, &lv)) return 2;
            o.match_cap = lv, i++;
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_long(CMD, a, v, 1, 1L << 20, &lv)) return 2;
            o.shard_size = lv, i++;
        } else if (!strcmp(a, "--checkpoint-every")) {
            if (cli_parse_double(CMD, a, v, 0, 1e9, &o.checkpoint_seconds)) return 2;
            i++;
        } else if (!strcmp(a, "--index-out")) o.index_out = v, i++;
        else if (!strcmp(a, "--index-dtype")) {
            if (!strcmp(v, "f16") || !strcmp(v, "float16")) o.index_dtype = 0;
            else if (!strcmp(v, "f32") || !strcmp(v, "float32")) o.index_dtype = 1;
            else return rank == 0 ? cli_usage_error(CMD, "--index-dtype: '%s' is not f16 or f32", v) : 2;
            i++;
        } else return rank == 0 ? cli_usage_error(CMD, "unknown argument '%s'", a) : 2;
    }
    if (!o.model_path || !o.corpus_path || !o.out_path)
        return rank == 0 ? cli_usage_error(CMD, "--model, --corpus and -o are required") : 2;
    if (thr) {
        const char *s = thr;
        while (*s) {
            char *end;
            if (o.n_match_thresholds == CL_SCAN_MAX_BLOCKS) return rank == 0 ? cli_usage_error(CMD, "too many thresholds") : 2;
            double d = strtod(s, &end);
            if (end == s || (*end && *end != ','))
                return rank == 0 ? cli_usage_error(CMD, "--match-thresholds: '%s' is not a list of numbers", thr) : 2;
            o.match_thresholds[o.n_match_thresholds++] = d;
            s = *end ? end + 1 : end;
        }
    }
    const char *stop = getenv("CORPUSLENS_SCAN_STOP_AFTER");
    if (stop && *stop) o.stop_after_shards = atol(stop);
    progress_state ps = {cli_stderr_is_tty(), rank, -1e9, ""};
    if (rank == 0) {
        o.progress = progress;
        o.note = note;
    }
    o.progress_user = &ps;
    cl_scan_result res;
    int rc = cl_scan_run(&o, MPI_COMM_WORLD, &res);
    if (rc) return rank == 0 ? cli_fail() : 1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss, maxrss = 0;
    MPI_Reduce(&rss, &maxrss, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (res.stopped) {
        if (rank == 0) fprintf(stderr, "corpuslens scan: stopped after CORPUSLENS_SCAN_STOP_AFTER shards per rank (state kept)\n");
        return 3;
    }
    if (rank == 0)
        fprintf(stderr,
                "scan: %lld prefiltered pairs, %lld stored matches, %zu trie nodes, wall %.1f s, %.3g GFLOP "
                "(forward %.3g, cosine %.3g), %.1f GFLOPS, peak RSS per rank %.0f MiB, %d ranks -> %s\n",
                (long long)res.n_pairs, (long long)res.n_matches, res.n_nodes, res.wall_seconds, res.flops / 1e9,
                res.forward_flops / 1e9, res.cosine_flops / 1e9, res.flops / 1e9 / res.wall_seconds, maxrss / 1024.0,
                R, o.out_path);
    if (rank == 0)
        fprintf(stderr, "scan: time per rank (max): prompts %.1f s, trie forward %.1f s, similarity sgemm %.1f s, "
                        "selection/binning %.1f s, reduce+write %.1f s\n",
                res.t_prompts, res.t_forward, res.t_sgemm, res.t_select, res.t_write);
    return 0;
}

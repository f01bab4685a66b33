/* corpuslens serve: explain any passage over HTTP, with a web page
 * (include/corpuslens/serve/serve.h, docs/serve.md). */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/serve/serve.h"

static const char *CMD = "serve";

static const char USAGE[] =
    "corpuslens serve --index INDEX.h5 --corpus CORPUS.h5 --model MODEL.h5\n"
    "                 [--host 127.0.0.1] [--port 8080] [--threads 4] [--compute-threads N] [--text CORPUS.txt]\n"
    "                 [limits]";

static const char ABOUT[] =
    "Loads the model, corpus and index once and answers over HTTP: the page at /,\n"
    "POST /api/explain {text, thresholds?, weights?, top?, soft?, positions?} (every\n"
    "position of the text, or with positions \"last\" the last one only, explained as\n"
    "`explain` explains its window), GET /api/locate?substring=ID\n"
    "&context=N&max=M (where a corpus string occurs in the corpus text), /api/info,\n"
    "/api/health (503 while loading, 200 when ready) and /metrics (Prometheus).\n"
    "Routes and JSON fields: docs/serve.md.\n";

static const char EPILOG[] =
    "Safety and limits:\n"
    "  - binds 127.0.0.1 unless --host says otherwise (a warning when it does);\n"
    "  - a request body over --max-body bytes: 413; a text over --max-chars\n"
    "    characters, invalid UTF-8 or a character outside the model's vocabulary:\n"
    "    400 with a JSON error naming the position; an unknown route: 404; a wrong\n"
    "    method: 405;\n"
    "  - one compute thread owns the model and runs one job at a time (on\n"
    "    --compute-threads threads); at most --queue jobs wait for it, and a job\n"
    "    beyond that gets 503 (busy) at once;\n"
    "  - a request not answered within --timeout seconds of its arrival gets 504;\n"
    "  - locate returns at most --max-occurrences occurrences (and their total\n"
    "    count) with at most --max-context characters each side; similar strings\n"
    "    per block: at most 50 (top), and at most 200,000 in one answer\n"
    "    (positions x blocks x top; beyond: 400);\n"
    "  - at most --max-connections open connections; idle ones close after 30 s;\n"
    "  - the page is compiled into the binary: no path from a request is read;\n"
    "    no request changes the server's state (only the metrics count it).\n"
    "--port 0 picks a free port; the port is printed on stdout as\n"
    "\"serve: listening on http://HOST:PORT/\". SIGINT or SIGTERM stops it (exit 0).\n"
    "The corpus text for locate is the file corpus.h5 was prepared from (its\n"
    "corpus_file attribute, or --text), used only when its SHA-256 matches.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void listening(void *user, const char *host, int port) {
    (void)user;
    int v6 = strchr(host, ':') != NULL;
    printf("serve: listening on http://%s%s%s:%d/\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
    fflush(stdout);
    fprintf(stderr, "corpuslens serve: loading the model, corpus and index (/api/health answers 503 until ready)\n");
}

int cmd_serve(int argc, char **argv) {
    cl_serve_opts o;
    cl_serve_opts_default(&o);
    long port = o.port, threads = o.threads, cthreads = o.compute_threads, queue = o.queue, max_body = (long)o.max_body,
         max_chars = (long)o.max_chars, max_occ = o.max_occurrences, max_ctx = o.max_context,
         max_conn = o.max_connections;
    double timeout = o.timeout_s;
    static cli_doubles thr, wts; /* large (1024 values): not on the stack */
    const cli_option opts[] = {
        CLI_OPT_STRING("index", 0, "INDEX.h5", &o.index_path, "the index (`corpuslens index`)"),
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &o.corpus_path, "the corpus file the index was built from"),
        CLI_OPT_STRING("model", 0, "MODEL.h5", &o.model_path, "the model the index was built from"),
        CLI_OPT_STRING("host", 0, "ADDR", &o.host, "numeric IPv4/IPv6 address to bind (other than loopback: a warning)"),
        CLI_OPT_INT("port", 0, "PORT", &port, 0, 65535, "TCP port; 0 = a free one (printed)"),
        CLI_OPT_INT("threads", 0, "N", &threads, 1, 256, "HTTP threads (libmicrohttpd's pool)"),
        CLI_OPT_INT("compute-threads", 0, "N", &cthreads, 0, 64,
                    "threads of one explain job (its hooked blocks split over\n"
                    "them; the same answer for any N); 0 = the online cores"),
        CLI_OPT_INT("queue", 0, "N", &queue, 1, 4096, "jobs that may wait for the compute thread; beyond: 503"),
        CLI_OPT_DOUBLE("timeout", 0, "S", &timeout, 0.001, 86400, "per-request time limit in seconds; beyond: 504"),
        CLI_OPT_INT("max-body", 0, "BYTES", &max_body, 64, 1 << 26, "largest request body; beyond: 413"),
        CLI_OPT_INT("max-chars", 0, "N", &max_chars, 1, 1 << 20, "longest text to explain; beyond: 400"),
        CLI_OPT_INT("max-occurrences", 0, "N", &max_occ, 1, 1000, "locate: most occurrences returned"),
        CLI_OPT_INT("max-context", 0, "N", &max_ctx, 0, 10000, "locate: most context characters each side"),
        CLI_OPT_INT("max-connections", 0, "N", &max_conn, 1, 100000, "open connections at most"),
        CLI_OPT_DOUBLES("thresholds", 0, "LIST", &thr,
                        "the requests' default thresholds, one per hooked block\n"
                        "(default: the paper's for 6 blocks; none otherwise)"),
        CLI_OPT_DOUBLES("weights", 0, "LIST", &wts, "the requests' default weights (with --thresholds)"),
        CLI_OPT_STRING("text", 0, "CORPUS.txt", &o.text_path,
                       "the corpus text for locate (default: corpus.h5's corpus_file;\n"
                       "checked against its SHA-256)"),
        CLI_END,
    };
    const cli_command cmd = {"serve", USAGE, ABOUT, opts, EPILOG, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (cli_mpi_active()) { /* started by mpirun: one server, on one process */
        int R = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &R);
        if (R > 1) return cli_usage_error(CMD, "serve runs on one process: start it without mpirun (%d ranks)", R);
    }
    if (!o.index_path || !o.corpus_path || !o.model_path)
        return cli_usage_error(CMD, "--index, --corpus and --model are required");
    if (thr.set != wts.set || thr.n != wts.n || thr.n > 64)
        return cli_usage_error(CMD, "--thresholds and --weights go together, one value each per hooked block (<= 64)");
    o.n_default = (int)thr.n;
    for (size_t b = 0; b < thr.n; b++) o.thresholds[b] = thr.v[b], o.weights[b] = wts.v[b];
    o.port = (int)port, o.threads = (int)threads, o.compute_threads = (int)cthreads, o.queue = (int)queue, o.timeout_s = timeout;
    o.max_body = (size_t)max_body, o.max_chars = (size_t)max_chars, o.max_occurrences = (int)max_occ;
    o.max_context = (int)max_ctx, o.max_connections = (int)max_conn;
    o.listening = listening;
    if (strcmp(o.host, "127.0.0.1") && strcmp(o.host, "::1") && strncmp(o.host, "127.", 4))
        fprintf(stderr, "corpuslens serve: WARNING: binding %s, not loopback: anyone who can reach this address can use the "
                        "server (it has no authentication)\n", o.host);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (cl_serve_run(&o, &stop_flag)) return cli_fail();
    fprintf(stderr, "corpuslens serve: stopped\n");
    return 0;
}

/* corpuslens serve: the passage explanation (scan/passage.h) over HTTP, with
 * an embedded web page (issue 22). docs/serve.md documents the routes and the
 * JSON fields.
 *
 * Threads (llama.cpp's server's shape):
 *   - libmicrohttpd's thread pool (`threads` HTTP threads) parses requests,
 *     checks every limit and answers the cheap routes (page, health, info,
 *     metrics) itself;
 *   - ONE compute thread (the caller of cl_serve_run) owns the model, the
 *     corpus, the index and every HDF5 handle: it loads them, then runs the
 *     queued jobs (explain, locate) one at a time and writes their JSON. No
 *     HDF5 call is made on any other thread. Within a job the sketch's search
 *     of the hooked blocks runs on `compute_threads` threads (explain.h:
 *     no HDF5 call, the same bits for any count).
 *   - The queue between them is bounded (`queue` jobs waiting): a job that
 *     does not fit gets 503 at once, never unbounded memory. An HTTP thread
 *     waits for its job at most `timeout_s` (from arrival): then 504. A job
 *     whose deadline passed before it started is dropped unstarted; one
 *     already running completes (the text cap bounds it) and its result is
 *     discarded.
 * The server listens BEFORE loading: /api/health answers 503 while loading,
 * 200 when ready; the other /api routes answer 503 until then.
 * No request changes the server's state (the metrics count it), and no path
 * from a request is ever opened: the page's files are compiled in.
 */
#ifndef CORPUSLENS_SERVE_SERVE_H
#define CORPUSLENS_SERVE_SERVE_H

#include <signal.h>
#include <stddef.h>

typedef struct {
    const char *index_path, *corpus_path, *model_path;
    const char *text_path;  /* corpus text for /api/locate; NULL: corpus.h5's corpus_file attribute
                               (either is used only when its SHA-256 is the corpus file's corpus_sha256) */
    const char *host;       /* numeric IPv4 or IPv6 address; default "127.0.0.1" */
    int port;               /* 0: a free port */
    int threads;            /* HTTP threads, default 4 */
    int compute_threads;    /* threads of one explain job (its hooked blocks split over them; the same
                               bits for any count), default 0: the online cores */
    int queue;              /* jobs waiting for the compute thread, default 8 */
    double timeout_s;       /* per request, default 30 */
    size_t max_body;        /* bytes of a request body, default 65536 (413 above) */
    size_t max_chars;       /* characters of a text, default 1000 (400 above) */
    int max_occurrences;    /* locate: occurrences returned, default 50 (cap 1000) */
    int max_context;        /* locate: context characters each side, cap, default 200 */
    int max_connections;    /* open connections, default 64 */
    /* the requests' default thresholds and weights (one per hooked block); n = 0: the paper's
       for a 6-block hook, none otherwise (then every request must give them) */
    int n_default;
    double thresholds[64], weights[64];
    /* called once the socket listens (before loading), with the bound port */
    void (*listening)(void *user, const char *host, int port);
    void *user;
} cl_serve_opts;

void cl_serve_opts_default(cl_serve_opts *o);

/* Bind, load (model, corpus, index, SHA-256 identity checks), serve until
 * *stop becomes nonzero (a signal handler sets it), then stop the HTTP
 * threads, answer the jobs still queued with 503, and free everything.
 * Runs the compute loop on the calling thread. 0 after a clean stop, -1 with
 * cl_error when binding or loading fails. */
int cl_serve_run(const cl_serve_opts *o, volatile sig_atomic_t *stop);

#endif

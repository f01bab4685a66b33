/* corpuslens serve: HTTP (libmicrohttpd), the bounded job queue, the compute
 * loop, metrics (include/corpuslens/serve/serve.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>

#include "serve/serve_mhd.h" /* after microhttpd.h: MHD_* through dlopen */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/scan/passage.h"
#include "serve/serve_internal.h"

void cl_serve_opts_default(cl_serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->threads = 4;
    o->queue = 8;
    o->timeout_s = 30;
    o->max_body = 65536;
    o->max_chars = 1000;
    o->max_occurrences = 50;
    o->max_context = 200;
    o->max_connections = 64;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- routes and metrics ---- */
enum { R_PAGE, R_FILE, R_HEALTH, R_INFO, R_EXPLAIN, R_LOCATE, R_METRICS, R_OTHER, N_ROUTES };
static const char *const route_name[N_ROUTES] = {"/", "static", "/api/health", "/api/info",
                                                  "/api/explain", "/api/locate", "/metrics", "other"};
static const int status_codes[] = {200, 400, 404, 405, 413, 500, 503, 504};
#define N_STATUS 9 /* the codes above and "other" */
static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BUCKETS (sizeof buckets / sizeof *buckets)

typedef struct job job;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work; /* the compute thread waits for a job (CLOCK_MONOTONIC) */
    const cl_serve_opts *o;
    sv_state st;
    int ready, shutting;
    char *info; /* /api/info, built once after loading */
    /* queue of waiting jobs: a ring of o->queue */
    job **ring;
    int head, count;
    job *running;
    /* metrics */
    unsigned long long req[N_ROUTES][N_STATUS];
    unsigned long long hist[N_BUCKETS + 1];
    double lat_sum;
    unsigned long long lat_count, rejected_busy, timed_out;
    long in_flight;
    pthread_t watchdog;
    int watch_stop;
} server;

enum { J_EXPLAIN, J_LOCATE };
struct job {
    int kind;
    sv_explain_req rq;     /* J_EXPLAIN */
    long long sub;         /* J_LOCATE */
    int context, max_occ; /* J_LOCATE */
    double deadline;
    int done, status;      /* done: the answer (status, body) is set and the connection resumed */
    char *body;
    int refs;              /* the connection's + the compute side's (queue or running) */
    struct MHD_Connection *conn;
};

/* per request (MHD's con_cls) */
typedef struct {
    double t0;
    int route, status;
    char *body;
    size_t len;
    int too_big;
    job *j;
} request;

static void job_unref(job *j) { /* under mu */
    if (--j->refs > 0) return;
    free(j->rq.tokens);
    free(j->body);
    free(j);
}

/* under mu: answer a job that has not been answered, and resume its connection */
static void job_finish(job *j, int status, char *body) {
    if (j->done) {
        free(body);
        return;
    }
    j->done = 1, j->status = status, j->body = body;
    MHD_resume_connection(j->conn);
}

static enum MHD_Result reply(struct MHD_Connection *c, request *rq, int status, const char *type, const void *data,
                             size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 405) MHD_add_response_header(r, "Allow", rq->route == R_EXPLAIN ? "POST" : "GET, HEAD");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    rq->status = status;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, request *rq, int status, char *json /* owned */) {
    return reply(c, rq, status, "application/json", json, strlen(json), MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, request *rq, int status, const char *msg) {
    return reply_json(c, rq, status, sv_error_json(msg, -1));
}

static char *metrics_text(server *s) {
    size_t cap = 16384, w = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
#define PUT(...)                                                                 \
    do {                                                                         \
        int k_ = snprintf(b + w, cap - w, __VA_ARGS__);                          \
        if (k_ > 0) w += (size_t)k_ < cap - w ? (size_t)k_ : cap - w - 1;        \
    } while (0)
    pthread_mutex_lock(&s->mu);
    PUT("# HELP corpuslens_http_requests_total HTTP requests answered, by route and status.\n");
    PUT("# TYPE corpuslens_http_requests_total counter\n");
    for (int r = 0; r < N_ROUTES; r++)
        for (int k = 0; k < N_STATUS; k++)
            if (s->req[r][k]) {
                char code[8];
                if (k < N_STATUS - 1) snprintf(code, sizeof code, "%d", status_codes[k]);
                else snprintf(code, sizeof code, "other");
                PUT("corpuslens_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", route_name[r], code,
                    s->req[r][k]);
            }
    PUT("# HELP corpuslens_http_request_duration_seconds Time from a request's arrival to its answer.\n");
    PUT("# TYPE corpuslens_http_request_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += s->hist[i];
        PUT("corpuslens_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[i], cum);
    }
    cum += s->hist[N_BUCKETS];
    PUT("corpuslens_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    PUT("corpuslens_http_request_duration_seconds_sum %.6f\n", s->lat_sum);
    PUT("corpuslens_http_request_duration_seconds_count %llu\n", s->lat_count);
    PUT("# HELP corpuslens_http_requests_in_flight Requests received and not yet answered.\n");
    PUT("# TYPE corpuslens_http_requests_in_flight gauge\n");
    PUT("corpuslens_http_requests_in_flight %ld\n", s->in_flight);
    PUT("# HELP corpuslens_queue_jobs Jobs waiting for the compute thread.\n");
    PUT("# TYPE corpuslens_queue_jobs gauge\n");
    PUT("corpuslens_queue_jobs %d\n", s->count);
    PUT("# HELP corpuslens_queue_capacity Jobs the queue holds (503 beyond).\n");
    PUT("# TYPE corpuslens_queue_capacity gauge\n");
    PUT("corpuslens_queue_capacity %d\n", s->o->queue);
    PUT("# HELP corpuslens_ready 1 once the model, corpus and index are loaded.\n");
    PUT("# TYPE corpuslens_ready gauge\n");
    PUT("corpuslens_ready %d\n", s->ready);
    PUT("# HELP corpuslens_rejected_busy_total Jobs refused with 503 because the queue was full.\n");
    PUT("# TYPE corpuslens_rejected_busy_total counter\n");
    PUT("corpuslens_rejected_busy_total %llu\n", s->rejected_busy);
    PUT("# HELP corpuslens_timed_out_total Jobs answered 504 after the per-request time limit.\n");
    PUT("# TYPE corpuslens_timed_out_total counter\n");
    PUT("corpuslens_timed_out_total %llu\n", s->timed_out);
    pthread_mutex_unlock(&s->mu);
#undef PUT
    return b;
}

/* a query argument as a bounded integer: 0, or -1 (bad) */
static int arg_int(struct MHD_Connection *c, const char *name, long long lo, long long hi, long long def,
                   long long *out, char *msg, size_t msz) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v) {
        if (def < lo) return snprintf(msg, msz, "%s is required", name), -1;
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return snprintf(msg, msz, "%s: an integer in %lld..%lld is required", name, lo, hi), -1;
    *out = x;
    return 0;
}

/* Queue a job (under mu) and suspend the connection; or answer 503. */
static enum MHD_Result submit(server *s, struct MHD_Connection *c, request *rq, job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->shutting || s->count >= s->o->queue) {
        if (!s->shutting) s->rejected_busy++;
        pthread_mutex_unlock(&s->mu);
        free(j->rq.tokens);
        free(j);
        return reply_error(c, rq, 503, s->shutting ? "the server is stopping"
                                                   : "busy: the queue is full (serve --queue); try again");
    }
    j->refs = 2;
    j->conn = c;
    j->deadline = rq->t0 + s->o->timeout_s;
    s->ring[(s->head + s->count) % s->o->queue] = j;
    s->count++;
    rq->j = j;
    MHD_suspend_connection(c);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    request *rq = *con_cls;
    if (!rq) { /* first call: the headers */
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->t0 = now_s();
        rq->status = 0;
        *con_cls = rq;
        pthread_mutex_lock(&s->mu);
        s->in_flight++;
        pthread_mutex_unlock(&s->mu);
        rq->route = R_OTHER;
        if (!strcmp(url, "/")) rq->route = R_PAGE;
        else if (!strcmp(url, "/app.js") || !strcmp(url, "/style.css")) rq->route = R_FILE;
        else if (!strcmp(url, "/api/health")) rq->route = R_HEALTH;
        else if (!strcmp(url, "/api/info")) rq->route = R_INFO;
        else if (!strcmp(url, "/api/explain")) rq->route = R_EXPLAIN;
        else if (!strcmp(url, "/api/locate")) rq->route = R_LOCATE;
        else if (!strcmp(url, "/metrics")) rq->route = R_METRICS;
        if (rq->route == R_OTHER) return reply_error(c, rq, 404, "no such route");
        int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (rq->route == R_EXPLAIN ? strcmp(method, "POST") : !is_get)
            return reply_error(c, rq, 405, rq->route == R_EXPLAIN ? "use POST" : "use GET");
        if (rq->route == R_EXPLAIN) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(cl, &end, 10);
                if (errno || *end || n > s->o->max_body) {
                    char msg[160];
                    snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (serve --max-body)",
                             s->o->max_body);
                    return reply_error(c, rq, 413, msg);
                }
            }
            return MHD_YES; /* the body follows */
        }
        /* GET routes: answered now */
        if (rq->route == R_PAGE || rq->route == R_FILE) {
            for (size_t i = 0; i < sv_page_n_files; i++)
                if (!strcmp(sv_page_files[i].name, url))
                    return reply(c, rq, 200, sv_page_files[i].type, sv_page_files[i].data, sv_page_files[i].len,
                                 MHD_RESPMEM_PERSISTENT);
            return reply_error(c, rq, 404, "no such file");
        }
        if (rq->route == R_METRICS) {
            char *m = metrics_text(s);
            if (!m) return reply_error(c, rq, 500, "out of memory");
            return reply(c, rq, 200, "text/plain; version=0.0.4", m, strlen(m), MHD_RESPMEM_MUST_FREE);
        }
        pthread_mutex_lock(&s->mu);
        int ready = s->ready;
        pthread_mutex_unlock(&s->mu);
        if (rq->route == R_HEALTH)
            return reply_json(c, rq, ready ? 200 : 503,
                              strdup(ready ? "{\"status\":\"ok\"}" : "{\"status\":\"loading\"}"));
        if (!ready) return reply_error(c, rq, 503, "loading the model, corpus and index");
        if (rq->route == R_INFO) return reply(c, rq, 200, "application/json", s->info, strlen(s->info),
                                              MHD_RESPMEM_PERSISTENT);
        /* R_LOCATE */
        char msg[200];
        long long sub, ctx, mx;
        if (arg_int(c, "substring", 0, (long long)1 << 62, -1, &sub, msg, sizeof msg) ||
            arg_int(c, "context", 0, s->o->max_context, 40 < s->o->max_context ? 40 : s->o->max_context, &ctx, msg,
                    sizeof msg) ||
            arg_int(c, "max", 1, s->o->max_occurrences, s->o->max_occurrences < 20 ? s->o->max_occurrences : 20, &mx,
                    msg, sizeof msg))
            return reply_error(c, rq, 400, msg);
        job *j = calloc(1, sizeof *j);
        if (!j) return reply_error(c, rq, 500, "out of memory");
        j->kind = J_LOCATE, j->sub = sub, j->context = (int)ctx, j->max_occ = (int)mx;
        return submit(s, c, rq, j);
    }
    if (rq->j) { /* resumed: the job is answered */
        pthread_mutex_lock(&s->mu);
        job *j = rq->j;
        int status = j->status;
        char *body = j->body;
        j->body = NULL;
        pthread_mutex_unlock(&s->mu);
        if (!body) body = sv_error_json("no answer", -1), status = 500;
        return reply_json(c, rq, status, body);
    }
    if (rq->status) return MHD_YES; /* answered already (413 before the body) */
    /* POST /api/explain: the body */
    if (*upload_size) {
        if (!rq->too_big) {
            if (rq->len + *upload_size > s->o->max_body) {
                rq->too_big = 1;
                free(rq->body);
                rq->body = NULL;
            } else {
                char *nb = realloc(rq->body, rq->len + *upload_size + 1);
                if (!nb) return MHD_NO;
                memcpy(nb + rq->len, upload, *upload_size);
                rq->body = nb;
                rq->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (serve --max-body)", s->o->max_body);
        return reply_error(c, rq, 413, msg);
    }
    pthread_mutex_lock(&s->mu);
    int ready = s->ready;
    pthread_mutex_unlock(&s->mu);
    if (!ready) return reply_error(c, rq, 503, "loading the model, corpus and index");
    job *j = calloc(1, sizeof *j);
    if (!j) return reply_error(c, rq, 500, "out of memory");
    char *err = NULL;
    int st = sv_parse_explain(&s->st, rq->body ? rq->body : "", rq->len, &j->rq, &err);
    if (st) {
        free(j);
        return reply_json(c, rq, st, err);
    }
    j->kind = J_EXPLAIN;
    return submit(s, c, rq, j);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    server *s = cls;
    request *rq = *con_cls;
    if (!rq) return;
    double dt = now_s() - rq->t0;
    pthread_mutex_lock(&s->mu);
    s->in_flight--;
    int k = N_STATUS - 1;
    for (int i = 0; i < N_STATUS - 1; i++)
        if (status_codes[i] == rq->status) k = i;
    if (rq->status) {
        s->req[rq->route][k]++;
        size_t b = 0;
        while (b < N_BUCKETS && dt > buckets[b]) b++;
        s->hist[b]++;
        s->lat_sum += dt;
        s->lat_count++;
    }
    if (rq->j) {
        /* a connection closed while its job waits: answer it now (nobody reads it) */
        if (!rq->j->done) rq->j->done = 1;
        job_unref(rq->j);
    }
    pthread_mutex_unlock(&s->mu);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

/* The time limit: answer 504 for every job past its deadline, waiting or running. */
static void *watchdog(void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->watch_stop) {
        double t = now_s();
        for (int i = 0; i < s->count;) {
            job *j = s->ring[(s->head + i) % s->o->queue];
            if (t < j->deadline) {
                i++;
                continue;
            }
            /* remove it from the ring, keeping the order */
            for (int q = i; q + 1 < s->count; q++)
                s->ring[(s->head + q) % s->o->queue] = s->ring[(s->head + q + 1) % s->o->queue];
            s->count--;
            if (!j->done) s->timed_out++;
            job_finish(j, 504, sv_error_json("the request took longer than the time limit (serve --timeout)", -1));
            job_unref(j);
        }
        if (s->running && !s->running->done && t >= s->running->deadline) {
            s->timed_out++;
            job_finish(s->running, 504,
                       sv_error_json("the request took longer than the time limit (serve --timeout)", -1));
        }
        pthread_mutex_unlock(&s->mu);
        usleep(20000);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int fingerprint(const char *path, char out[65], void *user) {
    (void)path;
    return cl_model_fingerprint(user, out);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* load everything (the compute thread); 0 or -1 */
static int load(server *s) {
    const cl_serve_opts *o = s->o;
    sv_state *st = &s->st;
    st->o = o;
    st->m = cl_model_map(o->model_path);
    if (!st->m) return -1; /* the loaders name the path */
    /* whole and checked: rows are read per request (top strings, the n-gram); a BPE corpus with its BPE model */
    st->cp = cl_corpus_load_any(o->corpus_path);
    if (!st->cp) return -1;
    if (!st->cp->bpe != !st->m->bpe)
        return cl_error("%s is a %s corpus but %s is a %s model", o->corpus_path,
                        st->cp->bpe ? "GPT-2 BPE" : "character-level", o->model_path,
                        st->m->bpe ? "GPT-2 BPE" : "character-level");
    st->ix = cl_index_open(o->index_path);
    if (!st->ix) return -1;
    char msha[65], csha[65];
    int hit;
    if (cl_sha256_cached(o->model_path, "model-fingerprint-v1", fingerprint, st->m, msha, &hit) ||
        cl_sha256_file_cached(o->corpus_path, csha, &hit) ||
        cl_index_check(st->ix, msha, csha, o->model_path, o->corpus_path))
        return -1;
    /* warm for every request: the mapping read in, the sketch held in memory */
    if (cl_index_hold(st->ix)) return -1;
    const int V = st->m->cfg.vocab_size;
    if (st->cp->V != V || st->ix->V != V) return cl_error("the corpus, index and model have different vocabularies");
    if (st->m->bpe ? !cl_bpe_equal(st->cp->bpe, st->m->bpe) || !st->ix->bpe || !cl_bpe_equal(st->ix->bpe, st->m->bpe)
                   : !!st->ix->bpe)
        return cl_error("the corpus, index and model have different tokenizers");
    for (int v = 0; !st->m->bpe && v < V; v++)
        if (st->cp->vocab[v] != st->m->vocab[v]) return cl_error("the corpus and the model have different vocabularies");
    /* the corpus's next tokens in the index's row order, once (explain.h) */
    if (cl_explain_hold_counts(st->ix, st->cp)) return -1;
    memset(&st->defaults, 0, sizeof st->defaults);
    if (o->n_default) {
        if (o->n_default != st->ix->Lh)
            return cl_error("--thresholds/--weights: %d values given; the index has %d hooked blocks", o->n_default,
                            st->ix->Lh);
        for (int b = 0; b < o->n_default; b++)
            st->defaults.thresholds[b] = o->thresholds[b], st->defaults.weights[b] = o->weights[b];
        st->have_defaults = 1;
    } else
        st->have_defaults = cl_explain_params_paper(&st->defaults, st->ix->Lh) == 0;
    /* every request's explain runs its blocks on this many threads (the same bits for any count) */
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    st->defaults.threads = o->compute_threads > 0 ? o->compute_threads : nc > 0 ? (int)(nc < 64 ? nc : 64) : 1;
    /* code point -> id */
    st->V = V;
    uint64_t *pairs = malloc((size_t)V * sizeof *pairs);
    st->cps = malloc((size_t)V * sizeof *st->cps);
    st->ids = malloc((size_t)V * sizeof *st->ids);
    if (!pairs || !st->cps || !st->ids) {
        free(pairs);
        return cl_error("out of memory");
    }
    for (int v = 0; v < V; v++) pairs[v] = ((uint64_t)(st->m->bpe ? 0 : st->m->vocab[v]) << 32) | (uint32_t)v;
    qsort(pairs, (size_t)V, sizeof *pairs, cmp_u64); /* by code point */
    for (int v = 0; v < V; v++) st->cps[v] = (uint32_t)(pairs[v] >> 32), st->ids[v] = (int32_t)(pairs[v] & 0xffffffffu);
    free(pairs);
    /* the corpus text for locate */
    char alt[4096];
    const char *tp = o->text_path ? o->text_path : st->cp->corpus_file;
    if (!o->text_path && tp[0] && tp[0] != '/' && access(tp, R_OK)) { /* relative to corpus.h5's folder */
        const char *sl = strrchr(o->corpus_path, '/');
        if (sl) {
            snprintf(alt, sizeof alt, "%.*s/%s", (int)(sl - o->corpus_path), o->corpus_path, tp);
            tp = alt;
        }
    }
    sv_text_load(st, tp);
    if (o->text_path && !st->text) return cl_error("--text: %s", st->text_note);
    s->info = sv_info_json(st);
    if (!s->info) return cl_error("out of memory");
    return 0;
}

static void unload(server *s) {
    sv_state *st = &s->st;
    free(st->text), free(st->cps), free(st->ids);
    cl_index_close(st->ix);
    cl_corpus_free(st->cp);
    cl_model_free(st->m);
    free(s->info);
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss, int *v6) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return cl_error("--host: '%s' is not a numeric IPv4 or IPv6 address", host);
}

int cl_serve_run(const cl_serve_opts *o, volatile sig_atomic_t *stop) {
    if (o->threads < 1 || o->queue < 1 || !(o->timeout_s > 0) || o->max_body < 1 || o->max_chars < 1)
        return cl_error("serve: threads, queue, timeout, max body and max chars must be positive");
    json_object_seed(0); /* jansson's hash seed, once, before any thread makes an object */
    server *s = calloc(1, sizeof *s);
    if (!s) return cl_error("out of memory");
    s->o = o;
    s->ring = calloc((size_t)o->queue, sizeof *s->ring);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, &ca);
    pthread_condattr_destroy(&ca);
    struct sockaddr_storage ss;
    int v6 = 0, rc = -1;
    struct MHD_Daemon *d = NULL;
    int have_watch = 0;
    if (!s->ring) {
        cl_error("out of memory");
        goto out;
    }
    if (parse_addr(o->host, o->port, &ss, &v6) || cl_mhd_load()) goto out;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0);
    d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)30, MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!d) {
        cl_error("cannot listen on %s port %d (in use, or not an address of this machine?)", o->host, o->port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : o->port;
    if (o->listening) o->listening(o->user, o->host, port);
    if (pthread_create(&s->watchdog, NULL, watchdog, s)) {
        cl_error("cannot start the watchdog thread");
        goto out;
    }
    have_watch = 1;
    /* tests only: hold the loading state this many seconds (to see /api/health answer 503) */
    const char *delay = getenv("CORPUSLENS_SERVE_TEST_LOAD_DELAY");
    if (delay && atof(delay) > 0 && atof(delay) < 60) usleep((useconds_t)(atof(delay) * 1e6));
    if (load(s)) goto out;
    pthread_mutex_lock(&s->mu);
    s->ready = 1;
    /* the compute loop */
    while (!*stop) {
        if (!s->count) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            t.tv_nsec += 100000000;
            if (t.tv_nsec >= 1000000000) t.tv_sec++, t.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&s->work, &s->mu, &t);
            continue;
        }
        job *j = s->ring[s->head];
        s->head = (s->head + 1) % o->queue;
        s->count--;
        if (j->done) { /* its client left */
            job_unref(j);
            continue;
        }
        s->running = j;
        pthread_mutex_unlock(&s->mu);
        int status = 500;
        char *body = j->kind == J_EXPLAIN ? sv_explain_json(&s->st, &j->rq, &status)
                                          : sv_locate_json(&s->st, j->sub, j->context, j->max_occ, &status);
        pthread_mutex_lock(&s->mu);
        s->running = NULL;
        job_finish(j, status, body);
        job_unref(j);
    }
    s->shutting = 1;
    pthread_mutex_unlock(&s->mu);
    rc = 0;
out:
    if (have_watch) {
        pthread_mutex_lock(&s->mu);
        s->watch_stop = 1;
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watchdog, NULL);
    }
    if (d) {
        /* answer what still waits, then stop the HTTP threads */
        pthread_mutex_lock(&s->mu);
        s->shutting = 1;
        while (s->count) {
            job *j = s->ring[s->head];
            s->head = (s->head + 1) % o->queue;
            s->count--;
            job_finish(j, 503, sv_error_json("the server is stopping", -1));
            job_unref(j);
        }
        pthread_mutex_unlock(&s->mu);
        MHD_stop_daemon(d);
    }
    unload(s);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s->ring);
    free(s);
    return rc;
}

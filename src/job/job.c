/* corpuslens job files: parsing (libinih), variables, validation. See job.h. */
#include "corpuslens/job/job.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/model/model.h"

/* ---- the known keys ---- */

typedef enum {
    K_PATH,     /* a path (non-empty) */
    K_WORD,     /* a word without blanks (hook names, partitions) */
    K_INT,      /* integer in [lo, hi] */
    K_NUM,      /* number in [lo, hi], kept as written */
    K_NUMLIST,  /* numbers in [lo, hi], comma/blank separated -> "a,b,c" */
    K_PATHLIST, /* paths, comma/blank separated */
    K_INTLIST,  /* integers in [lo, hi], comma/blank separated -> "1,2,3" */
    K_DEMO,     /* the word "demo" */
    K_CONFIG,   /* a model config "k=v,..." (cl_config_parse) */
    K_ATTN,     /* head_size | n_embd */
    K_TIME,     /* a Slurm time: digits, ':' and '-' */
    K_MEM,      /* a Slurm memory size: digits and an optional K/M/G/T */
} ktype;

typedef struct {
    const char *section, *key;
    ktype type;
    double lo, hi;
    size_t off;     /* field in cl_job: char * (strings) or long long (K_INT) */
    size_t has_off; /* int flag in cl_job, or (size_t)-1 */
} keyspec;

#define NOFLAG ((size_t)-1)
#define F(f) offsetof(cl_job, f)
static const keyspec KEYS[] = {
    {"corpus", "path", K_PATH, 0, 0, F(corpus_path), NOFLAG},
    {"corpus", "generate", K_DEMO, 0, 0, NOFLAG, F(generate)},
    {"corpus", "chars", K_INT, 100, 1e9, F(gen_chars), NOFLAG},
    {"corpus", "generator_seed", K_INT, 0, 9e18, NOFLAG, NOFLAG}, /* stored by hand */
    {"corpus", "len", K_INT, 1, 256, F(len), NOFLAG},
    {"corpus", "prompts", K_INT, 1, 9e18, F(prompts), F(has_prompts)},
    {"corpus", "seed", K_INT, 0, 9e18, F(seed), F(has_seed)},
    {"corpus", "prompt_file", K_PATH, 0, 0, F(prompt_file), NOFLAG},
    {"corpus", "holdout_fraction", K_NUM, 1e-6, 0.999999, F(holdout_fraction), NOFLAG},
    {"corpus", "vocab_from", K_PATH, 0, 0, F(vocab_from), NOFLAG},
    {"model", "path", K_PATH, 0, 0, F(model_path), NOFLAG},
    {"model", "checkpoint", K_PATH, 0, 0, F(checkpoint), NOFLAG},
    {"model", "n_head", K_INT, 1, 4096, F(import_n_head), F(has_import_n_head)},
    {"model", "attn_scale", K_ATTN, 0, 0, F(import_attn_scale), NOFLAG},
    {"train", "config", K_CONFIG, 0, 0, F(train_config), NOFLAG},
    {"train", "tokenizer", K_PATH, 0, 0, F(train_tokenizer), NOFLAG},
    {"train", "steps", K_INT, 1, 1e9, F(steps), F(has_steps)},
    {"train", "batch", K_INT, 1, 1e6, F(batch), F(has_batch)},
    {"train", "ctx", K_INT, 1, 65536, F(ctx), F(has_ctx)},
    {"train", "lr", K_NUM, 1e-12, 10, F(lr), NOFLAG},
    {"train", "dropout", K_NUM, 0, 0.999999, F(dropout), NOFLAG},
    {"train", "seed", K_INT, 0, 9e18, F(train_seed), F(has_train_seed)},
    {"train", "eval_every", K_INT, 0, 1e9, F(eval_every), F(has_eval_every)},
    {"train", "checkpoint_every", K_INT, 1, 1e9, F(train_checkpoint_every), NOFLAG},
    {"alternatives", "seeds", K_INTLIST, 0, 9e18, F(alt_seeds), NOFLAG},
    {"ablate", "max", K_INT, 1, 9e18, F(ablate_max), F(has_ablate_max)},
    {"ablate", "mode", K_WORD, 0, 0, F(ablate_mode), NOFLAG},
    {"tune", "train_fraction", K_NUM, 1e-9, 1 - 1e-9, F(tune_fraction), NOFLAG},
    {"tune", "seed", K_INT, 0, 9e18, F(tune_seed), F(has_tune_seed)},
    {"tune", "restarts", K_INT, 0, 1000, F(tune_restarts), F(has_tune_restarts)},
    {"scan", "hook", K_WORD, 0, 0, F(hook), NOFLAG},
    {"scan", "prefilter", K_NUM, -1, 0.999999, F(prefilter), NOFLAG},
    {"scan", "bin_width", K_NUM, 1e-6, 2, F(bin_width), NOFLAG},
    {"scan", "match_thresholds", K_NUMLIST, -1, 1, F(match_thresholds), NOFLAG},
    {"scan", "match_cap", K_INT, 0, 9e18, F(match_cap), F(has_match_cap)},
    {"scan", "batch", K_INT, 1, 1048576, F(scan_batch), F(has_scan_batch)},
    {"scan", "checkpoint_every", K_NUM, 0, 1e9, F(checkpoint_every), NOFLAG},
    {"reduce", "thresholds", K_NUMLIST, -1, 1, F(thresholds), NOFLAG},
    {"reduce", "weights", K_NUMLIST, -1e9, 1e9, F(weights), NOFLAG},
    {"reduce", "compare_models", K_PATHLIST, 0, 0, NOFLAG, NOFLAG}, /* stored by hand */
    {"reduce", "examples", K_INTLIST, 0, 9e18, F(examples), NOFLAG},
    {"output", "dir", K_PATH, 0, 0, F(out_dir), NOFLAG},
    {"slurm", "partition", K_WORD, 0, 0, F(slurm_partition), NOFLAG},
    {"slurm", "account", K_WORD, 0, 0, F(slurm_account), NOFLAG},
    {"slurm", "scan_ranks", K_INT, 1, 1e6, F(slurm_scan_ranks), NOFLAG},
    {"slurm", "scan_time", K_TIME, 0, 0, F(slurm_scan_time), NOFLAG},
    {"slurm", "train_ranks", K_INT, 1, 1e6, F(slurm_train_ranks), NOFLAG},
    {"slurm", "train_time", K_TIME, 0, 0, F(slurm_train_time), NOFLAG},
    {"slurm", "light_time", K_TIME, 0, 0, F(slurm_light_time), NOFLAG},
    {"slurm", "mem_per_cpu", K_MEM, 0, 0, F(slurm_mem_per_cpu), NOFLAG},
};
#undef F
#define NKEYS (sizeof KEYS / sizeof *KEYS)
static const char *const SECTIONS[] = {"corpus", "model", "train", "alternatives", "scan", "ablate",
                                       "tune", "reduce", "output", "slurm"};
#define NSECTIONS (sizeof SECTIONS / sizeof *SECTIONS)

/* ---- parse state ---- */

typedef struct {
    const keyspec *spec;
    char *value; /* expanded */
    int line;
} entry;

typedef struct {
    char name[64];
    int line;
} section_seen;

#define MAX_ERRS 50
typedef struct {
    int line, seq;
    char *text; /* "FILE:LINE: message\n" */
} err_t;

typedef struct {
    const char *name;  /* file name for messages */
    const char *jobdir;
    /* reader */
    const char *p, *end;
    int line;          /* number of the line last handed to libinih */
    int line_indented; /* that line starts with a blank */
    int last_line;     /* number of lines in the file */
    /* entries, sections */
    entry ent[NKEYS];
    int set[NKEYS];
    int last_key;      /* index of the key of the previous key line, -1 */
    int last_key_line;
    section_seen sec[64];
    int nsec;
    /* errors */
    err_t err[MAX_ERRS];
    int nerr;
    int oom;
} pstate;

static void add_err(pstate *s, int line, const char *fmt, ...) CL_PRINTF(3, 4);
static void add_err(pstate *s, int line, const char *fmt, ...) {
    if (s->nerr >= MAX_ERRS) {
        s->nerr++;
        return;
    }
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(s->name) + strlen(msg) + 32;
    char *full = malloc(n);
    if (!full) {
        s->oom = 1;
        return;
    }
    snprintf(full, n, "%s:%d: %s\n", s->name, line, msg);
    s->err[s->nerr].line = line;
    s->err[s->nerr].seq = s->nerr;
    s->err[s->nerr].text = full;
    s->nerr++;
}

static int err_cmp(const void *a, const void *b) {
    const err_t *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All messages, sorted by line (then in the order found), as one text. */
static char *join_errors(pstate *s) {
    int n = s->nerr < MAX_ERRS ? s->nerr : MAX_ERRS;
    qsort(s->err, (size_t)n, sizeof *s->err, err_cmp);
    size_t total = 64;
    for (int i = 0; i < n; i++) total += strlen(s->err[i].text);
    char *out = malloc(total);
    if (!out) return NULL;
    out[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(s->err[i].text);
        memcpy(out + used, s->err[i].text, l + 1);
        used += l;
    }
    if (s->nerr > MAX_ERRS)
        snprintf(out + used, total - used, "%s: ... and %d more\n", s->name, s->nerr - MAX_ERRS);
    return out;
}

static void free_errors(pstate *s) {
    int n = s->nerr < MAX_ERRS ? s->nerr : MAX_ERRS;
    for (int i = 0; i < n; i++) free(s->err[i].text);
}

static int has_err_at(const pstate *s, int line) {
    for (int i = 0; i < s->nerr && i < MAX_ERRS; i++)
        if (s->err[i].line == line) return 1;
    return 0;
}

static const char *skip_blank(const char *a, const char *b) {
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    return a;
}

/* fgets-style reader for ini_parse_stream: one physical line per call. Counts
 * lines, records section headers, checks the line shapes libinih would only
 * report one at a time, and hands libinih a comment instead of a bad line. */
static char *reader(char *str, int num, void *stream) {
    pstate *s = stream;
    if (s->p >= s->end) return NULL;
    const char *nl = memchr(s->p, '\n', (size_t)(s->end - s->p));
    const char *eol = nl ? nl + 1 : s->end;
    size_t n = (size_t)(eol - s->p);
    const char *a = s->p;
    s->p = eol;
    s->line++;
    const char *content_end = (nl ? nl : s->end);
    if (content_end > a && content_end[-1] == '\r') content_end--;
    const char *t = skip_blank(a, content_end);
    s->line_indented = t > a;
    int bad = 0;
    if (memchr(a, '\0', n)) {
        add_err(s, s->line, "NUL byte in the line");
        bad = 1;
    } else if (n + 1 > (size_t)num) {
        add_err(s, s->line, "line too long (%zu bytes; libinih takes at most %d): put long "
                            "paths in a variable, ${NAME}", n, num - 3);
        bad = 1;
    } else if (t == content_end || *t == ';' || *t == '#') {
        /* blank or comment */
    } else if (*t == '[') {
        const char *close = memchr(t, ']', (size_t)(content_end - t));
        if (!close) {
            add_err(s, s->line, "'[' without ']'");
            bad = 1;
        } else if (s->nsec < 64) {
            section_seen *sec = &s->sec[s->nsec++];
            size_t k = (size_t)(close - t - 1);
            if (k >= sizeof sec->name) k = sizeof sec->name - 1;
            memcpy(sec->name, t + 1, k);
            sec->name[k] = '\0';
            /* trim like libinih */
            char *b = sec->name, *e = sec->name + strlen(sec->name);
            while (*b == ' ' || *b == '\t') b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
            *e = '\0';
            memmove(sec->name, b, (size_t)(e - b) + 1);
            sec->line = s->line;
        }
        s->last_key = -1;
    } else if (s->line_indented && s->last_key >= 0) {
        /* a continuation line of the previous key */
    } else if (!memchr(t, '=', (size_t)(content_end - t)) &&
               !memchr(t, ':', (size_t)(content_end - t))) {
        add_err(s, s->line, "expected '[section]' or 'key = value', got '%.*s'",
                (int)(content_end - t > 60 ? 60 : content_end - t), t);
        bad = 1;
    }
    if (bad) {
        strcpy(str, ";\n");
        return str;
    }
    memcpy(str, a, n);
    str[n] = '\0';
    return str;
}

static int known_section(const char *name) {
    for (size_t i = 0; i < NSECTIONS; i++)
        if (!strcmp(SECTIONS[i], name)) return 1;
    return 0;
}

static void known_keys(const char *section, char *buf, size_t n) {
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(KEYS[i].section, section)) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", KEYS[i].key);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

/* ---- variables ---- */

char *cl_job_expand(const char *in, const char *jobdir) {
    size_t cap = strlen(in) + 64, n = 0;
    char *out = cl_trymalloc(cap, 1, "job value");
    if (!out) return NULL;
    for (const char *p = in; *p;) {
        const char *piece = p;
        size_t plen = 1;
        char *owned = NULL;
        if (p[0] == '$' && p[1] == '$') {
            piece = "$";
            plen = 1;
            p += 2;
        } else if (p[0] == '$' && p[1] == '{') {
            /* the matching '}' (a default may hold ${...} itself) */
            const char *close = NULL;
            int depth = 1;
            for (const char *q = p + 2; *q; q++) {
                if (q[0] == '$' && q[1] == '{') {
                    depth++;
                    q++;
                } else if (*q == '}' && --depth == 0) {
                    close = q;
                    break;
                }
            }
            if (!close) {
                free(out);
                cl_error("'${' without '}' in '%s'", in);
                return NULL;
            }
            const char *name = p + 2;
            const char *dflt = NULL;
            size_t nlen = (size_t)(close - name);
            const char *colon = memchr(name, ':', nlen);
            if (colon) {
                if (colon[1] != '-') {
                    free(out);
                    cl_error("'${%.*s}': only ${NAME} and ${NAME:-default} are understood",
                             (int)nlen, name);
                    return NULL;
                }
                dflt = colon + 2;
                nlen = (size_t)(colon - name);
            }
            int ok = nlen > 0;
            for (size_t i = 0; i < nlen; i++) {
                char c = name[i];
                if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (i > 0 && c >= '0' && c <= '9')))
                    ok = 0;
            }
            if (!ok) {
                free(out);
                cl_error("'${%.*s}' is not a variable name (letters, digits, '_')",
                         (int)(close - name), name);
                return NULL;
            }
            char var[256];
            if (nlen >= sizeof var) nlen = sizeof var - 1;
            memcpy(var, name, nlen);
            var[nlen] = '\0';
            const char *v = getenv(var);
            if ((!v || !*v) && !strcmp(var, "JOBDIR")) v = jobdir;
            if ((!v || !*v) && dflt) {
                /* the default may itself hold variables */
                char d[1024];
                size_t dl = (size_t)(close - dflt);
                if (dl >= sizeof d) dl = sizeof d - 1;
                memcpy(d, dflt, dl);
                d[dl] = '\0';
                owned = cl_job_expand(d, jobdir);
                if (!owned) {
                    free(out);
                    return NULL;
                }
                v = owned;
            }
            if (!v) {
                free(out);
                cl_error("variable ${%s} is not set (export %s=... or write ${%s:-default})", var,
                         var, var);
                return NULL;
            }
            piece = v;
            plen = strlen(v);
            p = close + 1;
        } else {
            p++;
        }
        if (n + plen + 1 > cap) {
            cap = (n + plen + 1) * 2;
            char *nb = realloc(out, cap);
            if (!nb) {
                free(out);
                free(owned);
                cl_error("out of memory expanding a job value");
                return NULL;
            }
            out = nb;
        }
        memcpy(out + n, piece, plen);
        n += plen;
        free(owned);
    }
    out[n] = '\0';
    return out;
}

/* ---- the handler ---- */

static int handler(void *user, const char *section, const char *name, const char *value) {
    pstate *s = user;
    int line = s->line;
    if (!section[0] || s->nsec == 0) {
        add_err(s, line, "'%s' is outside any section (start with e.g. [corpus])", name);
        s->last_key = -1;
        return 1;
    }
    if (!known_section(section)) { /* reported once, at its header, after parsing */
        s->last_key = -1;
        return 1;
    }
    int k = -1;
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].key, name)) k = (int)i;
    if (k < 0) {
        char known[512];
        known_keys(section, known, sizeof known);
        add_err(s, line, "unknown key '%s' in [%s] (known: %s)", name, section, known);
        s->last_key = -1;
        return 1;
    }
    char *v = cl_job_expand(value, s->jobdir);
    if (!v) {
        add_err(s, line, "%s.%s: %s", section, name, cl_last_error());
        s->last_key = k;
        return 1;
    }
    if (s->last_key == k && s->line_indented && s->last_key_line < line && s->set[k]) {
        /* continuation line: append */
        entry *e = &s->ent[k];
        size_t a = strlen(e->value), b = strlen(v);
        char *nv = realloc(e->value, a + b + 2);
        if (!nv) {
            free(v);
            s->oom = 1;
            return 1;
        }
        nv[a] = ' ';
        memcpy(nv + a + 1, v, b + 1);
        e->value = nv;
        free(v);
        s->last_key_line = line;
        return 1;
    }
    if (s->set[k]) {
        add_err(s, line, "%s.%s is set twice (first on line %d)", section, name, s->ent[k].line);
        free(v);
        s->last_key = k;
        s->last_key_line = line;
        return 1;
    }
    s->set[k] = 1;
    s->ent[k].spec = &KEYS[k];
    s->ent[k].value = v;
    s->ent[k].line = line;
    s->last_key = k;
    s->last_key_line = line;
    return 1;
}

/* ---- value checks ---- */

static int parse_ll(const char *v, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) return -1;
    *out = x;
    return 0;
}

static int parse_num(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* Split a comma/blank separated list into a NULL-terminated malloc'ed array
 * of malloc'ed items. Returns the count, or -1 (out of memory). */
static long split_list(const char *v, char ***items) {
    size_t cap = 8, n = 0;
    char **it = malloc(cap * sizeof *it);
    if (!it) return -1;
    const char *p = v;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t') p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != ',' && *q != ' ' && *q != '\t') q++;
        if (n + 2 > cap) {
            cap *= 2;
            char **ni = realloc(it, cap * sizeof *it);
            if (!ni) goto oom;
            it = ni;
        }
        it[n] = strndup(p, (size_t)(q - p));
        if (!it[n]) goto oom;
        n++;
        p = q;
    }
    it[n] = NULL;
    *items = it;
    return (long)n;
oom:
    for (size_t i = 0; i < n; i++) free(it[i]);
    free(it);
    return -1;
}

static void free_list(char **it) {
    if (!it) return;
    for (char **p = it; *p; p++) free(*p);
    free(it);
}

static int is_time(const char *v) {
    if (!*v) return 0;
    for (const char *p = v; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == ':' || *p == '-')) return 0;
    return 1;
}

static int is_mem(const char *v) {
    const char *p = v;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (*p && strchr("KMGTkmgt", *p)) p++;
    return *p == '\0';
}

static void set_str(cl_job *job, size_t off, char *v) { *(char **)((char *)job + off) = v; }

/* Validate one entry and store it in the job. */
static void store(pstate *s, cl_job *job, entry *e) {
    const keyspec *k = e->spec;
    const char *v = e->value;
    int line = e->line;
    if (!*v) {
        add_err(s, line, "%s.%s is empty", k->section, k->key);
        return;
    }
    switch (k->type) {
    case K_PATH:
    case K_WORD:
        if (k->type == K_WORD && strpbrk(v, " \t")) {
            add_err(s, line, "%s.%s: '%s' must be one word", k->section, k->key, v);
            return;
        }
        break;
    case K_ATTN:
        if (strcmp(v, "head_size") && strcmp(v, "n_embd")) {
            add_err(s, line, "%s.%s: '%s' is not head_size or n_embd", k->section, k->key, v);
            return;
        }
        break;
    case K_DEMO:
        if (strcmp(v, "demo")) {
            add_err(s, line, "%s.%s: '%s' is not a generator (the only one is 'demo')",
                    k->section, k->key, v);
            return;
        }
        break;
    case K_INT: {
        long long x;
        if (parse_ll(v, &x) < 0 || (double)x < k->lo || (double)x > k->hi) {
            if (k->hi >= 1e18)
                add_err(s, line, "%s.%s: '%s' is not an integer >= %.0f", k->section, k->key, v,
                        k->lo);
            else
                add_err(s, line, "%s.%s: '%s' is not an integer in [%.0f, %.0f]", k->section,
                        k->key, v, k->lo, k->hi);
            return;
        }
        if (k->off != NOFLAG) *(long long *)((char *)job + k->off) = x;
        if (!strcmp(k->key, "generator_seed")) job->gen_seed = (uint64_t)x;
        break;
    }
    case K_NUM: {
        double x;
        if (parse_num(v, &x) < 0 || x < k->lo || x > k->hi) {
            add_err(s, line, "%s.%s: '%s' is not a number in [%g, %g]", k->section, k->key, v,
                    k->lo, k->hi);
            return;
        }
        break;
    }
    case K_NUMLIST:
    case K_INTLIST: {
        char **it;
        long n = split_list(v, &it);
        if (n < 0) {
            s->oom = 1;
            return;
        }
        size_t total = 1;
        for (long i = 0; i < n; i++) {
            double x;
            long long ix;
            int bad = k->type == K_INTLIST
                          ? parse_ll(it[i], &ix) < 0 || (double)ix < k->lo || (double)ix > k->hi
                          : parse_num(it[i], &x) < 0 || x < k->lo || x > k->hi;
            if (bad) {
                if (k->hi >= 1e18)
                    add_err(s, line, "%s.%s: item %ld '%s' is not an integer >= %g", k->section,
                            k->key, i + 1, it[i], k->lo);
                else
                    add_err(s, line, "%s.%s: item %ld '%s' is not %s in [%g, %g]", k->section,
                            k->key, i + 1, it[i], k->type == K_INTLIST ? "an integer" : "a number",
                            k->lo, k->hi);
                free_list(it);
                return;
            }
            total += strlen(it[i]) + 1;
        }
        if (n == 0) {
            add_err(s, line, "%s.%s: no %s", k->section, k->key,
                    k->type == K_INTLIST ? "integers" : "numbers");
            free_list(it);
            return;
        }
        /* each seed names one model file (model-seed<N>.h5) and one compare
         * model: the same seed twice, however written, would train it twice */
        if (k->off == offsetof(cl_job, alt_seeds))
            for (long i = 1; i < n; i++)
                for (long j = 0; j < i; j++) {
                    long long a, b;
                    if (parse_ll(it[i], &a) == 0 && parse_ll(it[j], &b) == 0 && a == b) {
                        add_err(s, line, "%s.%s: item %ld '%s' is seed %lld again (item %ld '%s'): each seed "
                                "is one model (model-seed%lld.h5), give it once",
                                k->section, k->key, i + 1, it[i], a, j + 1, it[j], a);
                        free_list(it);
                        return;
                    }
                }
        char *joined = malloc(total);
        if (!joined) {
            free_list(it);
            s->oom = 1;
            return;
        }
        joined[0] = '\0';
        for (long i = 0; i < n; i++) {
            if (i) strcat(joined, ",");
            strcat(joined, it[i]);
        }
        free_list(it);
        set_str(job, k->off, joined);
        return;
    }
    case K_PATHLIST: {
        char **it;
        long n = split_list(v, &it);
        if (n < 0) {
            s->oom = 1;
            return;
        }
        free_list(job->compare_models);
        job->compare_models = it;
        job->n_compare = (size_t)n;
        return;
    }
    case K_CONFIG: {
        cl_config c = cl_config_lecture();
        if (cl_config_parse(&c, v) < 0) {
            add_err(s, line, "%s.%s: %s", k->section, k->key, cl_last_error());
            return;
        }
        break;
    }
    case K_TIME:
        if (!is_time(v)) {
            add_err(s, line, "%s.%s: '%s' is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH)",
                    k->section, k->key, v);
            return;
        }
        break;
    case K_MEM:
        if (!is_mem(v)) {
            add_err(s, line, "%s.%s: '%s' is not a memory size (e.g. 2000M, 4G)", k->section,
                    k->key, v);
            return;
        }
        break;
    }
    if (k->has_off != NOFLAG) *(int *)((char *)job + k->has_off) = 1;
    if (k->type != K_INT && k->off != NOFLAG) {
        char *dup = strdup(v);
        if (!dup) {
            s->oom = 1;
            return;
        }
        set_str(job, k->off, dup);
    }
}

static int key_index(const char *section, const char *key) {
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].key, key)) return (int)i;
    return -1;
}

static int section_line(const pstate *s, const char *name) {
    for (int i = 0; i < s->nsec; i++)
        if (!strcmp(s->sec[i].name, name)) return s->sec[i].line;
    return 0;
}

/* Line for "missing key in section": the section header, else the last line. */
static int missing_line(const pstate *s, const char *section) {
    int l = section_line(s, section);
    return l ? l : (s->last_line ? s->last_line : 1);
}

static int is_set(const pstate *s, const char *section, const char *key) {
    int k = key_index(section, key);
    return k >= 0 && s->set[k];
}

static int line_of(const pstate *s, const char *section, const char *key) {
    int k = key_index(section, key);
    return k >= 0 && s->set[k] ? s->ent[k].line : missing_line(s, section);
}

static void require(pstate *s, const char *section, const char *key, const char *why) {
    if (is_set(s, section, key)) return;
    if (!section_line(s, section))
        add_err(s, missing_line(s, section), "missing section [%s] with '%s = ...'%s", section,
                key, why);
    else
        add_err(s, missing_line(s, section), "[%s] has no '%s' (required%s)", section, key, why);
}

static void cross_checks(pstate *s, cl_job *job) {
    for (int i = 0; i < s->nsec; i++)
        if (!known_section(s->sec[i].name))
            add_err(s, s->sec[i].line,
                    "unknown section [%s] (known: corpus, model, train, alternatives, scan, ablate, "
                    "tune, reduce, output, slurm)", s->sec[i].name);
    require(s, "output", "dir", "");
    require(s, "corpus", "len", "");
    if (!job->generate) require(s, "corpus", "path", "; or generate = demo");
    if (!job->generate) {
        if (is_set(s, "corpus", "chars"))
            add_err(s, line_of(s, "corpus", "chars"), "corpus.chars needs generate = demo");
        if (is_set(s, "corpus", "generator_seed"))
            add_err(s, line_of(s, "corpus", "generator_seed"),
                    "corpus.generator_seed needs generate = demo");
    }
    int hp = is_set(s, "corpus", "prompts"), hf = is_set(s, "corpus", "prompt_file");
    if (hp && hf)
        add_err(s, line_of(s, "corpus", "prompt_file"),
                "corpus.prompt_file and corpus.prompts exclude each other");
    else if (!hp && !hf && section_line(s, "corpus"))
        add_err(s, missing_line(s, "corpus"),
                "[corpus] has no 'prompts' or 'prompt_file' (one is required)");
    if (hf && is_set(s, "corpus", "seed"))
        add_err(s, line_of(s, "corpus", "seed"), "corpus.seed goes with prompts, not prompt_file");
    int have_model = section_line(s, "model") != 0;
    int have_train = section_line(s, "train") != 0;
    int have_alt = section_line(s, "alternatives") != 0;
    job->has_ablate = section_line(s, "ablate") != 0;
    job->has_tune = section_line(s, "tune") != 0;
    if (is_set(s, "ablate", "mode") && job->ablate_mode && strcmp(job->ablate_mode, "zero") &&
        strcmp(job->ablate_mode, "mean"))
        add_err(s, line_of(s, "ablate", "mode"), "ablate.mode: '%s' is not zero or mean", job->ablate_mode);
    if (have_alt) {
        require(s, "alternatives", "seeds", "");
        if (!have_train)
            add_err(s, section_line(s, "alternatives"),
                    "[alternatives] needs a [train] section: the recipe the other seeds are trained with");
        /* a job that trains its own model with [train]'s seed: an alternative
         * with that seed is the same model again, and the noise floor it
         * gives (H between a model and itself) is 0, not a floor */
        long long own = job->has_train_seed ? job->train_seed : 1337; /* train's default */
        if (have_train && !have_model && job->alt_seeds)
            for (const char *q = job->alt_seeds; *q;) {
                if (strtoll(q, NULL, 10) == own) {
                    add_err(s, line_of(s, "alternatives", "seeds"),
                            "alternatives.seeds: seed %lld is the seed the job's own model is trained with "
                            "(%s): that alternative would be the same model, and the noise floor 0; "
                            "choose another seed",
                            own, job->has_train_seed ? "train.seed" : "train's default seed");
                    break;
                }
                const char *c = strchr(q, ',');
                if (!c) break;
                q = c + 1;
            }
    }
    if (!have_model && is_set(s, "corpus", "vocab_from"))
        add_err(s, line_of(s, "corpus", "vocab_from"),
                "corpus.vocab_from goes with [model] (path or checkpoint): a model trained by [train] "
                "takes its corpus's characters");
    if (have_model) {
        int mp = is_set(s, "model", "path"), mc = is_set(s, "model", "checkpoint");
        if (mp && mc)
            add_err(s, line_of(s, "model", "checkpoint"),
                    "model.checkpoint and model.path exclude each other (a checkpoint is "
                    "imported into <output dir>/model.h5)");
        else if (!mp && !mc)
            add_err(s, missing_line(s, "model"),
                    "[model] has no 'path' (a model file) or 'checkpoint' (a .pt/.safetensors "
                    "to import)");
        if (mp && (is_set(s, "model", "n_head") || is_set(s, "model", "attn_scale")))
            add_err(s, line_of(s, "model", is_set(s, "model", "n_head") ? "n_head" : "attn_scale"),
                    "model.n_head and model.attn_scale go with model.checkpoint");
        if (have_train && !have_alt)
            add_err(s, section_line(s, "train"),
                    "[train] and [model] exclude each other: give a model or train one (with "
                    "[alternatives], [train] is the recipe of the other seeds)");
        if (have_train && have_alt) {
            require(s, "train", "steps", "");
            require(s, "train", "batch", "");
            require(s, "train", "ctx", "");
        }
    } else if (have_train) {
        require(s, "train", "steps", "");
        require(s, "train", "batch", "");
        require(s, "train", "ctx", "");
    } else {
        add_err(s, s->last_line ? s->last_line : 1,
                "missing section [model] (path = a model file, or checkpoint = a .pt to import) "
                "or [train] (steps, batch, ctx)");
    }
    if (job->thresholds && job->weights) {
        size_t a = 1, b = 1;
        for (const char *p = job->thresholds; *p; p++) a += *p == ',';
        for (const char *p = job->weights; *p; p++) b += *p == ',';
        if (a != b)
            add_err(s, line_of(s, "reduce", "weights"),
                    "reduce.weights has %zu numbers but reduce.thresholds has %zu", b, a);
    }
}

static char *job_dir_of(const char *name) {
    char *copy = strdup(name);
    if (!copy) return NULL;
    char *slash = strrchr(copy, '/');
    const char *dir;
    if (!slash) dir = ".";
    else if (slash == copy) dir = "/";
    else {
        *slash = '\0';
        dir = copy;
    }
    char *abs = realpath(dir, NULL);
    char *res = abs ? abs : strdup(dir);
    free(copy);
    return res;
}

cl_job *cl_job_parse(const char *text, size_t len, const char *name, char **errors) {
    if (errors) *errors = NULL;
    pstate *s = calloc(1, sizeof *s);
    cl_job *job = calloc(1, sizeof *job);
    char *jobdir = job_dir_of(name);
    if (!s || !job || !jobdir) {
        free(s);
        free(job);
        free(jobdir);
        cl_error("out of memory parsing %s", name);
        return NULL;
    }
    s->name = name;
    s->jobdir = jobdir;
    s->p = text;
    s->end = text + len;
    s->last_key = -1;
    /* count lines for "end of file" messages */
    for (size_t i = 0; i < len; i++) s->last_line += text[i] == '\n';
    if (len && text[len - 1] != '\n') s->last_line++;

    int rc = ini_parse_stream(reader, s, handler, s);
    if (rc > 0 && !has_err_at(s, rc)) add_err(s, rc, "syntax error");
    if (rc < 0) add_err(s, 1, "libinih failed (%d)", rc);

    job->file = strdup(name);
    job->jobdir = jobdir;
    job->gen_chars = 300000;
    job->gen_seed = 1;
    if (!job->file) s->oom = 1;
    for (size_t i = 0; i < NKEYS; i++)
        if (s->set[i]) store(s, job, &s->ent[i]);
    cross_checks(s, job);
    if (job->generate && !job->corpus_path && job->out_dir) {
        size_t n = strlen(job->out_dir) + 16;
        job->corpus_path = malloc(n);
        if (job->corpus_path) snprintf(job->corpus_path, n, "%s/demo.txt", job->out_dir);
        else s->oom = 1;
    }
    if (s->oom) add_err(s, 1, "out of memory");

    /* keep the expanded entries for cl_job_get: stash them in a hidden list */
    if (s->nerr > 0) {
        char *all = join_errors(s);
        const char *first = all ? all : "invalid job file (out of memory)";
        const char *nl = strchr(first, '\n');
        cl_error("%.*s", (int)(nl ? nl - first : (ptrdiff_t)strlen(first)), first);
        if (errors) *errors = all;
        else free(all);
        free_errors(s);
        for (size_t i = 0; i < NKEYS; i++) free(s->ent[i].value);
        free(s);
        cl_job_free(job);
        return NULL;
    }
    /* cl_job_get table: NULL-terminated pairs after the struct */
    char **kv = calloc(2 * NKEYS + 1, sizeof *kv);
    if (!kv) {
        for (size_t i = 0; i < NKEYS; i++) free(s->ent[i].value);
        free(s);
        cl_job_free(job);
        cl_error("out of memory parsing %s", name);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (!s->set[i]) continue;
        size_t nl = strlen(KEYS[i].section) + strlen(KEYS[i].key) + 2;
        kv[m] = malloc(nl);
        if (!kv[m]) {
            free(s->ent[i].value);
            continue;
        }
        snprintf(kv[m], nl, "%s.%s", KEYS[i].section, KEYS[i].key);
        kv[m + 1] = s->ent[i].value;
        m += 2;
    }
    job->kv_ = kv;
    free(s);
    return job;
}

cl_job *cl_job_load(const char *path, char **errors) {
    if (errors) *errors = NULL;
    size_t n;
    char *buf = cl_read_file(path, 64u << 20, &n);
    if (!buf) {
        cl_error_prefix("job file: ");
        return NULL;
    }
    cl_job *job = cl_job_parse(buf, n, path, errors);
    free(buf);
    return job;
}

const char *cl_job_get(const cl_job *job, const char *section_key) {
    if (!job || !job->kv_) return NULL;
    for (char **p = job->kv_; *p; p += 2)
        if (!strcmp(p[0], section_key)) return p[1];
    /* derived defaults that scripts want to see */
    if (!strcmp(section_key, "corpus.path")) return job->corpus_path;
    return NULL;
}

void cl_job_free(cl_job *job) {
    if (!job) return;
    free(job->file);
    free(job->jobdir);
    free(job->corpus_path);
    free(job->prompt_file);
    free(job->vocab_from);
    free(job->model_path);
    free(job->checkpoint);
    free(job->import_attn_scale);
    free(job->train_config);
    free(job->train_tokenizer);
    free(job->lr);
    free(job->dropout);
    free(job->hook);
    free(job->alt_seeds);
    free(job->ablate_mode);
    free(job->tune_fraction);
    free(job->prefilter);
    free(job->holdout_fraction);
    free(job->bin_width);
    free(job->match_thresholds);
    free(job->checkpoint_every);
    free(job->thresholds);
    free(job->weights);
    free(job->examples);
    free_list(job->compare_models);
    free(job->out_dir);
    free(job->slurm_partition);
    free(job->slurm_account);
    free(job->slurm_scan_time);
    free(job->slurm_train_time);
    free(job->slurm_light_time);
    free(job->slurm_mem_per_cpu);
    if (job->kv_) {
        for (char **p = job->kv_; *p; p += 2) {
            free(p[0]);
            free(p[1]);
        }
        free(job->kv_);
    }
    free(job);
}

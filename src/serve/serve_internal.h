/* corpuslens serve, inside the layer: the loaded state, request parsing and
 * the JSON presenters (serve_json.c), the corpus text and locate
 * (serve_text.c), the embedded page (generated serve_page.c). */
#ifndef CORPUSLENS_SERVE_INTERNAL_H
#define CORPUSLENS_SERVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/corpus/corpus.h"
#include "corpuslens/model/model.h"
#include "corpuslens/scan/explain.h"
#include "corpuslens/scan/index.h"
#include "corpuslens/serve/serve.h"

#define SV_MAX_TOP 50       /* similar strings per block a request may ask for */
#define SV_TOP_CHARS 10     /* next characters listed per distribution */
#define SV_MAX_SIMILAR 200000 /* similar strings in one answer (positions x blocks x top): bounds its size */

typedef struct {
    cl_model *m;
    cl_corpus *cp;
    cl_index *ix;
    cl_explain_params defaults; /* the paper's (6 blocks) or the index's Lh with none: thresholds required */
    int have_defaults;
    /* code point -> token id, sorted by code point */
    uint32_t *cps;
    int32_t *ids;
    int V;
    /* the corpus text as token ids (the part the substrings come from), or NULL */
    int32_t *text;
    size_t n_text;
    char text_note[512]; /* why the text is not available ("" when it is) */
    char text_path[1024];
    const cl_serve_opts *o;
} sv_state;

/* ---- requests (any thread: reads the immutable state only) ---- */
typedef struct {
    cl_explain_params par;
    int32_t *tokens; /* [n] malloc'ed */
    size_t n;
    int last_only;   /* "positions": "last": only position n - 1 (one window) */
} sv_explain_req;

/* Parse and check a POST /api/explain body. 0, or the HTTP status (400) with
 * *err a malloc'ed JSON error. */
int sv_parse_explain(const sv_state *s, const char *body, size_t len, sv_explain_req *rq, char **err);

/* {"error": msg, "position": pos} (pos < 0: no position), malloc'ed; never NULL
 * (a static fallback is strdup'ed). */
char *sv_error_json(const char *msg, long long position);

/* ---- the compute thread (HDF5 reads) ---- */
/* The passage's JSON (scan/passage.h presented); NULL with *status 500 and
 * *err set on failure. */
char *sv_explain_json(const sv_state *s, const sv_explain_req *rq, int *status);
/* /api/locate's JSON for substring `sub` (checked here: 404 when out of range). */
char *sv_locate_json(const sv_state *s, long long sub, int context, int max_occ, int *status);
/* /api/info's JSON (after loading). */
char *sv_info_json(const sv_state *s);

/* Load the corpus text for locate (sets text / text_note); never fails: a
 * missing or different text only disables locate. */
void sv_text_load(sv_state *s, const char *path);

/* ---- the embedded page (generated at build time from src/serve/page/) ---- */
typedef struct {
    const char *name; /* "/", "/app.js", "/style.css" */
    const char *type;
    const unsigned char *data;
    size_t len;
} sv_file;
extern const sv_file sv_page_files[];
extern const size_t sv_page_n_files;

/* The vocabulary's token id of code point CP, or -1 (serve_text.c). */
int32_t sv_lookup(const sv_state *s, uint32_t cp);

#endif

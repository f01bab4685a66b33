/* corpuslens serve: request parsing and the JSON presenters. Every figure
 * comes from cl_passage_result (scan/passage.h) or the corpus counts; this
 * file only selects, orders and names them (docs/serve.md). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/scan/passage.h"
#include "corpuslens/scan/sketch.h"
#include "serve/serve_internal.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

char *sv_error_json(const char *msg, long long position) {
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg));
    if (position >= 0) json_object_set_new(o, "position", json_integer(position));
    char *s = json_dumps(o, DUMP_FLAGS);
    json_decref(o);
    return s ? s : strdup("{\"error\":\"out of memory\"}");
}

static int fail(char **err, const char *msg, long long pos) {
    *err = sv_error_json(msg, pos);
    return 400;
}

/* a JSON array of Lh finite numbers into dst */
static int take_list(const char *name, json_t *a, int Lh, double *dst, char **err) {
    char msg[200];
    if (!json_is_array(a) || json_array_size(a) != (size_t)Lh) {
        snprintf(msg, sizeof msg, "%s: an array of %d numbers (one per hooked block) is required", name, Lh);
        return fail(err, msg, -1);
    }
    for (int b = 0; b < Lh; b++) {
        json_t *x = json_array_get(a, (size_t)b);
        if (!json_is_number(x) || !isfinite(json_number_value(x))) {
            snprintf(msg, sizeof msg, "%s[%d] is not a finite number", name, b);
            return fail(err, msg, -1);
        }
        dst[b] = json_number_value(x);
    }
    return 0;
}

int sv_parse_explain(const sv_state *s, const char *body, size_t len, sv_explain_req *rq, char **err) {
    char msg[300];
    memset(rq, 0, sizeof *rq);
    /* jansson refuses invalid UTF-8 too, but says where in its own words: name the byte here */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = cl_utf8_get((const unsigned char *)body + i, len - i, &cp);
        if (k <= 0) {
            snprintf(msg, sizeof msg, "the request body is not valid UTF-8 at byte %zu", i);
            return fail(err, msg, (long long)i);
        }
        i += (size_t)k;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(msg, sizeof msg, "the request body is not JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        return fail(err, msg, je.position);
    }
    int rc = 0;
    const int Lh = s->ix->Lh;
    rq->par = s->defaults;
    rq->par.Lh = Lh;
    rq->par.top_k = 10;
    rq->par.soft_floor = 0.7;
    json_t *text = NULL, *thr = NULL, *w = NULL;
    const char *key;
    json_t *val;
    if (!json_is_object(root)) {
        rc = fail(err, "the request body must be a JSON object {\"text\": ...}", -1);
        goto out;
    }
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "text")) text = val;
        else if (!strcmp(key, "thresholds")) thr = val;
        else if (!strcmp(key, "weights")) w = val;
        else if (!strcmp(key, "top")) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > SV_MAX_TOP) {
                snprintf(msg, sizeof msg, "top: an integer in 0..%d is required", SV_MAX_TOP);
                rc = fail(err, msg, -1);
                goto out;
            }
            rq->par.top_k = (int)json_integer_value(val);
        } else if (!strcmp(key, "soft")) {
            if (!json_is_boolean(val)) {
                rc = fail(err, "soft: true or false", -1);
                goto out;
            }
            rq->par.soft = json_is_true(val);
        } else if (!strcmp(key, "positions")) {
            const char *v = json_is_string(val) ? json_string_value(val) : "";
            if (strcmp(v, "all") && strcmp(v, "last")) {
                rc = fail(err, "positions: \"all\" (every position, the default) or \"last\" (the last one only)", -1);
                goto out;
            }
            rq->last_only = !strcmp(v, "last");
        } else {
            snprintf(msg, sizeof msg, "unknown field '%.100s' (text, thresholds, weights, top, soft, positions)", key);
            rc = fail(err, msg, -1);
            goto out;
        }
    }
    if (!json_is_string(text)) {
        rc = fail(err, "text: a string is required", -1);
        goto out;
    }
    if ((thr == NULL) != (w == NULL)) {
        rc = fail(err, "give both thresholds and weights, or neither", -1);
        goto out;
    }
    if (thr) {
        if ((rc = take_list("thresholds", thr, Lh, rq->par.thresholds, err)) ||
            (rc = take_list("weights", w, Lh, rq->par.weights, err)))
            goto out;
    } else if (!s->have_defaults) {
        snprintf(msg, sizeof msg, "the index has %d hooked blocks and there are no default thresholds for it: give "
                 "thresholds and weights", Lh);
        rc = fail(err, msg, -1);
        goto out;
    }
    if (rq->par.soft) /* explain's defaults: T 0.05, the hard weights */
        for (int b = 0; b < Lh; b++) rq->par.T[b] = 0.05, rq->par.soft_w[b] = rq->par.weights[b];
    /* the text: characters (code points) of the model's vocabulary, 1..max_chars */
    const char *t = json_string_value(text);
    size_t tl = json_string_length(text), nch = 0;
    for (size_t i = 0; i < tl; nch++) {
        uint32_t cp;
        int k = cl_utf8_get((const unsigned char *)t + i, tl - i, &cp);
        if (k <= 0) { /* cannot happen after jansson; kept as a guard */
            snprintf(msg, sizeof msg, "text: invalid UTF-8 at character %zu", nch);
            rc = fail(err, msg, (long long)nch);
            goto out;
        }
        i += (size_t)k;
    }
    if (nch == 0) {
        rc = fail(err, "text: the text is empty", 0);
        goto out;
    }
    if (nch > s->o->max_chars) {
        snprintf(msg, sizeof msg, "text: %zu characters; at most %zu (serve --max-chars)", nch, s->o->max_chars);
        rc = fail(err, msg, (long long)s->o->max_chars);
        goto out;
    }
    if (s->m->bpe) { /* a GPT-2 BPE model: the positions are the text's tokens */
        int32_t *ids = NULL;
        size_t nt = 0;
        if (cl_tok_encode(s->m, t, tl, &ids, &nt) || nt == 0) {
            free(ids);
            snprintf(msg, sizeof msg, "text: %s", nt == 0 ? "the text has no tokens" : cl_last_error());
            rc = fail(err, msg, -1);
            goto out;
        }
        if ((double)(rq->last_only ? 1 : nt) * (double)Lh * (double)rq->par.top_k > SV_MAX_SIMILAR) {
            free(ids);
            snprintf(msg, sizeof msg, "%zu positions x %d blocks x top %d similar strings is more than %d in one "
                     "answer: ask for fewer (top) or a shorter text", nt, Lh, rq->par.top_k, SV_MAX_SIMILAR);
            rc = fail(err, msg, -1);
            goto out;
        }
        rq->tokens = ids, rq->n = nt;
        goto out;
    }
    if ((double)(rq->last_only ? 1 : nch) * (double)Lh * (double)rq->par.top_k > SV_MAX_SIMILAR) {
        snprintf(msg, sizeof msg, "%zu positions x %d blocks x top %d similar strings is more than %d in one answer: "
                 "ask for fewer (top) or a shorter text", nch, Lh, rq->par.top_k, SV_MAX_SIMILAR);
        rc = fail(err, msg, -1);
        goto out;
    }
    rq->tokens = malloc(nch * sizeof *rq->tokens);
    if (!rq->tokens) {
        rc = fail(err, "out of memory", -1);
        goto out;
    }
    for (size_t i = 0, c = 0; i < tl; c++) {
        uint32_t cp;
        int k = cl_utf8_get((const unsigned char *)t + i, tl - i, &cp);
        int32_t id = sv_lookup(s, cp);
        if (id < 0) {
            char e[8] = {0};
            cl_utf8_put(cp, e);
            snprintf(msg, sizeof msg, "text: the character '%s' (U+%04X) at position %zu is not in the model's "
                     "vocabulary", cp >= 32 && cp != 127 ? e : "?", (unsigned)cp, c);
            rc = fail(err, msg, (long long)c);
            goto out;
        }
        rq->tokens[c] = id;
        i += (size_t)k;
    }
    rq->n = nch;
out:
    json_decref(root);
    if (rc) {
        free(rq->tokens);
        rq->tokens = NULL;
    }
    return rc;
}

/* ---- presenters ---- */

/* bytes as a JSON string: a byte that is not part of a whole UTF-8 character
 * (a BPE token or n-gram may cut one) becomes U+FFFD */
static json_t *bytes_json(const char *b, size_t n) {
    char *o = malloc(3 * n + 1);
    if (!o) return json_null();
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = cl_utf8_get((const unsigned char *)b + i, n - i, &cp);
        if (k > 0) memcpy(o + w, b + i, (size_t)k), w += (size_t)k, i += (size_t)k;
        else memcpy(o + w, "\xEF\xBF\xBD", 3), w += 3, i++;
    }
    json_t *j = json_stringn(o, w);
    free(o);
    return j ? j : json_null();
}

/* a token's text (char-level: its character; BPE: its decoded bytes) */
static json_t *chr(const sv_state *s, int32_t id) {
    if (s->m->bpe) {
        size_t n;
        const unsigned char *b = cl_bpe_token_bytes(s->m->bpe, id, &n);
        return bytes_json((const char *)b, b ? n : 0);
    }
    char b[8] = {0};
    cl_utf8_put(s->m->vocab[id], b);
    return json_string(b);
}

static json_t *num_or_null(double h) { return h == CL_H_EMPTY || !isfinite(h) ? json_null() : json_real(h); }

/* the k largest of p[0..V) (ties: lower id first) as [{"char", "p"}] */
static json_t *top_chars(const sv_state *s, const float *pf, const double *pd, int V, int k) {
    json_t *a = json_array();
    int used[SV_TOP_CHARS];
    if (k > SV_TOP_CHARS) k = SV_TOP_CHARS;
    if (k > V) k = V;
    for (int j = 0; j < k; j++) {
        int best = -1;
        double bx = 0;
        for (int v = 0; v < V; v++) {
            int u = 0;
            for (int q = 0; q < j; q++) u |= used[q] == v;
            double x = pf ? pf[v] : pd[v];
            if (!u && (best < 0 || x > bx)) best = v, bx = x;
        }
        used[j] = best;
        if (!(bx > 0)) break; /* only characters with a positive probability */
        json_t *e = json_object();
        json_object_set_new(e, "char", chr(s, best));
        json_object_set_new(e, "p", json_real(bx));
        json_array_append_new(a, e);
    }
    return a;
}

/* top_chars of a sparse list tok/prob[0..n) (sparse results, explain.h): the same entries, since every token
   with a positive probability in the top k is on the list */
static json_t *top_sparse(const sv_state *s, const int32_t *tok, const float *pf, const double *pd, size_t n, int k) {
    json_t *a = json_array();
    int32_t idx[SV_TOP_CHARS];
    double val[SV_TOP_CHARS];
    int got = cl_explain_top_sparse(tok, pf, pd, n, k < SV_TOP_CHARS ? k : SV_TOP_CHARS, idx, val);
    for (int j = 0; j < got; j++) {
        json_t *e = json_object();
        json_object_set_new(e, "char", chr(s, idx[j]));
        json_object_set_new(e, "p", json_real(val[j]));
        json_array_append_new(a, e);
    }
    return a;
}

/* a corpus string's text, or NULL (cl_error) */
static json_t *row_text(const sv_state *s, int64_t sub) {
    if (s->cp->bpe) {
        size_t cap = cl_corpus_text_cap(s->cp);
        char *buf = malloc(cap);
        long n = buf ? cl_corpus_row_text_n(s->cp, (size_t)sub, buf, cap) : -1;
        json_t *j = n < 0 ? NULL : bytes_json(buf, (size_t)n);
        free(buf);
        if (!buf) cl_error("out of memory");
        return j;
    }
    char buf[4 * CL_CORPUS_MAX_LEN + 1];
    if (cl_corpus_row_text(s->cp, (size_t)sub, buf) < 0) return NULL;
    return json_string(buf);
}

/* the 3 most frequent followers of substring sub ([{"char", "count"}]) */
static json_t *followers(const sv_state *s, int64_t sub, int64_t *total) {
    const cl_corpus *cp = s->cp;
    int64_t a = cp->next_indptr[sub], e = cp->next_indptr[sub + 1];
    int64_t shown[3] = {-1, -1, -1};
    json_t *arr = json_array();
    *total = 0;
    for (int64_t q = a; q < e; q++) *total += cp->next_count[q];
    for (int j = 0; j < 3; j++) {
        int64_t best = -1;
        for (int64_t q = a; q < e; q++) {
            if (q == shown[0] || q == shown[1]) continue;
            if (best < 0 || cp->next_count[q] > cp->next_count[best]) best = q;
        }
        if (best < 0) break;
        shown[j] = best;
        json_t *o = json_object();
        json_object_set_new(o, "char", chr(s, cp->next_token[best]));
        json_object_set_new(o, "count", json_integer(cp->next_count[best]));
        json_array_append_new(arr, o);
    }
    return arr;
}

char *sv_explain_json(const sv_state *s, const sv_explain_req *rq, int *status) {
    cl_passage_result *r = cl_passage_explain_from(s->ix, s->m, s->cp, rq->tokens, rq->n, rq->last_only ? rq->n - 1 : 0,
                                                   &rq->par, MPI_COMM_WORLD);
    if (!r) {
        *status = 500;
        return sv_error_json(cl_last_error(), -1);
    }
    const cl_explain_result *ex = r->ex;
    const int V = ex->V, Lh = ex->Lh, NL = ex->NL, K = ex->K;
    json_t *root = json_object(), *pos = json_array();
    int bad = 0;
    for (size_t i = 0; i < r->n && !bad; i++) {
        json_t *p = json_object();
        json_object_set_new(p, "position", json_integer((json_int_t)(r->first + i)));
        json_object_set_new(p, "char", chr(s, r->tokens[r->first + i]));
        json_object_set_new(p, "next", r->next[i] >= 0 ? chr(s, r->next[i]) : json_null());
        json_object_set_new(p, "window_start", json_integer((json_int_t)r->win_start[i]));
        json_object_set_new(p, "hellinger", num_or_null(ex->hellinger[i]));
        /* sparse results (a BPE model): the lists on the prompt's support */
        const int64_t sa = ex->sup_indptr ? ex->sup_indptr[i] : 0;
        const size_t sn = ex->sup_indptr ? (size_t)(ex->sup_indptr[i + 1] - sa) : 0;
        json_object_set_new(p, "model", ex->sup_indptr
                                            ? top_sparse(s, ex->sup_token + sa, ex->sup_prob + sa, NULL, sn, SV_TOP_CHARS)
                                            : top_chars(s, ex->model_probs + i * V, NULL, V, SV_TOP_CHARS));
        json_object_set_new(p, "approx",
                            ex->hellinger[i] == CL_H_EMPTY ? json_array()
                            : ex->sup_indptr ? top_sparse(s, ex->sup_token + sa, NULL, ex->sup_approx + sa, sn, SV_TOP_CHARS)
                                             : top_chars(s, NULL, ex->approx + i * V, V, SV_TOP_CHARS));
        if (ex->soft_hellinger) {
            json_object_set_new(p, "soft_hellinger", num_or_null(ex->soft_hellinger[i]));
            json_object_set_new(p, "soft_approx",
                                ex->sup_indptr ? top_sparse(s, ex->sup_token + sa, NULL, ex->sup_soft + sa, sn, SV_TOP_CHARS)
                                               : top_chars(s, NULL, ex->soft_approx + i * V, V, SV_TOP_CHARS));
        }
        json_object_set_new(p, "ngram_hellinger", num_or_null(r->ngram_h[i]));
        json_object_set_new(p, "ngram_substring", r->ngram_sub[i] >= 0 ? json_integer(r->ngram_sub[i]) : json_null());
        json_t *lens = json_array();
        for (int l = 0; l < NL; l++) {
            json_t *o = json_object();
            json_object_set_new(o, "block", json_integer(l));
            json_object_set_new(o, "hellinger", json_real(r->lens_h[i * NL + l]));
            const size_t lk = (i * NL + l) * CL_EXPLAIN_LENS_TOP;
            json_object_set_new(o, "top", ex->lens_top_id ? top_sparse(s, ex->lens_top_id + lk, ex->lens_top_p + lk, NULL,
                                                                       CL_EXPLAIN_LENS_TOP, 3)
                                                          : top_chars(s, ex->lens + (i * NL + l) * V, NULL, V, 3));
            json_array_append_new(lens, o);
        }
        json_object_set_new(p, "lens", lens);
        json_t *blocks = json_array();
        for (int b = 0; b < Lh && !bad; b++) {
            size_t pb = i * (size_t)Lh + b;
            json_t *o = json_object(), *sim = json_array();
            json_object_set_new(o, "block", json_integer(s->ix->first_block + b));
            json_object_set_new(o, "threshold", json_real(rq->par.thresholds[b]));
            json_object_set_new(o, "weight", json_real(rq->par.weights[b]));
            json_object_set_new(o, "matches", json_integer(ex->n_matches[pb]));
            json_object_set_new(o, "near_threshold", json_integer(ex->near[pb]));
            for (int k = 0; k < K; k++) {
                int64_t sub = ex->top_sub[pb * K + k];
                if (sub < 0) break;
                json_t *t = row_text(s, sub);
                if (!t) {
                    bad = 1;
                    break;
                }
                int64_t tot;
                json_t *e = json_object();
                json_object_set_new(e, "substring", json_integer(sub));
                json_object_set_new(e, "text", t);
                json_object_set_new(e, "similarity", json_real(ex->top_sim[pb * K + k]));
                json_object_set_new(e, "next", followers(s, sub, &tot));
                json_object_set_new(e, "next_total", json_integer(tot));
                json_array_append_new(sim, e);
            }
            json_object_set_new(o, "similar", sim);
            json_array_append_new(blocks, o);
        }
        json_object_set_new(p, "blocks", blocks);
        json_array_append_new(pos, p);
    }
    json_object_set_new(root, "mean_hellinger", num_or_null(r->mean_h));
    json_object_set_new(root, "n", json_integer((json_int_t)r->n));
    json_object_set_new(root, "first", json_integer((json_int_t)r->first));
    json_object_set_new(root, "n_empty", json_integer((json_int_t)r->n_empty));
    json_object_set_new(root, "L", json_integer(r->L));
    json_object_set_new(root, "sketch", json_boolean(ex->sketch));
    json_object_set_new(root, "positions", pos);
    cl_passage_free(r);
    char *out = bad ? NULL : json_dumps(root, DUMP_FLAGS);
    json_decref(root);
    if (!out) {
        *status = 500;
        return sv_error_json(bad ? cl_last_error() : "out of memory", -1);
    }
    *status = 200;
    return out;
}

static json_t *text_span(const sv_state *s, const int32_t *t, size_t n) {
    if (s->cp->bpe) {
        char *b = NULL;
        size_t len = 0;
        if (cl_bpe_decode(s->cp->bpe, t, n, &b, &len)) return json_null();
        json_t *j = bytes_json(b, len);
        free(b);
        return j;
    }
    char *b = malloc(4 * n + 1);
    if (!b) return json_null();
    size_t w = 0;
    for (size_t i = 0; i < n; i++) w += (size_t)cl_utf8_put(s->cp->vocab[t[i]], b + w);
    b[w] = 0;
    json_t *j = json_string(b);
    free(b);
    return j;
}

char *sv_locate_json(const sv_state *s, long long sub, int context, int max_occ, int *status) {
    char msg[600];
    const cl_corpus *cp = s->cp;
    if (sub < 0 || (unsigned long long)sub >= cp->n) {
        snprintf(msg, sizeof msg, "substring %lld is not a corpus string (0..%zu)", sub, cp->n - 1);
        *status = 404;
        return sv_error_json(msg, -1);
    }
    if (!s->text) {
        snprintf(msg, sizeof msg, "the corpus text is not available: %s", s->text_note);
        *status = 503;
        return sv_error_json(msg, -1);
    }
    int32_t row[CL_CORPUS_MAX_LEN];
    if (cl_corpus_row(cp, (size_t)sub, row)) {
        *status = 500;
        return sv_error_json(cl_last_error(), -1);
    }
    const size_t L = (size_t)cp->L, n = s->n_text;
    json_t *occ = json_array();
    long long total = 0;
    for (size_t p = 0; p + L <= n; p++) {
        if (s->text[p] != row[0] || memcmp(s->text + p, row, L * sizeof *row)) continue;
        if (total++ >= max_occ) continue;
        size_t a = p >= (size_t)context ? p - (size_t)context : 0, e = p + L + (size_t)context;
        if (e > n) e = n;
        json_t *o = json_object();
        json_object_set_new(o, "offset", json_integer((json_int_t)p));
        json_object_set_new(o, "before", text_span(s, s->text + a, p - a));
        json_object_set_new(o, "match", text_span(s, s->text + p, L));
        json_object_set_new(o, "after", text_span(s, s->text + p + L, e - p - L));
        json_array_append_new(occ, o);
    }
    int64_t tot;
    json_t *root = json_object();
    json_object_set_new(root, "substring", json_integer(sub));
    json_object_set_new(root, "text", text_span(s, row, L));
    json_object_set_new(root, "total", json_integer(total));
    json_object_set_new(root, "returned", json_integer((json_int_t)json_array_size(occ)));
    json_object_set_new(root, "context", json_integer(context));
    json_t *nx = followers(s, sub, &tot);
    json_object_set_new(root, "next", nx);
    json_object_set_new(root, "next_total", json_integer(tot));
    json_object_set_new(root, "occurrences", occ);
    char *out = json_dumps(root, DUMP_FLAGS);
    json_decref(root);
    *status = out ? 200 : 500;
    return out ? out : sv_error_json("out of memory", -1);
}

static json_t *doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

char *sv_info_json(const sv_state *s) {
    const cl_model *m = s->m;
    const cl_corpus *cp = s->cp;
    const cl_index *ix = s->ix;
    const cl_serve_opts *o = s->o;
    json_t *root = json_object(), *mo = json_object(), *co = json_object(), *io = json_object(),
           *lim = json_object(), *vocab = json_array();
    json_object_set_new(mo, "path", json_string(o->model_path));
    json_object_set_new(mo, "n_layer", json_integer(m->cfg.n_layer));
    json_object_set_new(mo, "n_head", json_integer(m->cfg.n_head));
    json_object_set_new(mo, "n_embd", json_integer(m->cfg.n_embd));
    json_object_set_new(mo, "block_size", json_integer(m->cfg.block_size));
    json_object_set_new(mo, "vocab_size", json_integer(m->cfg.vocab_size));
    json_object_set_new(mo, "token_type", json_string(m->bpe ? "gpt2-bpe" : "char"));
    for (int v = 0; v < m->cfg.vocab_size; v++) json_array_append_new(vocab, chr(s, v));
    json_object_set_new(mo, "vocab", vocab);
    json_object_set_new(root, "model", mo);
    json_object_set_new(co, "path", json_string(o->corpus_path));
    json_object_set_new(co, "corpus_file", json_string(cp->corpus_file));
    json_object_set_new(co, "corpus_chars", json_integer((json_int_t)cp->corpus_chars));
    json_object_set_new(co, "corpus_sha256", json_string(cp->corpus_sha256));
    json_object_set_new(co, "L", json_integer(cp->L));
    json_object_set_new(co, "n_substrings", json_integer((json_int_t)cp->n));
    json_object_set_new(co, "holdout_start", cp->n_holdout ? json_integer((json_int_t)cp->holdout_start) : json_null());
    json_object_set_new(co, "text_for_locate", s->text ? json_string(s->text_path) : json_null());
    json_object_set_new(co, "text_chars", json_integer((json_int_t)s->n_text));
    if (!s->text) json_object_set_new(co, "locate_unavailable", json_string(s->text_note));
    json_object_set_new(root, "corpus", co);
    json_object_set_new(io, "path", json_string(o->index_path));
    json_object_set_new(io, "n_rows", json_integer((json_int_t)ix->N));
    json_object_set_new(io, "L", json_integer(ix->L));
    json_object_set_new(io, "hook", json_string(ix->hook));
    json_object_set_new(io, "first_block", json_integer(ix->first_block));
    json_object_set_new(io, "n_hook_blocks", json_integer(ix->Lh));
    json_object_set_new(io, "dtype", json_string(ix->dtype == CL_INDEX_F16 ? "float16" : "float32"));
    json_object_set_new(io, "sketch", json_boolean(ix->sketch != NULL));
    json_object_set_new(io, "model_sha256", json_string(ix->model_sha256));
    json_object_set_new(io, "corpus_h5_sha256", json_string(ix->corpus_h5_sha256));
    json_object_set_new(root, "index", io);
    json_object_set_new(root, "hook", json_string(ix->hook));
    json_object_set_new(root, "thresholds", s->have_defaults ? doubles(s->defaults.thresholds, ix->Lh) : json_null());
    json_object_set_new(root, "weights", s->have_defaults ? doubles(s->defaults.weights, ix->Lh) : json_null());
    json_object_set_new(root, "top", json_integer(10));
    json_object_set_new(lim, "max_body_bytes", json_integer((json_int_t)o->max_body));
    json_object_set_new(lim, "max_chars", json_integer((json_int_t)o->max_chars));
    json_object_set_new(lim, "max_top", json_integer(SV_MAX_TOP));
    json_object_set_new(lim, "queue", json_integer(o->queue));
    json_object_set_new(lim, "timeout_s", json_real(o->timeout_s));
    json_object_set_new(lim, "max_occurrences", json_integer(o->max_occurrences));
    json_object_set_new(lim, "max_context", json_integer(o->max_context));
    json_object_set_new(root, "limits", lim);
    char *out = json_dumps(root, DUMP_FLAGS | JSON_INDENT(1));
    json_decref(root);
    return out;
}

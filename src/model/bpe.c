/* GPT-2 byte-level BPE (see tokenizer.h): byte-to-unicode table, PCRE2
 * pre-tokenizer, merges by rank with a cache of pieces. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/tokenizer.h"

/* JavaScript's \s (ECMAScript WhiteSpace + LineTerminator): the oracle's. */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
static const char *const GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

#define CACHE_MAX 65536 /* pieces kept; the cache is emptied when full */

typedef struct {
    uint64_t hash;
    char *key; /* piece bytes */
    size_t klen;
    int32_t *ids;
    int n;
} cache_slot;

struct cl_bpe {
    int V;
    char **tok;            /* [V] byte-to-unicode strings */
    unsigned char **bytes; /* [V] raw bytes */
    size_t *nbytes;        /* [V] */
    size_t max_nbytes;     /* the longest token's bytes */
    size_t M;
    char **merge;          /* [M] "a b" */
    int32_t byte_id[256];  /* the token of each single byte */
    size_t vcap;
    int32_t *vslot;        /* string -> id, open addressing, -1 empty */
    size_t mcap;
    uint64_t *mkey;        /* (a << 32 | b) + 1, 0 empty */
    int32_t *mrank, *mres;
    pcre2_code *re;
    pcre2_match_data *md;
    size_t ccap, cn;
    cache_slot *cache;
};

static uint64_t fnv(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* The byte-to-unicode table of GPT-2: printable Latin-1 bytes map to
 * themselves, the other 68 to 256, 257, ... in byte order. */
static void byte_to_unicode(uint32_t cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static long vocab_find(const cl_bpe *b, const char *s, size_t n) {
    size_t i = fnv(s, n) & (b->vcap - 1);
    for (;;) {
        int32_t id = b->vslot[i];
        if (id < 0) return -1;
        if (strlen(b->tok[id]) == n && !memcmp(b->tok[id], s, n)) return id;
        i = (i + 1) & (b->vcap - 1);
    }
}

/* Rank of merging (a, b), or -1; *res receives the merged token. */
static inline int32_t merge_find(const cl_bpe *b, int32_t x, int32_t y, int32_t *res) {
    uint64_t k = (((uint64_t)(uint32_t)x << 32) | (uint32_t)y) + 1;
    size_t i = mix(k) & (b->mcap - 1);
    for (;;) {
        if (b->mkey[i] == 0) return -1;
        if (b->mkey[i] == k) {
            *res = b->mres[i];
            return b->mrank[i];
        }
        i = (i + 1) & (b->mcap - 1);
    }
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

void cl_bpe_free(cl_bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->V; i++) {
        if (b->tok) free(b->tok[i]);
        if (b->bytes) free(b->bytes[i]);
    }
    for (size_t i = 0; i < b->M && b->merge; i++) free(b->merge[i]);
    for (size_t i = 0; i < b->ccap && b->cache; i++) {
        free(b->cache[i].key);
        free(b->cache[i].ids);
    }
    free(b->tok);
    free(b->bytes);
    free(b->nbytes);
    free(b->merge);
    free(b->vslot);
    free(b->mkey);
    free(b->mrank);
    free(b->mres);
    free(b->cache);
    if (b->md) pcre2_match_data_free(b->md);
    if (b->re) pcre2_code_free(b->re);
    free(b);
}

cl_bpe *cl_bpe_create(const char *const *tokens, int V, const char *const *merges, size_t n_merges) {
    if (V < 256 || V > (1 << 24)) {
        cl_error("BPE: %d tokens (a byte-level vocabulary has at least the 256 bytes)", V);
        return NULL;
    }
    cl_bpe *b = cl_trycalloc(1, sizeof *b, "BPE tokenizer");
    if (!b) return NULL;
    b->tok = cl_trycalloc((size_t)V, sizeof *b->tok, "BPE tokens");
    b->bytes = b->tok ? cl_trycalloc((size_t)V, sizeof *b->bytes, "BPE token bytes") : NULL;
    b->nbytes = b->bytes ? cl_trycalloc((size_t)V, sizeof *b->nbytes, "BPE token lengths") : NULL;
    if (!b->nbytes) goto fail;
    b->V = V;
    uint32_t b2u[256];
    byte_to_unicode(b2u);
    int16_t u2b[512];
    for (int i = 0; i < 512; i++) u2b[i] = -1;
    for (int i = 0; i < 256; i++) u2b[b2u[i]] = (int16_t)i;
    b->vcap = pow2_at_least(2 * (size_t)V);
    b->vslot = cl_trymalloc(b->vcap, sizeof *b->vslot, "BPE vocabulary index");
    if (!b->vslot) goto fail;
    memset(b->vslot, 0xff, b->vcap * sizeof *b->vslot);
    for (int id = 0; id < V; id++) {
        const char *s = tokens[id];
        size_t n = s ? strlen(s) : 0;
        if (!n) {
            cl_error("BPE token %d is empty", id);
            goto fail;
        }
        b->tok[id] = strdup(s);
        b->bytes[id] = malloc(n);
        if (!b->tok[id] || !b->bytes[id]) {
            cl_error("out of memory (BPE tokens)");
            goto fail;
        }
        size_t at = 0, k = 0;
        while (at < n) {
            uint32_t cp;
            int w = cl_utf8_get((const unsigned char *)s + at, n - at, &cp);
            if (w < 0 || cp >= 512 || u2b[cp] < 0) {
                cl_error("BPE token %d '%s' has a character that is not in GPT-2's byte-to-unicode table", id, s);
                goto fail;
            }
            b->bytes[id][k++] = (unsigned char)u2b[cp];
            at += (size_t)w;
        }
        b->nbytes[id] = k;
        if (k > b->max_nbytes) b->max_nbytes = k;
        if (vocab_find(b, s, n) >= 0) {
            cl_error("BPE token '%s' appears twice (ids %ld and %d)", s, vocab_find(b, s, n), id);
            goto fail;
        }
        size_t i = fnv(s, n) & (b->vcap - 1);
        while (b->vslot[i] >= 0) i = (i + 1) & (b->vcap - 1);
        b->vslot[i] = id;
    }
    for (int i = 0; i < 256; i++) {
        char s[8];
        int w = cl_utf8_put(b2u[i], s);
        long id = vocab_find(b, s, (size_t)w);
        if (id < 0) {
            cl_error("BPE: byte 0x%02x (token '%.*s') is not in the vocabulary", i, w, s);
            goto fail;
        }
        b->byte_id[i] = (int32_t)id;
    }
    b->M = n_merges;
    b->merge = cl_trycalloc(n_merges + 1, sizeof *b->merge, "BPE merges");
    b->mcap = pow2_at_least(2 * n_merges + 2);
    b->mkey = b->merge ? cl_trycalloc(b->mcap, sizeof *b->mkey, "BPE merge index") : NULL;
    b->mrank = b->mkey ? cl_trymalloc(b->mcap, sizeof *b->mrank, "BPE merge index") : NULL;
    b->mres = b->mrank ? cl_trymalloc(b->mcap, sizeof *b->mres, "BPE merge index") : NULL;
    if (!b->mres) goto fail;
    char cat[1024];
    for (size_t r = 0; r < n_merges; r++) {
        const char *s = merges[r];
        const char *sp = s ? strchr(s, ' ') : NULL;
        if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ') || strlen(s) >= sizeof cat) {
            cl_error("BPE merge %zu '%s' is not two tokens separated by one space", r + 1, s ? s : "");
            goto fail;
        }
        b->merge[r] = strdup(s);
        if (!b->merge[r]) {
            cl_error("out of memory (BPE merges)");
            goto fail;
        }
        size_t la = (size_t)(sp - s), lb = strlen(sp + 1);
        long x = vocab_find(b, s, la), y = vocab_find(b, sp + 1, lb);
        memcpy(cat, s, la);
        memcpy(cat + la, sp + 1, lb);
        long z = vocab_find(b, cat, la + lb);
        if (x < 0 || y < 0 || z < 0) {
            cl_error("BPE merge %zu '%s': %s '%.*s' is not in the vocabulary", r + 1, s,
                     x < 0 ? "its first part" : y < 0 ? "its second part" : "the merged token",
                     (int)(x < 0 ? la : y < 0 ? lb : la + lb), x < 0 ? s : y < 0 ? sp + 1 : cat);
            goto fail;
        }
        uint64_t k = (((uint64_t)(uint32_t)x << 32) | (uint32_t)y) + 1;
        size_t i = mix(k) & (b->mcap - 1);
        while (b->mkey[i] && b->mkey[i] != k) i = (i + 1) & (b->mcap - 1);
        b->mkey[i] = k; /* a repeated merge takes its last rank, as dict(zip(...)) does */
        b->mrank[i] = (int32_t)r;
        b->mres[i] = (int32_t)z;
    }
    int err;
    PCRE2_SIZE eoff;
    b->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, NULL);
    if (!b->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        cl_error("BPE: PCRE2 cannot compile the GPT-2 pattern at %zu: %s", (size_t)eoff, (char *)msg);
        goto fail;
    }
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is used without JIT */
    b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
    b->ccap = pow2_at_least(2 * CACHE_MAX);
    b->cache = b->md ? cl_trycalloc(b->ccap, sizeof *b->cache, "BPE cache") : NULL;
    if (!b->cache) goto fail;
    return b;
fail:
    cl_bpe_free(b);
    return NULL;
}

int cl_bpe_vocab_size(const cl_bpe *b) { return b->V; }
size_t cl_bpe_num_merges(const cl_bpe *b) { return b->M; }
size_t cl_bpe_max_token_bytes(const cl_bpe *b) { return b->max_nbytes; }
const char *cl_bpe_token(const cl_bpe *b, int id) { return id >= 0 && id < b->V ? b->tok[id] : NULL; }
const char *cl_bpe_merge(const cl_bpe *b, size_t i) { return i < b->M ? b->merge[i] : NULL; }
const unsigned char *cl_bpe_token_bytes(const cl_bpe *b, int id, size_t *len) {
    if (id < 0 || id >= b->V) {
        *len = 0;
        return NULL;
    }
    *len = b->nbytes[id];
    return b->bytes[id];
}

/* ---- files ---- */

cl_bpe *cl_bpe_from_files(const char *encoder_json, const char *merges_txt) {
    json_error_t je;
    json_t *root = json_load_file(encoder_json, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        cl_error("%s: invalid JSON at line %d column %d: %s", encoder_json, je.line, je.column, je.text);
        return NULL;
    }
    cl_bpe *b = NULL;
    const char **tok = NULL, **mer = NULL;
    char *text = NULL;
    size_t V = json_is_object(root) ? json_object_size(root) : 0;
    if (!V || V > (1u << 24)) {
        cl_error("%s: expected an object {\"token\": id, ...}", encoder_json);
        goto out;
    }
    tok = cl_trycalloc(V, sizeof *tok, "BPE tokens");
    if (!tok) goto out;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || (size_t)id >= V) {
            cl_error("%s: token '%s' has id %s; ids must be integers 0..%zu", encoder_json, key,
                     json_is_integer(val) ? "out of range" : "that is not an integer", V - 1);
            goto out;
        }
        if (tok[id]) {
            cl_error("%s: tokens '%s' and '%s' share id %lld", encoder_json, tok[id], key, (long long)id);
            goto out;
        }
        tok[id] = key;
    }
    size_t len;
    text = cl_read_file(merges_txt, 0, &len);
    if (!text) goto out;
    if (memchr(text, 0, len)) {
        cl_error("%s: a merges file has no NUL bytes", merges_txt);
        goto out;
    }
    size_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
    mer = cl_trycalloc(cap, sizeof *mer, "BPE merges");
    if (!mer) goto out;
    size_t M = 0, line = 0;
    for (char *p = text, *end = text + len; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = 0;
        if (nl > p && nl[-1] == '\r') nl[-1] = 0;
        if (!(line == 0 && !strncmp(p, "#version", 8)) && *p) mer[M++] = p;
        p = nl + 1;
    }
    b = cl_bpe_create(tok, (int)V, mer, M);
    if (!b) cl_error_prefix("%s, %s: ", encoder_json, merges_txt);
out:
    free(tok);
    free(mer);
    free(text);
    json_decref(root);
    return b;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

cl_bpe *cl_bpe_from_dir(const char *dir) {
    size_t n = strlen(dir) + 16;
    char *a = cl_trymalloc(n, 1, "file name"), *b = cl_trymalloc(n, 1, "file name");
    cl_bpe *t = NULL;
    if (a && b) {
        snprintf(a, n, "%s/vocab.json", dir);
        snprintf(b, n, "%s/merges.txt", dir);
        if (!file_exists(a) && !file_exists(b)) {
            snprintf(a, n, "%s/encoder.json", dir);
            snprintf(b, n, "%s/vocab.bpe", dir);
        }
        if (!file_exists(a) || !file_exists(b))
            cl_error("%s: the tokenizer files vocab.json and merges.txt (or encoder.json and vocab.bpe) are missing",
                     dir);
        else t = cl_bpe_from_files(a, b);
    }
    free(a);
    free(b);
    return t;
}

int cl_bpe_equal(const cl_bpe *a, const cl_bpe *b) {
    if (a->V != b->V || a->M != b->M) return 0;
    for (int i = 0; i < a->V; i++)
        if (strcmp(a->tok[i], b->tok[i])) return 0;
    for (size_t i = 0; i < a->M; i++)
        if (strcmp(a->merge[i], b->merge[i])) return 0;
    return 1;
}

static void free_strings(char **s, size_t n) {
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* /tokenizer of a GPT-2 BPE model or corpus file (see model.h). */
cl_bpe *cl_bpe_read_h5(int64_t f, const char *path) {
    const char *pre = path ? path : "", *sep = path ? ": " : "";
    if (!cl_h5_exists(f, "/tokenizer")) return cl_error("%s%shas no /tokenizer group", pre, sep), NULL;
    hid_t g = H5Gopen2(f, "/tokenizer", H5P_DEFAULT);
    char type[32] = "";
    int bad = g < 0 || cl_h5_attr_read_str(g, "type", type, sizeof type) || strcmp(type, "gpt2-bpe");
    if (g >= 0) H5Gclose(g);
    if (bad) return cl_error("%s%s/tokenizer type is not 'gpt2-bpe'", pre, sep), NULL;
    char **tok = NULL, **mer = NULL;
    size_t V = 0, M = 0;
    cl_bpe *b = NULL;
    if (cl_h5_read_strings(f, "/tokenizer/tokens", &tok, &V) || cl_h5_read_strings(f, "/tokenizer/merges", &mer, &M)) {
        cl_error_prefix("%s%s", pre, sep);
    } else if (V < 1 || V > (1u << 21)) {
        cl_error("%s%s/tokenizer/tokens has %zu entries (1..2097152 allowed)", pre, sep, V);
    } else if (!(b = cl_bpe_create((const char *const *)tok, (int)V, (const char *const *)mer, M))) {
        cl_error_prefix("%s%s/tokenizer: ", pre, sep);
    }
    free_strings(tok, V);
    free_strings(mer, M);
    return b;
}

int cl_bpe_write_h5(int64_t f, const cl_bpe *b) {
    int V = cl_bpe_vocab_size(b);
    size_t M = cl_bpe_num_merges(b);
    const char **tok = cl_trymalloc((size_t)V, sizeof *tok, "tokenizer"), **mer = cl_trymalloc(M + 1, sizeof *mer, "tokenizer");
    int rc = -1;
    if (tok && mer) {
        for (int i = 0; i < V; i++) tok[i] = cl_bpe_token(b, i);
        for (size_t i = 0; i < M; i++) mer[i] = cl_bpe_merge(b, i);
        hid_t g = H5Gcreate2(f, "/tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = g < 0 ? cl_error("cannot create /tokenizer") : cl_h5_attr_write_str(g, "type", "gpt2-bpe");
        if (g >= 0 && H5Gclose(g) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write /tokenizer");
        if (!rc) rc = cl_h5_write_strings(f, "/tokenizer/tokens", tok, (size_t)V);
        if (!rc) rc = cl_h5_write_strings(f, "/tokenizer/merges", mer, M);
    }
    free(tok);
    free(mer);
    return rc;
}

/* ---- encode / decode ---- */

/* Merge a piece's symbols (byte tokens) by rank; returns the new count. */
static int bpe_word(const cl_bpe *b, int32_t *sym, int n) {
    while (n > 1) {
        int32_t best = INT32_MAX, bres = -1, res;
        int32_t bx = -1, by = -1;
        for (int i = 0; i + 1 < n; i++) {
            int32_t r = merge_find(b, sym[i], sym[i + 1], &res);
            if (r >= 0 && r < best) best = r, bres = res, bx = sym[i], by = sym[i + 1];
        }
        if (bres < 0) break;
        int k = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && sym[i] == bx && sym[i + 1] == by) {
                sym[k++] = bres;
                i += 2;
            } else {
                sym[k++] = sym[i++];
            }
        }
        n = k;
    }
    return n;
}

static void cache_clear(cl_bpe *b) {
    for (size_t i = 0; i < b->ccap; i++) {
        free(b->cache[i].key);
        free(b->cache[i].ids);
    }
    memset(b->cache, 0, b->ccap * sizeof *b->cache);
    b->cn = 0;
}

/* Append the ids of piece s[0..n) to out (grown as needed). */
static int encode_piece(cl_bpe *b, const unsigned char *s, size_t n, int32_t **out, size_t *len, size_t *cap,
                        int32_t **sym, size_t *symcap) {
    uint64_t h = fnv(s, n);
    size_t i = h & (b->ccap - 1);
    for (;;) {
        cache_slot *c = &b->cache[i];
        if (!c->key) break;
        if (c->hash == h && c->klen == n && !memcmp(c->key, s, n)) {
            if (*len + (size_t)c->n > *cap) {
                size_t nc = 2 * (*cap + (size_t)c->n);
                int32_t *p = realloc(*out, nc * sizeof *p);
                if (!p) return cl_error("out of memory (token ids)");
                *out = p, *cap = nc;
            }
            memcpy(*out + *len, c->ids, (size_t)c->n * sizeof(int32_t));
            *len += (size_t)c->n;
            return 0;
        }
        i = (i + 1) & (b->ccap - 1);
    }
    if (n > *symcap) {
        int32_t *p = realloc(*sym, n * sizeof *p);
        if (!p) return cl_error("out of memory (BPE piece)");
        *sym = p, *symcap = n;
    }
    if (n > (size_t)INT32_MAX / 2) return cl_error("BPE: a piece of %zu bytes is too long", n);
    for (size_t k = 0; k < n; k++) (*sym)[k] = b->byte_id[s[k]];
    int m = bpe_word(b, *sym, (int)n);
    if (*len + (size_t)m > *cap) {
        size_t nc = 2 * (*cap + (size_t)m);
        int32_t *p = realloc(*out, nc * sizeof *p);
        if (!p) return cl_error("out of memory (token ids)");
        *out = p, *cap = nc;
    }
    memcpy(*out + *len, *sym, (size_t)m * sizeof(int32_t));
    *len += (size_t)m;
    if (n > 256) return 0; /* long pieces are rare: not cached */
    if (b->cn >= CACHE_MAX) {
        cache_clear(b);
        i = h & (b->ccap - 1);
    }
    cache_slot *c = &b->cache[i];
    c->key = malloc(n);
    c->ids = malloc((size_t)m * sizeof(int32_t));
    if (!c->key || !c->ids) { /* the cache is optional */
        free(c->key);
        free(c->ids);
        c->key = NULL, c->ids = NULL;
        return 0;
    }
    memcpy(c->key, s, n);
    memcpy(c->ids, *sym, (size_t)m * sizeof(int32_t));
    c->hash = h, c->klen = n, c->n = m;
    b->cn++;
    return 0;
}

int cl_bpe_encode(cl_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0, ch = 0; i < len; ch++) {
        uint32_t cp;
        int w = s[i] < 0x80 ? 1 : cl_utf8_get(s + i, len - i, &cp);
        if (w < 0) return cl_error("invalid UTF-8 at byte %zu (character %zu) of the text", i, ch);
        i += (size_t)w;
    }
    size_t cap = len / 2 + 16, cnt = 0, symcap = 0;
    int32_t *out = cl_trymalloc(cap, sizeof *out, "token ids"), *sym = NULL;
    if (!out) return -1;
    size_t at = 0;
    while (at < len) {
        int rc = pcre2_match(b->re, s, len, at, PCRE2_NO_UTF_CHECK, b->md, NULL);
        if (rc < 0) {
            free(out);
            free(sym);
            if (rc == PCRE2_ERROR_NOMATCH) return cl_error("BPE: no pre-tokenizer match at byte %zu", at);
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return cl_error("BPE: pre-tokenizer failed at byte %zu: %s", at, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
        if (ov[0] != at || ov[1] <= ov[0]) { /* the pattern covers every character */
            free(out);
            free(sym);
            return cl_error("BPE: the pre-tokenizer skipped bytes %zu..%zu", at, (size_t)ov[0]);
        }
        if (encode_piece(b, s + ov[0], ov[1] - ov[0], &out, &cnt, &cap, &sym, &symcap)) {
            free(out);
            free(sym);
            return -1;
        }
        at = ov[1];
    }
    free(sym);
    *ids = out;
    *n = cnt;
    return 0;
}

int cl_bpe_decode(const cl_bpe *b, const int32_t *ids, size_t n, char **text, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->V)
            return cl_error("token id %d at position %zu is outside the vocabulary (0..%d)", ids[i], i, b->V - 1);
        total += b->nbytes[ids[i]];
    }
    char *out = cl_trymalloc(total + 1, 1, "decoded text");
    if (!out) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + k, b->bytes[ids[i]], b->nbytes[ids[i]]);
        k += b->nbytes[ids[i]];
    }
    out[k] = 0;
    *text = out;
    *len = k;
    return 0;
}

/* ---- either kind ---- */

int cl_tok_is_bpe(const cl_model *m) { return m->bpe != NULL; }

int cl_tok_encode(const cl_model *m, const char *text, size_t len, int32_t **ids, size_t *n) {
    if (m->bpe) return cl_bpe_encode(m->bpe, text, len, ids, n);
    int32_t *buf = cl_trymalloc(len ? len : 1, sizeof *buf, "token ids");
    if (!buf) return -1;
    if (cl_vocab_encode(m->vocab, m->cfg.vocab_size, text, len, buf, len, n)) {
        free(buf);
        return -1;
    }
    *ids = buf;
    return 0;
}

size_t cl_tok_max_bytes(const cl_model *m) {
    if (m->bpe) return m->bpe->max_nbytes;
    size_t mx = 1;
    char tmp[4];
    for (int i = 0; i < m->cfg.vocab_size; i++) {
        size_t n = (size_t)cl_utf8_put(m->vocab[i], tmp);
        if (n > mx) mx = n;
    }
    return mx;
}

size_t cl_tok_bytes(const cl_model *m, int id, char *buf, size_t cap) {
    if (id < 0 || id >= m->cfg.vocab_size) return 0;
    if (m->bpe) {
        size_t n;
        const unsigned char *p = cl_bpe_token_bytes(m->bpe, id, &n);
        if (n > cap) n = cap;
        memcpy(buf, p, n);
        return n;
    }
    char tmp[4];
    size_t n = (size_t)cl_utf8_put(m->vocab[id], tmp);
    if (n > cap) n = cap;
    memcpy(buf, tmp, n);
    return n;
}

void cl_tok_display(const cl_model *m, int id, char *buf, size_t n) {
    if (n == 0) return;
    buf[0] = 0;
    if (id < 0 || id >= m->cfg.vocab_size) {
        snprintf(buf, n, "?");
        return;
    }
    if (!m->bpe) {
        char e[16];
        cl_token_escape(m->vocab[id], e);
        snprintf(buf, n, "%s", e);
        return;
    }
    size_t len, k = 0;
    const unsigned char *s = cl_bpe_token_bytes(m->bpe, id, &len);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int w = cl_utf8_get(s + i, len - i, &cp);
        char e[16];
        if (w < 0) snprintf(e, sizeof e, "\\x%02x", s[i]), w = 1;
        else cl_token_escape(cp, e);
        size_t l = strlen(e);
        if (k + l + 4 > n) {
            if (n >= 4) snprintf(buf + (k < n - 4 ? k : n - 4), 4, "...");
            return;
        }
        memcpy(buf + k, e, l);
        k += l;
        buf[k] = 0;
        i += (size_t)w;
    }
}

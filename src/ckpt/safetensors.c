/* safetensors reader: 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data buffer. The JSON parser below reads
 * exactly this (strings with escapes, non-negative integers, arrays, objects;
 * other values are skipped with a depth limit) and checks every offset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/base/error.h"

#define ST_MAX_HEADER 100000000u
#define JSON_MAX_DEPTH 64

typedef struct {
    const unsigned char *p, *end, *start;
} js;

static int jerr(js *j, const char *what) {
    return cl_error("safetensors header: %s at byte %zu of the JSON", what,
                    (size_t)(j->p - j->start));
}

static void ws(js *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int expect(js *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != (unsigned char)c) {
        char b[32];
        snprintf(b, sizeof b, "expected '%c'", c);
        return jerr(j, b);
    }
    j->p++;
    return 0;
}

static int hex4(js *j, unsigned *v) {
    if (j->end - j->p < 4) return jerr(j, "truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = j->p[i];
        unsigned d = c >= '0' && c <= '9'   ? c - '0'
                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                            : 16;
        if (d == 16) return jerr(j, "bad \\u escape");
        *v = *v * 16 + d;
    }
    j->p += 4;
    return 0;
}

/* Parse a string; if out != NULL, a malloc'ed UTF-8 copy (escapes decoded). */
static int jstring(js *j, char **out) {
    ws(j);
    if (j->p >= j->end || *j->p != '"') return jerr(j, "expected a string");
    j->p++;
    const unsigned char *s = j->p;
    /* decoded length <= raw length */
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\') j->p++;
        if (j->p < j->end) j->p++;
    }
    if (j->p >= j->end) return jerr(j, "unterminated string");
    const unsigned char *e = j->p;
    j->p++;
    if (!out) return 0;
    char *buf = cl_trymalloc((size_t)(e - s) + 1, 1, "safetensors name");
    if (!buf) return -1;
    size_t n = 0;
    js q = {s, e, j->start};
    while (q.p < q.end) {
        unsigned char c = *q.p++;
        if (c < 0x20) {
            free(buf);
            return jerr(&q, "control character in string");
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            continue;
        }
        c = *q.p++; /* the scan above guarantees a byte after a backslash */
        unsigned cp;
        switch (c) {
        case '"': case '\\': case '/': buf[n++] = (char)c; continue;
        case 'b': buf[n++] = '\b'; continue;
        case 'f': buf[n++] = '\f'; continue;
        case 'n': buf[n++] = '\n'; continue;
        case 'r': buf[n++] = '\r'; continue;
        case 't': buf[n++] = '\t'; continue;
        case 'u':
            if (hex4(&q, &cp)) {
                free(buf);
                return -1;
            }
            if (cp >= 0xD800 && cp < 0xDC00) { /* surrogate pair */
                unsigned lo;
                if (q.end - q.p < 6 || q.p[0] != '\\' || q.p[1] != 'u') {
                    free(buf);
                    return jerr(&q, "lone surrogate");
                }
                q.p += 2;
                if (hex4(&q, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    free(buf);
                    return jerr(&q, "bad surrogate pair");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                free(buf);
                return jerr(&q, "lone surrogate");
            }
            if (cp == 0) {
                free(buf);
                return jerr(&q, "NUL in string");
            }
            /* \uXXXX is 6 raw bytes, a pair 12: the UTF-8 form (<= 4) fits */
            if (cp < 0x80) {
                buf[n++] = (char)cp;
            } else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | (cp >> 6));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[n++] = (char)(0xE0 | (cp >> 12));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (char)(0xF0 | (cp >> 18));
                buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
            continue;
        default:
            free(buf);
            return jerr(&q, "bad escape");
        }
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* Non-negative integer without sign, fraction or exponent. */
static int juint(js *j, size_t *v) {
    ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jerr(j, "expected a non-negative integer");
    size_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (x > (((size_t)-1) - d) / 10) return jerr(j, "integer too large");
        x = x * 10 + d;
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jerr(j, "expected an integer");
    *v = x;
    return 0;
}

static int jskip(js *j, int depth) {
    if (depth > JSON_MAX_DEPTH) return jerr(j, "nesting too deep");
    ws(j);
    if (j->p >= j->end) return jerr(j, "unexpected end");
    unsigned char c = *j->p;
    if (c == '"') return jstring(j, NULL);
    if (c == '{' || c == '[') {
        unsigned char close = c == '{' ? '}' : ']';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (jstring(j, NULL) || expect(j, ':')) return -1;
            }
            if (jskip(j, depth + 1)) return -1;
            ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return expect(j, (char)close);
        }
    }
    /* number or literal: a run of these characters */
    const unsigned char *s = j->p;
    while (j->p < j->end && (strchr("+-.eE0123456789", *j->p) || (*j->p >= 'a' && *j->p <= 'z')) &&
           *j->p)
        j->p++;
    if (j->p == s) return jerr(j, "unexpected character");
    size_t n = (size_t)(j->p - s);
    if ((n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "null", 4))) ||
        (n == 5 && !memcmp(s, "false", 5)))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'a' && s[i] <= 'z' && s[i] != 'e') return jerr(j, "bad literal");
    return 0;
}

static const struct {
    const char *name;
    cl_dtype dt;
} st_dtypes[] = {{"F32", CL_DT_F32}, {"F16", CL_DT_F16}, {"BF16", CL_DT_BF16}, {"F64", CL_DT_F64},
                 {"I64", CL_DT_I64}, {"I32", CL_DT_I32}, {"I16", CL_DT_I16},   {"I8", CL_DT_I8},
                 {"U8", CL_DT_U8},   {"BOOL", CL_DT_BOOL}};

static int tensor_entry(js *j, cl_st_tensor *t) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (expect(j, '{')) return -1;
    ws(j);
    if (j->p < j->end && *j->p == '}') return jerr(j, "empty tensor entry");
    for (;;) {
        char *k;
        if (jstring(j, &k)) return -1;
        if (expect(j, ':')) {
            free(k);
            return -1;
        }
        int rc = 0;
        if (!strcmp(k, "dtype")) {
            char *d;
            if (jstring(j, &d)) {
                free(k);
                return -1;
            }
            size_t i;
            for (i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
                if (!strcmp(d, st_dtypes[i].name)) break;
            if (i == sizeof st_dtypes / sizeof *st_dtypes)
                rc = cl_error("safetensors tensor '%s': unsupported dtype '%.16s'", t->name, d);
            else
                t->dtype = st_dtypes[i].dt;
            free(d);
            have_dtype = 1;
        } else if (!strcmp(k, "shape")) {
            rc = expect(j, '[');
            t->ndim = 0;
            ws(j);
            if (!rc && j->p < j->end && *j->p == ']') {
                j->p++;
            } else {
                while (!rc) {
                    if (t->ndim == CL_CKPT_MAX_DIMS) {
                        rc = cl_error("safetensors tensor '%s': more than 8 dimensions", t->name);
                        break;
                    }
                    rc = juint(j, &t->shape[t->ndim]);
                    if (rc) break;
                    t->ndim++;
                    ws(j);
                    if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                    }
                    rc = expect(j, ']');
                    break;
                }
            }
            have_shape = 1;
        } else if (!strcmp(k, "data_offsets")) {
            rc = expect(j, '[') || juint(j, &t->begin) || expect(j, ',') || juint(j, &t->end) ||
                 expect(j, ']');
            have_off = 1;
        } else {
            rc = jskip(j, 1);
        }
        free(k);
        if (rc) return -1;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (expect(j, '}')) return -1;
        break;
    }
    if (!have_dtype || !have_shape || !have_off)
        return cl_error("safetensors tensor '%s': entry lacks %s", t->name,
                        !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const cl_st_tensor *x = *(cl_st_tensor *const *)a, *y = *(cl_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

void cl_st_free(cl_st_file *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    memset(st, 0, sizeof *st);
}

int cl_st_parse(const unsigned char *file, size_t len, cl_st_file *st) {
    memset(st, 0, sizeof *st);
    if (len < 8) return cl_error("safetensors: file shorter than its 8-byte header length");
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | file[i];
    if (hl > ST_MAX_HEADER) return cl_error("safetensors: header length %llu exceeds 100,000,000", (unsigned long long)hl);
    if (hl > len - 8)
        return cl_error("safetensors: header length %llu runs past the end of the file (%zu bytes): truncated?",
                        (unsigned long long)hl, len);
    js j = {file + 8, file + 8 + hl, file + 8};
    st->data = file + 8 + hl;
    st->data_len = len - 8 - (size_t)hl;
    size_t cap = 0;
    if (expect(&j, '{')) goto fail;
    ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            char *name;
            if (jstring(&j, &name)) goto fail;
            if (expect(&j, ':')) {
                free(name);
                goto fail;
            }
            if (!strcmp(name, "__metadata__")) {
                free(name);
                if (jskip(&j, 1)) goto fail;
            } else {
                if (st->n == cap) {
                    size_t nc = cap ? 2 * cap : 64;
                    cl_st_tensor *t = realloc(st->tensors, nc * sizeof *t);
                    if (!t) {
                        free(name);
                        cl_error("safetensors: out of memory");
                        goto fail;
                    }
                    st->tensors = t;
                    cap = nc;
                }
                cl_st_tensor *t = &st->tensors[st->n++];
                memset(t, 0, sizeof *t);
                t->name = name;
                if (tensor_entry(&j, t)) goto fail;
            }
            ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (expect(&j, '}')) goto fail;
            break;
        }
    }
    ws(&j);
    if (j.p != j.end) {
        jerr(&j, "trailing bytes after the JSON object");
        goto fail;
    }
    /* shapes, sizes and offsets; then the tensors must tile the buffer */
    for (size_t i = 0; i < st->n; i++) {
        cl_st_tensor *t = &st->tensors[i];
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] && numel > ((size_t)-1) / t->shape[d]) {
                cl_error("safetensors tensor '%s': shape overflows", t->name);
                goto fail;
            }
            numel *= t->shape[d];
        }
        t->numel = numel;
        size_t es = cl_dtype_size(t->dtype);
        if (t->end < t->begin || t->end > st->data_len) {
            cl_error("safetensors tensor '%s': data_offsets [%zu, %zu] outside the data buffer "
                     "(%zu bytes): truncated?",
                     t->name, t->begin, t->end, st->data_len);
            goto fail;
        }
        if (numel > ((size_t)-1) / es || numel * es != t->end - t->begin) {
            cl_error("safetensors tensor '%s': %zu bytes for %zu elements of %s", t->name,
                     t->end - t->begin, numel, cl_dtype_name(t->dtype));
            goto fail;
        }
    }
    if (st->n) {
        cl_st_tensor **ord = cl_trymalloc(st->n, sizeof *ord, "safetensors index");
        if (!ord) goto fail;
        for (size_t i = 0; i < st->n; i++) ord[i] = &st->tensors[i];
        qsort(ord, st->n, sizeof *ord, cmp_begin);
        size_t at = 0;
        for (size_t i = 0; i < st->n; i++) {
            if (ord[i]->begin != at) {
                cl_error("safetensors tensor '%s': data at %zu %s previous tensor's end %zu",
                         ord[i]->name, ord[i]->begin, ord[i]->begin < at ? "overlaps the" : "leaves a hole after the", at);
                free(ord);
                goto fail;
            }
            at = ord[i]->end;
        }
        free(ord);
        if (at != st->data_len) {
            cl_error("safetensors: %zu bytes of data after the last tensor", st->data_len - at);
            goto fail;
        }
    }
    return 0;
fail:
    cl_st_free(st);
    return -1;
}

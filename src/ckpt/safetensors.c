/* safetensors reader: 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data buffer. The header is parsed by
 * jansson (Debian's libjansson); every field, size and offset is checked here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/base/error.h"

#define ST_MAX_HEADER 100000000u

static const struct {
    const char *name;
    cl_dtype dt;
} st_dtypes[] = {{"F32", CL_DT_F32}, {"F16", CL_DT_F16}, {"BF16", CL_DT_BF16}, {"F64", CL_DT_F64},
                 {"I64", CL_DT_I64}, {"I32", CL_DT_I32}, {"I16", CL_DT_I16},   {"I8", CL_DT_I8},
                 {"U8", CL_DT_U8},   {"BOOL", CL_DT_BOOL}};

/* A JSON integer >= 0 (jansson refuses integers beyond long long itself). */
static int st_uint(const json_t *v, const char *tensor, const char *field, size_t *out) {
    if (!json_is_integer(v))
        return cl_error("safetensors tensor '%s': %s: expected a non-negative integer", tensor, field);
    json_int_t x = json_integer_value(v);
    if (x < 0) return cl_error("safetensors tensor '%s': %s: expected a non-negative integer, got %lld", tensor,
                               field, (long long)x);
    *out = (size_t)x;
    return 0;
}

static int tensor_entry(const json_t *e, cl_st_tensor *t) {
    if (!json_is_object(e)) return cl_error("safetensors tensor '%s': entry is not an object", t->name);
    const json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
                 *off = json_object_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return cl_error("safetensors tensor '%s': entry lacks %s", t->name,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt)) return cl_error("safetensors tensor '%s': dtype is not a string", t->name);
    const char *d = json_string_value(dt);
    size_t i;
    for (i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (!strcmp(d, st_dtypes[i].name)) break;
    if (i == sizeof st_dtypes / sizeof *st_dtypes)
        return cl_error("safetensors tensor '%s': unsupported dtype '%.16s'", t->name, d);
    t->dtype = st_dtypes[i].dt;
    if (!json_is_array(sh)) return cl_error("safetensors tensor '%s': shape is not an array", t->name);
    if (json_array_size(sh) > CL_CKPT_MAX_DIMS)
        return cl_error("safetensors tensor '%s': more than 8 dimensions", t->name);
    t->ndim = (int)json_array_size(sh);
    for (int k = 0; k < t->ndim; k++)
        if (st_uint(json_array_get(sh, (size_t)k), t->name, "shape", &t->shape[k])) return -1;
    if (!json_is_array(off) || json_array_size(off) != 2)
        return cl_error("safetensors tensor '%s': data_offsets is not [begin, end]", t->name);
    if (st_uint(json_array_get(off, 0), t->name, "data_offsets", &t->begin) ||
        st_uint(json_array_get(off, 1), t->name, "data_offsets", &t->end))
        return -1;
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
    st->data = file + 8 + hl;
    st->data_len = len - 8 - (size_t)hl;
    /* jansson: strict RFC 8259 (escapes, surrogate pairs, no NUL in strings,
     * integers within long long), duplicate keys refused, object order kept. */
    json_error_t jerr;
    json_t *root = json_loadb((const char *)file + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return cl_error("safetensors header: invalid JSON at byte %d: %s", jerr.position, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return cl_error("safetensors header: the JSON is not an object");
    }
    st->tensors = cl_trycalloc(json_object_size(root) + 1, sizeof *st->tensors, "safetensors index");
    if (!st->tensors) {
        json_decref(root);
        return -1;
    }
    const char *name;
    json_t *e;
    json_object_foreach(root, name, e) {
        if (!strcmp(name, "__metadata__")) continue;
        cl_st_tensor *t = &st->tensors[st->n++];
        t->name = strdup(name);
        if (!t->name) {
            cl_error("safetensors: out of memory");
            json_decref(root);
            goto fail;
        }
        if (tensor_entry(e, t)) {
            json_decref(root);
            goto fail;
        }
    }
    json_decref(root);
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

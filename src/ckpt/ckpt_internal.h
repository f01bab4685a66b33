/* Internals of the checkpoint readers (zip, pickle, safetensors), exposed for
 * checkpoint.c and the fuzz harnesses. All readers work on a borrowed memory
 * block and check every offset against its length before reading.
 */
#ifndef CORPUSLENS_CKPT_INTERNAL_H
#define CORPUSLENS_CKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/ckpt/checkpoint.h"

/* ---- zip (stored entries only) ---- */

typedef struct {
    char *name;                /* NUL-terminated copy of the entry name */
    uint16_t method;           /* 0 = stored */
    uint32_t crc;              /* from the central directory; 0 = not checked */
    uint64_t size;             /* uncompressed size */
    uint64_t comp_size;
    uint64_t data_offset;      /* from the LOCAL header: offset + 30 + n + e */
} cl_zip_entry;

typedef struct {
    const unsigned char *data;
    size_t len;
    cl_zip_entry *entries;     /* central directory order */
    size_t n_entries;
    cl_zip_entry **sorted;     /* entries sorted by name */
} cl_zip;

/* Parse the central directory (zip64 aware) and every local header. */
int cl_zip_open(cl_zip *z, const unsigned char *data, size_t len);
void cl_zip_close(cl_zip *z);
/* Index of the entry called `name`, or -1. */
long cl_zip_find(const cl_zip *z, const char *name);
/* Pointer to a stored entry's bytes (refuses compressed entries; checks the
 * CRC when `check_crc` and the directory has one). */
int cl_zip_entry_data(const cl_zip *z, size_t i, int check_crc, const unsigned char **p,
                      size_t *n);
uint32_t cl_crc32(const unsigned char *p, size_t n);

/* ---- pickle ---- */

typedef enum {
    PK_NONE = 0,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,    /* items: key0, val0, key1, val1, ... */
    PK_GLOBAL,  /* s: "module.name" (allowlisted) */
    PK_STORAGE, /* s: storage key; dtype; numel */
    PK_TENSOR,
    PK_MARK,
    PK_OBJECT,  /* opaque mode: an instance of a class that is never imported or
                   called. s: "module.name" of the class or callable; args: what
                   REDUCE / NEWOBJ passed; state: what BUILD set; items: what
                   APPEND(S) / SETITEM(S) added (obj_items says which) */
    PK_SET      /* items; set or frozenset */
} pk_type;

/* cl_pickle_load_opts flags */
#define CL_PK_OPAQUE 1 /* unknown globals become PK_OBJECT placeholders instead of errors */

/* PK_OBJECT: how it was made */
enum { PK_HOW_GLOBAL = 0, PK_HOW_REDUCE, PK_HOW_NEWOBJ, PK_HOW_NEWOBJ_EX };

typedef struct pk_value pk_value;
typedef struct {
    pk_value *storage;
    size_t offset;
    int ndim;
    size_t shape[CL_CKPT_MAX_DIMS], stride[CL_CKPT_MAX_DIMS];
    size_t numel;
} pk_tensor;

struct pk_value {
    pk_type type;
    int code;         /* GLOBAL: which allowlisted global */
    cl_dtype dtype;   /* STORAGE; GLOBAL storage classes and dtypes */
    long long i;      /* INT, BOOL */
    double f;         /* FLOAT */
    char *s;          /* STR, GLOBAL ("module.name"), STORAGE (key) */
    size_t slen;
    pk_value **items; /* TUPLE, LIST, DICT (2 per entry: key, value) */
    size_t n, cap;
    size_t numel;     /* STORAGE: elements declared */
    pk_tensor *t;     /* TENSOR */
    pk_value *args;   /* OBJECT: the arguments (a tuple), or NULL */
    pk_value *state;  /* OBJECT: the BUILD state, or NULL */
    pk_value *kwargs; /* OBJECT (NEWOBJ_EX): keyword arguments, or NULL */
    unsigned char how;       /* OBJECT: PK_HOW_* */
    unsigned char obj_items; /* OBJECT: 0 none, 1 list items, 2 dict pairs in items */
    unsigned char is_bytes;  /* STR: from a bytes opcode (rendered b'...') */
    unsigned char owns_s;    /* GLOBAL: s is malloc'ed (an opaque global) */
    size_t walk_mark; /* checkpoint.c: 1 + index of the entry that first listed it */
    pk_value *next_alloc;
};

typedef struct {
    pk_value *root;
    int protocol;
    pk_value *all;   /* every allocated value, for freeing */
    size_t n_values;
} pk_result;

/* Run the restricted unpickler over data[0..len). */
int cl_pickle_load(const unsigned char *data, size_t len, pk_result *out);
/* The same with flags: CL_PK_OPAQUE turns every global outside the allowlist
 * into a placeholder (PK_GLOBAL with owns_s, then PK_OBJECT when called,
 * instantiated or built). Nothing is imported or called in either mode. */
int cl_pickle_load_opts(const unsigned char *data, size_t len, int flags, pk_result *out);
/* A short Python-like rendering of v (at most n-1 bytes, "..." when cut):
 * 3, 'abc', [1, 2, 3], {'a': 1}, <argparse.Namespace>, tensor[2, 3]. */
void pk_render(const pk_value *v, char *buf, size_t n);
void cl_pickle_free(pk_result *r);
/* dict lookup by string key (last match wins); NULL if absent. */
const pk_value *pk_dict_get(const pk_value *d, const char *key);

/* ---- safetensors ---- */

typedef struct {
    char *name;
    cl_dtype dtype;
    int ndim;
    size_t shape[CL_CKPT_MAX_DIMS];
    size_t numel;
    size_t begin, end; /* byte offsets into data */
} cl_st_tensor;

typedef struct {
    const unsigned char *data; /* the data buffer (after the header) */
    size_t data_len;
    cl_st_tensor *tensors;
    size_t n;
} cl_st_file;

int cl_st_parse(const unsigned char *file, size_t len, cl_st_file *out);
void cl_st_free(cl_st_file *st);

#endif

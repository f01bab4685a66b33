/* Checkpoints: open a torch.save zip or a safetensors file, list its tensors
 * with state-dict keys and roles, convert tensors to float32, recognise the
 * (the lecture / nanoGPT layouts are recognised in model/import.c).
 */
#include "corpuslens/ckpt/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/base/error.h"

#define NAME_MAX_LEN 512
#define WALK_MAX_DEPTH 32

struct cl_ckpt {
    cl_ckpt_format fmt;
    const unsigned char *data;
    size_t len;
    void *map; /* mmap'ed file (NULL for open_mem) */
    size_t map_len;
    char label[256];
    char prefix[128];
    int protocol;
    cl_zip zip;
    pk_result pk;
    cl_st_file st;
    cl_ckpt_tensor *t;
    size_t n, cap;
    cl_ckpt_tensor **by_key; /* tensors with a key, sorted by key */
    size_t n_keys;
    size_t *alias; /* alias[i]: first tensor with the same data as tensor i */
    size_t walk_budget;
    int opaque;    /* opened with _any: unknown globals are placeholders */
    cl_ckpt_entry *e;
    size_t n_e, cap_e, n_objects;
};

/* ---- tensor list ---- */

static cl_ckpt_tensor *add_tensor(cl_ckpt *ck, const char *name) {
    if (ck->n == ck->cap) {
        size_t nc = ck->cap ? 2 * ck->cap : 64;
        cl_ckpt_tensor *t = realloc(ck->t, nc * sizeof *t);
        if (!t) {
            cl_error("%s: out of memory listing tensors", ck->label);
            return NULL;
        }
        ck->t = t;
        ck->cap = nc;
    }
    cl_ckpt_tensor *t = &ck->t[ck->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        cl_error("%s: out of memory", ck->label);
        return NULL;
    }
    ck->n++;
    return t;
}

static cl_ckpt_entry *add_entry(cl_ckpt *ck, const char *path, cl_ckpt_entry_kind kind,
                                const char *type, const char *text, int depth) {
    if (ck->n_e == ck->cap_e) {
        size_t nc = ck->cap_e ? 2 * ck->cap_e : 64;
        cl_ckpt_entry *e = realloc(ck->e, nc * sizeof *e);
        if (!e) {
            cl_error("%s: out of memory listing entries", ck->label);
            return NULL;
        }
        ck->e = e;
        ck->cap_e = nc;
    }
    cl_ckpt_entry *e = &ck->e[ck->n_e];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    e->type = strdup(type);
    e->text = strdup(text ? text : "");
    if (!e->path || !e->type || !e->text) {
        free((char *)e->path);
        free((char *)e->type);
        free((char *)e->text);
        cl_error("%s: out of memory", ck->label);
        return NULL;
    }
    e->kind = kind;
    e->depth = depth;
    ck->n_e++;
    return e;
}

static const char *type_name(const pk_value *v) {
    switch (v->type) {
    case PK_NONE: return "None";
    case PK_BOOL: return "bool";
    case PK_INT: return "int";
    case PK_FLOAT: return "float";
    case PK_STR: return v->is_bytes ? "bytes" : "str";
    case PK_GLOBAL: return "global";
    case PK_TUPLE: return "tuple";
    case PK_LIST: return "list";
    case PK_SET: return "set";
    case PK_DICT: return "dict";
    case PK_OBJECT: return v->s;
    case PK_TENSOR: return "tensor";
    default: return "?";
    }
}

static int is_plain(const pk_value *v) {
    return v->type == PK_NONE || v->type == PK_BOOL || v->type == PK_INT ||
           v->type == PK_FLOAT || v->type == PK_STR || v->type == PK_GLOBAL ||
           v->type == PK_STORAGE;
}

/* A list/tuple/set of plain values, a dict of many plain values, or an empty
 * container: one VALUE entry. */
static int summarised(const pk_value *v) {
    if (v->type == PK_DICT) {
        if (v->n == 0) return 1;
        if (v->n / 2 <= 256) return 0;
        for (size_t i = 0; i < v->n; i++)
            if (!is_plain(v->items[i])) return 0;
        return 1;
    }
    for (size_t i = 0; i < v->n; i++)
        if (!is_plain(v->items[i])) return 0;
    return 1;
}

static int walk(cl_ckpt *ck, const pk_value *v, char *name, size_t nlen, int depth);

/* Walk `child` under name + "." + comp. */
static int walk_child(cl_ckpt *ck, const pk_value *child, const char *comp, char *name,
                      size_t nlen, int depth) {
    size_t cl = strlen(comp);
    if (nlen + 1 + cl + 1 > NAME_MAX_LEN)
        return cl_error("%s: data.pkl: tensor name longer than %d bytes under '%s'", ck->label,
                        NAME_MAX_LEN, name);
    size_t at = nlen;
    if (nlen) name[at++] = '.';
    memcpy(name + at, comp, cl + 1);
    int rc = walk(ck, child, name, at + cl, depth + 1);
    name[nlen] = '\0';
    return rc;
}

/* The items of a dict (pairs) or of a sequence, each under its key or index. */
static int walk_items(cl_ckpt *ck, pk_value *const *items, size_t n, int pairs, char *name,
                      size_t nlen, int depth) {
    size_t count = pairs ? n / 2 : n;
    for (size_t i = 0; i < count; i++) {
        const pk_value *child = pairs ? items[2 * i + 1] : items[i];
        /* the strict reader lists tensors only, as it always did */
        if (!ck->opaque && child->type != PK_TENSOR && child->type != PK_DICT &&
            child->type != PK_LIST && child->type != PK_TUPLE)
            continue;
        char part[96];
        const char *comp = part;
        if (pairs) {
            const pk_value *k = items[2 * i];
            if (k->type == PK_STR) comp = k->s;
            else if (k->type == PK_INT || k->type == PK_BOOL) snprintf(part, sizeof part, "%lld", k->i);
            else if (!ck->opaque) continue; /* keys of other types cannot name a tensor */
            else pk_render(k, part, sizeof part);
        } else {
            snprintf(part, sizeof part, "%zu", i);
        }
        if (walk_child(ck, child, comp, name, nlen, depth)) return -1;
    }
    return 0;
}

/* Flatten the pickled object into dotted names: tensors (always), and with
 * `opaque` every other value as an entry. */
static int walk(cl_ckpt *ck, const pk_value *v, char *name, size_t nlen, int depth) {
    if (ck->walk_budget-- == 0)
        return cl_error("%s: data.pkl: object graph too large or too shared", ck->label);
    if (depth > WALK_MAX_DEPTH)
        return cl_error("%s: data.pkl: objects nested deeper than %d at '%s'", ck->label,
                        WALK_MAX_DEPTH, name);
    if (v->type == PK_TENSOR) {
        const pk_tensor *pt = v->t;
        const pk_value *st = pt->storage;
        cl_ckpt_tensor *t = add_tensor(ck, nlen ? name : "(root)");
        if (!t) return -1;
        t->dtype = st->dtype;
        t->ndim = pt->ndim;
        memcpy(t->shape, pt->shape, sizeof t->shape);
        memcpy(t->stride, pt->stride, sizeof t->stride);
        t->numel = pt->numel;
        t->offset = pt->offset;
        t->storage_numel = st->numel;
        /* storage bytes: entry <prefix>/data/<key> */
        char ename[256];
        snprintf(ename, sizeof ename, "%s/data/%s", ck->prefix, st->s);
        long e = cl_zip_find(&ck->zip, ename);
        if (e < 0)
            return cl_error("%s: tensor '%s': storage entry '%s' is missing from the archive",
                            ck->label, t->name, ename);
        const unsigned char *p;
        size_t n;
        if (cl_zip_entry_data(&ck->zip, (size_t)e, 0, &p, &n))
            return cl_error_prefix("%s: tensor '%s': ", ck->label, t->name);
        size_t es = cl_dtype_size(st->dtype);
        if (st->numel > n / es)
            return cl_error("%s: tensor '%s': storage '%s' declares %zu %s elements (%s%zu bytes) "
                            "but the entry holds %zu bytes",
                            ck->label, t->name, ename, st->numel, cl_dtype_name(st->dtype),
                            st->numel > ((size_t)-1) / es ? ">" : "",
                            st->numel > ((size_t)-1) / es ? (size_t)-1 : st->numel * es, n);
        t->storage = p;
        t->storage_id = (size_t)e;
        t->storage_key = ck->zip.entries[e].name + strlen(ck->prefix) + 1;
        cl_ckpt_entry *en = add_entry(ck, nlen ? name : "(root)", CL_ENTRY_TENSOR,
                                      cl_dtype_name(st->dtype), "", depth);
        if (!en) return -1;
        en->tensor = ck->n - 1;
        return 0;
    }
    int container = v->type == PK_DICT || v->type == PK_LIST || v->type == PK_TUPLE ||
                    v->type == PK_SET;
    if (!ck->opaque) {
        if (!container || v->type == PK_SET) return 0;
        return walk_items(ck, v->items, v->n, v->type == PK_DICT, name, nlen, depth);
    }
    char text[161];
    if (is_plain(v)) {
        pk_render(v, text, sizeof text);
        return add_entry(ck, name, CL_ENTRY_VALUE, type_name(v), text, depth) ? 0 : -1;
    }
    pk_value *mv = (pk_value *)v; /* the walk marks what it has listed */
    if (mv->walk_mark) {
        const cl_ckpt_entry *first = &ck->e[mv->walk_mark - 1];
        return add_entry(ck, name, CL_ENTRY_REF, first->type, first->path, depth) ? 0 : -1;
    }
    if (container) {
        if (summarised(v)) {
            pk_render(v, text, sizeof text);
            if (!add_entry(ck, name, CL_ENTRY_VALUE, type_name(v), text, depth)) return -1;
            mv->walk_mark = ck->n_e;
            return 0;
        }
        snprintf(text, sizeof text, "%s[%zu]", type_name(v), v->type == PK_DICT ? v->n / 2 : v->n);
        if (!add_entry(ck, name, CL_ENTRY_CONTAINER, type_name(v), text, depth)) return -1;
        mv->walk_mark = ck->n_e;
        return walk_items(ck, v->items, v->n, v->type == PK_DICT, name, nlen, depth);
    }
    if (v->type != PK_OBJECT) return 0;
    pk_render(v, text, sizeof text);
    if (!add_entry(ck, name, CL_ENTRY_OBJECT, v->s, text, depth)) return -1;
    mv->walk_mark = ck->n_e;
    ck->n_objects++;
    /* arguments that are more than plain values; the state (an instance's
     * __dict__: its keys become path components); added items */
    if (v->args && !summarised(v->args) && walk_child(ck, v->args, "__args__", name, nlen, depth))
        return -1;
    if (v->kwargs && walk_child(ck, v->kwargs, "__kwargs__", name, nlen, depth)) return -1;
    const pk_value *st = v->state;
    if (st && st->type == PK_DICT && !st->walk_mark) {
        ((pk_value *)st)->walk_mark = mv->walk_mark;
        if (walk_items(ck, st->items, st->n, 1, name, nlen, depth)) return -1;
    } else if (st && st->type != PK_NONE) {
        if (walk_child(ck, st, "__state__", name, nlen, depth)) return -1;
    }
    if (v->obj_items && walk_items(ck, v->items, v->n, v->obj_items == 2, name, nlen, depth))
        return -1;
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmp_data(const void *a, const void *b);

/* alias[i] = the first tensor (in file order) whose data equals tensor i's. */
static int find_aliases(cl_ckpt *ck) {
    ck->alias = cl_trymalloc(ck->n ? ck->n : 1, sizeof *ck->alias, "tensor aliases");
    cl_ckpt_tensor **p = cl_trymalloc(ck->n ? ck->n : 1, sizeof *p, "tensor order");
    if (!ck->alias || !p) {
        free(p);
        return -1;
    }
    for (size_t i = 0; i < ck->n; i++) p[i] = &ck->t[i];
    qsort(p, ck->n, sizeof *p, cmp_data); /* ties broken by position: see cmp_data */
    size_t first = 0;
    for (size_t i = 0; i < ck->n; i++) {
        if (i == 0 || !cl_ckpt_same_data(p[i - 1], p[i])) first = (size_t)(p[i] - ck->t);
        ck->alias[p[i] - ck->t] = first;
    }
    free(p);
    return 0;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp((*(cl_ckpt_tensor *const *)a)->key, (*(cl_ckpt_tensor *const *)b)->key);
}

/* Keys (state-dict names), roles and the lookup index. `sd_prefix` is the
 * dotted path of the state dict inside the pickled object ("" = the root). */
static int index_keys(cl_ckpt *ck, const char *sd_prefix) {
    size_t pl = strlen(sd_prefix);
    ck->by_key = cl_trymalloc(ck->n ? ck->n : 1, sizeof *ck->by_key, "tensor index");
    if (!ck->by_key) return -1;
    for (size_t i = 0; i < ck->n; i++) {
        cl_ckpt_tensor *t = &ck->t[i];
        t->role = CL_ROLE_OTHER;
        t->key = NULL;
        if (strncmp(t->name, sd_prefix, pl)) continue;
        const char *k = t->name + pl;
        for (;;) {
            if (!strncmp(k, "_orig_mod.", 10)) k += 10;
            else if (!strncmp(k, "module.", 7)) k += 7;
            else break;
        }
        t->key = k;
        t->role = CL_ROLE_PARAM;
        /* buffers: lecture causal masks, nanoGPT's (torch < 2) attention mask */
        if (ends_with(k, ".tril") || ends_with(k, ".attn.masked_bias") ||
            (ends_with(k, ".attn.bias") && t->ndim == 4))
            t->role = CL_ROLE_BUFFER;
        ck->by_key[ck->n_keys++] = t;
    }
    if (find_aliases(ck)) return -1;
    qsort(ck->by_key, ck->n_keys, sizeof *ck->by_key, cmp_key);
    for (size_t i = 1; i < ck->n_keys; i++)
        if (!strcmp(ck->by_key[i - 1]->key, ck->by_key[i]->key))
            return cl_error("%s: two tensors are named '%s' (after removing wrappers: '%s' and '%s')",
                            ck->label, ck->by_key[i]->key, ck->by_key[i - 1]->name,
                            ck->by_key[i]->name);
    return 0;
}

/* ---- opening ---- */

static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                             0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static int open_torch(cl_ckpt *ck) {
    ck->fmt = CL_CKPT_TORCH;
    if (cl_zip_open(&ck->zip, ck->data, ck->len)) return cl_error_prefix("%s: ", ck->label);
    const char *first = ck->zip.entries[0].name;
    const char *slash = strchr(first, '/');
    if (!slash || slash == first || (size_t)(slash - first) >= sizeof ck->prefix)
        return cl_error("%s: zip entry '%s' has no top-level folder: not a torch.save archive",
                        ck->label, first);
    memcpy(ck->prefix, first, (size_t)(slash - first));
    ck->prefix[slash - first] = '\0';
    size_t pl = strlen(ck->prefix);
    for (size_t i = 0; i < ck->zip.n_entries; i++) {
        const char *nm = ck->zip.entries[i].name;
        if (strncmp(nm, ck->prefix, pl) || nm[pl] != '/') continue;
        if (!strcmp(nm + pl + 1, "constants.pkl") || !strncmp(nm + pl + 1, "code/", 5))
            return cl_error("%s: this is a TorchScript archive (torch.jit.save), not a state dict: "
                            "save model.state_dict() with torch.save instead",
                            ck->label);
    }
    char name[256];
    snprintf(name, sizeof name, "%s/byteorder", ck->prefix);
    long e = cl_zip_find(&ck->zip, name);
    const unsigned char *p;
    size_t n;
    if (e >= 0) {
        if (cl_zip_entry_data(&ck->zip, (size_t)e, 1, &p, &n)) return cl_error_prefix("%s: ", ck->label);
        if (!(n == 6 && !memcmp(p, "little", 6)))
            return cl_error("%s: storages are not little-endian (entry %s): unsupported", ck->label, name);
    }
    snprintf(name, sizeof name, "%s/data.pkl", ck->prefix);
    e = cl_zip_find(&ck->zip, name);
    if (e < 0) return cl_error("%s: no entry '%s': not a torch.save archive", ck->label, name);
    if (cl_zip_entry_data(&ck->zip, (size_t)e, 1, &p, &n)) return cl_error_prefix("%s: ", ck->label);
    if (cl_pickle_load_opts(p, n, ck->opaque ? CL_PK_OPAQUE : 0, &ck->pk))
        return cl_error_prefix("%s: data.pkl: ", ck->label);
    ck->protocol = ck->pk.protocol;
    char *nbuf = malloc(NAME_MAX_LEN);
    if (!nbuf) return cl_error("%s: out of memory", ck->label);
    nbuf[0] = '\0';
    ck->walk_budget = 4 * ck->pk.n_values + 64;
    int rc = walk(ck, ck->pk.root, nbuf, 0, 0);
    free(nbuf);
    if (rc) return -1;
    /* the state dict: nanoGPT's {'model': ...}, a {'state_dict': ...} wrapper, or the root */
    const char *sd = "";
    const pk_value *r = ck->pk.root;
    const pk_value *w;
    if ((w = pk_dict_get(r, "model")) && w->type == PK_DICT) sd = "model.";
    else if ((w = pk_dict_get(r, "state_dict")) && w->type == PK_DICT) sd = "state_dict.";
    return index_keys(ck, sd);
}

static int open_safetensors(cl_ckpt *ck) {
    ck->fmt = CL_CKPT_SAFETENSORS;
    if (cl_st_parse(ck->data, ck->len, &ck->st)) return cl_error_prefix("%s: ", ck->label);
    for (size_t i = 0; i < ck->st.n; i++) {
        const cl_st_tensor *s = &ck->st.tensors[i];
        cl_ckpt_tensor *t = add_tensor(ck, s->name);
        if (!t) return -1;
        t->dtype = s->dtype;
        t->ndim = s->ndim;
        memcpy(t->shape, s->shape, sizeof t->shape);
        size_t st = 1;
        for (int d = s->ndim; d-- > 0;) {
            t->stride[d] = st;
            st *= s->shape[d] ? s->shape[d] : 1;
        }
        t->numel = s->numel;
        t->storage = ck->st.data + s->begin;
        t->storage_numel = s->numel;
        t->storage_id = i;
        t->storage_key = s->name;
        cl_ckpt_entry *e = add_entry(ck, s->name, CL_ENTRY_TENSOR, cl_dtype_name(s->dtype), "", 1);
        if (!e) return -1;
        e->tensor = i;
    }
    return index_keys(ck, "");
}

static cl_ckpt *open_common(cl_ckpt *ck) {
    const unsigned char *d = ck->data;
    int rc;
    if (ck->len >= sizeof legacy_magic && !memcmp(d, legacy_magic, sizeof legacy_magic)) {
        rc = cl_error("%s: legacy (pre-1.6, non-zip) torch.save file: re-save it with torch >= 1.6 "
                      "(torch.save(torch.load(f), g)) and import that",
                      ck->label);
    } else if (ck->len >= 4 && !memcmp(d, "PK\x03\x04", 4)) {
        rc = open_torch(ck);
    } else if (ck->len >= 9 && d[8] == '{') {
        rc = open_safetensors(ck);
    } else if (ck->len >= 4 && !memcmp(d, "PK", 2)) {
        rc = open_torch(ck); /* an empty or odd zip: let the zip reader explain */
    } else {
        rc = cl_error("%s: not a PyTorch checkpoint (zip) or a safetensors file", ck->label);
    }
    if (rc) {
        cl_ckpt_close(ck);
        return NULL;
    }
    return ck;
}

static cl_ckpt *open_mem(const void *data, size_t len, const char *label, int opaque) {
    cl_ckpt *ck = cl_trycalloc(1, sizeof *ck, "checkpoint");
    if (!ck) return NULL;
    ck->data = data;
    ck->len = len;
    ck->opaque = opaque;
    snprintf(ck->label, sizeof ck->label, "%s", label ? label : "checkpoint");
    return open_common(ck);
}

cl_ckpt *cl_ckpt_open_mem(const void *data, size_t len, const char *label) {
    return open_mem(data, len, label, 0);
}

cl_ckpt *cl_ckpt_open_mem_any(const void *data, size_t len, const char *label) {
    return open_mem(data, len, label, 1);
}

static cl_ckpt *open_file(const char *path, int opaque);

cl_ckpt *cl_ckpt_open(const char *path) { return open_file(path, 0); }
cl_ckpt *cl_ckpt_open_any(const char *path) { return open_file(path, 1); }

static cl_ckpt *open_file(const char *path, int opaque) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cl_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        cl_error("cannot read %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    cl_ckpt *ck = cl_trycalloc(1, sizeof *ck, "checkpoint");
    if (!ck) {
        close(fd);
        return NULL;
    }
    snprintf(ck->label, sizeof ck->label, "%s", path);
    ck->opaque = opaque;
    ck->len = (size_t)sb.st_size;
    if (ck->len == 0) {
        close(fd);
        cl_error("%s: empty file", path);
        free(ck);
        return NULL;
    }
    void *m = mmap(NULL, ck->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        cl_error("cannot map %s: %s", path, strerror(errno));
        free(ck);
        return NULL;
    }
    ck->map = m;
    ck->map_len = ck->len;
    ck->data = m;
    return open_common(ck);
}

void cl_ckpt_close(cl_ckpt *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n; i++) free((char *)ck->t[i].name);
    free(ck->t);
    for (size_t i = 0; i < ck->n_e; i++) {
        free((char *)ck->e[i].path);
        free((char *)ck->e[i].type);
        free((char *)ck->e[i].text);
    }
    free(ck->e);
    free(ck->by_key);
    free(ck->alias);
    cl_pickle_free(&ck->pk);
    cl_zip_close(&ck->zip);
    cl_st_free(&ck->st);
    if (ck->map) munmap(ck->map, ck->map_len);
    free(ck);
}

cl_ckpt_format cl_ckpt_get_format(const cl_ckpt *ck) { return ck->fmt; }
const char *cl_ckpt_prefix(const cl_ckpt *ck) { return ck->prefix; }
int cl_ckpt_pickle_protocol(const cl_ckpt *ck) { return ck->protocol; }
size_t cl_ckpt_num_tensors(const cl_ckpt *ck) { return ck->n; }
const cl_ckpt_tensor *cl_ckpt_tensor_at(const cl_ckpt *ck, size_t i) { return i < ck->n ? &ck->t[i] : NULL; }

const cl_ckpt_tensor *cl_ckpt_find(const cl_ckpt *ck, const char *key) {
    size_t lo = 0, hi = ck->n_keys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->by_key[mid]->key, key);
        if (!c) return ck->by_key[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int cl_ckpt_get_int(const cl_ckpt *ck, const char *path, long long *v) {
    if (ck->fmt != CL_CKPT_TORCH || !ck->pk.root) return 0;
    const pk_value *cur = ck->pk.root;
    char part[128];
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return 0;
        memcpy(part, p, n);
        part[n] = '\0';
        cur = pk_dict_get(cur, part);
        if (!cur) return 0;
        p += n + (dot ? 1 : 0);
    }
    if (cur->type != PK_INT && cur->type != PK_BOOL) return 0;
    *v = cur->i;
    return 1;
}

int cl_ckpt_same_data(const cl_ckpt_tensor *a, const cl_ckpt_tensor *b) {
    if (a->storage_id != b->storage_id || a->storage != b->storage || a->offset != b->offset ||
        a->dtype != b->dtype || a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || (a->shape[i] > 1 && a->stride[i] != b->stride[i])) return 0;
    return 1;
}

/* ---- conversion ---- */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7F800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Convert n elements starting at byte p, `step` elements apart. */
static void convert_run(cl_dtype dt, const unsigned char *p, size_t n, size_t step, float *out) {
    switch (dt) {
    case CL_DT_F32:
        if (step == 1) {
            memcpy(out, p, n * 4);
        } else {
            for (size_t i = 0; i < n; i++) memcpy(&out[i], p + i * step * 4, 4);
        }
        break;
    case CL_DT_F16:
        for (size_t i = 0; i < n; i++) {
            const unsigned char *q = p + i * step * 2;
            out[i] = half_to_float((uint16_t)(q[0] | (q[1] << 8)));
        }
        break;
    case CL_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            const unsigned char *q = p + i * step * 2;
            uint32_t u = ((uint32_t)q[0] << 16) | ((uint32_t)q[1] << 24);
            memcpy(&out[i], &u, 4);
        }
        break;
    case CL_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + i * step * 8, 8);
            out[i] = (float)d;
        }
        break;
    default:
        break;
    }
}

int cl_ckpt_tensor_to_f32(const cl_ckpt_tensor *t, float *out) {
    if (!cl_dtype_is_float(t->dtype))
        return cl_error("tensor '%s' has dtype %s; a model tensor must be a float type", t->name,
                        cl_dtype_name(t->dtype));
    if (t->numel == 0) return 0;
    size_t es = cl_dtype_size(t->dtype);
    const unsigned char *base = t->storage + t->offset * es;
    int nd = t->ndim;
    /* contiguous row-major? */
    int contiguous = 1;
    size_t expect = 1;
    for (int d = nd; d-- > 0;) {
        if (t->shape[d] != 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->shape[d];
    }
    if (nd == 0 || contiguous) {
        convert_run(t->dtype, base, t->numel, 1, out);
        return 0;
    }
    /* general strides: odometer over all dimensions but the last */
    size_t idx[CL_CKPT_MAX_DIMS] = {0};
    size_t inner = t->shape[nd - 1], istep = t->stride[nd - 1];
    size_t rows = t->numel / inner;
    for (size_t r = 0; r < rows; r++) {
        size_t off = 0;
        for (int d = 0; d < nd - 1; d++) off += idx[d] * t->stride[d];
        convert_run(t->dtype, base + off * es, inner, istep, out + r * inner);
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}

static double elem_f64(cl_dtype dt, const unsigned char *q) {
    switch (dt) {
    case CL_DT_F32: { float f; memcpy(&f, q, 4); return f; }
    case CL_DT_F16: return half_to_float((uint16_t)(q[0] | (q[1] << 8)));
    case CL_DT_BF16: {
        uint32_t u = ((uint32_t)q[0] << 16) | ((uint32_t)q[1] << 24);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case CL_DT_F64: { double d; memcpy(&d, q, 8); return d; }
    case CL_DT_I64: { int64_t v; memcpy(&v, q, 8); return (double)v; }
    case CL_DT_I32: { int32_t v; memcpy(&v, q, 4); return v; }
    case CL_DT_I16: { int16_t v; memcpy(&v, q, 2); return v; }
    case CL_DT_I8: return (int8_t)q[0];
    case CL_DT_U8: return q[0];
    case CL_DT_BOOL: return q[0] != 0;
    default: return 0;
    }
}

int cl_ckpt_tensor_to_f64(const cl_ckpt_tensor *t, double *out) {
    if ((unsigned)t->dtype >= CL_DT_COUNT) return cl_error("tensor '%s': unknown dtype", t->name);
    size_t es = cl_dtype_size(t->dtype);
    const unsigned char *base = t->storage + t->offset * es;
    size_t idx[CL_CKPT_MAX_DIMS] = {0};
    for (size_t i = 0; i < t->numel; i++) {
        size_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        out[i] = elem_f64(t->dtype, base + off * es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}

/* Drop the mapped pages of a converted tensor's storage from memory (they are
 * clean, file-backed pages: a later access reads them again), so that peak
 * memory is the model plus one tensor rather than the model plus the file. */
void cl_ckpt_release(const cl_ckpt *ck, const cl_ckpt_tensor *t) {
    if (!ck->map) return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)t->storage, hi = lo + t->storage_numel * cl_dtype_size(t->dtype);
    lo = (lo + page - 1) / page * page;
    hi = hi / page * page;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ---- parameter count ---- */

static int cmp_data(const void *a, const void *b) {
    const cl_ckpt_tensor *x = *(cl_ckpt_tensor *const *)a, *y = *(cl_ckpt_tensor *const *)b;
#define CMP(f) if (x->f != y->f) return x->f < y->f ? -1 : 1
    CMP(storage_id);
    CMP(offset);
    CMP(dtype);
    CMP(ndim);
    for (int i = 0; i < x->ndim; i++) {
        CMP(shape[i]);
        if (x->shape[i] > 1) CMP(stride[i]);
    }
#undef CMP
    return x < y ? -1 : x > y; /* same data: file order */
}

size_t cl_ckpt_first_alias(const cl_ckpt *ck, size_t i) {
    return i < ck->n && ck->alias ? ck->alias[i] : i;
}

size_t cl_ckpt_num_params(const cl_ckpt *ck) {
    /* one count per group of parameters sharing their data */
    unsigned char *seen = calloc(ck->n ? ck->n : 1, 1);
    if (!seen) return 0;
    size_t total = 0;
    for (size_t i = 0; i < ck->n; i++) {
        if (ck->t[i].role != CL_ROLE_PARAM) continue;
        size_t a = cl_ckpt_first_alias(ck, i);
        if (seen[a]) continue;
        seen[a] = 1;
        total += ck->t[i].numel;
    }
    free(seen);
    return total;
}

const char *cl_ckpt_label(const cl_ckpt *ck) { return ck->label; }
size_t cl_ckpt_num_entries(const cl_ckpt *ck) { return ck->n_e; }
const cl_ckpt_entry *cl_ckpt_entry_at(const cl_ckpt *ck, size_t i) { return i < ck->n_e ? &ck->e[i] : NULL; }
size_t cl_ckpt_num_objects(const cl_ckpt *ck) { return ck->n_objects; }
size_t cl_ckpt_file_size(const cl_ckpt *ck) { return ck->len; }

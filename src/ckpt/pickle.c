/* A restricted unpickler for torch.save's data.pkl, in the spirit of
 * torch.load(weights_only=True): protocols 2-5, plain containers and scalars,
 * and an allowlist of globals (OrderedDict, the tensor rebuild functions,
 * storage classes, dtypes). Any other global is refused by name; nothing is
 * ever "called" except the few rebuild functions implemented here.
 *
 * In opaque mode (CL_PK_OPAQUE, for inspecting any checkpoint) a global
 * outside the allowlist is not refused but kept as its name; calling it
 * (REDUCE), instantiating it (NEWOBJ, NEWOBJ_EX) and setting its state (BUILD)
 * or items (APPEND(S), SETITEM(S)) make a PK_OBJECT placeholder that records
 * the name, the arguments and the state, the way pickletools shows them.
 * Still nothing is imported or called.
 *
 * The machine is iterative (no recursion) and every read is bounds-checked.
 * Memory is linear in the pickle's length: each opcode creates at most one
 * value, memo indices are bounded by the length, and nothing is sized by a
 * number read from the input without checking it first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"
#include "corpuslens/base/error.h"

enum {
    G_ORDERED_DICT = 1,
    G_REBUILD_V2,
    G_REBUILD_V3,
    G_REBUILD_PARAM,
    G_REBUILD_PARAM_STATE,
    G_REBUILD_FROM_TYPE_V2,
    G_TENSOR_TYPE,
    G_STORAGE,
    G_DTYPE,
    G_OPAQUE /* opaque mode: a global outside the allowlist, kept by name */
};

static const struct {
    const char *name;
    int code;
    cl_dtype dtype;
} allowed[] = {
    {"collections.OrderedDict", G_ORDERED_DICT, CL_DT_F32},
    {"torch._utils._rebuild_tensor_v2", G_REBUILD_V2, CL_DT_F32},
    {"torch._utils._rebuild_tensor_v3", G_REBUILD_V3, CL_DT_F32},
    {"torch._utils._rebuild_parameter", G_REBUILD_PARAM, CL_DT_F32},
    {"torch._utils._rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, CL_DT_F32},
    {"torch._tensor._rebuild_from_type_v2", G_REBUILD_FROM_TYPE_V2, CL_DT_F32},
    {"torch.Tensor", G_TENSOR_TYPE, CL_DT_F32},
    {"torch.nn.parameter.Parameter", G_TENSOR_TYPE, CL_DT_F32},
    {"torch.FloatStorage", G_STORAGE, CL_DT_F32},
    {"torch.HalfStorage", G_STORAGE, CL_DT_F16},
    {"torch.BFloat16Storage", G_STORAGE, CL_DT_BF16},
    {"torch.DoubleStorage", G_STORAGE, CL_DT_F64},
    {"torch.LongStorage", G_STORAGE, CL_DT_I64},
    {"torch.IntStorage", G_STORAGE, CL_DT_I32},
    {"torch.ShortStorage", G_STORAGE, CL_DT_I16},
    {"torch.CharStorage", G_STORAGE, CL_DT_I8},
    {"torch.ByteStorage", G_STORAGE, CL_DT_U8},
    {"torch.BoolStorage", G_STORAGE, CL_DT_BOOL},
    {"torch.UntypedStorage", G_STORAGE, CL_DT_U8},
    {"torch.float32", G_DTYPE, CL_DT_F32},
    {"torch.float16", G_DTYPE, CL_DT_F16},
    {"torch.bfloat16", G_DTYPE, CL_DT_BF16},
    {"torch.float64", G_DTYPE, CL_DT_F64},
    {"torch.int64", G_DTYPE, CL_DT_I64},
    {"torch.int32", G_DTYPE, CL_DT_I32},
    {"torch.int16", G_DTYPE, CL_DT_I16},
    {"torch.int8", G_DTYPE, CL_DT_I8},
    {"torch.uint8", G_DTYPE, CL_DT_U8},
    {"torch.bool", G_DTYPE, CL_DT_BOOL},
};

/* Immutable singletons (never freed, never modified). */
static pk_value v_none = {.type = PK_NONE};
static pk_value v_true = {.type = PK_BOOL, .i = 1};
static pk_value v_false = {.type = PK_BOOL, .i = 0};

typedef struct {
    const unsigned char *d;
    size_t len, pos, op_pos;
    pk_value **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pk_value **memo;
    size_t mcap_memo, memo_count;
    pk_result *res;
    int opaque; /* CL_PK_OPAQUE */
} vm;

static int fail(vm *m, const char *fmt, const char *arg) {
    char buf[512];
    snprintf(buf, sizeof buf, fmt, arg);
    return cl_error("pickle: %s (opcode at offset %zu)", buf, m->op_pos);
}

static pk_value *new_value(vm *m, pk_type t) {
    pk_value *v = cl_trycalloc(1, sizeof *v, "pickle value");
    if (!v) return NULL;
    v->type = t;
    v->next_alloc = m->res->all;
    m->res->all = v;
    m->res->n_values++;
    return v;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > ((size_t)-1) / 4 / elem) return cl_error("pickle: %s too large", what);
        nc *= 2;
    }
    void *q = realloc(*p, nc * elem);
    if (!q) return cl_error("pickle: out of memory growing %s", what);
    *p = q;
    *cap = nc;
    return 0;
}

static int push(vm *m, pk_value *v) {
    if (!v) return -1;
    if (grow((void **)&m->stack, &m->scap, m->sp + 1, sizeof *m->stack, "stack")) return -1;
    m->stack[m->sp++] = v;
    return 0;
}

static int pop(vm *m, pk_value **v) {
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->sp <= floor) return fail(m, "%sstack underflow", "");
    *v = m->stack[--m->sp];
    return 0;
}

static int top(vm *m, pk_value **v) {
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->sp <= floor) return fail(m, "%sstack underflow", "");
    *v = m->stack[m->sp - 1];
    return 0;
}

/* Pop everything above the last mark; *base receives the index of the first
 * popped item in m->stack (still readable until the next push). */
static int pop_mark(vm *m, size_t *base) {
    *base = 0;
    if (!m->nmarks) return fail(m, "%sno MARK on the stack", "");
    *base = m->marks[--m->nmarks];
    return 0;
}

/* The object just below the items of a popped mark (APPENDS, SETITEMS). */
static int below_mark(vm *m, size_t base, pk_value **v) {
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (base <= floor) return fail(m, "%sstack underflow", "");
    *v = m->stack[base - 1];
    return 0;
}

/* APPEND(S) / SETITEM(S) on a placeholder (a list or dict subclass): its
 * items are list items (kind 1) or key, value pairs (kind 2), not both. */
static int object_items(vm *m, pk_value *a, int kind) {
    if (a->type != PK_OBJECT) return 0;
    if (a->obj_items && a->obj_items != kind)
        return fail(m, "%sboth list items and dict items added to one object", "");
    a->obj_items = (unsigned char)kind;
    return 0;
}

static int need(vm *m, size_t n) {
    if (m->len - m->pos < n) return fail(m, "%struncated (argument runs past the end)", "");
    return 0;
}

static uint64_t rdle(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int append_items(vm *m, pk_value *c, pk_value **src, size_t n) {
    if (n == 0) return 0;
    if (grow((void **)&c->items, &c->cap, c->n + n, sizeof *c->items, "container")) return -1;
    memcpy(c->items + c->n, src, n * sizeof *src);
    c->n += n;
    return 0;
}

static pk_value *make_str(vm *m, const unsigned char *p, size_t n) {
    pk_value *v = new_value(m, PK_STR);
    if (!v) return NULL;
    v->s = cl_trymalloc(n + 1, 1, "pickle string");
    if (!v->s) return NULL;
    memcpy(v->s, p, n);
    v->s[n] = '\0';
    v->slen = n;
    return v;
}

static pk_value *make_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl) {
    char full[256];
    if (ml + nl + 2 > sizeof full) {
        fail(m, "%sglobal name too long", "");
        return NULL;
    }
    memcpy(full, mod, ml);
    full[ml] = '.';
    memcpy(full + ml + 1, name, nl);
    full[ml + 1 + nl] = '\0';
    if (memchr(full, '\0', ml + 1 + nl)) {
        fail(m, "%sNUL byte in global name", "");
        return NULL;
    }
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        if (strcmp(full, allowed[i].name)) continue;
        pk_value *v = new_value(m, PK_GLOBAL);
        if (!v) return NULL;
        v->code = allowed[i].code;
        v->dtype = allowed[i].dtype;
        v->s = (char *)allowed[i].name; /* static; not freed */
        return v;
    }
    /* printable rendering of a hostile name */
    for (size_t i = 0; full[i]; i++)
        if ((unsigned char)full[i] < 32 || (unsigned char)full[i] > 126) full[i] = '?';
    if (m->opaque) {
        pk_value *v = new_value(m, PK_GLOBAL);
        if (!v) return NULL;
        v->code = G_OPAQUE;
        v->s = strdup(full);
        if (!v->s) {
            cl_error("pickle: out of memory");
            return NULL;
        }
        v->slen = strlen(full);
        v->owns_s = 1;
        return v;
    }
    cl_error("refusing pickle global %s (not a tensor, storage or container type: only "
             "weights are loaded, as torch.load(weights_only=True) does)",
             full);
    return NULL;
}

static int is_int(const pk_value *v) { return v->type == PK_INT || v->type == PK_BOOL; }

static int int_tuple(vm *m, const pk_value *t, size_t *out, int *n, const char *what) {
    if (t->type != PK_TUPLE && t->type != PK_LIST) return fail(m, "tensor %s is not a tuple", what);
    if (t->n > CL_CKPT_MAX_DIMS) return fail(m, "tensor %s has more than 8 dimensions", what);
    for (size_t i = 0; i < t->n; i++) {
        if (!is_int(t->items[i]) || t->items[i]->i < 0)
            return fail(m, "tensor %s holds a negative or non-integer value", what);
        out[i] = (size_t)t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

/* _rebuild_tensor_v2/v3(storage, offset, size, stride, requires_grad, hooks, ...) */
static pk_value *rebuild_tensor(vm *m, const pk_value *args, const pk_value *dtype) {
    if (args->n < 4 || args->items[0]->type != PK_STORAGE || !is_int(args->items[1]) ||
        args->items[1]->i < 0) {
        fail(m, "%s_rebuild_tensor: bad arguments (want storage, offset, size, stride)", "");
        return NULL;
    }
    pk_value *st = args->items[0];
    if (dtype && dtype->dtype != st->dtype) {
        /* v3 over an untyped (byte) storage: reinterpret */
        if (st->dtype != CL_DT_U8) {
            fail(m, "%s_rebuild_tensor_v3: dtype disagrees with the typed storage", "");
            return NULL;
        }
        pk_value *s2 = new_value(m, PK_STORAGE);
        if (!s2) return NULL;
        s2->s = cl_trymalloc(st->slen + 1, 1, "storage key");
        if (!s2->s) return NULL;
        memcpy(s2->s, st->s, st->slen + 1);
        s2->slen = st->slen;
        s2->dtype = dtype->dtype;
        s2->numel = st->numel / cl_dtype_size(dtype->dtype);
        st = s2;
    }
    pk_tensor *t = cl_trycalloc(1, sizeof *t, "tensor");
    if (!t) return NULL;
    pk_value *v = new_value(m, PK_TENSOR);
    if (!v) {
        free(t);
        return NULL;
    }
    v->t = t;
    t->storage = st;
    t->offset = (size_t)args->items[1]->i;
    int ns, nd;
    if (int_tuple(m, args->items[2], t->shape, &ns, "size") ||
        int_tuple(m, args->items[3], t->stride, &nd, "stride"))
        return NULL;
    if (ns != nd) {
        fail(m, "%stensor size and stride have different lengths", "");
        return NULL;
    }
    t->ndim = ns;
    /* numel and the furthest element, overflow-checked, within the storage */
    size_t numel = 1, extent = t->offset;
    for (int i = 0; i < ns; i++) {
        if (t->shape[i] && numel > ((size_t)-1) / t->shape[i]) {
            fail(m, "%stensor size overflows", "");
            return NULL;
        }
        numel *= t->shape[i];
    }
    if (numel) {
        for (int i = 0; i < ns; i++) {
            size_t d = t->shape[i] - 1;
            if (t->stride[i] && d > (((size_t)-1) - extent) / t->stride[i]) {
                fail(m, "%stensor stride overflows", "");
                return NULL;
            }
            extent += d * t->stride[i];
        }
        if (extent >= st->numel) {
            char b[160];
            snprintf(b, sizeof b, "tensor reaches element %zu of storage '%.40s' which has %zu",
                     extent, st->s, st->numel);
            fail(m, "%s", b);
            return NULL;
        }
    }
    t->numel = numel;
    return v;
}

/* Opaque mode: a placeholder for what calling / instantiating `cls` would make. */
static pk_value *make_object(vm *m, const pk_value *cls, pk_value *args, int how) {
    pk_value *v = new_value(m, PK_OBJECT);
    if (!v) return NULL;
    v->s = strdup(cls->s ? cls->s : "?");
    if (!v->s) {
        fail(m, "%sout of memory", "");
        return NULL;
    }
    v->slen = strlen(v->s);
    v->args = args;
    v->how = (unsigned char)how;
    return v;
}

static pk_value *call(vm *m, pk_value *fn, pk_value *args) {
    if (m->opaque && (fn->type == PK_OBJECT || (fn->type == PK_GLOBAL && fn->code == G_OPAQUE)))
        return make_object(m, fn, args, PK_HOW_REDUCE);
    if (fn->type != PK_GLOBAL) {
        fail(m, "%sREDUCE on something that is not a global", "");
        return NULL;
    }
    if (args->type != PK_TUPLE) {
        fail(m, "%sREDUCE arguments are not a tuple", "");
        return NULL;
    }
    switch (fn->code) {
    case G_ORDERED_DICT: {
        pk_value *d = new_value(m, PK_DICT);
        if (!d) return NULL;
        if (args->n == 0) return d;
        /* OrderedDict([(k, v), ...]) */
        const pk_value *l = args->items[0];
        if (args->n != 1 || (l->type != PK_LIST && l->type != PK_TUPLE)) {
            fail(m, "%sOrderedDict: unsupported arguments", "");
            return NULL;
        }
        for (size_t i = 0; i < l->n; i++) {
            const pk_value *kv = l->items[i];
            if (kv->type != PK_TUPLE || kv->n != 2) {
                fail(m, "%sOrderedDict: item is not a pair", "");
                return NULL;
            }
            if (append_items(m, d, kv->items, 2)) return NULL;
        }
        return d;
    }
    case G_REBUILD_V2:
        return rebuild_tensor(m, args, NULL);
    case G_REBUILD_V3:
        if (args->n < 7 || args->items[6]->type != PK_GLOBAL || args->items[6]->code != G_DTYPE) {
            fail(m, "%s_rebuild_tensor_v3: bad dtype argument", "");
            return NULL;
        }
        return rebuild_tensor(m, args, args->items[6]);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n < 1 || args->items[0]->type != PK_TENSOR) {
            fail(m, "%s_rebuild_parameter: first argument is not a tensor", "");
            return NULL;
        }
        return args->items[0];
    case G_REBUILD_FROM_TYPE_V2: {
        /* (func, type, args, state): func must itself be an allowed rebuild */
        if (args->n < 3 || args->items[1]->type != PK_GLOBAL ||
            args->items[1]->code != G_TENSOR_TYPE) {
            if (m->opaque) return make_object(m, fn, args, PK_HOW_REDUCE);
            fail(m, "%s_rebuild_from_type_v2: unsupported type", "");
            return NULL;
        }
        pk_value *f = args->items[0], *a = args->items[2];
        if (f->type != PK_GLOBAL || f == fn || f->code == G_REBUILD_FROM_TYPE_V2) {
            fail(m, "%s_rebuild_from_type_v2: unsupported function", "");
            return NULL;
        }
        return call(m, f, a);
    }
    default: {
        if (m->opaque) return make_object(m, fn, args, PK_HOW_REDUCE);
        char b[300];
        snprintf(b, sizeof b, "refusing to call pickle global %s", fn->s);
        fail(m, "%s", b);
        return NULL;
    }
    }
}

/* ('storage', <StorageClass>, key, location, numel) */
static pk_value *persistent_load(vm *m, pk_value *pid) {
    if (pid->type != PK_TUPLE || pid->n < 5 || pid->items[0]->type != PK_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->type != PK_GLOBAL ||
        pid->items[1]->code != G_STORAGE || pid->items[2]->type != PK_STR ||
        !is_int(pid->items[4]) || pid->items[4]->i < 0) {
        fail(m, "%sunsupported persistent id (want ('storage', type, key, location, numel))",
             "");
        return NULL;
    }
    const pk_value *key = pid->items[2];
    if (key->slen == 0 || key->slen > 64 || memchr(key->s, '/', key->slen) ||
        memchr(key->s, '\0', key->slen) || !strcmp(key->s, "..") || !strcmp(key->s, ".")) {
        fail(m, "%sbad storage key", "");
        return NULL;
    }
    pk_value *v = new_value(m, PK_STORAGE);
    if (!v) return NULL;
    v->s = cl_trymalloc(key->slen + 1, 1, "storage key");
    if (!v->s) return NULL;
    memcpy(v->s, key->s, key->slen + 1);
    v->slen = key->slen;
    v->dtype = pid->items[1]->dtype;
    v->numel = (size_t)pid->items[4]->i;
    return v;
}

static int memo_put(vm *m, uint64_t idx, pk_value *v) {
    if (idx >= m->len) return fail(m, "%smemo index out of range", "");
    size_t old = m->mcap_memo;
    if (grow((void **)&m->memo, &m->mcap_memo, (size_t)idx + 1, sizeof *m->memo, "memo"))
        return -1;
    if (m->mcap_memo > old) memset(m->memo + old, 0, (m->mcap_memo - old) * sizeof *m->memo);
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx) {
    if (idx >= m->mcap_memo || !m->memo[idx]) return fail(m, "%smemo key not found", "");
    return push(m, m->memo[idx]);
}

static int run(vm *m) {
    for (;;) {
        if (m->pos >= m->len) return fail(m, "%struncated (no STOP opcode)", "");
        m->op_pos = m->pos;
        unsigned char op = m->d[m->pos++];
        pk_value *a = NULL, *b = NULL, *c = NULL;
        size_t base;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(m, 1)) return -1;
            m->res->protocol = m->d[m->pos++];
            if (m->res->protocol < 2 || m->res->protocol > 5)
                return fail(m, "%sunsupported pickle protocol", "");
            break;
        case 0x95: /* FRAME: advisory length */
            if (need(m, 8)) return -1;
            if (rdle(m->d + m->pos, 8) > m->len - m->pos - 8)
                return fail(m, "%sframe runs past the end", "");
            m->pos += 8;
            break;
        case '.': /* STOP */
            if (pop(m, &a)) return -1;
            m->res->root = a;
            return 0;
        case '(': /* MARK */
            if (grow((void **)&m->marks, &m->mcap, m->nmarks + 1, sizeof *m->marks, "marks"))
                return -1;
            m->marks[m->nmarks++] = m->sp;
            break;
        case '0': /* POP */
            if (pop(m, &a)) return -1;
            break;
        case '1': /* POP_MARK */
            if (pop_mark(m, &base)) return -1;
            m->sp = base;
            break;
        case '2': /* DUP */
            if (top(m, &a) || push(m, a)) return -1;
            break;
        case 'N':
            if (push(m, &v_none)) return -1;
            break;
        case 0x88:
            if (push(m, &v_true)) return -1;
            break;
        case 0x89:
            if (push(m, &v_false)) return -1;
            break;
        case 'J': /* BININT */
        case 'K': /* BININT1 */
        case 'M': /* BININT2 */ {
            int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (need(m, n)) return -1;
            uint64_t u = rdle(m->d + m->pos, n);
            m->pos += n;
            a = new_value(m, PK_INT);
            if (!a) return -1;
            a->i = op == 'J' ? (long long)(int32_t)(uint32_t)u : (long long)u;
            if (push(m, a)) return -1;
            break;
        }
        case 0x8a:   /* LONG1 */
        case 0x8b: { /* LONG4 */
            int w = op == 0x8a ? 1 : 4;
            if (need(m, (size_t)w)) return -1;
            size_t n = (size_t)rdle(m->d + m->pos, w);
            m->pos += (size_t)w;
            if (need(m, n)) return -1;
            if (n > 8 && m->opaque) { /* shown as a placeholder, not converted */
                static const pk_value big = {.type = PK_GLOBAL, .s = (char *)"builtins.int"};
                m->pos += n;
                if (push(m, make_object(m, &big, NULL, PK_HOW_GLOBAL))) return -1;
                break;
            }
            if (n > 8) return fail(m, "%sinteger too large (LONG1 over 8 bytes)", "");
            uint64_t u = n ? rdle(m->d + m->pos, (int)n) : 0;
            if (n && n < 8 && (m->d[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
            m->pos += n;
            a = new_value(m, PK_INT);
            if (!a) return -1;
            a->i = (long long)u;
            if (push(m, a)) return -1;
            break;
        }
        case 'G': /* BINFLOAT, big-endian */ {
            if (need(m, 8)) return -1;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | m->d[m->pos + i];
            m->pos += 8;
            a = new_value(m, PK_FLOAT);
            if (!a) return -1;
            memcpy(&a->f, &u, 8);
            if (push(m, a)) return -1;
            break;
        }
        case 'X':    /* BINUNICODE */
        case 0x8c:   /* SHORT_BINUNICODE */
        case 0x8d:   /* BINUNICODE8 */
        case 'U':    /* SHORT_BINSTRING */
        case 'T':    /* BINSTRING */
        case 'B':    /* BINBYTES */
        case 0x8e:   /* BINBYTES8 */
        case 0x96:   /* BYTEARRAY8 */
        case 'C': {  /* SHORT_BINBYTES */
            int n = (op == 0x8c || op == 'U' || op == 'C') ? 1
                    : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
            if (need(m, n)) return -1;
            uint64_t l = rdle(m->d + m->pos, n);
            m->pos += n;
            if (l > m->len - m->pos) return fail(m, "%sstring runs past the end", "");
            a = make_str(m, m->d + m->pos, (size_t)l);
            if (a) a->is_bytes = op == 'B' || op == 'C' || op == 0x8e || op == 0x96;
            m->pos += (size_t)l;
            if (push(m, a)) return -1;
            break;
        }
        case 'c': /* GLOBAL "module\nname\n" */ {
            const unsigned char *p = m->d + m->pos, *end = m->d + m->len;
            const unsigned char *nl1 = memchr(p, '\n', (size_t)(end - p));
            if (!nl1) return fail(m, "%struncated GLOBAL", "");
            const unsigned char *nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
            if (!nl2) return fail(m, "%struncated GLOBAL", "");
            a = make_global(m, (const char *)p, (size_t)(nl1 - p), (const char *)nl1 + 1,
                            (size_t)(nl2 - nl1 - 1));
            m->pos = (size_t)(nl2 + 1 - m->d);
            if (push(m, a)) return -1;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (pop(m, &b) || pop(m, &a)) return -1;
            if (a->type != PK_STR || b->type != PK_STR)
                return fail(m, "%sSTACK_GLOBAL needs two strings", "");
            c = make_global(m, a->s, a->slen, b->s, b->slen);
            if (push(m, c)) return -1;
            break;
        case ')': /* EMPTY_TUPLE */
            if (push(m, new_value(m, PK_TUPLE))) return -1;
            break;
        case 0x85: /* TUPLE1..3 */
        case 0x86:
        case 0x87: {
            size_t n = (size_t)(op - 0x84);
            size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
            if (m->sp - floor < n) return fail(m, "%sstack underflow", "");
            a = new_value(m, PK_TUPLE);
            if (!a || append_items(m, a, m->stack + m->sp - n, n)) return -1;
            m->sp -= n;
            if (push(m, a)) return -1;
            break;
        }
        case 't': /* TUPLE */
        case 'l': /* LIST */
            if (pop_mark(m, &base)) return -1;
            a = new_value(m, op == 't' ? PK_TUPLE : PK_LIST);
            if (!a || append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            if (push(m, a)) return -1;
            break;
        case 'd': /* DICT */
            if (pop_mark(m, &base)) return -1;
            if ((m->sp - base) % 2) return fail(m, "%sodd number of items for DICT", "");
            a = new_value(m, PK_DICT);
            if (!a || append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            if (push(m, a)) return -1;
            break;
        case ']':
            if (push(m, new_value(m, PK_LIST))) return -1;
            break;
        case '}':
            if (push(m, new_value(m, PK_DICT))) return -1;
            break;
        case 'a': /* APPEND */
            if (pop(m, &b) || top(m, &a)) return -1;
            if (object_items(m, a, 1)) return -1;
            if (a->type != PK_LIST && a->type != PK_OBJECT)
                return fail(m, "%sAPPEND to something that is not a list", "");
            if (append_items(m, a, &b, 1)) return -1;
            break;
        case 'e': /* APPENDS */
            if (pop_mark(m, &base) || below_mark(m, base, &a)) return -1;
            if (object_items(m, a, 1)) return -1;
            if (a->type != PK_LIST && a->type != PK_OBJECT)
                return fail(m, "%sAPPENDS to something that is not a list", "");
            if (append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            break;
        case 's': /* SETITEM */
            if (pop(m, &c) || pop(m, &b) || top(m, &a)) return -1;
            if (object_items(m, a, 2)) return -1;
            if (a->type != PK_DICT && a->type != PK_OBJECT)
                return fail(m, "%sSETITEM on something that is not a dict", "");
            {
                pk_value *kv[2] = {b, c};
                if (append_items(m, a, kv, 2)) return -1;
            }
            break;
        case 'u': /* SETITEMS */
            if (pop_mark(m, &base) || below_mark(m, base, &a)) return -1;
            if (object_items(m, a, 2)) return -1;
            if (a->type != PK_DICT && a->type != PK_OBJECT)
                return fail(m, "%sSETITEMS on something that is not a dict", "");
            if ((m->sp - base) % 2) return fail(m, "%sodd number of items for SETITEMS", "");
            if (append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            break;
        case 'R': /* REDUCE */
            if (pop(m, &b) || pop(m, &a)) return -1;
            c = call(m, a, b);
            if (push(m, c)) return -1;
            break;
        case 'b': /* BUILD: state is ignored (OrderedDict._metadata, tensor state) */
            if (pop(m, &b) || top(m, &a)) return -1;
            if (a->type == PK_OBJECT) {
                a->state = b; /* placeholders keep it, to be shown */
                break;
            }
            if (a->type != PK_DICT && a->type != PK_TENSOR && !m->opaque)
                return fail(m, "%sBUILD on an unsupported object", "");
            break;
        case 0x81:   /* NEWOBJ: cls.__new__(cls, *args) */
        case 0x92: { /* NEWOBJ_EX: cls.__new__(cls, *args, **kwargs) */
            pk_value *kw = NULL;
            if (op == 0x92 && pop(m, &kw)) return -1;
            if (pop(m, &b) || pop(m, &a)) return -1;
            if (b->type != PK_TUPLE) return fail(m, "%sNEWOBJ arguments are not a tuple", "");
            if (a->type == PK_GLOBAL && a->code == G_ORDERED_DICT && b->n == 0 && !kw) {
                c = new_value(m, PK_DICT);
            } else if (m->opaque && (a->type == PK_GLOBAL || a->type == PK_OBJECT)) {
                c = make_object(m, a, b, op == 0x81 ? PK_HOW_NEWOBJ : PK_HOW_NEWOBJ_EX);
                if (c) c->kwargs = kw;
            } else {
                char b2[300];
                snprintf(b2, sizeof b2, "refusing to instantiate pickle global %s",
                         a->type == PK_GLOBAL ? a->s : "(not a global)");
                return fail(m, "%s", b2);
            }
            if (push(m, c)) return -1;
            break;
        }
        case 0x8f: /* EMPTY_SET */
            if (push(m, new_value(m, PK_SET))) return -1;
            break;
        case 0x90: /* ADDITEMS */
            if (pop_mark(m, &base) || below_mark(m, base, &a)) return -1;
            if (a->type != PK_SET) return fail(m, "%sADDITEMS to something that is not a set", "");
            if (append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            break;
        case 0x91: /* FROZENSET */
            if (pop_mark(m, &base)) return -1;
            a = new_value(m, PK_SET);
            if (!a || append_items(m, a, m->stack + base, m->sp - base)) return -1;
            m->sp = base;
            if (push(m, a)) return -1;
            break;
        case 'Q': /* BINPERSID */
            if (pop(m, &a)) return -1;
            if (push(m, persistent_load(m, a))) return -1;
            break;
        case 'q': /* BINPUT */
        case 'r': /* LONG_BINPUT */ {
            int n = op == 'q' ? 1 : 4;
            if (need(m, n)) return -1;
            uint64_t idx = rdle(m->d + m->pos, n);
            m->pos += n;
            if (top(m, &a) || memo_put(m, idx, a)) return -1;
            break;
        }
        case 0x94: /* MEMOIZE: the next index is the memo's size */
            if (top(m, &a) || memo_put(m, m->memo_count, a)) return -1;
            break;
        case 'h': /* BINGET */
        case 'j': /* LONG_BINGET */ {
            int n = op == 'h' ? 1 : 4;
            if (need(m, n)) return -1;
            uint64_t idx = rdle(m->d + m->pos, n);
            m->pos += n;
            if (memo_get(m, idx)) return -1;
            break;
        }
        default: {
            char b2[64];
            snprintf(b2, sizeof b2, "unsupported opcode 0x%02x", op);
            return fail(m, "%s", b2);
        }
        }
    }
}

int cl_pickle_load(const unsigned char *data, size_t len, pk_result *out) {
    return cl_pickle_load_opts(data, len, 0, out);
}

int cl_pickle_load_opts(const unsigned char *data, size_t len, int flags, pk_result *out) {
    memset(out, 0, sizeof *out);
    vm m = {.d = data, .len = len, .res = out, .opaque = (flags & CL_PK_OPAQUE) != 0};
    /* The stack always exists, so `m->stack + base` is never null + 0 (UB)
     * for a MARK on an empty stack. */
    int rc = grow((void **)&m.stack, &m.scap, 16, sizeof *m.stack, "stack") ? -1 : run(&m);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc) {
        cl_pickle_free(out);
        return -1;
    }
    return 0;
}

void cl_pickle_free(pk_result *r) {
    pk_value *v = r->all;
    while (v) {
        pk_value *next = v->next_alloc;
        if (v->type != PK_GLOBAL || v->owns_s) free(v->s);
        free(v->items);
        free(v->t);
        free(v);
        v = next;
    }
    memset(r, 0, sizeof *r);
}

const pk_value *pk_dict_get(const pk_value *d, const char *key) {
    if (!d || d->type != PK_DICT) return NULL;
    for (size_t i = d->n / 2; i-- > 0;) {
        const pk_value *k = d->items[2 * i];
        if (k->type == PK_STR && !strcmp(k->s, key)) return d->items[2 * i + 1];
    }
    return NULL;
}

/* ---- rendering ---- */

typedef struct {
    char *b;
    size_t n, at; /* at < n always; b[at] == '\0' */
    int cut;
} wr;

static void put(wr *w, const char *s, size_t len) {
    if (w->cut) return;
    size_t room = w->n - 1 - w->at;
    if (len > room) {
        len = room;
        w->cut = 1;
    }
    memcpy(w->b + w->at, s, len);
    w->at += len;
    w->b[w->at] = '\0';
}

static void puts_(wr *w, const char *s) { put(w, s, strlen(s)); }

static void putf(wr *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(wr *w, const char *fmt, ...) {
    char t[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (k > 0) put(w, t, (size_t)k < sizeof t ? (size_t)k : sizeof t - 1);
}

static void render_str(wr *w, const pk_value *v) {
    if (v->is_bytes) puts_(w, "b");
    puts_(w, "'");
    size_t show = v->slen < 60 ? v->slen : 60;
    for (size_t i = 0; i < show && !w->cut; i++) {
        unsigned char c = (unsigned char)v->s[i];
        if (c == '\'' || c == '\\') putf(w, "\\%c", c);
        else if (c == '\n') puts_(w, "\\n");
        else if (c < 32 || c == 127 || (v->is_bytes && c > 126)) putf(w, "\\x%02x", c);
        else put(w, (const char *)&c, 1);
    }
    puts_(w, show < v->slen ? "'..." : "'");
}

static void render(wr *w, const pk_value *v, int depth) {
    if (w->cut) return;
    switch (v->type) {
    case PK_NONE: puts_(w, "None"); return;
    case PK_BOOL: puts_(w, v->i ? "True" : "False"); return;
    case PK_INT: putf(w, "%lld", v->i); return;
    case PK_FLOAT: putf(w, "%.8g", v->f); return;
    case PK_STR: render_str(w, v); return;
    case PK_GLOBAL: puts_(w, v->s ? v->s : "?"); return;
    case PK_STORAGE: putf(w, "storage[%zu]", v->numel); return;
    case PK_MARK: puts_(w, "MARK"); return;
    case PK_TENSOR: {
        puts_(w, "tensor[");
        for (int i = 0; i < v->t->ndim; i++) putf(w, "%s%zu", i ? ", " : "", v->t->shape[i]);
        puts_(w, "]");
        return;
    }
    case PK_OBJECT:
        putf(w, "<%.200s", v->s);
        if (depth < 2 && v->args && (v->args->n || v->how != PK_HOW_NEWOBJ)) {
            puts_(w, "(");
            for (size_t i = 0; i < v->args->n && !w->cut; i++) {
                if (i) puts_(w, ", ");
                if (i == 4) {
                    puts_(w, "...");
                    break;
                }
                render(w, v->args->items[i], depth + 1);
            }
            puts_(w, ")");
        }
        puts_(w, ">");
        return;
    case PK_TUPLE:
    case PK_LIST:
    case PK_SET:
    case PK_DICT: {
        int d = v->type == PK_DICT;
        size_t n = d ? v->n / 2 : v->n;
        const char *open = v->type == PK_TUPLE ? "(" : v->type == PK_LIST ? "[" : "{",
                   *close = v->type == PK_TUPLE ? (n == 1 ? ",)" : ")")
                            : v->type == PK_LIST ? "]" : "}";
        if (v->type == PK_SET && n == 0) {
            puts_(w, "set()");
            return;
        }
        if (depth >= 2 && n) {
            putf(w, "%s%zu items%s", open, n, close);
            return;
        }
        puts_(w, open);
        for (size_t i = 0; i < n && !w->cut; i++) {
            if (i) puts_(w, ", ");
            if (i == 8) {
                putf(w, "... %zu more", n - 8);
                break;
            }
            if (d) {
                render(w, v->items[2 * i], depth + 1);
                puts_(w, ": ");
                render(w, v->items[2 * i + 1], depth + 1);
            } else {
                render(w, v->items[i], depth + 1);
            }
        }
        puts_(w, close);
        return;
    }
    }
}

void pk_render(const pk_value *v, char *buf, size_t n) {
    if (!n) return;
    buf[0] = '\0';
    if (n < 4) return;
    wr w = {.b = buf, .n = n - 3}; /* room for "..." */
    render(&w, v, 0);
    if (w.cut) strcpy(buf + w.at, "...");
}

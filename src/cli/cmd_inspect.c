/* corpuslens inspect: take any .pt, .safetensors or corpuslens model file
 * apart. A torch.save file is read with the opaque unpickler: objects of
 * unknown classes are listed by name and state, never imported or called.
 * Default output: a tree of dotted paths (tensors with dtype and shape,
 * other values with their rendering) with element totals per subtree;
 * --json the same as JSON; --flat the tensor list by role; --tensor NAME the
 * statistics of one tensor; --dump NAME -o FILE.h5 one tensor to HDF5.
 * Rank 0 prints. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/base/error.h"
#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/import.h"
#include "corpuslens/model/model.h"

static const char *CMD = "inspect";

static const char USAGE[] =
    "corpuslens inspect FILE [--depth N] [--json] [--flat]\n"
    "corpuslens inspect FILE --tensor NAME\n"
    "corpuslens inspect FILE --dump NAME -o OUT.h5";

static const char ABOUT[] =
    "Take a checkpoint apart: FILE is any torch.save file (.pt: a state dict, a\n"
    "training checkpoint, an OpenNMT-py or fairseq checkpoint, a pickled module),\n"
    "a .safetensors file or a corpuslens model (.h5); the kind is recognised from\n"
    "the content. Objects of classes that are not tensors or containers (a\n"
    "framework's vocabulary, argparse.Namespace, anything) are never imported or\n"
    "called: they are listed as <module.Class> with the arguments and state the\n"
    "pickle gives them, the way pickletools shows them. (`import` still accepts\n"
    "state dicts only, as torch.load(weights_only=True).)\n"
    "\n"
    "Default: a tree of the dotted paths with each tensor's dtype and shape, each\n"
    "other value's rendering, and the number of tensor elements below each\n"
    "node (tensors sharing their data counted once), then the parameter count\n"
    "of the state dict (buffers and tensors outside it not counted).\n";

/* 10788929 -> "10,788,929" */
static const char *commas(size_t v, char *buf) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%zu", v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

static void shape_str(char *buf, size_t n, int nd, const size_t *s) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%zu", i ? ", " : "", s[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

static int is_contiguous(const cl_ckpt_tensor *t) {
    size_t expect = 1;
    for (int d = t->ndim; d-- > 0;) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0;
        expect *= t->shape[d];
    }
    return 1;
}

static void print_tensor(const cl_ckpt *ck, size_t i) {
    const cl_ckpt_tensor *t = cl_ckpt_tensor_at(ck, i);
    char sh[160], extra[256] = "";
    shape_str(sh, sizeof sh, t->ndim, t->shape);
    size_t at = 0;
    if (t->offset || !is_contiguous(t)) {
        char st[160];
        shape_str(st, sizeof st, t->ndim, t->stride);
        at += (size_t)snprintf(extra + at, sizeof extra - at, "  (view: offset %zu, strides %s)",
                               t->offset, st);
    }
    size_t a = cl_ckpt_first_alias(ck, i);
    if (a != i) snprintf(extra + at, sizeof extra - at, "  (same data as %s)", cl_ckpt_tensor_at(ck, a)->name);
    printf("  %-48s %-9s %s%s\n", t->name, cl_dtype_name(t->dtype), sh, extra);
}

static void print_header(const cl_ckpt *ck, const char *path) {
    size_t n = cl_ckpt_num_tensors(ck);
    if (cl_ckpt_get_format(ck) == CL_CKPT_TORCH) {
        printf("%s: PyTorch checkpoint (zip, folder '%s', pickle protocol %d), %zu tensors", path,
               cl_ckpt_prefix(ck), cl_ckpt_pickle_protocol(ck), n);
        size_t no = cl_ckpt_num_objects(ck);
        if (no) printf(", %zu objects of other classes (listed, never imported or called)", no);
        printf("\n");
    } else {
        printf("%s: safetensors file, %zu tensors\n", path, n);
    }
    cl_ckpt_layout lay;
    cl_config cfg;
    if (cl_ckpt_config(ck, NULL, &lay, &cfg) == 0)
        printf("layout: %s (n_layer %d, n_head %d, n_embd %d, block_size %d, vocab %d, %s, bias %d, "
               "qkv_bias %d, head_bias %d, %s head)\n",
               cl_ckpt_layout_name(lay), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size,
               cfg.vocab_size, cfg.activation == CL_ACT_GELU ? "gelu" : cfg.activation == CL_ACT_GELU_TANH ? "gelu_tanh" : "relu", cfg.bias,
               cfg.qkv_bias, cfg.head_bias, cfg.tied_head ? "tied" : "untied");
    else
        printf("layout: not importable as is: %s\n", cl_last_error());
}

/* ---- the tree: entries' dotted paths split into components ---- */

typedef struct {
    char *name;         /* one path component ("" for the root) */
    long entry;         /* the entry listed at exactly this path, or -1 */
    long parent, first, last, next;
    int depth;
    size_t numel;       /* tensor elements below, shared data counted once */
    size_t n_tensors;
} tnode;

typedef struct {
    tnode *v;
    size_t n, cap;
} tree;

static long tree_add(tree *t, long parent, const char *name, size_t len) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 256;
        tnode *v = realloc(t->v, nc * sizeof *v);
        if (!v) return cl_error("out of memory building the tree");
        t->v = v;
        t->cap = nc;
    }
    tnode *x = &t->v[t->n];
    memset(x, 0, sizeof *x);
    x->name = strndup(name, len);
    if (!x->name) return cl_error("out of memory building the tree");
    x->entry = -1;
    x->parent = parent;
    x->first = x->last = x->next = -1;
    x->depth = parent < 0 ? 0 : t->v[parent].depth + 1;
    if (parent >= 0) {
        if (t->v[parent].last >= 0) t->v[t->v[parent].last].next = (long)t->n;
        else t->v[parent].first = (long)t->n;
        t->v[parent].last = (long)t->n;
    }
    return (long)t->n++;
}

static long tree_child(tree *t, long parent, const char *name, size_t len) {
    for (long c = t->v[parent].first; c >= 0; c = t->v[c].next)
        if (strlen(t->v[c].name) == len && !memcmp(t->v[c].name, name, len)) return c;
    return tree_add(t, parent, name, len);
}

static void tree_free(tree *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].name);
    free(t->v);
}

static int is_ancestor(const tree *t, long a, long x) {
    for (; x >= 0; x = t->v[x].parent)
        if (x == a) return 1;
    return 0;
}

static int tree_build(const cl_ckpt *ck, tree *t) {
    memset(t, 0, sizeof *t);
    if (tree_add(t, -1, "", 0) < 0) return -1;
    size_t ne = cl_ckpt_num_entries(ck), nt = cl_ckpt_num_tensors(ck);
    long *tnode_of = calloc(nt ? nt : 1, sizeof *tnode_of);
    if (!tnode_of) return cl_error("out of memory building the tree");
    for (size_t i = 0; i < ne; i++) {
        const cl_ckpt_entry *e = cl_ckpt_entry_at(ck, i);
        long at = 0;
        const char *p = e->path;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t len = dot ? (size_t)(dot - p) : strlen(p);
            at = tree_child(t, at, p, len);
            if (at < 0) {
                free(tnode_of);
                return -1;
            }
            p += len + (dot ? 1 : 0);
        }
        if (t->v[at].entry < 0) t->v[at].entry = (long)i;
        if (e->kind == CL_ENTRY_TENSOR) tnode_of[e->tensor] = at;
    }
    /* totals: a tensor adds its elements to each ancestor, except those that
     * already hold an earlier tensor with the same data */
    for (size_t i = 0; i < nt; i++) {
        const cl_ckpt_tensor *ti = cl_ckpt_tensor_at(ck, i);
        size_t a = cl_ckpt_first_alias(ck, i);
        for (long x = tnode_of[i]; x >= 0; x = t->v[x].parent) {
            int held = 0;
            if (a != i)
                for (size_t j = a; j < i && !held; j++)
                    if (cl_ckpt_first_alias(ck, j) == a && is_ancestor(t, x, tnode_of[j])) held = 1;
            if (held) break;
            t->v[x].numel += ti->numel;
            t->v[x].n_tensors++;
        }
    }
    free(tnode_of);
    return 0;
}

static void print_shape_into(char *buf, size_t n, const cl_ckpt_tensor *t) { shape_str(buf, n, t->ndim, t->shape); }

static void print_node(const cl_ckpt *ck, const tree *t, long x, int max_depth) {
    const tnode *v = &t->v[x];
    char label[200], desc[400] = "";
    if (x > 0) snprintf(label, sizeof label, "%*s%s", 2 * (v->depth - 1), "", v->name);
    else snprintf(label, sizeof label, "(root)");
    const cl_ckpt_entry *e = v->entry >= 0 ? cl_ckpt_entry_at(ck, (size_t)v->entry) : NULL;
    char tot[64] = "";
    if (e && e->kind == CL_ENTRY_TENSOR) {
        size_t i = e->tensor;
        const cl_ckpt_tensor *ti = cl_ckpt_tensor_at(ck, i);
        char sh[160], extra[300] = "";
        print_shape_into(sh, sizeof sh, ti);
        size_t at = 0;
        if (ti->role == CL_ROLE_BUFFER) at += (size_t)snprintf(extra, sizeof extra, "  (buffer)");
        size_t a = cl_ckpt_first_alias(ck, i);
        if (a != i)
            snprintf(extra + at, sizeof extra - at, "  (same data as %s)", cl_ckpt_tensor_at(ck, a)->name);
        char b[32];
        snprintf(desc, sizeof desc, "%-9s %-18s %12s%s", e->type, sh, commas(ti->numel, b), extra);
    } else {
        if (v->n_tensors || x == 0) {
            char b[32];
            snprintf(tot, sizeof tot, "%s in %zu tensor%s", commas(v->numel, b), v->n_tensors,
                     v->n_tensors == 1 ? "" : "s");
        }
        if (e && e->kind == CL_ENTRY_VALUE)
            snprintf(desc, sizeof desc, "%-9s %s", e->type, e->text);
        else if (e && e->kind == CL_ENTRY_OBJECT)
            snprintf(desc, sizeof desc, "%s  (object, not imported)%s%s", e->text, *tot ? "  " : "", tot);
        else if (e && e->kind == CL_ENTRY_REF)
            snprintf(desc, sizeof desc, "(the same object as %s)", *e->text ? e->text : "the root");
        else if (e && e->kind == CL_ENTRY_CONTAINER)
            snprintf(desc, sizeof desc, "%-9s %s", e->text, tot);
        else
            snprintf(desc, sizeof desc, "%-9s %s", "", tot);
    }
    printf("%-52s %s\n", label, desc);
    if (max_depth >= 0 && v->depth >= max_depth) return;
    for (long c = v->first; c >= 0; c = t->v[c].next) print_node(ck, t, c, max_depth);
}

static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p == '\n') printf("\\n");
        else if (*p < 32 || *p == 127) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void json_node(const cl_ckpt *ck, const tree *t, long x, int max_depth, char *path, size_t plen) {
    const tnode *v = &t->v[x];
    size_t nl = strlen(v->name);
    size_t np = plen;
    if (x > 0 && plen + nl + 2 < 4096) {
        if (plen) path[np++] = '.';
        memcpy(path + np, v->name, nl + 1);
        np += nl;
    }
    printf("{\"name\": ");
    json_str(v->name);
    printf(", \"path\": ");
    json_str(path);
    const cl_ckpt_entry *e = v->entry >= 0 ? cl_ckpt_entry_at(ck, (size_t)v->entry) : NULL;
    static const char *const kinds[] = {"tensor", "value", "container", "object", "ref"};
    printf(", \"kind\": \"%s\"", e ? kinds[e->kind] : "group");
    if (e && e->kind == CL_ENTRY_TENSOR) {
        const cl_ckpt_tensor *ti = cl_ckpt_tensor_at(ck, e->tensor);
        static const char *const roles[] = {"parameter", "buffer", "other"};
        printf(", \"dtype\": \"%s\", \"shape\": [", e->type);
        for (int d = 0; d < ti->ndim; d++) printf("%s%zu", d ? ", " : "", ti->shape[d]);
        size_t a = cl_ckpt_first_alias(ck, e->tensor);
        printf("], \"role\": \"%s\"", roles[ti->role]);
        if (a != e->tensor) {
            printf(", \"same_data_as\": ");
            json_str(cl_ckpt_tensor_at(ck, a)->name);
        }
    } else if (e) {
        printf(", \"type\": ");
        json_str(e->type);
        printf(", \"%s\": ", e->kind == CL_ENTRY_REF ? "same_object_as" : "text");
        json_str(e->text);
    }
    printf(", \"numel\": %zu, \"n_tensors\": %zu", v->numel, v->n_tensors);
    if (v->first >= 0 && !(max_depth >= 0 && v->depth >= max_depth)) {
        printf(", \"children\": [");
        for (long c = v->first; c >= 0; c = t->v[c].next) {
            json_node(ck, t, c, max_depth, path, np);
            if (t->v[c].next >= 0) printf(", ");
        }
        printf("]");
    }
    printf("}");
    path[plen] = '\0';
}

static int inspect_tree(cl_ckpt *ck, const char *path, int max_depth, int json) {
    tree t;
    if (tree_build(ck, &t)) {
        tree_free(&t);
        return -1;
    }
    size_t n = cl_ckpt_num_tensors(ck), nparam = 0;
    for (size_t i = 0; i < n; i++) nparam += cl_ckpt_tensor_at(ck, i)->role == CL_ROLE_PARAM;
    if (json) {
        char *pbuf = calloc(4096, 1);
        if (!pbuf) {
            tree_free(&t);
            return cl_error("out of memory");
        }
        printf("{\"file\": ");
        json_str(path);
        printf(", \"format\": \"%s\", \"pickle_protocol\": %d, \"n_tensors\": %zu, \"n_objects\": %zu, "
               "\"parameters\": %zu, \"parameter_tensors\": %zu, \"tree\": ",
               cl_ckpt_get_format(ck) == CL_CKPT_TORCH ? "torch" : "safetensors",
               cl_ckpt_pickle_protocol(ck), n, cl_ckpt_num_objects(ck), cl_ckpt_num_params(ck), nparam);
        json_node(ck, &t, 0, max_depth, pbuf, 0);
        printf("}\n");
        free(pbuf);
    } else {
        print_header(ck, path);
        printf("tree: tensor elements per subtree (shared data counted once)\n");
        print_node(ck, &t, 0, max_depth);
        char b[32];
        printf("parameters: %s in %zu tensors (tied tensors counted once)\n",
               commas(cl_ckpt_num_params(ck), b), nparam);
    }
    tree_free(&t);
    return 0;
}

/* ---- one tensor ---- */

static const cl_ckpt_tensor *find_tensor(const cl_ckpt *ck, const char *name) {
    size_t n = cl_ckpt_num_tensors(ck);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cl_ckpt_tensor_at(ck, i)->name, name)) return cl_ckpt_tensor_at(ck, i);
    const cl_ckpt_tensor *t = cl_ckpt_find(ck, name);
    if (!t) cl_error("%s: no tensor '%s' (`corpuslens inspect %s` lists them)", cl_ckpt_label(ck), name,
                     cl_ckpt_label(ck));
    return t;
}

static double *tensor_f64(const cl_ckpt_tensor *t) {
    double *x = cl_trymalloc(t->numel ? t->numel : 1, sizeof *x, "tensor values");
    if (x && cl_ckpt_tensor_to_f64(t, x)) {
        free(x);
        return NULL;
    }
    return x;
}

static int tensor_stats(const cl_ckpt *ck, const char *name) {
    const cl_ckpt_tensor *t = find_tensor(ck, name);
    if (!t) return -1;
    double *x = tensor_f64(t);
    if (!x) return -1;
    size_t n = t->numel, nan = 0, inf = 0, k = 0;
    double mean = 0, m2 = 0, mn = INFINITY, mx = -INFINITY, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (isnan(v)) {
            nan++;
            continue;
        }
        if (isinf(v)) inf++;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        ss += v * v;
        k++;
        double d = v - mean; /* Welford */
        mean += d / (double)k;
        m2 += d * (v - mean);
    }
    free(x);
    char sh[160];
    shape_str(sh, sizeof sh, t->ndim, t->shape);
    printf("tensor  %s\n", t->name);
    printf("dtype   %s\nshape   %s\nnumel   %zu\n", cl_dtype_name(t->dtype), sh, n);
    if (k == 0) {
        printf("mean    nan\nstd     nan\nmin     nan\nmax     nan\nnorm    nan\n");
    } else {
        printf("mean    %.9g\n", mean);
        if (k > 1) printf("std     %.9g\n", sqrt(m2 / (double)(k - 1)));
        else printf("std     nan\n");
        printf("min     %.9g\nmax     %.9g\nnorm    %.9g\n", mn, mx, sqrt(ss));
    }
    printf("nan     %zu\ninf     %zu\n", nan, inf);
    if (nan) printf("(mean, std, min, max and norm leave the NaNs out)\n");
    return 0;
}

static int tensor_dump(const cl_ckpt *ck, const char *name, const char *out) {
    const cl_ckpt_tensor *t = find_tensor(ck, name);
    if (!t) return -1;
    double *x = tensor_f64(t);
    if (!x) return -1;
    int rc = -1;
    size_t n = t->numel ? t->numel : 1;
    void *buf = NULL;
    hid_t mt;
    if (t->dtype == CL_DT_F64) {
        mt = H5T_NATIVE_DOUBLE;
    } else if (cl_dtype_is_float(t->dtype)) {
        float *f = cl_trymalloc(n, sizeof *f, "tensor");
        if (!f) goto out;
        for (size_t i = 0; i < t->numel; i++) f[i] = (float)x[i];
        buf = f, mt = H5T_NATIVE_FLOAT;
    } else if (t->dtype == CL_DT_BOOL || t->dtype == CL_DT_U8) {
        unsigned char *u = cl_trymalloc(n, 1, "tensor");
        if (!u) goto out;
        for (size_t i = 0; i < t->numel; i++) u[i] = (unsigned char)x[i];
        buf = u, mt = H5T_NATIVE_UINT8;
    } else {
        long long *l = cl_trymalloc(n, sizeof *l, "tensor");
        if (!l) goto out;
        for (size_t i = 0; i < t->numel; i++) l[i] = (long long)x[i];
        buf = l, mt = H5T_NATIVE_LLONG;
    }
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp) {
        cl_error("output path too long");
        goto out;
    }
    cl_h5_quiet();
    hid_t f = cl_h5_create(tmp); /* the safe writer: cl_h5_commit below */
    if (f < 0) goto out;
    hsize_t dims[CL_CKPT_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = t->shape[d];
    int bad = 0;
    if (t->ndim == 0) {
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t dcpl = cl_h5_dcpl();
        hid_t ds = H5Dcreate2(f, "/tensor", mt, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf ? buf : x) < 0)
            bad = 1, cl_h5_error_in(f, "cannot write /tensor");
        if (ds >= 0 && H5Dclose(ds) < 0 && !bad) bad = 1, cl_h5_error_in(f, "cannot write /tensor");
        H5Pclose(dcpl);
        H5Sclose(sp);
    } else {
        bad = cl_h5_write(f, "/tensor", mt, t->ndim, dims, buf ? buf : x) != 0;
    }
    if (!bad) {
        hid_t ds = H5Dopen2(f, "/tensor", H5P_DEFAULT);
        bad = ds < 0 || cl_h5_attr_write_str(ds, "name", t->name) ||
              cl_h5_attr_write_str(ds, "dtype", cl_dtype_name(t->dtype)) ||
              cl_h5_attr_write_str(ds, "source", cl_ckpt_label(ck));
        if (ds >= 0 && H5Dclose(ds) < 0 && !bad) bad = 1, cl_h5_error_in(f, "cannot write /tensor");
    }
    if (cl_h5_commit(f, tmp, out, bad)) goto out;
    printf("wrote %s: /tensor = %s %s [", out, t->name, cl_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) printf("%s%zu", d ? ", " : "", t->shape[d]);
    printf("]\n");
    rc = 0;
out:
    free(buf);
    free(x);
    return rc;
}

static int inspect_flat(cl_ckpt *ck, const char *path) {
    size_t n = cl_ckpt_num_tensors(ck), counts[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) counts[cl_ckpt_tensor_at(ck, i)->role]++;
    print_header(ck, path);
    static const char *const title[3] = {"parameters:", "buffers (not counted):",
                                         "other tensors (not counted):"};
    for (int r = 0; r < 3; r++) {
        if (!counts[r]) continue;
        printf("%s\n", title[r]);
        for (size_t i = 0; i < n; i++)
            if ((int)cl_ckpt_tensor_at(ck, i)->role == r) print_tensor(ck, i);
    }
    char b[32];
    printf("parameters: %s in %zu tensors (tied tensors counted once)\n",
           commas(cl_ckpt_num_params(ck), b), counts[CL_ROLE_PARAM]);
    return 0;
}

static int inspect_h5(const char *path) {
    cl_model *m = cl_model_load(path);
    if (!m) return cli_fail();
    const cl_config *c = &m->cfg;
    size_t n = cl_model_tensor_count(c), present = 0;
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, m->mem, i, &t);
        present += t.present;
    }
    printf("%s: corpuslens model file, %zu tensors\n", path, present);
    printf("config: n_layer %d, n_head %d, n_embd %d, block_size %d, vocab %d, %s, bias %d, "
           "qkv_bias %d, head_bias %d, %s head, attn_scale %s, ln_eps %g\n",
           c->n_layer, c->n_head, c->n_embd, c->block_size, c->vocab_size,
           c->activation == CL_ACT_GELU ? "gelu" : c->activation == CL_ACT_GELU_TANH ? "gelu_tanh" : "relu", c->bias, c->qkv_bias, c->head_bias,
           c->tied_head ? "tied" : "untied",
           c->attn_scale == CL_SCALE_N_EMBD ? "n_embd" : "head_size", c->ln_eps);
    if (m->bpe) printf("tokenizer: GPT-2 byte-level BPE, %d tokens, %zu merges\n", c->vocab_size, cl_bpe_num_merges(m->bpe));
    else printf("tokenizer: char-level, %d characters\n", c->vocab_size);
    printf("parameters:\n");
    for (size_t i = 0; i < n; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, m->mem, i, &t);
        if (!t.present) continue;
        char sh[64];
        shape_str(sh, sizeof sh, t.ndim, t.shape);
        printf("  %-48s %-9s %s\n", t.name, "float32", sh);
    }
    char b[32];
    printf("parameters: %s in %zu tensors (tied tensors counted once)\n",
           commas(cl_model_num_params(c), b), present);
    cl_model_free(m);
    return 0;
}

static int run(int argc, char **argv) {
    const char *path = NULL, *tensor = NULL, *dump = NULL, *out = NULL;
    int json = 0, flat = 0;
    long depth = -1;
    const cli_option opts[] = {
        CLI_OPT_INT("depth", 0, "N", &depth, 0, 1000, "show the tree down to depth N (totals still cover all)"),
        CLI_OPT_FLAG("json", 0, &json, "the tree as JSON on stdout"),
        CLI_OPT_FLAG("flat", 0, &flat, "the tensor list by role (parameters, buffers, other)"),
        CLI_OPT_STRING("tensor", 0, "NAME", &tensor,
                       "statistics of one tensor (full path as listed, or its state-dict\n"
                       "key): count, mean, std (unbiased, as torch.std), min, max, L2 norm,\n"
                       "NaN/inf counts"),
        CLI_OPT_STRING("dump", 0, "NAME", &dump,
                       "write one tensor to -o OUT.h5 as dataset /tensor (float64 for\n"
                       "float64, int64 for integers, uint8 for bools and bytes, float32\n"
                       "otherwise; attributes name, dtype, source)"),
        CLI_OPT_STRING("output", 'o', "OUT.h5", &out, "the file of --dump"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, NULL, "FILE", 1, 1, "no file given"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    path = argv[first];
    if ((tensor != NULL) + (dump != NULL) + (json || flat || depth >= 0) > 1)
        return cli_usage_error(CMD, "--tensor, --dump and the listing options (--json, --flat, --depth) "
                                    "exclude each other");
    if (json && flat) return cli_usage_error(CMD, "--json and --flat exclude each other");
    if (dump && !out) return cli_usage_error(CMD, "--dump needs -o OUT.h5");
    if (out && !dump) return cli_usage_error(CMD, "-o is only for --dump");
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        cl_error("cannot open %s: %s", path, strerror(errno));
        return cli_fail();
    }
    size_t got = fread(sig, 1, sizeof sig, f);
    fclose(f);
    if (got == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8)) {
        if (tensor || dump || json)
            return cli_usage_error(CMD, "--tensor, --dump and --json are for checkpoints (.pt, "
                                        ".safetensors); use h5dump for a model file");
        return inspect_h5(path);
    }
    cl_ckpt *ck = cl_ckpt_open_any(path);
    if (!ck) return cli_fail();
    int rc;
    if (tensor) rc = tensor_stats(ck, tensor);
    else if (dump) rc = tensor_dump(ck, dump, out);
    else if (flat) rc = inspect_flat(ck, path);
    else rc = inspect_tree(ck, path, (int)depth, json);
    cl_ckpt_close(ck);
    return rc ? cli_fail() : 0;
}

int cmd_inspect(int argc, char **argv) {
    return cli_on_rank0(run, argc, argv);
}

/* corpuslens inspect: list the tensors of a .pt, .safetensors or corpuslens
 * model file (name, dtype, shape) and count the parameters (buffers listed
 * apart and not counted; a tied tensor counted once). Rank 0 prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/model/import.h"
#include "corpuslens/base/error.h"
#include "corpuslens/model/model.h"

static const char *CMD = "inspect";

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

static int inspect_ckpt(const char *path) {
    cl_ckpt *ck = cl_ckpt_open(path);
    if (!ck) return cli_fail();
    size_t n = cl_ckpt_num_tensors(ck), counts[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) counts[cl_ckpt_tensor_at(ck, i)->role]++;
    if (cl_ckpt_get_format(ck) == CL_CKPT_TORCH)
        printf("%s: PyTorch checkpoint (zip, folder '%s', pickle protocol %d), %zu tensors\n", path,
               cl_ckpt_prefix(ck), cl_ckpt_pickle_protocol(ck), n);
    else
        printf("%s: safetensors file, %zu tensors\n", path, n);
    cl_ckpt_layout lay;
    cl_config cfg;
    if (cl_ckpt_config(ck, NULL, &lay, &cfg) == 0)
        printf("layout: %s (n_layer %d, n_head %d, n_embd %d, block_size %d, vocab %d, %s, bias %d, "
               "qkv_bias %d, head_bias %d, %s head)\n",
               cl_ckpt_layout_name(lay), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size,
               cfg.vocab_size, cfg.activation == CL_ACT_GELU ? "gelu" : "relu", cfg.bias,
               cfg.qkv_bias, cfg.head_bias, cfg.tied_head ? "tied" : "untied");
    else
        printf("layout: not importable as is: %s\n", cl_last_error());
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
    cl_ckpt_close(ck);
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
           c->activation == CL_ACT_GELU ? "gelu" : "relu", c->bias, c->qkv_bias, c->head_bias,
           c->tied_head ? "tied" : "untied",
           c->attn_scale == CL_SCALE_N_EMBD ? "n_embd" : "head_size", c->ln_eps);
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

static const char USAGE[] =
    "corpuslens inspect FILE";

static const char ABOUT[] =
    "List every tensor of FILE with its dtype and shape, and count the parameters.\n"
    "FILE is a torch.save checkpoint (.pt), a .safetensors file or a corpuslens\n"
    "model (.h5); the kind is recognised from the content. Buffers (the lecture's\n"
    "tril masks, nanoGPT's attn.bias mask) and tensors outside the state dict\n"
    "(optimizer state, best_val_loss) are listed apart and not counted; tensors\n"
    "sharing their data (a tied lm_head) are counted once. Views with a storage\n"
    "offset or non-contiguous strides are marked.\n";

static int run(int argc, char **argv) {
    const cli_option opts[] = {CLI_END};
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, NULL, "FILE", 1, 1, "no file given"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *path = argv[first];
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        cl_error("cannot open %s", path);
        return cli_fail();
    }
    size_t got = fread(sig, 1, sizeof sig, f);
    fclose(f);
    if (got == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8)) return inspect_h5(path);
    return inspect_ckpt(path);
}

int cmd_inspect(int argc, char **argv) {
    return cli_on_rank0(run, argc, argv);
}

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/h5/h5util.h"

#define MAX_CAP 4096

static const char USAGE[] =
    "corpuslens capture --model MODEL.h5 -o ACTS.h5 [--hook NAME]... [--all-hooks] [--last] TEXT...";

static const char ABOUT[] =
    "Runs the model on the TEXTs (all of the same length in characters) and\n"
    "writes /tokens [B, T], /logits [B, T, V] and /hooks/<full hook name> for\n"
    "every hook asked for: [B, T, D] (attn.hook_pattern: [B, H, T, T]); with\n"
    "--last only position T-1: /logits [B, V], hooks [B, D] (pattern [B, H, T]).\n"
    "NAME is a full hook name (blocks.2.hook_mlp_out) or a short name for every\n"
    "block (mlp_out, attn_out, resid_pre, resid_mid, resid_post, mlp_pre, mlp_post, attn_z).\n";

static int run(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    cli_strings *names = calloc(1, sizeof *names);
    int all = 0, last = 0;
    if (!names) return cl_error("out of memory"), cli_fail();
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("output", 'o', "ACTS.h5", &out, "the file to write (as ACTS.h5.tmp, then renamed)"),
        CLI_OPT_STRINGS("hook", 0, "NAME", names, 256, "capture this hook (repeatable)"),
        CLI_OPT_FLAG("all-hooks", 0, &all, "capture every hook"),
        CLI_OPT_FLAG("last", 0, &last, "only the last position"),
        CLI_END,
    };
    const cli_command cmd = {"capture", USAGE, ABOUT, opts, NULL, "TEXT", 1, 4096, "give at least one TEXT"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    int urc = prc != CLI_PARSED ? prc : !model || !out ? cli_usage_error("capture", "--model and -o are required") : -1;
    if (urc >= 0) {
        free(names);
        return urc;
    }
    const char **texts = (const char **)argv + first;
    int n_texts = argc - first;
    cl_model *m = cl_model_load(model);
    if (!m) {
        free(names);
        return cli_fail();
    }
    const cl_config *c = &m->cfg;
    int rc = 1, B = n_texts, T = 0, n_hooks = 0;
    int32_t *tokens = NULL;
    float *logits = NULL;
    cl_forward *f = NULL;
    cl_hook *hooks = cl_trycalloc(MAX_CAP, sizeof *hooks, "hooks");
    hid_t file = H5I_INVALID_HID;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    if (!hooks) goto out;
    for (int b = 0; b < B; b++) {
        int32_t *ids;
        size_t n;
        if (cli_encode(m, texts[b], &ids, &n)) {
            cl_error_prefix("text %d: ", b + 1);
            goto out;
        }
        if (b == 0) {
            T = (int)n;
            tokens = cl_trymalloc((size_t)B * T, sizeof *tokens, "tokens");
            if (!tokens) {
                free(ids);
                goto out;
            }
        } else if ((int)n != T) {
            free(ids);
            cl_error("text %d has %zu %s, text 1 has %d: all texts must have the same length", b + 1, n,
                     m->bpe ? "tokens" : "characters", T);
            goto out;
        }
        memcpy(tokens + (size_t)b * T, ids, (size_t)T * sizeof *ids);
        free(ids);
    }
    /* Expand the requested hooks to (point, layer) pairs. */
    for (int p = 0; p < CL_NUM_HOOK_POINTS && all; p++) {
        int nl = cl_hook_is_per_layer(p) ? c->n_layer : 1;
        for (int l = 0; l < nl && n_hooks < MAX_CAP; l++)
            hooks[n_hooks++] = (cl_hook){.point = p, .layer = cl_hook_is_per_layer(p) ? l : -1};
    }
    for (int i = 0; i < names->n; i++) {
        cl_hook_point p;
        int layer;
        if (cl_hook_parse(names->v[i], c->n_layer, &p, &layer)) goto out;
        int lo = layer, hi = layer;
        if (layer == -1 && cl_hook_is_per_layer(p)) lo = 0, hi = c->n_layer - 1;
        for (int l = lo; l <= hi && n_hooks < MAX_CAP; l++) hooks[n_hooks++] = (cl_hook){.point = p, .layer = l};
    }
    for (int i = 0; i < n_hooks; i++) {
        hooks[i].mode = last ? CL_HOOK_CAPTURE_LAST : CL_HOOK_CAPTURE;
        hooks[i].out = cl_trymalloc(cl_hook_capture_size(c, hooks[i].point, hooks[i].mode, B, T), sizeof(float),
                                    "hook capture");
        if (!hooks[i].out) goto out;
    }
    size_t nlog = (size_t)B * (last ? 1 : T) * cl_model_n_out(c);
    logits = cl_trymalloc(nlog, sizeof(float), "logits");
    if (!logits) goto out;
    f = cl_forward_create(m, B, T);
    if (!f || cl_forward_run(f, tokens, B, T, hooks, n_hooks, last ? CL_LOGITS_LAST : CL_LOGITS_ALL, logits)) goto out;

    file = cl_h5_create(tmp);
    if (file < 0) {
        goto out;
    }
    hsize_t td[2] = {(hsize_t)B, (hsize_t)T};
    if (cl_h5_write(file, "/tokens", H5T_NATIVE_INT32, 2, td, tokens)) goto out;
    hsize_t ld[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)cl_model_n_out(c)};
    if (last) ld[1] = ld[2];
    if (cl_h5_write(file, "/logits", H5T_NATIVE_FLOAT, last ? 2 : 3, ld, logits)) goto out;
    for (int i = 0; i < n_hooks; i++) {
        char name[128], path[160];
        cl_hook_name(hooks[i].point, hooks[i].layer, name, sizeof name);
        snprintf(path, sizeof path, "/hooks/%s", name);
        if (cl_h5_exists(file, path)) continue;
        hsize_t d[4];
        int rank;
        if (hooks[i].point == CL_HOOK_PATTERN) {
            d[0] = B, d[1] = c->n_head, d[2] = T, d[3] = T;
            rank = last ? 3 : 4;
        } else {
            d[0] = B, d[1] = T, d[2] = cl_hook_width(c, hooks[i].point);
            if (last) d[1] = d[2];
            rank = last ? 2 : 3;
        }
        if (cl_h5_write(file, path, H5T_NATIVE_FLOAT, rank, d, hooks[i].out)) goto out;
    }
    hid_t done = file;
    file = H5I_INVALID_HID;
    if (cl_h5_commit(done, tmp, out, 0)) goto out;
    rc = 0;
out:
    if (file >= 0) cl_h5_finish(file, tmp, 1);
    if (rc) {
        remove(tmp);
        cli_fail();
    }
    if (hooks)
        for (int i = 0; i < n_hooks; i++) free(hooks[i].out);
    free(hooks);
    free(names);
    free(tokens);
    free(logits);
    cl_forward_free(f);
    cl_model_free(m);
    return rc;
}

int cmd_capture(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

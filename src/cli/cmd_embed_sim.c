/* corpuslens embed-sim: cosine similarity matrix of hooked vectors of texts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/analysis/analysis.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"

#define CMD "embed-sim"
#define MAX_TEXTS 1024

static const char USAGE[] =
    "corpuslens embed-sim --model MODEL.h5 --hook NAME [--pool mean|last] [--center]\n"
    "                            [--dims K] TEXT TEXT...";

static const char ABOUT[] =
    "Runs the model on each TEXT (texts may have different lengths; each runs on\n"
    "its own), takes the activation at hook NAME ([T, D]) and pools it to one\n"
    "vector. Prints the cosine similarity matrix of the vectors.\n";

static const char EPILOG[] =
    "NAME is one hook point: hook_embed, hook_pos_embed, ln_final.hook_normalized,\n"
    "embed (the block-0 input: token + position embeddings) or a per-block name\n"
    "with its block, e.g. blocks.0.hook_mlp_out (not attn.hook_pattern).\n"
    "A vector that is zero (e.g. one text with --center) gives nan.\n";

static int run(int argc, char **argv) {
    const char *model = NULL, *hook = NULL, *pool = "mean";
    int center = 0;
    long dims = 0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("hook", 0, "NAME", &hook, "the hook point (see below)"),
        CLI_OPT_CHOICE("pool", 0, &pool, "mean|last",
                       "mean over positions, or the last position"),
        CLI_OPT_FLAG("center", 0, &center, "subtract the mean vector over the texts first"),
        CLI_OPT_INT("dims", 0, "K", &dims, 1, 1L << 30, "use only the first K dimensions (default: all D)"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, "TEXT", 2, MAX_TEXTS, "give at least two TEXTs"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!model || !hook) return cli_usage_error(CMD, "--model and --hook are required");
    const char *const *texts = (const char *const *)argv + first;
    int n = argc - first;
    cl_model *m = cl_model_load(model);
    if (!m) return cli_fail();
    const cl_config *c = &m->cfg;
    int rc = 1, last = !strcmp(pool, "last"), layer;
    cl_hook_point point;
    double *X = NULL, *S = NULL;
    float *act = NULL;
    cl_forward *f = NULL;
    int32_t *ids = NULL;
    if (cl_hook_parse(hook, c->n_layer, &point, &layer)) goto out;
    if (point == CL_HOOK_PATTERN) {
        cl_error("hook '%s': attention patterns are not one vector per position; use another hook", hook);
        goto out;
    }
    if (cl_hook_is_per_layer(point) && layer < 0) {
        char ex[96];
        cl_hook_name(point, 0, ex, sizeof ex);
        cl_error("hook '%s' names every block; give one, e.g. %s (blocks 0..%d)", hook, ex, c->n_layer - 1);
        goto out;
    }
    size_t D = (size_t)cl_hook_width(c, point);
    if (dims > 0 && (size_t)dims > D) {
        cl_error("--dims %ld: the hook has %zu dimensions", dims, D);
        goto out;
    }
    size_t k = dims > 0 ? (size_t)dims : D;
    X = cl_trymalloc((size_t)n * D, sizeof *X, "vectors");
    S = X ? cl_trymalloc((size_t)n * n, sizeof *S, "similarities") : NULL;
    act = S ? cl_trymalloc((size_t)c->block_size * D, sizeof *act, "activation") : NULL;
    f = act ? cl_forward_create(m, 1, c->block_size) : NULL;
    if (!f) goto out;
    for (int i = 0; i < n; i++) {
        size_t T;
        if (cli_encode(m, texts[i], &ids, &T)) {
            cl_error_prefix("text %d: ", i + 1);
            goto out;
        }
        cl_hook hk = {.point = point, .layer = layer, .mode = CL_HOOK_CAPTURE, .out = act};
        if (cl_forward_run(f, ids, 1, (int)T, &hk, 1, CL_LOGITS_NONE, NULL)) goto out;
        free(ids);
        ids = NULL;
        cl_pool_rows(act, (int)T, (int)D, last, X + (size_t)i * D);
    }
    if (cl_cosine_matrix(X, (size_t)n, D, k, center, S)) goto out;
    char name[96];
    cl_hook_name(point, layer, name, sizeof name);
    printf("cosine similarity of %s (%s%s, %zu of %zu dimensions)\n", name,
           last ? "last position" : "mean over positions", center ? ", centred over the texts" : "", k, D);
    for (int i = 0; i < n; i++) printf("[%d] \"%s\"\n", i + 1, texts[i]);
    printf("%5s", "");
    for (int j = 0; j < n; j++) printf(" %8s%d]", "[", j + 1);
    printf("\n");
    for (int i = 0; i < n; i++) {
        char lab[16];
        snprintf(lab, sizeof lab, "[%d]", i + 1);
        printf("%-5s", lab);
        for (int j = 0; j < n; j++) {
            double s = S[(size_t)i * n + j];
            if (isnan(s)) printf(" %10s", "nan");
            else printf(" %10.6f", s);
        }
        printf("\n");
    }
    rc = 0;
out:
    if (rc) cli_fail();
    cl_forward_free(f);
    free(ids);
    free(X);
    free(S);
    free(act);
    cl_model_free(m);
    return rc;
}

int cmd_embed_sim(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

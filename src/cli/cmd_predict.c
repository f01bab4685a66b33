#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/stats.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/model/tokenizer.h"

static const char USAGE[] =
    "corpuslens predict --model MODEL.h5 [--top K] TEXT";

static const char ABOUT[] =
    "Prints the model's next-token distribution after TEXT (softmax at the last\n"
    "position), most likely first, K lines:\n"
    "  <probability, 6 decimals> TAB <token id> TAB <token, C-escaped>\n"
    "A GPT-2 BPE model encodes TEXT with its own tokenizer (any text); its tokens\n"
    "are shown as their bytes (a leading space is part of the token).\n";

static int run(int argc, char **argv) {
    const char *model = NULL;
    long top = 10;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_INT("top", 0, "K", &top, 0, 1 << 21, "print the K most likely tokens; 0 = all"),
        CLI_END,
    };
    const cli_command cmd = {"predict", USAGE, ABOUT, opts, NULL, "TEXT", 1, 1, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!model) return cli_usage_error("predict", "--model is required");
    const char *text = argv[first];
    cl_model *m = cl_model_map_copy(model); /* one forward: huge pages beat mapped 4 KiB pages */
    if (!m) return cli_fail();
    int32_t *ids = NULL;
    size_t n;
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    cl_token_p *e = malloc((size_t)V * sizeof *e);
    cl_forward *f = NULL;
    int rc = 1;
    if (!logits || !e) {
        cl_error("out of memory");
        goto out;
    }
    if (cli_encode(m, text, &ids, &n)) goto out;
    f = cl_forward_create(m, 1, (int)n);
    if (!f || cl_forward_run(f, ids, 1, (int)n, NULL, 0, CL_LOGITS_LAST, logits)) goto out;
    cl_softmax_rows(logits, 1, V);
    for (int i = 0; i < V; i++) e[i] = (cl_token_p){logits[i], i}; /* float -> double: exact, same order */
    cl_token_p_sort(e, (size_t)V);
    if (top == 0 || top > V) top = V;
    for (long i = 0; i < top; i++) {
        char esc[256];
        cl_tok_display(m, e[i].id, esc, sizeof esc);
        printf("%.6f\t%d\t%s\n", e[i].p, e[i].id, esc);
    }
    rc = 0;
out:
    if (rc) cli_fail();
    cl_forward_free(f);
    free(ids);
    free(logits);
    free(e);
    cl_model_free(m);
    return rc;
}

int cmd_predict(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

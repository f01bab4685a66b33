#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/model/tokenizer.h"

static const char *help =
    "usage: corpuslens predict --model MODEL.h5 [--top K] TEXT\n"
    "\n"
    "Prints the model's next-token distribution after TEXT (softmax at the last\n"
    "position), most likely first, K lines (default 10; 0 = all):\n"
    "  <probability, 6 decimals> TAB <token id> TAB <token, C-escaped>\n"
    "A GPT-2 BPE model encodes TEXT with its own tokenizer (any text); its tokens\n"
    "are shown as their bytes (a leading space is part of the token).\n";

typedef struct {
    float p;
    int id;
} entry;

static int by_prob(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

static int run(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    long top = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--top") && v) {
            if (cli_parse_long("predict", "--top", v, 0, 1 << 21, &top)) return 2;
            i++;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc) text = argv[++i];
        } else if (a[0] == '-' && a[1] == '-' && !text) return cli_usage_error("predict", "unknown option '%s'", a);
        else if (!text) text = a;
        else return cli_usage_error("predict", "unexpected argument '%s'", a);
    }
    if (!model) return cli_usage_error("predict", "--model is required");
    if (!text) return cli_usage_error("predict", "TEXT is required");
    cl_model *m = cl_model_load(model);
    if (!m) return cli_fail();
    int32_t *ids = NULL;
    size_t n;
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    entry *e = malloc((size_t)V * sizeof(entry));
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
    for (int i = 0; i < V; i++) e[i] = (entry){logits[i], i};
    qsort(e, (size_t)V, sizeof *e, by_prob);
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

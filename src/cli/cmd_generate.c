#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/model/tokenizer.h"

static const char USAGE[] =
    "corpuslens generate --model MODEL.h5 [--prompt TEXT] [-n N] [--seed S] [--temperature T]";

static const char ABOUT[] =
    "Samples N characters after TEXT from the model's softmax, the context cropped\n"
    "to the last block_size characters. Prints the prompt followed by the sample.\n"
    "A GPT-2 BPE model samples N tokens; without --prompt it starts from\n"
    "<|endoftext|>, as GPT-2 does.\n";

static int run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    long n = 500, seed = 1337;
    double temp = 1.0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("prompt", 0, "TEXT", &prompt, "the text to continue (default: token 0, as the lecture starts)"),
        CLI_OPT_INT("chars", 'n', "N", &n, 0, 100000000, "number of characters to sample"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "sampling seed"),
        CLI_OPT_DOUBLE("temperature", 0, "T", &temp, 1e-6, 100.0, "divide the logits by T before the softmax"),
        CLI_END,
    };
    const cli_command cmd = {"generate", USAGE, ABOUT, opts, NULL, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!model) return cli_usage_error("generate", "--model is required");
    cl_model *m = cl_model_map(model); /* read-only: the weights stay in the file */
    if (!m) return cli_fail();
    const int T = m->cfg.block_size, V = m->cfg.vocab_size;
    int32_t *ctx = NULL;
    size_t len = 0;
    float *logits = malloc((size_t)V * sizeof(float));
    cl_forward *f = cl_forward_create(m, 1, T);
    int rc = 1;
    if (!logits || !f) goto out;
    size_t cap = (size_t)n + (prompt ? strlen(prompt) : 0) + 1;
    ctx = cl_trymalloc(cap, sizeof *ctx, "context");
    if (!ctx) goto out;
    if (prompt && *prompt) {
        int32_t *ids;
        if (cl_tok_encode(m, prompt, strlen(prompt), &ids, &len)) goto out;
        memcpy(ctx, ids, len * sizeof *ids);
        free(ids);
        fputs(prompt, stdout);
    } else if (cl_tok_is_bpe(m)) { /* GPT-2 starts from <|endoftext|> (not printed) */
        const char *eot = cl_bpe_token(m->bpe, V - 1);
        if (!eot || strcmp(eot, "<|endoftext|>")) {
            cl_error("this BPE model has no <|endoftext|> token to start from: give --prompt");
            goto out;
        }
        ctx[0] = V - 1;
        len = 1;
    } else {
        ctx[0] = 0;
        len = 1;
        char buf[8];
        int k = cl_utf8_put(m->vocab[0], buf);
        fwrite(buf, 1, (size_t)k, stdout);
    }
    cl_rng r;
    cl_rng_seed(&r, (uint64_t)seed);
    for (long s = 0; s < n; s++) {
        size_t t = len < (size_t)T ? len : (size_t)T;
        if (cl_forward_run(f, ctx + len - t, 1, (int)t, NULL, 0, CL_LOGITS_LAST, logits)) goto out;
        if (temp != 1.0)
            for (int i = 0; i < V; i++) logits[i] = (float)(logits[i] / temp);
        cl_softmax_rows(logits, 1, V);
        double u = cl_rng_uniform_double(&r), acc = 0.0;
        int next = V - 1;
        for (int i = 0; i < V; i++) {
            acc += logits[i];
            if (u < acc) {
                next = i;
                break;
            }
        }
        ctx[len++] = next;
        char buf[256];
        size_t k = cl_tok_bytes(m, next, buf, sizeof buf);
        fwrite(buf, 1, k, stdout);
        fflush(stdout);
    }
    fputc('\n', stdout);
    rc = 0;
out:
    if (rc) cli_fail();
    cl_forward_free(f);
    free(ctx);
    free(logits);
    cl_model_free(m);
    return rc;
}

int cmd_generate(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

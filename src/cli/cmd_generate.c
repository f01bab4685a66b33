#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/nn/kvcache.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/model/tokenizer.h"

static const char USAGE[] =
    "corpuslens generate --model MODEL.h5 [--prompt TEXT] [-n N] [--seed S] [--temperature T]\n"
    "                    [--ctx T] [--no-cache]";

static const char ABOUT[] =
    "Samples N characters after TEXT from the model's softmax. Prints the prompt\n"
    "followed by the sample. A GPT-2 BPE model samples N tokens; without --prompt it\n"
    "starts from <|endoftext|>, as GPT-2 does.\n"
    "\n"
    "The context is cropped to the model's trained context (saved by `train`, or by\n"
    "`import --ctx`; block_size when unknown): positions past it were never trained,\n"
    "and a model reads garbage there. A key/value cache makes each character cost the\n"
    "same, whatever N: when the cache is full, the older half of the context is\n"
    "dropped and the newer half computed again, so each sample sees between T/2 and T\n"
    "characters. --no-cache computes the last T characters again at every step (the\n"
    "lecture's generate(): each sample sees exactly T; slower).\n";

static const char EPILOG[] = "Progress (characters/s) goes to stderr every few seconds when N >= 1000.\n";

/* progress on stderr for long runs: a redrawn line on a terminal, else a line every 30 s */
typedef struct {
    int tty;
    double t0, last;
} progress;

static void show(progress *p, long done, long total, int final) {
    double now = cli_wtime();
    if (!final && now - p->last < (p->tty ? 0.5 : 30.0)) return;
    p->last = now;
    double el = now - p->t0, rate = el > 0 ? done / el : 0;
    fprintf(stderr, "%scorpuslens generate: %ld/%ld (%.0f%%), %.0f/s%s", p->tty ? "\r" : "", done, total,
            total ? 100.0 * done / total : 100.0, rate, p->tty && !final ? "" : "\n");
    fflush(stderr);
}

static int run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    long n = 500, seed = 1337, ctx_opt = 0;
    int no_cache = 0;
    double temp = 1.0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("prompt", 0, "TEXT", &prompt,
                       "the text to continue (default: token 0, as the lecture starts);\n"
                       "- reads it from standard input"),
        CLI_OPT_INT("chars", 'n', "N", &n, 0, 100000000, "number of characters to sample"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "sampling seed"),
        CLI_OPT_DOUBLE("temperature", 0, "T", &temp, 1e-6, 100.0, "divide the logits by T before the softmax"),
        CLI_OPT_INT("ctx", 0, "T", &ctx_opt, 1, 65536,
                    "crop the context to T positions (default: the model's trained\n"
                    "context, else block_size)"),
        CLI_OPT_FLAG("no-cache", 0, &no_cache, "recompute the last T positions at every step (see above)"),
        CLI_END,
    };
    const cli_command cmd = {"generate", USAGE, ABOUT, opts, EPILOG, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!model) return cli_usage_error("generate", "--model is required");
    char *stdin_text = NULL;
    if (prompt && !strcmp(prompt, "-")) {
        size_t len;
        if (!(stdin_text = cl_read_file("-", (size_t)1 << 26, &len))) return cli_fail();
        prompt = stdin_text;
    }
    cl_model *m = cl_model_map(model); /* read-only: the weights stay in the file */
    if (!m) {
        free(stdin_text);
        return cli_fail();
    }
    const int V = m->cfg.vocab_size;
    int W = m->cfg.trained_ctx > 0 ? m->cfg.trained_ctx : m->cfg.block_size;
    if (ctx_opt > m->cfg.block_size) {
        int rc = cli_usage_error("generate", "--ctx %ld is larger than the model's block_size (%d)", ctx_opt,
                                 m->cfg.block_size);
        cl_model_free(m);
        free(stdin_text);
        return rc;
    }
    if (ctx_opt) W = (int)ctx_opt;
    int32_t *ctx = NULL;
    size_t len = 0;
    float *logits = malloc((size_t)V * sizeof(float));
    cl_forward *f = no_cache ? cl_forward_create(m, 1, W) : NULL;
    cl_kvcache *kv = no_cache ? NULL : cl_kv_create(m, W);
    int rc = 1;
    if (!logits || (!f && !kv)) goto out;
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
    progress pg = {cli_stderr_is_tty(), cli_wtime(), cli_wtime()};
    size_t base = 0; /* the cache holds ctx[base .. base + cl_kv_len) */
    for (long s = 0; s < n; s++) {
        if (kv) {
            if (len - base > (size_t)W || (s == 0 && len > 1)) {
                /* full (keep the newer half), or the prompt: one batched forward */
                size_t keep = s == 0 ? len : (size_t)W / 2 > 0 ? (size_t)W / 2 : 1;
                if (keep > (size_t)W) keep = (size_t)W;
                base = len - keep;
                if (cl_kv_prime(kv, ctx + base, (int)keep, logits)) goto out;
            } else if (cl_kv_step(kv, ctx[len - 1], logits)) goto out;
        } else {
            size_t t = len < (size_t)W ? len : (size_t)W;
            if (cl_forward_run(f, ctx + len - t, 1, (int)t, NULL, 0, CL_LOGITS_LAST, logits)) goto out;
        }
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
        if (n >= 1000) show(&pg, s + 1, n, 0);
    }
    fputc('\n', stdout);
    if (n >= 1000) show(&pg, n, n, 1);
    rc = 0;
out:
    if (rc) cli_fail();
    cl_forward_free(f);
    cl_kv_free(kv);
    free(ctx);
    free(logits);
    free(stdin_text);
    cl_model_free(m);
    return rc;
}

int cmd_generate(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

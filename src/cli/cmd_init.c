#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/model/model.h"

static const char USAGE[] =
    "corpuslens init [--config k=v,...] --vocab-from CORPUS.txt [--seed S] -o MODEL.h5";

static const char ABOUT[] =
    "Writes a randomly initialised model (weights normal(0, 0.02), biases 0,\n"
    "LayerNorm weights 1) whose vocabulary is the sorted unique characters of\n"
    "CORPUS.txt, as the lecture builds it.\n";

static int run(int argc, char **argv) {
    const char *spec = NULL, *vocab_from = NULL, *out = NULL;
    long seed = 1337;
    const cli_option opts[] = {
        CLI_OPT_STRING("config", 0, "SPEC", &spec,
                       "comma-separated key=value over the lecture defaults\n"
                       "(n_layer=6,n_head=6,n_embd=384,block_size=256,activation=relu,\n"
                       "bias=1,qkv_bias=0,head_bias=1,tied_head=0,attn_scale=head_size,\n"
                       "ln_eps=1e-5); vocab_size comes from the corpus"),
        CLI_OPT_STRING("vocab-from", 0, "CORPUS.txt", &vocab_from, "text file whose characters make the vocabulary"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "initialisation seed"),
        CLI_OPT_STRING("output", 'o', "MODEL.h5", &out, "the model file to write"),
        CLI_END,
    };
    const cli_command cmd = {"init", USAGE, ABOUT, opts, NULL, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!vocab_from) return cli_usage_error("init", "--vocab-from is required");
    if (!out) return cli_usage_error("init", "-o is required");
    cl_config c = cl_config_lecture();
    if (spec && cl_config_parse(&c, spec)) return cli_fail();
    if (spec && strstr(spec, "vocab_size"))
        return cli_usage_error("init", "vocab_size comes from --vocab-from; remove it from --config");
    uint32_t *vocab;
    int V;
    if (cl_vocab_from_file(vocab_from, &vocab, &V)) return cli_fail();
    c.vocab_size = V;
    cl_model *m = cl_model_create(&c);
    if (!m) {
        free(vocab);
        return cli_fail();
    }
    memcpy(m->vocab, vocab, (size_t)V * sizeof *vocab);
    free(vocab);
    cl_model_init_random(m, (uint64_t)seed);
    int rc = cl_model_save(m, out);
    if (!rc)
        printf("wrote %s: %d layers, %d heads, n_embd %d, block_size %d, vocab %d, %zu parameters\n", out,
               c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size, cl_model_num_params(&c));
    cl_model_free(m);
    return rc ? cli_fail() : 0;
}

int cmd_init(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

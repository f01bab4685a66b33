/* corpuslens import: PyTorch (.pt) or safetensors checkpoint -> corpuslens
 * model file. One process does the work; under mpirun, rank 0 works and the
 * other ranks wait for its exit status. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/model/import.h"
#include "corpuslens/base/error.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"

static const char *CMD = "import";

static void help(void) {
    printf(
        "usage: corpuslens import CHECKPOINT (--corpus TEXT | --vocab-file TEXT) -o MODEL.h5\n"
        "                         [--n-head N] [--attn-scale head_size|n_embd]\n"
        "       corpuslens import HF_FOLDER -o MODEL.h5\n"
        "\n"
        "HF_FOLDER is a Hugging Face GPT-2 model folder (gpt2, distilgpt2, gpt2-medium, ...):\n"
        "config.json, model.safetensors (or pytorch_model.bin), vocab.json and merges.txt.\n"
        "The GPT-2 BPE tokenizer goes into the model file, so `predict \"any text\"` works\n"
        "from it; --corpus and the other options do not apply.\n"
        "\n"
        "Convert a torch.save file (.pt: a state dict, or a nanoGPT training checkpoint\n"
        "{'model': ..., 'model_args': ...}) or a .safetensors file of the lecture gpt.py\n"
        "model or of nanoGPT into a corpuslens model file. No Python is needed. Only\n"
        "tensors, containers and numbers are read from the pickle (as\n"
        "torch.load(weights_only=True)); any other pickle global is refused.\n"
        "\n"
        "  --corpus TEXT       the training text: the vocabulary is its sorted unique\n"
        "                      characters (as the lecture builds it); its size must\n"
        "                      equal the checkpoint's vocab size\n"
        "  --vocab-file TEXT   the same, for a file listing the characters\n"
        "  -o, --output PATH   the model file to write (written as PATH.tmp, then renamed)\n"
        "  --n-head N          number of heads; required for a nanoGPT state dict without\n"
        "                      model_args (it cannot be derived from the shapes)\n"
        "  --attn-scale S      head_size (1/sqrt(C/H), default, current gpt.py and nanoGPT)\n"
        "                      or n_embd (1/sqrt(C), the lecture-era gpt.py)\n");
}

static int run(int argc, char **argv) {
    const char *in = NULL, *vocab_path = NULL, *out = NULL;
    cl_import_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (in) return cli_usage_error(CMD, "more than one checkpoint: '%s'", a);
            in = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        static const char *const known[] = {"--corpus", "--vocab-file", "--output", "-o",
                                            "--n-head", "--attn-scale"};
        const char *opt = NULL;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++)
            if (strlen(known[k]) == nlen && !strncmp(a, known[k], nlen)) opt = known[k];
        if (!opt) return cli_usage_error(CMD, "unknown option '%s'", a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return cli_usage_error(CMD, "%s needs a value", opt);
        if (!strcmp(opt, "--corpus") || !strcmp(opt, "--vocab-file")) {
            if (vocab_path) return cli_usage_error(CMD, "give --corpus or --vocab-file once");
            vocab_path = v;
        } else if (!strcmp(opt, "--output") || !strcmp(opt, "-o")) {
            out = v;
        } else if (!strcmp(opt, "--n-head")) {
            long h;
            if (cli_parse_long(CMD, opt, v, 1, 16384, &h)) return 2;
            opts.n_head = (int)h;
        } else {
            opts.attn_scale_set = 1;
            if (!strcmp(v, "head_size")) opts.attn_scale = CL_SCALE_HEAD_SIZE;
            else if (!strcmp(v, "n_embd")) opts.attn_scale = CL_SCALE_N_EMBD;
            else return cli_usage_error(CMD, "--attn-scale: '%s' is not head_size or n_embd", v);
        }
    }
    if (!in) return cli_usage_error(CMD, "no checkpoint given");
    if (cl_hf_is_folder(in)) {
        if (vocab_path || opts.n_head || opts.attn_scale_set)
            return cli_usage_error(CMD, "%s is a Hugging Face folder: its config.json and tokenizer files say "
                                        "everything; drop --corpus/--vocab-file/--n-head/--attn-scale", in);
        if (!out) return cli_usage_error(CMD, "-o MODEL.h5 is required");
        double t0 = MPI_Wtime();
        cl_hf_info info;
        cl_model *m = cl_hf_import(in, &info);
        if (!m) return cli_fail();
        double t_read = MPI_Wtime() - t0;
        if (cl_model_save(m, out)) {
            cl_model_free(m);
            return cli_fail();
        }
        const cl_config *c = &m->cfg;
        printf("import: %s: Hugging Face GPT-2 (%s), n_layer %d n_head %d n_embd %d block_size %d vocab %d "
               "(BPE, %zu merges), %s, %s, %zu parameters (%zu in the checkpoint) -> %s in %.2f s (read + convert "
               "%.2f s)\n",
               in, info.weights, c->n_layer, c->n_head, c->n_embd, c->block_size, c->vocab_size,
               cl_bpe_num_merges(m->bpe),
               c->activation == CL_ACT_GELU_TANH ? "gelu_tanh" : c->activation == CL_ACT_GELU ? "gelu" : "relu",
               c->tied_head ? "tied head" : "untied head", cl_model_num_params(c), info.n_params_ckpt, out,
               MPI_Wtime() - t0, t_read);
        cl_model_free(m);
        return 0;
    }
    if (!vocab_path) return cli_usage_error(CMD, "--corpus (or --vocab-file) is required");
    if (!out) return cli_usage_error(CMD, "-o MODEL.h5 is required");

    double t0 = MPI_Wtime();
    uint32_t *vocab = NULL;
    int V = 0;
    if (cl_vocab_from_file(vocab_path, &vocab, &V)) return cli_fail();
    cl_ckpt *ck = cl_ckpt_open(in);
    if (!ck) {
        free(vocab);
        return cli_fail();
    }
    cl_ckpt_layout lay;
    cl_config cfg;
    cl_model *m = NULL;
    if (cl_ckpt_config(ck, &opts, &lay, &cfg) == 0) {
        if (V != cfg.vocab_size)
            cl_error("the vocabulary of %s has %d characters but %s has vocab size %d (its token "
                     "embedding has %d rows)",
                     vocab_path, V, in, cfg.vocab_size, cfg.vocab_size);
        else
            m = cl_ckpt_import(ck, &opts, vocab, V);
    }
    size_t n_params = cl_ckpt_num_params(ck);
    cl_ckpt_close(ck);
    free(vocab);
    if (!m) return cli_fail();
    double t_read = MPI_Wtime() - t0;
    if (cl_model_save(m, out)) {
        cl_model_free(m);
        return cli_fail();
    }
    double t = MPI_Wtime() - t0;
    printf("import: %s: %s layout, n_layer %d n_head %d n_embd %d block_size %d vocab %d, %s, "
           "%zu parameters (%zu in the checkpoint) -> %s in %.2f s (read + convert %.2f s)\n",
           in, cl_ckpt_layout_name(lay), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size,
           cfg.vocab_size, cfg.tied_head ? "tied head" : "untied head",
           cl_model_num_params(&m->cfg), n_params, out, t, t_read);
    cl_model_free(m);
    return 0;
}

int cmd_import(int argc, char **argv) {
    return cli_on_rank0(run, argc, argv);
}

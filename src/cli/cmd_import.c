/* corpuslens import: PyTorch (.pt) or safetensors checkpoint -> corpuslens
 * model file. One process does the work; under mpirun, rank 0 works and the
 * other ranks wait for its exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/model/import.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"

static const char *CMD = "import";

static const char USAGE[] =
    "corpuslens import CHECKPOINT (--corpus TEXT | --vocab-file TEXT | --vocab-from M.h5) -o MODEL.h5\n"
    "                         [--n-head N] [--attn-scale head_size|n_embd] [--ctx T]\n"
    "       corpuslens import HF_FOLDER -o MODEL.h5";

static const char ABOUT[] =
    "Convert a torch.save file (.pt: a state dict, or a nanoGPT training checkpoint\n"
    "{'model': ..., 'model_args': ...}) or a .safetensors file of the lecture gpt.py\n"
    "model or of nanoGPT into a corpuslens model file. No Python is needed. Only\n"
    "tensors, containers and numbers are read from the pickle (as\n"
    "torch.load(weights_only=True)); any other pickle global is refused.\n"
    "\n"
    "HF_FOLDER is a Hugging Face GPT-2 model folder (gpt2, distilgpt2, gpt2-medium, ...):\n"
    "config.json, model.safetensors (or pytorch_model.bin), vocab.json and merges.txt.\n"
    "The GPT-2 BPE tokenizer goes into the model file, so `predict \"any text\"` works\n"
    "from it; --corpus, --vocab-file, --n-head and --attn-scale do not apply.\n";

/* The vocabulary of a corpuslens model file (its /vocab), checked as the model
 * loader checks it. */
static int model_vocab(const char *path, uint32_t **vocab, int *V) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    if (cl_h5_exists(f, "/tokenizer")) { /* a BPE model: no characters to take */
        H5Fclose(f);
        return cl_error("%s is a GPT-2 BPE model (it has a /tokenizer, not a character vocabulary); "
                        "--vocab-from takes a char-level model or corpus file", path);
    }
    int rc = cl_h5_read_vocab(f, "/vocab", vocab, V);
    H5Fclose(f);
    if (rc < 0) return cl_error_prefix("%s: ", path);
    return 0;
}

static int run(int argc, char **argv) {
    const char *vocab_path = NULL, *vocab_file = NULL, *vocab_model = NULL, *out = NULL, *attn_scale = NULL;
    long n_head = 0, ctx = 0;
    cl_import_opts opts = {0};
    const cli_option table[] = {
        CLI_OPT_STRING("corpus", 0, "TEXT", &vocab_path,
                       "the training text: the vocabulary is its sorted unique\n"
                       "characters (as the lecture builds it); its size must\n"
                       "equal the checkpoint's vocab size"),
        CLI_OPT_STRING("vocab-file", 0, "TEXT", &vocab_file, "the same, for a file listing the characters"),
        CLI_OPT_STRING("vocab-from", 0, "M.h5", &vocab_model,
                       "the vocabulary of a corpuslens model file (e.g. the\n"
                       "same model imported before with the whole training text)"),
        CLI_OPT_STRING("output", 'o', "PATH", &out, "the model file to write (written as PATH.tmp, then renamed)"),
        CLI_OPT_INT("n-head", 0, "N", &n_head, 1, 16384,
                    "number of heads; required for a nanoGPT state dict without\n"
                    "model_args (it cannot be derived from the shapes)"),
        CLI_OPT_CHOICE("attn-scale", 0, &attn_scale, "head_size|n_embd",
                       "head_size (1/sqrt(C/H), default, current gpt.py and nanoGPT)\n"
                       "or n_embd (1/sqrt(C), the lecture-era gpt.py)"),
        CLI_OPT_INT("ctx", 0, "T", &ctx, 1, 65536,
                    "the context the model was trained on (the lecture's\n"
                    "block_size at training time), saved with the model: generate\n"
                    "crops its context to it (positions past it were never\n"
                    "trained). Default: unknown (generate uses block_size)"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, table, NULL, "CHECKPOINT", 1, 1, "no checkpoint given"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *in = argv[first];
    if (!!vocab_path + !!vocab_file + !!vocab_model > 1)
        return cli_usage_error(CMD, "give one of --corpus, --vocab-file and --vocab-from");
    if (vocab_file) vocab_path = vocab_file;
    if (vocab_model) vocab_path = vocab_model;
    if (cl_hf_is_folder(in)) {
        if (vocab_path || n_head || attn_scale || ctx)
            return cli_usage_error(CMD, "%s is a Hugging Face folder: its config.json and tokenizer files say "
                                        "everything; drop --corpus/--vocab-file/--vocab-from/--n-head/--attn-scale/--ctx", in);
        if (!out) return cli_usage_error(CMD, "-o MODEL.h5 is required");
        double t0 = cli_wtime();
        cl_hf_info info;
        cl_model *m = cl_hf_import(in, &info);
        if (!m) return cli_fail();
        double t_read = cli_wtime() - t0;
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
               cli_wtime() - t0, t_read);
        cl_model_free(m);
        return 0;
    }
    if (!vocab_path) return cli_usage_error(CMD, "--corpus (or --vocab-file or --vocab-from) is required");
    if (!out) return cli_usage_error(CMD, "-o MODEL.h5 is required");
    opts.n_head = (int)n_head;
    if (attn_scale) {
        opts.attn_scale_set = 1;
        opts.attn_scale = !strcmp(attn_scale, "n_embd") ? CL_SCALE_N_EMBD : CL_SCALE_HEAD_SIZE;
    }

    double t0 = cli_wtime();
    uint32_t *vocab = NULL;
    int V = 0;
    if (vocab_model ? model_vocab(vocab_model, &vocab, &V) : cl_vocab_from_file(vocab_path, &vocab, &V))
        return cli_fail();
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
    if (ctx > m->cfg.block_size) {
        int rc = cli_usage_error(CMD, "--ctx %ld is larger than the model's block_size (%d)", ctx, m->cfg.block_size);
        cl_model_free(m);
        return rc;
    }
    m->cfg.trained_ctx = (int)ctx;
    double t_read = cli_wtime() - t0;
    if (cl_model_save(m, out)) {
        cl_model_free(m);
        return cli_fail();
    }
    double t = cli_wtime() - t0;
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

/* corpuslens prepare: corpus text -> corpus.h5 (unique substrings, next-token
 * counts, prompts). One process does the work; under mpirun, rank 0 works and
 * the other ranks wait for its exit status (one writer, no concurrent I/O). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"

static const char *CMD = "prepare";

/* The vocabulary (or GPT-2 BPE tokenizer: *bpe) and block_size of a
 * corpuslens model file. */
static int model_vocab(const char *path, uint32_t **vocab, int *V, cl_bpe **bpe, long long *block_size) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    int rc = -1;
    char fmt[64] = "";
    hid_t g = cl_h5_exists(f, "/config") ? H5Gopen2(f, "/config", H5P_DEFAULT) : H5I_INVALID_HID;
    if (g < 0 || cl_h5_attr_read_str(g, "format", fmt, sizeof fmt) < 0 ||
        strcmp(fmt, CL_MODEL_FORMAT) != 0) {
        cl_error("%s: not a corpuslens model file (no /config format \"%s\")", path,
                 CL_MODEL_FORMAT);
    } else if (cl_h5_exists(f, "/tokenizer")) {
        long long vs = 0;
        if (cl_h5_attr_read_int(g, "block_size", block_size) < 0 || cl_h5_attr_read_int(g, "vocab_size", &vs) < 0) {
            cl_error_prefix("%s: ", path);
        } else if ((*bpe = cl_bpe_read_h5(f, path))) {
            *V = cl_bpe_vocab_size(*bpe);
            if (vs != *V) {
                cl_error("%s: /tokenizer/tokens has %d entries but vocab_size is %lld", path, *V, vs);
                cl_bpe_free(*bpe);
                *bpe = NULL;
            } else
                rc = 0;
        }
    } else if (cl_h5_attr_read_int(g, "block_size", block_size) < 0 ||
               cl_h5_read_vocab(f, "/vocab", vocab, V) < 0) {
        cl_error_prefix("%s: ", path);
    } else {
        rc = 0;
    }
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return rc;
}

static const char USAGE[] =
    "corpuslens prepare CORPUS --len L (--prompts P [--seed S] | --prompt-file FILE | --prompts 0)\n"
    "                          [--vocab-from MODEL.h5] [--holdout-fraction F] -o CORPUS.h5";

static const char ABOUT[] =
    "Find every unique substring of L characters of the UTF-8 text CORPUS (in order\n"
    "of first occurrence), count the character that follows each occurrence, pick\n"
    "the prompts, and write them all to CORPUS.h5. With --vocab-from a GPT-2 BPE\n"
    "model (train --tokenizer, import of a GPT-2 folder) the text is encoded with\n"
    "its tokenizer and the substrings are token n-grams of L tokens, with sparse\n"
    "next-token counts; corpus.h5 then carries the tokenizer (token_type gpt2-bpe).\n";

/* --holdout-fraction F: the lecture's split. The vocabulary is the whole
 * text's (or the model's); the substrings come from the first
 * n = floor((1 - F) * chars) characters; the rest is kept as /holdout/tokens. */
/* The substrings of the ids (all of them, or the training part with
 * F > 0) of a BPE-encoded text. */
static cl_corpus *from_bpe(const char *text, size_t len, int L, cl_bpe *bpe, double F) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (cl_bpe_encode(bpe, text, len, &ids, &n)) return NULL;
    cl_corpus *c = NULL;
    size_t ntr = F > 0 ? (size_t)((1.0 - F) * (double)n) : n;
    if (n < (size_t)L)
        cl_error("the text has %zu GPT-2 BPE tokens, fewer than --len %d", n, L);
    else if (F > 0 && (ntr < (size_t)L || n - ntr < 1))
        cl_error("--holdout-fraction %g leaves %zu training and %zu held-out tokens (L = %d)", F, ntr, n - ntr, L);
    else if ((c = cl_corpus_from_ids(ids, ntr, L, NULL, cl_bpe_vocab_size(bpe)))) {
        c->corpus_bytes = len;
        c->corpus_chars = n; /* tokens: written as corpus_tokens */
        if (F > 0) {
            c->n_holdout = n - ntr;
            c->holdout_start = ntr;
            c->holdout_fraction = F;
            if (!(c->holdout = cl_trymalloc(n - ntr, sizeof *c->holdout, "held-out text"))) {
                cl_corpus_free(c);
                c = NULL;
            } else
                memcpy(c->holdout, ids + ntr, (n - ntr) * sizeof *ids);
        }
    }
    free(ids);
    return c;
}

static cl_corpus *from_text_holdout(const char *text, size_t len, int L, const uint32_t *vocab_in, int V_in,
                                    double F) {
    uint32_t *vocab = NULL;
    int V = V_in;
    if (vocab_in) {
        vocab = malloc((size_t)V * sizeof *vocab);
        if (!vocab) return cl_error("out of memory"), NULL;
        memcpy(vocab, vocab_in, (size_t)V * sizeof *vocab);
    } else if (cl_vocab_from_text(text, len, &vocab, &V)) return NULL;
    int32_t *ids = cl_trymalloc(len ? len : 1, sizeof *ids, "token ids");
    size_t n = 0;
    cl_corpus *c = NULL;
    if (ids && cl_vocab_encode(vocab, V, text, len, ids, len, &n) == 0) {
        size_t ntr = (size_t)((1.0 - F) * (double)n);
        if (ntr < (size_t)L || n - ntr < 1)
            cl_error("--holdout-fraction %g leaves %zu training and %zu held-out characters (L = %d)", F, ntr, n - ntr, L);
        else if ((c = cl_corpus_from_ids(ids, ntr, L, vocab, V))) {
            c->n_holdout = n - ntr;
            c->holdout_start = ntr;
            c->holdout_fraction = F;
            c->corpus_bytes = len;
            c->corpus_chars = n;
            if (!vocab_in) snprintf(c->vocab_source, sizeof c->vocab_source, "corpus");
            if (!(c->holdout = cl_trymalloc(n - ntr, sizeof *c->holdout, "held-out text"))) {
                cl_corpus_free(c);
                c = NULL;
            } else
                memcpy(c->holdout, ids + ntr, (n - ntr) * sizeof *ids);
        }
    }
    free(ids);
    free(vocab);
    return c;
}

static int run(int argc, char **argv) {
    const char *out = NULL, *prompt_file = NULL, *vocab_from = NULL;
    long L = -1, P = -1, seed = -1;
    double holdout = 0;
    const cli_option opts[] = {
        CLI_OPT_INT("len", 0, "L", &L, 1, CL_CORPUS_MAX_LEN, "substring length in characters"),
        CLI_OPT_INT("prompts", 0, "P", &P, 0, LONG_MAX,
                    "sample P distinct substrings uniformly (partial\n"
                    "Fisher-Yates with xoshiro256**, see corpus.h); 0: no\n"
                    "prompts, a corpus for index, explain and serve (not scan)"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "seed for --prompts (default 1337)"),
        CLI_OPT_STRING("prompt-file", 0, "FILE", &prompt_file, "one 0-based substring index per line, instead of --prompts"),
        CLI_OPT_STRING("vocab-from", 0, "M.h5", &vocab_from,
                       "use the model's vocabulary (and check L <= block_size);\n"
                       "default: the sorted unique characters of CORPUS; a GPT-2\n"
                       "BPE model: token n-grams of L tokens"),
        CLI_OPT_DOUBLE("holdout-fraction", 0, "F", &holdout, 0, 0.999999,
                       "keep the last F of the text out (the lecture's split:\n"
                       "training part = the first floor((1-F) * chars) characters);\n"
                       "substrings, counts and prompts come from the training part,\n"
                       "the rest is stored as /holdout/tokens (explain --eval-text)"),
        CLI_OPT_STRING("output", 'o', "PATH", &out, "the corpus file to write (written as PATH.tmp, then renamed)"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, NULL, "CORPUS", 1, 1, "no corpus file given"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *corpus_path = argv[first];
    int have_seed = seed >= 0;
    if (!have_seed) seed = 1337;
    if (L < 0) return cli_usage_error(CMD, "--len is required");
    if (!out) return cli_usage_error(CMD, "-o OUTPUT is required");
    if (prompt_file && (P >= 0 || have_seed))
        return cli_usage_error(CMD, "--prompt-file excludes --prompts and --seed");
    if (!prompt_file && P < 0) return cli_usage_error(CMD, "give --prompts P or --prompt-file FILE");
    if (P == 0 && have_seed) return cli_usage_error(CMD, "--seed is for --prompts P with P > 0");
    if (!strcmp(out, corpus_path)) return cli_usage_error(CMD, "the output would overwrite the corpus");

    double t0 = cli_wtime();
    uint32_t *vocab = NULL;
    int V = 0;
    long long block_size = 0;
    cl_bpe *bpe = NULL;
    if (vocab_from) {
        if (model_vocab(vocab_from, &vocab, &V, &bpe, &block_size) < 0) return cli_fail();
        if (L > block_size) {
            free(vocab);
            cl_bpe_free(bpe);
            cl_error("--len %ld exceeds the model's block_size %lld (%s)", L, block_size,
                     vocab_from);
            return cli_fail();
        }
    }
    size_t len = 0;
    char *text = cl_read_file(corpus_path, 0, &len);
    if (!text) {
        free(vocab);
        cl_bpe_free(bpe);
        return cli_fail();
    }
    cl_corpus *c = bpe           ? from_bpe(text, len, (int)L, bpe, holdout)
                   : holdout > 0 ? from_text_holdout(text, len, (int)L, vocab, V, holdout)
                                 : cl_corpus_from_text(text, len, (int)L, vocab, V);
    if (!c) {
        cl_error_prefix("%s: ", corpus_path);
        free(text);
        free(vocab);
        cl_bpe_free(bpe);
        return cli_fail();
    }
    c->bpe = bpe; /* the corpus owns it now */
    bpe = NULL;
    cl_sha256_mem(text, len, c->corpus_sha256);
    free(text);
    snprintf(c->corpus_file, sizeof c->corpus_file, "%s", corpus_path);
    if (vocab_from) {
        snprintf(c->vocab_source, sizeof c->vocab_source, "%s", vocab_from);
        if (cl_sha256_file(vocab_from, c->vocab_sha256) < 0) {
            free(vocab);
            cl_corpus_free(c);
            return cli_fail();
        }
    }
    free(vocab);
    double t_build = cli_wtime() - t0;

    int rc = prompt_file ? cl_corpus_read_prompt_file(c, prompt_file)
             : P == 0    ? 0 /* no prompts: index, explain, serve need none */
                         : cl_corpus_sample_prompts(c, (size_t)P, (uint64_t)seed);
    if (rc == 0) rc = cl_corpus_build_suffix_array(c); /* the ∞-gram baselines (issue 23) */
    if (rc == 0) rc = cl_corpus_save(c, out);
    if (rc != 0) {
        cl_corpus_free(c);
        return cli_fail();
    }
    double t = cli_wtime() - t0;
    char from[64];
    snprintf(from, sizeof from, P == 0 ? "none: for index, explain, serve" : "seed %ld", seed);
    printf("prepare: %s: %llu %s (%llu bytes), L = %d: %zu unique %s, "
           "V = %d, %zu next-token pairs, %zu prompts (%s) -> %s in %.2f s (substrings %.2f s)\n",
           corpus_path, (unsigned long long)c->corpus_chars, c->bpe ? "GPT-2 BPE tokens" : "characters",
           (unsigned long long)c->corpus_bytes, c->L, c->n, c->bpe ? "token n-grams" : "substrings", c->V, c->nnz,
           c->n_prompts, prompt_file ? prompt_file : from, out, t, t_build);
    cl_corpus_free(c);
    return 0;
}

int cmd_prepare(int argc, char **argv) {
    return cli_on_rank0(run, argc, argv);
}

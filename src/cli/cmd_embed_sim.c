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
    "                            [--dims K] TEXT TEXT...\n"
    "corpuslens embed-sim --checkpoint F.pt --tensor NAME --vocab WORDS.txt [--nearest K] WORD...";

static const char ABOUT[] =
    "Runs the model on each TEXT (texts may have different lengths; each runs on\n"
    "its own), takes the activation at hook NAME ([T, D]) and pools it to one\n"
    "vector. Prints the cosine similarity matrix of the vectors.\n";

static const char EPILOG[] =
    "NAME is one hook point: hook_embed, hook_pos_embed, ln_final.hook_normalized,\n"
    "embed (the block-0 input: token + position embeddings) or a per-block name\n"
    "with its block, e.g. blocks.0.hook_mlp_out (not attn.hook_pattern).\n"
    "A vector that is zero (e.g. one text with --center) gives nan.\n"
    "\n"
    "With --checkpoint, the rows of any 2-D tensor NAME [N, D] of any checkpoint\n"
    "(.pt read as by `inspect`: nothing in it is imported or called; .safetensors)\n"
    "are the vectors: an embedding table. WORDS.txt names the rows, one per line\n"
    "in row order (N lines; text after a TAB is ignored, as in OpenNMT-py or\n"
    "fairseq vocabulary files with counts). Prints the cosine similarity of the\n"
    "WORDs' rows; --nearest K also lists each WORD's K most similar rows.\n";

#include "corpuslens/base/fileio.h"
#include "corpuslens/ckpt/checkpoint.h"

/* The words of a vocabulary file, one per line (up to a TAB); *n lines. */
static char **read_vocab(const char *path, size_t *n, char **text) {
    size_t len;
    *text = cl_read_file(path, (size_t)1 << 30, &len);
    if (!*text) return NULL;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += (*text)[i] == '\n';
    if (len && (*text)[len - 1] != '\n') lines++;
    char **w = cl_trymalloc(lines ? lines : 1, sizeof *w, "vocabulary");
    if (!w) return NULL;
    size_t k = 0;
    char *p = *text, *end = *text + len;
    while (p < end && k < lines) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        if (nl > p && nl[-1] == '\r') nl[-1] = '\0';
        char *tab = strchr(p, '\t');
        if (tab) *tab = '\0';
        w[k++] = p;
        p = nl + 1;
    }
    *n = k;
    return w;
}

/* The n x n similarity table: columns and rows labelled [1]..[n], 6 decimals. */
static void print_matrix(const double *S, int n) {
    printf("%5s", "");
    for (int j = 0; j < n; j++) printf(" %8s%d]", "[", j + 1);
    printf("\n");
    for (int i = 0; i < n; i++) {
        char lab[16];
        snprintf(lab, sizeof lab, "[%d]", i + 1);
        printf("%-5s", lab);
        for (int j = 0; j < n; j++) {
            double v = S[(size_t)i * n + j];
            if (isnan(v)) printf(" %10s", "nan");
            else printf(" %10.6f", v);
        }
        printf("\n");
    }
}

static int embed_ckpt(const char *ckpath, const char *tname, const char *vpath, long nearest,
                      const char *const *words, int n) {
    int rc = 1;
    char *vtext = NULL, **vocab = NULL;
    double *E = NULL, *X = NULL, *S = NULL, *sim = NULL;
    size_t *row = NULL, *idx = NULL, nv = 0;
    cl_ckpt *ck = cl_ckpt_open_any(ckpath);
    if (!ck) goto out;
    const cl_ckpt_tensor *t = NULL;
    for (size_t i = 0; i < cl_ckpt_num_tensors(ck) && !t; i++)
        if (!strcmp(cl_ckpt_tensor_at(ck, i)->name, tname)) t = cl_ckpt_tensor_at(ck, i);
    if (!t) t = cl_ckpt_find(ck, tname);
    if (!t) {
        cl_error("%s: no tensor '%s' (`corpuslens inspect %s` lists them)", ckpath, tname, ckpath);
        goto out;
    }
    if (t->ndim != 2 || t->shape[0] < 2 || t->shape[1] < 1) {
        cl_error("%s: tensor '%s' is not a 2-D table of at least 2 rows (ndim %d)", ckpath, tname, t->ndim);
        goto out;
    }
    size_t N = t->shape[0], D = t->shape[1];
    vocab = read_vocab(vpath, &nv, &vtext);
    if (!vocab) goto out;
    if (nv != N) {
        cl_error("%s has %zu lines but tensor '%s' has %zu rows: the vocabulary must name every row", vpath,
                 nv, tname, N);
        goto out;
    }
    if (nearest > 0 && (size_t)nearest >= N) {
        cl_error("--nearest %ld: the table has %zu rows", nearest, N);
        goto out;
    }
    /* a view may repeat its storage (stride 0: torch's expand): never let a
     * small file size the table beyond its own bytes */
    if (D > cl_ckpt_file_size(ck) / N) {
        cl_error("%s: tensor '%s' is %zu x %zu but the file has only %zu bytes: refusing (a repeating view, or "
                 "corrupt shapes)",
                 ckpath, tname, N, D, cl_ckpt_file_size(ck));
        goto out;
    }
    E = cl_trymalloc(N * D, sizeof *E, "embedding table");
    X = E ? cl_trymalloc((size_t)n * D, sizeof *X, "vectors") : NULL;
    S = X ? cl_trymalloc((size_t)n * n, sizeof *S, "similarities") : NULL;
    row = S ? cl_trymalloc((size_t)n, sizeof *row, "rows") : NULL;
    if (!row || cl_ckpt_tensor_to_f64(t, E)) goto out;
    for (int i = 0; i < n; i++) {
        size_t r = 0;
        while (r < N && strcmp(vocab[r], words[i])) r++;
        if (r == N) {
            cl_error("'%s' is not in %s", words[i], vpath);
            goto out;
        }
        row[i] = r;
        memcpy(X + (size_t)i * D, E + r * D, D * sizeof *X);
    }
    if (cl_cosine_matrix(X, (size_t)n, D, D, 0, S)) goto out;
    printf("cosine similarity of rows of %s %s [%zu, %zu]\n", ckpath, t->name, N, D);
    for (int i = 0; i < n; i++) printf("[%d] %s (row %zu)\n", i + 1, words[i], row[i]);
    print_matrix(S, n);
    if (nearest > 0) {
        idx = cl_trymalloc((size_t)nearest, sizeof *idx, "nearest");
        sim = idx ? cl_trymalloc((size_t)nearest, sizeof *sim, "nearest") : NULL;
        if (!sim) goto out;
        for (int i = 0; i < n; i++) {
            if (cl_cosine_nearest(E, N, D, row[i], (size_t)nearest, idx, sim)) goto out;
            printf("nearest to %s:", words[i]);
            for (long k = 0; k < nearest; k++)
                if (idx[k] != (size_t)-1) printf("  %s %.6f", vocab[idx[k]], sim[k]);
            printf("\n");
        }
    }
    rc = 0;
out:
    if (rc) cli_fail();
    free(vtext);
    free(vocab);
    free(E);
    free(X);
    free(S);
    free(row);
    free(idx);
    free(sim);
    cl_ckpt_close(ck);
    return rc;
}

#define CMD "embed-sim"
#define MAX_TEXTS 1024

static int run(int argc, char **argv) {
    const char *model = NULL, *hook = NULL, *pool = "mean", *ckpt = NULL, *tensor = NULL, *vocab = NULL;
    int center = 0;
    long dims = 0, nearest = 0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("hook", 0, "NAME", &hook, "the hook point (see below)"),
        CLI_OPT_CHOICE("pool", 0, &pool, "mean|last",
                       "mean over positions, or the last position"),
        CLI_OPT_FLAG("center", 0, &center, "subtract the mean vector over the texts first"),
        CLI_OPT_INT("dims", 0, "K", &dims, 1, 1L << 30, "use only the first K dimensions (default: all D)"),
        CLI_OPT_STRING("checkpoint", 0, "F.pt", &ckpt, "rows of a tensor of any checkpoint instead (see below)"),
        CLI_OPT_STRING("tensor", 0, "NAME", &tensor, "with --checkpoint: the 2-D tensor"),
        CLI_OPT_STRING("vocab", 0, "WORDS.txt", &vocab, "with --checkpoint: the names of the rows"),
        CLI_OPT_INT("nearest", 0, "K", &nearest, 1, 1L << 20, "with --checkpoint: each WORD's K nearest rows"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, "TEXT", 1, MAX_TEXTS, "give at least two TEXTs"};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (ckpt || tensor || vocab || nearest) {
        if (model || hook || center || dims || strcmp(pool, "mean"))
            return cli_usage_error(CMD, "--checkpoint does not go with --model, --hook, --pool, --center, --dims");
        if (!ckpt || !tensor || !vocab)
            return cli_usage_error(CMD, "--checkpoint, --tensor and --vocab go together");
        return embed_ckpt(ckpt, tensor, vocab, nearest, (const char *const *)argv + first, argc - first);
    }
    if (argc - first < 2) return cli_usage_error(CMD, "give at least two TEXTs");
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
    print_matrix(S, n);
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

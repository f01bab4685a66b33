/* Test and benchmark driver of the BPE tokenizer (tokenizer.h), for
 * tests/bpe/bpe_oracle.py and tests/bench/bpe_bench.sh:
 *   bpe_tool ENCODER.json MERGES encode-json CASES.json  -> JSON [[ids], ...]
 *   bpe_tool ENCODER.json MERGES decode-hex IDS.json      -> one hex line per
 *                                                           id list (the bytes)
 *   bpe_tool ENCODER.json MERGES encode-file TEXT          -> ids, one line
 *   bpe_tool ENCODER.json MERGES bench TEXT REPS           -> "bytes seconds"
 *   bpe_tool corpus-check CORPUS.h5                        -> cl_corpus_load_any
 *                                                           (a BPE corpus too):
 *                                                           one summary line
 * CASES.json is a JSON array of strings; IDS.json an array of arrays of ids.
 * Exit 1 with the library's message on stderr on any error. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/tokenizer.h"

static int fail(void) {
    fprintf(stderr, "bpe_tool: %s\n", cl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "corpus-check")) {
        cl_h5_quiet();
        cl_corpus *c = cl_corpus_load_any(argv[2]);
        if (!c) return fail();
        printf("%s: L %d, V %d, %zu n-grams, nnz %zu, %zu prompts, text %zu, held out %zu, %s\n", argv[2], c->L,
               c->V, c->n, c->nnz, c->n_prompts, c->n_text, c->n_holdout, c->bpe ? "gpt2-bpe" : "char");
        cl_corpus_free(c);
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: bpe_tool ENCODER.json MERGES encode-json|decode-hex|encode-file|bench FILE [REPS]\n");
        return 2;
    }
    cl_bpe *b = cl_bpe_from_files(argv[1], argv[2]);
    if (!b) return fail();
    const char *mode = argv[3];
    int rc = 0;
    if (!strcmp(mode, "encode-json") || !strcmp(mode, "decode-hex")) {
        json_error_t je;
        json_t *root = json_load_file(argv[4], JSON_ALLOW_NUL, &je);
        if (!root || !json_is_array(root)) {
            fprintf(stderr, "bpe_tool: %s: not a JSON array\n", argv[4]);
            return 1;
        }
        size_t i;
        json_t *v;
        if (mode[0] == 'e') printf("[");
        json_array_foreach(root, i, v) {
            if (mode[0] == 'e') {
                int32_t *ids;
                size_t n;
                if (cl_bpe_encode(b, json_string_value(v), json_string_length(v), &ids, &n)) {
                    rc = fail();
                    break;
                }
                printf("%s[", i ? ",\n" : "");
                for (size_t k = 0; k < n; k++) printf("%s%d", k ? "," : "", ids[k]);
                printf("]");
                free(ids);
            } else {
                size_t n = json_array_size(v);
                int32_t *ids = malloc((n + 1) * sizeof *ids);
                for (size_t k = 0; k < n; k++) ids[k] = (int32_t)json_integer_value(json_array_get(v, k));
                char *t;
                size_t len;
                if (cl_bpe_decode(b, ids, n, &t, &len)) {
                    free(ids);
                    rc = fail();
                    break;
                }
                for (size_t k = 0; k < len; k++) printf("%02x", (unsigned char)t[k]);
                printf("\n");
                free(t);
                free(ids);
            }
        }
        if (mode[0] == 'e' && !rc) printf("]\n");
        json_decref(root);
    } else if (!strcmp(mode, "encode-file") || !strcmp(mode, "bench")) {
        size_t len;
        char *text = cl_read_file(argv[4], 0, &len);
        if (!text) return fail();
        int reps = argc > 5 ? atoi(argv[5]) : 1;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < reps && !rc; r++) {
            int32_t *ids;
            size_t n;
            if (cl_bpe_encode(b, text, len, &ids, &n)) {
                rc = fail();
                break;
            }
            if (mode[0] == 'e')
                for (size_t k = 0; k < n; k++) printf("%s%d", k ? " " : "", ids[k]);
            if (mode[0] == 'e') printf("\n");
            if (mode[0] == 'b' && r == reps - 1) fprintf(stderr, "bench: %zu tokens\n", n);
            free(ids);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (mode[0] == 'b' && !rc)
            printf("%zu %.6f\n", len * (size_t)reps, (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
        free(text);
    } else {
        fprintf(stderr, "bpe_tool: unknown mode '%s'\n", mode);
        rc = 2;
    }
    cl_bpe_free(b);
    return rc;
}

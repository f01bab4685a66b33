/* corpuslens serve: the corpus text for /api/locate. corpus.h5 stores the
 * unique substrings and their counts, not the text itself, so the text is
 * read once at start-up from the file prepare read (its corpus_file
 * attribute, or serve --text), and only when its SHA-256 is the corpus_sha256
 * that corpus.h5 recorded: locate then shows the very text the counts came
 * from. The path comes from the command line or corpus.h5, never from a
 * request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/base/hash.h"
#include "corpuslens/base/utf8.h"
#include "serve/serve_internal.h"

/* code point -> token id, or -1 (serve_internal.h) */
int32_t sv_lookup(const sv_state *s, uint32_t cp) {
    size_t lo = 0, hi = (size_t)s->V;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->cps[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < (size_t)s->V && s->cps[lo] == cp ? s->ids[lo] : -1;
}

void sv_text_load(sv_state *s, const char *path) {
    const cl_corpus *cp = s->cp;
    s->text = NULL, s->n_text = 0;
    if (cp->bpe) { /* a BPE corpus stores its training tokens (/text/tokens): locate reads them */
        if (!cp->text || !cp->n_text) {
            snprintf(s->text_note, sizeof s->text_note, "the corpus file has no /text/tokens");
            return;
        }
        s->text = malloc(cp->n_text * sizeof *s->text);
        if (!s->text) {
            snprintf(s->text_note, sizeof s->text_note, "out of memory for the corpus tokens");
            return;
        }
        memcpy(s->text, cp->text, cp->n_text * sizeof *s->text);
        s->n_text = cp->n_text;
        snprintf(s->text_path, sizeof s->text_path, "%s (/text/tokens)", s->o->corpus_path);
        s->text_note[0] = 0;
        return;
    }
    if (!path || !*path) {
        snprintf(s->text_note, sizeof s->text_note, "the corpus file names no text file; start serve with --text");
        return;
    }
    snprintf(s->text_path, sizeof s->text_path, "%s", path);
    char sha[65];
    int hit;
    if (cl_sha256_file_cached(path, sha, &hit)) {
        snprintf(s->text_note, sizeof s->text_note, "%s (give --text CORPUS.txt)", cl_last_error());
        return;
    }
    if (!cp->corpus_sha256[0] || strcmp(sha, cp->corpus_sha256)) {
        snprintf(s->text_note, sizeof s->text_note,
                 "%.400s is not the text the corpus file was prepared from (SHA-256 differs)", path);
        return;
    }
    size_t len;
    char *t = cl_read_file(path, 0, &len);
    if (!t) {
        snprintf(s->text_note, sizeof s->text_note, "%s", cl_last_error());
        return;
    }
    int32_t *ids = malloc((len ? len : 1) * sizeof *ids);
    size_t n = 0;
    int bad = !ids;
    for (size_t i = 0; !bad && i < len;) {
        uint32_t c;
        int k = cl_utf8_get((const unsigned char *)t + i, len - i, &c);
        int32_t id = k > 0 ? sv_lookup(s, c) : -1;
        if (id < 0) bad = 1;
        else ids[n++] = id, i += (size_t)k;
    }
    free(t);
    if (bad) {
        free(ids);
        snprintf(s->text_note, sizeof s->text_note, "%.400s: not UTF-8 over the model's vocabulary", path);
        return;
    }
    /* the substrings come from the training part only (prepare --holdout-fraction) */
    if (cp->n_holdout && cp->holdout_start < n) n = (size_t)cp->holdout_start;
    s->text = ids, s->n_text = n, s->text_note[0] = 0;
}

/* UTF-8 and the character vocabulary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/model/model.h"
#include "corpuslens/base/utf8.h"

void cl_token_escape(uint32_t cp, char *buf) {
    switch (cp) {
    case '\n': strcpy(buf, "\\n"); return;
    case '\t': strcpy(buf, "\\t"); return;
    case '\r': strcpy(buf, "\\r"); return;
    case '\\': strcpy(buf, "\\\\"); return;
    case '"': strcpy(buf, "\\\""); return;
    default: break;
    }
    if (cp < 0x20 || cp == 0x7F) {
        snprintf(buf, 16, "\\x%02x", (unsigned)cp);
        return;
    }
    int n = cl_utf8_put(cp, buf);
    buf[n] = '\0';
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int cl_vocab_encode(const uint32_t *vocab, int V, const char *text, size_t len, int32_t *out,
                    size_t max_tokens, size_t *n_tokens) {
    int sorted = 1;
    for (int i = 1; i < V && sorted; i++) sorted = vocab[i - 1] < vocab[i];
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0, n = 0;
    while (pos < len) {
        uint32_t cp;
        int k = cl_utf8_get(s + pos, len - pos, &cp);
        if (k < 0) return cl_error("invalid UTF-8 at byte %zu (character %zu)", pos, n);
        long id = -1;
        if (sorted) {
            const uint32_t *hit = bsearch(&cp, vocab, (size_t)V, sizeof *vocab, cmp_u32);
            if (hit) id = hit - vocab;
        } else {
            for (int i = 0; i < V; i++)
                if (vocab[i] == cp) {
                    id = i;
                    break;
                }
        }
        if (id < 0) {
            char esc[16];
            cl_token_escape(cp, esc);
            return cl_error("character '%s' (U+%04X) at position %zu is not in the model's vocabulary", esc,
                            (unsigned)cp, n);
        }
        if (n < max_tokens) out[n] = (int32_t)id;
        n++;
        pos += (size_t)k;
    }
    *n_tokens = n;
    return 0;
}

int cl_vocab_from_text(const char *text, size_t len, uint32_t **vocab, int *V) {
    /* Presence bitmap over all code points (0x110000 bits = 136 KiB). */
    uint8_t *seen = cl_trycalloc(0x110000 / 8, 1, "vocabulary bitmap");
    if (!seen) return -1;
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0, nchar = 0;
    while (pos < len) {
        uint32_t cp;
        int k = (s[pos] < 0x80) ? (cp = s[pos], 1) : cl_utf8_get(s + pos, len - pos, &cp);
        if (k < 0) {
            free(seen);
            return cl_error("invalid UTF-8 at byte %zu (character %zu)", pos, nchar);
        }
        seen[cp >> 3] |= (uint8_t)(1u << (cp & 7));
        pos += (size_t)k;
        nchar++;
    }
    int n = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) n += (seen[cp >> 3] >> (cp & 7)) & 1;
    if (n == 0) {
        free(seen);
        return cl_error("the text is empty: no vocabulary");
    }
    uint32_t *v = cl_trymalloc((size_t)n, sizeof *v, "vocabulary");
    if (!v) {
        free(seen);
        return -1;
    }
    n = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++)
        if ((seen[cp >> 3] >> (cp & 7)) & 1) v[n++] = cp;
    free(seen);
    *vocab = v;
    *V = n;
    return 0;
}

int cl_vocab_from_file(const char *path, uint32_t **vocab, int *V) {
    size_t len;
    char *buf = cl_read_file(path, 0, &len);
    if (!buf) return -1;
    int rc = cl_vocab_from_text(buf, len, vocab, V);
    free(buf);
    if (rc) cl_error_prefix("%s: ", path);
    return rc;
}

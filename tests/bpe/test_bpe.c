/* BPE tokenizer units that need no oracle: refusals of malformed token and
 * merge tables (each names the entry), merges applied by rank against a
 * brute-force reference written here (every adjacent pair of the current
 * symbols, lowest rank, all occurrences left to right), the cache giving the
 * same ids on a second pass, decode(encode(x)) == x, and the BPE model file
 * round trip (/tokenizer). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/utf8.h"
#include "corpuslens/model/tokenizer.h"

/* GPT-2's byte-to-unicode string of byte b. */
static void bstr(int b, char *out) {
    int n = 0;
    uint32_t cp = 0;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
        uint32_t c = keep ? (uint32_t)x : (uint32_t)(256 + n++);
        if (x == b) cp = c;
    }
    out[cl_utf8_put(cp, out)] = 0;
}

typedef struct {
    char *tok[400];
    int V;
    char *mer[100];
    size_t M;
} table;

static int find(const table *t, const char *s) {
    for (int i = 0; i < t->V; i++)
        if (!strcmp(t->tok[i], s)) return i;
    return -1;
}

/* 256 bytes, then merges building the pieces of `words`. */
static void make_table(table *t, const char *const *words, int nw) {
    memset(t, 0, sizeof *t);
    for (int b = 0; b < 256; b++) {
        t->tok[b] = malloc(8);
        bstr(b, t->tok[b]);
    }
    t->V = 256;
    for (int w = 0; w < nw; w++) {
        char acc[256] = "";
        for (const unsigned char *p = (const unsigned char *)words[w]; *p; p++) {
            char c[8];
            bstr(*p, c);
            if (p != (const unsigned char *)words[w]) {
                char line[300];
                snprintf(line, sizeof line, "%s %s", acc, c);
                int dup = 0;
                for (size_t i = 0; i < t->M; i++) dup |= !strcmp(t->mer[i], line);
                if (!dup) t->mer[t->M++] = strdup(line);
            }
            strcat(acc, c);
            if (find(t, acc) < 0) t->tok[t->V++] = strdup(acc);
        }
    }
}

static void free_table(table *t) {
    for (int i = 0; i < t->V; i++) free(t->tok[i]);
    for (size_t i = 0; i < t->M; i++) free(t->mer[i]);
}

/* Reference BPE of one piece: strings, brute force. */
static int ref_bpe(const table *t, const unsigned char *s, size_t n, int32_t *out) {
    static char sym[256][64];
    int k = 0;
    for (size_t i = 0; i < n; i++) bstr(s[i], sym[k++]);
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < k; i++) {
            char line[200];
            snprintf(line, sizeof line, "%.63s %.63s", sym[i], sym[i + 1]);
            for (size_t r = 0; r < t->M; r++)
                if (!strcmp(t->mer[r], line) && (best < 0 || (int)r < best)) best = (int)r;
        }
        if (best < 0) break;
        char a[64], b[64];
        const char *sp = strchr(t->mer[best], ' ');
        snprintf(a, sizeof a, "%.*s", (int)(sp - t->mer[best]), t->mer[best]);
        snprintf(b, sizeof b, "%s", sp + 1);
        int j = 0;
        for (int i = 0; i < k;) {
            if (i + 1 < k && !strcmp(sym[i], a) && !strcmp(sym[i + 1], b)) {
                snprintf(sym[j++], 64, "%.31s%.31s", a, b);
                i += 2;
            } else {
                if (j != i) memcpy(sym[j], sym[i], 64);
                j++, i++;
            }
        }
        k = j;
    }
    for (int i = 0; i < k; i++) out[i] = find(t, sym[i]);
    return k;
}

static const char *const words[] = {"hello", " hello", "ll", "lll", " the", "the", "aaaa", "aa"};

Test(bpe, merges_by_rank_match_brute_force_and_cache_and_round_trip) {
    table t;
    make_table(&t, words, 8);
    cl_bpe *b = cl_bpe_create((const char *const *)t.tok, t.V, (const char *const *)t.mer, t.M);
    cr_assert(b, "%s", cl_last_error());
    /* single pieces (no spaces inside but a leading one): the pre-tokenizer keeps them whole */
    const char *pieces[] = {"hello", " hello", "llll", "lllll", "aaaaaaa", " the", "thethe", "hellollo", "x", "\xc3\xa9"};
    for (int pass = 0; pass < 2; pass++) /* the second pass reads the cache */
        for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
            int32_t want[256], *got;
            size_t n;
            int k = ref_bpe(&t, (const unsigned char *)pieces[i], strlen(pieces[i]), want);
            cr_assert_eq(cl_bpe_encode(b, pieces[i], strlen(pieces[i]), &got, &n), 0, "%s", cl_last_error());
            cr_assert_eq((int)n, k, "'%s' pass %d: %zu ids, reference %d", pieces[i], pass, n, k);
            for (int j = 0; j < k; j++) cr_assert_eq(got[j], want[j], "'%s' id %d", pieces[i], j);
            char *text;
            size_t len;
            cr_assert_eq(cl_bpe_decode(b, got, n, &text, &len), 0);
            cr_assert(len == strlen(pieces[i]) && !memcmp(text, pieces[i], len));
            free(text);
            free(got);
        }
    /* the pre-tokenizer splits before the merges: " hello hello" is two
     * pieces " hello", each merged alone (no merge "\xc4\xa0 hello" exists:
     * [\xc4\xa0, hello] by rank) */
    int32_t *got, want[16];
    size_t n;
    int k = ref_bpe(&t, (const unsigned char *)" hello", 6, want);
    cr_assert_eq(cl_bpe_encode(b, " hello hello", 12, &got, &n), 0);
    cr_assert_eq((int)n, 2 * k);
    for (int j = 0; j < k; j++) cr_assert(got[j] == want[j] && got[k + j] == want[j]);
    free(got);
    cr_assert_eq(cl_bpe_encode(b, "ab\xe2\x82", 4, &got, &n), -1);
    cr_assert(strstr(cl_last_error(), "invalid UTF-8 at byte 2"), "%s", cl_last_error());
    int32_t bad = t.V;
    char *text;
    size_t len;
    cr_assert_eq(cl_bpe_decode(b, &bad, 1, &text, &len), -1);
    cr_assert(strstr(cl_last_error(), "outside the vocabulary"), "%s", cl_last_error());
    cl_bpe_free(b);
    free_table(&t);
}

Test(bpe, malformed_tables_refused_naming_the_entry) {
    table t;
    make_table(&t, words, 8);
    const char *const *tok = (const char *const *)t.tok, *const *mer = (const char *const *)t.mer;
    /* a missing byte token */
    cr_assert_null(cl_bpe_create(tok + 1, t.V - 1, NULL, 0));
    cr_assert(strstr(cl_last_error(), "byte 0x00"), "%s", cl_last_error());
    /* a merge whose part is not a token */
    const char *m1[] = {"h zz"};
    cr_assert_null(cl_bpe_create(tok, t.V, m1, 1));
    cr_assert(strstr(cl_last_error(), "merge 1 'h zz': its second part 'zz'"), "%s", cl_last_error());
    /* a merge that is not two tokens */
    const char *m2[] = {"h e l"};
    cr_assert_null(cl_bpe_create(tok, t.V, m2, 1));
    cr_assert(strstr(cl_last_error(), "not two tokens"), "%s", cl_last_error());
    /* a merge whose result is not a token */
    const char *m3[] = {"q q"};
    cr_assert_null(cl_bpe_create(tok, t.V, m3, 1));
    cr_assert(strstr(cl_last_error(), "the merged token 'qq'"), "%s", cl_last_error());
    /* a token with a character outside the byte-to-unicode table, and a duplicate */
    char *save = t.tok[t.V - 1];
    t.tok[t.V - 1] = " space";
    cr_assert_null(cl_bpe_create(tok, t.V, mer, t.M));
    cr_assert(strstr(cl_last_error(), "byte-to-unicode"), "%s", cl_last_error());
    t.tok[t.V - 1] = "h";
    cr_assert_null(cl_bpe_create(tok, t.V, mer, 0));
    cr_assert(strstr(cl_last_error(), "'h' appears twice"), "%s", cl_last_error());
    t.tok[t.V - 1] = save;
    free_table(&t);
}

Test(bpe, model_file_keeps_the_tokenizer) {
    table t;
    make_table(&t, words, 8);
    cl_config c = cl_config_lecture();
    c.n_layer = 1, c.n_embd = 16, c.n_head = 2, c.block_size = 8, c.vocab_size = t.V;
    c.activation = CL_ACT_GELU_TANH, c.tied_head = 1, c.head_bias = 0;
    cl_model *m = cl_model_create(&c);
    cr_assert(m);
    cl_model_init_random(m, 3);
    m->bpe = cl_bpe_create((const char *const *)t.tok, t.V, (const char *const *)t.mer, t.M);
    cr_assert(m->bpe, "%s", cl_last_error());
    char path[] = "/tmp/test_bpe_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(cl_model_save(m, path), 0, "%s", cl_last_error());
    cl_model *r = cl_model_load(path);
    cr_assert(r, "%s", cl_last_error());
    cr_assert(cl_tok_is_bpe(r) && r->cfg.activation == CL_ACT_GELU_TANH);
    cr_assert_eq(cl_bpe_num_merges(r->bpe), t.M);
    for (int i = 0; i < t.V; i++) cr_assert_str_eq(cl_bpe_token(r->bpe, i), t.tok[i]);
    for (size_t i = 0; i < t.M; i++) cr_assert_str_eq(cl_bpe_merge(r->bpe, i), t.mer[i]);
    int32_t *a, *b2;
    size_t na, nb;
    cr_assert_eq(cl_tok_encode(m, " the hello\n", 11, &a, &na), 0);
    cr_assert_eq(cl_tok_encode(r, " the hello\n", 11, &b2, &nb), 0);
    cr_assert(na == nb && !memcmp(a, b2, na * sizeof *a));
    char disp[64];
    int32_t want[16];
    int k = ref_bpe(&t, (const unsigned char *)" the", 4, want);
    cr_assert(k >= 1 && a[0] == want[0]);
    char *raw;
    size_t rl;
    cr_assert_eq(cl_bpe_decode(r->bpe, a, 1, &raw, &rl), 0);
    cl_tok_display(r, a[0], disp, sizeof disp); /* printable bytes: shown as they are */
    cr_assert(rl >= 2 && raw[0] == ' ');
    cr_assert_str_eq(disp, raw);
    free(raw);
    cl_tok_display(r, a[na - 1], disp, sizeof disp);
    cr_assert_str_eq(disp, "\\n");
    free(a);
    free(b2);
    cl_model_free(m);
    cl_model_free(r);
    remove(path);
    free_table(&t);
}

/* Unique substrings, next-token counts, prompts and the corpus file.
 * See include/corpuslens/corpus/corpus.h for the contract and the file layout. */
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/corpus/infgram.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/base/rng.h"

/* ---- rolling hash modulo the Mersenne prime 2^61 - 1 ---- */

#define MERSENNE61 ((1ULL << 61) - 1)
#define HASH_BASE 0x0c1f3d5b79a1c3e5ULL /* < 2^61 */

static inline uint64_t mod61_mul(uint64_t a, uint64_t b) {
    unsigned __int128 m = (unsigned __int128)a * b;
    uint64_t r = ((uint64_t)m & MERSENNE61) + (uint64_t)(m >> 61);
    return r >= MERSENNE61 ? r - MERSENNE61 : r;
}
static inline uint64_t mod61_add(uint64_t a, uint64_t b) {
    uint64_t r = a + b;
    return r >= MERSENNE61 ? r - MERSENNE61 : r;
}
static inline uint64_t mod61_sub(uint64_t a, uint64_t b) {
    return a >= b ? a - b : a + MERSENNE61 - b;
}
/* Spread the hash over the table index bits (murmur3 finaliser). */
static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int cmp_i64_pair(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void sort_i32(int32_t *a, size_t n) {
    if (n > 32) {
        qsort(a, n, sizeof *a, cmp_i32);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static cl_corpus *corpus_new(void) {
    cl_corpus *c = cl_trycalloc(1, sizeof *c, "corpus");
    return c;
}

void cl_corpus_free(cl_corpus *c) {
    if (!c) return;
    free(c->vocab);
    cl_bpe_free(c->bpe);
    free(c->tokens);
    free(c->first_offset);
    free(c->next_indptr);
    free(c->next_token);
    free(c->next_count);
    free(c->prompt_index);
    free(c->holdout);
    free(c->text);
    free(c->suffix_array);
    free(c->sorted);
    free(c->prompt_tokens);
    free(c->prompt_sorted_pos);
    cl_corpus_part_free(&c->prompt_part);
    cl_h5_rows_close(c->token_rows);
    free(c);
}

/* ---- reading statistics (cl_corpus_io_stats) ---- */

static unsigned long long io_rows, io_entries;

void cl_corpus_io_stats(unsigned long long *rows, unsigned long long *entries) {
    if (rows) *rows = io_rows;
    if (entries) *entries = io_entries;
}

/* ---- the lexicographic order ---- */

static const int32_t *sort_tokens;
static int sort_L;

static int cmp_sub(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    const int32_t *x = sort_tokens + (size_t)i * sort_L, *y = sort_tokens + (size_t)j * sort_L;
    for (int k = 0; k < sort_L; k++)
        if (x[k] != y[k]) return x[k] < y[k] ? -1 : 1;
    return i < j ? -1 : i > j;
}

int64_t *cl_corpus_sort(const cl_corpus *c) {
    if (!c->tokens) {
        cl_error("the corpus's substrings are not in memory (cannot sort them)");
        return NULL;
    }
    int64_t *perm = cl_trymalloc(c->n ? c->n : 1, sizeof *perm, "substring order");
    if (!perm) return NULL;
    for (size_t i = 0; i < c->n; i++) perm[i] = (int64_t)i;
    sort_tokens = c->tokens;
    sort_L = c->L;
    qsort(perm, c->n, sizeof *perm, cmp_sub);
    return perm;
}

/* Is row a before row b (strictly), lexicographically? */
static int row_less(const int32_t *a, const int32_t *b, int L) {
    for (int k = 0; k < L; k++)
        if (a[k] != b[k]) return a[k] < b[k];
    return 0;
}

cl_corpus *cl_corpus_from_ids(const int32_t *ids, size_t n_ids, int L, const uint32_t *vocab,
                              int V) {
    if (L < 1 || L > CL_CORPUS_MAX_LEN) {
        cl_error("substring length %d is out of range [1, %d]", L, CL_CORPUS_MAX_LEN);
        return NULL;
    }
    if (V < 1) {
        cl_error("empty vocabulary");
        return NULL;
    }
    if (n_ids == 0) {
        cl_error("corpus is empty");
        return NULL;
    }
    if (n_ids < (size_t)L) {
        cl_error("corpus has %zu characters, fewer than the substring length %d", n_ids, L);
        return NULL;
    }
    for (size_t p = 0; p < n_ids; p++)
        if (ids[p] < 0 || ids[p] >= V) {
            cl_error("token id %d at position %zu is outside the vocabulary [0, %d)", (int)ids[p],
                     p, V);
            return NULL;
        }

    const size_t npos = n_ids - (size_t)L + 1; /* windows */
    const size_t nfol = npos - 1;               /* windows with a follower */
    const size_t Ls = (size_t)L;

    cl_corpus *c = corpus_new();
    size_t *table = NULL, *sid = NULL, *bucket = NULL;
    uint64_t *uhash = NULL;
    int32_t *fol = NULL, *scratch = NULL, *touched = NULL;
    if (!c) return NULL;
    c->L = L;
    c->V = V;
    if (vocab) { /* NULL: BPE token ids (the caller sets c->bpe) */
        c->vocab = cl_trymalloc((size_t)V, sizeof *c->vocab, "vocabulary");
        if (!c->vocab) goto fail;
        memcpy(c->vocab, vocab, (size_t)V * sizeof *vocab);
    }

    /* Phase 1: number the windows in order of first occurrence. */
    size_t cap = 16;
    while (cap < 2 * npos) cap <<= 1;
    const size_t mask = cap - 1;
    table = cl_trycalloc(cap, sizeof *table, "substring hash table"); /* sid + 1, 0 = empty */
    sid = cl_trymalloc(npos, sizeof *sid, "substring ids");
    uhash = cl_trymalloc(npos, sizeof *uhash, "substring hashes");
    c->first_offset = cl_trymalloc(npos, sizeof *c->first_offset, "first offsets");
    if (!table || !sid || !uhash || !c->first_offset) goto fail;

    uint64_t top = 1; /* HASH_BASE^(L-1) */
    for (int k = 1; k < L; k++) top = mod61_mul(top, HASH_BASE);
    uint64_t h = 0;
    for (size_t k = 0; k < Ls; k++) h = mod61_add(mod61_mul(h, HASH_BASE), (uint64_t)ids[k] + 1);
    size_t N = 0;
    for (size_t p = 0; p < npos; p++) {
        if (p > 0) {
            h = mod61_sub(h, mod61_mul((uint64_t)ids[p - 1] + 1, top));
            h = mod61_add(mod61_mul(h, HASH_BASE), (uint64_t)ids[p + Ls - 1] + 1);
        }
        size_t s = (size_t)mix64(h) & mask;
        for (;;) {
            size_t e = table[s];
            if (e == 0) {
                table[s] = N + 1;
                uhash[N] = h;
                c->first_offset[N] = (int64_t)p;
                sid[p] = N++;
                break;
            }
            size_t j = e - 1;
            if (uhash[j] == h &&
                !memcmp(ids + (size_t)c->first_offset[j], ids + p, Ls * sizeof *ids)) {
                sid[p] = j;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    free(table);
    table = NULL;
    free(uhash);
    uhash = NULL;
    c->n = N;
    int64_t *shrunk = realloc(c->first_offset, N * sizeof *shrunk);
    if (shrunk) c->first_offset = shrunk;

    c->tokens = cl_trymalloc(N, Ls * sizeof *c->tokens, "substring tokens");
    if (!c->tokens) goto fail;
    for (size_t i = 0; i < N; i++)
        memcpy(c->tokens + i * Ls, ids + (size_t)c->first_offset[i], Ls * sizeof *ids);

    /* Phase 2: bucket the followers by substring (counting sort), then count
     * each bucket's distinct tokens into a CSR row, tokens ascending. */
    bucket = cl_trycalloc(N + 1, sizeof *bucket, "follower buckets");
    fol = cl_trymalloc(nfol ? nfol : 1, sizeof *fol, "followers");
    if (!bucket || !fol) goto fail;
    for (size_t p = 0; p < nfol; p++) bucket[sid[p]]++;
    size_t run = 0;
    for (size_t i = 0; i < N; i++) {
        run += bucket[i];
        bucket[i] = run; /* end of bucket i */
    }
    bucket[N] = run;
    for (size_t p = nfol; p-- > 0;) fol[--bucket[sid[p]]] = ids[p + Ls];
    /* now bucket i = [bucket[i], bucket[i+1]) */
    free(sid);
    sid = NULL;

    c->next_indptr = cl_trymalloc(N + 1, sizeof *c->next_indptr, "next-token row pointers");
    c->next_token = cl_trymalloc(nfol ? nfol : 1, sizeof *c->next_token, "next tokens");
    c->next_count = cl_trymalloc(nfol ? nfol : 1, sizeof *c->next_count, "next-token counts");
    scratch = cl_trycalloc((size_t)V, sizeof *scratch, "count scratch");
    touched = cl_trymalloc((size_t)V, sizeof *touched, "count scratch");
    if (!c->next_indptr || !c->next_token || !c->next_count || !scratch || !touched) goto fail;
    size_t nnz = 0;
    c->next_indptr[0] = 0;
    for (size_t i = 0; i < N; i++) {
        size_t d = 0;
        for (size_t k = bucket[i]; k < bucket[i + 1]; k++) {
            int32_t t = fol[k];
            if (scratch[t] == INT32_MAX) {
                cl_error("next-token count overflows int32 (corpus too large)");
                goto fail;
            }
            if (scratch[t]++ == 0) touched[d++] = t;
        }
        sort_i32(touched, d);
        for (size_t k = 0; k < d; k++) {
            c->next_token[nnz] = touched[k];
            c->next_count[nnz] = scratch[touched[k]];
            scratch[touched[k]] = 0;
            nnz++;
        }
        c->next_indptr[i + 1] = (int64_t)nnz;
    }
    c->nnz = nnz;
    free(bucket);
    free(fol);
    free(scratch);
    free(touched);
    if (nnz) {
        int32_t *t = realloc(c->next_token, nnz * sizeof *t);
        if (t) c->next_token = t;
        t = realloc(c->next_count, nnz * sizeof *t);
        if (t) c->next_count = t;
    }
    c->corpus_chars = n_ids;
    if (!(c->text = cl_trymalloc(n_ids, sizeof *c->text, "training text"))) {
        cl_corpus_free(c);
        return NULL;
    }
    memcpy(c->text, ids, n_ids * sizeof *ids);
    c->n_text = n_ids;
    return c;

fail:
    free(table);
    free(sid);
    free(uhash);
    free(bucket);
    free(fol);
    free(scratch);
    free(touched);
    cl_corpus_free(c);
    return NULL;
}

cl_corpus *cl_corpus_from_text(const char *text, size_t len, int L, const uint32_t *vocab, int V) {
    if (L < 1 || L > CL_CORPUS_MAX_LEN) {
        cl_error("substring length %d is out of range [1, %d]", L, CL_CORPUS_MAX_LEN);
        return NULL;
    }
    if (len == 0) {
        cl_error("corpus is empty");
        return NULL;
    }
    uint32_t *own = NULL;
    if (!vocab) {
        if (cl_vocab_from_text(text, len, &own, &V) < 0) return NULL;
        vocab = own;
    }
    int32_t *ids = cl_trymalloc(len, sizeof *ids, "corpus token ids");
    cl_corpus *c = NULL;
    size_t n_chars = 0;
    if (ids && cl_vocab_encode(vocab, V, text, len, ids, len, &n_chars) == 0) {
        if (n_chars < (size_t)L)
            cl_error("corpus has %zu characters, fewer than the substring length %d", n_chars, L);
        else
            c = cl_corpus_from_ids(ids, n_chars, L, vocab, V);
    }
    if (c) {
        c->corpus_bytes = len;
        c->corpus_chars = n_chars;
        if (own) snprintf(c->vocab_source, sizeof c->vocab_source, "corpus");
    }
    free(ids);
    free(own);
    return c;
}

/* ---- prompts ---- */

int cl_prompts_sample(size_t N, size_t P, uint64_t seed, int64_t *out) {
    if (P < 1) return cl_error("the number of prompts must be at least 1");
    if (P > N) return cl_error("cannot sample %zu prompts from %zu substrings", P, N);
    int64_t *a = cl_trymalloc(N, sizeof *a, "prompt permutation");
    if (!a) return -1;
    for (size_t j = 0; j < N; j++) a[j] = (int64_t)j;
    cl_rng r;
    cl_rng_seed(&r, seed);
    for (size_t i = 0; i < P; i++) {
        size_t j = i + (size_t)cl_rng_below(&r, (uint64_t)(N - i));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
        out[i] = a[i];
    }
    free(a);
    return 0;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

int cl_prompts_parse(const char *text, size_t len, size_t N, const char *name, int64_t **out,
                     size_t *P) {
    if (!name) name = "prompt list";
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    lines++;
    int64_t *idx = cl_trymalloc(lines, sizeof *idx, "prompt indices");
    size_t *seen = cl_trycalloc(N ? N : 1, sizeof *seen, "prompt index table"); /* line + 1 */
    if (!idx || !seen) {
        free(idx);
        free(seen);
        return -1;
    }
    size_t n = 0, line = 0, pos = 0;
    while (pos < len) {
        line++;
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t a = pos, b = end;
        pos = end + 1;
        while (a < b && is_blank(text[a])) a++;
        while (b > a && is_blank(text[b - 1])) b--;
        if (a == b) {
            cl_error("%s:%zu: empty line (expected one substring index per line)", name, line);
            goto fail;
        }
        uint64_t v = 0;
        for (size_t k = a; k < b; k++) {
            unsigned d = (unsigned char)text[k] - '0';
            if (d > 9) {
                cl_error("%s:%zu: '%.*s' is not a non-negative integer", name, line,
                         (int)(b - a < 40 ? b - a : 40), text + a);
                goto fail;
            }
            if (v > (UINT64_MAX - d) / 10) {
                v = UINT64_MAX;
                break;
            }
            v = v * 10 + d;
        }
        if (v >= N) {
            cl_error("%s:%zu: index %.*s is out of range (the corpus has %zu substrings)", name,
                     line, (int)(b - a < 40 ? b - a : 40), text + a, N);
            goto fail;
        }
        if (seen[v]) {
            cl_error("%s:%zu: index %llu repeats line %zu", name, line, (unsigned long long)v,
                     seen[v]);
            goto fail;
        }
        seen[v] = line;
        idx[n++] = (int64_t)v;
    }
    if (n == 0) {
        cl_error("%s: no prompt indices", name);
        goto fail;
    }
    free(seen);
    *out = idx;
    *P = n;
    return 0;
fail:
    free(idx);
    free(seen);
    return -1;
}

int cl_corpus_sample_prompts(cl_corpus *c, size_t P, uint64_t seed) {
    if (P < 1) return cl_error("the number of prompts must be at least 1");
    if (P > c->n)
        return cl_error("cannot sample %zu prompts from %zu substrings", P, c->n);
    int64_t *idx = cl_trymalloc(P, sizeof *idx, "prompt indices");
    if (!idx) return -1;
    if (cl_prompts_sample(c->n, P, seed, idx) < 0) {
        free(idx);
        return -1;
    }
    free(c->prompt_index);
    c->prompt_index = idx;
    c->n_prompts = P;
    c->prompt_source = CL_PROMPTS_SEED;
    c->seed = seed;
    c->prompt_file[0] = c->prompt_file_sha256[0] = '\0';
    return 0;
}

int cl_corpus_read_prompt_file(cl_corpus *c, const char *path) {
    size_t len = 0, P = 0;
    char *text = cl_read_file(path, 0, &len);
    if (!text) return -1;
    int64_t *idx = NULL;
    if (cl_prompts_parse(text, len, c->n, path, &idx, &P) < 0) {
        free(text);
        return -1;
    }
    cl_sha256_mem(text, len, c->prompt_file_sha256);
    free(text);
    free(c->prompt_index);
    c->prompt_index = idx;
    c->n_prompts = P;
    c->prompt_source = CL_PROMPTS_FILE;
    c->seed = 0;
    snprintf(c->prompt_file, sizeof c->prompt_file, "%s", path);
    return 0;
}

/* ---- accessors ---- */

void cl_corpus_next_dense(const cl_corpus *c, size_t i, int32_t *row) {
    memset(row, 0, (size_t)c->V * sizeof *row);
    for (int64_t k = c->next_indptr[i]; k < c->next_indptr[i + 1]; k++)
        row[c->next_token[k]] = c->next_count[k];
}

int64_t cl_corpus_next_total(const cl_corpus *c, size_t i) {
    int64_t s = 0;
    for (int64_t k = c->next_indptr[i]; k < c->next_indptr[i + 1]; k++) s += c->next_count[k];
    return s;
}

int cl_corpus_row(const cl_corpus *c, size_t i, int32_t *out) {
    if (i >= c->n) return cl_error("substring %zu is out of range (%zu substrings)", i, c->n);
    if (c->tokens) {
        memcpy(out, c->tokens + i * (size_t)c->L, (size_t)c->L * sizeof *out);
        return 0;
    }
    if (!c->token_rows || cl_h5_rows_read(c->token_rows, i, out) < 0) return -1;
    for (int k = 0; k < c->L; k++)
        if (out[k] < 0 || out[k] >= c->V)
            return cl_error("/substrings/tokens: id %d at row %zu is outside the vocabulary", (int)out[k], i);
    return 0;
}

/* The bytes of L token ids t into buf (at most cap - 1 bytes, then a NUL):
 * code points' UTF-8 (char-level) or the tokens' bytes (BPE). Returns the
 * byte count written. */
static size_t ngram_text(const cl_corpus *c, const int32_t *t, char *buf, size_t cap) {
    size_t n = 0;
    for (int k = 0; k < c->L; k++) {
        if (c->bpe) {
            size_t len = 0;
            const unsigned char *b = cl_bpe_token_bytes(c->bpe, t[k], &len);
            if (!b) len = 0;
            if (len > cap - 1 - n) len = cap - 1 - n;
            if (len) memcpy(buf + n, b, len);
            n += len;
        } else {
            char u[4];
            size_t len = (size_t)cl_utf8_put(c->vocab[t[k]], u);
            if (len > cap - 1 - n) break;
            memcpy(buf + n, u, len);
            n += len;
        }
    }
    buf[n] = '\0';
    return n;
}

size_t cl_corpus_text_cap(const cl_corpus *c) {
    return (size_t)c->L * (c->bpe ? cl_bpe_max_token_bytes(c->bpe) : 4) + 1;
}

long cl_corpus_row_text(const cl_corpus *c, size_t i, char *buf) {
    return cl_corpus_row_text_n(c, i, buf, 4 * (size_t)c->L + 1);
}

long cl_corpus_row_text_n(const cl_corpus *c, size_t i, char *buf, size_t cap) {
    int32_t t[CL_CORPUS_MAX_LEN];
    if (cl_corpus_row(c, i, t) < 0) return -1;
    return (long)ngram_text(c, t, buf, cap);
}

size_t cl_corpus_tokens_text(const cl_corpus *c, const int32_t *t, char *buf, size_t cap) {
    return ngram_text(c, t, buf, cap);
}

size_t cl_corpus_substring_text(const cl_corpus *c, size_t i, char *buf) {
    return ngram_text(c, cl_corpus_substring(c, i), buf, 4 * (size_t)c->L + 1);
}

/* ---- the corpus file ---- */

/* Chunked + shuffled + gzip(1) dataset when it is big enough to matter,
 * contiguous otherwise (and always for empty ones). */
static int write_ds(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims,
                    const void *data) {
    size_t row_bytes = H5Tget_size(type), total = 1;
    for (int k = 1; k < rank; k++) row_bytes *= (size_t)dims[k];
    for (int k = 0; k < rank; k++) total *= (size_t)dims[k];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = cl_h5_dcpl();
    if (total > 0 && total * H5Tget_size(type) >= (64u << 10)) {
        hsize_t chunk[8];
        for (int k = 0; k < rank; k++) chunk[k] = dims[k];
        size_t rows = (1u << 20) / (row_bytes ? row_bytes : 1);
        if (rows < 1) rows = 1;
        if (rows < chunk[0]) chunk[0] = rows;
        H5Pset_chunk(dcpl, rank, chunk);
        if (H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0 && H5Tget_class(type) != H5T_STRING)
            H5Pset_shuffle(dcpl);
        if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl, 1);
    }
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(file, path, type, s, lcpl, dcpl, H5P_DEFAULT);
    int rc = 0;
    if (d < 0) {
        rc = cl_h5_error_in(file, "cannot create dataset %s", path);
    } else {
        if (total > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = cl_h5_error_in(file, "cannot write dataset %s", path);
        if (H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(file, "cannot write dataset %s", path);
    }
    H5Sclose(s);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    return rc;
}

static int write_prompt_text(hid_t file, const cl_corpus *c) {
    size_t P = c->n_prompts, width = 1, cap = cl_corpus_text_cap(c);
    char *tmp = cl_trymalloc(cap, 1, "prompt text");
    if (!tmp) return -1;
    for (size_t k = 0; k < P; k++) {
        size_t n = ngram_text(c, cl_corpus_substring(c, (size_t)c->prompt_index[k]), tmp, cap);
        if (n > width) width = n;
    }
    char *buf = cl_trycalloc(P, width, "prompt texts");
    if (!buf) {
        free(tmp);
        return -1;
    }
    for (size_t k = 0; k < P; k++) {
        size_t n = ngram_text(c, cl_corpus_substring(c, (size_t)c->prompt_index[k]), tmp, cap);
        memcpy(buf + k * width, tmp, n);
    }
    free(tmp);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, width);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t d = P;
    int rc = write_ds(file, "/prompts/text", t, 1, &d, buf);
    H5Tclose(t);
    free(buf);
    return rc;
}

static int write_contents(hid_t f, const cl_corpus *c) {
    hsize_t N = c->n, L = (hsize_t)c->L, nnz = c->nnz, P = c->n_prompts;
    hsize_t dNL[2] = {N, L}, dN1 = N + 1;
    if (c->bpe ? cl_bpe_write_h5(f, c->bpe) < 0 : cl_h5_write_vocab(f, "/vocab", c->vocab, c->V) < 0) return -1;
    if (write_ds(f, "/substrings/tokens", H5T_NATIVE_INT32, 2, dNL, c->tokens) < 0) return -1;
    if (write_ds(f, "/substrings/first_offset", H5T_NATIVE_INT64, 1, &N, c->first_offset) < 0)
        return -1;
    if (c->tokens) { /* the scan's and the index's shard order (issue 26) */
        int64_t *own = c->sorted ? NULL : cl_corpus_sort(c);
        const int64_t *srt = c->sorted ? c->sorted : own;
        int rc = srt ? write_ds(f, "/substrings/sorted", H5T_NATIVE_INT64, 1, &N, srt) : -1;
        free(own);
        if (rc < 0) return -1;
    }
    if (write_ds(f, "/substrings/next/indptr", H5T_NATIVE_INT64, 1, &dN1, c->next_indptr) < 0)
        return -1;
    if (write_ds(f, "/substrings/next/token", H5T_NATIVE_INT32, 1, &nnz, c->next_token) < 0)
        return -1;
    if (write_ds(f, "/substrings/next/count", H5T_NATIVE_INT32, 1, &nnz, c->next_count) < 0)
        return -1;
    /* no prompts (prepare --prompts 0: a corpus for index, explain, serve): no /prompts */
    if (P && write_ds(f, "/prompts/index", H5T_NATIVE_INT64, 1, &P, c->prompt_index) < 0) return -1;
    if (P && write_prompt_text(f, c) < 0) return -1;
    if (c->suffix_array && c->text && c->n_text) {
        hsize_t nt = c->n_text;
        if (write_ds(f, "/text/tokens", H5T_NATIVE_INT32, 1, &nt, c->text) < 0 ||
            write_ds(f, "/text/suffix_array", H5T_NATIVE_INT64, 1, &nt, c->suffix_array) < 0)
            return -1;
    }
    if (c->n_holdout) {
        hsize_t nh = c->n_holdout;
        if (write_ds(f, "/holdout/tokens", H5T_NATIVE_INT32, 1, &nh, c->holdout) < 0) return -1;
    }

    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (root < 0) return cl_error("cannot open the root group");
    int rc = 0;
    rc |= cl_h5_attr_write_str(root, "format", CL_CORPUS_FORMAT);
    rc |= cl_h5_attr_write_int(root, "format_version", CL_CORPUS_FORMAT_VERSION);
    rc |= cl_h5_attr_write_str(root, "corpus_file", c->corpus_file);
    rc |= cl_h5_attr_write_int(root, "corpus_bytes", (long long)c->corpus_bytes);
    /* BPE: the text's token count instead of its characters; offsets are in tokens */
    rc |= cl_h5_attr_write_int(root, c->bpe ? "corpus_tokens" : "corpus_chars", (long long)c->corpus_chars);
    rc |= cl_h5_attr_write_str(root, "token_type", c->bpe ? "gpt2-bpe" : "char");
    rc |= cl_h5_attr_write_str(root, "next_layout", CL_CORPUS_NEXT_LAYOUT);
    rc |= cl_h5_attr_write_str(root, "corpus_sha256", c->corpus_sha256);
    rc |= cl_h5_attr_write_int(root, "L", c->L);
    rc |= cl_h5_attr_write_int(root, "vocab_size", c->V);
    rc |= cl_h5_attr_write_str(root, "vocab_source", c->vocab_source[0] ? c->vocab_source : "corpus");
    if (c->vocab_sha256[0]) rc |= cl_h5_attr_write_str(root, "vocab_sha256", c->vocab_sha256);
    rc |= cl_h5_attr_write_int(root, "n_substrings", (long long)c->n);
    rc |= cl_h5_attr_write_int(root, "nnz", (long long)c->nnz);
    rc |= cl_h5_attr_write_int(root, "n_prompts", (long long)c->n_prompts);
    if (!c->n_prompts) {
        rc |= cl_h5_attr_write_str(root, "prompt_source", "none");
    } else if (c->prompt_source == CL_PROMPTS_SEED) {
        rc |= cl_h5_attr_write_str(root, "prompt_source", "seed");
        /* stored as the same 64 bits, read back as uint64 */
        rc |= cl_h5_attr_write_int(root, "seed", (long long)c->seed);
        rc |= cl_h5_attr_write_str(root, "sampler", CL_CORPUS_SAMPLER);
    } else {
        rc |= cl_h5_attr_write_str(root, "prompt_source", "file");
        rc |= cl_h5_attr_write_str(root, "prompt_file", c->prompt_file);
        rc |= cl_h5_attr_write_str(root, "prompt_file_sha256", c->prompt_file_sha256);
    }
    if (c->n_holdout) {
        rc |= cl_h5_attr_write_double(root, "holdout_fraction", c->holdout_fraction);
        rc |= cl_h5_attr_write_int(root, "holdout_start", (long long)c->holdout_start);
    }
    if (H5Gclose(root) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write the corpus attributes");
    return rc ? -1 : 0;
}

int cl_corpus_save(const cl_corpus *c, const char *path) {
    if (c->n_prompts > 0 && !c->prompt_index)
        return cl_error("cannot save %s: the corpus has no prompt list", path);
    size_t plen = strlen(path);
    char *tmp = cl_trymalloc(plen + 5, 1, "file name");
    if (!tmp) return -1;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) {
        free(tmp);
        return -1;
    }
    int rc = write_contents(f, c);
    if (cl_h5_finish(f, tmp, rc != 0)) rc = -1;
    if (rc == 0 && cl_commit_file(tmp, path)) rc = -1; /* fsync, rename, fsync the directory */
    if (rc != 0) {
        remove(tmp);
        cl_error_prefix("%s: ", path);
    }
    free(tmp);
    return rc;
}

/* ---- loading ---- */

static int read_opt_str(hid_t root, const char *name, char *buf, size_t n) {
    buf[0] = '\0';
    if (!cl_h5_attr_exists(root, name)) return 0;
    return cl_h5_attr_read_str(root, name, buf, n);
}

static int read_count(hid_t root, const char *name, long long lo, long long hi, long long *v) {
    if (cl_h5_attr_read_int(root, name, v) < 0) return -1;
    if (*v < lo || *v > hi) return cl_error("attribute %s = %lld is out of range", name, *v);
    return 0;
}

/* /prompts/text (fixed-length UTF-8, as written) holds each prompt's
 * substring: a file whose texts disagree with its tokens is refused. */
static const int32_t *prompt_row(const cl_corpus *c, size_t k) {
    return c->prompt_tokens ? c->prompt_tokens + k * (size_t)c->L : cl_corpus_substring(c, (size_t)c->prompt_index[k]);
}

static int check_prompt_text(hid_t f, const cl_corpus *c) {
    hid_t d = H5Dopen2(f, "/prompts/text", H5P_DEFAULT);
    if (d < 0) return cl_error("cannot open /prompts/text");
    hid_t ft = H5Dget_type(d);
    size_t w = ft >= 0 && H5Tis_variable_str(ft) == 0 ? H5Tget_size(ft) : 0;
    int rc = 0;
    char *buf = NULL;
    size_t cap = cl_corpus_text_cap(c);
    char *want = NULL;
    if (w == 0 || w > cap)
        rc = cl_error("/prompts/text is not a fixed-length string of at most %zu bytes", cap);
    else if (!(want = cl_trymalloc(cap, 1, "prompt text")))
        rc = -1;
    else if (!(buf = cl_trymalloc(c->n_prompts, w, "prompt texts")))
        rc = -1;
    if (!rc) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, w);
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) rc = cl_h5_error("cannot read /prompts/text");
        H5Tclose(mt);
    }
    for (size_t k = 0; !rc && k < c->n_prompts; k++) {
        size_t n = ngram_text(c, prompt_row(c, k), want, cap);
        const char *got = buf + k * w;
        if (n > w || memcmp(got, want, n) || (n < w && got[n]))
            rc = cl_error("/prompts/text: entry %zu is not the text of prompt substring %lld", k,
                          (long long)c->prompt_index[k]);
    }
    free(buf);
    free(want);
    if (ft >= 0) H5Tclose(ft);
    H5Dclose(d);
    return rc;
}

static const char *reader_name = "this command";

void cl_corpus_set_reader(const char *name) { reader_name = name && *name ? name : "this command"; }

/* The corpus's token type (root attribute token_type; absent: char, as
 * files written before BPE corpora) and layout: 1 BPE, 0 char, -1 error. */
static int read_token_type(hid_t root) {
    char tt[32] = "char", lay[32] = CL_CORPUS_NEXT_LAYOUT;
    if (read_opt_str(root, "token_type", tt, sizeof tt) < 0 || read_opt_str(root, "next_layout", lay, sizeof lay) < 0)
        return -1;
    if (!cl_h5_attr_exists(root, "token_type")) snprintf(tt, sizeof tt, "char");
    if (!cl_h5_attr_exists(root, "next_layout")) snprintf(lay, sizeof lay, CL_CORPUS_NEXT_LAYOUT);
    if (strcmp(lay, CL_CORPUS_NEXT_LAYOUT))
        return cl_error("next_layout '%s' is not supported (expected '%s')", lay, CL_CORPUS_NEXT_LAYOUT);
    if (!strcmp(tt, "char")) return 0;
    if (!strcmp(tt, "gpt2-bpe")) return 1;
    return cl_error("token_type '%s' is not supported (expected 'char' or 'gpt2-bpe')", tt);
}

/* /substrings/sorted in blocks (hyperslabs): every entry a substring index,
 * each once (a bitmap of N bits), and the sorted position of each prompt
 * into c->prompt_sorted_pos. With `whole` (c->sorted, from memory) instead
 * of the file. 0 or -1. */
static int sorted_pass(hid_t f, cl_corpus *c, const int64_t *whole) {
    const size_t N = c->n, P = c->n_prompts, B = (size_t)1 << 17;
    unsigned char *seen = cl_trycalloc(N / 8 + 1, 1, "sorted order check");
    int64_t *buf = whole ? NULL : cl_trymalloc(B, sizeof *buf, "sorted order");
    int64_t(*pq)[2] = cl_trymalloc(P, sizeof *pq, "prompt positions");
    free(c->prompt_sorted_pos);
    c->prompt_sorted_pos = cl_trymalloc(P, sizeof *c->prompt_sorted_pos, "prompt positions");
    int rc = -1;
    if (!seen || (!whole && !buf) || !pq || !c->prompt_sorted_pos) goto out;
    /* prompts by substring, to look each entry up */
    for (size_t p = 0; p < P; p++) pq[p][0] = c->prompt_index[p], pq[p][1] = (int64_t)p, c->prompt_sorted_pos[p] = -1;
    qsort(pq, P, sizeof *pq, cmp_i64_pair);
    for (size_t k0 = 0; k0 < N; k0 += B) {
        size_t n = N - k0 < B ? N - k0 : B;
        const int64_t *a = whole ? whole + k0 : buf;
        if (!whole && cl_h5_read_rows(f, "/substrings/sorted", H5T_NATIVE_INT64, k0, n, buf) < 0) goto out;
        for (size_t k = 0; k < n; k++) {
            int64_t v = a[k];
            if (v < 0 || (uint64_t)v >= N || (seen[v >> 3] >> (v & 7) & 1)) {
                cl_error("/substrings/sorted: entry %zu (%lld) is %s", k0 + k, (long long)v,
                         v < 0 || (uint64_t)v >= N ? "not a substring index" : "a repeat (not a permutation)");
                goto out;
            }
            seen[v >> 3] |= (unsigned char)(1u << (v & 7));
            size_t lo = 0, hi = P;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (pq[mid][0] < v) lo = mid + 1;
                else hi = mid;
            }
            for (; lo < P && pq[lo][0] == v; lo++) c->prompt_sorted_pos[pq[lo][1]] = (int64_t)(k0 + k);
        }
    }
    rc = 0;
out:
    free(seen), free(buf), free(pq);
    return rc;
}

/* The datasets a partial reader does not use, checked as a whole load
 * checks them (a file is whole or refused) but streamed in blocks: memory
 * O(block), and a bitmap of n bits for a permutation. kind 0: ids in
 * [0, V); 1: a permutation of 0..n-1; 2: non-negative, increasing. */
static int stream_check(hid_t f, const char *path, hid_t type, size_t n, int kind, int V) {
    hsize_t d = n;
    if (cl_h5_check_data(f, path, type, 1, &d) < 0) return -1;
    const size_t B = (size_t)1 << 17;
    int64_t *buf = cl_trymalloc(B, sizeof *buf, "check buffer"), last = -1;
    unsigned char *seen = kind == 1 ? cl_trycalloc(n / 8 + 1, 1, "permutation check") : NULL;
    int rc = !buf || (kind == 1 && !seen) ? -1 : 0;
    for (size_t k0 = 0; !rc && k0 < n; k0 += B) {
        size_t m = n - k0 < B ? n - k0 : B;
        if (cl_h5_read_rows(f, path, H5T_NATIVE_INT64, k0, m, buf) < 0) rc = -1;
        for (size_t k = 0; !rc && k < m; k++) {
            int64_t v = buf[k];
            if (kind == 0 && (v < 0 || v >= V))
                rc = cl_error("%s: entry %zu (%lld) is outside the vocabulary", path, k0 + k, (long long)v);
            else if (kind == 1 && (v < 0 || (uint64_t)v >= n || (seen[v >> 3] >> (v & 7) & 1)))
                rc = cl_error("%s: entry %zu (%lld) is not a position or repeats one (not a permutation)", path,
                              k0 + k, (long long)v);
            else if (kind == 1) seen[v >> 3] |= (unsigned char)(1u << (v & 7));
            else if (kind == 2 && (v < 0 || v <= last)) rc = cl_error("%s: row %zu is not increasing", path, k0 + k);
            last = v;
        }
    }
    free(buf), free(seen);
    return rc;
}

/* cl_corpus_open_part: /substrings/first_offset, /text (both or neither)
 * and /holdout/tokens, without keeping them. */
static int check_unused(hid_t f, const cl_corpus *c) {
    if (stream_check(f, "/substrings/first_offset", H5T_NATIVE_INT64, c->n, 2, 0) < 0) return -1;
    int ht = cl_h5_exists(f, "/text/tokens"), hs = cl_h5_exists(f, "/text/suffix_array");
    if (ht || hs) {
        if (!ht || !hs)
            return cl_error("%s without %s", ht ? "/text/tokens" : "/text/suffix_array", ht ? "/text/suffix_array" : "/text/tokens");
        hsize_t d[8], e[8];
        if (cl_h5_shape(f, "/text/tokens", d) != 1 || d[0] < 1 || d[0] > (hsize_t)INT64_MAX / 8)
            return cl_error("/text/tokens is not a non-empty list");
        if (cl_h5_shape(f, "/text/suffix_array", e) != 1 || e[0] != d[0])
            return cl_error("/text/suffix_array is not a list as long as /text/tokens (%llu)", (unsigned long long)d[0]);
        if (stream_check(f, "/text/tokens", H5T_NATIVE_INT32, (size_t)d[0], 0, c->V) < 0 ||
            stream_check(f, "/text/suffix_array", H5T_NATIVE_INT64, (size_t)d[0], 1, 0) < 0)
            return -1;
    }
    if (cl_h5_exists(f, "/holdout/tokens")) {
        hsize_t d[8];
        if (cl_h5_shape(f, "/holdout/tokens", d) != 1 || d[0] < 1) return cl_error("/holdout/tokens is not a non-empty list");
        if (stream_check(f, "/holdout/tokens", H5T_NATIVE_INT32, (size_t)d[0], 0, c->V) < 0) return -1;
    }
    return 0;
}

/* bpe_ok: 0 refuses a BPE corpus (the message names the command, not
 * prefixed with the path again: *refused is set then). lazy: 0 whole, 1
 * cl_corpus_open, 2 cl_corpus_open_part (returns 1, nothing refused, when
 * the file has no /substrings/sorted: the caller loads it whole), 3
 * cl_corpus_open_rows (as 1, the counts left in the file too) */
static int load_contents(hid_t f, cl_corpus *c, int lazy, int bpe_ok, const char *path, int *refused) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (root < 0) return cl_error("cannot open the root group");
    char fmt[64];
    int rc = -1;
    long long L, V, N, nnz, P, version, v;
    if (!cl_h5_attr_exists(root, "format") ||
        cl_h5_attr_read_str(root, "format", fmt, sizeof fmt) < 0 ||
        strcmp(fmt, CL_CORPUS_FORMAT) != 0) {
        cl_error("not a corpuslens corpus file (no format attribute \"%s\")", CL_CORPUS_FORMAT);
        goto done;
    }
    if (cl_h5_attr_read_int(root, "format_version", &version) < 0) goto done;
    if (version != CL_CORPUS_FORMAT_VERSION) {
        cl_error("corpus format_version %lld is not supported (expected %d)", version,
                 CL_CORPUS_FORMAT_VERSION);
        goto done;
    }
    int is_bpe = read_token_type(root);
    if (is_bpe < 0) goto done;
    if (is_bpe && !bpe_ok) {
        cl_error("%s has BPE token n-grams (sparse counts); %s does not support them yet", path, reader_name);
        *refused = 1;
        goto done;
    }
    if (read_count(root, "L", 1, CL_CORPUS_MAX_LEN, &L) < 0 ||
        read_count(root, "vocab_size", 1, 1 << 21, &V) < 0 ||
        read_count(root, "n_substrings", 1, INT64_MAX / CL_CORPUS_MAX_LEN, &N) < 0 ||
        read_count(root, "nnz", 0, INT64_MAX, &nnz) < 0 ||
        read_count(root, "n_prompts", 0, N, &P) < 0) /* 0: prepare --prompts 0, no /prompts */
        goto done;
    c->L = (int)L;
    c->n = (size_t)N;
    c->nnz = (size_t)nnz;
    c->n_prompts = (size_t)P;
    if (read_opt_str(root, "corpus_file", c->corpus_file, sizeof c->corpus_file) < 0 ||
        read_opt_str(root, "corpus_sha256", c->corpus_sha256, sizeof c->corpus_sha256) < 0 ||
        read_opt_str(root, "vocab_source", c->vocab_source, sizeof c->vocab_source) < 0 ||
        read_opt_str(root, "vocab_sha256", c->vocab_sha256, sizeof c->vocab_sha256) < 0 ||
        read_opt_str(root, "prompt_file", c->prompt_file, sizeof c->prompt_file) < 0 ||
        read_opt_str(root, "prompt_file_sha256", c->prompt_file_sha256,
                     sizeof c->prompt_file_sha256) < 0)
        goto done;
    if (cl_h5_attr_read_int(root, "corpus_bytes", &v) == 0) c->corpus_bytes = (uint64_t)v;
    if (cl_h5_attr_read_int(root, is_bpe ? "corpus_tokens" : "corpus_chars", &v) == 0) c->corpus_chars = (uint64_t)v;
    char src[16];
    if (read_opt_str(root, "prompt_source", src, sizeof src) < 0) goto done;
    if (!strcmp(src, "seed")) {
        c->prompt_source = CL_PROMPTS_SEED;
        if (cl_h5_attr_read_int(root, "seed", &v) < 0) goto done;
        c->seed = (uint64_t)v;
    } else if (!strcmp(src, "file")) {
        c->prompt_source = CL_PROMPTS_FILE;
    }
    /* no prompts is what prepare --prompts 0 writes, and only that: a file whose
       n_prompts says 0 beside a /prompts group or another prompt_source is
       refused, not read as having none */
    if (!c->n_prompts && (strcmp(src, "none") || cl_h5_exists(f, "/prompts"))) {
        cl_error("n_prompts is 0 but the file %s", strcmp(src, "none") ? "does not say prompt_source \"none\""
                                                                      : "has /prompts");
        goto done;
    }

    int Vr = 0;
    if (is_bpe) {
        if (!(c->bpe = cl_bpe_read_h5(f, NULL))) goto done;
        Vr = cl_bpe_vocab_size(c->bpe);
    } else if (cl_h5_read_vocab(f, "/vocab", &c->vocab, &Vr) < 0)
        goto done;
    c->V = Vr;
    if (Vr != V) {
        cl_error("%s has %d entries but vocab_size is %lld", is_bpe ? "/tokenizer/tokens" : "/vocab", Vr, V);
        goto done;
    }
    size_t Ns = c->n, Ls = (size_t)L;
    hsize_t dNL[2] = {Ns, Ls}, dN = Ns, dN1 = Ns + 1, dnnz = c->nnz, dP = c->n_prompts;
    /* every dataset is stored with the shape the attributes give before
       anything is sized by them */
    struct { const char *path; hid_t type; int rank; const hsize_t *dims; } ds[] = {
        {"/substrings/tokens", H5T_NATIVE_INT32, 2, dNL}, {"/substrings/first_offset", H5T_NATIVE_INT64, 1, &dN},
        {"/substrings/next/indptr", H5T_NATIVE_INT64, 1, &dN1}, {"/substrings/next/token", H5T_NATIVE_INT32, 1, &dnnz},
        {"/substrings/next/count", H5T_NATIVE_INT32, 1, &dnnz}, {"/prompts/index", H5T_NATIVE_INT64, 1, &dP},
        {"/prompts/text", H5T_C_S1, 1, &dP}};
    for (size_t k = 0; k < sizeof ds / sizeof *ds; k++)
        if ((c->n_prompts || strncmp(ds[k].path, "/prompts/", 9)) &&
            cl_h5_check_data(f, ds[k].path, ds[k].type, ds[k].rank, ds[k].dims) < 0)
            goto done;
    int has_sorted = cl_h5_exists(f, "/substrings/sorted");
    if (has_sorted && cl_h5_check_data(f, "/substrings/sorted", H5T_NATIVE_INT64, 1, &dN) < 0) goto done;
    if (lazy == 2) {
        if (!has_sorted) {
            rc = 1;
            goto done;
        }
        if (!(c->prompt_index = cl_trymalloc(c->n_prompts, sizeof *c->prompt_index, "prompt indices")) ||
            (c->n_prompts && cl_h5_read_exact(f, "/prompts/index", H5T_NATIVE_INT64, 1, &dP, c->prompt_index) < 0))
            goto done;
        for (size_t k = 0; k < c->n_prompts; k++)
            if (c->prompt_index[k] < 0 || (size_t)c->prompt_index[k] >= Ns) {
                cl_error("/prompts/index: entry %zu (%lld) is not a substring index", k, (long long)c->prompt_index[k]);
                goto done;
            }
        /* the prompts' rows and counts (checked as they are read), their text, their sorted positions */
        if (cl_corpus_read_part(c, c->prompt_index, c->n_prompts, &c->prompt_part) < 0) goto done;
        if (!(c->prompt_tokens = cl_trymalloc(c->n_prompts, Ls * sizeof *c->prompt_tokens, "prompt tokens"))) goto done;
        memcpy(c->prompt_tokens, c->prompt_part.tokens, c->n_prompts * Ls * sizeof *c->prompt_tokens);
        if ((c->n_prompts && check_prompt_text(f, c) < 0) || sorted_pass(f, c, NULL) < 0 || check_unused(f, c) < 0)
            goto done;
        rc = 0;
        goto done;
    }
    if (lazy) { /* 1 or 3 */
        hsize_t sh[8];
        if (!(c->token_rows = cl_h5_rows_open(f, "/substrings/tokens", H5T_NATIVE_INT32, 2, dNL)) ||
            cl_h5_shape(f, "/substrings/first_offset", sh) != 1 || sh[0] != dN) {
            if (c->token_rows) cl_error("dataset /substrings/first_offset is missing or not [%zu]", Ns);
            goto done;
        }
    } else {
        c->tokens = cl_trymalloc(Ns, Ls * sizeof *c->tokens, "substring tokens");
        c->first_offset = cl_trymalloc(Ns, sizeof *c->first_offset, "first offsets");
        if (!c->tokens || !c->first_offset) goto done;
    }
    const int csr = lazy != 3; /* 3: the counts stay in the file (read_part_file checks the rows it reads) */
    if (csr) {
        c->next_indptr = cl_trymalloc(Ns + 1, sizeof *c->next_indptr, "next-token row pointers");
        c->next_token = cl_trymalloc(c->nnz, sizeof *c->next_token, "next tokens");
        c->next_count = cl_trymalloc(c->nnz, sizeof *c->next_count, "next-token counts");
        if (!c->next_indptr || !c->next_token || !c->next_count) goto done;
    }
    c->prompt_index = cl_trymalloc(c->n_prompts, sizeof *c->prompt_index, "prompt indices");
    if (!c->prompt_index) goto done;
    if ((!lazy && (cl_h5_read_exact(f, "/substrings/tokens", H5T_NATIVE_INT32, 2, dNL, c->tokens) < 0 ||
                   cl_h5_read_exact(f, "/substrings/first_offset", H5T_NATIVE_INT64, 1, &dN, c->first_offset) < 0)) ||
        (csr && (cl_h5_read_exact(f, "/substrings/next/indptr", H5T_NATIVE_INT64, 1, &dN1, c->next_indptr) < 0 ||
                 cl_h5_read_exact(f, "/substrings/next/token", H5T_NATIVE_INT32, 1, &dnnz, c->next_token) < 0 ||
                 cl_h5_read_exact(f, "/substrings/next/count", H5T_NATIVE_INT32, 1, &dnnz, c->next_count) < 0)) ||
        (c->n_prompts && cl_h5_read_exact(f, "/prompts/index", H5T_NATIVE_INT64, 1, &dP, c->prompt_index) < 0))
        goto done;
    if (csr) io_entries += c->nnz;
    if (!lazy) io_rows += Ns;

    /* Values (of the tokens and offsets read). */
    for (size_t k = 0; c->tokens && k < Ns * Ls; k++)
        if (c->tokens[k] < 0 || c->tokens[k] >= Vr) {
            cl_error("/substrings/tokens: id %d at row %zu is outside the vocabulary",
                     (int)c->tokens[k], k / Ls);
            goto done;
        }
    for (size_t i = 0; c->first_offset && i < Ns; i++)
        if (c->first_offset[i] < 0 || (i > 0 && c->first_offset[i] <= c->first_offset[i - 1])) {
            cl_error("/substrings/first_offset: row %zu is not increasing", i);
            goto done;
        }
    if (csr && (c->next_indptr[0] != 0 || c->next_indptr[Ns] != (int64_t)c->nnz)) {
        cl_error("/substrings/next/indptr must start at 0 and end at nnz = %zu", c->nnz);
        goto done;
    }
    for (size_t i = 0; csr && i < Ns; i++) {
        int64_t a = c->next_indptr[i], b = c->next_indptr[i + 1];
        if (b < a || b - a > Vr) {
            cl_error("/substrings/next/indptr: row %zu is malformed", i);
            goto done;
        }
        for (int64_t k = a; k < b; k++)
            if (c->next_token[k] < 0 || c->next_token[k] >= Vr ||
                (k > a && c->next_token[k] <= c->next_token[k - 1]) || c->next_count[k] <= 0) {
                cl_error("/substrings/next: row %zu has an invalid token or count", i);
                goto done;
            }
    }
    for (size_t k = 0; k < c->n_prompts; k++)
        if (c->prompt_index[k] < 0 || (size_t)c->prompt_index[k] >= Ns) {
            cl_error("/prompts/index: entry %zu (%lld) is not a substring index", k,
                     (long long)c->prompt_index[k]);
            goto done;
        }
    if (c->tokens && c->n_prompts && check_prompt_text(f, c) < 0) goto done;
    /* cl_corpus_open: the order is not used, but a file is whole or refused:
       one pass checks it is a permutation (its increasing order needs every
       row: the readers that use it check that) */
    if (lazy && has_sorted && sorted_pass(f, c, NULL) < 0) goto done;
    /* the order, when the file has it (whole loads): a permutation, increasing */
    if (has_sorted && c->tokens) {
        if (!(c->sorted = cl_trymalloc(Ns, sizeof *c->sorted, "substring order")) ||
            cl_h5_read_exact(f, "/substrings/sorted", H5T_NATIVE_INT64, 1, &dN, c->sorted) < 0 ||
            sorted_pass(f, c, c->sorted) < 0)
            goto done;
        for (size_t k = 1; k < Ns; k++)
            if (!row_less(cl_corpus_substring(c, (size_t)c->sorted[k - 1]), cl_corpus_substring(c, (size_t)c->sorted[k]),
                          c->L)) {
                cl_error("/substrings/sorted: entries %zu and %zu are not in increasing order of their tokens", k - 1, k);
                goto done;
            }
    }
    if (cl_h5_exists(f, "/holdout/tokens")) {
        hsize_t d[8];
        long long hs = 0;
        if (cl_h5_shape(f, "/holdout/tokens", d) != 1 || d[0] < 1) {
            cl_error("/holdout/tokens is not a non-empty list");
            goto done;
        }
        if (cl_h5_check_data(f, "/holdout/tokens", H5T_NATIVE_INT32, 1, d) < 0) goto done;
        c->n_holdout = (size_t)d[0];
        c->holdout = cl_trymalloc(c->n_holdout, sizeof *c->holdout, "held-out text");
        if (!c->holdout || cl_h5_read_exact(f, "/holdout/tokens", H5T_NATIVE_INT32, 1, d, c->holdout) < 0) goto done;
        for (size_t k = 0; k < c->n_holdout; k++)
            if (c->holdout[k] < 0 || c->holdout[k] >= c->V) {
                cl_error("/holdout/tokens: entry %zu (%d) is outside the vocabulary", k, c->holdout[k]);
                goto done;
            }
        if (cl_h5_attr_exists(root, "holdout_fraction"))
            cl_h5_attr_read_double(root, "holdout_fraction", &c->holdout_fraction);
        if (cl_h5_attr_exists(root, "holdout_start") && cl_h5_attr_read_int(root, "holdout_start", &hs) == 0)
            c->holdout_start = (uint64_t)hs;
    }
    rc = 0;
done:
    H5Gclose(root);
    return rc;
}

/* /text/tokens and /text/suffix_array (optional; both or neither) */
static int load_text(hid_t f, cl_corpus *c) {
    int ht = cl_h5_exists(f, "/text/tokens"), hs = cl_h5_exists(f, "/text/suffix_array");
    if (!ht && !hs) return 0;
    if (!ht || !hs) return cl_error("%s without %s", ht ? "/text/tokens" : "/text/suffix_array",
                                    ht ? "/text/suffix_array" : "/text/tokens");
    hsize_t d[8], e[8];
    if (cl_h5_shape(f, "/text/tokens", d) != 1 || d[0] < 1 || d[0] > (hsize_t)INT64_MAX / 8)
        return cl_error("/text/tokens is not a non-empty list");
    if (cl_h5_shape(f, "/text/suffix_array", e) != 1 || e[0] != d[0])
        return cl_error("/text/suffix_array is not a list as long as /text/tokens (%llu)", (unsigned long long)d[0]);
    size_t n = (size_t)d[0];
    c->text = cl_trymalloc(n, sizeof *c->text, "training text");
    c->suffix_array = cl_trymalloc(n, sizeof *c->suffix_array, "suffix array");
    if (!c->text || !c->suffix_array || cl_h5_read_exact(f, "/text/tokens", H5T_NATIVE_INT32, 1, d, c->text) < 0 ||
        cl_h5_read_exact(f, "/text/suffix_array", H5T_NATIVE_INT64, 1, d, c->suffix_array) < 0)
        return -1;
    for (size_t k = 0; k < n; k++)
        if (c->text[k] < 0 || c->text[k] >= c->V)
            return cl_error("/text/tokens: entry %zu (%d) is outside the vocabulary", k, c->text[k]);
    if (cl_suffix_array_check(c->suffix_array, n, "/text/suffix_array") < 0) return -1;
    c->n_text = n;
    return 0;
}

int cl_corpus_build_suffix_array(cl_corpus *c) {
    if (!c->text || !c->n_text) return cl_error("the corpus has no training text for a suffix array");
    free(c->suffix_array);
    c->suffix_array = cl_suffix_array(c->text, c->n_text, c->V);
    return c->suffix_array ? 0 : -1;
}

/* *fallback (lazy 2): the file has no /substrings/sorted; text: read /text
   (lazy 2 never does) */
static cl_corpus *load_text_opt(const char *path, int lazy, int bpe_ok, int *fallback, int text) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return NULL;
    cl_corpus *c = corpus_new();
    int refused = 0, lc = -1;
    if (c) snprintf(c->path, sizeof c->path, "%s", path), c->partial = lazy == 2;
    /* lazy: the row reader keeps its dataset, and so the file, open after
       H5Fclose (the default weak close degree) */
    if (!c || (lc = load_contents(f, c, lazy, bpe_ok, path, &refused)) < 0 || (lazy != 2 && text && load_text(f, c) < 0)) {
        if (c && !refused) cl_error_prefix("%s: ", path);
        cl_corpus_free(c);
        c = NULL;
    } else if (lc == 1) {
        cl_corpus_free(c);
        c = NULL;
        *fallback = 1;
    }
    H5Fclose(f);
    return c;
}

static cl_corpus *load(const char *path, int lazy, int bpe_ok, int *fallback) {
    return load_text_opt(path, lazy, bpe_ok, fallback, 1);
}

cl_corpus *cl_corpus_open_rows(const char *path, int bpe_ok, int with_text) {
    return load_text_opt(path, 3, bpe_ok, NULL, with_text);
}

cl_corpus *cl_corpus_load(const char *path) { return load(path, 0, 0, NULL); }

cl_corpus *cl_corpus_open(const char *path) { return load(path, 1, 0, NULL); }

cl_corpus *cl_corpus_load_any(const char *path) { return load(path, 0, 1, NULL); }

cl_corpus *cl_corpus_open_any(const char *path) { return load(path, 1, 1, NULL); }

/* ---- a part of the corpus ---- */

void cl_corpus_part_free(cl_corpus_part *pt) {
    if (!pt) return;
    free(pt->id), free(pt->tokens), free(pt->indptr), free(pt->next_token), free(pt->next_count), free(pt->shard_row);
    memset(pt, 0, sizeof *pt);
}

cl_corpus *cl_corpus_open_part(const char *path, int bpe_ok) {
    int fallback = 0;
    cl_corpus *c = load(path, 2, bpe_ok, &fallback);
    if (c || !fallback) return c;
    /* a file written before /substrings/sorted: whole, sorted here */
    if (!(c = load(path, 0, bpe_ok, NULL))) return NULL;
    const size_t P = c->n_prompts, L = (size_t)c->L;
    if (!(c->sorted = cl_corpus_sort(c)) || sorted_pass(-1, c, c->sorted) < 0 ||
        cl_corpus_read_part(c, c->prompt_index, P, &c->prompt_part) < 0 ||
        !(c->prompt_tokens = cl_trymalloc(P, L * sizeof *c->prompt_tokens, "prompt tokens"))) {
        cl_error_prefix("%s: ", path);
        cl_corpus_free(c);
        return NULL;
    }
    memcpy(c->prompt_tokens, c->prompt_part.tokens, P * L * sizeof *c->prompt_tokens);
    return c;
}

int cl_corpus_read_sorted(const cl_corpus *c, size_t a, size_t n, int64_t *out) {
    if (a > c->n || n > c->n - a) return cl_error("sorted positions %zu..%zu are out of range (%zu)", a, a + n, c->n);
    if (n == 0) return 0;
    if (c->sorted) memcpy(out, c->sorted + a, n * sizeof *out);
    else {
        hid_t f = cl_h5_open_read(c->path);
        if (f < 0) return -1;
        int rc = cl_h5_read_rows(f, "/substrings/sorted", H5T_NATIVE_INT64, a, n, out);
        H5Fclose(f);
        if (rc < 0) return cl_error_prefix("%s: ", c->path);
    }
    for (size_t k = 0; k < n; k++)
        if (out[k] < 0 || (uint64_t)out[k] >= c->n)
            return cl_error("%s: /substrings/sorted: entry %zu (%lld) is not a substring index", c->path, a + k,
                            (long long)out[k]);
    return 0;
}

/* The rows and counts of pt->id from the file, in one pass in id order
 * (pt->tokens NULL: the counts only). */
static int read_part_file(const cl_corpus *c, cl_corpus_part *pt) {
    const size_t n = pt->n, L = (size_t)c->L, N = c->n;
    const int V = c->V;
    hsize_t dNL[2] = {N, L}, dN1 = N + 1, dnnz = c->nnz;
    int rc = -1;
    int64_t(*ord)[2] = cl_trymalloc(n ? n : 1, sizeof *ord, "part order");
    int64_t *a = cl_trymalloc(n ? n : 1, sizeof *a, "part rows"), *b = cl_trymalloc(n ? n : 1, sizeof *b, "part rows");
    cl_h5_rows *tr = NULL, *ir = NULL, *kr = NULL, *cr = NULL;
    hid_t f = cl_h5_open_read(c->path);
    if (!ord || !a || !b || f < 0) goto out;
    for (size_t k = 0; k < n; k++) ord[k][0] = pt->id[k], ord[k][1] = (int64_t)k;
    qsort(ord, n, sizeof *ord, cmp_i64_pair);
    if ((pt->tokens && !(tr = cl_h5_rows_open(f, "/substrings/tokens", H5T_NATIVE_INT32, 2, dNL))) ||
        !(ir = cl_h5_rows_open(f, "/substrings/next/indptr", H5T_NATIVE_INT64, 1, &dN1)))
        goto out;
    int64_t first = 0, last = 0, prev_b = 0;
    if (cl_h5_rows_read(ir, 0, &first) < 0 || cl_h5_rows_read(ir, N, &last) < 0) goto out;
    if (first != 0 || last != (int64_t)c->nnz) {
        cl_error("/substrings/next/indptr must start at 0 and end at nnz = %zu", c->nnz);
        goto out;
    }
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)ord[j][0], k = (size_t)ord[j][1];
        int32_t *t = pt->tokens ? pt->tokens + k * L : NULL;
        if (j > 0 && ord[j - 1][0] == ord[j][0]) { /* a repeat: the same row */
            size_t k0 = (size_t)ord[j - 1][1];
            if (t) memcpy(t, pt->tokens + k0 * L, L * sizeof *t);
            a[k] = a[k0], b[k] = b[k0];
            continue;
        }
        if ((t && cl_h5_rows_read(tr, i, t) < 0) || cl_h5_rows_read(ir, i, &a[k]) < 0 ||
            cl_h5_rows_read(ir, i + 1, &b[k]) < 0)
            goto out;
        for (size_t q = 0; t && q < L; q++)
            if (t[q] < 0 || t[q] >= V) {
                cl_error("/substrings/tokens: id %d at row %zu is outside the vocabulary", (int)t[q], i);
                goto out;
            }
        /* rows in id order: their pointers never go back */
        if (a[k] < prev_b || b[k] < a[k] || b[k] - a[k] > V || b[k] > (int64_t)c->nnz) {
            cl_error("/substrings/next/indptr: row %zu is malformed", i);
            goto out;
        }
        prev_b = b[k];
    }
    pt->indptr[0] = 0;
    for (size_t k = 0; k < n; k++) pt->indptr[k + 1] = pt->indptr[k] + (b[k] - a[k]);
    size_t ne = (size_t)pt->indptr[n];
    if (!(pt->next_token = cl_trymalloc(ne ? ne : 1, sizeof *pt->next_token, "next tokens")) ||
        !(pt->next_count = cl_trymalloc(ne ? ne : 1, sizeof *pt->next_count, "next-token counts")) ||
        !(kr = cl_h5_rows_open(f, "/substrings/next/token", H5T_NATIVE_INT32, 1, &dnnz)) ||
        !(cr = cl_h5_rows_open(f, "/substrings/next/count", H5T_NATIVE_INT32, 1, &dnnz)))
        goto out;
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)ord[j][0], k = (size_t)ord[j][1];
        int32_t *tk = pt->next_token + pt->indptr[k], *ct = pt->next_count + pt->indptr[k];
        for (int64_t e = a[k]; e < b[k]; e++, tk++, ct++) {
            if (cl_h5_rows_read(kr, (size_t)e, tk) < 0 || cl_h5_rows_read(cr, (size_t)e, ct) < 0) goto out;
            if (*tk < 0 || *tk >= V || (e > a[k] && *tk <= tk[-1]) || *ct <= 0) {
                cl_error("/substrings/next: row %zu has an invalid token or count", i);
                goto out;
            }
        }
    }
    rc = 0;
out:
    cl_h5_rows_close(tr), cl_h5_rows_close(ir), cl_h5_rows_close(kr), cl_h5_rows_close(cr);
    if (f >= 0) H5Fclose(f);
    free(ord), free(a), free(b);
    if (rc) cl_error_prefix("%s: ", c->path);
    return rc;
}

/* cl_corpus_read_part; tokens 0: cl_corpus_read_counts (no id, no tokens) */
static int read_part(const cl_corpus *c, const int64_t *ids, size_t n, cl_corpus_part *pt, int tokens) {
    memset(pt, 0, sizeof *pt);
    const size_t L = (size_t)c->L;
    for (size_t k = 0; k < n; k++)
        if (ids[k] < 0 || (uint64_t)ids[k] >= c->n)
            return cl_error("substring %lld is out of range (%zu substrings)", (long long)ids[k], c->n);
    pt->n = n, pt->L = c->L;
    if (!(pt->id = cl_trymalloc(n ? n : 1, sizeof *pt->id, "part ids")) ||
        (tokens && !(pt->tokens = cl_trymalloc(n ? n : 1, L * sizeof *pt->tokens, "part tokens"))) ||
        !(pt->indptr = cl_trymalloc(n + 1, sizeof *pt->indptr, "part row pointers"))) {
        cl_corpus_part_free(pt);
        return -1;
    }
    memcpy(pt->id, ids, n * sizeof *ids);
    int rc = 0;
    if ((c->tokens || !tokens) && c->next_indptr) { /* in memory, checked when loaded */
        pt->indptr[0] = 0;
        for (size_t k = 0; k < n; k++) {
            size_t i = (size_t)ids[k];
            if (tokens) memcpy(pt->tokens + k * L, c->tokens + i * L, L * sizeof *pt->tokens);
            pt->indptr[k + 1] = pt->indptr[k] + (c->next_indptr[i + 1] - c->next_indptr[i]);
        }
        size_t ne = (size_t)pt->indptr[n];
        if (!(pt->next_token = cl_trymalloc(ne ? ne : 1, sizeof *pt->next_token, "next tokens")) ||
            !(pt->next_count = cl_trymalloc(ne ? ne : 1, sizeof *pt->next_count, "next-token counts")))
            rc = -1;
        for (size_t k = 0; !rc && k < n; k++) {
            size_t i = (size_t)ids[k], m = (size_t)(c->next_indptr[i + 1] - c->next_indptr[i]);
            memcpy(pt->next_token + pt->indptr[k], c->next_token + c->next_indptr[i], m * sizeof(int32_t));
            memcpy(pt->next_count + pt->indptr[k], c->next_count + c->next_indptr[i], m * sizeof(int32_t));
        }
    } else {
        rc = read_part_file(c, pt);
        if (!rc) io_rows += n, io_entries += (unsigned long long)pt->indptr[n];
    }
    if (rc) cl_corpus_part_free(pt);
    else if (!tokens) free(pt->id), pt->id = NULL;
    return rc;
}

int cl_corpus_read_part(const cl_corpus *c, const int64_t *ids, size_t n, cl_corpus_part *pt) {
    return read_part(c, ids, n, pt, 1);
}

int cl_corpus_read_counts(const cl_corpus *c, const int64_t *ids, size_t n, cl_corpus_part *pt) {
    return read_part(c, ids, n, pt, 0);
}

int cl_counts_set_init(cl_counts_set *s, size_t N) {
    memset(s, 0, sizeof *s);
    s->N = N;
    if (!(s->bits = cl_trycalloc(N / 64 + 1, sizeof *s->bits, "substring set")) ||
        !(s->before = cl_trycalloc(N / 64 + 1, sizeof *s->before, "substring set"))) {
        cl_counts_set_free(s);
        return -1;
    }
    return 0;
}

void cl_counts_set_free(cl_counts_set *s) {
    if (!s) return;
    free(s->bits), free(s->before), free(s->indptr), free(s->next_token), free(s->next_count);
    memset(s, 0, sizeof *s);
}

/* entries [e, ...) of one dataset read in blocks, e never decreasing */
typedef struct {
    hid_t f;
    const char *path;
    int32_t *buf;
    size_t base, m, total;
} seq_reader;

static int seq_get(seq_reader *r, size_t e, int32_t *out) {
    const size_t B = (size_t)1 << 17;
    if (e < r->base || e >= r->base + r->m) {
        r->base = e / B * B;
        r->m = r->total - r->base < B ? r->total - r->base : B;
        if (cl_h5_read_rows(r->f, r->path, H5T_NATIVE_INT32, r->base, r->m, r->buf) < 0) return -1;
    }
    *out = r->buf[e - r->base];
    return 0;
}

int cl_corpus_read_counts_set(const cl_corpus *c, cl_counts_set *s) {
    const size_t N = c->n, W = N / 64 + 1, B = (size_t)1 << 17;
    if (s->N != N) return cl_error("a set of %zu substrings for a corpus of %zu", s->N, N);
    size_t n = 0;
    for (size_t w = 0; w < W; w++) s->before[w] = n, n += (size_t)__builtin_popcountll(s->bits[w]);
    s->n = n;
    free(s->indptr), free(s->next_token), free(s->next_count);
    s->next_token = s->next_count = NULL;
    if (!(s->indptr = cl_trymalloc(n + 1, sizeof *s->indptr, "set row pointers"))) return -1;
    s->indptr[0] = 0;
    if (c->next_indptr) { /* in memory, checked when loaded */
        size_t j = 0;
        for (size_t i = 0; i < N; i++)
            if (s->bits[i >> 6] >> (i & 63) & 1) s->indptr[j + 1] = s->indptr[j] + (c->next_indptr[i + 1] - c->next_indptr[i]), j++;
        size_t ne = (size_t)s->indptr[n];
        if (!(s->next_token = cl_trymalloc(ne ? ne : 1, sizeof(int32_t), "next tokens")) ||
            !(s->next_count = cl_trymalloc(ne ? ne : 1, sizeof(int32_t), "next-token counts")))
            return -1;
        j = 0;
        for (size_t i = 0; i < N; i++)
            if (s->bits[i >> 6] >> (i & 63) & 1) {
                size_t a = (size_t)c->next_indptr[i], m = (size_t)(c->next_indptr[i + 1] - c->next_indptr[i]);
                memcpy(s->next_token + s->indptr[j], c->next_token + a, m * sizeof(int32_t));
                memcpy(s->next_count + s->indptr[j], c->next_count + a, m * sizeof(int32_t));
                j++;
            }
        return 0;
    }
    int rc = -1;
    int64_t *ip = cl_trymalloc(B + 1, sizeof *ip, "row pointers");
    int32_t *tb = cl_trymalloc(B, sizeof *tb, "next tokens"), *cb = cl_trymalloc(B, sizeof *cb, "next-token counts");
    hid_t f = ip && tb && cb ? cl_h5_open_read(c->path) : -1;
    if (f < 0) goto out;
    seq_reader tr = {f, "/substrings/next/token", tb, 0, 0, c->nnz}, cr = {f, "/substrings/next/count", cb, 0, 0, c->nnz};
    for (int pass = 0; pass < 2; pass++) {
        size_t j = 0;
        for (size_t k0 = 0; k0 < N; k0 += B) {
            size_t m = N - k0 < B ? N - k0 : B;
            if (cl_h5_read_rows(f, "/substrings/next/indptr", H5T_NATIVE_INT64, k0, m + 1, ip) < 0) goto out;
            for (size_t k = 0; k < m; k++) {
                size_t i = k0 + k;
                int64_t a = ip[k], b = ip[k + 1];
                if ((i == 0 && a != 0) || b < a || b - a > c->V || b > (int64_t)c->nnz || (i + 1 == N && b != (int64_t)c->nnz)) {
                    cl_error("/substrings/next/indptr: row %zu is malformed", i);
                    goto out;
                }
                if (!(s->bits[i >> 6] >> (i & 63) & 1)) continue;
                if (pass == 0) s->indptr[j + 1] = s->indptr[j] + (b - a);
                else {
                    int32_t *tk = s->next_token + s->indptr[j], *ct = s->next_count + s->indptr[j];
                    for (int64_t e = a; e < b; e++, tk++, ct++) {
                        if (seq_get(&tr, (size_t)e, tk) < 0 || seq_get(&cr, (size_t)e, ct) < 0) goto out;
                        if (*tk < 0 || *tk >= c->V || (e > a && *tk <= tk[-1]) || *ct <= 0) {
                            cl_error("/substrings/next: row %zu has an invalid token or count", i);
                            goto out;
                        }
                    }
                }
                j++;
            }
        }
        if (pass == 0) {
            size_t ne = (size_t)s->indptr[n];
            if (!(s->next_token = cl_trymalloc(ne ? ne : 1, sizeof(int32_t), "next tokens")) ||
                !(s->next_count = cl_trymalloc(ne ? ne : 1, sizeof(int32_t), "next-token counts")))
                goto out;
        }
    }
    io_rows += n, io_entries += (unsigned long long)s->indptr[n];
    rc = 0;
out:
    if (f >= 0) H5Fclose(f);
    free(ip), free(tb), free(cb);
    if (rc) cl_error_prefix("%s: ", c->path);
    return rc;
}

int cl_corpus_next_dense_read(const cl_corpus *c, size_t i, int32_t *row) {
    if (i >= c->n) return cl_error("substring %zu is out of range (%zu substrings)", i, c->n);
    if (c->next_indptr) {
        cl_corpus_next_dense(c, i, row);
        return 0;
    }
    cl_corpus_part pt;
    int64_t id = (int64_t)i;
    if (cl_corpus_read_counts(c, &id, 1, &pt) < 0) return -1;
    memset(row, 0, (size_t)c->V * sizeof *row);
    for (int64_t k = 0; k < pt.indptr[1]; k++) row[pt.next_token[k]] = pt.next_count[k];
    cl_corpus_part_free(&pt);
    return 0;
}

int cl_corpus_read_shards(const cl_corpus *c, const size_t *shards, size_t ns, size_t S, cl_corpus_part *pt) {
    memset(pt, 0, sizeof *pt);
    const size_t N = c->n, L = (size_t)c->L;
    size_t *row = cl_trymalloc(ns + 1, sizeof *row, "shard rows");
    if (!row) return -1;
    if (S < 1) {
        free(row);
        return cl_error("shard size 0");
    }
    row[0] = 0;
    for (size_t j = 0; j < ns; j++) {
        if (shards[j] >= (N + S - 1) / S) {
            free(row);
            return cl_error("shard %zu is out of range", shards[j]);
        }
        size_t s0 = shards[j] * S;
        row[j + 1] = row[j] + (N - s0 < S ? N - s0 : S) + (s0 > 0); /* and the row before */
    }
    int64_t *ids = cl_trymalloc(row[ns] ? row[ns] : 1, sizeof *ids, "shard ids");
    int rc = ids ? 0 : -1;
    for (size_t j = 0; !rc && j < ns; j++) {
        size_t s0 = shards[j] * S, b = s0 > 0;
        rc = cl_corpus_read_sorted(c, s0 - b, row[j + 1] - row[j], ids + row[j]);
    }
    cl_corpus_part all;
    memset(&all, 0, sizeof all);
    if (!rc) rc = cl_corpus_read_part(c, ids, row[ns], &all);
    /* the order: each row after the one before it */
    for (size_t j = 0; !rc && j < ns; j++)
        for (size_t r = row[j] + 1; r < row[j + 1]; r++)
            if (!row_less(all.tokens + (r - 1) * L, all.tokens + r * L, c->L)) {
                size_t pos = shards[j] * S - (shards[j] > 0) + (r - row[j]);
                rc = cl_error("%s: /substrings/sorted: entries %zu and %zu are not in increasing order of their tokens",
                              c->path, pos - 1, pos);
            }
    free(ids);
    if (rc) {
        cl_corpus_part_free(&all);
        free(row);
        return -1;
    }
    /* drop the rows before (kept only for the check) */
    size_t w = 0, we = 0;
    pt->n_shards = ns, pt->shard_row = row, pt->L = c->L;
    size_t *nrow = cl_trymalloc(ns + 1, sizeof *nrow, "shard rows");
    if (!nrow) {
        cl_corpus_part_free(&all);
        free(row);
        memset(pt, 0, sizeof *pt);
        return -1;
    }
    nrow[0] = 0;
    all.indptr[0] = 0;
    int64_t *ip = all.indptr;
    int64_t e_prev = 0; /* original start of row r */
    for (size_t j = 0; j < ns; j++) {
        for (size_t r = row[j]; r < row[j + 1]; r++) {
            int64_t e0 = e_prev, e1 = ip[r + 1];
            e_prev = e1;
            if (r == row[j] && shards[j] > 0) continue;
            all.id[w] = all.id[r];
            memmove(all.tokens + w * L, all.tokens + r * L, L * sizeof *all.tokens);
            memmove(all.next_token + we, all.next_token + e0, (size_t)(e1 - e0) * sizeof(int32_t));
            memmove(all.next_count + we, all.next_count + e0, (size_t)(e1 - e0) * sizeof(int32_t));
            we += (size_t)(e1 - e0);
            ip[++w] = (int64_t)we;
        }
        nrow[j + 1] = w;
    }
    free(row);
    all.n = w, all.n_shards = ns, all.shard_row = nrow;
    *pt = all;
    return 0;
}

int cl_corpus_count_slice(const cl_corpus *c, size_t a, size_t b, int64_t *uni) {
    if (a > b || b > c->nnz) return cl_error("entries %zu..%zu are out of range (%zu)", a, b, c->nnz);
    if (c->next_token) {
        for (size_t e = a; e < b; e++) uni[c->next_token[e]] += c->next_count[e];
        return 0;
    }
    const size_t B = (size_t)1 << 18;
    int32_t *t = cl_trymalloc(B, sizeof *t, "next tokens"), *n = cl_trymalloc(B, sizeof *n, "next-token counts");
    hid_t f = t && n ? cl_h5_open_read(c->path) : -1;
    int rc = f < 0 ? -1 : 0;
    for (size_t e0 = a; !rc && e0 < b; e0 += B) {
        size_t m = b - e0 < B ? b - e0 : B;
        if (cl_h5_read_rows(f, "/substrings/next/token", H5T_NATIVE_INT32, e0, m, t) < 0 ||
            cl_h5_read_rows(f, "/substrings/next/count", H5T_NATIVE_INT32, e0, m, n) < 0)
            rc = -1;
        for (size_t k = 0; !rc && k < m; k++) {
            if (t[k] < 0 || t[k] >= c->V || n[k] <= 0)
                rc = cl_error("/substrings/next: entry %zu has an invalid token or count", e0 + k);
            else uni[t[k]] += n[k];
        }
    }
    if (f >= 0) H5Fclose(f);
    free(t), free(n);
    if (rc) cl_error_prefix("%s: ", c->path);
    return rc;
}

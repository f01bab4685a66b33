/* corpuslens corpus: unique substrings, next-token counts, prompts, corpus.h5.
 *
 * Dimension legend: N unique substrings, L substring length (characters),
 * V vocabulary size, P prompts, nnz stored (substring, next token) pairs.
 *
 * A "character" is a Unicode code point; the corpus is UTF-8. Offsets and
 * lengths are in characters unless a name says bytes.
 *
 * Unique substrings: every window ids[p, p+L) for p = 0 .. n-L, deduplicated,
 * numbered in order of FIRST occurrence (substring 0 starts at character 0).
 * Next-token counts: for every occurrence p of substring i with p+L < n, the
 * character ids[p+L] is counted once for i. The corpus's final window has no
 * follower, so a substring that occurs only there has no counts at all.
 * Counts are stored in CSR form: the nonzero counts of substring i are
 * next_token[k], next_count[k] for k in [next_indptr[i], next_indptr[i+1]),
 * with next_token strictly increasing inside a row and every count > 0.
 *
 * Prompt sampling (cl_prompts_sample), exactly: seed a cl_rng (xoshiro256**,
 * splitmix64 seeding, see rng.h) with `seed`; start from the identity
 * permutation a[j] = j, j < N; for i = 0 .. P-1: j = i + cl_rng_below(N - i),
 * swap a[i] and a[j], prompt i = a[i]. That is a partial Fisher-Yates shuffle:
 * P distinct indices, every ordered P-subset equally likely; prompts are kept
 * in draw order (not sorted).
 *
 * Prompt files: one 0-based substring index per line, decimal, optional
 * surrounding blanks and a final newline ("\r\n" accepted); empty lines,
 * other text, indices >= N and repeated indices are errors naming the line.
 *
 * The corpus file (HDF5, written by cl_corpus_save):
 *   /vocab                    [V] 4-byte null-padded UTF-8 strings (id order)
 *   /substrings/tokens        [N, L] int32 token ids
 *   /substrings/first_offset  [N] int64 character offset of the first occurrence
 *   /substrings/sorted        [N] int64 the substrings in lexicographic order of
 *                             their tokens (cl_corpus_sort); optional: files
 *                             written before issue 26 lack it
 *   /substrings/next/indptr   [N+1] int64 CSR row pointers (indptr[0] = 0, indptr[N] = nnz)
 *   /substrings/next/token    [nnz] int32 next-token id
 *   /substrings/next/count    [nnz] int32 occurrences followed by that token
 *   /prompts/index            [P] int64 substring index of each prompt
 *   /prompts/text             [P] fixed-length null-padded UTF-8 strings
 *                             (the prompt's L characters; for h5dump readers)
 *   root attributes: format "corpuslens-corpus", format_version 1,
 *     corpus_file, corpus_bytes, corpus_chars, corpus_sha256, L, vocab_size,
 *     vocab_source ("corpus" or the model file), vocab_sha256 (of that model
 *     file; absent for "corpus"), n_substrings, nnz, n_prompts,
 *     prompt_source ("seed" | "file"), seed + sampler (seeded), or
 *     prompt_file + prompt_file_sha256 (file).
 *   optional, with prepare --holdout-fraction F (the lecture's split: the
 *   first n = floor((1 - F) * chars) characters are the training part):
 *   /holdout/tokens           [n_holdout] int32 token ids of the held-out text
 *   root attributes holdout_fraction, holdout_start (= n); the substrings,
 *   counts and prompts then come from the training part only.
 *   optional, written by prepare (issue 23; files without them still open, and
 *   the ∞-gram and backoff n-gram baselines are then "n/a"):
 *   /text/tokens              [n_text] int32 token ids of the training text (the
 *                             part before holdout_start, or all of it)
 *   /text/suffix_array        [n_text] int64 its suffix array (infgram.h): a
 *                             permutation of 0..n_text-1, checked on reading
 *   root attributes token_type ("char" | "gpt2-bpe"; absent: "char") and
 *   next_layout ("csr": the counts above; absent: "csr").
 * A GPT-2 BPE corpus (token_type "gpt2-bpe", prepare --vocab-from a BPE model):
 *   the "characters" above are GPT-2 BPE tokens of the text encoded whole
 *   (invalid UTF-8 is refused): the substrings are token n-grams of L tokens,
 *   first_offset, holdout_start and the /text and /holdout ids are in tokens,
 *   and the counts are the same CSR lists over V tokens (nnz is the number of
 *   distinct (n-gram, next token) pairs, never N * V). Instead of /vocab:
 *   /tokenizer                group as a BPE model file's (type "gpt2-bpe",
 *                             tokens, merges; model.h), the model's tokenizer
 *   /prompts/text             the prompt's decoded bytes (a token may hold part
 *                             of a UTF-8 character: bytes, not always UTF-8)
 *   root attribute corpus_tokens (the text's token count) instead of corpus_chars.
 *   cl_corpus_load and cl_corpus_open refuse such a file (the commands built
 *   on them need dense per-prompt counts over V); cl_corpus_load_any reads it.
 * Large datasets are chunked and gzip-compressed (level 1).
 */
#ifndef CORPUSLENS_CORPUS_H
#define CORPUSLENS_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#define CL_CORPUS_FORMAT "corpuslens-corpus"
#define CL_CORPUS_FORMAT_VERSION 1
#define CL_CORPUS_MAX_LEN 256 /* the lecture model's block_size */
#define CL_CORPUS_SAMPLER "partial-fisher-yates/xoshiro256**/cl_rng_below"
#define CL_CORPUS_NEXT_LAYOUT "csr"

/* Rows of the corpus held by one rank, in the order asked for. */
typedef struct {
    size_t n;             /* rows */
    int L;
    int64_t *id;          /* [n] substring ids */
    int32_t *tokens;      /* [n, L] */
    int64_t *indptr;      /* [n+1] CSR into next_token / next_count (from 0) */
    int32_t *next_token;  /* [indptr[n]] */
    int32_t *next_count;  /* [indptr[n]] */
    size_t n_shards;      /* cl_corpus_read_shards: shards held */
    size_t *shard_row;    /* [n_shards + 1]: shard j's rows are [shard_row[j], shard_row[j+1]) */
} cl_corpus_part;

typedef enum { CL_PROMPTS_NONE = 0, CL_PROMPTS_SEED = 1, CL_PROMPTS_FILE = 2 } cl_prompt_source;

typedef struct {
    /* vocabulary */
    int V;
    uint32_t *vocab;         /* [V] code points, token id order; owned; NULL for BPE */
    struct cl_bpe *bpe;      /* GPT-2 BPE corpus: its tokenizer (tokenizer.h); owned; NULL: char */
    /* substrings */
    int L;
    size_t n;                /* N */
    int32_t *tokens;         /* [N, L]; owned; NULL from cl_corpus_open */
    int64_t *first_offset;   /* [N]; owned; NULL from cl_corpus_open */
    struct cl_h5_rows *token_rows; /* cl_corpus_open: /substrings/tokens in the file */
    /* next-token counts, CSR */
    size_t nnz;
    int64_t *next_indptr;    /* [N+1]; owned */
    int32_t *next_token;     /* [nnz]; owned */
    int32_t *next_count;     /* [nnz]; owned */
    /* prompts */
    size_t n_prompts;        /* P (0 until set) */
    int64_t *prompt_index;   /* [P]; owned; NULL when P = 0 */
    /* provenance (attributes of the file; "" / 0 when unknown) */
    char corpus_file[1024];
    uint64_t corpus_bytes, corpus_chars;
    char corpus_sha256[65];
    char vocab_source[1024]; /* "corpus" or the model file it came from */
    char vocab_sha256[65];   /* SHA-256 of that model file, "" for "corpus" */
    cl_prompt_source prompt_source;
    uint64_t seed;           /* CL_PROMPTS_SEED */
    char prompt_file[1024];  /* CL_PROMPTS_FILE */
    char prompt_file_sha256[65];
    /* held-out text (prepare --holdout-fraction): the substrings and counts
       above come from the text BEFORE holdout_start only */
    size_t n_holdout;        /* characters held out (0: none) */
    int32_t *holdout;        /* [n_holdout] token ids; owned; NULL when none */
    uint64_t holdout_start;  /* character offset of the held-out part */
    double holdout_fraction;
    /* the training text and its suffix array (/text; both or neither): the
       ∞-gram and backoff n-gram baselines. cl_corpus_from_ids keeps the text;
       cl_corpus_build_suffix_array adds the array; cl_corpus_save writes both
       only when the array is there */
    size_t n_text;           /* 0: none */
    int32_t *text;           /* [n_text] token ids; owned */
    int64_t *suffix_array;   /* [n_text]; owned; NULL when none */
    /* the lexicographic order (/substrings/sorted): cl_corpus_load keeps it
       (read and checked, or NULL in a file without it); cl_corpus_open_part
       sorts in memory for such a file */
    int64_t *sorted;         /* [N]; owned; NULL when not held */
    /* cl_corpus_open_part (see there) */
    int partial;             /* 1: rows stay in the file (path) */
    char path[1024];
    int32_t *prompt_tokens;  /* [P, L]; owned */
    int64_t *prompt_sorted_pos; /* [P]; owned */
    cl_corpus_part prompt_part; /* the prompts' rows and counts, prompt order */
} cl_corpus;

/* Build the substrings and counts of a token-id sequence ids[0..n_ids) whose
 * ids are in [0, V). `vocab` ([V]) is copied. 1 <= L <= CL_CORPUS_MAX_LEN and
 * n_ids >= L are required. Expected O(n_ids * L / word) time (rolling hash
 * mod 2^61-1 in an open-addressing table, full comparison on equal hashes).
 * Returns a new corpus without prompts, or NULL with cl_error. */
cl_corpus *cl_corpus_from_ids(const int32_t *ids, size_t n_ids, int L, const uint32_t *vocab,
                              int V);
/* (vocab may be NULL: BPE token ids; the caller then sets c->bpe.) */

/* Decode UTF-8 `text` with `vocab` (or, when vocab is NULL, with the text's
 * own vocabulary: cl_vocab_from_text) and build as above. Refuses an empty
 * text, invalid UTF-8, characters outside vocab (naming character and
 * position), L out of range and a text shorter than L. Fills corpus_bytes and
 * corpus_chars; vocab_source is set to "corpus" when vocab is NULL. */
cl_corpus *cl_corpus_from_text(const char *text, size_t len, int L, const uint32_t *vocab, int V);

/* P distinct indices in [0, N) by the documented partial Fisher-Yates above,
 * written to out[0..P). 1 <= P <= N required. 0 or -1 (cl_error). */
int cl_prompts_sample(size_t N, size_t P, uint64_t seed, int64_t *out);

/* Parse a prompt list (the file format above) from memory. *out is malloc'ed
 * ([*P]); `name` is used in messages ("FILE:LINE: ..."). 0 or -1. */
int cl_prompts_parse(const char *text, size_t len, size_t N, const char *name, int64_t **out,
                     size_t *P);

/* Set the corpus's prompts. Sampled: records seed and source. From a file:
 * reads and parses it, records its name and SHA-256. 0 or -1; on error the
 * corpus's prompts are unchanged. */
int cl_corpus_sample_prompts(cl_corpus *c, size_t P, uint64_t seed);
int cl_corpus_read_prompt_file(cl_corpus *c, const char *path);

/* Build the suffix array of c->text (cl_suffix_array). 0 or -1. */
int cl_corpus_build_suffix_array(cl_corpus *c);

/* Write the corpus file: to "<path>.tmp", then rename to path. On error the
 * temporary file is removed and path is left as it was. Needs P >= 1. */
int cl_corpus_save(const cl_corpus *c, const char *path);

/* Read and validate a corpus file. Refuses a file that is not a corpuslens
 * corpus or has another format_version, and names a missing dataset, a shape
 * that does not match the attributes, and out-of-range ids/indices/CSR rows.
 * Returns a new corpus (free with cl_corpus_free) or NULL with cl_error. */
cl_corpus *cl_corpus_load(const char *path);

/* As cl_corpus_load, for commands that need the counts but only a few
 * substrings' tokens (explain): /substrings/tokens stays in the file and its
 * rows are read on demand by cl_corpus_row (tokens is NULL), and
 * /substrings/first_offset is not read (first_offset is NULL). The same
 * checks as cl_corpus_load except those of the rows not read: every tokens
 * chunk must lie inside the file (a truncated file is refused here), and a
 * row's ids are checked when it is read. Do not use cl_corpus_substring or
 * cl_corpus_substring_text on it. */
cl_corpus *cl_corpus_open(const char *path);

/* As cl_corpus_load, and a GPT-2 BPE corpus too (c->bpe set, c->vocab NULL;
 * every id checked against the tokenizer's V, /prompts/text against the
 * decoded n-grams). */
cl_corpus *cl_corpus_load_any(const char *path);
/* cl_corpus_open (rows read on demand), a GPT-2 BPE corpus too (explain). */
cl_corpus *cl_corpus_open_any(const char *path);

/* ---- Reading a part of the corpus (issue 26: a sharded corpus) ----
 * A scan or an index on R ranks needs, on each rank, only the substrings of
 * its shards (contiguous ranges of the lexicographic order), their counts
 * and the prompts' rows. cl_corpus_open_part reads the attributes, the
 * vocabulary, the prompts' indices, rows, counts and sorted positions, and
 * checks every dataset's shape; no other row. cl_corpus_read_shards then
 * reads the rows of given shards through the file's chunks (memory: the
 * rows kept, plus one inflated chunk per dataset). The order comes from
 * /substrings/sorted (written by prepare since issue 26; a file without it
 * is loaded whole and sorted in memory, as before: c->partial is 0 then). */

void cl_corpus_part_free(cl_corpus_part *pt);

/* Open PATH for partial reading (bpe_ok as cl_corpus_load_any). Reads and
 * checks the attributes, the vocabulary or tokenizer, /prompts/index, every
 * dataset's shape, the prompts' rows (prompt_tokens, checked against
 * /prompts/text) and counts (prompt_part) and their positions in the sorted
 * order (prompt_sorted_pos; one pass over /substrings/sorted, which must be
 * a permutation of 0..N-1). tokens, first_offset and the CSR arrays stay
 * NULL. A file without /substrings/sorted is loaded whole instead
 * (cl_corpus_load or _any), sorted in memory (c->sorted), and gets the same
 * prompt fields; c->partial tells which. NULL with cl_error. */
cl_corpus *cl_corpus_open_part(const char *path, int bpe_ok);

/* Sorted positions [a, a+n) of /substrings/sorted (or c->sorted) into
 * out, each checked to be a substring index. 0 or -1. */
int cl_corpus_read_sorted(const cl_corpus *c, size_t a, size_t n, int64_t *out);

/* The rows ids[0..n) (any order, repeats allowed, each < N) with their
 * counts into pt (caller's order). From memory when the corpus holds them,
 * else from the file in one pass in id order, every id, pointer, token and
 * count checked. 0 or -1 (pt freed). */
int cl_corpus_read_part(const cl_corpus *c, const int64_t *ids, size_t n, cl_corpus_part *pt);
/* The same, the counts only: pt->n, pt->indptr, pt->next_token and
 * pt->next_count (pt->id and pt->tokens NULL). 0 or -1 (pt freed). */
int cl_corpus_read_counts(const cl_corpus *c, const int64_t *ids, size_t n, cl_corpus_part *pt);

/* The counts of a set of substrings, kept in id order, found by id: a
 * bitmap of N bits and a count per 64-bit word (N/8 + N/8 bytes), then
 * 8 bytes per member and 8 per entry. explain's dense search on one rank:
 * its index rows' substrings. */
typedef struct {
    size_t N, n;         /* substrings; members (after cl_corpus_read_counts_set) */
    uint64_t *bits;      /* [N/64 + 1] */
    uint64_t *before;    /* [N/64 + 1]: members in the words before */
    int64_t *indptr;     /* [n + 1] CSR by member rank (id order) */
    int32_t *next_token, *next_count;
} cl_counts_set;
/* An empty set of the N substrings. 0 or -1. */
int cl_counts_set_init(cl_counts_set *s, size_t N);
static inline void cl_counts_set_add(cl_counts_set *s, size_t id) { s->bits[id >> 6] |= (uint64_t)1 << (id & 63); }
/* The CSR row of member id (in the set) */
static inline size_t cl_counts_set_row(const cl_counts_set *s, size_t id) {
    return (size_t)s->before[id >> 6] + (size_t)__builtin_popcountll(s->bits[id >> 6] & (((uint64_t)1 << (id & 63)) - 1));
}
/* Read the counts of the members: from memory, or from the file in two
 * streamed passes over /substrings/next/indptr (every pointer checked) and
 * one over the entries of the members (each checked). 0 or -1 (cl_error). */
int cl_corpus_read_counts_set(const cl_corpus *c, cl_counts_set *s);
void cl_counts_set_free(cl_counts_set *s);

/* As cl_corpus_open (bpe_ok 0) or cl_corpus_open_any (1), and the
 * next-token counts stay in the file too (next_indptr, next_token,
 * next_count NULL): explain under mpirun, where each rank reads the counts
 * of its index rows (cl_corpus_read_counts), checked as they are read, and
 * reduce's ∞-gram baselines, which need only /text. /text only with
 * with_text (rank 0). cl_corpus_next_dense_read and cl_corpus_count_slice
 * read from the file; cl_corpus_next_dense and _next_total need the counts
 * held. NULL with cl_error. */
cl_corpus *cl_corpus_open_rows(const char *path, int bpe_ok, int with_text);

/* cl_corpus_next_dense from memory or (cl_corpus_open_rows) the file. 0 or -1. */
int cl_corpus_next_dense_read(const cl_corpus *c, size_t i, int32_t *row);

/* The rows at the sorted positions of shards shards[0..ns) (shard j: [j S,
 * min(N, (j+1) S))), shard after shard, with their counts; checks that the
 * rows of each shard, and the row before its first, are in strictly
 * increasing order (so the ranks together check the whole order). 0 or -1. */
int cl_corpus_read_shards(const cl_corpus *c, const size_t *shards, size_t ns, size_t S, cl_corpus_part *pt);

/* uni[0..V) += the next-token counts of the stored entries [a, b) (a part
 * of /substrings/next; a rank sums its share, the ranks add them up):
 * tokens and counts checked. 0 or -1. */
int cl_corpus_count_slice(const cl_corpus *c, size_t a, size_t b, int64_t *uni);

/* Substring rows and next-token entries handed to this process by the
 * readers above and the loaders (a whole load counts N rows and nnz
 * entries): the test that no rank reads the whole corpus reads them. */
void cl_corpus_io_stats(unsigned long long *rows, unsigned long long *entries);

/* The substrings in lexicographic order of their tokens (they are distinct:
 * no ties): sorted[k] is the substring at sorted position k. Needs tokens.
 * A new [N] array or NULL (cl_error). cl_corpus_save writes it as
 * /substrings/sorted. */
int64_t *cl_corpus_sort(const cl_corpus *c);

/* The command named in cl_corpus_load's / cl_corpus_open's refusal of a BPE
 * corpus ("PATH has BPE token n-grams (sparse counts); NAME does not
 * support them yet"); the CLI sets it to the command being run. */
void cl_corpus_set_reader(const char *name);

/* Bytes of the longest decoded substring + 1 (4 L + 1 for char-level). */
size_t cl_corpus_text_cap(const cl_corpus *c);

void cl_corpus_free(cl_corpus *c);

/* Substring i's tokens: c->tokens + i * L ([L]). */
static inline const int32_t *cl_corpus_substring(const cl_corpus *c, size_t i) {
    return c->tokens + i * (size_t)c->L;
}

/* Dense next-token counts of substring i into row[0..V) (overwritten). */
void cl_corpus_next_dense(const cl_corpus *c, size_t i, int32_t *row);
/* Number of occurrences of substring i that have a follower (sum of its counts). */
int64_t cl_corpus_next_total(const cl_corpus *c, size_t i);

/* Substring i's tokens into out[0..L), from memory or (cl_corpus_open) the
 * file. 0 or -1 (cl_error: a corrupt chunk, an id outside the vocabulary). */
int cl_corpus_row(const cl_corpus *c, size_t i, int32_t *out);
/* cl_corpus_substring_text through cl_corpus_row: the byte length or -1. */
long cl_corpus_row_text(const cl_corpus *c, size_t i, char *buf);
/* The same into buf[0..cap) (cl_corpus_text_cap bytes hold any row whole). */
long cl_corpus_row_text_n(const cl_corpus *c, size_t i, char *buf, size_t cap);

/* UTF-8 text of substring i into buf (NUL-terminated; needs 4*L+1 bytes; a
 * BPE n-gram's bytes are cut there, cl_corpus_text_cap gives the whole).
 * Returns the byte length. */
size_t cl_corpus_substring_text(const cl_corpus *c, size_t i, char *buf);
/* The same for the L token ids t (at most cap - 1 bytes, then a NUL). */
size_t cl_corpus_tokens_text(const cl_corpus *c, const int32_t *t, char *buf, size_t cap);

/* ---- The embedded demo corpus ----
 * A deterministic stochastic grammar of short dialogue scenes between a few
 * speakers about animals and things ("ALICE: the small cat sees a red ball.",
 * "BOB: does the cat see the ball?", "ALICE: yes, the cat sees it."): subject-
 * verb agreement, questions that repeat the previous statement's nouns,
 * answers that follow from it, and speakers taking turns. ASCII only.
 * Whole lines are generated until the next one would pass `chars` bytes
 * (at least one line). Same seed and chars, same text, on every machine.
 * Returns a malloc'ed NUL-terminated text (*len bytes) or NULL (cl_error). */
char *cl_demo_corpus(uint64_t seed, size_t chars, size_t *len);

#endif

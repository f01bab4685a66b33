/* Tokenizers. A model's text goes to token ids in one of two ways:
 *
 *   char-level  (m->bpe == NULL) one token per Unicode character; the
 *               vocabulary is m->vocab, code points in id order (model.h,
 *               cl_vocab_encode). The lecture and nanoGPT models.
 *   GPT-2 BPE   (m->bpe != NULL) byte-level byte-pair encoding as in OpenAI's
 *               GPT-2 encoder.py: UTF-8 bytes are mapped to printable code
 *               points (the byte-to-unicode table), the text is split by the
 *               GPT-2 pre-tokenizer pattern (contractions, letters, numbers,
 *               other symbols, whitespace with a negative lookahead; PCRE2),
 *               and each piece is merged by rank (merges file order; lowest
 *               rank first, every occurrence left to right), with a cache of
 *               pieces already seen. Whitespace in the pattern is JavaScript's
 *               \s (the oracle of the tests is the npm package gpt-3-encoder).
 *
 * The cl_tok_* functions serve both kinds, so commands do not care which.
 */
#ifndef CORPUSLENS_TOKENIZER_H
#define CORPUSLENS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/model/model.h"

typedef struct cl_bpe cl_bpe;

/* Build a BPE tokenizer from its token strings in id order (GPT-2's
 * byte-to-unicode form, e.g. "\xc4\xa0the" for " the"; tokens[0..V)) and
 * its merges in rank order ("a b": two tokens separated by one space).
 * Checks that every token maps back to bytes, that each of the 256 bytes is a
 * token, and that every merge's parts and result are tokens (the message
 * names the entry). The strings are copied. NULL on error. */
cl_bpe *cl_bpe_create(const char *const *tokens, int V, const char *const *merges, size_t n_merges);
/* The same from GPT-2's files: encoder.json / vocab.json ({"token": id}, ids
 * 0..V-1 each once) and vocab.bpe / merges.txt (a "#version" first line is
 * skipped, as are empty lines). Messages name the file. */
cl_bpe *cl_bpe_from_files(const char *encoder_json, const char *merges_txt);
/* A tokenizer folder: vocab.json + merges.txt (a Hugging Face folder), else
 * encoder.json + vocab.bpe (GPT-2's own names). A folder with neither pair
 * is an error naming both. */
cl_bpe *cl_bpe_from_dir(const char *dir);
void cl_bpe_free(cl_bpe *b);
/* 1 if a and b have the same tokens (in id order) and merges (in rank order). */
int cl_bpe_equal(const cl_bpe *a, const cl_bpe *b);
/* The /tokenizer group of a model or corpus file (type "gpt2-bpe", tokens,
 * merges; model.h): read (validated by cl_bpe_create; `name` is the file's
 * name for messages, NULL for none) and written. f is an open HDF5 file (hid_t). */
cl_bpe *cl_bpe_read_h5(int64_t f, const char *name);
int cl_bpe_write_h5(int64_t f, const cl_bpe *b);

int cl_bpe_vocab_size(const cl_bpe *b);
size_t cl_bpe_num_merges(const cl_bpe *b);
/* Bytes of the longest token (a text of N bytes has at least N / this many
 * tokens). */
size_t cl_bpe_max_token_bytes(const cl_bpe *b);
/* Token id's string (byte-to-unicode form) / merge i's "a b" line. */
const char *cl_bpe_token(const cl_bpe *b, int id);
const char *cl_bpe_merge(const cl_bpe *b, size_t i);
/* Raw bytes of token id (may be part of a UTF-8 character); *len receives
 * their count. */
const unsigned char *cl_bpe_token_bytes(const cl_bpe *b, int id, size_t *len);

/* Encode UTF-8 text: *ids malloc'ed, *n ids. Invalid UTF-8 is an error naming
 * the byte offset. The cache inside b is updated (not thread-safe). */
int cl_bpe_encode(cl_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n);
/* Decode ids to bytes: *text malloc'ed (NUL-terminated), *len bytes. Ids out
 * of range are errors. The bytes of a partial sequence may be invalid UTF-8. */
int cl_bpe_decode(const cl_bpe *b, const int32_t *ids, size_t n, char **text, size_t *len);

/* ---- either kind, through the model ---- */

/* 1 if the model uses GPT-2 BPE. */
int cl_tok_is_bpe(const cl_model *m);
/* Encode a text for m (char-level: cl_vocab_encode). *ids malloc'ed. */
int cl_tok_encode(const cl_model *m, const char *text, size_t len, int32_t **ids, size_t *n);
/* Bytes of the model's longest token (char-level: of its widest character's
 * UTF-8): a text of N bytes has at least N / this many tokens, so a text too
 * long for a context can be refused before it is encoded. */
size_t cl_tok_max_bytes(const cl_model *m);
/* The raw bytes of one token (char-level: the character's UTF-8) into buf
 * (cap >= 4 for char-level); returns the byte count written (truncated at cap). */
size_t cl_tok_bytes(const cl_model *m, int id, char *buf, size_t cap);
/* Display form of one token, C-escaped as cl_token_escape (\n, \t, \\, \", \xNN
 * for control bytes and bytes that are not whole UTF-8 characters), at most
 * n - 1 bytes (truncated with "..." ), NUL-terminated. */
void cl_tok_display(const cl_model *m, int id, char *buf, size_t n);

#endif

/* The balanced-parentheses data set (issue 17): a labelled, seeded classic
 * interpretability toy task.
 *
 * Each example is a string of '(' and ')' of even length 2..40 (all lengths
 * equally likely) and a label: 1 balanced, 0 not; half of each. A balanced
 * string of length 2m has a nesting depth d drawn uniformly from 1..m, then
 * is drawn uniformly among the balanced strings of that length and depth. An
 * unbalanced string is hard: it passes exactly one of the two tests that
 * together decide balance — the count test (as many '(' as ')') or the
 * never-negative test (no prefix has more ')' than '(') — half of each kind.
 *
 * The file (text, one example a line after '#' comment lines):
 *   split<TAB>label<TAB>string      split is train, val or test; label 0 or 1;
 *                                   one TAB between fields, nothing else (the
 *                                   reader refuses blanks, "train1()", "+1", "01")
 *
 * The model reads "^" + string + "$", padded with "_" to 42 tokens: the
 * vocabulary is $ ( ) ^ _ (ids 0..4: [end], '(', ')', [start], [pad]).
 */
#ifndef CORPUSLENS_PARENS_H
#define CORPUSLENS_PARENS_H

#include <stddef.h>
#include <stdint.h>

#define CL_PARENS_MAX_LEN 40
#define CL_PARENS_T (CL_PARENS_MAX_LEN + 2) /* [start] + string + [end] */
#define CL_PARENS_VOCAB "$()^_"
enum { CL_PARENS_END = 0, CL_PARENS_OPEN, CL_PARENS_CLOSE, CL_PARENS_START, CL_PARENS_PAD };

typedef enum { CL_SPLIT_TRAIN = 0, CL_SPLIT_VAL, CL_SPLIT_TEST } cl_split;

typedef struct {
    char (*s)[CL_PARENS_MAX_LEN + 1]; /* NUL-terminated strings */
    unsigned char *label;              /* 1 balanced */
    unsigned char *split;              /* cl_split */
    unsigned char *kind;               /* 0 balanced, 1 count ok but goes negative, 2 never negative
                                          but counts differ */
    size_t n;
} cl_parens_set;

/* Generate n examples (n >= 2) from seed; val and test each get n_val,
 * n_test examples (the rest: train). Deterministic on every machine. */
int cl_parens_generate(uint64_t seed, size_t n, size_t n_val, size_t n_test, cl_parens_set *out);
/* Write as text (PATH.tmp, then renamed) / read it back (the label is
 * checked against the string). */
int cl_parens_write(const cl_parens_set *d, const char *path, uint64_t seed);
int cl_parens_read(const char *path, cl_parens_set *out);
void cl_parens_free(cl_parens_set *d);

/* 1 if s is balanced; *depth the maximum nesting depth (of the prefixes). */
int cl_parens_balanced(const char *s, int *depth);
/* Encode "^" s "$" padded with "_" to CL_PARENS_T ids; -1 on a character
 * other than '(' ')' or a string longer than CL_PARENS_MAX_LEN. */
int cl_parens_encode(const char *s, int32_t *ids);

#endif

/* The embedded demo corpus: a small stochastic grammar of dialogue scenes.
 * See corpus/corpus.h for what it produces. Everything is driven by one cl_rng, so the
 * text depends only on (seed, chars). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/rng.h"

typedef struct {
    const char *sg, *pl;
} noun;
typedef struct {
    const char *s3, *base; /* "sees", "see" */
} verb;

static const char *const SPEAKERS[] = {"ALICE", "BOB", "CAROL", "DAVE"};
static const noun ANIMALS[] = {{"cat", "cats"},   {"dog", "dogs"},   {"bird", "birds"},
                               {"fox", "foxes"},  {"mouse", "mice"}, {"horse", "horses"}};
static const noun THINGS[] = {{"ball", "balls"}, {"box", "boxes"}, {"tree", "trees"},
                              {"hat", "hats"},   {"cake", "cakes"}, {"boat", "boats"}};
static const char *const ADJS[] = {"small", "big", "red", "green", "old", "happy", "quiet"};
static const verb VERBS[] = {{"sees", "see"},     {"likes", "like"}, {"chases", "chase"},
                             {"finds", "find"},   {"wants", "want"}, {"watches", "watch"}};
static const char *const REACTIONS[] = {"i see.", "oh, good.", "how nice.", "really?",
                                        "i knew it."};

#define N_OF(a) (sizeof a / sizeof *a)

typedef struct {
    char *buf;
    size_t len, cap, limit;
    int full; /* a line did not fit: stop */
} out_t;

static int pick(cl_rng *r, size_t n) { return (int)cl_rng_below(r, n); }

/* Append one finished line if it fits under the limit. */
static void emit(out_t *o, const char *line) {
    size_t n = strlen(line);
    if (o->full) return;
    if (o->len + n > o->limit) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, line, n);
    o->len += n;
}

/* "the small cat" / "two foxes" ...; *plural receives the number. */
static void noun_phrase(cl_rng *r, const noun *n, int plural, int definite, char *out,
                        size_t cap) {
    const char *det;
    if (definite) det = "the";
    else if (plural) det = pick(r, 2) ? "two" : "some";
    else det = "a";
    const char *w = plural ? n->pl : n->sg;
    if (pick(r, 2))
        snprintf(out, cap, "%s %s %s", det, ADJS[pick(r, N_OF(ADJS))], w);
    else
        snprintf(out, cap, "%s %s", det, w);
}

static void scene(cl_rng *r, out_t *o) {
    int a = pick(r, N_OF(SPEAKERS));
    int b = (a + 1 + pick(r, N_OF(SPEAKERS) - 1)) % (int)N_OF(SPEAKERS);
    const noun *subj = &ANIMALS[pick(r, N_OF(ANIMALS))];
    int sp = pick(r, 3) == 0; /* plural subject */
    /* the object is a thing, or sometimes another animal */
    const noun *obj = pick(r, 4) ? &THINGS[pick(r, N_OF(THINGS))] : &ANIMALS[pick(r, N_OF(ANIMALS))];
    const verb *v = &VERBS[pick(r, N_OF(VERBS))];
    char s_np[64], o_np[64], line[256];
    noun_phrase(r, subj, sp, 1, s_np, sizeof s_np);
    noun_phrase(r, obj, 0, pick(r, 2), o_np, sizeof o_np);
    /* statement: agreement between subject and verb */
    snprintf(line, sizeof line, "%s: %s %s %s.\n", SPEAKERS[a], s_np, sp ? v->base : v->s3, o_np);
    emit(o, line);
    int kind = pick(r, 3);
    if (kind == 0) {
        /* a yes/no question about the same subject; the answer follows from the statement */
        int same = pick(r, 2);
        const noun *q = same ? obj : &THINGS[pick(r, N_OF(THINGS))];
        if (!same && q == obj) same = 1;
        snprintf(line, sizeof line, "%s: %s the %s %s the %s?\n", SPEAKERS[b], sp ? "do" : "does",
                 sp ? subj->pl : subj->sg, v->base, q->sg);
        emit(o, line);
        if (same)
            snprintf(line, sizeof line, "%s: yes, %s %s it.\n", SPEAKERS[a], sp ? "they" : "it",
                     sp ? v->base : v->s3);
        else
            snprintf(line, sizeof line, "%s: no, %s %s the %s.\n", SPEAKERS[a],
                     sp ? "they" : "it", sp ? v->base : v->s3, obj->sg);
        emit(o, line);
    } else if (kind == 1) {
        /* a wh-question answered with the object */
        snprintf(line, sizeof line, "%s: what %s the %s %s?\n", SPEAKERS[b], sp ? "do" : "does",
                 sp ? subj->pl : subj->sg, v->base);
        emit(o, line);
        snprintf(line, sizeof line, "%s: the %s.\n", SPEAKERS[a], obj->sg);
        emit(o, line);
    } else {
        snprintf(line, sizeof line, "%s: %s\n", SPEAKERS[b], REACTIONS[pick(r, N_OF(REACTIONS))]);
        emit(o, line);
    }
    emit(o, "\n");
}

char *cl_demo_corpus(uint64_t seed, size_t chars, size_t *len) {
    if (chars < 64) {
        cl_error("the demo corpus needs at least 64 characters (asked for %zu)", chars);
        return NULL;
    }
    out_t o = {0};
    o.limit = chars;
    o.cap = chars + 1;
    o.buf = cl_trymalloc(o.cap, 1, "demo corpus");
    if (!o.buf) return NULL;
    cl_rng r;
    cl_rng_seed(&r, seed);
    while (!o.full) scene(&r, &o);
    /* drop a trailing blank line so that the text ends with a dialogue line */
    while (o.len >= 2 && o.buf[o.len - 1] == '\n' && o.buf[o.len - 2] == '\n') o.len--;
    o.buf[o.len] = '\0';
    *len = o.len;
    return o.buf;
}

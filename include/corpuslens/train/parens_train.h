/* train --task parens: the balanced-parentheses classifier (issue 17).
 *
 * The model is the project's transformer with the encoder options
 * (causal=0, pos=sinusoidal, n_classes=2, pad_id of '_'): by default 3
 * layers, 2 heads, d_model 56, block 42, vocabulary $ ( ) ^ _. Each step
 * draws `batch` training rows (seeded), cross-entropy on the label read at
 * [start], AdamW. Every eval_every steps the validation accuracy is
 * measured with the inference forward pass (on the first 1000 validation
 * rows; all of them at the end); training stops at `steps` or
 * once the validation accuracy reaches `goal` (0: never early). The test
 * accuracy is measured at the end. Single process. */
#ifndef CORPUSLENS_PARENS_TRAIN_H
#define CORPUSLENS_PARENS_TRAIN_H

#include <stdint.h>

typedef struct {
    const char *data;       /* demo-corpus parens file */
    const char *config;     /* over the defaults above (NULL: none) */
    int steps, batch, eval_every;
    double lr, dropout, goal; /* goal: the validation accuracy whose first step is reported */
    int stop_at_goal;         /* 1: stop there */
    int cosine;               /* 1: learning rate from lr down to lr/10 on a cosine */
    uint64_t seed;
    const char *output;     /* model file */
    const char *dump_first; /* tests: the first step's batch (/batch/ids, /batch/labels),
                               the initial weights' class logits on it (/batch/logits) and
                               the gradients (/grads/<tensor>) to this HDF5 file */
} cl_parens_train_opts;

typedef struct {
    long step;
    double loss, val_acc, seconds; /* val_acc < 0: not measured at this event */
} cl_parens_event;

typedef struct {
    long steps;             /* updates done */
    long goal_step;         /* first evaluation with val accuracy >= goal (-1: never) */
    double goal_seconds;    /* wall time from the start of training to it */
    double val_acc, test_acc, seconds;
} cl_parens_result;

int cl_parens_train(const cl_parens_train_opts *o, void (*on_event)(void *, const cl_parens_event *),
                    void *user, cl_parens_result *res);

#endif

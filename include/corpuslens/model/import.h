/* Import of checkpoints into a cl_model: recognise the lecture / nanoGPT
 * layouts among a checkpoint's tensors (ckpt/checkpoint.h), derive the config
 * and convert the weights. */
#ifndef CORPUSLENS_MODEL_IMPORT_H
#define CORPUSLENS_MODEL_IMPORT_H

#include <stdint.h>

#include "corpuslens/ckpt/checkpoint.h"
#include "corpuslens/model/model.h"

typedef enum { CL_LAYOUT_UNKNOWN = 0, CL_LAYOUT_LECTURE, CL_LAYOUT_NANOGPT } cl_ckpt_layout;
const char *cl_ckpt_layout_name(cl_ckpt_layout l);

typedef struct {
    int n_head;               /* 0: lecture: heads found; nanoGPT: model_args */
    int attn_scale_set;       /* 1: use attn_scale below, else the head-size default */
    cl_attn_scale attn_scale;
} cl_import_opts;

/* Recognise the layout and derive the config from the tensors' shapes (no
 * vocabulary check). nanoGPT needs n_head from opts or model_args. */
int cl_ckpt_config(const cl_ckpt *ck, const cl_import_opts *opts, cl_ckpt_layout *layout,
                   cl_config *cfg);

/* Build a model from the checkpoint: config from the shapes, vocabulary
 * vocab[V] (its size must equal the checkpoint's vocab size), weights
 * converted to float32 into the model's allocation (lecture per-head q, k, v
 * fused into blocks.N.sa.qkv.weight). Every state-dict tensor must be used or
 * be a known buffer; a missing or misshapen tensor is an error naming it. */
cl_model *cl_ckpt_import(const cl_ckpt *ck, const cl_import_opts *opts, const uint32_t *vocab,
                         int V);

#endif

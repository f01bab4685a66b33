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

/* ---- Hugging Face GPT-2 model folders ---- */

/* 1 if path is a directory (then import reads it as a Hugging Face folder). */
int cl_hf_is_folder(const char *path);

typedef struct {
    char weights[4096];   /* the weights file read (model.safetensors or pytorch_model.bin) */
    size_t n_params_ckpt; /* parameters in it (tied tensors once) */
} cl_hf_info;

/* Import a Hugging Face GPT-2 folder: config.json (n_layer, n_head, n_embd,
 * vocab_size, n_positions, layer_norm_epsilon, activation_function gelu_new |
 * gelu | relu, tie_word_embeddings), model.safetensors (else
 * pytorch_model.bin) with GPT2LMHeadModel / GPT2Model names (with or without
 * "transformer."), Conv1D weights [in, out] transposed to [out, in], the
 * attn.bias / attn.masked_bias buffers ignored, lm_head.weight tied to wte
 * (a stored copy must equal it); the tokenizer from vocab.json + merges.txt
 * (or encoder.json + vocab.bpe) goes into m->bpe. Every other tensor, a
 * missing or misshapen one, is an error naming it. */
cl_model *cl_hf_import(const char *dir, cl_hf_info *info);

#endif

/* corpuslens model: configuration, vocabulary, weights, HDF5 model file.
 *
 * Dimension legend (used in every shape comment of the project):
 *   L  n_layer      C  n_embd       H  n_head      hs = C / H (head size)
 *   F  4*C (feed-forward hidden)    V  vocab_size  T  positions (<= block_size)
 *   B  batch rows
 *
 * All weights live in one float allocation (`mem`), described by a table of
 * tensors; cl_params holds pointers into it. Per-layer tensors are stacked
 * over layers ([L, ...]), as in llm.c. Linear weights are [out, in] as in
 * PyTorch. Tensors that the config switches off (biases, an untied head) are
 * still allocated (zeros / aliased) so that the forward pass has no branches,
 * but they are "absent": not saved, not counted, not trained. A model from
 * cl_model_map reads its present tensors from the mapped file instead (see
 * cl_model: map, data), through cl_model_weights / cl_model_data.
 *
 * The model file (HDF5):
 *   /config          group; attributes n_layer n_head n_embd block_size
 *                    vocab_size (int), activation ("relu"|"gelu"|"gelu_tanh"), bias,
 *                    qkv_bias, head_bias, tied_head (int 0/1),
 *                    attn_scale ("head_size"|"n_embd"), ln_eps (double),
 *                    causal, sinusoidal, n_classes, mask_pad, pad_id (int;
 *                    optional, absent = 1, 0, 0, 0, 0: a causal LM),
 *                    format ("corpuslens-model"), format_version (int)
 *   /vocab           [V] fixed-length UTF-8 strings (4 bytes, null-padded),
 *                    one character per token id (char-level models only)
 *   /tokenizer       GPT-2 BPE models only (then there is no /vocab): group,
 *                    attribute type = "gpt2-bpe";
 *                    tokens [V] variable-length UTF-8 strings, id order, in
 *                    GPT-2's byte-to-unicode form (encoder.json's keys);
 *                    merges [M] variable-length strings "a b", rank order
 *                    (vocab.bpe / merges.txt without the #version line)
 *   /weights/<name>  one float32 dataset per present tensor, named and shaped
 *                    as listed by cl_model_tensor() (PyTorch state_dict names;
 *                    attention q,k,v fused as blocks.N.sa.qkv.weight [3C, C],
 *                    rows q then k then v, heads in order inside each)
 */
#ifndef CORPUSLENS_MODEL_H
#define CORPUSLENS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/base/utf8.h"

#define CL_MODEL_FORMAT "corpuslens-model"
#define CL_MODEL_FORMAT_VERSION 1

typedef enum { CL_ACT_RELU = 0, CL_ACT_GELU = 1, CL_ACT_GELU_TANH = 2 } cl_activation;
typedef enum { CL_SCALE_HEAD_SIZE = 0, CL_SCALE_N_EMBD = 1 } cl_attn_scale;

typedef struct {
    int n_layer, n_head, n_embd, block_size, vocab_size;
    cl_activation activation; /* relu (lecture) | gelu, exact erf (nanoGPT) |
                                 gelu_tanh, the tanh approximation (GPT-2's gelu_new) */
    int bias;      /* LayerNorm, sa.proj and ffwd biases present */
    int qkv_bias;  /* bias on the fused q,k,v projection present */
    int head_bias; /* lm_head.bias present */
    int tied_head; /* lm_head.weight is token_embedding_table.weight */
    cl_attn_scale attn_scale; /* 1/sqrt(hs) (default) or 1/sqrt(C) (lecture-era) */
    float ln_eps;  /* 1e-5 */
    /* Encoder / classifier options (all 0: the causal language model above) */
    int bidirectional; /* 1: attention sees every position (config key causal=0) */
    int sinusoidal;    /* 1: fixed sinusoidal positions (pos=sinusoidal): the
                          position_embedding_table is computed, not saved or trained */
    int n_classes;     /* > 0: a classifier: lm_head is [n_classes, C] (+ bias) and
                          reads position 0 (the [start] token); logits are classes */
    int mask_pad;      /* 1: keys holding token pad_id are masked out of attention */
    int pad_id;        /* (config key pad_id=N sets mask_pad) */
    /* Metadata, not part of the model's identity (not in the fingerprint):
       the context the model was trained on (train --ctx, import --ctx), at
       most block_size; 0 = unknown. generate crops its context to it. Stored
       as the optional /config attribute trained_ctx. */
    int trained_ctx;
} cl_config;

/* Outputs of the head: n_classes for a classifier, else vocab_size. */
int cl_model_n_out(const cl_config *c);
/* The fixed sinusoidal table (Vaswani et al.): pe[t, 2i] = sin(t / 10000^(2i/C)),
 * pe[t, 2i+1] = cos(t / 10000^(2i/C)); out [T, C]. */
void cl_sinusoidal_positions(float *out, int T, int C);

/* The lecture model's defaults (6 x 384, 6 heads, block 256, vocab 65, relu,
 * bias, no qkv bias, head bias, untied, head-size scale, eps 1e-5). */
cl_config cl_config_lecture(void);

/* Checks ranges and divisibility; on error records a message naming the field. */
int cl_config_validate(const cl_config *c);

/* Parse "key=value,key=value" (keys as the struct fields; activation=relu|gelu|gelu_tanh,
 * attn_scale=head_size|n_embd) over *c. Unknown keys and bad values are errors. */
int cl_config_parse(cl_config *c, const char *spec);

/* Pointers into the one weight allocation. Shapes per field. */
typedef struct {
    float *wte;      /* [V, C]  token_embedding_table.weight */
    float *wpe;      /* [block_size, C] position_embedding_table.weight */
    float *ln1_w;    /* [L, C] */
    float *ln1_b;    /* [L, C] */
    float *qkv_w;    /* [L, 3C, C] */
    float *qkv_b;    /* [L, 3C] */
    float *proj_w;   /* [L, C, C] */
    float *proj_b;   /* [L, C] */
    float *ln2_w;    /* [L, C] */
    float *ln2_b;    /* [L, C] */
    float *fc_w;     /* [L, F, C] ffwd.net.0 */
    float *fc_b;     /* [L, F] */
    float *fcp_w;    /* [L, C, F] ffwd.net.2 */
    float *fcp_b;    /* [L, C] */
    float *lnf_w;    /* [C] */
    float *lnf_b;    /* [C] */
    float *head_w;   /* [V, C] (== wte when tied) */
    float *head_b;   /* [V] */
} cl_params;

#define CL_NUM_PARAM_KINDS 18

typedef struct {
    cl_config cfg;
    uint32_t *vocab;  /* [V] Unicode code points, token id order; owned
                         (char-level; unused by a BPE model) */
    struct cl_bpe *bpe; /* GPT-2 byte-level BPE (tokenizer.h); NULL: char-level */
    cl_params p;
    float *mem;       /* the one allocation; owned */
    size_t n_floats;  /* floats in mem */
    /* A model from cl_model_map only (NULL otherwise): the model file mapped
     * read-only, and the address of every file tensor (index as
     * cl_model_tensor): inside the map, or inside mem for a tensor that could
     * not be mapped or is absent. The fields of p of a mapped kind are then
     * NULL, and mem holds zeros in its place: read the weights through
     * cl_model_data / cl_model_weights only. */
    void *map;
    size_t map_len;
    const float **data;
} cl_model;

/* The weights as the forward pass reads them: the global tensors and those of
 * one block (the layer passed to cl_model_weights), shapes as in cl_params
 * without the leading [L]. Read-only. */
typedef struct {
    const float *wte, *wpe;                     /* [V, C], [block_size, C] */
    const float *ln1_w, *ln1_b;                 /* [C] */
    const float *qkv_w, *qkv_b;                 /* [3C, C], [3C] */
    const float *proj_w, *proj_b;               /* [C, C], [C] */
    const float *ln2_w, *ln2_b;                 /* [C] */
    const float *fc_w, *fc_b;                   /* [F, C], [F] */
    const float *fcp_w, *fcp_b;                 /* [C, F], [C] */
    const float *lnf_w, *lnf_b;                 /* [C] */
    const float *head_w, *head_b;               /* [n_out, C], [n_out] */
} cl_weights;

/* Fill w for block `layer` (0 <= layer < n_layer), of a copied or mapped model. */
void cl_model_weights(const cl_model *m, int layer, cl_weights *w);
/* Data of file tensor i (index as cl_model_tensor), of a copied or mapped model. */
const float *cl_model_data(const cl_model *m, size_t i);

/* One tensor as it appears in the model file / state_dict. */
typedef struct {
    char name[96];    /* e.g. "blocks.3.ffwd.net.0.weight" */
    int ndim;
    size_t shape[2];
    size_t numel;
    float *data;      /* points into model->mem (or into a cl_params-shaped block) */
    int present;      /* 0: switched off by the config (not saved, not counted) */
    int kind;         /* index into the kinds (0..CL_NUM_PARAM_KINDS-1) */
    int layer;        /* -1 for global tensors */
} cl_tensor_info;

/* Number of file tensors for this config (present or not). */
size_t cl_model_tensor_count(const cl_config *c);
/* Describe tensor i (0 <= i < count) with data pointing into `base`, a block
 * laid out like model->mem (pass model->mem, or a gradient block). */
void cl_model_tensor(const cl_config *c, float *base, size_t i, cl_tensor_info *out);
/* Find a tensor by name; returns its index or -1. */
long cl_model_tensor_find(const cl_config *c, const char *name);

/* Floats in the one allocation for this config; fills pointers for `base`. */
size_t cl_params_layout(const cl_config *c, float *base, cl_params *p);
/* Parameters that count (present tensors; tied head counted once). */
size_t cl_model_num_params(const cl_config *c);

/* Allocate a zeroed model (LayerNorm weights 0 too) with an unset vocabulary
 * (code points 0..V-1). NULL on error. */
cl_model *cl_model_create(const cl_config *c);
void cl_model_free(cl_model *m);

/* Lecture init: weights normal(0, 0.02), biases 0, LayerNorm weight 1 bias 0. */
void cl_model_init_random(cl_model *m, uint64_t seed);

/* Load / save the HDF5 model file. Load refuses a file that is not a corpuslens
 * model, a missing tensor or a wrong shape, naming the tensor. Save writes to
 * "<path>.tmp" and renames, so no half-written file carries the final name. */
cl_model *cl_model_load(const char *path);
/* The same checks, but the weights stay in the file, mapped read-only
 * (no copy: for commands that only run the forward pass). A tensor stored
 * contiguous, unfiltered, as native float32 at an aligned offset is mapped;
 * any other is read into mem as cl_model_load does. The file must not be
 * modified in place while the model is in use (model files are replaced by
 * rename, which is safe). Never pass a mapped model to code that writes
 * weights (training, ablation) or reads p / mem directly. */
cl_model *cl_model_map(const char *path);
/* cl_model_map for one short run (predict): the file is read whole into
 * private memory on transparent huge pages, where the first touch of 4 KiB
 * file pages costs more than the copy (model.c, read_huge); a mapped file
 * where huge pages are off or the read fails. Memory: the file's size. */
cl_model *cl_model_map_copy(const char *path);
int cl_model_save(const cl_model *m, const char *path);

/* SHA-256 of the weights and config as saved (hex, 64 chars + NUL): identifies
 * a model in the attributes of later stages' outputs. */
int cl_model_fingerprint(const cl_model *m, char out[65]);

/* ---- vocabulary ---- */

/* Encode UTF-8 text to token ids. Unknown characters and invalid UTF-8 are
 * errors naming the character (U+XXXX and as text) and its character position.
 * Writes at most max_tokens ids; *n_tokens receives the number of characters. */
int cl_vocab_encode(const uint32_t *vocab, int V, const char *text, size_t len,
                    int32_t *out, size_t max_tokens, size_t *n_tokens);
/* Vocabulary of a text: sorted unique code points (as the lecture builds it).
 * *vocab is malloc'ed; returns 0 or -1 (invalid UTF-8, empty text). */
int cl_vocab_from_text(const char *text, size_t len, uint32_t **vocab, int *V);
/* Same, from a file. */
int cl_vocab_from_file(const char *path, uint32_t **vocab, int *V);
/* Write a token in C-escaped form (\n, \t, \\, \", \xNN for other controls,
 * UTF-8 otherwise) into buf (at least 16 bytes). */
void cl_token_escape(uint32_t cp, char *buf);

#endif

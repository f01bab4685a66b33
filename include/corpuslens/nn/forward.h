/* corpuslens batched forward pass with TransformerLens-named hook points.
 *
 * Dimensions as in model.h. A forward workspace holds the activations of ONE
 * layer at a time (inference: nothing is kept per layer), sized for up to
 * max_B x max_T positions; hooks copy what the caller asks for into the
 * caller's buffers, so capturing the last position of one hook costs only
 * that hook's [B, D] buffer.
 *
 * Hook points and the shape of the activation at each (per layer where named
 * blocks.{i}); "last" captures keep only position T-1 of every row:
 *   hook_embed                      [B, T, C]     token embeddings
 *   hook_pos_embed                  [B, T, C]     position embeddings
 *   blocks.{i}.hook_resid_pre       [B, T, C]
 *   blocks.{i}.ln1.hook_normalized  [B, T, C]     LayerNorm output (after affine)
 *   blocks.{i}.attn.hook_q|k|v      [B, T, C]     heads concatenated ([B,T,H,hs])
 *   blocks.{i}.attn.hook_pattern    [B, H, T, T]  softmax weights; last: [B, H, T]
 *   blocks.{i}.attn.hook_z          [B, T, C]     head outputs before sa.proj
 *   blocks.{i}.hook_attn_out        [B, T, C]     after sa.proj
 *   blocks.{i}.hook_resid_mid       [B, T, C]
 *   blocks.{i}.ln2.hook_normalized  [B, T, C]
 *   blocks.{i}.mlp.hook_pre         [B, T, F]     before the activation
 *   blocks.{i}.mlp.hook_post        [B, T, F]     after the activation
 *   blocks.{i}.hook_mlp_out         [B, T, C]
 *   blocks.{i}.hook_resid_post      [B, T, C]
 *   ln_final.hook_normalized        [B, T, C]
 * Short names accepted by cl_hook_parse with layer -1 (every block):
 *   "mlp_out", "attn_out", "resid_pre", "resid_mid", "resid_post", "mlp_pre",
 *   "mlp_post", "attn_z"; and "embed" = blocks.0.hook_resid_pre (hook_embed +
 *   hook_pos_embed, the input of block 0).
 */
#ifndef CORPUSLENS_FORWARD_H
#define CORPUSLENS_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "corpuslens/model/model.h"

typedef enum {
    CL_HOOK_EMBED = 0,
    CL_HOOK_POS_EMBED,
    CL_HOOK_RESID_PRE,
    CL_HOOK_LN1_NORMALIZED,
    CL_HOOK_Q,
    CL_HOOK_K,
    CL_HOOK_V,
    CL_HOOK_PATTERN,
    CL_HOOK_Z,
    CL_HOOK_ATTN_OUT,
    CL_HOOK_RESID_MID,
    CL_HOOK_LN2_NORMALIZED,
    CL_HOOK_MLP_PRE,
    CL_HOOK_MLP_POST,
    CL_HOOK_MLP_OUT,
    CL_HOOK_RESID_POST,
    CL_HOOK_LN_FINAL_NORMALIZED,
    CL_NUM_HOOK_POINTS
} cl_hook_point;

typedef enum {
    CL_HOOK_CAPTURE = 0,   /* copy [B, T, D] (pattern: [B, H, T, T]) into out */
    CL_HOOK_CAPTURE_LAST,  /* copy position T-1 only: [B, D] (pattern: [B, H, T]) */
    CL_HOOK_ZERO,          /* set the activation to 0 (zero-ablation) */
    CL_HOOK_MEAN,          /* set every position to mean[D] (mean-ablation) */
    CL_HOOK_CALLBACK       /* call fn(user, ...) which may read or modify act */
} cl_hook_mode;

/* Shape passed to callbacks: act is [B, T, D] (pattern: [B, H, T, T], D = T). */
typedef struct {
    int B, T, D, H;
} cl_hook_shape;

typedef int (*cl_hook_fn)(void *user, cl_hook_point point, int layer, float *act,
                          const cl_hook_shape *shape);

typedef struct {
    cl_hook_point point;
    int layer;          /* block index; -1 = every block (per-block points) */
    cl_hook_mode mode;
    float *out;         /* capture target. With layer -1 it is [L, <capture shape>] */
    const float *mean;  /* CL_HOOK_MEAN: [D], or [L, D] with layer -1 */
    cl_hook_fn fn;      /* CL_HOOK_CALLBACK; a nonzero return aborts the forward */
    void *user;
} cl_hook;

/* Name <-> point. cl_hook_parse accepts full names ("blocks.3.hook_mlp_out",
 * "hook_embed", "ln_final.hook_normalized"; layer set, or -1 for global points)
 * and the short names above (layer -1). Errors list the valid names. */
int cl_hook_parse(const char *name, int n_layer, cl_hook_point *point, int *layer);
/* Full name of a point ("blocks.{layer}.hook_mlp_out"); layer ignored for globals. */
void cl_hook_name(cl_hook_point point, int layer, char *buf, size_t n);
/* 1 for points inside blocks (blocks.{i}.*), 0 for global ones. */
int cl_hook_is_per_layer(cl_hook_point point);
/* Width D of the activation at a point (pattern: T, per query row). */
int cl_hook_width(const cl_config *c, cl_hook_point point);
/* Floats a capture needs for one layer: capture B*T*D (pattern B*H*T*T),
 * capture-last B*D (pattern B*H*T). */
size_t cl_hook_capture_size(const cl_config *c, cl_hook_point point, cl_hook_mode mode, int B, int T);

typedef struct cl_forward cl_forward;

/* Workspace for batches up to max_B rows of up to max_T (<= block_size)
 * positions. NULL on error. The model must outlive the workspace. */
cl_forward *cl_forward_create(const cl_model *m, int max_B, int max_T);
void cl_forward_free(cl_forward *f);

typedef enum {
    CL_LOGITS_NONE = 0,
    CL_LOGITS_ALL,   /* logits [B, T, V] */
    CL_LOGITS_LAST   /* logits [B, V] for the readout position only: T-1, or 0 ([start])
                        for a classifier (n_classes > 0; V is then n_classes) */
} cl_logits_mode;

/* Run the model on tokens [B, T] (ids checked against V). Hooks run in the
 * order given at each point. logits may be NULL with CL_LOGITS_NONE.
 * Returns 0, or -1 with a message (bad ids, B/T over capacity, hook error). */
int cl_forward_run(cl_forward *f, const int32_t *tokens, int B, int T,
                   const cl_hook *hooks, int n_hooks, cl_logits_mode lmode, float *logits);

/* ln_final + lm_head applied to rows of a residual stream: in [N, C] -> out
 * [N, V] (logits). Used by the logit lens. */
void cl_unembed(const cl_model *m, const float *in, size_t N, float *out);

/* Softmax over rows: x [N, V] -> probabilities in place. */
void cl_softmax_rows(float *x, size_t N, int V);

/* FLOPs of one forward of B rows x T positions (multiply-add = 2), for reports. */
double cl_forward_flops(const cl_config *c, int B, int T);

#endif

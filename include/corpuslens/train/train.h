/* corpuslens training: the lecture recipe (random windows, cross-entropy on
 * every position, AdamW, dropout), data-parallel over MPI, resumable
 * checkpoints. Dimensions as in model.h; here B is the number of rows a rank
 * holds (Bl = B_global / ranks) and N = Bl * T.
 *
 * Determinism (documented contract):
 *  - Batches: every rank draws the GLOBAL batch of B window starts from one
 *    stream (cl_rng seeded with `seed`, shared by all ranks, advanced by
 *    B draws per step); rank r takes rows [r*B/R, (r+1)*B/R). Window starts are
 *    uniform in [0, n_split - T) (the lecture's get_batch).
 *  - Dropout: the mask of global row g at step s, layer l, site k (attention
 *    pattern, attention projection, feed-forward output) comes from a cl_rng
 *    seeded with mix(seed, s, l, k, g): it does not depend on the rank count
 *    and needs no saved state.
 *  - Gradients: each rank's loss gradient is scaled by 1/(B*T) (the mean over
 *    every position of the global batch), then summed with MPI_Allreduce: the
 *    average. So R ranks with B/R rows each equal 1 rank with B rows up to the
 *    float summation order; 1 rank and a resumed run are bitwise reproducible.
 *  - Evaluation: E fixed batches per split, drawn once from a stream seeded
 *    with seed ^ CL_TRAIN_EVAL_SEED_XOR, split over ranks like training batches;
 *    no dropout; the mean loss over all their positions.
 *
 * Ownership: the trainer borrows the model (weights are updated in place) and
 * owns gradients, AdamW moments and activations (one allocation each, laid
 * out with cl_params_layout for the first three). Functions return 0 / -1 with
 * cl_error(), NULL on failure for constructors; nothing prints.
 */
#ifndef CORPUSLENS_TRAIN_H
#define CORPUSLENS_TRAIN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "corpuslens/model/model.h"
#include "corpuslens/base/rng.h"

#define CL_TRAIN_EVAL_SEED_XOR 0x5eedfacecafef00dULL

/* PyTorch torch.optim.AdamW defaults, lr from the lecture. */
typedef struct {
    float lr;           /* 3e-4 */
    float beta1, beta2; /* 0.9, 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.01, decoupled, every present tensor (biases, LayerNorm too) */
} cl_adamw;
cl_adamw cl_adamw_defaults(void);

typedef struct cl_trainer cl_trainer;

/* Workspace for up to max_B rows of T positions (T <= block_size). */
cl_trainer *cl_trainer_create(cl_model *m, int max_B, int T);
void cl_trainer_free(cl_trainer *tr);

/* The flat blocks, laid out like model->mem (n = model->n_floats floats). */
float *cl_trainer_grads(cl_trainer *tr);
float *cl_trainer_adam_m(cl_trainer *tr);
float *cl_trainer_adam_v(cl_trainer *tr);
size_t cl_trainer_n_floats(const cl_trainer *tr);

/* Forward and backward on this rank's rows: tokens[Bl, T+1] (windows: inputs
 * are columns 0..T-1, targets 1..T). Gradients are zeroed, then hold
 * d(sum of losses)/(global_rows * T). dropout p in [0, 1): masks as described
 * above, for global rows row0 .. row0+Bl-1 at `step`. *loss_sum receives the
 * sum of this rank's position losses (not divided). */
int cl_train_forward_backward(cl_trainer *tr, const int32_t *windows, int Bl, size_t row0, size_t global_rows,
                              float dropout, uint64_t seed, long step, double *loss_sum);
/* Forward only, no dropout: *loss_sum = sum of position losses of the rows. */
int cl_train_loss(cl_trainer *tr, const int32_t *windows, int Bl, double *loss_sum);
/* Sum the gradients over `comm` (no-op for one rank). */
int cl_train_allreduce_grads(cl_trainer *tr, MPI_Comm comm);
/* One AdamW step (step = 1 for the first update), torch.optim.AdamW's
 * arithmetic: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Absent tensors
 * (switched-off biases, the tied head) are not touched. */
void cl_train_adamw_step(cl_trainer *tr, const cl_adamw *hp, long step);

/* ---- data ---- */

typedef struct {
    int32_t *tokens;  /* [n] the encoded corpus; owned */
    size_t n;
    size_t n_train;   /* first 90 %: int(0.9 * n) as the lecture; the rest is validation */
} cl_train_data;

/* Read and encode a corpus for model m: char-level with its vocabulary (a
 * character outside it is an error naming it and its position), GPT-2 BPE
 * with its tokenizer, the whole text at once (invalid UTF-8 is an error
 * naming the byte). Checks both splits hold at least T+1 tokens. */
int cl_train_data_load(cl_train_data *d, const char *path, const cl_model *m, int T);
void cl_train_data_free(cl_train_data *d);
/* Draw B window starts of split (0 train, 1 val) and copy rows [r0, r1) into
 * windows[(r1-r0), T+1]. Always advances rng by B draws. */
void cl_train_draw(const cl_train_data *d, int split, cl_rng *rng, int B, int T, int r0, int r1,
                   int32_t *windows);

/* ---- the training loop ---- */

typedef struct {
    const char *corpus;     /* text file */
    int steps;              /* total number of updates (a resumed run continues to it) */
    int batch;              /* global rows per step */
    int ctx;                /* T */
    double lr;
    double dropout;
    int eval_every;         /* 0: only before the first and after the last step */
    int eval_batches;
    uint64_t seed;
    int checkpoint_every;   /* 0: only the final file */
    const char *output;     /* model file (with the /train state) */
    const char *batch_file; /* tests: windows [steps, batch, ctx+1] int32 at /windows instead of drawing */
    const char *dump_grads; /* tests: the first step's averaged gradients as /grads/<tensor> */
    int stop_after;         /* tests: fail right after the first periodic checkpoint at a
                               step >= stop_after, as a killed run would (0: never) */
} cl_train_opts;

typedef struct {
    long step;          /* updates done */
    double train_loss;  /* evaluation: NAN when not an evaluation event */
    double val_loss;
    double step_loss;   /* mean loss of the last step's batch */
    double elapsed_s;   /* training time of this process (evaluations and checkpoints excluded) */
    long steps_done_here; /* steps run by this process (for rates) */
    size_t n_train, n_val; /* kind 2: tokens in each split */
} cl_train_event;

/* Called on rank 0 only: kind 0 progress (after each step), 1 evaluation,
 * 2 the corpus is encoded (n_train, n_val; once, before step 0's evaluation). */
typedef void (*cl_train_callback)(void *user, int kind, const cl_train_event *ev);

/* Run the loop: training state from `resume` (a checkpoint: weights, moments,
 * step, rng, loss history, args) when not NULL, else from `m`. Writes the
 * final model file (rank 0) and checkpoints. Collective over comm: every rank
 * returns the same status: 0, -1 (error), or, when SIGINT or SIGTERM reached
 * any rank (interrupt.h; the ranks agree at every step), that signal's number
 * (> 0) after a checkpoint of the steps done was written to o->output
 * (cl_last_error() says at which step). */
int cl_train_run(cl_model *m, const cl_train_opts *o, const char *resume, MPI_Comm comm, cl_train_callback cb,
                 void *user);

/* Checkpoint pieces (also used by tests): the /train group of a model file. */
typedef struct {
    long step;
    cl_rng rng;
    double *loss;       /* [n_loss, 3] step, train, val; owned */
    size_t n_loss;
    cl_train_opts args; /* the strings point into `strbuf` */
    char strbuf[8192];
} cl_train_state;

/* Read /train of a checkpoint (moments into m_out/v_out when not NULL, n floats). */
int cl_train_state_load(const char *path, cl_train_state *st, float *m_out, float *v_out, size_t n);
void cl_train_state_free(cl_train_state *st);

#endif

/* The training loop (lecture recipe, data-parallel) and the checkpoint /train
 * group. Rank 0 writes files; every rank makes the same decisions and returns
 * the same status (cl_par_agree: the failing rank's message on every rank).
 *
 * Checkpoint = model file (cl_model_save: /config /vocab /weights) plus
 *   /train/adam_m, /train/adam_v  [n_floats] float32, flat, laid out like the
 *                                 model's one weight allocation (cl_params_layout)
 *   /train/step                   [1] int64, updates done
 *   /train/rng_state              [4] uint64, the batch stream (xoshiro256**)
 *                                 after `step` batches; attrs has_spare, spare
 *   /train/loss                   [K, 3] float64: step, train loss, val loss
 *   /train/args                   group; attrs corpus, steps, batch, ctx, lr,
 *                                 dropout, eval_every, eval_batches, seed,
 *                                 checkpoint_every, ranks
 * written to "<out>.train.tmp" and renamed over <out>. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corpuslens/base/clock.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"
#include "corpuslens/train/train.h"

/* Ranks agree on a local status (cl_par_agree: the failing rank's message
 * on every rank). */
static int agree(int rc, MPI_Comm comm) { return cl_par_agree(rc, comm); }

void cl_train_state_free(cl_train_state *st) {
    free(st->loss);
    st->loss = NULL;
    st->n_loss = 0;
}

static int attr_str(hid_t g, const char *name, char *buf, size_t n) { return cl_h5_attr_read_str(g, name, buf, n); }

int cl_train_state_load(const char *path, cl_train_state *st, float *m_out, float *v_out, size_t n) {
    memset(st, 0, sizeof *st);
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    int rc = 0;
    if (!cl_h5_exists(f, "/train/step")) {
        H5Fclose(f);
        return cl_error("%s is not a training checkpoint (no /train/step)", path);
    }
    hsize_t one = 1, four = 4, nn = n, dims[8];
    long long step = 0;
    uint64_t s[4];
    rc = cl_h5_read_exact(f, "/train/step", H5T_NATIVE_LLONG, 1, &one, &step);
    if (!rc) rc = cl_h5_read_exact(f, "/train/rng_state", H5T_NATIVE_UINT64, 1, &four, s);
    if (!rc && m_out) rc = cl_h5_read_exact(f, "/train/adam_m", H5T_NATIVE_FLOAT, 1, &nn, m_out);
    if (!rc && v_out) rc = cl_h5_read_exact(f, "/train/adam_v", H5T_NATIVE_FLOAT, 1, &nn, v_out);
    if (!rc) {
        int r = cl_h5_shape(f, "/train/loss", dims);
        if (r != 2 || dims[1] != 3) rc = cl_error("/train/loss is not [K, 3]");
        else {
            st->n_loss = dims[0];
            st->loss = cl_trymalloc(st->n_loss ? st->n_loss * 3 : 1, sizeof(double), "loss history");
            if (!st->loss) rc = -1;
            else if (st->n_loss) rc = cl_h5_read_exact(f, "/train/loss", H5T_NATIVE_DOUBLE, 2, dims, st->loss);
        }
    }
    if (!rc) {
        hid_t d = H5Dopen2(f, "/train/rng_state", H5P_DEFAULT);
        long long hs = 0;
        double sp = 0.0;
        if (d < 0 || cl_h5_attr_read_int(d, "has_spare", &hs) || cl_h5_attr_read_double(d, "spare", &sp))
            rc = cl_error("/train/rng_state lacks its has_spare/spare attributes");
        if (d >= 0) H5Dclose(d);
        memcpy(st->rng.s, s, sizeof s);
        st->rng.has_spare = (int)hs;
        st->rng.spare = sp;
    }
    if (!rc) {
        hid_t g = H5Gopen2(f, "/train/args", H5P_DEFAULT);
        if (g < 0) rc = cl_error("/train/args is missing");
        else {
            long long v;
            double x;
            cl_train_opts *a = &st->args;
            if (!attr_str(g, "corpus", st->strbuf, sizeof st->strbuf)) a->corpus = st->strbuf;
            else rc = -1;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "steps", &v))) a->steps = (int)v;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "batch", &v))) a->batch = (int)v;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "ctx", &v))) a->ctx = (int)v;
            if (!rc && !(rc = cl_h5_attr_read_double(g, "lr", &x))) a->lr = x;
            if (!rc && !(rc = cl_h5_attr_read_double(g, "dropout", &x))) a->dropout = x;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "eval_every", &v))) a->eval_every = (int)v;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "eval_batches", &v))) a->eval_batches = (int)v;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "seed", &v))) a->seed = (uint64_t)v;
            if (!rc && !(rc = cl_h5_attr_read_int(g, "checkpoint_every", &v))) a->checkpoint_every = (int)v;
            H5Gclose(g);
        }
    }
    st->step = step;
    H5Fclose(f);
    if (rc) {
        cl_train_state_free(st);
        return cl_error_prefix("%s: ", path);
    }
    return 0;
}

static int write_train_group(const char *path, cl_trainer *tr, long step, const cl_rng *rng, const double *loss,
                             size_t n_loss, const cl_train_opts *o, int ranks) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return cl_h5_error("cannot reopen %s to add the training state", path);
    hsize_t n = cl_trainer_n_floats(tr), one = 1, four = 4, ld[2] = {n_loss, 3};
    long long st = step;
    int rc = cl_h5_write(f, "/train/adam_m", H5T_NATIVE_FLOAT, 1, &n, cl_trainer_adam_m(tr));
    if (!rc) rc = cl_h5_write(f, "/train/adam_v", H5T_NATIVE_FLOAT, 1, &n, cl_trainer_adam_v(tr));
    if (!rc) rc = cl_h5_write(f, "/train/step", H5T_NATIVE_LLONG, 1, &one, &st);
    if (!rc) rc = cl_h5_write(f, "/train/rng_state", H5T_NATIVE_UINT64, 1, &four, rng->s);
    if (!rc) {
        hid_t d = H5Dopen2(f, "/train/rng_state", H5P_DEFAULT);
        if (d < 0 || cl_h5_attr_write_int(d, "has_spare", rng->has_spare) ||
            cl_h5_attr_write_double(d, "spare", rng->spare))
            rc = cl_error("cannot write the rng attributes");
        if (d >= 0 && H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write /train/rng_state");
    }
    if (!rc) rc = cl_h5_write(f, "/train/loss", H5T_NATIVE_DOUBLE, 2, ld, loss);
    if (!rc) {
        hid_t g = H5Gcreate2(f, "/train/args", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) rc = cl_error("cannot create /train/args");
        else {
            rc |= cl_h5_attr_write_str(g, "corpus", o->corpus ? o->corpus : "");
            rc |= cl_h5_attr_write_int(g, "steps", o->steps);
            rc |= cl_h5_attr_write_int(g, "batch", o->batch);
            rc |= cl_h5_attr_write_int(g, "ctx", o->ctx);
            rc |= cl_h5_attr_write_double(g, "lr", o->lr);
            rc |= cl_h5_attr_write_double(g, "dropout", o->dropout);
            rc |= cl_h5_attr_write_int(g, "eval_every", o->eval_every);
            rc |= cl_h5_attr_write_int(g, "eval_batches", o->eval_batches);
            rc |= cl_h5_attr_write_int(g, "seed", (long long)o->seed);
            rc |= cl_h5_attr_write_int(g, "checkpoint_every", o->checkpoint_every);
            rc |= cl_h5_attr_write_int(g, "ranks", ranks);
            if (H5Gclose(g) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write /train/args");
            if (rc) rc = -1;
        }
    }
    return cl_h5_finish(f, path, rc != 0) || rc ? -1 : 0;
}

/* Rank 0 writes the model file with its /train group (tmp + rename). */
static int save_checkpoint(cl_model *m, cl_trainer *tr, long step, const cl_rng *rng, const double *loss,
                           size_t n_loss, const cl_train_opts *o, MPI_Comm comm) {
    int rank, size, rc = 0;
    cl_par_comm_rank(comm, &rank);
    cl_par_comm_size(comm, &size);
    rc = cl_par_fault("train.checkpoint", comm);
    if (rank == 0 && !rc) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.train.tmp", o->output);
        rc = cl_model_save(m, tmp);
        if (!rc) rc = write_train_group(tmp, tr, step, rng, loss, n_loss, o, size);
        if (!rc) rc = cl_commit_file(tmp, o->output); /* fsync, rename, fsync the directory */
        if (rc) remove(tmp);
    }
    return agree(rc, comm);
}

static int dump_grads(const char *path, cl_trainer *tr, const cl_config *c, double loss) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    int rc = cl_h5_attr_write_double(f, "loss", loss);
    size_t count = cl_model_tensor_count(c);
    for (size_t i = 0; i < count && !rc; i++) {
        cl_tensor_info t;
        cl_model_tensor(c, cl_trainer_grads(tr), i, &t);
        if (!t.present) continue;
        hsize_t dims[2] = {t.shape[0], t.shape[1]};
        char name[160];
        snprintf(name, sizeof name, "/grads/%s", t.name);
        rc = cl_h5_write(f, name, H5T_NATIVE_FLOAT, t.ndim, dims, t.data);
    }
    if (cl_h5_finish(f, tmp, rc != 0)) rc = -1;
    if (!rc) rc = cl_commit_file(tmp, path);
    return rc;
}

static int read_batch_file(const char *path, int steps, int B, int T, int32_t **out) {
    hid_t f = cl_h5_open_read(path);
    if (f < 0) return -1;
    hsize_t dims[8];
    int r = cl_h5_shape(f, "/windows", dims);
    int rc = 0;
    if (r != 3 || dims[0] < (hsize_t)steps || dims[1] != (hsize_t)B || dims[2] != (hsize_t)T + 1)
        rc = cl_error("%s: /windows must be [>= %d steps, %d rows, %d] int32", path, steps, B, T + 1);
    if (!rc) {
        *out = cl_trymalloc((size_t)dims[0] * B * (T + 1), sizeof(int32_t), "batch file windows");
        if (!*out) rc = -1;
        else rc = cl_h5_read_exact(f, "/windows", H5T_NATIVE_INT32, 3, dims, *out);
    }
    H5Fclose(f);
    return rc;
}

int cl_train_run(cl_model *m, const cl_train_opts *o, const char *resume, MPI_Comm comm, cl_train_callback cb,
                 void *user) {
    int rank, size;
    cl_par_comm_rank(comm, &rank);
    cl_par_comm_size(comm, &size);
    const cl_config *c = &m->cfg;
    int rc = 0, interrupted = 0;
    /* ---- refusals, before any training ---- */
    if (!o->output || !o->corpus) rc = cl_error("train: the corpus and the output path are required");
    else if (o->batch < 1) rc = cl_error("--batch %d: the batch needs at least 1 row", o->batch);
    else if (o->batch % size) rc = cl_error("--batch %d is not divisible by the %d ranks", o->batch, size);
    else if (o->ctx < 1 || o->ctx > c->block_size)
        rc = cl_error("--ctx %d is outside 1..block_size (%d) of the model", o->ctx, c->block_size);
    else if (o->steps < 0) rc = cl_error("--steps %d is negative", o->steps);
    else if (!(o->dropout >= 0.0 && o->dropout < 1.0)) rc = cl_error("--dropout %g is outside [0, 1)", o->dropout);
    else if (o->eval_batches < 1) rc = cl_error("--eval-batches %d must be >= 1", o->eval_batches);
    if (rc) return agree(rc, comm);
    m->cfg.trained_ctx = o->ctx; /* saved with the model: generate crops its context to it */
    if (rank == 0) { /* output writable? */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.train.tmp", o->output);
        FILE *f = fopen(tmp, "wb");
        if (!f) rc = cl_error("cannot write the output %s: %s (tried %s)", o->output, strerror(errno), tmp);
        else {
            fclose(f);
            remove(tmp);
        }
    }
    if (agree(rc, comm)) return -1;

    const int B = o->batch, T = o->ctx, Bl = B / size, r0 = rank * Bl, r1 = r0 + Bl, E = o->eval_batches;
    cl_train_data data = {0};
    cl_trainer *tr = NULL;
    int32_t *win = NULL, *evalwin = NULL, *batchfile = NULL;
    double *hist = NULL;
    size_t n_hist = 0, cap_hist = 0;
    cl_rng rng;
    long step = 0;
    cl_rng_seed(&rng, o->seed);

    rc = cl_train_data_load(&data, o->corpus, m, T);
    if (agree(rc, comm)) return -1;
    if (rank == 0 && cb) {
        cl_train_event ev = {0, NAN, NAN, NAN, 0.0, 0, data.n_train, data.n - data.n_train};
        cb(user, 2, &ev);
    }
    if (!rc && o->batch_file) rc = read_batch_file(o->batch_file, o->steps, B, T, &batchfile);
    if (!rc) rc = !(tr = cl_trainer_create(m, Bl, T));
    if (!rc) rc = !(win = cl_trymalloc((size_t)Bl * (T + 1), sizeof(int32_t), "batch windows"));
    if (!rc) rc = !(evalwin = cl_trymalloc((size_t)2 * E * Bl * (T + 1), sizeof(int32_t), "evaluation windows"));
    if (!rc && resume) {
        cl_train_state st;
        rc = cl_train_state_load(resume, &st, cl_trainer_adam_m(tr), cl_trainer_adam_v(tr), m->n_floats);
        if (!rc) {
            const cl_train_opts *a = &st.args;
            if (a->batch != B || a->ctx != T || a->seed != o->seed || a->dropout != o->dropout || a->lr != o->lr)
                rc = cl_error("%s was trained with batch %d, ctx %d, seed %llu, dropout %g, lr %g; this run asks "
                              "for batch %d, ctx %d, seed %llu, dropout %g, lr %g: a resumed run must use the same",
                              resume, a->batch, a->ctx, (unsigned long long)a->seed, a->dropout, a->lr, B, T,
                              (unsigned long long)o->seed, o->dropout, o->lr);
            else if (st.step > o->steps)
                rc = cl_error("%s is at step %ld, beyond --steps %d", resume, st.step, o->steps);
            step = st.step;
            rng = st.rng;
            hist = st.loss;
            n_hist = cap_hist = st.n_loss;
            st.loss = NULL;
            cl_train_state_free(&st);
        }
    }
    if ((rc = agree(rc, comm))) goto done;

    /* fixed evaluation windows: E train batches then E val batches */
    {
        cl_rng er;
        cl_rng_seed(&er, o->seed ^ CL_TRAIN_EVAL_SEED_XOR);
        for (int s = 0; s < 2; s++)
            for (int e = 0; e < E; e++)
                cl_train_draw(&data, s, &er, B, T, r0, r1, evalwin + ((size_t)s * E + e) * Bl * (T + 1));
    }
    cl_adamw hp = cl_adamw_defaults();
    hp.lr = (float)o->lr;
    const float p = (float)o->dropout;
    double t0 = cl_wall_seconds();
    long start_step = step, done_here = 0;
    double paused = 0.0; /* seconds spent in evaluations and checkpoints (not in the rates) */
    for (;;) {
        double tp = cl_wall_seconds();
        int want_eval = step == 0 || step == o->steps || (o->eval_every > 0 && step % o->eval_every == 0);
        if (want_eval && !(n_hist && (long)hist[3 * (n_hist - 1)] == step)) {
            double sums[2] = {0, 0}, tot[2];
            for (int s = 0; s < 2 && !rc; s++)
                for (int e = 0; e < E && !rc; e++) {
                    double ls;
                    rc = cl_train_loss(tr, evalwin + ((size_t)s * E + e) * Bl * (T + 1), Bl, &ls);
                    sums[s] += ls;
                }
            if ((rc = agree(rc, comm))) goto done;
            cl_par_allreduce(sums, tot, 2, MPI_DOUBLE, MPI_SUM, comm);
            if (n_hist == cap_hist) {
                cap_hist = cap_hist ? 2 * cap_hist : 64;
                double *nh = realloc(hist, cap_hist * 3 * sizeof(double));
                if (!nh) rc = cl_error("out of memory for the loss history");
                else hist = nh;
            }
            if ((rc = agree(rc, comm))) goto done;
            double denom = (double)E * B * T;
            hist[3 * n_hist] = (double)step;
            hist[3 * n_hist + 1] = tot[0] / denom;
            hist[3 * n_hist + 2] = tot[1] / denom;
            n_hist++;
            if (rank == 0 && cb) {
                cl_train_event ev = {step, tot[0] / denom, tot[1] / denom, NAN, cl_wall_seconds() - t0 - paused, done_here, 0, 0};
                cb(user, 1, &ev);
            }
        }
        int want_ckpt = step == o->steps || (o->checkpoint_every > 0 && step > start_step &&
                                             step % o->checkpoint_every == 0);
        if (want_ckpt && save_checkpoint(m, tr, step, &rng, hist, n_hist, o, comm)) {
            rc = -1;
            goto done;
        }
        if (want_ckpt && o->stop_after > 0 && step >= o->stop_after && step < o->steps) {
            rc = cl_error("stopped after step %ld by CORPUSLENS_TRAIN_STOP_AFTER; %s resumes it", step, o->output);
            goto done;
        }
        if (step >= o->steps) break;
        /* SIGINT / SIGTERM on any rank: every rank stops here, after whole
         * steps, with a checkpoint (one int per step: cheap beside the
         * gradient allreduce) */
        int sig = cl_interrupt_signal(), gsig = 0;
        cl_par_allreduce(&sig, &gsig, 1, MPI_INT, MPI_MAX, comm);
        if (gsig) {
            if (!want_ckpt && save_checkpoint(m, tr, step, &rng, hist, n_hist, o, comm)) {
                rc = -1;
                goto done;
            }
            cl_error("interrupted by %s at step %ld of %d; the checkpoint %s holds it", cl_interrupt_name(gsig),
                     step, o->steps, o->output);
            interrupted = gsig;
            goto done;
        }
        paused += cl_wall_seconds() - tp;
        /* one update */
        if (batchfile) memcpy(win, batchfile + ((size_t)step * B + r0) * (T + 1), (size_t)Bl * (T + 1) * sizeof(int32_t));
        else cl_train_draw(&data, 0, &rng, B, T, r0, r1, win);
        double ls, lt;
        rc = cl_par_fault("train.step", comm);
        if (!rc) rc = cl_train_forward_backward(tr, win, Bl, (size_t)r0, (size_t)B, p, o->seed, step, &ls);
        /* agree before the gradient allreduce: a rank whose step failed must
         * not leave the others alone in it */
        if ((rc = agree(rc, comm))) goto done;
        rc = cl_train_allreduce_grads(tr, comm);
        if ((rc = agree(rc, comm))) goto done;
        cl_par_allreduce(&ls, &lt, 1, MPI_DOUBLE, MPI_SUM, comm);
        if (o->dump_grads && done_here == 0 && rank == 0) rc = dump_grads(o->dump_grads, tr, c, lt / ((double)B * T));
        if ((rc = agree(rc, comm))) goto done;
        step++;
        cl_train_adamw_step(tr, &hp, step);
        done_here++;
        if (rank == 0 && cb) {
            cl_train_event ev = {step, NAN, NAN, lt / ((double)B * T), cl_wall_seconds() - t0 - paused, done_here, 0, 0};
            cb(user, 0, &ev);
        }
    }
done:
    cl_train_data_free(&data);
    cl_trainer_free(tr);
    free(win);
    free(evalwin);
    free(batchfile);
    free(hist);
    return interrupted && !rc ? interrupted : rc ? -1 : 0;
}

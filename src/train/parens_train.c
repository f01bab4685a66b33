/* train --task parens: see include/corpuslens/train/parens_train.h. */
#include "corpuslens/base/clock.h"
#include "corpuslens/train/parens_train.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/rng.h"
#include "corpuslens/corpus/parens.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/nn/classify.h"
#include "corpuslens/train/train.h"

#define PARENS_CONFIG "n_layer=3,n_head=2,n_embd=56,block_size=42,causal=0,pos=sinusoidal,n_classes=2,pad_id=4"

/* rows of split s: ids [n, T], labels [n] */
static int encode_split(const cl_parens_set *d, int s, int32_t **ids, unsigned char **lab, size_t *n) {
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) k += d->split[i] == s;
    *ids = cl_trymalloc(k ? k * CL_PARENS_T : 1, sizeof **ids, "encoded rows");
    *lab = *ids ? cl_trymalloc(k ? k : 1, 1, "labels") : NULL;
    if (!*lab) return -1;
    size_t j = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->split[i] != s) continue;
        if (cl_parens_encode(d->s[i], *ids + j * CL_PARENS_T)) return -1;
        (*lab)[j++] = d->label[i];
    }
    *n = k;
    return 0;
}

static int dump_first(const char *path, cl_model *m, cl_trainer *tr, const int32_t *win, int B) {
    const int T = CL_PARENS_T;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    unsigned char *lab = malloc((size_t)B);
    int32_t *lab32 = malloc((size_t)B * sizeof *lab32);
    float *probs = malloc((size_t)B * m->cfg.n_classes * sizeof *probs);
    int rc = !ids || !lab || !lab32 || !probs ? cl_error("out of memory") : 0;
    for (int b = 0; b < B && !rc; b++) {
        memcpy(ids + (size_t)b * T, win + (size_t)b * (T + 1), T * sizeof *ids);
        lab[b] = (unsigned char)win[(size_t)b * (T + 1) + T];
        lab32[b] = lab[b];
    }
    size_t correct;
    if (!rc) rc = cl_classify(m, ids, lab, (size_t)B, T, NULL, 0, &correct, probs);
    hsize_t d2[2] = {(hsize_t)B, (hsize_t)T}, d1[1] = {(hsize_t)B}, dp[2] = {(hsize_t)B, (hsize_t)m->cfg.n_classes};
    if (!rc) rc = cl_h5_write(f, "/batch/ids", H5T_NATIVE_INT32, 2, d2, ids);
    if (!rc) rc = cl_h5_write(f, "/batch/labels", H5T_NATIVE_INT32, 1, d1, lab32);
    if (!rc) rc = cl_h5_write(f, "/batch/probs", H5T_NATIVE_FLOAT, 2, dp, probs);
    size_t nt = cl_model_tensor_count(&m->cfg);
    for (size_t i = 0; i < nt && !rc; i++) {
        cl_tensor_info t;
        cl_model_tensor(&m->cfg, cl_trainer_grads(tr), i, &t);
        if (!t.present) continue;
        char name[160];
        snprintf(name, sizeof name, "/grads/%s", t.name);
        hsize_t dims[2] = {t.shape[0], t.shape[1]};
        rc = cl_h5_write(f, name, H5T_NATIVE_FLOAT, t.ndim, dims, t.data);
    }
    free(ids);
    free(lab);
    free(lab32);
    free(probs);
    return cl_h5_commit(f, tmp, path, rc != 0);
}

int cl_parens_train(const cl_parens_train_opts *o, void (*on_event)(void *, const cl_parens_event *),
                    void *user, cl_parens_result *res) {
    const int T = CL_PARENS_T;
    memset(res, 0, sizeof *res);
    res->goal_step = -1;
    if (o->steps < 1 || o->batch < 1) return cl_error("parens: --steps and --batch must be >= 1");
    cl_config c = cl_config_lecture();
    c.vocab_size = 5;
    if (cl_config_parse(&c, PARENS_CONFIG) || (o->config && cl_config_parse(&c, o->config))) return -1;
    if (c.vocab_size != 5 || c.n_classes != 2 || c.block_size < T)
        return cl_error("parens: the config must keep vocab_size 5, n_classes 2 and block_size >= %d", T);
    cl_parens_set d;
    if (cl_parens_read(o->data, &d)) return -1;
    int rc = -1;
    int32_t *tr_ids = NULL, *va_ids = NULL, *te_ids = NULL, *win = NULL;
    unsigned char *tr_lab = NULL, *va_lab = NULL, *te_lab = NULL;
    size_t ntr = 0, nva = 0, nte = 0;
    cl_model *m = NULL;
    cl_trainer *tr = NULL;
    if (encode_split(&d, CL_SPLIT_TRAIN, &tr_ids, &tr_lab, &ntr) || encode_split(&d, CL_SPLIT_VAL, &va_ids, &va_lab, &nva) ||
        encode_split(&d, CL_SPLIT_TEST, &te_ids, &te_lab, &nte))
        goto out;
    if (!ntr || !nva || !nte) {
        cl_error("%s: the train, val and test splits must all be non-empty (%zu, %zu, %zu)", o->data, ntr, nva, nte);
        goto out;
    }
    m = cl_model_create(&c);
    if (!m) goto out;
    for (int i = 0; i < 5; i++) m->vocab[i] = (uint32_t)(unsigned char)CL_PARENS_VOCAB[i];
    cl_model_init_random(m, o->seed);
    tr = cl_trainer_create(m, o->batch, T);
    win = tr ? cl_trymalloc((size_t)o->batch * (T + 1), sizeof *win, "batch") : NULL;
    if (!win) goto out;
    cl_adamw hp = cl_adamw_defaults();
    hp.lr = (float)o->lr;
    cl_rng g;
    cl_rng_seed(&g, o->seed ^ 0x7061726e73ULL);
    double t0 = cl_wall_seconds();
    for (long step = 1; step <= o->steps; step++) {
        for (int b = 0; b < o->batch; b++) {
            size_t r = (size_t)cl_rng_below(&g, ntr);
            memcpy(win + (size_t)b * (T + 1), tr_ids + r * T, T * sizeof *win);
            win[(size_t)b * (T + 1) + T] = tr_lab[r];
        }
        double loss;
        if (cl_train_forward_backward(tr, win, o->batch, 0, (size_t)o->batch, (float)o->dropout, o->seed, step,
                                      &loss))
            goto out;
        if (step == 1 && o->dump_first && dump_first(o->dump_first, m, tr, win, o->batch)) goto out;
        if (o->cosine) /* cosine from lr down to lr / 10 at the last step */
            hp.lr = (float)(o->lr * (0.1 + 0.45 * (1.0 + cos(M_PI * (double)(step - 1) / (double)o->steps))));
        cl_train_adamw_step(tr, &hp, step);
        res->steps = step;
        cl_parens_event ev = {step, loss / o->batch, -1.0, cl_wall_seconds() - t0};
        int last = step == o->steps;
        if ((o->eval_every > 0 && step % o->eval_every == 0) || last) {
            /* periodic: the first 1000 validation rows; the last: all */
            size_t ok, nv = last || nva < 1000 ? nva : 1000;
            if (cl_classify(m, va_ids, va_lab, nv, T, NULL, 0, &ok, NULL)) goto out;
            ev.val_acc = (double)ok / (double)nv;
            ev.seconds = cl_wall_seconds() - t0;
            res->val_acc = ev.val_acc;
            if (o->goal > 0 && ev.val_acc >= o->goal && res->goal_step < 0) {
                res->goal_step = step;
                res->goal_seconds = ev.seconds;
            }
        }
        if (on_event) on_event(user, &ev);
        if (res->goal_step > 0 && o->stop_at_goal) {
            size_t okv; /* the whole validation split at the stop */
            if (cl_classify(m, va_ids, va_lab, nva, T, NULL, 0, &okv, NULL)) goto out;
            res->val_acc = (double)okv / (double)nva;
            break;
        }
    }
    res->seconds = cl_wall_seconds() - t0;
    size_t ok;
    if (cl_classify(m, te_ids, te_lab, nte, T, NULL, 0, &ok, NULL)) goto out;
    res->test_acc = (double)ok / (double)nte;
    if (cl_model_save(m, o->output)) goto out;
    rc = 0;
out:
    cl_trainer_free(tr);
    cl_model_free(m);
    free(win);
    free(tr_ids);
    free(va_ids);
    free(te_ids);
    free(tr_lab);
    free(va_lab);
    free(te_lab);
    cl_parens_free(&d);
    return rc;
}

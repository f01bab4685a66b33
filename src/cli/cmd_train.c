/* corpuslens train: the lecture recipe in C, data-parallel over MPI ranks. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/clock.h"
#include "corpuslens/par/interrupt.h"
#include "corpuslens/par/par.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/model/tokenizer.h"
#include "corpuslens/train/train.h"

typedef struct {
    int tty, B, T, steps, last_len, bpe;
    double last_print;
    long every;
} progress;

static void on_event(void *user, int kind, const cl_train_event *ev) {
    progress *pg = user;
    if (kind == 2) { /* the corpus is encoded: the loss table follows */
        if (pg->bpe)
            printf("# corpus: %zu GPT-2 BPE tokens: %zu training, %zu validation (the first 90%% / the rest)\n",
                   ev->n_train + ev->n_val, ev->n_train, ev->n_val);
        printf("%8s  %10s  %10s\n", "step", "train", "val");
        fflush(stdout);
        return;
    }
    if (kind == 1) {
        if (pg->tty && pg->last_len) fprintf(stderr, "\r%*s\r", pg->last_len, ""), pg->last_len = 0;
        printf("%8ld  %10.4f  %10.4f\n", ev->step, ev->train_loss, ev->val_loss);
        fflush(stdout);
        return;
    }
    double t = cl_wall_seconds();
    int last = ev->step == pg->steps;
    if (pg->tty ? (t - pg->last_print < 0.2 && !last) : (ev->step % pg->every != 0 && !last)) return;
    pg->last_print = t;
    double sps = ev->elapsed_s > 0 ? ev->steps_done_here / ev->elapsed_s : 0.0;
    double eta = sps > 0 ? (pg->steps - ev->step) / sps : 0.0;
    char line[256];
    int n = snprintf(line, sizeof line, "corpuslens train: step %ld/%d  loss %.4f  %.2f steps/s  %.0f tokens/s  ETA %dm%02ds",
                     ev->step, pg->steps, ev->step_loss, sps, sps * pg->B * pg->T, (int)(eta / 60),
                     (int)fmod(eta, 60.0));
    if (pg->tty) {
        fprintf(stderr, "\r%s%*s", line, pg->last_len > n ? pg->last_len - n : 0, "");
        pg->last_len = n;
        if (last) fputc('\n', stderr), pg->last_len = 0;
    } else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static const char USAGE[] =
    "[mpirun -n R] corpuslens train --corpus CORPUS.txt [--config k=v,...] [--init MODEL.h5]\n"
    "         [--tokenizer DIR]\n"
    "         --steps N --batch B --ctx T [--lr 3e-4] [--dropout 0.2] [--eval-every K]\n"
    "         [--eval-batches E] [--seed S] [--resume CKPT.h5] [--checkpoint-every K] -o MODEL.h5\n"
    "       corpuslens train --task parens --data DATA.tsv ... -o MODEL.h5  (see train --task parens --help)";

static const char ABOUT[] =
    "Trains a char-level GPT with the lecture's recipe: random windows of T characters\n"
    "from the first 90% of the corpus (the rest is validation), cross-entropy on every\n"
    "position, AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01 on every tensor),\n"
    "dropout on the attention weights, the attention projection and the feed-forward\n"
    "output. With --tokenizer DIR (GPT-2 BPE: vocab.json + merges.txt, or GPT-2's\n"
    "encoder.json + vocab.bpe) the windows are of T tokens of the encoded text, the\n"
    "head is over the tokenizer's V tokens and the model file carries /tokenizer.\n"
    "R ranks each take B/R rows of the same global batch (drawn from one\n"
    "stream seeded by S) and average gradients with MPI_Allreduce: the result does\n"
    "not depend on R beyond float rounding.\n";

static const char EPILOG[] =
    "stdout: the loss table; stderr: a progress line (steps/s, tokens/s, ETA).\n"
    "SIGINT (Ctrl-C) or SIGTERM: the ranks stop after the current step, write the\n"
    "checkpoint to -o, print the command that resumes (train --resume MODEL.h5\n"
    "--steps N -o MODEL.h5) and exit with status 130 (SIGINT) or 143 (SIGTERM).\n"
    "Open MPI's mpirun passes Ctrl-C on as SIGTERM after 1 s and SIGKILL 1 s later\n"
    "(N s each with --mca odls_base_sigkill_timeout N); --checkpoint-every K bounds\n"
    "what a kill loses (default: a checkpoint at every evaluation, --eval-every).\n"
    "Environment (tests): CORPUSLENS_TRAIN_STOP_AFTER=K fails (exit status 3) right after the first\n"
    "periodic checkpoint at a step >= K, leaving it to resume, as a killed run would.\n";

#include "corpuslens/train/parens_train.h"

static const char USAGE_PARENS[] =
    "corpuslens train --task parens --data DATA.tsv [--config k=v,...] [--steps 6000]\n"
    "         [--batch 64] [--lr 1e-3] [--dropout 0] [--seed 1] [--eval-every 100]\n"
    "         [--cosine] [--goal 0.99] [--stop-at-goal] -o MODEL.h5";

static const char ABOUT_PARENS[] =
    "Trains the balanced-parentheses classifier on a `demo-corpus parens` file: the\n"
    "model with the encoder options (causal=0, pos=sinusoidal, n_classes=2, pad_id=4;\n"
    "3 layers, 2 heads, n_embd 56, block 42 by default; --config changes them), the\n"
    "string read as ^ string $ padded with _ (vocabulary $ ( ) ^ _), cross-entropy on\n"
    "the label read at [start], AdamW. Prints step, loss and validation accuracy every\n"
    "K steps, the first step and wall time at which validation accuracy reached\n"
    "--goal, and the test accuracy at the end. Single process.\n";

static void parens_event(void *user, const cl_parens_event *ev) {
    (void)user;
    if (ev->val_acc >= 0) {
        printf("%8ld  loss %.5f  val accuracy %.4f  %.1f s\n", ev->step, ev->loss, ev->val_acc, ev->seconds);
        fflush(stdout);
    }
}

static int train_parens(int argc, char **argv) {
    cl_parens_train_opts o = {.steps = 6000, .batch = 64, .eval_every = 100, .lr = 1e-3, .goal = 0.99, .seed = 1};
    static const char *CMDP = "train --task parens";
    const char *task = NULL;
    long steps = o.steps, batch = o.batch, eval_every = o.eval_every, seed = (long)o.seed;
    const cli_option opts[] = { /* table of: train --task parens */
        CLI_OPT_CHOICE("task", 0, &task, "parens", "the balanced-parentheses classifier"),
        CLI_OPT_STRING("data", 0, "DATA.tsv", &o.data, "the data set (demo-corpus parens)"),
        CLI_OPT_STRING("config", 0, "SPEC", &o.config, "architecture over the classifier's defaults"),
        CLI_OPT_INT("steps", 0, "N", &steps, 1, 100000000L, "number of updates"),
        CLI_OPT_INT("batch", 0, "B", &batch, 1, 1000000L, "rows per step"),
        CLI_OPT_DOUBLE("lr", 0, "X", &o.lr, 0.0, 10.0, "AdamW learning rate"),
        CLI_OPT_FLAG("cosine", 0, &o.cosine, "learning rate from --lr down to lr/10 on a cosine"),
        CLI_OPT_DOUBLE("dropout", 0, "P", &o.dropout, 0.0, 0.99, "dropout probability while training"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, 0x7fffffffL, "initialisation, batch and dropout seed"),
        CLI_OPT_INT("eval-every", 0, "K", &eval_every, 0, 100000000L, "validation accuracy every K steps"),
        CLI_OPT_DOUBLE("goal", 0, "A", &o.goal, 0.0, 1.0, "report the first step with validation accuracy >= A"),
        CLI_OPT_FLAG("stop-at-goal", 0, &o.stop_at_goal, "stop there"),
        CLI_OPT_STRING("dump-first", 0, "F.h5", &o.dump_first,
                       "tests: the first batch, its class probabilities and the\n"
                       "first step's gradients"),
        CLI_OPT_STRING("output", 'o', "MODEL.h5", &o.output, "the model file"),
        CLI_END,
    };
    const cli_command cmd = {CMDP, USAGE_PARENS, ABOUT_PARENS, opts, NULL, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    o.steps = (int)steps;
    o.batch = (int)batch;
    o.eval_every = (int)eval_every;
    o.seed = (uint64_t)seed;
    if (!o.data || !o.output) return cli_usage_error(CMDP, "--data and -o are required");
    cl_parens_result r;
    if (cl_parens_train(&o, parens_event, NULL, &r)) return cli_fail();
    if (r.goal_step >= 0)
        printf("validation accuracy >= %.4f first at step %ld, %.1f s\n", o.goal, r.goal_step, r.goal_seconds);
    else
        printf("validation accuracy never reached %.4f\n", o.goal);
    printf("steps %ld, %.1f s; validation accuracy %.4f; test accuracy %.4f -> %s\n", r.steps, r.seconds, r.val_acc,
           r.test_acc, o.output);
    return 0;
}

/* s as one shell word into buf (single quotes where needed); the length written */
static int shell_word(char *buf, size_t n, const char *s) {
    int plain = *s != 0;
    for (const char *c = s; *c; c++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-+=:,@", *c)) plain = 0;
    size_t k = 0;
    if (plain) return snprintf(buf, n, "%s", s) >= (int)n ? (int)(n ? n - 1 : 0) : (int)strlen(s);
    if (k + 1 < n) buf[k++] = '\'';
    for (const char *c = s; *c && k + 5 < n; c++) {
        if (*c == '\'') memcpy(buf + k, "'\\''", 4), k += 4;
        else buf[k++] = *c;
    }
    if (k + 1 < n) buf[k++] = '\'';
    if (n) buf[k < n ? k : n - 1] = 0;
    return (int)k;
}

int cmd_train(int argc, char **argv) {
    if (cli_argv_has(argc, argv, "task")) return cli_on_rank0(train_parens, argc, argv);

    const char *corpus = NULL, *spec = NULL, *init = NULL, *resume = NULL, *out = NULL, *batch_file = NULL,
               *dump = NULL, *tokdir = NULL;
    /* -1: not given (a resumed run takes it from its checkpoint, else the default) */
    long steps = -1, batch = -1, ctx = -1, eval_every = -1, eval_batches = -1, seed = -1, ckpt_every = -1;
    double lr = -1, dropout = -1;
    const cli_option opts[] = {
        CLI_OPT_STRING("corpus", 0, "F", &corpus, "training text (UTF-8)"),
        CLI_OPT_STRING("config", 0, "SPEC", &spec,
                       "architecture over the lecture defaults (see 'corpuslens init\n"
                       "--help'); vocab_size comes from the corpus (sorted unique chars)"),
        CLI_OPT_STRING("init", 0, "M.h5", &init,
                       "start from this model (its vocabulary; a corpus character\n"
                       "outside it is refused); excludes --config"),
        CLI_OPT_STRING("tokenizer", 0, "DIR", &tokdir,
                       "train on GPT-2 BPE tokens: DIR holds vocab.json + merges.txt\n"
                       "(or encoder.json + vocab.bpe); vocab_size is its V; with\n"
                       "--init/--resume the model's tokenizer must be the same"),
        CLI_OPT_INT("steps", 0, "N", &steps, 0, 1000000000L, "total number of updates (a resumed run continues up to N)"),
        CLI_OPT_INT("batch", 0, "B", &batch, 0, 1000000L, "rows per step over all ranks (divisible by the rank count)"),
        CLI_OPT_INT("ctx", 0, "T", &ctx, 1, 1000000L, "positions per row (<= block_size)"),
        CLI_OPT_DOUBLE("lr", 0, "X", &lr, 0.0, 10.0, "AdamW learning rate (default 3e-4)"),
        CLI_OPT_DOUBLE("dropout", 0, "P", &dropout, 0.0, 0.999, "dropout probability while training (default 0.2; 0 = off)"),
        CLI_OPT_INT("eval-every", 0, "K", &eval_every, 0, 1000000000L,
                    "train/val loss every K steps (default 100; 0 = first and\n"
                    "last only); always at step 0 and at the last step"),
        CLI_OPT_INT("eval-batches", 0, "E", &eval_batches, 1, 1000000L,
                    "fixed batches per split for each evaluation (default 10)"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "initialisation, batch and dropout seed (default 1337)"),
        CLI_OPT_STRING("resume", 0, "CKPT.h5", &resume,
                       "continue a run from its checkpoint (weights, AdamW moments,\n"
                       "step, batch stream); options not given are taken from it"),
        CLI_OPT_INT("checkpoint-every", 0, "K", &ckpt_every, 0, 1000000000L,
                    "write -o (with the training state) every K steps too\n"
                    "(default: at every evaluation, --eval-every; 0 = at the\n"
                    "end only)"),
        CLI_OPT_STRING("output", 'o', "F", &out,
                       "the model file: weights, /train/loss [K,3] (step, train, val)\n"
                       "and the training state (resumable)"),
        CLI_OPT_STRING("batch-file", 0, "F", &batch_file, NULL), /* hidden: tests */
        CLI_OPT_STRING("dump-grads", 0, "F", &dump, NULL),       /* hidden: tests */
        CLI_END,
    };
    const cli_command cmd = {"train", USAGE, ABOUT, opts, EPILOG, NULL, 0, 0, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    if (!out) return cli_usage_error("train", "-o is required");
    if (steps < 0) return cli_usage_error("train", "--steps is required");
    if (init && resume) return cli_usage_error("train", "--init and --resume exclude each other");
    if (spec && (init || resume)) return cli_usage_error("train", "--config cannot change a loaded model's architecture");

    int rank, size;
    cl_par_comm_rank(MPI_COMM_WORLD, &rank);
    cl_par_comm_size(MPI_COMM_WORLD, &size);
    cl_h5_quiet();
    cl_train_opts o = {0};
    cl_train_state st = {0};
    int have_st = 0;
    if (resume) {
        /* every rank reads it; they agree before going on (cl_par_agree) */
        if (cl_par_agree(cl_train_state_load(resume, &st, NULL, NULL, 0), MPI_COMM_WORLD))
            return rank == 0 ? cli_fail() : 1;
        have_st = 1;
        const cl_train_opts *a = &st.args;
        if (!corpus) corpus = a->corpus;
        if (batch < 0) batch = a->batch;
        if (ctx < 0) ctx = a->ctx;
        if (lr < 0) lr = a->lr;
        if (dropout < 0) dropout = a->dropout;
        if (seed < 0) seed = (long)a->seed;
        if (eval_every < 0) eval_every = a->eval_every;
        if (eval_batches < 0) eval_batches = a->eval_batches;
        if (ckpt_every < 0) ckpt_every = a->checkpoint_every;
    }
    int rc = 2;
    if (!corpus) rc = cli_usage_error("train", "--corpus is required");
    else if (batch < 0) rc = cli_usage_error("train", "--batch is required");
    else if (ctx < 0) rc = cli_usage_error("train", "--ctx is required");
    else rc = 0;
    if (rc) {
        cl_train_state_free(&st);
        return rc;
    }
    o.corpus = corpus;
    o.steps = (int)steps;
    o.batch = (int)batch;
    o.ctx = (int)ctx;
    o.lr = lr < 0 ? 3e-4 : lr;
    o.dropout = dropout < 0 ? 0.2 : dropout;
    o.eval_every = eval_every < 0 ? 100 : (int)eval_every;
    o.eval_batches = eval_batches < 0 ? 10 : (int)eval_batches;
    o.seed = (uint64_t)(seed < 0 ? 1337 : seed);
    /* by default a checkpoint at every evaluation: a killed long run keeps its work */
    o.checkpoint_every = ckpt_every < 0 ? o.eval_every : (int)ckpt_every;
    o.output = out;
    o.batch_file = batch_file;
    o.dump_grads = dump;
    const char *stop = getenv("CORPUSLENS_TRAIN_STOP_AFTER");
    long stop_after = 0;
    if (stop && cli_parse_long("train", "CORPUSLENS_TRAIN_STOP_AFTER", stop, 1, 1L << 30, &stop_after)) return 2;
    o.stop_after = (int)stop_after;

    cl_model *m = NULL;
    cl_bpe *tok = NULL;
    if (tokdir && !(tok = cl_bpe_from_dir(tokdir))) {
        /* refused below, on every rank */
    } else if (resume || init) {
        const char *from = resume ? resume : init;
        m = cl_model_load(from);
        if (m && tok && !m->bpe) {
            cl_error("%s is a char-level model (a vocabulary of %d characters); it does not match the tokenizer %s "
                     "(%d GPT-2 BPE tokens)", from, m->cfg.vocab_size, tokdir, cl_bpe_vocab_size(tok));
            cl_model_free(m);
            m = NULL;
        } else if (m && tok && !cl_bpe_equal(m->bpe, tok)) {
            cl_error("the tokenizer of %s (%d tokens, %zu merges) does not match %s (%d tokens, %zu merges)", from,
                     cl_bpe_vocab_size(m->bpe), cl_bpe_num_merges(m->bpe), tokdir, cl_bpe_vocab_size(tok),
                     cl_bpe_num_merges(tok));
            cl_model_free(m);
            m = NULL;
        }
    } else if (tok) {
        cl_config c = cl_config_lecture();
        c.vocab_size = cl_bpe_vocab_size(tok);
        if (!(spec && cl_config_parse(&c, spec))) {
            if (spec && c.vocab_size != cl_bpe_vocab_size(tok))
                cl_error("--config vocab_size=%d: the tokenizer %s has %d tokens", c.vocab_size, tokdir,
                         cl_bpe_vocab_size(tok));
            else if ((m = cl_model_create(&c))) {
                m->bpe = tok; /* the model owns it now */
                tok = NULL;
                cl_model_init_random(m, o.seed);
            }
        }
    } else {
        cl_config c = cl_config_lecture();
        uint32_t *vocab = NULL;
        int V = 0;
        if (!(spec && cl_config_parse(&c, spec)) && !cl_vocab_from_file(corpus, &vocab, &V)) {
            c.vocab_size = V;
            m = cl_model_create(&c);
            if (m) {
                memcpy(m->vocab, vocab, (size_t)V * sizeof *vocab);
                cl_model_init_random(m, o.seed);
            }
        }
        free(vocab);
    }
    cl_bpe_free(tok);
    if (have_st) cl_train_state_free(&st);
    if (cl_par_agree(m && !cl_par_fault("train.load", MPI_COMM_WORLD) ? 0 : -1, MPI_COMM_WORLD)) {
        cl_model_free(m);
        return rank == 0 ? cli_fail() : 1;
    }

    progress pg = {cli_stderr_is_tty(), o.batch, o.ctx, o.steps, 0, m->bpe != NULL, 0.0,
                   o.steps / 20 > 0 ? o.steps / 20 : 1};
    if (rank == 0) {
        const cl_config *c = &m->cfg;
        printf("# train: %d layers x %d (%d heads, %s), vocab %d, %zu parameters; %d rank%s x %d rows, ctx %d, "
               "lr %g, dropout %g, seed %llu%s%s\n",
               c->n_layer, c->n_embd, c->n_head, c->activation == CL_ACT_GELU ? "gelu" : c->activation == CL_ACT_GELU_TANH ? "gelu_tanh" : "relu", c->vocab_size,
               cl_model_num_params(c), size, size == 1 ? "" : "s", size ? o.batch / size : 0, o.ctx, o.lr, o.dropout,
               (unsigned long long)o.seed, resume ? "; resuming " : "", resume ? resume : "");
        fflush(stdout);
    }
    cl_interrupt_install(); /* SIGINT / SIGTERM: stop after the step, checkpoint, say how to resume */
    rc = cl_train_run(m, &o, resume, MPI_COMM_WORLD, on_event, &pg);
    cl_model_free(m);
    if (rc > 0) { /* interrupted: the checkpoint in `out` holds the steps done */
        if (rank == 0) {
            fflush(stdout);
            char cmdline[9000];
            int n = size > 1 ? snprintf(cmdline, sizeof cmdline, "mpirun -n %d ", size) : 0;
            n += snprintf(cmdline + n, sizeof cmdline - (size_t)n, "corpuslens train --resume ");
            n += shell_word(cmdline + n, sizeof cmdline - (size_t)n, out);
            n += snprintf(cmdline + n, sizeof cmdline - (size_t)n, " --steps %d -o ", o.steps);
            shell_word(cmdline + n, sizeof cmdline - (size_t)n, out);
            fprintf(stderr, "%scorpuslens train: %s; resume with:\n  %s\n", pg.tty ? "\n" : "", cl_last_error(), cmdline);
        }
        return 128 + rc;
    }
    if (rc) {
        /* stopped at a checkpoint by CORPUSLENS_TRAIN_STOP_AFTER (every rank has
         * the same message): status 3, as a scan stopped with a checkpoint, so
         * that a Slurm RequeueExit=3 requeues it and it resumes */
        int stopped = o.stop_after > 0 && strstr(cl_last_error(), "CORPUSLENS_TRAIN_STOP_AFTER") != NULL;
        if (rank == 0) cli_fail();
        return stopped ? 3 : 1;
    }
    if (rank == 0) printf("# wrote %s\n", out);
    return 0;
}

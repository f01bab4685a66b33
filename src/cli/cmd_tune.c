/* corpuslens tune: fit block thresholds (on the grid) and weights. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/reduce/reduce.h"
#include "corpuslens/reduce/soft.h"
#include "corpuslens/reduce/report.h"

/* "LABEL v0,v1,...\n": %g, or %.6g for weights. */
static void print_list(const char *label, const double *v, int n, int weights) {
    printf("%s", label);
    for (int b = 0; b < n; b++) printf(weights ? "%s%.6g" : "%s%g", b ? "," : " ", v[b]);
    printf("\n");
}

static void print_stats(const char *name, const cl_stats *s) {
    printf("  %-22s mean %.4f  std %.4f  median %.4f  p90 %.4f  (n %zu, empty %zu)\n", name, s->mean, s->std,
           s->median, s->p90, s->count, s->n_empty);
}

static const char USAGE[] =
    "corpuslens tune SCAN.h5 [--train-fraction F] [--seed S] [--restarts R]\n"
    "                       [--max-train N] [--thresholds LIST --weights LIST]\n"
    "                       [-o SNIPPET.ini] [--h5 TUNE.h5]";

static const char ABOUT[] =
    "Fits one threshold per block (on the scan's grid) and nonnegative weights that\n"
    "minimise the mean Hellinger distance of the approximation (see `corpuslens\n"
    "reduce --help`) on a random train split of the prompts, and reports the\n"
    "held-out split's statistics for the fitted values beside the reference values\n"
    "on the same split: --thresholds/--weights, or the paper's (6 blocks).\n"
    "\n"
    "Method: the train prompts' counts above every grid threshold are held in\n"
    "memory on each prompt's support, the tokens any of its counts has (train x\n"
    "blocks x bins x support int32; the model's mass off the support is one\n"
    "number per prompt), so memory follows the nonzero counts, not the vocabulary.\n"
    "Objective: mean H over train\n"
    "prompts, an empty approximation counting as H = 1. Block coordinate descent:\n"
    "per block, every grid threshold is tried with the other blocks fixed, then the\n"
    "weight is searched on a multiplicative ladder (x1/8..x8, and 0) and refined by\n"
    "golden section in log space; weights are rescaled to max 1; sweeps repeat\n"
    "until the objective gains < 1e-6 (at most 20). Starts: the paper's values,\n"
    "uniform weights at the median grid threshold, and R random starts; the best\n"
    "train objective wins. Held-out statistics exclude empty prompts, as reduce does.\n";

static int run(int argc, char **argv) {
    const char *out = NULL, *out_h5 = NULL;
    cl_tune_opts o = {.train_fraction = 0.5, .seed = 1, .restarts = 2, .max_train = 0};
    long seed = 1, restarts = 2, max_train = 0;
    int soft = 0;
    cl_soft_tune_result sr;
    static cli_doubles rt, rw;
    const cli_option opts[] = {
        CLI_OPT_DOUBLE("train-fraction", 0, "F", &o.train_fraction, 1e-9, 1 - 1e-9,
                       "share of prompts in the train split, in (0, 1)"),
        CLI_OPT_INT("seed", 0, "S", &seed, 0, LONG_MAX, "split and restart seed"),
        CLI_OPT_INT("restarts", 0, "R", &restarts, 0, 1000, "random restarts"),
        CLI_OPT_INT("max-train", 0, "N", &max_train, 0, LONG_MAX, "fit on at most N train prompts (memory cap; 0 = all)"),
        CLI_OPT_DOUBLES("thresholds", 0, "LIST", &rt,
                        "reference thresholds, one per block on the scan's grid\n"
                        "(a start, and reported beside the fit; default: the\n"
                        "paper's for 6 blocks); needs --weights"),
        CLI_OPT_DOUBLES("weights", 0, "LIST", &rw, "reference weights, one per block (with --thresholds)"),
        CLI_OPT_STRING("output", 'o', "FILE", &out,
                       "write the fitted values as a job-file snippet:\n"
                       "[reduce] / thresholds = ... / weights = ..."),
        CLI_OPT_STRING("h5", 0, "FILE", &out_h5,
                       "the fitted values and both splits' statistics as HDF5\n"
                       "(format corpuslens-tune); `reduce --tuned FILE` sets them\n"
                       "beside the paper's values"),
        CLI_OPT_FLAG("soft", 0, &soft,
                     "also fit the soft kernel w_b exp((sim - 1) / T_b) from the bins\n"
                     "(include/corpuslens/reduce/soft.h: method, bin-width error) on\n"
                     "the same split; -o then adds an [explain] section (temperatures,\n"
                     "soft_weights) that `explain --params` reads"),
        CLI_END,
    };
    const cli_command cmd = {"tune", USAGE, ABOUT, opts, NULL, "SCAN.h5", 1, 1, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *scan_path = argv[first];
    o.seed = (uint64_t)seed;
    o.restarts = (int)restarts;
    o.max_train = (size_t)max_train;
    int err = 0;
    {
        cl_scan *s = cl_scan_open(scan_path);
        cl_tune_result r;
        if (s && (rt.set || rw.set)) {
            if (!rt.set || !rw.set || rt.n != (size_t)s->Lb || rw.n != (size_t)s->Lb)
                err = cl_error("--thresholds and --weights need %d values each (one per block)", s->Lb) != 0;
            o.ref_thresholds = rt.v, o.ref_weights = rw.v, o.n_ref = (size_t)s->Lb;
        }
        err = err || !s || cl_tune(s, &o, &r);
        if (!err) {
            printf("tune: %zu train / %zu held-out prompts, %d sweeps, train objective %.4f, %zu support cells\n",
                   r.n_train, r.n_test, r.sweeps, r.train_objective, r.support_cells);
            print_list("  thresholds =", r.thresholds, s->Lb, 0);
            print_list("  weights    =", r.weights, s->Lb, 1);
            print_stats("fitted, train", &r.train);
            print_stats("fitted, held-out", &r.test);
            if (r.have_paper) {
                print_stats(o.n_ref ? "reference, train" : "paper, train", &r.paper_train);
                print_stats(o.n_ref ? "reference, held-out" : "paper, held-out", &r.paper_test);
            }
        }
        if (!err && soft) {
            err = cl_soft_tune(s, &o, &sr) != 0;
            if (!err) {
                printf("tune --soft: %zu fit / %zu held-out prompts, %d sweeps, fit objective %.4f\n", sr.n_fit,
                       sr.n_test, sr.sweeps, sr.fit_objective);
                print_list("  temperatures =", sr.T, s->Lb, 0);
                print_list("  soft_weights =", sr.w, s->Lb, 1);
                printf("  bin-width error of the weights (exp(width / 2T) - 1):");
                for (int b = 0; b < s->Lb; b++) printf(" %.1f%%", 100 * cl_soft_bin_error(s->bin_width, sr.T[b]));
                printf("\n");
                print_stats("soft, held-out", &sr.test_soft);
                if (sr.have_paper) print_stats("paper, held-out", &sr.test_paper);
            }
        }
        if (!err && out) {
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%s.tmp", out);
            FILE *f = fopen(tmp, "w");
            if (!f) err = cl_error("cannot write %s: %s", tmp, strerror(errno)) != 0;
            else {
                fprintf(f, "# corpuslens tune %s: seed %llu, train fraction %g, held-out mean H %.4f",
                        scan_path, (unsigned long long)o.seed, o.train_fraction, r.test.mean);
                if (r.have_paper) fprintf(f, " (%s values %.4f)", o.n_ref ? "reference" : "paper", r.paper_test.mean);
                fprintf(f, "\n[reduce]\nthresholds = ");
                for (int b = 0; b < s->Lb; b++) fprintf(f, "%s%g", b ? "," : "", r.thresholds[b]);
                fprintf(f, "\nweights = ");
                for (int b = 0; b < s->Lb; b++) fprintf(f, "%s%.6g", b ? "," : "", r.weights[b]);
                fprintf(f, "\n");
                if (soft) {
                    fprintf(f, "# soft kernel (corpuslens tune --soft), held-out mean H %.4f\n[explain]\ntemperatures = ",
                            sr.test_soft.mean);
                    for (int b = 0; b < s->Lb; b++) fprintf(f, "%s%g", b ? "," : "", sr.T[b]);
                    fprintf(f, "\nsoft_weights = ");
                    for (int b = 0; b < s->Lb; b++) fprintf(f, "%s%.6g", b ? "," : "", sr.w[b]);
                    fprintf(f, "\n");
                }
                errno = 0;
                int bad = fflush(f) != 0 || ferror(f), e = bad ? (errno ? errno : EIO) : 0;
                if (fclose(f) && !bad) bad = 1, e = errno;
                if (bad) {
                    remove(tmp);
                    err = cl_error("cannot write %s: %s", tmp, strerror(e)) != 0;
                } else if (cl_commit_file(tmp, out)) {
                    err = 1;
                } else {
                    printf("tune: wrote %s\n", out);
                }
            }
        }
        if (!err && out_h5) {
            cl_tuned t = {.Lb = s->Lb, .have_paper = r.have_paper, .train_fraction = o.train_fraction,
                          .seed = (long long)o.seed, .n_train = (long long)r.n_train, .n_test = (long long)r.n_test,
                          .fit_train_mean = r.train.mean, .fit_test_mean = r.test.mean, .fit_test_std = r.test.std,
                          .fit_test_median = r.test.median, .fit_test_empty = (long long)r.test.n_empty,
                          .paper_train_mean = r.paper_train.mean, .paper_test_mean = r.paper_test.mean,
                          .paper_test_std = r.paper_test.std, .paper_test_median = r.paper_test.median,
                          .paper_test_empty = (long long)r.paper_test.n_empty};
            memcpy(t.thresholds, r.thresholds, sizeof t.thresholds);
            memcpy(t.weights, r.weights, sizeof t.weights);
            memcpy(t.paper_thresholds, r.ref_thresholds, sizeof t.paper_thresholds);
            memcpy(t.paper_weights, r.ref_weights, sizeof t.paper_weights);
            if (cl_tuned_write(out_h5, &t)) err = 1;
            else printf("tune: wrote %s\n", out_h5);
        }
        if (err) cli_fail();
        cl_scan_close(s);
    }
    return err ? 1 : 0;
}

/* One rank works; the others wait for its status. */
int cmd_tune(int argc, char **argv) { return cli_on_rank0(run, argc, argv); }

/* corpuslens tune: fit block thresholds (on the grid) and weights. */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "corpuslens/base/error.h"
#include "corpuslens/reduce/reduce.h"
#include "corpuslens/reduce/soft.h"

static const char *help =
    "usage: corpuslens tune SCAN.h5 [--train-fraction F] [--seed S] [--restarts R]\n"
    "                       [--max-train N] [--soft] [-o SNIPPET.ini]\n"
    "\n"
    "Fits one threshold per block (on the scan's grid) and nonnegative weights that\n"
    "minimise the mean Hellinger distance of the approximation (see `corpuslens\n"
    "reduce --help`) on a random train split of the prompts, and reports the\n"
    "held-out split's statistics for the fitted values beside the paper's values\n"
    "(6 blocks) on the same split.\n"
    "\n"
    "Method: the train prompts' counts above every grid threshold are held in\n"
    "memory (train x blocks x bins x vocab int32). Objective: mean H over train\n"
    "prompts, an empty approximation counting as H = 1. Block coordinate descent:\n"
    "per block, every grid threshold is tried with the other blocks fixed, then the\n"
    "weight is searched on a multiplicative ladder (x1/8..x8, and 0) and refined by\n"
    "golden section in log space; weights are rescaled to max 1; sweeps repeat\n"
    "until the objective gains < 1e-6 (at most 20). Starts: the paper's values,\n"
    "uniform weights at the median grid threshold, and R random starts; the best\n"
    "train objective wins. Held-out statistics exclude empty prompts, as reduce does.\n"
    "\n"
    "  --train-fraction F  share of prompts in the train split, in (0, 1) (0.5)\n"
    "  --seed S            split and restart seed (1)\n"
    "  --restarts R        random restarts (2)\n"
    "  --max-train N       fit on at most N train prompts (memory cap; 0 = all)\n"
    "  --soft              also fit the soft kernel w_b exp((sim - 1) / T_b) from the bins\n"
    "                      (include/corpuslens/reduce/soft.h: method, bin-width error), on\n"
    "                      the same split; adds an [explain] section (temperatures,\n"
    "                      soft_weights) that `explain --params` reads\n"
    "  -o FILE             write the fitted values as a job-file snippet:\n"
    "                      [reduce] / thresholds = ... / weights = ...\n";

static void print_stats(const char *name, const cl_stats *s) {
    printf("  %-22s mean %.4f  std %.4f  median %.4f  p90 %.4f  (n %zu, empty %zu)\n", name, s->mean, s->std,
           s->median, s->p90, s->count, s->n_empty);
}

int cmd_tune(int argc, char **argv) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *scan_path = NULL, *out = NULL;
    int soft = 0;
    cl_soft_tune_result sr;
    cl_tune_opts o = {.train_fraction = 0.5, .seed = 1, .restarts = 2, .max_train = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0) fputs(help, stdout);
            return 0;
        } else if (!strcmp(a, "--train-fraction") && v) {
            if (cli_parse_double("tune", a, v, 1e-9, 1 - 1e-9, &o.train_fraction)) return 2;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            if (cli_parse_long("tune", a, v, 0, 0x7fffffffffffffffL, &l)) return 2;
            o.seed = (uint64_t)l, i++;
        } else if (!strcmp(a, "--restarts") && v) {
            if (cli_parse_long("tune", a, v, 0, 1000, &l)) return 2;
            o.restarts = (int)l, i++;
        } else if (!strcmp(a, "--max-train") && v) {
            if (cli_parse_long("tune", a, v, 0, 0x7fffffffffffffffL, &l)) return 2;
            o.max_train = (size_t)l, i++;
        } else if (!strcmp(a, "--soft")) {
            soft = 1;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) out = v, i++;
        else if (a[0] == '-' && a[1]) return cli_usage_error("tune", "unknown option or missing value '%s'", a);
        else if (!scan_path) scan_path = a;
        else return cli_usage_error("tune", "unexpected argument '%s'", a);
    }
    if (!scan_path) return cli_usage_error("tune", "SCAN.h5 is required");
    /* One rank works; the others wait for its status. */
    int err = 0;
    if (rank == 0) {
        cl_scan *s = cl_scan_open(scan_path);
        cl_tune_result r;
        err = !s || cl_tune(s, &o, &r);
        if (!err) {
            printf("tune: %zu train / %zu held-out prompts, %d sweeps, train objective %.4f\n", r.n_train,
                   r.n_test, r.sweeps, r.train_objective);
            printf("  thresholds =");
            for (int b = 0; b < s->Lb; b++) printf("%s%g", b ? "," : " ", r.thresholds[b]);
            printf("\n  weights    =");
            for (int b = 0; b < s->Lb; b++) printf("%s%.6g", b ? "," : " ", r.weights[b]);
            printf("\n");
            print_stats("fitted, train", &r.train);
            print_stats("fitted, held-out", &r.test);
            if (r.have_paper) {
                print_stats("paper, train", &r.paper_train);
                print_stats("paper, held-out", &r.paper_test);
            }
        }
        if (!err && soft) {
            err = cl_soft_tune(s, &o, &sr) != 0;
            if (!err) {
                printf("tune --soft: %zu fit / %zu held-out prompts, %d sweeps, fit objective %.4f\n", sr.n_fit,
                       sr.n_test, sr.sweeps, sr.fit_objective);
                printf("  temperatures =");
                for (int b = 0; b < s->Lb; b++) printf("%s%g", b ? "," : " ", sr.T[b]);
                printf("\n  soft_weights =");
                for (int b = 0; b < s->Lb; b++) printf("%s%.6g", b ? "," : " ", sr.w[b]);
                printf("\n  bin-width error of the weights (exp(width / 2T) - 1):");
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
                if (r.have_paper) fprintf(f, " (paper values %.4f)", r.paper_test.mean);
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
                int bad = ferror(f);
                if (fclose(f) || bad || rename(tmp, out)) {
                    remove(tmp);
                    err = cl_error("cannot write %s", out) != 0;
                } else {
                    printf("tune: wrote %s\n", out);
                }
            }
        }
        if (err) cli_fail();
        cl_scan_close(s);
    }
    MPI_Bcast(&err, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return err ? 1 : 0;
}

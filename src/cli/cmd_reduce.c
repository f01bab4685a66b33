/* corpuslens reduce: scan.h5 -> report/ (report.md, report.h5, SVG plots). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "corpuslens/base/error.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/reduce/reduce.h"
#include "corpuslens/reduce/soft.h"
#include "corpuslens/reduce/report.h"

static const char *help =
    "usage: corpuslens reduce SCAN.h5 [--thresholds t0,t1,...] [--weights w0,w1,...]\n"
    "                         [--compare-model M.h5 ...] [--examples i,j,...] -o DIR\n"
    "\n"
    "Turns a finished scan into the Hellinger report. Per prompt and block, the\n"
    "next-token counts of the corpus substrings more similar than the block's\n"
    "threshold are summed (from /freq/counts: bins whose lower edge >= threshold,\n"
    "exact on the scan's grid); the weighted sum over blocks (raw counts) is\n"
    "normalised into the approximation, and its Hellinger distance\n"
    "H = sqrt(sum (sqrt p - sqrt q)^2) / sqrt 2 to the model's softmax is taken.\n"
    "Baselines with the same statistics: each block alone, the logit lens at each\n"
    "block, the exact-string n-gram, the unigram, and each --compare-model (the\n"
    "noise floor: another model's distribution on the prompts).\n"
    "\n"
    "  --thresholds LIST  one per block, on the scan's grid of bin lower edges, in\n"
    "                     [prefilter, 1] (default: the paper's 0.95,0.94,0.85,0.76,\n"
    "                     0.81,0.89 for 6 blocks; required otherwise)\n"
    "  --weights LIST     one per block, >= 0, not all 0 (default: the paper's\n"
    "                     0.01,0.01,0.1,1.5,6,0.01 for 6 blocks)\n"
    "  --compare-model F  another model file with the same vocabulary (repeatable);\n"
    "                     its forward passes are split over the MPI ranks\n"
    "  --examples LIST    prompt indices to show in the examples table\n"
    "  --temperatures LIST  also the soft kernel w_b exp((sim - 1) / T_b) from the bins\n"
    "                     (weights: --soft-weights LIST, default the hard weights); its\n"
    "                     statistics are printed with the bin-width error of the weights\n"
    "                     (include/corpuslens/reduce/soft.h); `explain` computes it exactly\n"
    "  -o, --output DIR   output folder (created): report.md, report.h5,\n"
    "                     hellinger_density.svg, block_matches.svg\n"
    "\n"
    "Statistics: count, n_empty, mean, std (population), min, p10, p25, median,\n"
    "p75, p90, max (linear interpolation, numpy's default). Prompts with an empty\n"
    "distribution are counted in n_empty and excluded; their H is stored as -1.\n";

/* Parse "a,b,c" into a malloc'ed array. */
static int parse_list(const char *opt, const char *s, double **out, size_t *n) {
    size_t cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    double *v = malloc(cap * sizeof *v);
    if (!v) return cli_usage_error("reduce", "out of memory"), -1;
    size_t k = 0;
    const char *p = s;
    while (1) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || !isfinite(x)) {
            free(v);
            cli_usage_error("reduce", "%s: '%s' is not a comma-separated list of numbers", opt, s);
            return -1;
        }
        v[k++] = x;
        if (*end == '\0') break;
        p = end + 1;
    }
    *out = v;
    *n = k;
    return 0;
}

int cmd_reduce(int argc, char **argv) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *scan_path = NULL, *outdir = NULL;
    const char *compare[64];
    size_t n_compare = 0;
    double *thr = NULL, *w = NULL, *ex = NULL, *sT = NULL, *sW = NULL;
    size_t n_thr = 0, n_w = 0, n_ex = 0, n_sT = 0, n_sW = 0;
    int rc = 2;
    char opt[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int step = 1;
        const char *eq = a[0] == '-' && a[1] == '-' ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof opt) {
            /* --option=value: the same as --option value */
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            a = opt, v = eq + 1, step = 0;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0) fputs(help, stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--thresholds") && v) {
            free(thr);
            if (parse_list("--thresholds", v, &thr, &n_thr)) goto out;
            i += step;
        } else if (!strcmp(a, "--weights") && v) {
            free(w);
            if (parse_list("--weights", v, &w, &n_w)) goto out;
            i += step;
        } else if (!strcmp(a, "--temperatures") && v) {
            free(sT);
            if (parse_list("--temperatures", v, &sT, &n_sT)) goto out;
            i += step;
        } else if (!strcmp(a, "--soft-weights") && v) {
            free(sW);
            if (parse_list("--soft-weights", v, &sW, &n_sW)) goto out;
            i += step;
        } else if (!strcmp(a, "--examples") && v) {
            free(ex);
            if (parse_list("--examples", v, &ex, &n_ex)) goto out;
            i += step;
        } else if (!strcmp(a, "--compare-model") && v) {
            if (n_compare == 64) {
                cli_usage_error("reduce", "at most 64 --compare-model");
                goto out;
            }
            compare[n_compare++] = v, i += step;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) outdir = v, i += step;
        else if (a[0] == '-' && a[1]) {
            cli_usage_error("reduce", "unknown option or missing value '%s'", a);
            goto out;
        } else if (!scan_path) scan_path = a;
        else {
            cli_usage_error("reduce", "unexpected argument '%s'", a);
            goto out;
        }
    }
    if (!scan_path) {
        cli_usage_error("reduce", "SCAN.h5 is required");
        goto out;
    }
    if (!outdir) {
        cli_usage_error("reduce", "-o DIR is required");
        goto out;
    }
    size_t *examples = NULL;
    if (n_ex) {
        examples = malloc(n_ex * sizeof *examples);
        if (!examples) {
            cli_usage_error("reduce", "out of memory");
            goto out;
        }
        for (size_t i = 0; examples && i < n_ex; i++) {
            if (!(ex[i] >= 0) || ex[i] != floor(ex[i]) || ex[i] > 1e15) {
                cli_usage_error("reduce", "--examples: %g is not a prompt index", ex[i]);
                free(examples);
                goto out;
            }
            examples[i] = (size_t)ex[i];
        }
    }
    rc = 1;
    double t0 = MPI_Wtime();
    cl_scan *s = cl_scan_open(scan_path);
    double tv[64], wv[64];
    int kb[64];
    char **texts = NULL;
    float **cprobs = NULL;
    cl_reduction *r = NULL;
    int err = !s;
    if (!err && cl_reduce_params(s, thr, n_thr, w, n_w, tv, wv, kb)) err = 1;
    if (!err) err = !(texts = cl_scan_read_texts(s));
    int any;
    MPI_Allreduce(&err, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any) goto done;
    if (n_compare) {
        cprobs = calloc(n_compare, sizeof *cprobs);
        err = !cprobs;
        for (size_t c = 0; !err && c < n_compare; c++) {
            cl_model *m = cl_model_load(compare[c]);
            int lerr = !m, lany;
            MPI_Allreduce(&lerr, &lany, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (lany) {
                if (!lerr) cl_error("%s: could not be loaded on another rank", compare[c]);
                cl_model_free(m);
                err = 1;
                break;
            }
            cprobs[c] = rank == 0 ? malloc(s->P * (size_t)s->V * sizeof(float)) : NULL;
            lerr = rank == 0 && !cprobs[c];
            MPI_Allreduce(&lerr, &lany, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (lany) {
                cl_error("out of memory for %s's probabilities", compare[c]);
                cl_model_free(m);
                err = 1;
                break;
            }
            if (cl_reduce_model_probs(m, s, texts, MPI_COMM_WORLD, cprobs[c])) {
                cl_error_prefix("--compare-model %s: ", compare[c]);
                err = 1;
            }
            cl_model_free(m);
        }
        if (err) goto done;
    }
    double t1 = MPI_Wtime();
    if (rank == 0) {
        r = cl_reduce(s, tv, wv, kb, (const float *const *)cprobs, compare, n_compare);
        cl_report_opts o = {.scan_path = scan_path, .examples = examples, .n_examples = n_ex};
        err = !r || cl_sha256_file(scan_path, o.scan_sha256) || cl_report_write(outdir, s, r, texts, &o);
    }
    MPI_Bcast(&err, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (err) goto done;
    if (rank == 0) {
        printf("reduce: %zu prompts, mean H %.4f, std %.4f, median %.4f (%zu empty); n-gram %.4f, unigram %.4f",
               r->P, r->stats.mean, r->stats.std, r->stats.median, r->stats.n_empty,
               r->baselines[2 * r->Lb].stats.mean, r->baselines[2 * r->Lb + 1].stats.mean);
        for (size_t c = 0; c < n_compare; c++)
            printf(", %s %.4f", r->baselines[2 * r->Lb + 2 + c].name, r->baselines[2 * r->Lb + 2 + c].stats.mean);
        printf("\nreduce: wrote %s/report.md, report.h5, hellinger_density.svg, block_matches.svg "
               "(%.2f s: models %.2f s, counts %.2f s)\n",
               outdir, MPI_Wtime() - t0, t1 - t0, r->seconds_read);
    }
    if (rank == 0 && sT) {
        /* the soft kernel from the bins (printed only; report.h5 is unchanged) */
        size_t Lb = (size_t)s->Lb;
        double *hs = malloc(s->P * sizeof *hs);
        cl_stats st;
        if (n_sT != Lb || (sW && n_sW != Lb)) {
            cl_error("--temperatures/--soft-weights need %zu values (one per block)", Lb);
            err = 1;
        } else if (!hs || cl_soft_reduce(s, sT, sW ? sW : wv, hs) || cl_stats_compute(hs, s->P, &st)) {
            err = 1;
        } else {
            printf("reduce: soft kernel from the bins: mean H %.4f, std %.4f, median %.4f (%zu empty); weight error "
                   "from the bin width (exp(width / 2T) - 1):",
                   st.mean, st.std, st.median, st.n_empty);
            for (size_t b = 0; b < Lb; b++) printf(" %.1f%%", 100 * cl_soft_bin_error(s->bin_width, sT[b]));
            printf("\n");
        }
        free(hs);
    }
    MPI_Bcast(&err, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (err) goto done;
    rc = 0;
done:
    if (rc && rank == 0) cli_fail();
    cl_reduction_free(r);
    if (cprobs)
        for (size_t c = 0; c < n_compare; c++) free(cprobs[c]);
    free(cprobs);
    cl_scan_texts_free(texts);
    cl_scan_close(s);
    free(examples);
out:
    free(sT);
    free(sW);
    free(thr);
    free(w);
    free(ex);
    return rc;
}

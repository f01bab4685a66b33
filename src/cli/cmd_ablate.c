/* corpuslens ablate: the paper's Appendix IV. Per block, the Hellinger
 * distance between the normal output and the output with that block's
 * attention output or feed-forward output removed, over a corpus's prompts,
 * split across MPI ranks. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "corpuslens/par/par.h"
#include "corpuslens/analysis/analysis.h"
#include "corpuslens/corpus/corpus.h"
#include "corpuslens/base/error.h"
#include "corpuslens/nn/forward.h"
#include "corpuslens/reduce/report.h"
#include "corpuslens/base/svg.h"

#define CMD "ablate"
#define ABL_BATCH 32

static void mean_std(const double *x, size_t n, size_t stride, double *mean, double *sd) {
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += x[i * stride];
    *mean = n ? s / n : NAN;
    for (size_t i = 0; i < n; i++) q += (x[i * stride] - *mean) * (x[i * stride] - *mean);
    *sd = n ? sqrt(q / n) : NAN;
}

static int write_bars(const char *path, int L, const double *ma, const double *sa, const double *mf,
                      const double *sf, const char *mode, size_t P) {
    double left = 70, top = 70, pw = 90.0 * L, ph = 300, right = 30, bottom = 70;
    double W = left + pw + right, H = top + ph + bottom;
    if (W < 660) W = 660, pw = W - left - right;
    double hi = 0;
    for (int l = 0; l < L; l++) {
        if (ma[l] + sa[l] > hi) hi = ma[l] + sa[l];
        if (mf[l] + sf[l] > hi) hi = mf[l] + sf[l];
    }
    hi = hi <= 0.2 ? 0.2 : hi <= 0.5 ? 0.5 : 1.0;
    cl_svg *s = cl_svg_open(path, W, H);
    if (!s) return -1;
    char buf[256];
    snprintf(buf, sizeof buf, "Block ablation (%s): Hellinger distance to the normal output", mode);
    cl_svg_text(s, left, 26, 16, "start", "#111111", 0, 1, 0, buf);
    snprintf(buf, sizeof buf, "mean \xc2\xb1 1 std over %zu prompts, last position", P);
    cl_svg_text(s, left, 46, 12, "start", "#555555", 0, 0, 0, buf);
    double y0 = top + ph;
    cl_svg_yaxis(s, left, y0, top, 0, hi, 5, "%.1f", pw);
    cl_svg_line(s, left, y0, left + pw, y0, "#333333", 1);
    cl_svg_text(s, 20, top + ph / 2, 12, "middle", "#333333", -90, 0, 0, "Hellinger distance");
    const char *col[2] = {"#4c72b0", "#dd8452"};
    double gw = pw / L, bw = gw * 0.32;
    for (int l = 0; l < L; l++) {
        double gx = left + gw * l + gw / 2;
        for (int k = 0; k < 2; k++) {
            double m = k ? mf[l] : ma[l], sd = k ? sf[l] : sa[l];
            double x = gx + (k ? 0.02 * gw : -0.02 * gw - bw);
            double yh = y0 - ph * m / hi;
            cl_svg_rect(s, x, yh, bw, y0 - yh, col[k], NULL);
            double ylo = y0 - ph * fmax(m - sd, 0) / hi, yhi = y0 - ph * fmin(m + sd, hi) / hi, xc = x + bw / 2;
            cl_svg_line(s, xc, ylo, xc, yhi, "#222222", 1.2);
            cl_svg_line(s, xc - 4, ylo, xc + 4, ylo, "#222222", 1.2);
            cl_svg_line(s, xc - 4, yhi, xc + 4, yhi, "#222222", 1.2);
            snprintf(buf, sizeof buf, "%.2f", m);
            cl_svg_text(s, xc, yhi - 5, 10, "middle", "#222222", 0, 0, 0, buf);
        }
        snprintf(buf, sizeof buf, "block %d", l);
        cl_svg_text(s, gx, y0 + 18, 12, "middle", "#111111", 0, 0, 0, buf);
    }
    /* legend under the axis */
    double lx = left, ly = y0 + 40;
    const char *lab[2] = {"attention removed (hook_attn_out)", "feed-forward removed (hook_mlp_out)"};
    for (int k = 0; k < 2; k++) {
        cl_svg_rect(s, lx, ly, 14, 14, col[k], NULL);
        cl_svg_text(s, lx + 20, ly + 12, 12, "start", "#111111", 0, 0, 0, lab[k]);
        lx += 250;
    }
    return cl_svg_close(s);
}

static const char USAGE[] =
    "mpirun -n R corpuslens ablate --model MODEL.h5 --corpus CORPUS.h5 [--mode zero|mean]\n"
    "                                     [--max P] [--svg BARS.svg] [-o ABLATION.h5]\n"
    "       corpuslens ablate --model MODEL.h5 [--mode zero|mean] [--svg BARS.svg] [-o ABLATION.h5] TEXT...\n"
    "       corpuslens ablate --model PARENS.h5 --data PARENS.tsv [--split train|val|test]";

static const char ABOUT[] =
    "For each block i and each of the first P prompts of CORPUS.h5 (all by\n"
    "default), the Hellinger distance between the model's next-token\n"
    "distribution at the last position and the distribution with\n"
    "  attention removed:    blocks.i.hook_attn_out ablated (x + ffwd(ln2(x)))\n"
    "  feed-forward removed: blocks.i.hook_mlp_out ablated  (x + sa(ln1(x)))\n"
    "one block and one part at a time; mean and standard deviation (population)\n"
    "over the prompts (Pather 2024, Appendix IV).\n";

static const char EPILOG[] =
    "With TEXTs (all of the same length in tokens) instead of --corpus, they are\n"
    "the prompts. A GPT-2 BPE model takes a corpus.h5 prepared with its tokenizer\n"
    "(prepare --vocab-from) or TEXTs.\n"
    "\n"
    "Prompts are split across the ranks in contiguous blocks; per-prompt\n"
    "distances are gathered to rank 0 and reduced in prompt order, so the\n"
    "output does not depend on the number of ranks.\n"
    "\n"
    "With --data, on a balanced-parentheses classifier (train --task parens) and\n"
    "its data set (demo-corpus parens): the accuracy on one split with each\n"
    "block's attention or feed-forward output zeroed, and with each head's output\n"
    "zeroed, beside the intact model's. One process.\n";

/* tok[B, T] = prompts i0 .. i0+B-1: of the corpus c, or of the encoded TEXTs ptok [P, T]. */
static void prompt_batch(int32_t *tok, const cl_corpus *c, const int32_t *ptok, size_t i0, int B, int T) {
    for (int b = 0; b < B; b++)
        memcpy(tok + (size_t)b * T,
               c ? c->prompt_tokens + (i0 + b) * (size_t)T : ptok + (i0 + b) * (size_t)T,
               (size_t)T * sizeof *tok);
}

int cmd_ablate(int argc, char **argv) {
    const char *model = NULL, *corpus = NULL, *svg = NULL, *mode_s = "zero", *out_h5 = NULL, *data = NULL,
               *split = NULL;
    long max_p = 0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("corpus", 0, "CORPUS.h5", &corpus, "the prompts (a prepared corpus file)"),
        CLI_OPT_CHOICE("mode", 0, &mode_s, "zero|mean",
                       "zero: set the output to 0; mean: set it, at every position,\n"
                       "to its mean over every position of the P prompts (one vector\n"
                       "per block and part, computed in a first pass; summed in fixed\n"
                       "point so that it does not depend on the number of ranks)"),
        CLI_OPT_INT("max", 0, "P", &max_p, 1, 1L << 40, "only the first P prompts (default: all)"),
        CLI_OPT_STRING("svg", 0, "FILE", &svg, "bar chart of the means with +-1 std error bars"),
        CLI_OPT_STRING("output", 'o', "FILE.h5", &out_h5,
                       "the table as HDF5 (format corpuslens-ablation:\n"
                       "/attn_removed/{mean,std}, /ffwd_removed/{mean,std} [L]);\n"
                       "`reduce --ablation FILE.h5` sets it beside the paper's"),
        CLI_OPT_STRING("data", 0, "PARENS.tsv", &data, "instead of --corpus: a parentheses data set (see above)"),
        CLI_OPT_CHOICE("split", 0, &split, "train|val|test", "with --data: the split to score (default test)"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, EPILOG, "TEXT", 0, 4096, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *const *texts = (const char *const *)argv + first;
    int n_texts = argc - first;
    if (split && !data) return cli_usage_error(CMD, "--split goes with --data");
    if (data) {
        if (!model) return cli_usage_error(CMD, "--model is required");
        if (corpus || n_texts || strcmp(mode_s, "zero") || max_p || svg || out_h5)
            return cli_usage_error(CMD, "--data takes no --corpus, TEXT, --mode, --max, --svg or -o");
        int rc = cli_rank0() ? cli_parens_ablate(model, data, split ? split : "test") : 0; /* rank 0 does it */
        return cli_bcast_int(rc);
    }
    if (!model || (!corpus && !n_texts)) return cli_usage_error(CMD, "--model and --corpus (or TEXTs) are required");
    if (corpus && n_texts) return cli_usage_error(CMD, "give --corpus or TEXTs, not both");
    cl_ablate_mode mode;
    if (!strcmp(mode_s, "zero")) mode = CL_ABLATE_ZERO;
    else mode = CL_ABLATE_MEAN;

    int rank, R;
    cl_par_comm_rank(MPI_COMM_WORLD, &rank);
    cl_par_comm_size(MPI_COMM_WORLD, &R);
    int ok = 1, all_ok = 0, L = 0, T = 0;
    size_t P = 0, lo = 0, hi = 0, C = 0;
    cl_corpus *c = NULL;
    cl_forward *f = NULL;
    int32_t *tok = NULL;
    int64_t *acc = NULL, *acc_all = NULL;
    float *mean = NULL;
    double *h = NULL, *h_all = NULL;
    int *counts = NULL, *displs = NULL;
    int32_t *ptok = NULL; /* the TEXTs' tokens [P, T] */
    cl_model *m = cl_model_load(model);
    if (!m) ok = 0;
    if (ok && n_texts) { /* every rank encodes the same texts */
        for (int b = 0; ok && b < n_texts; b++) {
            int32_t *ids;
            size_t n;
            if (cli_encode(m, texts[b], &ids, &n)) {
                ok = 0, cl_error_prefix("text %d: ", b + 1);
                break;
            }
            if (b == 0) {
                T = (int)n;
                if (!(ptok = cl_trymalloc((size_t)n_texts * n, sizeof *ptok, "tokens"))) ok = 0;
            } else if ((int)n != T) {
                ok = 0, cl_error("text %d has %zu tokens, text 1 has %d: all texts must have the same length", b + 1,
                                 n, T);
            }
            if (ok) memcpy(ptok + (size_t)b * T, ids, (size_t)T * sizeof *ids);
            free(ids);
        }
    }
    /* the prompts' rows only (issue 26: no rank reads the whole corpus) */
    /* a GPT-2 BPE corpus too: its prompts are token n-grams of the model's tokenizer */
    if (ok && !n_texts && !(c = cl_corpus_open_part(corpus, 1))) ok = 0;
    if (ok && c && cli_corpus_fits_model(m, c, corpus)) ok = 0;
    if (ok && c && c->n_prompts < 1) ok = 0, cl_error("%s has no prompts (prepare --prompts 0): ablate needs them", corpus);
    if (ok && m->cfg.n_layer > 64) ok = 0, cl_error("ablate supports at most 64 blocks");
    if (ok) {
        L = m->cfg.n_layer, T = c ? c->L : T, C = (size_t)m->cfg.n_embd;
        P = c ? c->n_prompts : (size_t)n_texts;
        if (max_p > 0 && (size_t)max_p < P) P = (size_t)max_p;
        lo = P * rank / R, hi = P * (rank + 1) / R;
        tok = cl_trymalloc((size_t)ABL_BATCH * T, sizeof *tok, "tokens");
        h = tok ? cl_trycalloc(2 * (hi - lo) * L + 1, sizeof *h, "distances") : NULL;
        f = h ? cl_forward_create(m, ABL_BATCH, T) : NULL;
        if (!f) ok = 0;
    }
    /* Pass 1 (mean mode): fixed-point sums of the outputs, reduced exactly. */
    if (ok && mode == CL_ABLATE_MEAN) {
        acc = cl_trycalloc(2 * (size_t)L * C, sizeof *acc, "ablation sums");
        acc_all = acc ? cl_trycalloc(2 * (size_t)L * C, sizeof *acc_all, "ablation sums") : NULL;
        mean = acc_all ? cl_trymalloc(2 * (size_t)L * C, sizeof *mean, "ablation means") : NULL;
        if (!mean) ok = 0;
        for (size_t i0 = lo; ok && i0 < hi; i0 += ABL_BATCH) {
            int B = (int)(hi - i0 < ABL_BATCH ? hi - i0 : ABL_BATCH);
            prompt_batch(tok, c, ptok, i0, B, T);
            if (cl_ablate_accumulate(f, m, tok, B, T, acc)) ok = 0;
        }
    }
    all_ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD); /* the failing rank's message */
    if (!all_ok) goto out;
    if (mode == CL_ABLATE_MEAN) {
        cl_par_allreduce(acc, acc_all, (int)(2 * L * C), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        double n = (double)P * T * CL_ABLATE_FIXED_SCALE;
        for (size_t k = 0; k < 2 * L * C; k++) mean[k] = (float)((double)acc_all[k] / n);
    }
    /* Pass 2: the 2L ablations of every prompt. */
    for (size_t i0 = lo; ok && i0 < hi; i0 += ABL_BATCH) {
        int B = (int)(hi - i0 < ABL_BATCH ? hi - i0 : ABL_BATCH);
        prompt_batch(tok, c, ptok, i0, B, T);
        /* h [n_mine, 2, L]: attention then feed-forward per prompt */
        double ha[ABL_BATCH * 64], hf[ABL_BATCH * 64];
        if (cl_ablate_run(f, m, tok, B, T, mode, mean, ha, hf)) {
            ok = 0;
            break;
        }
        for (int b = 0; b < B; b++) {
            double *row = h + (i0 - lo + b) * 2 * L;
            memcpy(row, ha + (size_t)b * L, (size_t)L * sizeof(double));
            memcpy(row + L, hf + (size_t)b * L, (size_t)L * sizeof(double));
        }
    }
    if (ok && cl_par_fault("ablate.run", MPI_COMM_WORLD)) ok = 0;
    all_ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD);
    if (!all_ok) goto out;
    if (P * 2 * L > 2147483647u) {
        ok = all_ok = 0, cl_error("too many prompts for one gather (%zu)", P);
        goto out;
    }
    if (rank == 0) {
        h_all = cl_trymalloc(P * 2 * L + 1, sizeof *h_all, "distances");
        counts = cl_trymalloc((size_t)R, sizeof *counts, "counts");
        displs = cl_trymalloc((size_t)R, sizeof *displs, "displs");
        if (!h_all || !counts || !displs) ok = 0;
        for (int r = 0; ok && r < R; r++) {
            counts[r] = (int)((P * (r + 1) / R - P * r / R) * 2 * L);
            displs[r] = (int)(P * r / R * 2 * L);
        }
    }
    ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD);
    all_ok = ok;
    if (!ok) goto out;
    cl_par_gatherv(h, (int)((hi - lo) * 2 * L), MPI_DOUBLE, h_all, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double ma[64], sa[64], mf[64], sf[64];
        printf("block ablation (%s) over %zu prompts of %s (%d %s), %d rank%s\n", mode_s, P,
               corpus ? corpus : "the texts", T, m->bpe ? "tokens" : "characters", R, R == 1 ? "" : "s");
        printf("Hellinger distance to the normal output at the last position: mean +- std\n");
        printf("%-7s %21s %21s\n", "block", "attention removed", "feed-forward removed");
        for (int l = 0; l < L; l++) {
            mean_std(h_all + l, P, 2 * (size_t)L, &ma[l], &sa[l]);
            mean_std(h_all + L + l, P, 2 * (size_t)L, &mf[l], &sf[l]);
            printf("%-7d %10.6f +- %7.6f %10.6f +- %7.6f\n", l, ma[l], sa[l], mf[l], sf[l]);
        }
        if (svg && write_bars(svg, L, ma, sa, mf, sf, mode_s, P)) ok = 0;
        if (ok && out_h5) {
            cl_ablation ab = {.L = L, .prompts = (long long)P};
            snprintf(ab.mode, sizeof ab.mode, "%s", mode_s);
            memcpy(ab.attn_mean, ma, (size_t)L * sizeof(double)), memcpy(ab.attn_std, sa, (size_t)L * sizeof(double));
            memcpy(ab.ffwd_mean, mf, (size_t)L * sizeof(double)), memcpy(ab.ffwd_std, sf, (size_t)L * sizeof(double));
            if (cl_ablation_write(out_h5, &ab)) ok = 0;
        }
    }
    ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD);
    all_ok = ok;
out:
    if (!all_ok && rank == 0) cli_fail();
    cl_forward_free(f);
    cl_corpus_free(c);
    cl_model_free(m);
    free(tok);
    free(ptok);
    free(acc);
    free(acc_all);
    free(mean);
    free(h);
    free(h_all);
    free(counts);
    free(displs);
    return all_ok ? 0 : 1;
}

/* corpuslens lens: the logit lens of one text (table + SVG heatmap), or its
 * per-block averages over the prompts of a corpus.h5, split across MPI ranks. */
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
#include "corpuslens/base/svg.h"
#include "corpuslens/model/tokenizer.h"

#define CMD "lens"

/* Display form of a token: C-escaped, a space shown as the open box (at the
 * start of a BPE token too: GPT-2 tokens carry their leading space). */
static void token_display(const cl_model *m, int id, char *buf, size_t n) {
    char tmp[48];
    cl_tok_display(m, id, tmp, sizeof tmp);
    if (tmp[0] == ' ') snprintf(buf, n, "\xe2\x90\xa3%s", tmp + 1);
    else snprintf(buf, n, "%s", tmp);
}

/* The C-escaped form of a UTF-8 text (invalid bytes as \xNN) into out[n]. */
static void text_escape(const char *text, char *out, size_t n) {
    size_t len = strlen(text), k = 0;
    for (size_t i = 0; i < len && k + 17 < n;) {
        uint32_t cp;
        int b = cl_utf8_get((const unsigned char *)text + i, len - i, &cp);
        char e[16];
        if (b < 0) snprintf(e, sizeof e, "\\x%02x", (unsigned char)text[i]), b = 1;
        else cl_token_escape(cp, e);
        size_t l = strlen(e);
        memcpy(out + k, e, l);
        k += l, i += (size_t)b;
    }
    out[k] = 0;
}

static size_t utf8_width(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void print_padded(const char *s, size_t width) {
    fputs(s, stdout);
    for (size_t w = utf8_width(s); w < width; w++) putchar(' ');
}

static void layer_label(int l, char *buf, size_t n) {
    if (l == 0) snprintf(buf, n, "embed");
    else snprintf(buf, n, "block %d", l - 1);
}

static int write_heatmap(const char *path, const cl_model *m, const int32_t *ids, int T, const int32_t *top_id,
                         const float *top_p, const char *text) {
    int L1 = m->cfg.n_layer + 1, bpe = cl_tok_is_bpe(m);
    char buf[512], tok[64];
    /* cells as wide as the longest token shown (BPE tokens are words) */
    size_t wmax = 1;
    for (int t = 0; t < T; t++) {
        token_display(m, ids[t], tok, sizeof tok);
        if (utf8_width(tok) > wmax) wmax = utf8_width(tok);
    }
    for (size_t i = 0; i < (size_t)L1 * T; i++) {
        token_display(m, top_id[i], tok, sizeof tok);
        if (utf8_width(tok) > wmax) wmax = utf8_width(tok);
    }
    double cw = 52, ch = 34, left = 96, top = 92, right = 120, bottom = 44, fs = 15;
    if (bpe) {
        if (wmax > 16) wmax = 16;
        cw = 14 + 8.2 * (double)wmax;
        if (cw < 52) cw = 52;
        fs = 13;
    }
    double W = left + cw * T + right, H = top + ch * L1 + bottom;
    if (W < 520) W = 520;
    cl_svg *s = cl_svg_open(path, W, H);
    if (!s) return -1;
    char esc[400];
    text_escape(text, esc, sizeof esc);
    snprintf(buf, sizeof buf, "Logit lens: \"%s\"", esc);
    cl_svg_text(s, left, 26, 16, "start", "#111111", 0, 1, 0, buf);
    cl_svg_text(s, left, 46, 12, "start", "#555555", 0, 0, 0,
                "cell: top next-token at that layer and position; colour: its probability");
    for (int t = 0; t < T; t++) {
        double x = left + cw * t + cw / 2;
        token_display(m, ids[t], tok, bpe ? 17 + 3 : sizeof tok);
        snprintf(buf, sizeof buf, "%d", t);
        cl_svg_text(s, x, top - 28, 11, "middle", "#777777", 0, 0, 0, buf);
        cl_svg_text(s, x, top - 10, fs, "middle", "#111111", 0, 1, 1, tok);
    }
    cl_svg_text(s, left - 10, top - 28, 11, "end", "#777777", 0, 0, 0, "position");
    cl_svg_text(s, left - 10, top - 10, 12, "end", "#111111", 0, 0, 0, "input");
    for (int l = 0; l < L1; l++) {
        double y = top + ch * l;
        layer_label(l, buf, sizeof buf);
        cl_svg_text(s, left - 10, y + ch / 2 + 4, 13, "end", "#111111", 0, 0, 0, buf);
        for (int t = 0; t < T; t++) {
            float p = top_p[(size_t)l * T + t];
            char col[8];
            int dark;
            cl_svg_viridis(p, col, &dark);
            double x = left + cw * t;
            cl_svg_rect(s, x, y, cw, ch, col, "#ffffff");
            token_display(m, top_id[(size_t)l * T + t], tok, sizeof tok);
            cl_svg_text(s, x + cw / 2, y + ch / 2 + 5, fs, "middle", dark ? "#ffffff" : "#000000", 0, 1, 1, tok);
        }
    }
    cl_svg_text(s, left + cw * T / 2, top + ch * L1 + 24, 12, "middle", "#333333", 0, 0, 0,
                bpe ? "position (input token) \xe2\x86\x92 prediction of the next token"
                    : "position (input character) \xe2\x86\x92 prediction of the next character");
    cl_svg_text(s, 22, top + ch * L1 / 2, 12, "middle", "#333333", -90, 0, 0, "layer (residual stream)");
    /* legend: colour bar 0..1 */
    double lx = left + cw * T + 30, ly = top, lh = ch * L1;
    for (int i = 0; i < 50; i++) {
        char col[8];
        cl_svg_viridis(1.0 - (i + 0.5) / 50, col, NULL);
        cl_svg_rect(s, lx, ly + lh * i / 50, 16, lh / 50 + 0.5, col, NULL);
    }
    cl_svg_rect(s, lx, ly, 16, lh, "none", "#333333");
    for (int i = 0; i <= 4; i++) {
        double y = ly + lh * (1 - i / 4.0);
        snprintf(buf, sizeof buf, "%.2f", i / 4.0);
        cl_svg_line(s, lx + 16, y, lx + 21, y, "#333333", 1);
        cl_svg_text(s, lx + 24, y + 4, 11, "start", "#333333", 0, 0, 0, buf);
    }
    cl_svg_text(s, lx + 8, ly - 10, 11, "middle", "#333333", 0, 0, 0, "P(top)");
    return cl_svg_close(s);
}

static int lens_text(const cl_model *m, const char *text, const char *svg) {
    int L1 = m->cfg.n_layer + 1, rc = -1;
    int32_t *ids = NULL, *top_id = NULL;
    size_t n;
    float *top_p = NULL;
    double *st = NULL;
    cl_forward *f = NULL;
    if (cli_encode(m, text, &ids, &n)) return -1;
    int T = (int)n;
    top_id = cl_trymalloc((size_t)L1 * T, sizeof *top_id, "lens top tokens");
    top_p = top_id ? cl_trymalloc((size_t)L1 * T, sizeof *top_p, "lens top probabilities") : NULL;
    st = top_p ? cl_trymalloc((size_t)CL_LENS_NSTATS * L1, sizeof(double), "lens statistics") : NULL;
    if (!st) goto out;
    f = cl_forward_create(m, 1, T);
    cl_lens_stats ls = {st, st + L1, st + 2 * L1, st + 3 * L1, st + 4 * L1, st + 5 * L1};
    if (!f || cl_logit_lens_text(f, m, ids, T, top_id, top_p, &ls)) goto out;
    size_t wcol = 8; /* column width: the longest token shown (BPE), at least 8 */
    char tok[64], lab[32], esc[4200];
    for (size_t i = 0; i < (size_t)L1 * T + T; i++) {
        token_display(m, i < (size_t)T ? ids[i] : top_id[i - T], tok, sizeof tok);
        size_t w = utf8_width(tok) + (i < (size_t)T ? 0 : 6);
        if (w > wcol) wcol = w;
    }
    text_escape(text, esc, sizeof esc);
    printf("logit lens of \"%s\" (%d %s): top next token and its probability\n", esc, T,
           cl_tok_is_bpe(m) ? "tokens" : "positions");
    print_padded("input", 9);
    for (int t = 0; t < T; t++) {
        token_display(m, ids[t], tok, sizeof tok);
        printf(" ");
        print_padded(tok, wcol);
    }
    printf("\n");
    for (int l = 0; l < L1; l++) {
        layer_label(l, lab, sizeof lab);
        print_padded(lab, 9);
        for (int t = 0; t < T; t++) {
            char cell[96];
            token_display(m, top_id[(size_t)l * T + t], tok, sizeof tok);
            snprintf(cell, sizeof cell, "%s %.3f", tok, top_p[(size_t)l * T + t]);
            printf(" ");
            print_padded(cell, wcol);
        }
        printf("\n");
    }
    token_display(m, top_id[(size_t)(L1 - 1) * T + T - 1], tok, sizeof tok);
    printf("\ndistance to the final distribution; rank of the final top token '%s' at the last position\n", tok);
    printf("%-9s %9s %9s %9s %9s %6s\n", "layer", "H_last", "KL_last", "H_mean", "KL_mean", "rank");
    for (int l = 0; l < L1; l++) {
        layer_label(l, lab, sizeof lab);
        printf("%-9s %9.6f %9.6f %9.6f %9.6f %6.0f\n", lab, ls.h_last[l], ls.kl_last[l], ls.h_mean[l],
               ls.kl_mean[l], ls.rank_last[l]);
    }
    if (svg && write_heatmap(svg, m, ids, T, top_id, top_p, text)) goto out;
    rc = 0;
out:
    cl_forward_free(f);
    free(ids);
    free(top_id);
    free(top_p);
    free(st);
    return rc;
}

#define LENS_BATCH 32
#define LENS_BYTES ((size_t)64 << 20)

static int lens_prompts(const cl_model *m, const char *corpus, long max_p) {
    int rank, R;
    cl_par_comm_rank(MPI_COMM_WORLD, &rank);
    cl_par_comm_size(MPI_COMM_WORLD, &R);
    int ok = m != NULL, L1 = m ? m->cfg.n_layer + 1 : 1, V = m ? m->cfg.vocab_size : 1;
    size_t P = 0, lo = 0, hi = 0, per = (size_t)CL_LENS_NSTATS * L1;
    double *mine = NULL, *all = NULL;
    float *probs = NULL;
    int32_t *tok = NULL;
    int *counts = NULL, *displs = NULL;
    cl_forward *f = NULL;
    /* the prompts' rows only; a GPT-2 BPE corpus of the model's tokenizer too */
    cl_corpus *c = ok ? cl_corpus_open_part(corpus, 1) : NULL;
    if (!c || cli_corpus_fits_model(m, c, corpus)) ok = 0;
    if (ok && c->n_prompts < 1) ok = 0, cl_error("%s has no prompts (prepare --prompts 0): lens needs them", corpus);
    if (ok) {
        P = c->n_prompts;
        if (max_p > 0 && (size_t)max_p < P) P = (size_t)max_p;
        lo = P * rank / R, hi = P * (rank + 1) / R;
        int T = c->L;
        /* the lens probabilities [B, L1, T, V]: at most LENS_BATCH prompts and
           LENS_BYTES (a BPE model's V), at least one prompt */
        size_t one = (size_t)L1 * T * V * sizeof(float), nb = LENS_BYTES / one;
        int BB = nb < 1 ? 1 : nb < LENS_BATCH ? (int)nb : LENS_BATCH;
        mine = cl_trycalloc((hi - lo) * per + 1, sizeof(double), "lens statistics");
        probs = mine ? cl_trymalloc((size_t)BB * L1 * T * V, sizeof(float), "lens probabilities") : NULL;
        tok = probs ? cl_trymalloc((size_t)BB * T, sizeof(int32_t), "tokens") : NULL;
        f = tok ? cl_forward_create(m, BB, T) : NULL;
        if (!f) ok = 0;
        for (size_t i0 = lo; ok && i0 < hi; i0 += (size_t)BB) {
            int B = (int)(hi - i0 < (size_t)BB ? hi - i0 : (size_t)BB);
            for (int b = 0; b < B; b++)
                memcpy(tok + (size_t)b * T, c->prompt_tokens + (i0 + b) * (size_t)T, (size_t)T * sizeof(int32_t));
            if (cl_logit_lens(f, m, tok, B, T, probs)) {
                ok = 0;
                break;
            }
            for (int b = 0; b < B; b++) {
                double *st = mine + (i0 - lo + b) * per;
                cl_lens_stats ls = {st, st + L1, st + 2 * L1, st + 3 * L1, st + 4 * L1, st + 5 * L1};
                cl_lens_stats_compute(probs + (size_t)b * L1 * T * V, L1, T, V, &ls);
            }
        }
    }
    if (ok && cl_par_fault("lens.prompts", MPI_COMM_WORLD)) ok = 0;
    int all_ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD); /* the failing rank's message */
    if (!all_ok) {
        if (rank == 0) cli_fail();
        goto out;
    }
    /* Gather every prompt's statistics to rank 0 (prompt order). */
    if (rank == 0) {
        all = cl_trymalloc(P * per + 1, sizeof(double), "lens statistics");
        counts = cl_trymalloc((size_t)R, sizeof(int), "counts");
        displs = cl_trymalloc((size_t)R, sizeof(int), "displs");
        if (!all || !counts || !displs) ok = 0;
        for (int r = 0; ok && r < R; r++) {
            counts[r] = (int)((P * (r + 1) / R - P * r / R) * per);
            displs[r] = (int)(P * r / R * per);
        }
    }
    ok = !cl_par_agree(ok ? 0 : -1, MPI_COMM_WORLD);
    if (!ok) {
        if (rank == 0) cli_fail();
        goto out;
    }
    if (P * per > 2147483647u) {
        if (rank == 0) fprintf(stderr, "corpuslens lens: too many prompts for one gather (%zu)\n", P);
        ok = 0;
        goto out;
    }
    cl_par_gatherv(mine, (int)((hi - lo) * per), MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double sum[CL_LENS_NSTATS][64] = {{0}};
        int Lp = L1 < 64 ? L1 : 64;
        for (size_t i = 0; i < P; i++)
            for (int k = 0; k < CL_LENS_NSTATS; k++)
                for (int l = 0; l < Lp; l++) sum[k][l] += all[i * per + (size_t)k * L1 + l];
        printf("logit lens over %zu prompts of %s (%d %s), %d rank%s: per-layer means\n", P, corpus, c->L,
               c->bpe ? "tokens" : "characters", R, R == 1 ? "" : "s");
        printf("%-9s %9s %9s %9s %9s %9s %9s\n", "layer", "H_last", "KL_last", "H_mean", "KL_mean", "rank",
               "top1_last");
        for (int l = 0; l < Lp; l++) {
            char lab[32];
            layer_label(l, lab, sizeof lab);
            printf("%-9s", lab);
            for (int k = 0; k < CL_LENS_NSTATS; k++) printf(" %9.6f", P ? sum[k][l] / P : NAN);
            printf("\n");
        }
    }
out:
    cl_forward_free(f);
    cl_corpus_free(c);
    free(mine);
    free(all);
    free(probs);
    free(tok);
    free(counts);
    free(displs);
    return all_ok && ok ? 0 : -2;
}

static const char USAGE[] =
    "corpuslens lens --model MODEL.h5 [--svg HEAT.svg] TEXT\n"
    "       mpirun -n R corpuslens lens --model MODEL.h5 --prompts CORPUS.h5 [--max P]\n"
    "       corpuslens lens --model PARENS.h5 --parens STRING [--attn-svg PATTERNS.svg]";

static const char ABOUT[] =
    "The logit lens: the embedding (the block-0 input residual, hook_embed +\n"
    "hook_pos_embed) and each block's residual output (blocks.{i}.hook_resid_post)\n"
    "put through ln_final + lm_head and a softmax, at every position. The last\n"
    "block's row is the model's own output.\n"
    "\n"
    "With TEXT it prints\n"
    "  - the top token and its probability per layer x position (the column\n"
    "    header is the input character; the prediction is for the next one),\n"
    "  - per layer: Hellinger distance and KL(final || layer) in nats to the\n"
    "    final distribution at the last position and averaged over positions,\n"
    "    and the rank (1 = top) of the model's final top token at the last position,\n"
    "and with --svg a heatmap: positions across, layers down, cell colour = the\n"
    "probability of the cell's top token, cell text = that token.\n"
    "On a GPT-2 BPE model the columns are the prompt's tokens (a leading space\n"
    "shown as \xe2\x90\xa3) and the cells the decoded top tokens; the lens holds two\n"
    "[T, V] distributions at a time. --prompts needs a char-level model.\n"
    "\n"
    "With --prompts it runs over the first P prompts of CORPUS.h5 (all by\n"
    "default), split across the MPI ranks in contiguous blocks, and prints the\n"
    "per-layer means of the same statistics (plus the fraction of prompts whose\n"
    "layer top token at the last position is the final top token). Per-prompt\n"
    "values are gathered to rank 0 and summed in prompt order: the output does\n"
    "not depend on the number of ranks.\n"
    "\n"
    "With --parens, on a balanced-parentheses classifier (train --task parens):\n"
    "at [start], the probability of 'balanced' that the residual stream after the\n"
    "embedding and after each block gives through ln_f + head, and the model's own;\n"
    "--attn-svg draws every head's attention pattern on the string.\n";

int cmd_lens(int argc, char **argv) {
    const char *model = NULL, *svg = NULL, *prompts = NULL, *parens = NULL, *attn_svg = NULL;
    long max_p = 0;
    const cli_option opts[] = {
        CLI_OPT_STRING("model", 0, "MODEL.h5", &model, "the model file"),
        CLI_OPT_STRING("svg", 0, "HEAT.svg", &svg, "with TEXT: write the heatmap"),
        CLI_OPT_STRING("prompts", 0, "CORPUS.h5", &prompts, "instead of TEXT: the prompts of this corpus file (MPI)"),
        CLI_OPT_INT("max", 0, "P", &max_p, 1, 1L << 40, "with --prompts: only the first P prompts (default: all)"),
        CLI_OPT_STRING("parens", 0, "STRING", &parens,
                       "instead of TEXT: a string of ( and ) for a parentheses\n"
                       "classifier (see above)"),
        CLI_OPT_STRING("attn-svg", 0, "F.svg", &attn_svg, "with --parens: write the attention patterns"),
        CLI_END,
    };
    const cli_command cmd = {CMD, USAGE, ABOUT, opts, NULL, "TEXT", 0, 1, NULL};
    int first, prc = cli_parse(&cmd, argc, argv, &first);
    if (prc != CLI_PARSED) return prc;
    const char *text = first < argc ? argv[first] : NULL;
    if (!model) return cli_usage_error(CMD, "--model is required");
    if (attn_svg && !parens) return cli_usage_error(CMD, "--attn-svg goes with --parens");
    if (parens) {
        if (text || prompts || svg || max_p)
            return cli_usage_error(CMD, "--parens takes no TEXT, --prompts, --svg or --max");
        int rc = cli_rank0() ? cli_parens_lens(model, parens, attn_svg) : 0; /* one string: rank 0 does it */
        return cli_bcast_int(rc);
    }
    if (prompts && text) return cli_usage_error(CMD, "give either TEXT or --prompts, not both");
    if (!prompts && !text) return cli_usage_error(CMD, "TEXT or --prompts CORPUS.h5 is required");
    if (prompts && svg) return cli_usage_error(CMD, "--svg draws one TEXT's heatmap; it does not go with --prompts");
    if (!prompts && max_p) return cli_usage_error(CMD, "--max goes with --prompts");
    if (!prompts && !cli_rank0()) return 0; /* one text: rank 0 does it */
    cl_model *m = cl_model_load(model);
    int rc;
    if (prompts) { /* every rank joins, also after a failed load */
        int r = lens_prompts(m, prompts, max_p);
        rc = r == 0 ? 0 : 1;
    } else if (!m) {
        rc = cli_fail();
    } else {
        rc = lens_text(m, text, svg) ? cli_fail() : 0;
    }
    cl_model_free(m);
    return rc;
}

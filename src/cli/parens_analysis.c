/* The balanced-parentheses classifier's analyses (issue 17), reached from
 * `ablate --data` and `lens --parens`:
 *   ablate: test accuracy with each block's attention or feed-forward output
 *           zeroed, and with each head's output (its slice of attn.hook_z)
 *           zeroed; the drop from the intact model;
 *   lens:   at [start], the class probabilities each layer would give (the
 *           residual stream after embed / each block through ln_f + head);
 *           --attn-svg: every head's attention pattern on the string. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "corpuslens/base/error.h"
#include "corpuslens/base/svg.h"
#include "corpuslens/corpus/parens.h"
#include "corpuslens/nn/classify.h"
#include "corpuslens/nn/forward.h"

static int is_parens_model(const cl_model *m) {
    if (m->cfg.n_classes != 2 || m->cfg.vocab_size != 5 || m->cfg.block_size < CL_PARENS_T)
        return cl_error("not a parentheses classifier (want n_classes 2, vocabulary $ ( ) ^ _, block >= %d)",
                        CL_PARENS_T);
    for (int i = 0; i < 5; i++)
        if (m->vocab[i] != (uint32_t)(unsigned char)CL_PARENS_VOCAB[i])
            return cl_error("not a parentheses classifier (vocabulary is not $ ( ) ^ _)");
    return 0;
}

typedef struct {
    int head, hs;
} head_off;

static int zero_head(void *user, cl_hook_point point, int layer, float *act, const cl_hook_shape *sh) {
    (void)point;
    (void)layer;
    const head_off *h = user;
    size_t rows = (size_t)sh->B * sh->T;
    for (size_t r = 0; r < rows; r++) memset(act + r * sh->D + (size_t)h->head * h->hs, 0, (size_t)h->hs * sizeof(float));
    return 0;
}

int cli_parens_ablate(const char *model, const char *data, const char *split_name) {
    static const char *const splits[] = {"train", "val", "test"};
    int split = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(split_name, splits[i])) split = i;
    if (split < 0) return cli_usage_error("ablate", "--split %s: train, val or test", split_name);
    cl_model *m = cl_model_load(model);
    if (!m) return cli_fail();
    cl_parens_set d;
    int rc = 1;
    int32_t *ids = NULL;
    unsigned char *lab = NULL;
    if (is_parens_model(m) || cl_parens_read(data, &d)) {
        cl_model_free(m);
        return cli_fail();
    }
    size_t n = 0;
    for (size_t i = 0; i < d.n; i++) n += d.split[i] == split;
    const int T = CL_PARENS_T, L = m->cfg.n_layer, H = m->cfg.n_head;
    ids = cl_trymalloc(n ? n * T : 1, sizeof *ids, "rows");
    lab = ids ? cl_trymalloc(n ? n : 1, 1, "labels") : NULL;
    if (!lab) goto out;
    if (!n) {
        cl_error("%s: the %s split is empty", data, split_name);
        goto out;
    }
    for (size_t i = 0, j = 0; i < d.n; i++) {
        if (d.split[i] != split) continue;
        if (cl_parens_encode(d.s[i], ids + j * T)) goto out;
        lab[j++] = d.label[i];
    }
    size_t ok;
    if (cl_classify(m, ids, lab, n, T, NULL, 0, &ok, NULL)) goto out;
    double base = (double)ok / n;
    printf("%s: %s split, %zu strings; intact model accuracy %.4f\n", model, split_name, n, base);
    printf("%-26s %9s %9s\n", "removed (zeroed)", "accuracy", "change");
    for (int l = 0; l < L; l++) {
        static const cl_hook_point parts[2] = {CL_HOOK_ATTN_OUT, CL_HOOK_MLP_OUT};
        static const char *const pname[2] = {"attention", "feed-forward"};
        for (int p = 0; p < 2; p++) {
            cl_hook hk = {.point = parts[p], .layer = l, .mode = CL_HOOK_ZERO};
            if (cl_classify(m, ids, lab, n, T, &hk, 1, &ok, NULL)) goto out;
            char name[64];
            snprintf(name, sizeof name, "block %d %s", l, pname[p]);
            printf("%-26s %9.4f %+9.4f\n", name, (double)ok / n, (double)ok / n - base);
        }
        for (int h = 0; h < H; h++) {
            head_off ho = {h, m->cfg.n_embd / H};
            cl_hook hk = {.point = CL_HOOK_Z, .layer = l, .mode = CL_HOOK_CALLBACK, .fn = zero_head, .user = &ho};
            if (cl_classify(m, ids, lab, n, T, &hk, 1, &ok, NULL)) goto out;
            char name[64];
            snprintf(name, sizeof name, "block %d head %d", l, h);
            printf("%-26s %9.4f %+9.4f\n", name, (double)ok / n, (double)ok / n - base);
        }
    }
    rc = 0;
out:
    if (rc) cli_fail();
    free(ids);
    free(lab);
    cl_parens_free(&d);
    cl_model_free(m);
    return rc;
}

static int attn_svg(const char *path, const cl_model *m, const char *s, const float *pat) {
    const int L = m->cfg.n_layer, H = m->cfg.n_head, T = CL_PARENS_T;
    int n = (int)strlen(s) + 2; /* [start] string [end]; padding left out */
    double cell = n <= 16 ? 16 : n <= 28 ? 10 : 7, pad = 46, gap = 30, title = 40;
    double pw = n * cell, W = pad + H * (pw + gap), Hh = title + L * (pw + gap + 16) + 10;
    double tw = 7.2 * (66 + (double)n) + 16; /* the title's width at 13 px */
    if (W < tw) W = tw;
    cl_svg *g = cl_svg_open(path, W, Hh);
    if (!g) return -1;
    char buf[128], lab[CL_PARENS_T + 1];
    lab[0] = '^';
    memcpy(lab + 1, s, (size_t)n - 2);
    lab[n - 1] = '$';
    snprintf(buf, sizeof buf, "attention patterns on ^%s$ (row: query, column: key; 0 white .. 1 dark)", s);
    cl_svg_text(g, 8, 20, 13, "start", "#000", 0, 1, 0, buf);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            double x0 = pad + h * (pw + gap), y0 = title + l * (pw + gap + 16) + 14;
            snprintf(buf, sizeof buf, "block %d head %d", l, h);
            cl_svg_text(g, x0, y0 - 4, 11, "start", "#000", 0, 0, 0, buf);
            const float *P = pat + ((size_t)l * H + h) * T * T;
            for (int q = 0; q < n; q++)
                for (int k = 0; k < n; k++) {
                    double a = P[(size_t)q * T + k];
                    int v = (int)lround(255 * (1 - (a < 0 ? 0 : a > 1 ? 1 : a)));
                    char col[8];
                    snprintf(col, sizeof col, "#%02x%02x%02x", v, v, 255);
                    cl_svg_rect(g, x0 + k * cell, y0 + q * cell, cell, cell, col, NULL);
                }
            cl_svg_rect(g, x0, y0, pw, pw, "none", "#888");
            if (cell >= 7)
                for (int i = 0; i < n; i++) {
                    char c[2] = {lab[i], 0};
                    cl_svg_text(g, x0 - 3, y0 + (i + 0.8) * cell, cell * 0.9, "end", "#333", 0, 0, 1, c);
                    cl_svg_text(g, x0 + (i + 0.5) * cell, y0 + pw + cell, cell * 0.9, "middle", "#333", 0, 0, 1, c);
                }
        }
    return cl_svg_close(g);
}

int cli_parens_lens(const char *model, const char *s, const char *svg) {
    cl_model *m = cl_model_load(model);
    if (!m) return cli_fail();
    const int T = CL_PARENS_T, L = m->cfg.n_layer, H = m->cfg.n_head, C = m->cfg.n_embd;
    int rc = 1;
    int32_t ids[CL_PARENS_T];
    float *res = NULL, *pat = NULL, *lg = NULL;
    cl_forward *f = NULL;
    if (is_parens_model(m) || cl_parens_encode(s, ids)) goto out;
    /* the residual stream at [start]: block-0 input, then after each block */
    res = cl_trymalloc((size_t)(L + 1) * T * C, sizeof *res, "residual stream");
    pat = res ? cl_trymalloc((size_t)L * H * T * T, sizeof *pat, "patterns") : NULL;
    lg = pat ? cl_trymalloc((size_t)(L + 1) * 2, sizeof *lg, "logits") : NULL;
    f = lg ? cl_forward_create(m, 1, T) : NULL;
    if (!f) goto out;
    cl_hook hk[3] = {{.point = CL_HOOK_RESID_PRE, .layer = 0, .mode = CL_HOOK_CAPTURE, .out = res},
                     {.point = CL_HOOK_RESID_POST, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = res + (size_t)T * C},
                     {.point = CL_HOOK_PATTERN, .layer = -1, .mode = CL_HOOK_CAPTURE, .out = pat}};
    float final[2];
    if (cl_forward_run(f, ids, 1, T, hk, 3, CL_LOGITS_LAST, final)) goto out;
    float *start = cl_trymalloc((size_t)(L + 1) * C, sizeof *start, "rows");
    if (!start) goto out;
    for (int l = 0; l <= L; l++) memcpy(start + (size_t)l * C, res + (size_t)l * T * C, (size_t)C * sizeof(float));
    cl_unembed(m, start, (size_t)L + 1, lg);
    free(start);
    cl_softmax_rows(lg, (size_t)L + 1, 2);
    cl_softmax_rows(final, 1, 2);
    int depth;
    int truth = cl_parens_balanced(s, &depth);
    printf("^%s$  (%s, depth %d)\n", s, truth ? "balanced" : "unbalanced", depth);
    printf("lens at [start]: the class each layer's residual stream gives through ln_f + head\n");
    printf("%-10s %12s\n", "layer", "P(balanced)");
    for (int l = 0; l <= L; l++) {
        char name[32];
        if (l == 0) snprintf(name, sizeof name, "embed");
        else snprintf(name, sizeof name, "block %d", l - 1);
        printf("%-10s %12.6f\n", name, lg[(size_t)l * 2 + 1]);
    }
    printf("model      %12.6f\n", final[1]);
    if (svg) {
        if (attn_svg(svg, m, s, pat)) goto out;
        printf("attention patterns -> %s\n", svg);
    }
    rc = 0;
out:
    if (rc) cli_fail();
    cl_forward_free(f);
    free(res);
    free(pat);
    free(lg);
    cl_model_free(m);
    return rc;
}

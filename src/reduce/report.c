/* Report writers: report.md, report.h5, SVG plots (see report.h). */
#include "corpuslens/reduce/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"
#include "corpuslens/h5/h5schema.h"
#include "corpuslens/h5/h5util.h"
#include "corpuslens/model/model.h"
#include "corpuslens/par/par.h"

/* ------------------------------------------------------------ file helpers */

static int mkdir_p(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return cl_error("bad output folder name '%s'", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) return cl_error("cannot create %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return cl_error("%s exists and is not a folder", dir);
    return 0;
}

typedef struct {
    FILE *f;
    char path[4200], tmp[4210];
} out_file;

static int of_open(out_file *o, const char *dir, const char *name) {
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->path);
    o->f = fopen(o->tmp, "w");
    if (!o->f) return cl_error("cannot write %s: %s", o->tmp, strerror(errno));
    return 0;
}

static int of_open_path(out_file *o, const char *path) {
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    o->f = fopen(o->tmp, "w");
    if (!o->f) return cl_error("cannot write %s: %s", o->tmp, strerror(errno));
    return 0;
}

static int of_close(out_file *o, int ok) {
    errno = 0;
    int bad = fflush(o->f) != 0 || ferror(o->f), e = bad ? (errno ? errno : EIO) : 0;
    if (fclose(o->f) && !bad) bad = 1, e = errno;
    if (!ok || bad) {
        remove(o->tmp);
        return ok ? cl_error("cannot write %s: %s", o->tmp, strerror(e)) : -1;
    }
    return cl_commit_file(o->tmp, o->path);
}

/* ------------------------------------------------------------------- SVG */

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double n = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    return n * mag;
}

static void svg_text_esc(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* The opening of a plot: the svg element, a white background, the title
 * centred at x = cx. */
static void svg_begin(FILE *f, double W, double H, double cx, const char *title) {
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.1f\" y=\"25\" font-size=\"16\" text-anchor=\"middle\">", cx);
    svg_text_esc(f, title);
    fputs("</text>\n", f);
}

/* Silverman bandwidth from the values in [0, 1]. */
static double kde_bandwidth(const double *x, size_t n) {
    double s = 0, ss = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] >= 0) s += x[i], ss += x[i] * x[i], c++;
    if (c < 2) return 0.02;
    double m = s / (double)c, sd = sqrt(fmax(ss / (double)c - m * m, 0));
    double h = 1.06 * sd * pow((double)c, -0.2);
    return h < 0.005 ? 0.005 : h;
}

#define KDE_GRID 201
#define KDE_HIST 2000

/* Density on KDE_GRID points of [0, 1]: histogram into KDE_HIST bins, then a
 * Gaussian kernel over bin centres, reflected at 0 and 1. Returns count used. */
static size_t kde(const double *x, size_t n, double *dens) {
    static double hist[KDE_HIST];
    memset(hist, 0, sizeof hist);
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(x[i] >= 0)) continue;
        int k = (int)(x[i] * KDE_HIST);
        if (k >= KDE_HIST) k = KDE_HIST - 1;
        hist[k] += 1;
        c++;
    }
    double h = kde_bandwidth(x, n), norm = 1 / ((double)(c ? c : 1) * h * sqrt(2 * M_PI));
    for (int g = 0; g < KDE_GRID; g++) {
        double xg = (double)g / (KDE_GRID - 1), d = 0;
        for (int k = 0; k < KDE_HIST; k++) {
            if (hist[k] == 0) continue;
            double xc = (k + 0.5) / KDE_HIST;
            double u0 = (xg - xc) / h, u1 = (xg + xc) / h, u2 = (xg - (2 - xc)) / h;
            d += hist[k] * (exp(-0.5 * u0 * u0) + exp(-0.5 * u1 * u1) + exp(-0.5 * u2 * u2));
        }
        dens[g] = d * norm;
    }
    return c;
}

int cl_svg_density(const char *path, const char *title, const cl_svg_series *s, size_t n) {
    const double W = 860, H = 500, ml = 75, mr = 250, mt = 45, mb = 65;
    double pw = W - ml - mr, ph = H - mt - mb;
    double *dens = cl_trymalloc(n ? n * KDE_GRID : 1, sizeof(double), "density");
    if (!dens) return -1;
    double ymax = 0;
    size_t *cnt = cl_trycalloc(n ? n : 1, sizeof(size_t), "density");
    if (!cnt) {
        free(dens);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        cnt[i] = kde(s[i].x, s[i].n, dens + i * KDE_GRID);
        for (int g = 0; g < KDE_GRID; g++) ymax = fmax(ymax, dens[i * KDE_GRID + g]);
    }
    if (!(ymax > 0)) ymax = 1;
    double ystep = nice_step(ymax, 5);
    double ytop = ceil(ymax / ystep) * ystep;
    out_file o;
    if (of_open_path(&o, path)) {
        free(dens);
        free(cnt);
        return -1;
    }
    FILE *f = o.f;
    svg_begin(f, W, H, ml + pw / 2, title);
    /* grid + ticks */
    for (int i = 0; i <= 10; i++) {
        double x = ml + pw * i / 10.0;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", x, mt, x, mt + ph);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, mt + ph, x,
                mt + ph + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%.1f</text>\n", x,
                mt + ph + 19, i / 10.0);
    }
    for (double yv = 0; yv <= ytop + 1e-9 * ytop; yv += ystep) {
        double y = mt + ph - ph * yv / ytop;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", ml, y, ml + pw, y);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", ml - 5, y, ml, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%g</text>\n", ml - 8, y + 4,
                yv);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", ml,
            mt, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">Hellinger distance to the "
               "model's next-token distribution</text>\n",
            ml + pw / 2, H - 18);
    fprintf(f, "<text x=\"20\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" "
               "transform=\"rotate(-90 20 %.1f)\">density (Gaussian KDE)</text>\n",
            mt + ph / 2, mt + ph / 2);
    for (size_t i = 0; i < n; i++) {
        if (cnt[i] == 0) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", s[i].color,
                s[i].dashed ? " stroke-dasharray=\"7 4\"" : "");
        for (int g = 0; g < KDE_GRID; g++)
            fprintf(f, "%.1f,%.1f ", ml + pw * g / (KDE_GRID - 1.0),
                    mt + ph - ph * dens[i * KDE_GRID + g] / ytop);
        fputs("\"/>\n", f);
    }
    /* legend */
    double lx = ml + pw + 15, ly = mt + 10;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">mean H (n)</text>\n", lx, ly);
    for (size_t i = 0; i < n; i++) {
        double y = ly + 22 + 36 * (double)i;
        double m = 0;
        for (size_t j = 0; j < s[i].n; j++)
            if (s[i].x[j] >= 0) m += s[i].x[j];
        m = cnt[i] ? m / (double)cnt[i] : 0;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>\n",
                lx, y - 4, lx + 28, y - 4, s[i].color, s[i].dashed ? " stroke-dasharray=\"7 4\"" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", lx + 34, y);
        svg_text_esc(f, s[i].label);
        fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">%.4f (%zu)</text>\n",
                lx + 34, y + 14, m, cnt[i]);
    }
    fputs("</svg>\n", f);
    free(dens);
    free(cnt);
    return of_close(&o, 1);
}

int cl_svg_bars(const char *path, const char *title, const char *ylabel, const char *const *groups,
                size_t n_groups, const char *const *series, size_t n_series, const double *values) {
    static const char *colors[] = {"#9ecae1", "#08519c", "#fdae6b", "#e6550d", "#74c476"};
    const double W = 860, H = 460, ml = 80, mr = 200, mt = 45, mb = 60;
    double pw = W - ml - mr, ph = H - mt - mb;
    double vmin = INFINITY, vmax = 0;
    for (size_t i = 0; i < n_groups * n_series; i++)
        if (values[i] > 0) vmin = fmin(vmin, values[i]), vmax = fmax(vmax, values[i]);
    if (!(vmax > 0)) vmin = 1, vmax = 10;
    int d0 = (int)floor(log10(vmin)), d1 = (int)ceil(log10(vmax));
    if (d0 > 0) d0 = 0;
    if (d1 <= d0) d1 = d0 + 1;
    out_file o;
    if (of_open_path(&o, path)) return -1;
    FILE *f = o.f;
    svg_begin(f, W, H, ml + pw / 2, title);
#define YPOS(v) (mt + ph - ph * (log10(v) - d0) / (double)(d1 - d0))
    for (int d = d0; d <= d1; d++) {
        double y = YPOS(pow(10, d));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", ml, y, ml + pw, y);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", ml - 5, y, ml, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%g</text>\n", ml - 8, y + 4,
                pow(10, d));
    }
    double gw = pw / (double)(n_groups ? n_groups : 1), bw = gw * 0.8 / (double)(n_series ? n_series : 1);
    for (size_t g = 0; g < n_groups; g++) {
        double gx = ml + gw * (double)g + gw * 0.1;
        for (size_t j = 0; j < n_series; j++) {
            double v = values[g * n_series + j];
            if (!(v > 0)) continue;
            double y = YPOS(v < pow(10, d0) ? pow(10, d0) : v);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                    gx + bw * (double)j, y, bw - 2, mt + ph - y, colors[j % 5]);
            fprintf(f, v >= 1000 ? "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%.0f</text>\n"
                                 : "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%.3g</text>\n",
                    gx + bw * ((double)j + 0.5), y - 3, v);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">", ml + gw * ((double)g + 0.5),
                mt + ph + 19);
        svg_text_esc(f, groups[g]);
        fputs("</text>\n", f);
    }
#undef YPOS
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", ml,
            mt, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">block</text>\n", ml + pw / 2,
            H - 18);
    fprintf(f, "<text x=\"22\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 22 %.1f)\">",
            mt + ph / 2, mt + ph / 2);
    svg_text_esc(f, ylabel);
    fputs("</text>\n", f);
    for (size_t j = 0; j < n_series; j++) {
        double y = mt + 15 + 24 * (double)j;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"12\" fill=\"%s\"/>\n", ml + pw + 15, y - 10,
                colors[j % 5]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", ml + pw + 37, y);
        svg_text_esc(f, series[j]);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    return of_close(&o, 1);
}

/* -------------------------------------------------------------- markdown */

/* Text as a markdown inline-code cell: characters C-escaped, '|' escaped. */
static void md_code(FILE *f, const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    fputs("`` ", f);
    while (n > 0) {
        uint32_t cp;
        int k = cl_utf8_get(s, n, &cp);
        if (k <= 0) {
            fprintf(f, "\\x%02x", *s);
            s++, n--;
            continue;
        }
        char esc[16];
        cl_token_escape(cp, esc);
        for (char *e = esc; *e; e++) {
            if (*e == '|') fputs("\\|", f);
            else fputc(*e, f);
        }
        s += k, n -= (size_t)k;
    }
    fputs(" ``", f);
}

static void md_token(FILE *f, uint32_t cp) {
    char esc[16], buf[8];
    (void)buf;
    cl_token_escape(cp, esc);
    fputs("`` ", f);
    for (char *e = esc; *e; e++) {
        if (*e == '|') fputs("\\|", f);
        else fputc(*e, f);
    }
    fputs(" ``", f);
}

static void md_stats_row(FILE *f, const char *name, const cl_stats *s) {
    if (s->count == 0) { /* every prompt empty: no statistics, never 0.0000 */
        fprintf(f, "| %s | 0 | %zu | n/a (no match) | | | | | | | | |\n", name, s->n_empty);
        return;
    }
    fprintf(f, "| %s | %zu | %zu | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n", name,
            s->count, s->n_empty, s->mean, s->std, s->min, s->p10, s->p25, s->median, s->p75, s->p90, s->max);
}

typedef cl_token_p tok_p;

/* The first 5 of the dense sorts (p descending, ties: the lower id) from a
 * sparse reduction: the model's 5 most probable tokens are on the support
 * (it holds the top CL_SCAN_MODEL_TOP), and the approximation is 0 off its
 * nonzero entries: when it has fewer than 5, the lowest ids of the others
 * follow with p = 0, as the dense sort gives them. a, b: at least 5 + the
 * prompt's support entries. */
static void sparse_top(const cl_reduction *r, size_t p, tok_p *a, tok_p *b) {
    const cl_scan_model *m = &r->model;
    size_t ns = (size_t)(m->ind[p + 1] - m->ind[p]), na = (size_t)(r->approx_ind[p + 1] - r->approx_ind[p]);
    for (size_t j = 0; j < ns; j++) a[j] = (tok_p){m->prob[m->ind[p] + (int64_t)j], m->tok[m->ind[p] + (int64_t)j]};
    cl_token_p_sort(a, ns);
    const int32_t *at = r->approx_tok + r->approx_ind[p];
    for (size_t j = 0; j < na; j++) b[j] = (tok_p){r->approx_p[r->approx_ind[p] + (int64_t)j], at[j]};
    cl_token_p_sort(b, na);
    for (int32_t v = 0; na < 5 && v < r->V; v++)
        if (cl_support_find(at, (size_t)(r->approx_ind[p + 1] - r->approx_ind[p]), v) < 0) b[na++] = (tok_p){0, v};
    for (size_t j = ns; j < 5 && j < (size_t)r->V; j++) a[j] = (tok_p){0, 0}; /* a support has min(V, CL_SCAN_MODEL_TOP) tokens */
}

static void md_example(FILE *f, const cl_scan *s, const cl_reduction *r, char **texts, size_t p,
                       const char *why, tok_p *a, tok_p *b) {
    size_t V = (size_t)r->V;
    fprintf(f, "#### Prompt %zu (%s): ", p, why);
    md_code(f, texts[p]);
    if (r->empty[p]) fprintf(f, ", approximation empty\n\n");
    else fprintf(f, ", H = %.4f\n\n", r->hellinger[p]);
    if (r->sparse) {
        sparse_top(r, p, a, b);
    } else {
        for (size_t v = 0; v < V; v++) {
            a[v] = (tok_p){r->model_probs[p * V + v], (int)v};
            b[v] = (tok_p){r->approx[p * V + v], (int)v};
        }
        cl_token_p_sort(a, V);
        cl_token_p_sort(b, V);
    }
    fprintf(f, "| Model Predictions | p | Approximation Predictions | p |\n|---|---:|---|---:|\n");
    for (size_t i = 0; i < 5 && i < V; i++) {
        fputs("| ", f);
        md_token(f, s->vocab[a[i].id]);
        fprintf(f, " | %.4f | ", a[i].p);
        if (r->empty[p]) fputs("– | – |\n", f);
        else {
            md_token(f, s->vocab[b[i].id]);
            fprintf(f, " | %.4f |\n", b[i].p);
        }
    }
    fputs("\n", f);
}

static int cmp_h_idx(const void *x, const void *y, void *ctx) {
    const double *h = ctx;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    if (h[i] != h[j]) return h[i] < h[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* Best single block / lens block by mean H (over non-empty). */
static size_t best_of(const cl_reduction *r, size_t first, size_t n) {
    size_t best = first;
    for (size_t i = first; i < first + n; i++) {
        const cl_stats *s = &r->baselines[i].stats;
        if (s->count && (r->baselines[best].stats.count == 0 || s->mean < r->baselines[best].stats.mean)) best = i;
    }
    return best;
}

static int write_md(const char *dir, const cl_scan *s, const cl_reduction *r, char **texts,
                    const cl_report_opts *o, const char *density_name, const char *bars_name) {
    size_t P = r->P, Lb = (size_t)r->Lb, V = (size_t)r->V;
    out_file of;
    if (of_open(&of, dir, "report.md")) return -1;
    FILE *f = of.f;
    tok_p *a = cl_trymalloc(V, sizeof *a, "ranking"), *b = cl_trymalloc(V, sizeof *b, "ranking");
    size_t *order = cl_trymalloc(P, sizeof *order, "ranking");
    if (!a || !b || !order) {
        free(a);
        free(b);
        free(order);
        of_close(&of, 0);
        return -1;
    }
    fprintf(f, "# corpuslens report\n\n");
    fprintf(f, "Scan: `%s` (sha256 `%s`), %zu prompts, %d blocks, hook `%s`, vocabulary %d, grid %d bins of %g from "
               "prefilter %g.\n\n",
            o->scan_path ? o->scan_path : s->path, o->scan_sha256, P, r->Lb, s->hook[0] ? s->hook : "?", r->V,
            r->NB, s->bin_width, s->prefilter);
    if (o->command_line) fprintf(f, "Command: `%s`\n\n", o->command_line);
    fprintf(f, "| block |");
    for (size_t i = 0; i < Lb; i++) fprintf(f, " %zu |", (size_t)r->first_block + i);
    fprintf(f, "\n|---|");
    for (size_t i = 0; i < Lb; i++) fprintf(f, "---:|");
    fprintf(f, "\n| threshold |");
    for (size_t i = 0; i < Lb; i++) fprintf(f, " %g |", r->thresholds[i]);
    fprintf(f, "\n| weight |");
    for (size_t i = 0; i < Lb; i++) fprintf(f, " %g |", r->weights[i]);
    fprintf(f, "\n\nThe approximation: per block the next-token counts of the corpus substrings more similar "
               "than the block's threshold, weighted sum over blocks (raw counts), normalised. H is the "
               "Hellinger distance sqrt(sum (sqrt p - sqrt q)^2)/sqrt 2 to the model's softmax.\n\n");
    fprintf(f, "## Hellinger distance to the model\n\n");
    fprintf(f, "Statistics over the prompts whose distribution is not empty (`count`); `empty` prompts (no "
               "counts) are excluded and counted apart. std is the population standard deviation (ddof 0); "
               "quantiles interpolate linearly between order statistics (numpy's default).\n\n");
    fprintf(f, "| distribution | count | empty | mean | std | min | p10 | p25 | median | p75 | p90 | max |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    md_stats_row(f, "**approximation**", &r->stats);
    for (size_t i = 0; i < r->n_baselines; i++) {
        char nm[320];
        snprintf(nm, sizeof nm, "%s (`%s`)", r->baselines[i].label, r->baselines[i].name);
        md_stats_row(f, nm, &r->baselines[i].stats);
    }
    size_t nc = r->n_baselines - r->b_compare;
    if (nc > 0) {
        double *pool = cl_trymalloc(nc * P, sizeof *pool, "pooled");
        if (pool) {
            for (size_t c = 0; c < nc; c++) memcpy(pool + c * P, r->baselines[r->b_compare + c].hellinger, P * sizeof *pool);
            cl_stats st;
            if (cl_stats_compute(pool, nc * P, &st) == 0) md_stats_row(f, "noise floor: other models pooled", &st);
            free(pool);
        }
    }
    fprintf(f, "\nPaper (20,000 prompts): approximation mean 0.1677, std 0.1215, min 0.0013, max 0.9994; noise "
               "floor 0.106 ± 0.082.\n\n");
    cl_report_paper_md(f, r, o);
    fprintf(f, "![Hellinger densities](%s)\n\n", density_name);
    fprintf(f, "## Matches per block\n\nMean number of corpus substrings per prompt above the prefilter and "
               "above the block's threshold.\n\n| block | threshold | above prefilter | above threshold |\n"
               "|---:|---:|---:|---:|\n");
    for (size_t bb = 0; bb < Lb; bb++) {
        double tot = 0, above = 0;
        for (size_t k = 0; k < (size_t)r->NB; k++) tot += r->mean_matches_bin[bb * r->NB + k];
        for (size_t p = 0; p < P; p++) above += (double)r->n_matches[p * Lb + bb];
        fprintf(f, "| %zu | %g | %.1f | %.1f |\n", (size_t)r->first_block + bb, r->thresholds[bb], tot,
                above / (double)P);
    }
    fprintf(f, "\n![Matches per block](%s)\n\n", bars_name);
    fprintf(f, "## Examples: Model Predictions / Approximation Predictions\n\n");
    for (size_t i = 0; i < o->n_examples; i++) md_example(f, s, r, texts, o->examples[i], "chosen", a, b);
    size_t n = 0;
    for (size_t p = 0; p < P; p++)
        if (!r->empty[p]) order[n++] = p;
    qsort_r(order, n, sizeof *order, cmp_h_idx, r->hellinger);
    for (size_t i = 0; i < 3 && i < n; i++) md_example(f, s, r, texts, order[i], "best", a, b);
    for (size_t i = 0; i < 3 && i < n; i++)
        if (n - 1 - i >= 3) md_example(f, s, r, texts, order[n - 1 - i], "worst", a, b);
    if (r->stats.n_empty) {
        fprintf(f, "## Empty approximations\n\n%zu prompts have no counts above any threshold:", r->stats.n_empty);
        size_t shown = 0;
        for (size_t p = 0; p < P && shown < 20; p++)
            if (r->empty[p]) {
                fprintf(f, "%s %zu ", shown ? "," : "", p);
                md_code(f, texts[p]);
                shown++;
            }
        fprintf(f, "%s\n", shown < r->stats.n_empty ? ", …" : "");
    }
    free(a);
    free(b);
    free(order);
    return of_close(&of, 1);
}

/* --------------------------------------------------------------- report.h5 */

static int stats_attrs(hid_t f, const char *path, const cl_stats *s) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return cl_error("cannot open %s", path);
    int rc = cl_h5_attr_write_int(d, "count", (long long)s->count) ||
             cl_h5_attr_write_int(d, "n_empty", (long long)s->n_empty) ||
             cl_h5_attr_write_double(d, "mean", s->mean) || cl_h5_attr_write_double(d, "std", s->std) ||
             cl_h5_attr_write_double(d, "min", s->min) || cl_h5_attr_write_double(d, "p10", s->p10) ||
             cl_h5_attr_write_double(d, "p25", s->p25) || cl_h5_attr_write_double(d, "median", s->median) ||
             cl_h5_attr_write_double(d, "p75", s->p75) || cl_h5_attr_write_double(d, "p90", s->p90) ||
             cl_h5_attr_write_double(d, "max", s->max) ||
             cl_h5_attr_write_double(d, "empty_value", CL_H_EMPTY) ||
             cl_h5_attr_write_str(d, "std_kind", "population (ddof 0)") ||
             cl_h5_attr_write_str(d, "quantile_method", "linear interpolation (numpy default)");
    if (H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write %s", path);
    return rc ? -1 : 0;
}

/* /approx: [P, V] of a dense reduction; of a sparse one its nonzero entries
 * as CSR (/approx/indptr [P + 1] int64, /approx/token int32, /approx/prob
 * float64), contiguous. */
static int write_approx(hid_t f, const cl_reduction *r, const hsize_t *dPV) {
    if (!r->sparse) return cl_h5_write(f, "/approx", H5T_NATIVE_DOUBLE, 2, dPV, r->approx);
    hsize_t dI = (hsize_t)r->P + 1, dN = (hsize_t)r->approx_ind[r->P];
    return cl_h5_write(f, CL_REPORT_APPROX_INDPTR, H5T_NATIVE_INT64, 1, &dI, r->approx_ind) ||
           cl_h5_write(f, CL_REPORT_APPROX_TOKEN, H5T_NATIVE_INT32, 1, &dN, r->approx_tok) ||
           cl_h5_write(f, CL_REPORT_APPROX_PROB, H5T_NATIVE_DOUBLE, 1, &dN, r->approx_p);
}

static int write_h5(const char *dir, const cl_scan *s, const cl_reduction *r, char **texts,
                    const cl_report_opts *o) {
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/report.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = cl_h5_create(tmp);
    if (f < 0) return -1;
    size_t P = r->P, Lb = (size_t)r->Lb, V = (size_t)r->V;
    hsize_t dP = P, dPV[2] = {P, V}, dPL[2] = {P, Lb};
    int rc = cl_h5_attr_write_str(f, "format", CL_REPORT_FORMAT) ||
             cl_h5_attr_write_int(f, "format_version", CL_REPORT_FORMAT_VERSION) ||
             cl_h5_attr_write_doubles(f, "thresholds", r->thresholds, Lb) ||
             cl_h5_attr_write_doubles(f, "weights", r->weights, Lb) ||
             cl_h5_attr_write_int(f, "hook_first_block", r->first_block) ||
             cl_h5_attr_write_str(f, "scan_file", o->scan_path ? o->scan_path : s->path) ||
             cl_h5_attr_write_str(f, "scan_sha256", o->scan_sha256) ||
             cl_h5_attr_write_double(f, "prefilter", s->prefilter) ||
             cl_h5_attr_write_double(f, "bin_width", s->bin_width) ||
             cl_h5_write(f, "/hellinger", H5T_NATIVE_DOUBLE, 1, &dP, r->hellinger) ||
             write_approx(f, r, dPV) ||
             cl_h5_write(f, "/empty", H5T_NATIVE_INT8, 1, &dP, r->empty) ||
             cl_h5_write(f, "/n_matches", H5T_NATIVE_INT64, 2, dPL, r->n_matches) ||
             cl_h5_write_vocab(f, "/vocab", s->vocab, r->V) || stats_attrs(f, "/hellinger", &r->stats);
    for (size_t i = 0; !rc && i < r->n_baselines; i++) {
        char p1[96], p2[96];
        snprintf(p1, sizeof p1, "/baselines/%s/hellinger", r->baselines[i].name);
        snprintf(p2, sizeof p2, "/baselines/%s/empty", r->baselines[i].name);
        rc = cl_h5_write(f, p1, H5T_NATIVE_DOUBLE, 1, &dP, r->baselines[i].hellinger) ||
             cl_h5_write(f, p2, H5T_NATIVE_INT8, 1, &dP, r->baselines[i].empty) ||
             stats_attrs(f, p1, &r->baselines[i].stats);
        if (!rc) {
            hid_t d = H5Dopen2(f, p1, H5P_DEFAULT);
            rc = d < 0 || cl_h5_attr_write_str(d, "label", r->baselines[i].label);
            if (d >= 0 && H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write %s", p1);
        }
    }
    cl_noise_floor nf;
    if (!rc) rc = cl_noise_floor_of(r, &nf);
    if (!rc && nf.n) {
        hid_t g = H5Gcreate2(f, "/noise_floor", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = g < 0 || cl_h5_attr_write_int(g, "n_models", (long long)nf.n) ||
             cl_h5_attr_write_doubles(g, "means", nf.means, nf.n) || cl_h5_attr_write_double(g, "mean", nf.mean) ||
             cl_h5_attr_write_double(g, "pooled_std", nf.pooled_std) ||
             cl_h5_attr_write_double(g, "ratio", nf.ratio);
        if (g >= 0 && H5Gclose(g) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write /noise_floor");
    }
    if (!rc) {
        /* prompt texts, variable-length UTF-8 */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t sp = H5Screate_simple(1, &dP, NULL);
        hid_t dcpl = cl_h5_dcpl();
        hid_t d = H5Dcreate2(f, "/prompts/text", t, sp, lcpl, dcpl, H5P_DEFAULT);
        H5Pclose(dcpl);
        if (d < 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, texts) < 0)
            rc = cl_h5_error_in(f, "cannot write /prompts/text");
        if (d >= 0 && H5Dclose(d) < 0 && !rc) rc = cl_h5_error_in(f, "cannot write /prompts/text");
        H5Sclose(sp);
        H5Pclose(lcpl);
        H5Tclose(t);
    }
    if (cl_h5_finish(f, tmp, rc != 0)) rc = -1;
    if (rc) {
        remove(tmp);
        return cl_error_prefix("%s: ", path);
    }
    return cl_commit_file(tmp, path);
}

/* ------------------------------------------------------------------ plots */

static int write_plots(const char *dir, const cl_scan *s, const cl_reduction *r, const char *dname,
                       const char *bname) {
    size_t P = r->P, Lb = (size_t)r->Lb, NB = (size_t)r->NB;
    char path[4200];
    cl_svg_series ser[8];
    char lab[8][128];
    size_t n = 0;
    ser[n++] = (cl_svg_series){"approximation", r->hellinger, P, "black", 0};
    /* The lens at the last block is the model itself (H = 0): the plot shows
     * the best of the earlier blocks, which says how early the answer forms. */
    size_t NL = (size_t)r->NL;
    size_t bb = best_of(r, 0, Lb), bl = best_of(r, r->b_lens, NL > 1 ? NL - 1 : NL);
    snprintf(lab[1], sizeof lab[1], "best single block (%zu)", (size_t)r->first_block + bb);
    ser[n++] = (cl_svg_series){lab[1], r->baselines[bb].hellinger, P, "#1f77b4", 0};
    snprintf(lab[2], sizeof lab[2], "best logit lens (block %zu)", bl - r->b_lens);
    ser[n++] = (cl_svg_series){lab[2], r->baselines[bl].hellinger, P, "#ff7f0e", 0};
    ser[n++] = (cl_svg_series){"exact-string n-gram", r->baselines[r->b_ngram].hellinger, P, "#2ca02c", 0};
    ser[n++] = (cl_svg_series){"unigram", r->baselines[r->b_unigram].hellinger, P, "#7f7f7f", 0};
    size_t nc = r->n_baselines - r->b_compare;
    double *pool = NULL;
    if (nc > 0) {
        pool = cl_trymalloc(nc * P, sizeof *pool, "pooled");
        if (!pool) return -1;
        for (size_t c = 0; c < nc; c++) memcpy(pool + c * P, r->baselines[r->b_compare + c].hellinger, P * sizeof *pool);
        snprintf(lab[5], sizeof lab[5], "noise floor (%zu other model%s)", nc, nc > 1 ? "s" : "");
        ser[n++] = (cl_svg_series){lab[5], pool, nc * P, "#d62728", 1};
    }
    snprintf(path, sizeof path, "%s/%s", dir, dname);
    char title[160];
    snprintf(title, sizeof title, "Hellinger distance to the model, %zu prompts", P);
    int rc = cl_svg_density(path, title, ser, n);
    free(pool);
    if (rc) return -1;
    const char *series[2] = {"above prefilter", "above block threshold"};
    double *vals = cl_trycalloc(Lb * 2, sizeof *vals, "bars");
    char (*gl)[48] = cl_trymalloc(Lb, 48, "bars");
    const char **groups = cl_trymalloc(Lb, sizeof *groups, "bars");
    if (!vals || !gl || !groups) {
        free(vals);
        free(gl);
        free(groups);
        return -1;
    }
    for (size_t b = 0; b < Lb; b++) {
        for (size_t k = 0; k < NB; k++) vals[b * 2] += r->mean_matches_bin[b * NB + k];
        for (size_t p = 0; p < P; p++) vals[b * 2 + 1] += (double)r->n_matches[p * Lb + b];
        vals[b * 2 + 1] /= (double)P;
        snprintf(gl[b], 48, "%zu (> %g)", (size_t)r->first_block + b, r->thresholds[b]);
        groups[b] = gl[b];
    }
    snprintf(path, sizeof path, "%s/%s", dir, bname);
    rc = cl_svg_bars(path, "Matched corpus substrings per prompt", "mean substrings per prompt (log scale)",
                     groups, Lb, series, 2, vals);
    (void)s;
    free(vals);
    free(gl);
    free(groups);
    return rc;
}

int cl_report_write(const char *dir, const cl_scan *s, const cl_reduction *r, char **texts,
                    const cl_report_opts *o) {
    for (size_t i = 0; i < o->n_examples; i++)
        if (o->examples[i] >= r->P)
            return cl_error("example prompt %zu does not exist (the scan has %zu prompts)", o->examples[i], r->P);
    if (mkdir_p(dir)) return -1;
    const char *dname = "hellinger_density.svg", *bname = "block_matches.svg";
    if (write_plots(dir, s, r, dname, bname) || write_h5(dir, s, r, texts, o) ||
        cl_par_fault("reduce.write", MPI_COMM_WORLD) || write_md(dir, s, r, texts, o, dname, bname)) {
        /* no half report: the files already renamed go too */
        const char *names[4] = {dname, bname, "report.h5", "report.md"};
        for (int i = 0; i < 4; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            remove(p);
        }
        return -1;
    }
    return 0;
}

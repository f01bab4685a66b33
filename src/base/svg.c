/* Hand-written SVG helpers (see svg.h). */
#include "corpuslens/base/svg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/base/fileio.h"

struct cl_svg {
    FILE *fp;
    char *path, *tmp;
    int failed; /* errno of the first failed write, or EIO */
};

static void out(cl_svg *s, const char *fmt, ...) CL_PRINTF(2, 3);
static void out(cl_svg *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(s->fp, fmt, ap) < 0 && !s->failed) s->failed = errno ? errno : EIO;
    va_end(ap);
}

static void put_escaped(cl_svg *s, const char *t) {
    for (; *t; t++) {
        const char *r = NULL;
        switch (*t) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '"': r = "&quot;"; break;
        default: break;
        }
        if (r) out(s, "%s", r);
        else if ((unsigned char)*t < 0x20) out(s, "?"); /* not allowed in XML 1.0 */
        else if (fputc(*t, s->fp) == EOF && !s->failed) s->failed = errno ? errno : EIO;
    }
}

cl_svg *cl_svg_open(const char *path, double width, double height) {
    cl_svg *s = cl_trycalloc(1, sizeof *s, "svg writer");
    if (!s) return NULL;
    size_t n = strlen(path);
    s->path = cl_trymalloc(n + 1, 1, "svg path");
    s->tmp = s->path ? cl_trymalloc(n + 5, 1, "svg path") : NULL;
    if (!s->tmp) {
        free(s->path);
        free(s);
        return NULL;
    }
    memcpy(s->path, path, n + 1);
    snprintf(s->tmp, n + 5, "%s.tmp", path);
    s->fp = fopen(s->tmp, "w");
    if (!s->fp) {
        cl_error("cannot create %s: %s", s->tmp, strerror(errno));
        free(s->path);
        free(s->tmp);
        free(s);
        return NULL;
    }
    out(s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
        "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
        "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n",
        width, height, width, height, width, height);
    return s;
}

static void free_svg(cl_svg *s) {
    free(s->path);
    free(s->tmp);
    free(s);
}

void cl_svg_abort(cl_svg *s) {
    if (!s) return;
    if (s->fp) fclose(s->fp);
    remove(s->tmp);
    free_svg(s);
}

int cl_svg_close(cl_svg *s) {
    if (!s) return cl_error("no svg open");
    out(s, "</svg>\n");
    errno = 0;
    int e = s->failed, bad = e != 0;
    if (!bad && (fflush(s->fp) != 0 || ferror(s->fp))) bad = 1, e = errno ? errno : EIO;
    if (fclose(s->fp) && !bad) bad = 1, e = errno;
    s->fp = NULL;
    if (bad) {
        cl_error("cannot write %s: %s", s->tmp, strerror(e));
        cl_svg_abort(s);
        return -1;
    }
    if (cl_commit_file(s->tmp, s->path)) {
        cl_svg_abort(s);
        return -1;
    }
    free_svg(s);
    return 0;
}

void cl_svg_rect(cl_svg *s, double x, double y, double w, double h, const char *fill, const char *stroke) {
    out(s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"", x, y, w, h, fill);
    if (stroke) out(s, " stroke=\"%s\" stroke-width=\"1\"", stroke);
    out(s, "/>\n");
}

void cl_svg_line(cl_svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width) {
    out(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"%.2f\"/>\n", x1, y1,
        x2, y2, stroke, width);
}

void cl_svg_text(cl_svg *s, double x, double y, double size, const char *anchor, const char *fill, double rotate,
                 int bold, int monospace, const char *text) {
    out(s, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\" fill=\"%s\"", x, y, size, anchor,
        fill);
    if (bold) out(s, " font-weight=\"bold\"");
    if (monospace) out(s, " font-family=\"DejaVu Sans Mono, Courier New, monospace\" xml:space=\"preserve\"");
    if (rotate != 0) out(s, " transform=\"rotate(%.1f %.2f %.2f)\"", rotate, x, y);
    out(s, ">");
    put_escaped(s, text);
    out(s, "</text>\n");
}

void cl_svg_yaxis(cl_svg *s, double x, double y0, double y1, double lo, double hi, int n_ticks, const char *fmt,
                  double grid_w) {
    cl_svg_line(s, x, y0, x, y1, "#333333", 1);
    for (int i = 0; i <= n_ticks; i++) {
        double v = lo + (hi - lo) * i / n_ticks, y = y0 + (y1 - y0) * i / n_ticks;
        char buf[64];
        snprintf(buf, sizeof buf, fmt, v);
        if (grid_w > 0 && i > 0) cl_svg_line(s, x, y, x + grid_w, y, "#dddddd", 1);
        cl_svg_line(s, x - 5, y, x, y, "#333333", 1);
        cl_svg_text(s, x - 8, y + 4, 12, "end", "#333333", 0, 0, 0, buf);
    }
}

/* viridis, 9 stops (matplotlib's values at 0, 1/8, ..., 1) */
static const unsigned char viridis[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                            {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                            {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};

void cl_svg_viridis(double t, char out_[8], int *dark) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    double u = t * 8;
    int i = (int)floor(u);
    if (i > 7) i = 7;
    double a = u - i;
    int rgb[3];
    for (int k = 0; k < 3; k++) rgb[k] = (int)lround(viridis[i][k] * (1 - a) + viridis[i + 1][k] * a);
    snprintf(out_, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    if (dark) *dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140;
}

/* Small hand-written SVG helpers for the analysis plots (lens heatmap,
 * ablation bars). Coordinates in SVG user units (pixels), y down.
 *
 * cl_svg_open writes to "<path>.tmp"; cl_svg_close finishes the document,
 * checks every write and renames it to path (on error the temporary file is
 * removed and -1 returned with cl_error). Drawing calls never fail on their
 * own: a write error is remembered and reported by cl_svg_close.
 * Text is XML-escaped; pass UTF-8.
 */
#ifndef CORPUSLENS_SVG_H
#define CORPUSLENS_SVG_H

#include <stddef.h>

typedef struct cl_svg cl_svg;

/* NULL with cl_error when the file cannot be created. */
cl_svg *cl_svg_open(const char *path, double width, double height);
/* Finish and rename; frees s (also on error). 0 or -1. */
int cl_svg_close(cl_svg *s);
/* Remove the temporary file without producing path; frees s. */
void cl_svg_abort(cl_svg *s);

/* fill/stroke: any SVG colour ("#1f77b4", "none"); stroke NULL = none. */
void cl_svg_rect(cl_svg *s, double x, double y, double w, double h, const char *fill, const char *stroke);
void cl_svg_line(cl_svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width);
/* anchor: "start" | "middle" | "end"; rotate in degrees about (x, y) (0 = none);
 * bold 0/1; monospace 0/1. */
void cl_svg_text(cl_svg *s, double x, double y, double size, const char *anchor, const char *fill, double rotate,
                 int bold, int monospace, const char *text);

/* A vertical value axis at x from y0 (value lo) up to y1 (value hi), with
 * n_ticks + 1 labelled ticks (printf format fmt, e.g. "%.1f") and light grid
 * lines to x + grid_w (0: no grid). */
void cl_svg_yaxis(cl_svg *s, double x, double y0, double y1, double lo, double hi, int n_ticks, const char *fmt,
                  double grid_w);

/* Colour for t in [0, 1] on the viridis ramp (clamped) as "#rrggbb";
 * *dark is set to 1 when black text would be hard to read on it. */
void cl_svg_viridis(double t, char out[8], int *dark);

#endif

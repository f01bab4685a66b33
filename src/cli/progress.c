/* The progress line of the long multi-rank commands (scan, index): a bar on a
 * terminal, a plain line every 30 s otherwise (cli.h). */
#include <stdio.h>

#include "cli/cli.h"

void cli_progress_line(void *user, size_t done, size_t total, double elapsed) {
    cli_progress *s = user;
    int final = done >= total;
    if (!final && elapsed - s->last < (s->tty ? 0.5 : 30.0)) return;
    s->last = elapsed;
    double rate = elapsed > 0 ? done / elapsed : 0, eta = rate > 0 ? (total - done) / rate : 0;
    double frac = total ? (double)done / total : 1;
    if (s->tty) {
        char bar[31];
        int k = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\rcorpuslens %s: [%s] %5.1f%% %zu/%zu %s  %.0f/s  ETA %02d:%02d:%02d ", s->what, bar, 100 * frac, done,
                total, s->unit, rate, (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "corpuslens %s: %zu/%zu %s (%.1f%%), %.0f/s, elapsed %.0f s, ETA %.0f s\n", s->what, done, total, s->unit,
                100 * frac, rate, elapsed, eta);
    }
    fflush(stderr);
}

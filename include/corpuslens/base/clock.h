/* Wall-clock seconds for timings and progress. */
#ifndef CORPUSLENS_CLOCK_H
#define CORPUSLENS_CLOCK_H

#include <time.h>

/* Seconds of the monotonic clock (differences only: its origin is arbitrary). */
static inline double cl_wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif

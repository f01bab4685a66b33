/* corpuslens error reporting.
 *
 * Library functions never print and never exit. A function that fails returns
 * -1 (or NULL) and records one human-readable message with cl_error(); the CLI
 * prints it once on stderr as "corpuslens: <message>" and exits nonzero.
 * The message buffer is per thread. A later cl_error() replaces the message;
 * cl_error_prefix() prepends context ("model.h5: ") to the current one.
 */
#ifndef CORPUSLENS_ERROR_H
#define CORPUSLENS_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define CL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CL_PRINTF(a, b)
#endif

/* Record a message (printf format). Always returns -1 so that callers can
 * write `return cl_error("...")`. */
int cl_error(const char *fmt, ...) CL_PRINTF(1, 2);
/* Prepend "<prefix>" to the current message. Returns -1. */
int cl_error_prefix(const char *fmt, ...) CL_PRINTF(1, 2);
/* The current message ("" when none). Valid until the next cl_error*. */
const char *cl_last_error(void);
void cl_error_clear(void);

/* Allocation helpers. cl_trymalloc returns NULL and records an error naming
 * `what` and the size; it never aborts. Sizes are checked for overflow. */
void *cl_trymalloc(size_t n, size_t size, const char *what);
void *cl_trycalloc(size_t n, size_t size, const char *what);

#endif

#include "corpuslens/base/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char cl_msg[2048];

int cl_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl_msg, sizeof cl_msg, fmt, ap);
    va_end(ap);
    return -1;
}

int cl_error_prefix(const char *fmt, ...) {
    char pre[1024], old[sizeof cl_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, cl_msg, sizeof old);
    size_t np = strlen(pre);
    if (np >= sizeof cl_msg) np = sizeof cl_msg - 1;
    memcpy(cl_msg, pre, np);
    size_t no = strlen(old);
    if (no > sizeof cl_msg - 1 - np) no = sizeof cl_msg - 1 - np;
    memcpy(cl_msg + np, old, no);
    cl_msg[np + no] = '\0';
    return -1;
}

const char *cl_last_error(void) { return cl_msg; }

void cl_error_clear(void) { cl_msg[0] = '\0'; }

void *cl_trymalloc(size_t n, size_t size, const char *what) {
    if (size != 0 && n > SIZE_MAX / size) {
        cl_error("cannot allocate %s: %zu x %zu bytes overflows", what, n, size);
        return NULL;
    }
    size_t bytes = n * size;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cl_error("out of memory allocating %s (%zu bytes)", what, bytes);
    return p;
}

void *cl_trycalloc(size_t n, size_t size, const char *what) {
    if (size != 0 && n > SIZE_MAX / size) {
        cl_error("cannot allocate %s: %zu x %zu bytes overflows", what, n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) cl_error("out of memory allocating %s (%zu bytes)", what, n * size);
    return p;
}

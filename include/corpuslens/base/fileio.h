/* Reading whole files. */
#ifndef CORPUSLENS_FILEIO_H
#define CORPUSLENS_FILEIO_H

#include <stddef.h>

/* Read the whole file into a malloc'ed buffer (NUL-terminated, the NUL not
 * counted in *len). At most max_bytes (0 = no limit). NULL with cl_error
 * ("cannot open PATH: reason", "cannot read PATH: reason", out of memory,
 * "PATH is larger than N bytes") on failure. */
char *cl_read_file(const char *path, size_t max_bytes, size_t *len);

#endif

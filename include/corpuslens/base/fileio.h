/* Reading whole files. */
#ifndef CORPUSLENS_FILEIO_H
#define CORPUSLENS_FILEIO_H

#include <stddef.h>

/* Read the whole file into a malloc'ed buffer (NUL-terminated, the NUL not
 * counted in *len); path "-" reads standard input to its end. At most max_bytes (0 = no limit). NULL with cl_error
 * ("cannot open PATH: reason", "cannot read PATH: reason", out of memory,
 * "PATH is larger than N bytes") on failure. */
char *cl_read_file(const char *path, size_t max_bytes, size_t *len);

/* Read exactly n bytes at offset off of fd (pread, retried on EINTR and short
 * reads). 0, or -1 with errno set (0 when the file ended first); the caller
 * writes the message (cl_pread_reason gives its reason text). */
int cl_pread_exact(int fd, void *buf, size_t n, unsigned long long off);
const char *cl_pread_reason(void);

#endif

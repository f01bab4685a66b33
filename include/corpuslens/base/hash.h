/* SHA-256 fingerprints of files and memory blocks. */
#ifndef CORPUSLENS_BASE_HASH_H
#define CORPUSLENS_BASE_HASH_H

#include <stddef.h>

/* Hex SHA-256 of a file's bytes / of a memory block (out: 64 hex + NUL).
 * cl_sha256_file returns 0, or -1 with a message naming the path. */
int cl_sha256_file(const char *path, char out[65]);
void cl_sha256_mem(const void *data, size_t len, char out[65]);

#endif

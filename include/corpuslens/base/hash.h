/* SHA-256 fingerprints of files and memory blocks. */
#ifndef CORPUSLENS_BASE_HASH_H
#define CORPUSLENS_BASE_HASH_H

#include <stddef.h>

/* Hex SHA-256 of a file's bytes / of a memory block (out: 64 hex + NUL).
 * cl_sha256_file returns 0, or -1 with a message naming the path. */
int cl_sha256_file(const char *path, char out[65]);
void cl_sha256_mem(const void *data, size_t len, char out[65]);
/* Incremental: begin (NULL when out of memory, with a message), update any
 * number of times, end writes the hex digest and frees the context. */
typedef struct cl_sha256 cl_sha256;
cl_sha256 *cl_sha256_begin(void);
void cl_sha256_update(cl_sha256 *h, const void *data, size_t len);
void cl_sha256_end(cl_sha256 *h, char out[65]);

/* A file's digest from a cache keyed by (kind, device, inode, size, mtime,
 * ctime) of the file: compute(path, out, user) on a miss, stored (atomically:
 * temporary file + rename) only when the file did not change while it was
 * hashed and its times are more than 2 s old. A changed file (new bytes mean
 * a new mtime and ctime; ctime cannot be set back) misses, so a changed file
 * is hashed again. The cache lives in $CORPUSLENS_HASH_CACHE (a directory;
 * "0" turns it off), else $XDG_CACHE_HOME/corpuslens/sha256, else
 * ~/.cache/corpuslens/sha256; an unusable cache is silently skipped. kind
 * names what is hashed (with a version when it is not the file's bytes:
 * "model-fingerprint-v1"). *hit (may be NULL) says whether the cache answered. */
int cl_sha256_cached(const char *path, const char *kind, int (*compute)(const char *path, char out[65], void *user),
                     void *user, char out[65], int *hit);
/* cl_sha256_file through that cache. */
int cl_sha256_file_cached(const char *path, char out[65], int *hit);

#endif
